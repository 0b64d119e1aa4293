"""The whole pipeline secured, on real services: a private Kafka broker with a SASL_SSL listener
(SCRAM-SHA-512, a local CA, the StandardAuthorizer and ACLs from ``stack.sh``), and a redis-server
speaking TLS only with ACL users. The replayer connects as the ingestion principal, the worker as
the worker principal and with Redis's read-write user, the API with the read-only one and with API
keys. Then the refusals: a wrong password, an unknown CA, the ingestion principal writing
``window-results``, the API's Redis user writing. Finally every log and response is searched for
the secrets.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as sync_redis
from aiokafka import AIOKafkaProducer
from aiokafka.errors import TopicAuthorizationFailedError

from app.kafka_client import client_kwargs
from app.settings import Settings
from tests.integration.pipeline import (
    assert_matches_reference,
    read_topic,
    reference_windows,
    start_worker,
    wait_final_windows,
    wait_worker_ready,
)
from tests.integration.secure_stack import (
    INGEST_USER,
    WORKER_USER,
    SaslKafka,
    TlsRedis,
    create_topics,
    free_port,
    make_ca,
    start_sasl_kafka,
    start_tls_redis,
)
from tests.integration.stack import ROOT, Proc, wait_for

pytestmark = pytest.mark.integration

SAMPLE = ROOT / "data" / "tlc" / "tlc_trips_2019-03_sample.csv"
API_KEY = "sp-key-91c3e0d5a7b24f68"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslKafka]:
    """One private SASL_SSL broker for the module, stopped by its pid file at the end."""
    home = tmp_path_factory.mktemp("sasl-stack")
    kafka = start_sasl_kafka(home)
    try:
        yield kafka
    finally:
        kafka.stack("down")


@pytest.fixture
def tls_redis(tmp_path: Path, app_id: str) -> Iterator[TlsRedis]:
    server = start_tls_redis(tmp_path, app_id)
    yield server
    server.proc.stop(10)


def base_env(app_id: str, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPULSE_")}
    env.update(
        STREAMPULSE_APP_ID=app_id,
        STREAMPULSE_PARTITIONS="2",
        PYTHONPATH=str(ROOT),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    )
    return env


def start_api(env: dict[str, str], tmp: Path, port: int) -> Proc:
    """``uvicorn api.main:app`` with API keys on: ready once ``/openapi.json`` answers the key."""
    args = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)]
    proc = Proc(args, env, tmp / "api.log")

    def up() -> bool:
        if not proc.alive():
            raise AssertionError(f"API exited:\n{proc.output()[-3000:]}")
        try:
            resp = httpx.get(
                f"http://127.0.0.1:{port}/openapi.json", headers={"X-API-Key": API_KEY}, timeout=1
            )
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    wait_for(up, 30, 0.1, what="API up")
    return proc


def replay_cmd(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producers.replay", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_pipeline_end_to_end_over_sasl_ssl_and_redis_tls_acl(
    broker: SaslKafka, tls_redis: TlsRedis, app_id: str, tmp_path: Path, processes: list[Proc]
) -> None:
    assert broker.stack("acls", app_id).returncode == 0
    plain = Settings(kafka_bootstrap=broker.plaintext, app_id=app_id, partitions=2)
    asyncio.run(create_topics(plain))
    env = base_env(app_id, tmp_path)
    worker_env = {
        **env,
        **broker.client_env(WORKER_USER),
        "STREAMPULSE_REDIS_URL": tls_redis.url("sp-worker"),
        "STREAMPULSE_REDIS_SSL_CAFILE": str(tls_redis.ca),
    }
    web_port = free_port()
    worker = start_worker(worker_env, tmp_path, "worker", web_port)
    processes.append(worker)
    wait_worker_ready(worker, timeout=120)

    ingest_env = {**env, **broker.client_env(INGEST_USER)}
    rejects = tmp_path / "rejects.jsonl"
    replayed = replay_cmd(ingest_env, str(SAMPLE), "--limit", "1500", "--rejects", str(rejects), "--json")
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    assert json.loads(replayed.stdout.strip().splitlines()[-1])["sent"] > 1000

    ref = reference_windows(read_topic(broker.plaintext, plain.events))
    assert ref.windows
    got = wait_final_windows(tls_redis.client_url("sp-worker"), app_id, len(ref.windows), timeout=180)
    assert_matches_reference(got, ref)

    api_port = free_port()
    api_env = {
        **env,
        "STREAMPULSE_REDIS_URL": tls_redis.url("sp-api"),
        "STREAMPULSE_REDIS_SSL_CAFILE": str(tls_redis.ca),
        "STREAMPULSE_API_KEYS": API_KEY,
    }
    processes.append(start_api(api_env, tmp_path, api_port))
    responses: list[str] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as api:
        denied = api.get("/metrics/top?window=1m")
        assert denied.status_code == 401, denied.text
        top = api.get("/metrics/top?window=1m", headers={"Authorization": f"Bearer {API_KEY}"})
        assert top.status_code == 200, top.text
        assert top.json()["items"]
        region = top.json()["items"][0]["region_id"]
        one = api.get(f"/metrics/region/{region}?window=1m", headers={"X-API-Key": API_KEY})
        assert one.status_code == 200, one.text
        health = api.get("/health")
        assert health.status_code == 200, health.text
        responses += [denied.text, top.text, one.text, health.text, str(denied.headers), str(top.headers)]
        # Every other route a client or the dashboard reads, and the Prometheus pages.
        keyed = {"Authorization": f"Bearer {API_KEY}"}
        for path in ("/", "/static/api.js", "/pipeline", "/regions?window=1m", "/metrics", "/openapi.json"):
            resp = api.get(path, headers=keyed)
            assert resp.status_code == 200, (path, resp.text)
            responses += [resp.text, str(resp.headers)]
        wrong = api.get("/pipeline", headers={"Authorization": f"Bearer {API_KEY}x"})
        assert wrong.status_code == 401
        responses += [wrong.text, str(wrong.headers)]
    worker_metrics = httpx.get(f"http://127.0.0.1:{web_port}/metrics", timeout=10)
    assert worker_metrics.status_code == 200
    responses += [worker_metrics.text, replayed.stdout, replayed.stderr]

    reader = sync_redis.Redis.from_url(tls_redis.client_url("sp-api"))
    try:
        with pytest.raises(sync_redis.exceptions.NoPermissionError):
            reader.set(f"sp:{app_id}:forged", "1")
        with pytest.raises(sync_redis.exceptions.ResponseError, match="can't run this command"):
            reader.eval("return redis.call('SET', KEYS[1], '1')", 1, f"sp:{app_id}:forged")
        assert reader.get(f"sp:{app_id}:last_final_ms") is not None, "the API's user reads"
    finally:
        reader.close()

    worker.stop(30)
    secrets = [
        broker.password(INGEST_USER),
        broker.password(WORKER_USER),
        *tls_redis.passwords.values(),
        API_KEY,
    ]
    files = [*tmp_path.glob("*.log"), *(broker.home / "logs").glob("*.log"), rejects]
    texts = {str(p): p.read_text(errors="replace") for p in files if p.is_file()}
    texts.update({f"response or output {i}": text for i, text in enumerate(responses)})
    assert {"worker.log", "api.log", "kafka.log"} <= {Path(name).name for name in texts}
    for secret in secrets:
        leaked = [name for name, text in texts.items() if secret in text]
        assert not leaked, f"a secret is in {leaked}"


def test_wrong_password_is_refused_with_one_clear_line(
    broker: SaslKafka, app_id: str, tmp_path: Path
) -> None:
    env = {**base_env(app_id, tmp_path), **broker.client_env(INGEST_USER, password="not-the-password")}
    result = replay_cmd(env, "--synthetic", "10")
    assert result.returncode == 3, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert broker.sasl in line and "authentication" in line.lower(), line
    assert "not-the-password" not in result.stderr + result.stdout


def test_unknown_ca_is_refused_with_one_clear_line(broker: SaslKafka, app_id: str, tmp_path: Path) -> None:
    other_ca = make_ca(tmp_path / "other", "not-the-kafka-ca")
    env = {**base_env(app_id, tmp_path), **broker.client_env(INGEST_USER, ca=other_ca)}
    result = replay_cmd(env, "--synthetic", "10")
    assert result.returncode == 3, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert broker.sasl in line and "certificate" in line.lower(), line


def test_ingestion_principal_cannot_write_window_results(broker: SaslKafka, app_id: str) -> None:
    assert broker.stack("acls", app_id).returncode == 0
    plain = Settings(kafka_bootstrap=broker.plaintext, app_id=app_id, partitions=2)
    asyncio.run(create_topics(plain))
    ingest = Settings(
        kafka_bootstrap=broker.sasl,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username=INGEST_USER,
        kafka_sasl_password=broker.password(INGEST_USER),
        kafka_ssl_cafile=broker.ca,
        app_id=app_id,
    )

    async def produce(topic: str) -> None:
        producer = AIOKafkaProducer(**client_kwargs(ingest), request_timeout_ms=10_000)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"{}", key=b"1")
        finally:
            await producer.stop()

    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(produce(plain.results))
    asyncio.run(produce(plain.events))
