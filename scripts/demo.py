"""`make demo`: the whole pipeline on the bundled TLC sample, then where to look.

Starts (or reuses) a worker and the API in the background with pid files under .data/run and
logs under .logs, waits until both answer ready on their /ready pages (app/readiness.py), replays
the sample, waits for the final windows and prints real answers.
`make down` stops everything it started.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".data" / "run"
LOGS = ROOT / ".logs"
BIN = ROOT / ".venv" / "bin"
SAMPLE = ROOT / "data" / "tlc" / "tlc_trips_2019-03_sample.csv"


def alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def start(name: str, args: list[str]) -> None:
    pidfile = RUN / f"{name}.pid"
    if alive(pidfile):
        print(f"{name}: already running (pid {pidfile.read_text().strip()})")
        return
    log = (LOGS / f"{name}.log").open("ab")
    proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pidfile.write_text(str(proc.pid))
    print(f"{name}: started (pid {proc.pid}, log .logs/{name}.log)")


def wait(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"demo: {what} did not happen within {timeout:.0f}s; see .logs/")
        time.sleep(0.5)


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")
    except OSError:
        return 0, None


def sorted_sample(dest: Path) -> Path:
    """The sample is a random draw across March 2019; a live feed delivers trips as they end."""
    with SAMPLE.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = sorted(reader, key=lambda r: r["tpep_dropoff_datetime"])
        fields = reader.fieldnames or []
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return dest


def main() -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from app.readiness import READY_PATH, NotReady, wait_ready
    from app.settings import get_settings

    settings = get_settings()
    api = f"http://127.0.0.1:{settings.api_port}"
    worker = f"http://127.0.0.1:{settings.web_port}"
    worker_metrics = f"{worker}/metrics"

    start("worker", [str(BIN / "faust"), "-A", "app", "worker", "-l", "info"])
    start(
        "api",
        [str(BIN / "uvicorn"), "api.main:app", "--host", "127.0.0.1", "--port", str(settings.api_port)],
    )
    for name, url, timeout in (("worker", worker, 120), ("API", api, 60)):
        try:
            wait_ready(url + READY_PATH, timeout)
        except NotReady as exc:
            sys.exit(f"demo: the {name} is not ready: {exc}; see .logs/")
        print(f"{name}: ready ({url}{READY_PATH})")

    data = sorted_sample(ROOT / ".data" / "demo" / "tlc_trips_2019-03_by_dropoff.csv")
    print(f"replay: {SAMPLE.relative_to(ROOT)} (sorted by dropoff time) -> topic {settings.events}")
    result = subprocess.run(
        [str(BIN / "python"), "-m", "producers.replay", str(data), "--json"]
        + ["--rejects", str(LOGS / "demo-rejects.jsonl")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"demo: replay failed: {result.stderr.strip()}")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    print(
        f"replay: sent {summary['sent']} events, rejected {summary['rejected']} "
        f"{summary['rejected_by_reason']} in {summary['seconds']:.1f}s"
    )

    def top_ready() -> bool:
        status, body = get(f"{api}/metrics/top?window=1h&by=revenue&limit=3")
        return status == 200 and bool(body)

    def all_processed() -> bool:
        try:
            with urllib.request.urlopen(worker_metrics, timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return False
        markers = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith('streampulse_control_records_total{kind="end-of-stream"}')
        )
        return markers >= settings.partitions  # one marker per partition, after its last event

    wait("the worker to process the replay", all_processed, 300)
    wait("the final windows to reach Redis", top_ready, 120)
    print("\nStreamPulse is running:")
    print(f"  dashboard       {api}/")
    print(f"  API docs        {api}/docs")
    print(f"  worker metrics  {worker_metrics}")
    print(f"  API metrics     {api}/metrics")
    print("  logs            .logs/   (make logs)     stop: make down")
    _, regions = get(f"{api}/regions?window=1h")
    first = regions[0]["region_id"] if regions else 1
    for path in (
        "/metrics/top?window=1h&by=revenue&limit=3",
        f"/metrics/region/{first}?window=1h",
        "/regions?window=1h",
    ):
        status, body = get(api + path)
        text = json.dumps(body[:3] if isinstance(body, list) else body, indent=2)
        print(f"\n$ curl '{api}{path}'   # HTTP {status}\n{text}")


if __name__ == "__main__":
    main()
