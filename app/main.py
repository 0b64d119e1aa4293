"""The Faust app, built from the one settings object (Faust's own env reading is not used).

``faust -A app worker`` finds ``app`` here; agents and tables are autodiscovered from the
``agents`` and ``tables`` packages. The worker's web server (``WEB_PORT``) serves ``/metrics`` and
``/ready`` (app/readiness.py), and Faust's worker installs the logging of app/logs.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import faust
from aiokafka.errors import KafkaError
from faust import web
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.tables.manager import TableManager

from app import internals, kafka_pacing
from app.kafka_client import faust_kwargs
from app.logs import logging_config
from app.provision import ensure_topics
from app.readiness import READY_PATH, WorkerState, worker_readiness
from app.settings import Settings, get_settings

#: How often the consumer refreshes its metadata: a subscribed topic that appears after the
#: worker joined (deleted and re-created, say) is picked up by a rebalance this soon.
METADATA_MAX_AGE_MS = 10_000
#: How long the producer waits for a produce request's answer, which is also how long the broker
#: may hold it and how long a batch may wait in the producer: the Java client's 30 s, not Faust's
#: 20 minutes: a produce request the broker never answers (a connection left half-open by a
#: restart, a request held in its purgatory) would hold a batch's sends, and with them the
#: worker's partitions, that long.
PRODUCER_REQUEST_TIMEOUT_S = 30.0
PROVISION_RETRY_S = 1.0
PROVISION_RETRY_MAX_S = 10.0

log = logging.getLogger(__name__)


class StreamPulseApp(faust.App):
    """Faust's app, which provisions every topic before its consumer subscribes."""

    streampulse_settings: Settings
    topics_provisioned = False

    async def on_first_start(self) -> None:
        """Provision the topics, retrying for as long as the broker cannot answer: a worker
        started while the broker is down or still starting waits for it instead of exiting
        (a topic with the wrong partition count is still fatal, and says so)."""
        await super().on_first_start()
        backoff = PROVISION_RETRY_S
        while True:
            try:
                await ensure_topics(self.streampulse_settings)
                break
            except (TimeoutError, KafkaError, OSError) as exc:
                log.warning("provisioning the topics failed (%r); retrying in %.0fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, PROVISION_RETRY_MAX_S)
        self.topics_provisioned = True


def worker_state(app: StreamPulseApp) -> WorkerState:
    """The worker's side of the readiness rule, from Faust's public state. The consumer is only
    asked for its assignment once one was received: before that it may not exist yet."""
    joined = app.rebalancing_count > 0
    events = app.streampulse_settings.events
    return WorkerState(
        topics_provisioned=app.topics_provisioned,
        rebalances=app.rebalancing_count,
        rebalancing=app.rebalancing,
        recovered=cast(TableManager, app.tables).recovery.completed.is_set(),
        in_recovery=app.in_recovery,
        partitions=sum(tp.topic == events for tp in app.consumer.assignment()) if joined else 0,
    )


def install_readiness(app: StreamPulseApp) -> None:
    @app.page(READY_PATH)
    async def ready(self: web.View, request: web.Request) -> web.Response:
        readiness = worker_readiness(worker_state(app))
        return self.json(readiness.body(), status=readiness.status)


def create_app(settings: Settings) -> StreamPulseApp:
    internals.check_versions()
    kafka_pacing.pace_metadata_updates()
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    session_timeout_s = settings.session_timeout_ms / 1000
    app = StreamPulseApp(
        settings.app_id,
        **faust_kwargs(settings),
        store="rocksdb://",
        datadir=str(settings.worker_data_dir),
        autodiscover=["agents", "tables"],
        origin="app",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.topic_replication_factor,
        topic_allow_declare=True,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=session_timeout_s,
        broker_heartbeat_interval=max(0.5, session_timeout_s / 10),
        consumer_metadata_max_age_ms=METADATA_MAX_AGE_MS,
        producer_acks=-1,
        producer_request_timeout=PRODUCER_REQUEST_TIMEOUT_S,
        producer_linger_ms=5,
        producer_max_batch_size=512 * 1024,
        producer_compression_type="lz4",
        stream_buffer_maxsize=16_384,
        stream_wait_empty=False,
        table_cleanup_interval=3600.0,
        web_enabled=True,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        logging_config=logging_config(settings),
    )
    app.streampulse_settings = settings
    install_readiness(app)
    internals.install_batch_consumer(app)
    return app


settings = get_settings()
app = create_app(settings)
#: Faust's own stream/table/consumer metrics, served with ours on the worker's /metrics.
setup_prometheus_sensors(app, name_prefix="streampulse_faust")
