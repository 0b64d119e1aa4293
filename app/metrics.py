"""StreamPulse's own Prometheus metrics (Faust's sensor adds the stream/table metrics).

Names follow Prometheus conventions: base units in names, ``_total`` counters, bounded labels
(window size, partition, reason code; never a trip id).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# No ``*_created`` series: nobody graphs them, and with per-region counters they doubled what
# every scrape renders on the worker's event loop.
disable_created_metrics()

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

EVENTS_PROCESSED = Counter("streampulse_events_processed_total", "Valid events folded into their windows")
EVENTS_INVALID = Counter(
    "streampulse_events_invalid_total", "Records sent to the dead-letter topic, by reason", ["reason"]
)
EVENTS_LATE = Counter(
    "streampulse_events_late_total", "Events that missed a final window, by window size", ["window"]
)
BATCH_RETRIES = Counter(
    "streampulse_batch_retries_total",
    "Batches that failed midway (e.g. the broker did not acknowledge) and were retried from stored state",
)
POISON_RECORDS = Counter(
    "streampulse_poison_records_total",
    "Records dead-lettered because their batch kept failing and they failed when processed alone",
)
EVENTS_DUPLICATE = Counter(
    "streampulse_events_duplicate_total",
    "Redelivered events skipped because their offset was already applied (after a crash or rebalance)",
)
CONTROL_RECORDS = Counter("streampulse_control_records_total", "Control records processed, by kind", ["kind"])
WINDOWS_FINALIZED = Counter(
    "streampulse_windows_finalized_total", "Windows made final and emitted, by window size", ["window"]
)
OPEN_WINDOWS = Gauge("streampulse_open_windows", "Open windows held in the worker's state", ["partition"])
WATERMARK = Gauge(
    "streampulse_watermark_timestamp_seconds", "Event-time watermark per input partition", ["partition"]
)
WATERMARK_DELAY = Gauge(
    "streampulse_watermark_delay_seconds",
    "Wall clock minus the watermark, per input partition",
    ["partition"],
)
EVENT_TIME_LAG = Gauge(
    "streampulse_event_time_lag_seconds",
    "Wall clock minus the highest event time seen, per input partition",
    ["partition"],
)
CONSUMER_LAG = Gauge(
    "streampulse_consumer_lag_messages",
    "Records of the partition the group has not committed yet (high watermark minus committed offset)",
    ["topic", "partition"],
)
LAST_EVENT_SECONDS = Gauge(
    "streampulse_last_event_processed_timestamp_seconds", "Wall-clock time the worker last processed an event"
)
E2E_LATENCY = Histogram(
    "streampulse_open_window_latency_seconds",
    "Event record timestamp to its open window written to Redis",
    buckets=LATENCY_BUCKETS,
)
FINAL_LATENCY = Histogram(
    "streampulse_final_window_latency_seconds",
    "Window close (watermark passed its end) to the final result written to Redis",
    buckets=LATENCY_BUCKETS,
)
SINK_WRITE_SECONDS = Histogram(
    "streampulse_sink_write_seconds",
    "Redis write duration per batch, by kind",
    ["kind"],
    buckets=LATENCY_BUCKETS,
)
#: Finer at the low end than LATENCY_BUCKETS: a fold or a RocksDB write of a small batch is
#: well under 10 ms.
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_STAGE_SECONDS = Histogram(
    "streampulse_batch_stage_seconds",
    "Per batch, each step between a record's fetch and its open window's Redis write: wait (first"
    " record fetched to the batch taken), fold, publish (results, late and dead letters acknowledged),"
    " store (RocksDB writes), changelog (their changelog acknowledged), mirror_wait (window changed to"
    " the live mirror's write started)",
    ["stage"],
    buckets=STAGE_BUCKETS,
)
BATCH_RECORDS = Histogram(
    "streampulse_batch_records",
    "Records per aggregated batch",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10_000),
)
SINK_ERRORS = Counter("streampulse_sink_errors_total", "Failed Redis writes (retried), by kind", ["kind"])

# Business metrics for the "Trip metrics" dashboard (region_id is bounded: one per zone).
TRIPS = Counter("streampulse_trips_total", "Valid trips processed, by pickup region", ["region_id"])
REVENUE = Counter(
    "streampulse_revenue_dollars_total", "Sum of fares of valid trips, by region", ["region_id"]
)
REGION_INFO = Gauge(
    "streampulse_region_info",
    "Region names (value 1), for joins on region_id",
    ["region_id", "region_name", "borough"],
)
TRIP_FARE = Histogram(
    "streampulse_trip_fare_dollars",
    "Fare of valid trips",
    buckets=(2.5, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 200),
)
TRIP_DURATION = Histogram(
    "streampulse_trip_duration_seconds",
    "Duration of valid trips",
    buckets=(60, 180, 300, 600, 900, 1200, 1800, 2700, 3600, 7200),
)
