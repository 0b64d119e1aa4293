"""Topic provisioning: the one place that creates StreamPulse's topics and waits for them.

A consumer that subscribes before the broker's metadata lists a topic gets an assignment
without it and only notices at its next metadata refresh, minutes later: a new worker or a new
app id then processes nothing for that long. So every entry point — the worker before its
consumer starts, the replayer before it produces, the Compose topic-init container, the tests —
calls :func:`ensure_topics`, which creates what is missing and returns only once a fresh
metadata request shows every topic with all its partitions led.

``streampulse-provision`` (``python -m app.provision``) runs it from the settings (the Compose
topic-init service).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from app.kafka_client import client_kwargs
from app.logs import configure_logging
from app.settings import EVENTS_TOPIC_CONFIG, Settings, SettingsError, get_settings
from app.version import program_name, version_line

log = logging.getLogger(__name__)

#: The worker's one table (open windows and partition progress); Faust names its changelog
#: ``<app id>-<table name>-changelog``.
STATE_TABLE = "window-state"
_TOPIC_ALREADY_EXISTS = 36
_UNKNOWN_TOPIC = 3
_LEADER_NOT_AVAILABLE = 5


class ProvisioningError(RuntimeError):
    """A topic cannot be created or does not match the settings (the message says which)."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def changelog_topic(settings: Settings) -> str:
    return f"{settings.app_id}-{STATE_TABLE}-changelog"


def topic_specs(settings: Settings, extra_events_topics: Sequence[str] = ()) -> list[TopicSpec]:
    """Every topic the app reads or writes. Each has ``PARTITIONS`` partitions: the changelog
    partition of a window must be its source partition, and results are keyed like events."""
    n = settings.partitions
    events = [settings.events, *(t for t in extra_events_topics if t != settings.events)]
    return [
        *(TopicSpec(name, n, dict(EVENTS_TOPIC_CONFIG)) for name in events),
        TopicSpec(settings.dlq, n),
        TopicSpec(settings.late, n),
        TopicSpec(settings.results, n),
        TopicSpec(changelog_topic(settings), n, {"cleanup.policy": "compact"}),
    ]


async def ensure_topics(
    settings: Settings,
    specs: Sequence[TopicSpec] | None = None,
    timeout_s: float = 60.0,
) -> None:
    """Create the missing topics, then wait until the broker's metadata shows all of them.

    Raises :class:`ProvisioningError` when a topic exists with another partition count (a worker
    would refuse it later, less clearly) or the broker does not show them within ``timeout_s``.
    """
    wanted = list(specs if specs is not None else topic_specs(settings))
    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in wanted if s.name not in existing]
        if missing:
            await _create(admin, missing, settings)
        await _wait_visible(admin, wanted, timeout_s)
    finally:
        await admin.close()


async def _create(admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec], settings: Settings) -> None:
    replication = settings.topic_replication_factor
    isr = {"min.insync.replicas": str(settings.topic_min_insync_replicas)}
    new = [NewTopic(s.name, s.partitions, replication, topic_configs=isr | s.config) for s in specs]
    response = await admin.create_topics(new)
    for name, code, *rest in response.topic_errors:
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            message = rest[0] if rest and rest[0] else f"error code {code}"
            raise ProvisioningError(f"cannot create topic {name}: {message}")
    log.info("created topics %s", ", ".join(s.name for s in specs))


async def _wait_visible(admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    expected = {s.name: s.partitions for s in specs}
    while True:
        pending = _not_ready(await admin.describe_topics(list(expected)), expected)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise ProvisioningError(f"topics not ready after {timeout_s:.0f}s: {'; '.join(pending)}")
        await asyncio.sleep(0.2)


def _not_ready(described: list[dict[str, Any]], expected: dict[str, int]) -> list[str]:
    """Why each topic is not usable yet (empty when all are); a wrong partition count is fatal."""
    seen = {t["topic"]: t for t in described}
    pending = []
    for name, partitions in expected.items():
        topic = seen.get(name)
        if topic is None or topic["error_code"] in (_UNKNOWN_TOPIC, _LEADER_NOT_AVAILABLE):
            pending.append(f"{name}: not in the metadata yet")
            continue
        if topic["error_code"]:
            raise ProvisioningError(f"topic {name}: error code {topic['error_code']}")
        parts = topic["partitions"]
        if parts and len(parts) != partitions:
            raise ProvisioningError(
                f"topic {name} has {len(parts)} partitions, the settings say {partitions} "
                "(STREAMPULSE_PARTITIONS is fixed for the life of an app id)"
            )
        if len(parts) < partitions or any(p["leader"] < 0 for p in parts):
            pending.append(f"{name}: partitions without a leader")
    return pending


def main(argv: list[str] | None = None) -> int:
    """Provision the topics of the configured app id (the Compose topic-init service)."""
    parser = argparse.ArgumentParser(prog=program_name("app.provision"), description=main.__doc__)
    parser.add_argument("--version", action="version", version=version_line(parser.prog))
    parser.parse_args(argv)
    try:
        settings = get_settings()
        configure_logging(settings)
        asyncio.run(ensure_topics(settings))
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (ProvisioningError, KafkaError, OSError) as exc:
        print(f"provisioning failed: {exc}", file=sys.stderr)
        return 1
    print("topics ready: " + ", ".join(s.name for s in topic_specs(settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
