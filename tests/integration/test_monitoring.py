"""The monitoring configuration against a real Prometheus scraping a real worker and API.

The unit tests (tests/unit/test_alert_rules.py, test_dashboards.py) check that every rule and panel
parses and names only exported series; they cannot tell whether a query that parses returns
anything once real processes export real samples. Here Debian's Prometheus scrapes a worker and the
API (with compose/prometheus.yml's job names and rule files) while trips are replayed, records are
dead-lettered, events arrive late and the API answers 200, 404 and 422; then every alert expression
and every panel query must evaluate, every panel query must return a number and every rule group
must be loaded and evaluated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiokafka import AIOKafkaProducer

from support.procs import (
    Proc,
    StackInfo,
    free_port,
    start_api,
    start_replay,
    start_worker,
    wait_for,
    wait_worker_ready,
)
from tests.integration.pipeline import Subscriber, generate_canonical, sorted_tlc_sample
from tests.monitoring import (
    API_JOB,
    WORKER_JOB,
    alert_rules,
    expand_grafana_macros,
    panel_queries,
    rule_files,
    write_prometheus_config,
)

PROMETHEUS = "/usr/bin/prometheus"
#: Many scrapes fit in the 1m rate window the panel queries are evaluated with.
SCRAPE_INTERVAL = "1s"
#: Records the worker cannot parse (not UTF-8, not JSON, incomplete): the replayer validates its
#: input, so only a producer that bypasses it can make the worker dead-letter records.
GARBAGE = [b"\xff\xfe not utf-8", b"{not json", b'{"trip_id": "z", "region_id": 3}']
#: The sample is sparse (a few trips an hour per zone), so nearly every trip closes a window of
#: each size: the worker's most expensive input. The first rows in drop-off order are enough.
TLC_ROWS = 600
#: Dense canonical events after the TLC ones, ~3 % of them late for the 1m windows: more than
#: the late-ratio alert's 1 %.
GENERATED_EVENTS = 1500
#: Replayed over a few seconds so counters rise across several scrapes and rates are not zero.
REPLAY_RATE = "400"
#: Alerts this run must trigger (it dead-letters records and replays late events), and alerts a
#: healthy run must not.
EXPECTED_ALERTS = {"StreamPulseDeadLetters": "firing", "StreamPulseLateRatioHigh": "pending"}
HEALTHY_RUN_QUIET = {"StreamPulseWorkerDown", "StreamPulseNoWorkers", "StreamPulseApiDown"}


class PrometheusApi:
    """The few endpoints of Prometheus's HTTP API the test reads."""

    def __init__(self, port: int) -> None:
        self._client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def close(self) -> None:
        self._client.close()

    def ready(self) -> bool:
        try:
            return self._client.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def query(self, expr: str) -> dict[str, Any]:
        """The whole answer: a bad query is HTTP 400 with ``status: error`` and the reason."""
        body: dict[str, Any] = self._client.get("/api/v1/query", params={"query": expr}).json()
        return body

    def samples(self, expr: str) -> list[dict[str, Any]]:
        body = self.query(expr)
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str) -> float:
        """The value of a query returning one series (or 0 when it returns none yet)."""
        result = self.samples(expr)
        return float(result[0]["value"][1]) if result else 0.0

    def rule_groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self._client.get("/api/v1/rules").json()["data"]["groups"]
        return groups

    def alert_states(self) -> dict[str, str]:
        """Active alert name -> state (pending or firing); any firing instance wins."""
        alerts = self._client.get("/api/v1/alerts").json()["data"]["alerts"]
        states: dict[str, str] = {}
        for alert in alerts:
            name = alert["labels"]["alertname"]
            states[name] = "firing" if "firing" in (alert["state"], states.get(name)) else alert["state"]
        return states


