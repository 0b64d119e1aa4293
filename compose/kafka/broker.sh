#!/bin/bash
# The broker's entry point in Compose, instead of the image's own: that one formats the storage
# without SCRAM users and expects JKS key stores for any TLS listener. This one writes every
# KAFKA_* variable of the service into server.properties (the image's naming: `_` is `.`, `__`
# is `_`, `___` is `-`; *_OPTS are the JVM's), formats the storage once with the two SCRAM users
# (their passwords are Compose secrets, never in the environment), then runs the broker.
# BROKER_HOME and BROKER_SECRETS point elsewhere in tests.
set -euo pipefail
HOME_DIR=${BROKER_HOME:-/opt/kafka}
SECRETS=${BROKER_SECRETS:-/run/secrets}
CONFIG=$HOME_DIR/config/streampulse.properties
DATA=${KAFKA_LOG_DIRS:?}

: > "$CONFIG"
while IFS='=' read -r name value; do
  [[ $name == KAFKA_* && $name != *_OPTS ]] || continue
  key=$(sed -e 's/^KAFKA_//' -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g' <<<"$name" | tr '[:upper:]' '[:lower:]')
  printf '%s=%s\n' "$key" "$value" >> "$CONFIG"
done < <(env)

if [ ! -f "$DATA/meta.properties" ]; then
  scram=()
  for user in streampulse-ingest streampulse-worker; do
    password=$(cat "$SECRETS/${user#streampulse-}_password")
    scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$password]")
  done
  "$HOME_DIR/bin/kafka-storage.sh" format --cluster-id "${CLUSTER_ID:?}" -c "$CONFIG" "${scram[@]}"
  echo "kafka: storage formatted with SCRAM users streampulse-ingest and streampulse-worker"
fi
exec "$HOME_DIR/bin/kafka-server-start.sh" "$CONFIG"
