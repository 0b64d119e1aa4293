#!/bin/sh
# The kafka-init service (once, before the broker): a CA and a certificate for the broker's
# SASL_SSL listener, host name `kafka` (the name clients dial on the Compose network), made by
# openssl as scripts/stack.sh makes the local stack's. The broker's key store goes into the
# kafka-tls volume (only the broker mounts it), the CA certificate into kafka-ca (the clients
# mount it read-only). The CA key is deleted once the certificate is signed: nothing can issue
# another one. To rotate, remove both volumes. Arguments (for tests): the two directories.
set -eu
TLS=${1:-/tls}
CA=${2:-/ca}
if [ -s "$TLS/broker.pem" ] && [ -s "$CA/ca.pem" ]; then
  echo "kafka-init: broker certificate already made"
  exit 0
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
umask 077
openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=StreamPulse Compose CA" \
  -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=kafka" \
  -keyout "$WORK/broker.key" -out "$WORK/broker.csr" 2>/dev/null
printf 'subjectAltName=DNS:kafka\nextendedKeyUsage=serverAuth\n' > "$WORK/broker.ext"
openssl x509 -req -in "$WORK/broker.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
  -days 825 -extfile "$WORK/broker.ext" -out "$WORK/broker.crt" 2>/dev/null
# Kafka's PEM key store: the PKCS#8 key, then the certificate chain, in one file, readable by the
# broker's user only (appuser, uid 1000 in the apache/kafka image).
(openssl pkcs8 -topk8 -nocrypt -in "$WORK/broker.key"; cat "$WORK/broker.crt" "$WORK/ca.pem") > "$TLS/broker.pem"
chown 1000:1000 "$TLS/broker.pem"
chmod 400 "$TLS/broker.pem"
cp "$WORK/ca.pem" "$CA/ca.pem"
chmod 644 "$CA/ca.pem"
echo "kafka-init: CA and broker certificate for kafka made (clients trust ca.pem in the kafka-ca volume)"
