"""Real secured services for the security tests: certificates made by openssl, a redis-server
with TLS and ACL users, and a private Kafka broker with the SASL_SSL listener (``stack.sh``
with ``STACK_SASL_SSL=1`` in its own STACK_HOME and ports, never the shared one on 9092).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import redis as sync_redis
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.settings import EVENTS_TOPIC_CONFIG, Settings
from support.procs import free_port
from tests.integration.stack import ROOT, Proc, wait_for

STACK = ROOT / "scripts" / "stack.sh"
INGEST_USER = "streampulse-ingest"
WORKER_USER = "streampulse-worker"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> Path:
    """A self-signed CA (``<name>.pem``, key beside it); returns the certificate's path."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
        "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    return cert


def make_server_cert(ca: Path, directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for localhost / 127.0.0.1 signed by ``ca``; returns (certificate, key)."""
    cert, key, csr, ext = (directory / f"{name}{suffix}" for suffix in (".crt", ".key", ".csr", ".ext"))
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca.with_suffix(".key")),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert),
    )  # fmt: skip
    return cert, key


@dataclass
class TlsRedis:
    """A redis-server speaking TLS only, with the worker's read-write and the API's read-only user."""

    proc: Proc
    port: int
    ca: Path
    passwords: dict[str, str]

    def url(self, user: str, password: str | None = None) -> str:
        secret = self.passwords[user] if password is None else password
        return f"rediss://{user}:{secret}@localhost:{self.port}/0"

    def client_url(self, user: str) -> str:
        """The URL with the CA as a query parameter, for redis-py clients outside the settings."""
        return f"{self.url(user)}?ssl_ca_certs={self.ca}&ssl_cert_reqs=required"


def acl_file(path: Path, app_id: str, passwords: Mapping[str, str]) -> None:
    """The ACL users: ``default`` off; the worker may read and write its ``sp:<app>:`` keys and run
    scripts; the API may only read them (scripts too: Redis checks each command a script calls
    against the caller's ACL, so a read-only user's script cannot write)."""

    def digest(user: str) -> str:
        return "#" + hashlib.sha256(passwords[user].encode()).hexdigest()

    keys = f"~sp:{app_id}:*"
    path.write_text(
        "user default off\n"
        f"user sp-worker on {digest('sp-worker')} {keys} resetchannels -@all +@read +@write +@keyspace "
        "+@scripting +@connection -@dangerous\n"
        f"user sp-api on {digest('sp-api')} {keys} resetchannels -@all +@read +@connection "
        "+evalsha +eval +script|load -@dangerous\n"
    )
    path.chmod(0o600)


def start_tls_redis(tmp: Path, app_id: str) -> TlsRedis:
    tls = tmp / "redis-tls"
    ca = make_ca(tls, "redis-ca")
    cert, key = make_server_cert(ca, tls, "redis")
    passwords = {user: secrets.token_hex(16) for user in ("sp-worker", "sp-api")}
    acl = tls / "users.acl"
    acl_file(acl, app_id, passwords)
    port = free_port()
    args = [
        "redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
        "--tls-auth-clients", "no", "--aclfile", str(acl), "--save", "", "--appendonly", "no",
        "--dir", str(tmp), "--maxmemory", "64mb", "--maxmemory-policy", "volatile-ttl",
    ]  # fmt: skip
    proc = Proc(args, os.environ, tmp / "redis-tls.log")
    server = TlsRedis(proc, port, ca, passwords)

    def answers() -> bool:
        if not proc.alive():
            raise AssertionError(f"redis-server exited:\n{proc.output()[-2000:]}")
        client = sync_redis.Redis.from_url(server.client_url("sp-api"), socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except sync_redis.RedisError:
            return False
        finally:
            client.close()

    wait_for(answers, 15, 0.1, what="TLS redis-server")
    return server


@dataclass
class SaslKafka:
    """A private broker from ``stack.sh up`` with ``STACK_SASL_SSL=1``."""

    home: Path
    env: dict[str, str]
    plaintext: str
    sasl: str

    @property
    def ca(self) -> Path:
        return self.home / "tls" / "ca.pem"

    def password(self, user: str) -> str:
        return (self.home / "secrets" / f"{user}.password").read_text().strip()

    def stack(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(STACK), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def client_env(self, user: str, password: str | None = None, ca: Path | None = None) -> dict[str, str]:
        """``STREAMPULSE_*`` variables of a client connecting as ``user`` over SASL_SSL."""
        return {
            "STREAMPULSE_KAFKA_BOOTSTRAP": self.sasl,
            "STREAMPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "STREAMPULSE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "STREAMPULSE_KAFKA_SASL_USERNAME": user,
            "STREAMPULSE_KAFKA_SASL_PASSWORD": self.password(user) if password is None else password,
            "STREAMPULSE_KAFKA_SSL_CAFILE": str(self.ca if ca is None else ca),
        }


def start_sasl_kafka(home: Path) -> SaslKafka:
    """``stack.sh up`` in ``home`` on free ports; stop it with ``stack.sh down`` (by pid file)."""
    kafka, controller, sasl, redis_port = (free_port() for _ in range(4))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPULSE_")}
    env.update(
        STACK_HOME=str(home),
        STACK_SASL_SSL="1",
        KAFKA_PORT=str(kafka),
        KAFKA_CONTROLLER_PORT=str(controller),
        KAFKA_SASL_PORT=str(sasl),
        REDIS_PORT=str(redis_port),
        STREAMPULSE_KAFKA_BOOTSTRAP=f"localhost:{kafka}",
        STREAMPULSE_REDIS_URL=f"redis://localhost:{redis_port}/0",
        STREAMPULSE_KAFKA_HEAP="512m",
    )
    broker = SaslKafka(home, env, f"localhost:{kafka}", f"localhost:{sasl}")
    result = broker.stack("up")
    assert result.returncode == 0, f"stack.sh up failed:\n{result.stdout}\n{result.stderr}"
    return broker


async def create_topics(settings: Settings) -> None:
    """The app id's topics, created through the plaintext (super-user) listener, as an operator
    provisions a secured cluster before the principals that may not create topics connect."""
    n = settings.partitions
    topics = [
        NewTopic(settings.events, n, 1, topic_configs=EVENTS_TOPIC_CONFIG),
        NewTopic(settings.dlq, n, 1),
        NewTopic(settings.late, n, 1),
        NewTopic(settings.results, n, 1),
        NewTopic(
            f"{settings.app_id}-window-state-changelog", n, 1, topic_configs={"cleanup.policy": "compact"}
        ),
    ]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(topics)
    finally:
        await admin.close()
