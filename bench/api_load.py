"""Latency of ``GET /metrics/region/{id}`` at a fixed request rate (target: p99 <= 10 ms at 1,000/s).

Open loop: request ``i`` is due at ``t0 + i / rate`` whether or not earlier ones have finished, and
its latency is measured from that due time, so a stalled server shows up as latency instead of
silently lowering the rate (no coordinated omission). Requests go over a fixed set of keep-alive
HTTP/1.1 connections written with raw asyncio streams, which keeps the generator's own CPU small on
a machine it shares with the server.

Without ``--url`` it sets up everything: windows for ``--regions`` regions written with the real sink
under a throwaway app id, and ``uvicorn api.main:app`` as ``make api`` runs it; both are removed
afterwards. Run from the repository root:

    .venv/bin/python -m bench.api_load --rate 1000 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvloop
from redis.asyncio import Redis

from agents.redis_writer import write_final
from app.redis_keys import RedisKeys
from app.settings import Settings
from bench.run import free_port
from tables.aggregate import TripAggregate
from tables.results import window_record

ROOT = Path(__file__).resolve().parents[1]
T0_MS = 1_551_715_200_000  # 2019-03-04T16:00:00Z


@dataclass
class Result:
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


async def write_windows(redis_url: str, app_id: str, regions: int, minutes: int) -> None:
    """Final 1m windows for regions 1..N over ``minutes`` minutes, written by the real sink."""
    settings = Settings(redis_url=redis_url, app_id=app_id)
    keys = RedisKeys(app_id)
    size = next(s for s in settings.window_sizes if s.name == "1m")
    records = []
    for region_id in range(1, regions + 1):
        for minute in range(minutes):
            start = T0_MS + minute * size.size_ms
            agg = TripAggregate()
            for k in range(1 + (region_id + minute) % 7):
                agg.add_event(
                    5.0 + (region_id * 3 + k) % 40, 120.0 + 37 * k, 0.5 + k, start + 1_000 * (k + 1)
                )
            records.append(window_record(region_id, size.name, size.size_ms, start, agg, final=True))
    redis = Redis.from_url(redis_url)
    try:
        for i in range(0, len(records), 2_000):
            await write_final(redis, keys, records[i : i + 2_000], settings.retention_s())
    finally:
        await redis.aclose()


async def delete_keys(redis_url: str, app_id: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        batch = [k async for k in redis.scan_iter(match=f"{RedisKeys(app_id).prefix}*", count=1_000)]
        for i in range(0, len(batch), 1_000):
            await redis.delete(*batch[i : i + 1_000])
    finally:
        await redis.aclose()


def start_api(redis_url: str, app_id: str, port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPULSE_")}
    env.update(STREAMPULSE_REDIS_URL=redis_url, STREAMPULSE_APP_ID=app_id, PYTHONPATH=str(ROOT))
    args = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=1) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"API did not start; see {log}") from None
            time.sleep(0.1)


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _worker(
    host: str, port: int, requests: list[bytes], due: asyncio.Queue[tuple[int, float] | None], result: Result
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (item := await due.get()) is not None:
            i, due_at = item
            try:
                status = await _request(reader, writer, requests[i % len(requests)])
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                result.errors[type(exc).__name__] += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            if due_at >= 0:
                result.latencies_s.append(time.perf_counter() - due_at)
                result.statuses[status] += 1
    finally:
        writer.close()


async def drive(
    url: str, paths: list[str], rate: float, duration_s: float, warmup_s: float, connections: int
) -> Result:
    """Send ``rate`` requests/s for ``warmup_s + duration_s``; only the last ``duration_s`` count."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode() for p in paths]
    result = Result()
    due: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    workers = [asyncio.create_task(_worker(host, port, requests, due, result)) for _ in range(connections)]
    interval = 1.0 / rate
    started = time.perf_counter()
    measure_from = started + warmup_s
    total = int((warmup_s + duration_s) * rate)
    for i in range(total):
        due_at = started + i * interval
        delay = due_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait((i, due_at if due_at >= measure_from else -1.0))
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    return result


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


def summarize(result: Result, rate: float, duration_s: float, command: str) -> dict[str, Any]:
    lat = sorted(result.latencies_s)
    ms = 1000.0
    return {
        "endpoint": "GET /metrics/region/{id}?window=1m",
        "command": command,
        "target_rate_per_s": rate,
        "measured_s": duration_s,
        "requests": len(lat),
        "achieved_rate_per_s": round(len(lat) / duration_s, 1),
        "statuses": dict(result.statuses),
        "errors": dict(result.errors),
        "p50_ms": round(percentile(lat, 0.50) * ms, 3),
        "p90_ms": round(percentile(lat, 0.90) * ms, 3),
        "p99_ms": round(percentile(lat, 0.99) * ms, 3),
        "p999_ms": round(percentile(lat, 0.999) * ms, 3),
        "max_ms": round(lat[-1] * ms, 3) if lat else None,
        "mean_ms": round(statistics.fmean(lat) * ms, 3) if lat else None,
        "cpus": os.cpu_count(),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second (default 1000)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds (default 20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds at the rate before measuring")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections (default 16)")
    parser.add_argument(
        "--regions", type=int, default=200, help="regions with data, requests rotate over them"
    )
    parser.add_argument("--minutes", type=int, default=60, help="1m windows written per region")
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes (default 1, as make api)"
    )
    parser.add_argument("--url", help="an already running API (its data is used as is; regions 1..N)")
    parser.add_argument("--redis-url", default=Settings().redis_dsn, help="Redis for the self-started API")
    parser.add_argument("--p99-target-ms", type=float, default=10.0, help="exit 1 if p99 is above this")
    parser.add_argument("--json", action="store_true", help="print only the JSON summary")
    args = parser.parse_args()
    command = " ".join(["python -m bench.api_load", *sys.argv[1:]])
    load_before = round(os.getloadavg()[0], 2)
    paths = [f"/metrics/region/{r}?window=1m" for r in range(1, args.regions + 1)]

    app_id = f"bench-api-{uuid.uuid4().hex[:8]}"
    proc = None
    if args.url is None:
        log = ROOT / ".logs" / "bench-api.log"
        log.parent.mkdir(exist_ok=True)
        asyncio.run(write_windows(args.redis_url, app_id, args.regions, args.minutes))
        port = free_port()
        proc = start_api(args.redis_url, app_id, port, args.workers, log)
        url = f"http://127.0.0.1:{port}"
    else:
        url = args.url
    try:
        result = uvloop.run(drive(url, paths, args.rate, args.duration, args.warmup, args.connections))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
            asyncio.run(delete_keys(args.redis_url, app_id))
    summary = summarize(result, args.rate, args.duration, command)
    summary["load_average_1m_before"] = load_before
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:>20}: {value}")
    ok = (
        summary["p99_ms"] <= args.p99_target_ms
        and not summary["errors"]
        and set(summary["statuses"]) == {200}
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
