"""(d) A bare Faust agent that only iterates its stream: Faust's own ceiling on this topic (about
three event-loop turns per message, see the Faust pitfalls note). It computes nothing."""

from __future__ import annotations

from typing import Any

from bench.contenders.faust_app import faust_app, run_worker
from bench.contenders.report import Report, contender_args

args = contender_args(__doc__ or "")
report = Report(args.report)
app = faust_app(args, "memory://")
topic = app.topic(args.topic, key_serializer="raw", value_serializer="raw")


@app.agent(topic)
async def iterate(stream: Any) -> None:
    async for _value in stream:
        report.consumed()
        if report.records >= args.records:
            report.result_made()
            report.finish()


if __name__ == "__main__":
    run_worker(app)
