"""The worker's own observations for Prometheus that no batch produces: consumer lag per
partition, and one info series per known zone for the dashboards' joins."""

from __future__ import annotations

import logging
from typing import Any

from app import metrics
from app.main import app, settings
from app.zones import load_zones

log = logging.getLogger(__name__)


@app.timer(5.0)
async def observe_consumer_lag() -> None:
    """Records not yet committed per assigned partition (what the lag alert watches): counted
    from the committed offset, not the fetch position, so a stalled partition shows."""
    consumer: Any = app.consumer
    try:
        for tp in consumer.assignment():
            lag = consumer.uncommitted(tp)
            if lag is not None:
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
    except Exception as exc:  # the assignment can change under the loop during a rebalance
        log.debug("consumer lag not observed this time: %r", exc)


@app.task
async def publish_region_names() -> None:
    """One streampulse_region_info series per known zone, for the dashboards' joins."""
    for region_id, zone in load_zones(settings.zones_file).items():
        metrics.REGION_INFO.labels(str(region_id), zone.name or "", zone.borough or "").set(1)
