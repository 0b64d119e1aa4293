"""Stack and Kafka helpers of the fault tests (the process helpers are :mod:`support.procs`).

Everything here drives real components: a private Kafka + Redis started by ``scripts/stack.sh``
(so a test may stop and kill its broker without touching the shared one), real worker processes,
the admin API for committed offsets, and ``/proc`` for a process's resident memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from app.control import CONTROL_HEADER, IDLE
from support.kafka import Record, read_topic
from support.procs import ROOT, SESSION_TIMEOUT, StackInfo, free_port, wait_for
from tests.integration.pipeline import redis_final_windows

STACK_SH = ROOT / "scripts" / "stack.sh"


@dataclass
class PrivateStack:
    """A Kafka broker + redis-server of one test, on free ports, under its own STACK_HOME.

    The shared stack (9092 / 6379) belongs to everyone on the machine; a test that stops or kills
    a broker must own it.
    """

    home: Path
    kafka_port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)

    @property
    def info(self) -> StackInfo:
        return StackInfo(f"localhost:{self.kafka_port}", f"redis://localhost:{self.redis_port}/0")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPULSE_")}
        env.update(
            STACK_HOME=str(self.home),
            KAFKA_PORT=str(self.kafka_port),
            KAFKA_CONTROLLER_PORT=str(self.controller_port),
            REDIS_PORT=str(self.redis_port),
            STREAMPULSE_KAFKA_BOOTSTRAP=self.info.bootstrap,
            STREAMPULSE_REDIS_URL=self.info.redis_url,
            STREAMPULSE_KAFKA_HEAP="512m",
        )
        return env

    def _stack(self, command: str, timeout: float = 180) -> None:
        result = subprocess.run(
            [str(STACK_SH), command],
            env=self.env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0 and command == "up":
            log = self.home / "logs" / "kafka.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise AssertionError(f"stack.sh up failed: {result.stdout}{result.stderr}\n{tail}")

    def up(self) -> None:
        """Start (or restart) what is not answering: the same command as the first start."""
        self._stack("up")

    def down(self) -> None:
        self._stack("down", timeout=120)

    def pid(self, service: str) -> int:
        return int((self.home / "run" / f"{service}.pid").read_text().strip())

    def kill(self, service: str, sig: int) -> None:
        """Send ``sig`` to the service by its pid file and wait until the process is gone."""
        pid = self.pid(service)
        os.kill(pid, sig)

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_for(gone, 90, interval=0.2, what=f"{service} (pid {pid}) to exit after signal {sig}")

    def log(self, service: str) -> str:
        path = self.home / "logs" / f"{service}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def fault_env(base: Mapping[str, str], info: StackInfo | None = None, **settings: str) -> dict[str, str]:
    """A worker/replayer environment with the fault suite's short session timeout."""
    env = dict(base)
    env["STREAMPULSE_SESSION_TIMEOUT"] = SESSION_TIMEOUT
    if info is not None:
        env["STREAMPULSE_KAFKA_BOOTSTRAP"] = info.bootstrap
        env["STREAMPULSE_REDIS_URL"] = info.redis_url
    for name, value in settings.items():
        env[f"STREAMPULSE_{name.upper()}"] = value
    return env


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets on ``topic`` (partitions without one are absent)."""

    async def _read() -> dict[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        return {
            tp.partition: meta.offset
            for tp, meta in offsets.items()
            if tp.topic == topic and meta.offset >= 0
        }

    return asyncio.run(_read())


@dataclass(frozen=True)
class Raw:
    """One record to produce as-is: the fault tests write what no well-behaved producer would."""

    value: bytes
    key: bytes | None = b"7"
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None  # None: the producer's clock (not the event time)
    partition: int | None = None


def produce_raw(bootstrap: str, topic: str, records: Iterable[Raw]) -> list[tuple[int, int]]:
    """Produce each record and wait for its ack; returns (partition, offset) of each."""

    async def _send() -> list[tuple[int, int]]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2 << 20, acks="all")
        await producer.start()
        out = []
        try:
            for rec in records:
                meta = await producer.send_and_wait(
                    topic,
                    rec.value,
                    key=rec.key,
                    headers=list(rec.headers),
                    timestamp_ms=rec.timestamp_ms,
                    partition=rec.partition,
                )
                out.append((meta.partition, meta.offset))
        finally:
            await producer.stop()
        return out

    return asyncio.run(_send())


def first_final_window(redis_url: str, app_id: str) -> bool:
    return bool(redis_final_windows(redis_url, app_id))


def now_ms() -> int:
    return round(time.time() * 1000)


def topic_of(app_id: str, base: str) -> str:
    """The contract's topic naming: bare names for the default app id, prefixed for any other."""
    return base if app_id == "streampulse" else f"{app_id}.{base}"


def worker_log_problems(text: str) -> list[str]:
    """Lines a healthy worker never logs: a crash, or a subscription missing its topic."""
    needles = ("Ignoring missing topic", "Crashed reason=")
    return [line for line in text.splitlines() if any(n in line for n in needles)]


def not_idle_marker(rec: Record) -> bool:
    """False for a worker's idle marker (exact control header, kind ``idle``)."""
    return not any(k == CONTROL_HEADER and v == IDLE.encode() for k, v in rec.headers)


def read_late(bootstrap: str, topic: str) -> set[tuple[str, str]]:
    """(trip_id, window size) of every record in the late topic."""
    out = set()
    for rec in read_topic(bootstrap, topic):
        body = json.loads(rec.value or b"")
        out.add((body["event"]["trip_id"], body["window"]))
    return out


def late_records(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> set[tuple[str, str]]:
    """The late topic's records once at least ``expected`` are there (or what is there at the timeout)."""
    try:
        return (
            wait_for(
                lambda: seen if len(seen := read_late(bootstrap, topic)) >= expected else None,
                timeout,
                interval=1,
                what=f"{expected} late records",
            )
            or set()
        )
    except AssertionError:
        return read_late(bootstrap, topic)
