"""The "Pipeline health" dashboard: is data flowing, how far behind, how fast, what is failing.

Queries use the worker metrics of app/metrics.py, the API metrics of api/metrics.py and Faust's own
sensor (prefix ``streampulse_faust``); docs/monitoring.md describes every panel.
"""

from __future__ import annotations

from grafanalib.core import Dashboard

from .common import OR_ZERO, RATE, Query, Section, dashboard, stat, timeseries

UID = "streampulse-pipeline-health"
#: API queries made by users: /health answers 503 by design when results are stale and /metrics
#: is Prometheus itself, so both would distort error ratios and latency.
QUERY_ROUTES = 'route!~"/health|/metrics"'


def _quantiles(metric: str, by: str = "") -> list[Query]:
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    return [
        Query(
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}[{RATE}])))",
            f"p{round(q * 100)}{suffix}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def build() -> Dashboard:
    processed_rate = f"sum(rate(streampulse_events_processed_total[{RATE}]))"
    api_5xx_ratio = (
        f'(sum(rate(streampulse_api_requests_total{{status=~"5..", {QUERY_ROUTES}}}[{RATE}])){OR_ZERO})'
        f" / sum(rate(streampulse_api_requests_total{{{QUERY_ROUTES}}}[{RATE}]))"
    )
    overview = Section(
        "Overview",
        [
            stat(
                "Workers up",
                "Worker targets answering Prometheus scrapes.",
                Query('sum(up{job="streampulse-worker"})'),
            ),
            stat(
                "Events processed / s",
                "Valid trip events folded into windows per second, all workers.",
                Query(processed_rate),
                unit="ops",
            ),
            stat(
                "Consumer lag (records)",
                "Records behind the end of the input topics, summed over partitions.",
                Query("sum(max by (topic, partition) (streampulse_consumer_lag_messages))"),
            ),
            stat(
                "API 5xx ratio",
                "Share of user queries (not /health, /metrics) that failed with a server error.",
                Query(api_5xx_ratio),
                unit="percentunit",
            ),
        ],
    )
    throughput = Section(
        "Throughput",
        [
            timeseries(
                "Events processed per second",
                "Valid events folded into windows, per worker and in total.",
                [
                    Query(
                        f"sum by (instance) (rate(streampulse_events_processed_total[{RATE}]))",
                        "{{instance}}",
                    ),
                    Query(processed_rate, "total"),
                ],
                unit="ops",
            ),
            timeseries(
                "Records consumed per second by topic",
                "Faust's count of records received, by topic (events, results, changelogs in recovery).",
                [
                    Query(
                        f"sum by (topic) (rate(streampulse_faust_messages_received_per_topic_total[{RATE}]))",
                        "{{topic}}",
                    )
                ],
                unit="ops",
            ),
            timeseries(
                "Windows finalized per second",
                "Windows whose watermark passed their end, emitted once, by window size.",
                [
                    Query(
                        f"sum by (window) (rate(streampulse_windows_finalized_total[{RATE}]))",
                        "{{window}}",
                    )
                ],
                unit="ops",
            ),
            timeseries(
                "API requests per second by status",
                "Every API request, including /health and /metrics, by HTTP status.",
                [
                    Query(
                        f"sum by (status) (rate(streampulse_api_requests_total[{RATE}]))",
                        "{{status}}",
                    )
                ],
                unit="reqps",
                stacked=True,
            ),
        ],
    )
    lag = Section(
        "Lag and event time",
        [
            timeseries(
                "Consumer lag per partition",
                "Records behind each partition's high watermark (one series per partition, "
                "whichever worker reports it).",
                [
                    Query(
                        "max by (topic, partition) (streampulse_consumer_lag_messages)",
                        "{{topic}}/{{partition}}",
                    )
                ],
            ),
            timeseries(
                "Watermark delay per partition",
                "Wall clock minus the event-time watermark. In a replay of old data this is the data's "
                "age; live, it is how long a window waits before it can become final.",
                [
                    Query(
                        "max by (partition) (streampulse_watermark_delay_seconds)",
                        "partition {{partition}}",
                    )
                ],
                unit="s",
            ),
            timeseries(
                "Event-time lag per partition",
                "Wall clock minus the newest event time seen on the partition.",
                [
                    Query(
                        "max by (partition) (streampulse_event_time_lag_seconds)",
                        "partition {{partition}}",
                    )
                ],
                unit="s",
            ),
            timeseries(
                "Open windows",
                "Windows held open in each worker's state, waiting for the watermark.",
                [Query("sum by (instance) (streampulse_open_windows)", "{{instance}}")],
            ),
        ],
    )
    latency = Section(
        "Latency",
        [
            timeseries(
                "Event to Redis (open windows)",
                "From an event's record timestamp to its open window written to Redis; the target is "
                "150 ms p50, 500 ms p99.",
                _quantiles("streampulse_open_window_latency_seconds_bucket"),
                unit="s",
            ),
            timeseries(
                "Window close to final result in Redis",
                "From the watermark passing a window's end to its final result written to Redis; the "
                "target is 250 ms p50, 1 s p99.",
                _quantiles("streampulse_final_window_latency_seconds_bucket"),
                unit="s",
            ),
            timeseries(
                "Redis to /stream subscribers",
                "From the sink's Redis write of a window update to the API sending it to a /stream "
                "subscriber; the target is 100 ms p99.",
                _quantiles("streampulse_api_push_latency_seconds_bucket"),
                unit="s",
            ),
            timeseries(
                "/stream subscribers",
                "Open push connections per API process, and subscribers dropped for reading too slowly.",
                [
                    Query("sum by (instance) (streampulse_api_push_subscribers)", "{{instance}}"),
                    Query(f"sum(increase(streampulse_api_push_dropped_total[{RATE}]))", "dropped"),
                ],
            ),
            timeseries(
                "Redis sink write duration by kind",
                "Duration of one batch write of final or live windows to Redis.",
                _quantiles("streampulse_sink_write_seconds_bucket", "kind"),
                unit="s",
            ),
            timeseries(
                "Worker batch stages p99 by stage",
                "Where a record's time goes inside the worker, per batch: waiting in the inbox, fold,"
                " results acknowledged, RocksDB writes, changelog acknowledged, waiting for the live mirror.",
                [
                    Query(
                        "histogram_quantile(0.99, sum by (le, stage) "
                        f"(rate(streampulse_batch_stage_seconds_bucket[{RATE}])))",
                        "{{stage}}",
                    )
                ],
                unit="s",
            ),
            timeseries(
                "API query latency",
                "Time to answer user queries (not /health, /metrics); the target is 10 ms p99.",
                _quantiles(f"streampulse_api_request_duration_seconds_bucket{{{QUERY_ROUTES}}}"),
                unit="s",
            ),
            timeseries(
                "API Redis round trips p99 by operation",
                "Duration of the Redis commands and pipelines the API makes, by operation.",
                [
                    Query(
                        "histogram_quantile(0.99, sum by (le, operation) "
                        f"(rate(streampulse_api_redis_call_duration_seconds_bucket[{RATE}])))",
                        "{{operation}}",
                    )
                ],
                unit="s",
                width=24,
            ),
        ],
    )
    errors = Section(
        "Errors, dead letters and late events",
        [
            timeseries(
                "Dead-letter rate by reason",
                "Records routed to the dead-letter topic per second, by validation reason.",
                [
                    Query(
                        f"sum by (reason) (rate(streampulse_events_invalid_total[{RATE}])){OR_ZERO}",
                        "{{reason}}",
                    )
                ],
                unit="ops",
            ),
            timeseries(
                "Late events per second by window size",
                "Events that missed an already final window (one per window size missed).",
                [
                    Query(
                        f"sum by (window) (rate(streampulse_events_late_total[{RATE}])){OR_ZERO}",
                        "{{window}}",
                    )
                ],
                unit="ops",
            ),
            timeseries(
                "Late ratio by window size",
                "Late events per window size over all processed events; the alert fires above 1 %.",
                [
                    Query(
                        f"(sum by (window) (rate(streampulse_events_late_total[{RATE}]))"
                        f" / ignoring (window) group_left {processed_rate}){OR_ZERO}",
                        "{{window}}",
                    )
                ],
                unit="percentunit",
            ),
            timeseries(
                "Redis sink errors by kind",
                "Failed Redis writes per second (retried), by final or live windows.",
                [
                    Query(
                        f"sum by (kind) (rate(streampulse_sink_errors_total[{RATE}])){OR_ZERO}",
                        "{{kind}}",
                    )
                ],
                unit="ops",
            ),
            timeseries(
                "API 5xx ratio and Redis errors",
                "Share of user queries failing with 5xx, and failed API Redis round trips per second.",
                [
                    Query(api_5xx_ratio, "5xx ratio"),
                    Query(
                        f"sum by (operation) (rate(streampulse_api_redis_errors_total[{RATE}])){OR_ZERO}",
                        "Redis errors {{operation}}",
                    ),
                ],
            ),
            timeseries(
                "Redelivered events and producer errors",
                "Events skipped because their offset was already applied (after a crash or rebalance), "
                "and records Faust failed to produce.",
                [
                    Query(f"sum(rate(streampulse_events_duplicate_total[{RATE}]))", "duplicates skipped"),
                    Query(
                        f"sum(rate(streampulse_faust_total_error_messages_sent_total[{RATE}]))",
                        "producer send errors",
                    ),
                ],
                unit="ops",
            ),
        ],
    )
    return dashboard(
        UID,
        "StreamPulse / Pipeline health",
        "Throughput, lag, watermark delay, latency, errors, dead-letter and late rates of the "
        "StreamPulse workers and API.",
        [overview, throughput, lag, latency, errors],
    )
