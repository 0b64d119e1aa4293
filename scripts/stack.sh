#!/usr/bin/env bash
# The local real stack without Docker: Apache Kafka (KRaft, one broker+controller, jars from
# Maven Central) and redis-server (AOF on), on loopback, with pid files, logs and data under the
# repo. Usage: stack.sh up|down|clean|status|logs
# A second, private stack (the fault tests stop and restart their own broker) is started with
# STACK_HOME (where pid files, logs and data go), KAFKA_PORT, KAFKA_CONTROLLER_PORT and REDIS_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
STACK_HOME=${STACK_HOME:-$ROOT/.data}
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
REDIS_PORT=${REDIS_PORT:-6379}
RUN=$STACK_HOME/run
if [ "$STACK_HOME" = "$ROOT/.data" ]; then LOGS=$ROOT/.logs; else LOGS=$STACK_HOME/logs; fi
KDATA=$STACK_HOME/kafka
RDATA=$STACK_HOME/redis
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
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
ready() { "$PYTHON" "$ROOT/scripts/ready.py" "$@"; }

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
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://localhost:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
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
  if [ ! -f "$KDATA/logs/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java -cp "$LIB/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
    java -cp "$LIB/*" kafka.tools.StorageTool format -t "$cluster_id" -c "$props" >>"$LOGS/kafka.log" 2>&1
    echo "kafka: storage formatted (cluster $cluster_id)"
  fi
  # setsid: the broker outlives the shell (and make) that started it; its pid is in the pid file.
  setsid java -Xms256m -Xmx${STREAMPULSE_KAFKA_HEAP:-1g} -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.yaml" \
    -cp "$LIB/*" kafka.Kafka "$props" >>"$LOGS/kafka.log" 2>&1 < /dev/null &
  echo $! > "$RUN/kafka.pid"
  echo "kafka: starting Apache Kafka $KAFKA_VERSION (pid $(cat "$RUN/kafka.pid"), log .logs/kafka.log)"
}

start_redis() {
  if ready redis --timeout 1 >/dev/null 2>&1; then
    echo "redis: already answering at $REDIS_URL (reused)"; return
  fi
  if ! is_local_redis; then
    echo "redis: $REDIS_URL is not ours to start; waiting for it"; ready redis --timeout 60; return
  fi
  command -v redis-server >/dev/null || { echo "redis: redis-server missing, run 'make setup'" >&2; exit 1; }
  mkdir -p "$RDATA"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$RDATA" --appendonly yes --appendfsync everysec \
    --save "900 1 300 100" --daemonize yes --pidfile "$RUN/redis.pid" --logfile "$LOGS/redis.log"
  echo "redis: starting redis-server $(redis-server --version | cut -d' ' -f3) (AOF on, data .data/redis)"
}

stop_pid() {
  local name=$1 pidfile=$RUN/$1.pid
  if alive "$pidfile"; then
    local pid; pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    echo "$name: stopped (pid $pid)"
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  up)
    start_kafka
    start_redis
    ready kafka --timeout 90
    ready redis --timeout 30
    echo "stack up: kafka $BOOTSTRAP, redis $REDIS_URL (logs: .logs/, data: .data/)"
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
      if alive "$RUN/$s.pid"; then echo "$s: running (pid $(cat "$RUN/$s.pid"))"; else echo "$s: not started by us"; fi
    done
    ;;
  logs)
    tail -n 50 "$LOGS"/*.log
    ;;
  *)
    echo "usage: $0 up|down|clean|status|logs" >&2; exit 2 ;;
esac
