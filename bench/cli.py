"""``python -m bench [--quick] [--events N] ...``: one run, every contender on the same data.

Order of a run: load each workload into its own topic and compute its reference from that
topic; run each contender on it in turn (one at a time: they share two cores); measure
StreamPulse's latencies at half its measured live rate (and the API, when its load generator
exists); then delete every topic, Redis key and data directory the run created, also after an
error or Ctrl-C. Every process is started in its own group and stopped by pid.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import click
from redis import Redis
from rich.console import Console

from app.settings import load_settings
from bench import kstreams, latency, output, procs
from bench.api import api_load
from bench.kafka import create_topic, delete_topics
from bench.peers import PEERS, run_peer
from bench.redis_io import delete_run_keys
from bench.reference import reference_from_topic
from bench.run import Loaded, Row, Run, free_port
from bench.streampulse import run_streampulse, start_workers, worker_env
from bench.workloads import Workload, backfill, live, load
from support.procs import ROOT, Proc, ready, start_api, wait_worker_ready

#: One group, one, two or four workers, on the run's partitions (8 for every row, so the rows
#: compare): four workers on two cores measure that the group stays correct, not speed.
SP_CONTENDERS = {"streampulse": 1, "streampulse-2w": 2, "streampulse-4w": 4}
ALL_CONTENDERS = [*SP_CONTENDERS, *PEERS]
FULL: dict[str, Any] = {
    "events": 1_000_000,
    "workloads": "live,backfill",
    "contenders": ALL_CONTENDERS,
    "timeout": 900.0,
    "latency": 120.0,
    "api": 20.0,
}
#: About a minute: the backfill is left out (StreamPulse finalizes a few hundred of its sparse
#: windows per second here, so even a small one takes minutes) and so are the slow peers.
QUICK: dict[str, Any] = {
    "events": 20_000,
    "workloads": "live",
    "contenders": ["streampulse", "bare-aiokafka"],
    "timeout": 120.0,
    "latency": 10.0,
    "api": 5.0,
}
#: The benchmark's targets, evaluated in the JSON.
TARGET_VS_NAIVE, TARGET_VS_QUIX, TARGET_PER_WORKER = 3.0, 1.5, 30_000
#: The quiet-stream case: freshness must not depend on traffic.
QUIET_RATE = 10.0
#: The latency figures a row of the table carries (from outside).
LATENCY_FIELDS = (
    "open_window_latency_p50_ms",
    "open_window_latency_p99_ms",
    "final_latency_p50_ms",
    "final_latency_p99_ms",
    "push_latency_p50_ms",
    "push_latency_p99_ms",
)

console = Console()


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def _version(pkg: str) -> str | None:
    """A package's version, ``None`` when it is not installed (a run without the Quix contender
    does not need Quix Streams)."""
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def _java_version() -> str | None:
    """The JDK's version line (the Kafka Streams contender's runtime), ``None`` without one."""
    if shutil.which("java") is None:
        return None
    done = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    lines = done.stderr.strip().splitlines()
    return lines[0] if lines else None


def _load(run: Run, spec: Workload) -> Loaded:
    topic = run.topic(spec.name)
    started = time.monotonic()
    asyncio.run(load(run.bootstrap, topic, run.partitions, spec))
    load_s = time.monotonic() - started
    ref = asyncio.run(reference_from_topic(run.bootstrap, topic, run.partitions))
    if ref.events != spec.events or ref.late or ref.invalid:
        raise click.ClickException(f"{topic}: the topic does not hold the workload as generated ({ref})")
    console.print(
        f"[bold]{spec.name}[/]: {spec.events:,} events in {topic} ({load_s:.0f}s to load, "
        f"{spec.events / load_s:,.0f}/s); reference: {len(ref.windows):,} final windows"
    )
    return Loaded(spec.name, topic, spec.events, spec.events + ref.controls, ref, round(load_s, 1))


def _contender(run: Run, name: str, w: Loaded) -> Row:
    console.print(f"  {name} on {w.name} ...", end="")
    if name in SP_CONTENDERS:
        row = run_streampulse(run, w, SP_CONTENDERS[name])
    else:
        row = run_peer(run, PEERS[name], w)
    speed = "—" if row.events_per_s is None else f"{row.events_per_s:,.0f} events/s"
    console.print(f" {speed}, correct={row.correct}, peak {row.peak_rss_mb} MB, {row.status} {row.note}")
    return row


def _latency_case(run: Run, name: str, workers: int, rate: float, seconds: float) -> dict[str, Any]:
    """One steady-rate case on a fresh topic and app id: ``workers`` workers, one API process, the
    outside probes of :mod:`bench.latency`, then the workers' and the API's histograms."""
    topic, app_id = run.topic(f"latency-{name}"), f"{run.run_id}-sp-latency-{name}"
    asyncio.run(create_topic(run.bootstrap, topic, run.partitions))
    env = worker_env(run, app_id, topic)
    console.print(f"  latency {name}: {rate:,.0f} events/s, {workers} worker(s), {seconds:.0f}s ...", end="")
    api_port = free_port()
    running = start_workers(run, env, app_id, workers)
    api: Proc | None = None
    try:
        api = start_api(env, run.work_dir / f"api-latency-{name}", api_port)
        for worker, _ in running:
            wait_worker_ready(worker)
        api_url = f"http://127.0.0.1:{api_port}"
        result = asyncio.run(latency.measure(run, topic, app_id, rate, seconds, api_url))
        worker_urls = [f"http://127.0.0.1:{port}/metrics" for _, port in running]
        result["histograms"] = _histograms(worker_urls, f"{api_url}/metrics")
    finally:
        procs.stop_all([*(proc for proc, _ in running), *([api] if api else [])])
    result["workers"], result["partitions"] = workers, run.partitions
    result["targets"] = latency.verdicts(result)
    console.print(
        " open p50/p99 {open_window_latency_p50_ms}/{open_window_latency_p99_ms} ms, final p50/p99 "
        "{final_latency_p50_ms}/{final_latency_p99_ms} ms, push p50/p99 {push_latency_p50_ms}/"
        "{push_latency_p99_ms} ms, event→browser p99 {event_to_browser_latency_p99_ms} ms".format(**result)
    )
    for target, said in result["targets"].items():
        console.print(f"    {target}: {'[green]' if said == 'met' else '[red]'}{said}[/]")
    return result


def _safe_case(run: Run, name: str, workers: int, rate: float, seconds: float) -> dict[str, Any]:
    """A case that fails (a worker that never gets ready, an API that does not start) is reported
    as failed; the throughput rows measured before it are still written."""
    try:
        return _latency_case(run, name, workers, rate, seconds)
    except Exception as exc:  # noqa: BLE001 - any failure of the case is its result
        console.print(f" [red]failed: {exc!r}[/]")
        return {"status": f"failed: {exc!r}"[:300]}


#: The worker's and the API's histograms the latency phase reports: (metric, label filter).
HISTOGRAMS = {
    "worker_open_window": ("streampulse_open_window_latency_seconds", ""),
    "worker_final": ("streampulse_final_window_latency_seconds", ""),
    "worker_sink_write_live": ("streampulse_sink_write_seconds", 'kind="live"'),
    "worker_sink_write_final": ("streampulse_sink_write_seconds", 'kind="final"'),
    **{
        f"worker_stage_{stage}": ("streampulse_batch_stage_seconds", f'stage="{stage}"')
        for stage in ("wait", "fold", "publish", "store", "changelog", "mirror_wait")
    },
}


def _histograms(worker_urls: list[str], api_metrics_url: str) -> dict[str, float | None]:
    out = {}
    for q in (0.5, 0.99):
        p = f"p{round(q * 100)}_ms"
        for name, (metric, labels) in HISTOGRAMS.items():
            out[f"{name}_{p}"] = latency.histogram_quantile(worker_urls, metric, q, labels)
        out[f"api_push_{p}"] = latency.histogram_quantile(
            [api_metrics_url], "streampulse_api_push_latency_seconds", q
        )
        records = latency.histogram_quantile(worker_urls, "streampulse_batch_records", q)
        out[f"worker_batch_records_{p.removesuffix('_ms')}"] = None if records is None else records / 1000
    return out


def _latency(run: Run, rows: list[Row], seconds: float) -> dict[str, Any]:
    """Freshness at half of the measured live rate with one and with two workers (each at half
    of its own rate), and on a quiet stream of 10 events/s."""
    live_rows = {r.name: r for r in rows if r.workload == "live" and r.events_per_s}
    cases: dict[str, Any] = {}
    for name, contender, workers in (("half-1w", "streampulse", 1), ("half-2w", "streampulse-2w", 2)):
        row = live_rows.get(contender)
        if row is None or row.events_per_s is None:
            cases[name] = {"status": f"skipped: no correct {contender} live throughput to take 50 % of"}
            continue
        cases[name] = _safe_case(run, name, workers, row.events_per_s / 2, seconds)
        if "status" not in cases[name]:
            for field in LATENCY_FIELDS:
                setattr(row, field, cases[name][field])
            row.details["latency"] = cases[name]
    cases["quiet"] = _safe_case(run, "quiet", 1, QUIET_RATE, seconds)
    # The headline figures are the one-worker case's, as the targets are stated for it.
    headline = cases["half-1w"] if "status" not in cases["half-1w"] else cases["quiet"]
    return {**{f: headline.get(f) for f in LATENCY_FIELDS}, "cases": cases}


def _redis_memory(url: str) -> dict[str, float]:
    """Used memory and maxmemory (MB; 0: no limit) and keys evicted so far: past maxmemory Redis
    evicts, and a run whose windows were evicted checks as wrong."""
    client = Redis.from_url(url)
    try:
        memory, stats = client.info("memory"), client.info("stats")
    finally:
        client.close()
    return {
        "used_mb": round(memory["used_memory"] / 2**20, 1),
        "maxmemory_mb": round(memory.get("maxmemory", 0) / 2**20, 1),
        "evicted_keys": int(stats["evicted_keys"]),
    }


def _cleanup(run: Run) -> None:
    topics = asyncio.run(delete_topics(run.bootstrap, run.run_id))
    keys = delete_run_keys(run.redis_url, run.run_id)
    for data_dir in run.work_dir.glob("data-*"):
        shutil.rmtree(data_dir, ignore_errors=True)
    console.print(
        f"cleaned up: {len(topics)} topics, {keys:,} Redis keys, data directories (logs in {run.work_dir})"
    )


def _speed(rows: list[Row], name: str, workload: str) -> float | None:
    return next((r.events_per_s for r in rows if r.name == name and r.workload == workload), None)


def _partial_speed(rows: list[Row], name: str, workload: str) -> float | None:
    """Records/s of a contender that timed out, until it did."""
    row = next((r for r in rows if r.name == name and r.workload == workload), None)
    return None if row is None else row.details.get("partial_events_per_s")


def _field_of(target: str) -> str:
    """``open_window p99 ≤ 500 ms`` → ``open_window_latency_p99_ms``."""
    kind, q = target.split()[:2]
    return f"{kind}_latency_{q}_ms"


def _targets(rows: list[Row], latency_cases: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's targets against what was measured (None where a figure is missing)."""
    out: dict[str, Any] = {}
    for workload in dict.fromkeys(r.workload for r in rows):
        sp = _speed(rows, "streampulse", workload)
        for peer, target in (("naive-faust", TARGET_VS_NAIVE), ("quix", TARGET_VS_QUIX)):
            other = _speed(rows, peer, workload)
            ratio = round(sp / other, 2) if sp and other else None
            result: dict[str, Any] = {"measured": ratio, "met": None if ratio is None else ratio >= target}
            partial = _partial_speed(rows, peer, workload)
            if ratio is None and sp and partial:
                # The peer ran out of time: its rate over the records it got through stands in.
                ratio = round(sp / partial, 2)
                result = {"measured": ratio, "peer_timed_out": True, "met": ratio >= target}
            out[f"{workload}: ≥{target}x {peer}"] = result
        out[f"{workload}: ≥{TARGET_PER_WORKER} events/s per worker"] = {
            "measured": sp,
            "met": None if sp is None else sp >= TARGET_PER_WORKER,
        }
    for case, result in latency_cases.items():
        for target, said in result.get("targets", {}).items():
            out[f"latency {case}: {target}"] = {
                "measured": result.get(_field_of(target)),
                "met": said == "met",
                "verdict": said,
            }
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--quick", is_flag=True, help=f"About a minute: {QUICK['events']:,} events, fewer contenders.")
@click.option(
    "--events", type=click.IntRange(min=1000), help="Events per workload [1,000,000; quick 20,000]."
)
@click.option("--workloads", help="Comma-separated, from live,backfill [both; quick: live].")
@click.option("--contenders", help=f"Comma-separated, from {','.join(ALL_CONTENDERS)} [all; quick: fewer].")
@click.option("--timeout", "timeout_s", type=float, help="Seconds per contender run [900; quick 120].")
@click.option(
    "--latency-seconds",
    type=float,
    help="Steady-rate latency phase (and API load), 0 to skip [120; quick 10].",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "bench" / "results")
