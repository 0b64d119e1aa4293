"""The Faust app, built from the one settings object (Faust's own env reading is not used).

``faust -A app worker`` finds ``app`` here; agents and tables are autodiscovered from the
``agents`` and ``tables`` packages.
"""

from __future__ import annotations

import logging

import faust
from faust.sensors.prometheus import setup_prometheus_sensors

from app import batches
from app.kafka_client import faust_kwargs
from app.provision import ensure_topics
from app.settings import Settings, get_settings

#: Loggers that Faust's worker leaves at DEBUG and that log once per produced message: their
#: record formatting alone cost ~8 % of a worker's CPU.
_PER_MESSAGE_LOGGERS = ("aiokafka", "faust.topics")


#: How often the consumer refreshes its metadata: a subscribed topic that appears after the
#: worker joined (deleted and re-created, say) is picked up by a rebalance this soon.
METADATA_MAX_AGE_MS = 10_000


class StreamPulseApp(faust.App):
    """Faust's app, which provisions every topic before its consumer subscribes."""

    streampulse_settings: Settings

    async def on_first_start(self) -> None:
        await super().on_first_start()
        await ensure_topics(self.streampulse_settings)


def create_app(settings: Settings) -> faust.App:
    for name in _PER_MESSAGE_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
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
    )
    app.streampulse_settings = settings
    batches.install(app)
    return app


settings = get_settings()
app = create_app(settings)
#: Faust's own stream/table/consumer metrics, served with ours on the worker's /metrics.
setup_prometheus_sensors(app, name_prefix="streampulse_faust")
