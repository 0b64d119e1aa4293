"""(c) Quix Streams: the same four tumbling windows with its ``.agg()`` aggregations, RocksDB state
(changelogged), ``processing_guarantee="exactly-once"``, final windows produced to a topic.

Lateness as in the contract: 30 s of grace, windows closed per partition (``closing_strategy=
"partition"``, like StreamPulse's per-partition watermark). The end-of-stream control record
is the one thing translated: Quix has no such record, so its timestamp is moved past every open
window's end plus grace, which closes the partition's last windows exactly as StreamPulse's
control handling does; its own window (under the marker's key ``end-of-stream``, see
bench/kafka.py) is dropped from the results.
"""

from __future__ import annotations

from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Max, Min, Sum

from app.control import END_OF_STREAM, control_kind
from bench.contenders.report import Report, contender_args

SIZES_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000}
GRACE_MS = 30_000
CONTROL_KEY = END_OF_STREAM
CONTROL_VALUE = {"fare": 0.0, "duration": 0.0, "distance": 0.0}
#: How far past the end-of-stream event time a control record is placed: beyond the end of the
#: largest window containing that time, plus the grace.
CONTROL_SHIFT_MS = max(SIZES_MS.values()) + GRACE_MS


def timestamp(value: Any, headers: Any, ts_ms: int, ts_type: Any) -> int:
    if control_kind(headers) is not None:
        return ts_ms + CONTROL_SHIFT_MS
    return ts_ms


def main() -> None:
    args = contender_args(__doc__ or "")
    report = Report(args.report)
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=str(args.data_dir),
        processing_guarantee="exactly-once",
        loglevel="WARNING",
    )
    source = app.topic(args.topic, key_deserializer="str", timestamp_extractor=timestamp)
    results = app.topic(f"{args.group}.results", key_serializer="str")
    sdf = app.dataframe(source)

    def consumed(value: Any, key: Any, ts_ms: int, headers: Any) -> Any:
        report.consumed()
        if control_kind(headers) is not None:
            return CONTROL_VALUE
        report.events += 1
        return value

    sdf = sdf.apply(consumed, metadata=True)

    def collector(size: str) -> Any:
        def collect(window: dict[str, Any], key: Any, ts_ms: int, headers: Any) -> None:
            if key == CONTROL_KEY:
                return
            row = (window["count"], window["revenue"], window["fare_min"], window["fare_max"])
            report.window(size, int(key), window["start"], row)
            report.result_made()
            if report.windows >= args.windows:
                report.finish()

        return collect

    for size, size_ms in SIZES_MS.items():
        (
            sdf.tumbling_window(size_ms, grace_ms=GRACE_MS, name=f"trips-{size}")
            .agg(
                count=Count(),
                revenue=Sum("fare"),
                fare_min=Min("fare"),
                fare_max=Max("fare"),
                duration=Sum("duration"),
                distance=Sum("distance"),
            )
            .final(closing_strategy="partition")
            .update(collector(size), metadata=True)
            .to_topic(results)
        )
    app.run()


if __name__ == "__main__":
    main()
