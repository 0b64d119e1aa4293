"""Metadata requests of an aiokafka client are spaced by its retry backoff (app/kafka_pacing.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaClient

from app import kafka_pacing

ROOT = Path(__file__).resolve().parents[2]


def test_failed_metadata_requests_are_spaced_by_the_retry_backoff() -> None:
    """A client that knows no broker fails each request at once: unpaced, a producer with a
    leaderless partition asks again immediately, thousands of times a second."""
    kafka_pacing.pace_metadata_updates()
    paced = AIOKafkaClient._metadata_update
    kafka_pacing.pace_metadata_updates()
    assert AIOKafkaClient._metadata_update is paced  # installed once, however often called

    async def five_requests() -> tuple[list[bool], float]:
        client = AIOKafkaClient(bootstrap_servers="127.0.0.1:9", retry_backoff_ms=100)
        start = time.monotonic()
        answers = [await client._metadata_update(client.cluster, set()) for _ in range(5)]
        return answers, time.monotonic() - start

    answers, elapsed = asyncio.run(five_requests())
    assert answers == [False] * 5
    assert 0.4 <= elapsed < 5, elapsed


def test_the_pause_is_per_client() -> None:
    """Two clients do not wait for each other: each one's first request goes out at once."""
    kafka_pacing.pace_metadata_updates()

    async def first_requests() -> float:
        clients = [AIOKafkaClient(bootstrap_servers="127.0.0.1:9", retry_backoff_ms=1000) for _ in range(3)]
        start = time.monotonic()
        for client in clients:
            await client._metadata_update(client.cluster, set())
        return time.monotonic() - start

    assert asyncio.run(first_requests()) < 0.9


def test_the_replayer_does_not_import_faust() -> None:
    """Faust reads the command line when imported and would take the replayer's ``--loop N``
    for the name of an event loop to install."""
    code = "import sys, producers.replay; sys.exit('faust' in sys.modules)"
    command = [sys.executable, "-c", code]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr or "producers.replay imported faust"
