"""(e) A bare aiokafka consumer that decodes each record and counts it: the ceiling for a Python
consumer of this topic. It computes nothing, so it has no results to check."""

from __future__ import annotations

import asyncio

import orjson
from aiokafka import AIOKafkaConsumer

from app.control import control_kind
from bench.contenders.report import Report, contender_args


async def consume() -> None:
    args = contender_args(__doc__ or "")
    report = Report(args.report)
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        max_poll_records=10_000,
    )
    await consumer.start()
    try:
        while report.records < args.records:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                report.consumed(len(messages))
                for msg in messages:
                    if control_kind(msg.headers) is None:
                        orjson.loads(msg.value)
                        report.events += 1
            if batch:
                report.result_made()
        report.finish()
    finally:
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(consume())
