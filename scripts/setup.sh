#!/usr/bin/env bash
# Installs what StreamPulse needs on a fresh machine: the virtualenv with the package and its
# test extras, the pinned Kafka jars from Maven Central, Debian's redis-server, Debian's
# promtool and amtool (the monitoring configuration tests), Debian's chromium and chromium-driver
# (the dashboard's browser tests), and the dashboard's chart library from web/package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
EXTRAS=${STREAMPULSE_EXTRAS:-test}

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating virtualenv .venv"
  "$PY" -m venv .venv
fi
STAMP=.venv/.installed-$EXTRAS
if [ ! -f "$STAMP" ] || [ setup.cfg -nt "$STAMP" ] || [ requirements-test.lock -nt "$STAMP" ]; then
  echo "setup: installing streampulse[$EXTRAS] into .venv"
  .venv/bin/pip install -q --upgrade pip
  # The test extras at the exact versions of the lock (what CI runs); other extras resolve freely.
  if [ "$EXTRAS" = test ]; then .venv/bin/pip install -q -r requirements-test.lock; fi
  .venv/bin/pip install -q -e ".[$EXTRAS]"
  touch "$STAMP"
fi

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)
LIB=.cache/kafka/$KAFKA_VERSION/lib
if [ ! -f "$LIB/kafka_2.13-$KAFKA_VERSION.jar" ] || [ ! -f "$LIB/kafka-tools-$KAFKA_VERSION.jar" ]; then
  echo "setup: resolving Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIB"
  command -v mvn >/dev/null || { echo "setup: Maven (mvn) is required to fetch the Kafka jars" >&2; exit 1; }
  mkdir -p "$LIB"
  (cd scripts/kafka && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$ROOT/$LIB")
fi

if ! command -v redis-server >/dev/null; then
  echo "setup: installing Debian's redis-server"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  # Debian's package starts a system-wide server on 6379; the project runs its own.
  if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
    $SUDO systemctl stop redis-server || true
  fi
  # Without systemd the package's init script started it: stop that one, by its own pid file.
  if [ -f /run/redis/redis-server.pid ]; then
    $SUDO kill "$(cat /run/redis/redis-server.pid)" 2>/dev/null || true
  fi
fi
if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null; then
  echo "setup: installing Debian's prometheus and prometheus-alertmanager (promtool, amtool for the tests)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    prometheus prometheus-alertmanager >/dev/null
  # Only the tools are wanted: the packages' own services must not stay running.
  for svc in prometheus prometheus-alertmanager; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
      $SUDO systemctl disable --now "$svc" || true
    elif [ -x "/etc/init.d/$svc" ]; then
      $SUDO "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
  done
fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || ! command -v npm >/dev/null; then
  echo "setup: installing Debian's chromium, chromium-driver (the dashboard's browser tests) and npm"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver $(command -v npm >/dev/null || echo npm) >/dev/null
fi
# The dashboard's chart library, from the lock file, with its licence beside it.
VENDORED=api/static/vendor/uPlot.iife.min.js
if [ ! -f "$VENDORED" ] || [ web/package-lock.json -nt "$VENDORED" ] || [ web/package.json -nt "$VENDORED" ]; then
  echo "setup: installing the dashboard's chart library (npm ci in web/) into api/static/vendor"
  (cd web && npm ci --no-audit --no-fund --silent && npm run --silent vendor)
fi
echo "setup: ready (.venv, Kafka $KAFKA_VERSION, $(redis-server --version | cut -d' ' -f3))"
