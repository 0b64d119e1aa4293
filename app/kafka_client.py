"""How every StreamPulse Kafka client connects: one place for bootstrap and security options.

The worker (through Faust), the replayer, topic provisioning, the readiness check, the tests and
the benchmark all build their aiokafka clients from :func:`client_kwargs`, so a change of
listener or credentials is made once.
"""

from __future__ import annotations

from typing import Any

from app.settings import Settings


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments shared by aiokafka's producer, consumer and admin client."""
    return {"bootstrap_servers": settings.kafka_bootstrap}


def faust_kwargs(settings: Settings) -> dict[str, Any]:
    """What ``faust.App`` needs to connect the same way (broker list and credentials)."""
    return {"broker": [f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")]}
