#!/usr/bin/env bash
# The local real stack without Docker: Apache Kafka (KRaft, one broker+controller, jars from
# Maven Central) and redis-server (AOF on), on loopback, with pid files, logs and data under the
# repo. Usage: stack.sh up|down|clean|status|logs|acls [APP_ID]
# A second, private stack (the fault tests stop and restart their own broker) is started with
# STACK_HOME (where pid files, logs and data go), KAFKA_PORT, KAFKA_CONTROLLER_PORT and REDIS_PORT.
# STACK_SASL_SSL=1 adds a SASL_SSL listener on KAFKA_SASL_PORT (SCRAM-SHA-512 users, a local CA,
# the StandardAuthorizer with ACLs per principal; docs/security.md); the plaintext listener stays.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
STACK_HOME=${STACK_HOME:-$ROOT/.data}
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
REDIS_PORT=${REDIS_PORT:-6379}
STACK_SASL_SSL=${STACK_SASL_SSL:-0}
KAFKA_SASL_PORT=${KAFKA_SASL_PORT:-9094}
RUN=$STACK_HOME/run
if [ "$STACK_HOME" = "$ROOT/.data" ]; then LOGS=$ROOT/.logs; else LOGS=$STACK_HOME/logs; fi
KDATA=$STACK_HOME/kafka
RDATA=$STACK_HOME/redis
TLS=$STACK_HOME/tls
SECRETS=$STACK_HOME/secrets
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)
LIB=$ROOT/.cache/kafka/$KAFKA_VERSION/lib
DEFAULT_BOOTSTRAP=localhost:$KAFKA_PORT
DEFAULT_REDIS=redis://localhost:$REDIS_PORT/0
BOOTSTRAP=${STREAMPULSE_KAFKA_BOOTSTRAP:-$DEFAULT_BOOTSTRAP}
REDIS_URL=${STREAMPULSE_REDIS_URL:-$DEFAULT_REDIS}
PYTHON=$ROOT/.venv/bin/python
mkdir -p "$RUN" "$LOGS"