def start_prometheus(tmp: Path, port: int, worker_port: int, api_port: int) -> Proc:
    """Prometheus with the Compose config's jobs and rules, pointed at this test's processes."""
    config = write_prometheus_config(
        tmp / "prometheus.yml",
        [f"127.0.0.1:{worker_port}"],
        [f"127.0.0.1:{api_port}"],
        scrape_interval=SCRAPE_INTERVAL,
    )
    args = [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return Proc(args, {}, tmp / "prometheus.log")


def dead_letter(bootstrap: str, topic: str, partitions: Sequence[int | None]) -> int:
    """Write :data:`GARBAGE` to each of ``partitions`` (None: the producer picks); returns how
    many records were written."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            sent = [await producer.send(topic, value, partition=p) for p in partitions for value in GARBAGE]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    asyncio.run(send())
    return len(partitions) * len(GARBAGE)


def has_data(result: list[dict[str, Any]]) -> bool:
    """At least one sample that is a number: a histogram quantile or a ratio over a window
    without observations is NaN, which Grafana draws as nothing."""
    return any(not math.isnan(float(sample["value"][1])) for sample in result)


def assert_every_panel_query_has_data(
    prometheus: PrometheusApi, queries: Mapping[tuple[str, str, str], str]
) -> None:
    """The last API requests reach Prometheus with its next scrape of the API, so allow a few
    scrapes before failing, then name every panel query still without data."""

    def empty_panels() -> dict[tuple[str, str, str], str]:
        return {key: expr for key, expr in queries.items() if not has_data(prometheus.samples(expr))}

    with contextlib.suppress(AssertionError):
        wait_for(lambda: not empty_panels(), 15, interval=1, what="every panel query to return data")
    empty = empty_panels()
    assert not empty, "panel queries without data:\n" + "\n".join(f"{k}: {v}" for k, v in empty.items())


def assert_rule_groups_loaded_and_alerts_match_the_run(prometheus: PrometheusApi) -> None:
    """Every rule group of the rule files is loaded, every rule evaluates cleanly, and the alerts
    this run provokes are active while the availability alerts stay quiet."""
    expected_groups = {
        group["name"]: {rule["alert"] for rule in group["rules"]}
        for path in rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
    }

    def evaluated_groups() -> dict[str, dict[str, str]] | None:
        """Rule name -> health by group, once every rule has been evaluated at least once."""
        groups = {
            group["name"]: {rule["name"]: rule["health"] for rule in group["rules"]}
            for group in prometheus.rule_groups()
        }
        evaluated = all(health != "unknown" for rules in groups.values() for health in rules.values())
        return groups if groups and evaluated else None

    groups = wait_for(evaluated_groups, 30, what="every rule evaluated once")
    assert groups is not None
    assert {name: set(rules) for name, rules in groups.items()} == expected_groups
    unhealthy = {
        name: health for rules in groups.values() for name, health in rules.items() if health != "ok"
    }
    assert not unhealthy, unhealthy

    def expected_alerts_active() -> dict[str, str] | None:
        states = prometheus.alert_states()
        return states if EXPECTED_ALERTS.items() <= states.items() else None

    states = wait_for(expected_alerts_active, 15, what=f"alerts {EXPECTED_ALERTS}")
    assert states is not None
    assert not HEALTHY_RUN_QUIET & set(states), states


def test_every_alert_and_panel_query_evaluates_and_every_panel_has_data(
    stack: StackInfo, app_id: str, sp_env: dict[str, str], tmp_path: Path, processes: list[Proc]
) -> None:
    """One run drives the worker and the API through every kind of event the panels and alerts
    show (valid, late and dead-lettered records, final windows, API 200/404/422), in two rounds so
    that counters rise between scrapes; then everything is checked against what Prometheus has."""
    topic = f"{app_id}.events"
    partitions = int(sp_env["STREAMPULSE_PARTITIONS"])
    worker_port, api_port, prometheus_port = free_port(), free_port(), free_port()
    processes.append(start_worker(sp_env, tmp_path, "worker", worker_port))
    processes.append(start_api(sp_env, tmp_path, api_port))
    processes.append(start_prometheus(tmp_path, prometheus_port, worker_port, api_port))
    prometheus = PrometheusApi(prometheus_port)
    api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10)
    # A push subscriber through the whole run, for the push latency and subscriber panels.
    subscriber = Subscriber(f"http://127.0.0.1:{api_port}/stream?window=1h")
    try:
        wait_for(prometheus.ready, 30, what="Prometheus ready (see prometheus.log)")
        wait_worker_ready(processes[0])

        def both_up() -> bool:
            up = {s["metric"]["job"]: s["value"][1] for s in prometheus.samples("up")}
            return up == {WORKER_JOB: "1", API_JOB: "1"}

        wait_for(both_up, 30, what="Prometheus to scrape the worker and the API (up == 1)")

        # First round: the labelled series (DLQ reasons, API routes and statuses) come into
        # existence, so that the second round is an increase Prometheus sees and rates are not 0.
        dead_letters = dead_letter(stack.bootstrap, topic, [None])
        statuses = [
            api.get(path).status_code for path in ("/metrics/region/999?window=1m", "/regions?window=2m")
        ]
        assert statuses == [404, 422]
        subscriber.start()
        tlc = sorted_tlc_sample(tmp_path / "tlc-sorted.csv", TLC_ROWS)
        generated = tmp_path / "generated.jsonl"
        generate_canonical(generated, GENERATED_EVENTS, seed=5, regions=30)
        replay = start_replay(
            sp_env,
            tmp_path,
            str(tlc),
            str(generated),
            "--rate",
            REPLAY_RATE,
            "--rejects",
            str(tmp_path / "rejects.jsonl"),
        )
        processes.append(replay)
        wait_for(
            lambda: (
                prometheus.samples('streampulse_api_requests_total{status="422"}')
                and prometheus.value("sum(streampulse_events_invalid_total)") == dead_letters
            ),
            90,
            what="Prometheus to see the first API errors and dead letters",
        )
        wait_for(lambda: not replay.alive(), 60, what="the replay to finish")
        assert replay.popen.returncode == 0, replay.output()[-3000:]
        sent = json.loads(replay.output().strip().splitlines()[-1])["sent"]
        assert sent == TLC_ROWS + GENERATED_EVENTS

        # Second round. Each partition's end-of-stream marker follows its events and the garbage
        # follows the markers, so once Prometheus has every dead letter the worker is done.
        dead_letters += dead_letter(stack.bootstrap, topic, range(partitions))
        wait_for(
            lambda: (
                prometheus.value("sum(streampulse_events_invalid_total)") == dead_letters
                and prometheus.value("sum(streampulse_events_processed_total)") == sent
            ),
            60,
            what="Prometheus to see every event processed and every record dead-lettered",
        )

        def top_region() -> int | None:
            """The API serves what the sink wrote, which may trail the worker by a batch."""
            resp = api.get("/metrics/top?window=1h")
            return int(resp.json()["items"][0]["region_id"]) if resp.status_code == 200 else None

        region = wait_for(top_region, 30, what="the API to serve a final 1h window")
        for path in (f"/metrics/region/{region}?window=1h", "/regions?window=1m", "/health"):
            assert api.get(path).status_code == 200, path
        assert api.get("/metrics/region/999?window=1h").status_code == 404
        assert api.get(f"/metrics/region/{region}?window=7m").status_code == 422

        # (1) Every alert expression evaluates.
        rule_errors = {
            rule["alert"]: body.get("error")
            for rule in alert_rules()
            if (body := prometheus.query(rule["expr"]))["status"] != "success"
        }
        assert not rule_errors, rule_errors

        # (2) Every panel query of both dashboards evaluates, with Grafana's macros substituted.
        queries = {(q.dashboard, q.panel, q.ref_id): expand_grafana_macros(q.expr) for q in panel_queries()}
        assert {dashboard for dashboard, _, _ in queries} == {
            "StreamPulse / Pipeline health",
            "StreamPulse / Trip metrics",
        }
        query_errors = {
            key: body.get("error")
            for key, expr in queries.items()
            if (body := prometheus.query(expr))["status"] != "success"
        }
        assert not query_errors, query_errors

        assert_every_panel_query_has_data(prometheus, queries)
        assert_rule_groups_loaded_and_alerts_match_the_run(prometheus)
    finally:
        api.close()
        subscriber.stop.set()
        prometheus.close()