def main(
    quick: bool,
    events: int | None,
    workloads: str | None,
    contenders: str | None,
    timeout_s: float | None,
    latency_seconds: float | None,
    out: Path,
) -> None:
    """Throughput, correctness and memory of StreamPulse and its peers on the local stack."""
    preset = QUICK if quick else FULL
    n = events or preset["events"]
    names = contenders.split(",") if contenders else list(preset["contenders"])
    unknown = set(names) - set(ALL_CONTENDERS)
    if unknown:
        raise click.BadParameter(
            f"unknown {sorted(unknown)}; choose from {ALL_CONTENDERS}", param_hint="--contenders"
        )
    specs = {"live": live(n, int(time.time() * 1000)), "backfill": backfill(n)}
    chosen = [specs[w] for w in (workloads or preset["workloads"]).split(",") if w in specs]
    if not chosen:
        raise click.BadParameter(f"choose from {list(specs)}", param_hint="--workloads")
    if not (ready("kafka") and ready("redis")):
        raise click.ClickException("Kafka or Redis does not answer: start the stack with `make up`")
    settings = load_settings()
    started = datetime.now(UTC)
    run_id = f"bench-{started:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:4]}"
    run = Run(
        run_id,
        settings.kafka_bootstrap,
        settings.redis_dsn,
        ROOT / ".data" / "bench" / run_id,
        timeout_s or preset["timeout"],
    )
    run.work_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m bench" + "".join(f" {a}" for a in sys.argv[1:])
    console.print(
        f"[bold]{command}[/] — run {run_id}, {n:,} events per workload, contenders {', '.join(names)}"
    )
    load_before = os.getloadavg()
    redis_before = _redis_memory(run.redis_url)
    if redis_before["maxmemory_mb"] and redis_before["used_mb"] > redis_before["maxmemory_mb"] / 2:
        console.print(
            f"[red]Redis at {run.redis_url} holds {redis_before['used_mb']:,.0f} of its "
            f"{redis_before['maxmemory_mb']:,.0f} MB maxmemory: it will evict this run's windows "
            "(the shortest TTLs go first); point STREAMPULSE_REDIS_URL at one with room[/]"
        )
    rows: list[Row] = []
    loaded: list[Loaded] = []
    latency_result: dict[str, Any] = {}
    api_result: dict[str, Any] = {"status": "skipped"}
    try:
        for spec in chosen:
            loaded.append(_load(run, spec))
            for name in names:
                rows.append(_contender(run, name, loaded[-1]))
        seconds = preset["latency"] if latency_seconds is None else latency_seconds
        if seconds > 0 and "streampulse" in names:
            latency_result = _latency(run, rows, seconds)
            console.print("  API under load ...", end="")
            api_result = api_load(run, preset["api"])
            p50, p99 = api_result.get("p50_ms"), api_result.get("p99_ms")
            console.print(f" p50 {p50} ms, p99 {p99} ms, {api_result['status']}")
    finally:
        _cleanup(run)
    commit = _git("rev-parse", "--short", "HEAD")
    meta = {
        "date": started.isoformat(timespec="seconds"),
        "commit": commit,
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "command": command,
        "quick": quick,
        "events_per_workload": n,
        "partitions": run.partitions,
        "timeout_s_per_contender": run.timeout_s,
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_before": [round(x, 2) for x in load_before],
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            **{pkg: _version(pkg) for pkg in ("faust-streaming", "quixstreams", "aiokafka", "rocksdict")},
            "java": _java_version(),
            "kafka_streams": kstreams.kafka_version(),
        },
        "redis": {
            "url": run.redis_url,
            "before": redis_before,
            "after": _redis_memory(run.redis_url),
        },
        "workloads": [
            {
                "name": w.name,
                "topic": w.topic,
                "events": w.events,
                "windows": len(w.ref.windows),
                "load_s": w.load_s,
            }
            for w in loaded
        ],
        "latency": latency_result,
        "api": api_result,
        "targets": _targets(rows, latency_result.get("cases", {})),
    }
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{started:%Y-%m-%d}-{commit}" + ("-quick" if quick else "")
    output.write_json(out / f"{stem}.json", meta, rows)
    title = f"{command} — {started:%Y-%m-%d} {commit}, {n:,} events/workload, {os.cpu_count()} CPUs (shared)"
    output.write_chart(out / f"{stem}.png", rows, title)
    cases = latency_result.get("cases")
    latency_md = (
        f"\nFreshness (p50 / p99 ms):\n\n{output.latency_markdown(cases)}\n"
        f"\nInside the worker, per batch (p50 / p99 ms):\n\n{output.stages_markdown(cases)}\n"
        if cases
        else ""
    )
    (out / f"{stem}.md").write_text(
        f"`{command}` ({title.split(' — ')[1]})\n\n{output.markdown_table(rows)}\n{latency_md}"
    )
    output.print_table(console, rows, title)
    console.print(f"wrote {out / stem}.json, .png and .md (the table for docs/benchmarks.md)")
