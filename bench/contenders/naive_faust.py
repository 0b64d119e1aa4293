"""(b) The naive Faust pipeline: per event, read and write a ``.tumbling()`` windowed table for
each window size, the way Faust's own examples (``examples/windowed_aggregation.py``) do.

Windows are keyed by region and placed by the record timestamp (``relative_to_stream``), the
event time. ``expires`` is set far beyond the data so that Faust's wall-clock expiry (see the
Faust pitfalls note) deletes nothing during the run: what is compared is the table's content
once every record has been applied. The values are decoded with orjson instead of a
``faust.Record`` model, which only makes this contender faster.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson

from app.control import control_kind
from bench.contenders.faust_app import faust_app, run_worker
from bench.contenders.report import Report, contender_args

SIZES_S = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600}
EXPIRES = timedelta(days=3650)

args = contender_args(__doc__ or "")
report = Report(args.report)
app = faust_app(args, "rocksdb://")
topic = app.topic(args.topic, key_serializer="raw", value_serializer="raw")
tables = {
    name: app.Table(f"trips-{name}", default=list, partitions=args.partitions)
    .tumbling(size_s, expires=EXPIRES)
    .relative_to_stream()
    for name, size_s in SIZES_S.items()
}


def dump_windows() -> None:
    """Every (region, window) of every table, for the harness to compare with the reference."""
    for name, wrapper in tables.items():
        for key, value in wrapper.table.data.items():
            region, (start_s, _end_s) = key
            count, revenue, fare_min, fare_max = value
            report.window(name, int(region), round(start_s * 1000), (count, revenue, fare_min, fare_max))


@app.agent(topic)
async def aggregate(stream: Any) -> None:
    async for event in stream.events():
        report.consumed()
        if control_kind(event.message.headers) is None:
            trip = orjson.loads(event.value)
            region, fare = str(trip["region_id"]), trip["fare"]
            for table in tables.values():
                agg = table[region].value()
                if agg:
                    agg = [agg[0] + 1, agg[1] + fare, min(agg[2], fare), max(agg[3], fare)]
                else:
                    agg = [1, fare, fare, fare]
                table[region] = agg
            report.events += 1
        if report.records >= args.records:
            report.result_made()
            dump_windows()
            report.finish()


if __name__ == "__main__":
    run_worker(app)
