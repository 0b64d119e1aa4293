"""The "Trip metrics" dashboard: trips, revenue, fares and durations by region and borough.

Prometheus sees trips as the worker processes them, so "over time" here is processing time; the
event-time windows themselves are served by the API from Redis. Region names and boroughs come from
``streampulse_region_info`` (one series per TLC zone, value 1), joined on ``region_id``.
"""

from __future__ import annotations

from grafanalib.core import Dashboard

from .common import RANGE, RATE, Query, Section, dashboard, stat, table, timeseries

UID = "streampulse-trip-metrics"
#: One series per region whichever worker exports it, so joins are many-to-one.
REGIONS = "max by (region_id, region_name, borough) (streampulse_region_info)"
TOP = 10


def _by_borough(counter: str, *, per_minute: bool = True) -> str:
    per_second = f"sum by (borough) (rate({counter}[{RATE}]) * on (region_id) group_left (borough) {REGIONS})"
    return f"{per_second} * 60" if per_minute else per_second


def _top_regions(counter: str, window: str, per_minute: bool) -> str:
    increase = "rate" if per_minute else "increase"
    per_region = (
        f"sum by (region_id, region_name, borough) "
        f"({increase}({counter}[{window}]) * on (region_id) group_left (region_name, borough) {REGIONS})"
    )
    return f"topk({TOP}, {per_region}){' * 60' if per_minute else ''}"


def _fare_or_duration(metric: str, mean_legend: str) -> list[Query]:
    quantiles = [
        Query(
            f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket[{RATE}])))",
            f"p{round(q * 100)}",
        )
        for q in (0.5, 0.9, 0.99)
    ]
    mean = Query(f"sum(rate({metric}_sum[{RATE}])) / sum(rate({metric}_count[{RATE}]))", mean_legend)
    return [mean, *quantiles]


def build() -> Dashboard:
    trips = "streampulse_trips_total"
    revenue = "streampulse_revenue_dollars_total"
    avg_fare = f"sum(rate({revenue}[{RATE}])) / sum(rate({trips}[{RATE}]))"
    volume = Section(
        "Volume",
        [
            stat(
                "Trips per minute",
                "Valid trips processed per minute.",
                Query(f"sum(rate({trips}[{RATE}])) * 60"),
            ),
            stat(
                "Revenue per minute",
                "Sum of fares of the trips processed per minute.",
                Query(f"sum(rate({revenue}[{RATE}])) * 60"),
                unit="currencyUSD",
            ),
            stat("Average fare", "Revenue over trips.", Query(avg_fare), unit="currencyUSD"),
            stat(
                "Regions with trips",
                "Regions with at least one trip over the dashboard's time range.",
                Query(f"count(sum by (region_id) (increase({trips}[{RANGE}])) > 0)"),
            ),
        ],
    )
    boroughs = Section(
        "By borough",
        [
            timeseries(
                "Trips per minute by borough",
                "Trips processed per minute, stacked by the borough of the pickup zone.",
                [Query(_by_borough(trips), "{{borough}}")],
                stacked=True,
                width=8,
            ),
            timeseries(
                "Revenue per minute by borough",
                "Fares of the trips processed per minute, stacked by borough.",
                [Query(_by_borough(revenue), "{{borough}}")],
                unit="currencyUSD",
                stacked=True,
                width=8,
            ),
            timeseries(
                "Average fare by borough",
                "Revenue over trips in each borough.",
                # Per second on both sides: `a * 60 / b * 60` would be (a * 60 / b) * 60, 3600 times the fare.
                [
                    Query(
                        f"{_by_borough(revenue, per_minute=False)} / {_by_borough(trips, per_minute=False)}",
                        "{{borough}}",
                    )
                ],
                unit="currencyUSD",
                width=8,
            ),
        ],
    )
    regions = Section(
        "By region",
        [
            timeseries(
                f"Trips per minute, top {TOP} regions",
                f"The {TOP} busiest pickup zones at each point in time.",
                [Query(_top_regions(trips, RATE, per_minute=True), "{{region_name}} ({{borough}})")],
            ),
            timeseries(
                f"Revenue per minute, top {TOP} regions",
                f"The {TOP} pickup zones with the most fare revenue at each point in time.",
                [Query(_top_regions(revenue, RATE, per_minute=True), "{{region_name}} ({{borough}})")],
                unit="currencyUSD",
            ),
            table(
                "Top regions by trips",
                f"The {TOP} pickup zones with the most trips over the dashboard's time range.",
                Query(_top_regions(trips, RANGE, per_minute=False)),
            ),
            table(
                "Top regions by revenue",
                f"The {TOP} pickup zones with the most fare revenue over the dashboard's time range.",
                Query(_top_regions(revenue, RANGE, per_minute=False)),
                unit="currencyUSD",
            ),
        ],
    )
    fares = Section(
        "Fare and duration",
        [
            timeseries(
                "Fare",
                "Mean fare and fare percentiles of the trips processed.",
                _fare_or_duration("streampulse_trip_fare_dollars", "mean"),
                unit="currencyUSD",
            ),
            timeseries(
                "Trip duration",
                "Mean trip duration (drop-off minus pickup) and its percentiles.",
                _fare_or_duration("streampulse_trip_duration_seconds", "mean"),
                unit="s",
            ),
        ],
    )
    return dashboard(
        UID,
        "StreamPulse / Trip metrics",
        "Trips and revenue over (processing) time by region and borough, top regions, fares and "
        "durations, from the worker's business metrics.",
        [volume, boroughs, regions, fares],
    )