is_local_kafka() { [[ "$BOOTSTRAP" == "localhost:$KAFKA_PORT" || "$BOOTSTRAP" == "127.0.0.1:$KAFKA_PORT" ]]; }
is_local_redis() { [[ "$REDIS_URL" =~ ^redis://(localhost|127\.0\.0\.1)(:$REDIS_PORT)?(/[0-9]+)?$ ]]; }
# The Redis URL as printed: a password in it is replaced by ***.
REDIS_SHOWN=$(sed -E 's#//[^@/]*@#//***@#' <<<"$REDIS_URL")
# What a service's command line holds when it is the process this stack started (see ours).
marker() {
  case $1 in
    kafka) echo "$KDATA/server.properties" ;;
    redis) echo "redis-server 127.0.0.1:$REDIS_PORT" ;;
    worker) echo "app worker" ;;
    api) echo "api.main:app" ;;
  esac
}
# Epoch second a process started (boot time + its start in clock ticks); fails once it is gone.
started_at() {
  local stat fields
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  read -r -a fields <<<"${stat##*) }"  # after the command name, which may hold spaces
  echo $(( $(awk '/^btime/ {print $2}' /proc/stat) + fields[19] / $(getconf CLK_TCK) ))
}
# True when the pid file $1 names a live process that is service $2 as this stack started it: a
# pid is reused once its process exits, so a live pid alone may be anyone's. The process must have
# started no later than the pid file was written (a reused pid belongs to a later process) and
# run the service's command line.
ours() {
  local pidfile=$1 name=$2 pid start
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  start=$(started_at "$pid") || return 1
  [ "$start" -le $(( $(stat -c %Y "$pidfile") + 1 )) ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(marker "$name")"
}
ready() { "$PYTHON" "$ROOT/scripts/ready.py" "$@"; }
SASL_USERS=(streampulse-ingest streampulse-worker)

# A CA and a broker certificate for localhost / 127.0.0.1, made once per STACK_HOME. The CA key
# never leaves $TLS; clients need only ca.pem.
make_tls() {
  [ -f "$TLS/broker.pem" ] && return
  mkdir -p "$TLS"; chmod 700 "$TLS"
  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=StreamPulse local CA" \
    -keyout "$TLS/ca.key" -out "$TLS/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$TLS/broker.key" -out "$TLS/broker.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$TLS/broker.ext"
  openssl x509 -req -in "$TLS/broker.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" -CAcreateserial \
    -days 825 -extfile "$TLS/broker.ext" -out "$TLS/broker.crt" 2>/dev/null
  # Kafka's PEM key store: the PKCS#8 key, then the certificate chain, in one file.
  (openssl pkcs8 -topk8 -nocrypt -in "$TLS/broker.key"; cat "$TLS/broker.crt" "$TLS/ca.pem") > "$TLS/broker.pem"
  chmod 600 "$TLS"/*.key "$TLS/broker.pem"
  echo "kafka: local CA and broker certificate in $TLS (clients trust $TLS/ca.pem)"
}

# One random password per SCRAM user, made once, readable by the owner only.
make_secrets() {
  mkdir -p "$SECRETS"; chmod 700 "$SECRETS"
  local user
  for user in "${SASL_USERS[@]}"; do
    [ -f "$SECRETS/$user.password" ] || (umask 077; openssl rand -hex 24 > "$SECRETS/$user.password")
  done
}

sasl_properties() {
  cat <<PROPS
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT
advertised.listeners=PLAINTEXT://localhost:$KAFKA_PORT,SASL_SSL://localhost:$KAFKA_SASL_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$TLS/broker.pem
ssl.client.auth=none
ssl.enabled.protocols=TLSv1.3,TLSv1.2
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
# The loopback PLAINTEXT and CONTROLLER listeners authenticate nobody (principal ANONYMOUS):
# a super user, so local tools, the broker itself and the controller keep full access there.
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=false
PROPS
}

# ACLs of one app id on the SASL listener (added idempotently, through the plaintext listener):
# the ingestion principal writes the events topic only; the worker reads it and owns the rest.
apply_acls() {
  local app_id=${1:-streampulse} p=""
  if [ ! -f "$KDATA/sasl.formatted" ]; then
    echo "kafka: this broker was not started with STACK_SASL_SSL=1 ('make down && make clean' first)" >&2
    exit 1
  fi
  [ "$app_id" = streampulse ] || p="$app_id."
  local acl=(java -cp "$LIB/*" org.apache.kafka.tools.AclCommand --bootstrap-server "localhost:$KAFKA_PORT")
  local ingest=User:streampulse-ingest worker=User:streampulse-worker
  {
    "${acl[@]}" --add --allow-principal "$ingest" --operation Write --operation Describe --operation Create \
      --topic "${p}events"
    "${acl[@]}" --add --allow-principal "$ingest" --operation Describe \
      --topic "${p}events-dlq" --topic "${p}events-late" --topic "${p}window-results" \
      --topic "$app_id-window-state-changelog"
    "${acl[@]}" --add --allow-principal "$worker" --operation Read --operation Describe --operation Create \
      --topic "${p}events"
    "${acl[@]}" --add --allow-principal "$worker" --operation Read --operation Write --operation Describe \
      --operation Create --topic "${p}events-dlq" --topic "${p}events-late" --topic "${p}window-results"
    "${acl[@]}" --add --allow-principal "$worker" --operation All --resource-pattern-type prefixed \
      --topic "$app_id-"
    "${acl[@]}" --add --allow-principal "$worker" --operation All --resource-pattern-type prefixed \
      --group "$app_id"
  } >>"$LOGS/kafka-acls.log" 2>&1 || { echo "kafka: adding ACLs failed (see $LOGS/kafka-acls.log)" >&2; exit 1; }
  echo "kafka: ACLs for app id $app_id (ingest writes ${p}events; worker reads it and owns the rest)"
}

start_kafka() {
  if ready kafka --timeout 2 >/dev/null 2>&1; then
    echo "kafka: already answering at $BOOTSTRAP (reused)"; return
  fi
  if ! is_local_kafka; then
    echo "kafka: $BOOTSTRAP is not ours to start; waiting for it"; ready kafka --timeout 60; return
  fi
  [ -f "$LIB/kafka_2.13-$KAFKA_VERSION.jar" ] || { echo "kafka: jars missing, run 'make setup'" >&2; exit 1; }
  mkdir -p "$KDATA/logs"
  local props=$KDATA/server.properties
  cat > "$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$KDATA/logs
auto.create.topics.enable=false
num.partitions=8
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Replays carry historical event times as record timestamps: time-based retention would
# delete them on arrival, so the local broker keeps data by size only.
log.retention.ms=-1
log.retention.bytes=1073741824
PROPS
  local scram=()
  if [ "$STACK_SASL_SSL" = 1 ]; then
    make_tls
    make_secrets
    sasl_properties >> "$props"
    local user
    for user in "${SASL_USERS[@]}"; do
      scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(cat "$SECRETS/$user.password")]")
    done
  else
    cat >> "$props" <<PROPS
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://localhost:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
PROPS
  fi
  if [ ! -f "$KDATA/logs/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java -cp "$LIB/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
    # The SCRAM users are written into the metadata log at format time ("${scram[@]}"); the
    # command's output names them but never the passwords.
    java -cp "$LIB/*" kafka.tools.StorageTool format -t "$cluster_id" -c "$props" ${scram[@]+"${scram[@]}"} \
      >>"$LOGS/kafka.log" 2>&1
    echo "kafka: storage formatted (cluster $cluster_id${scram[*]:+, SCRAM users ${SASL_USERS[*]}})"
  elif [ "$STACK_SASL_SSL" = 1 ] && [ ! -f "$KDATA/sasl.formatted" ]; then
    echo "kafka: $KDATA was formatted without SCRAM users; 'make clean' first to use STACK_SASL_SSL=1" >&2
    exit 1
  fi
  if [ "$STACK_SASL_SSL" = 1 ]; then touch "$KDATA/sasl.formatted"; fi
  # setsid: the broker outlives the shell (and make) that started it; its pid is in the pid file.
  setsid java -Xms256m -Xmx${STREAMPULSE_KAFKA_HEAP:-1g} -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.yaml" \
    -cp "$LIB/*" kafka.Kafka "$props" >>"$LOGS/kafka.log" 2>&1 < /dev/null &
  echo $! > "$RUN/kafka.pid"
  echo "kafka: starting Apache Kafka $KAFKA_VERSION (pid $(cat "$RUN/kafka.pid"), log .logs/kafka.log)"
}

start_redis() {
  if ready redis --timeout 1 >/dev/null 2>&1; then
    echo "redis: already answering at $REDIS_SHOWN (reused)"; return
  fi
  if ! is_local_redis; then
    echo "redis: $REDIS_SHOWN is not ours to start; waiting for it"; ready redis --timeout 60; return
  fi
  command -v redis-server >/dev/null || { echo "redis: redis-server missing, run 'make setup'" >&2; exit 1; }
  mkdir -p "$RDATA"
  # maxmemory: past it Redis evicts the window keys nearest their expiry (every window key has a
  # TTL; the few index keys without one are never evicted) instead of growing until the OOM killer.
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$RDATA" --appendonly yes --appendfsync everysec \
    --save "900 1 300 100" --daemonize yes --pidfile "$RUN/redis.pid" --logfile "$LOGS/redis.log" \
    --maxmemory "${STREAMPULSE_REDIS_MAXMEMORY:-1gb}" --maxmemory-policy volatile-ttl
  echo "redis: starting redis-server $(redis-server --version | cut -d' ' -f3) (AOF on, data .data/redis)"
}

stop_pid() {
  local name=$1 pidfile=$RUN/$1.pid
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  if ours "$pidfile" "$name"; then
    kill "$pid"
    for _ in $(seq 1 60); do ours "$pidfile" "$name" || break; sleep 0.5; done
    if ours "$pidfile" "$name"; then kill -9 "$pid" 2>/dev/null || true; fi
    echo "$name: stopped (pid $pid)"
  else
    echo "$name: pid $pid is no longer the process this stack started; not signalled"
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  up)
    start_kafka
    start_redis
    ready kafka --timeout 90
    ready redis --timeout 30
    if [ "$STACK_SASL_SSL" = 1 ] && is_local_kafka; then
      apply_acls streampulse
      echo "kafka: SASL_SSL on localhost:$KAFKA_SASL_PORT (CA $TLS/ca.pem, passwords in $SECRETS/)"
    fi
    echo "stack up: kafka $BOOTSTRAP, redis $REDIS_SHOWN (logs: .logs/, data: .data/)"
    ;;
  acls)
    apply_acls "${2:-streampulse}"
    ;;
  down)
    stop_pid worker
    stop_pid api
    stop_pid kafka
    stop_pid redis
    ;;
  clean)
    stop_pid worker
    stop_pid api
    stop_pid kafka
    stop_pid redis
    rm -rf "$KDATA" "$RDATA" "$ROOT"/.data/worker-* "$LOGS"
    echo "stack: data wiped (.data/kafka, .data/redis, worker state, .logs)"
    ;;
  status)
    for s in kafka redis worker api; do
      if ours "$RUN/$s.pid" "$s"; then echo "$s: running (pid $(cat "$RUN/$s.pid"))"; else echo "$s: not started by us"; fi
    done
    ;;
  logs)
    tail -n 50 "$LOGS"/*.log
    ;;
  *)
    echo "usage: $0 up|down|clean|status|logs|acls [APP_ID]" >&2; exit 2 ;;
esac
