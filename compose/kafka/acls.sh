#!/bin/bash
# The kafka-acls service (once the broker answers): the ACLs of docs/security.md for the app id,
# as scripts/stack.sh adds them to the local broker. It shares the broker's network namespace and
# uses its loopback listener, whose principal (ANONYMOUS) is the only super user; no other
# container can reach that listener. Adding an ACL that exists is a no-op, so reruns are safe.
set -euo pipefail
app_id=${STREAMPULSE_APP_ID:-streampulse}
p=""
[ "$app_id" = streampulse ] || p="$app_id."
acl=(/opt/kafka/bin/kafka-acls.sh --bootstrap-server 127.0.0.1:9092 --add)
ingest=User:streampulse-ingest
worker=User:streampulse-worker
"${acl[@]}" --allow-principal "$ingest" --operation Write --operation Describe --operation Create \
  --topic "${p}events"
"${acl[@]}" --allow-principal "$ingest" --operation Describe \
  --topic "${p}events-dlq" --topic "${p}events-late" --topic "${p}window-results" \
  --topic "$app_id-window-state-changelog"
"${acl[@]}" --allow-principal "$worker" --operation Read --operation Describe --operation Create \
  --topic "${p}events"
"${acl[@]}" --allow-principal "$worker" --operation Read --operation Write --operation Describe \
  --operation Create --topic "${p}events-dlq" --topic "${p}events-late" --topic "${p}window-results"
"${acl[@]}" --allow-principal "$worker" --operation All --resource-pattern-type prefixed --topic "$app_id-"
"${acl[@]}" --allow-principal "$worker" --operation All --resource-pattern-type prefixed --group "$app_id"
echo "kafka-acls: ingestion writes ${p}events only; the worker reads it and owns the rest"
