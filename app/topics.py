"""Topics, declared once from the settings; agents import them from here."""

from __future__ import annotations

from faust.types import TopicT

from app.main import app, settings
from app.settings import EVENTS_TOPIC_CONFIG


def _topic(name: str, config: dict[str, str] | None = None) -> TopicT:
    return app.topic(
        name,
        partitions=settings.partitions,
        key_serializer="raw",
        value_serializer="raw",
        internal=True,
        config=config,
    )


events_topic = _topic(settings.events, EVENTS_TOPIC_CONFIG)
dlq_topic = _topic(settings.dlq)
late_topic = _topic(settings.late)
results_topic = _topic(settings.results)


@app.task
async def declare_output_topics() -> None:
    """Faust declares the topics its agents read; the ones only written to are declared here
    (the broker does not auto-create topics)."""
    for topic in (dlq_topic, late_topic, results_topic):
        await topic.maybe_declare()


#: Header of a results record: when the worker closed the window (ms since the epoch), from
#: which the sink measures close -> final-in-Redis.
CLOSED_AT_HEADER = "streampulse-closed-at-ms"
