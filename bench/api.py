"""API latency under load, through the load generator ``bench/api_load.py``.

It is run as its own docs say, self-contained (it writes windows with the real sink under a
throwaway app id, starts ``uvicorn api.main:app`` as ``make api`` does, drives
``GET /metrics/region/{id}`` open-loop at 1,000 requests/s and removes what it created), after the
pipeline phases so the two do not share the cores. Its JSON summary is reported as it is; it
exits 1 when p99 misses its 10 ms target, which is a result here, not a failure.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson

from bench import procs
from bench.run import Run
from support.procs import ROOT

GRACE_S = 120.0


def api_load(run: Run, seconds: float) -> dict[str, Any]:
    if not (ROOT / "bench" / "api_load.py").exists():
        return {"status": "skipped: bench/api_load.py is not there"}
    log = run.work_dir / "api_load.log"
    args = [sys.executable, "-m", "bench.api_load", "--duration", str(seconds), "--json"]
    proc = procs.start(args, run.env(), log)
    deadline = time.monotonic() + seconds + GRACE_S
    try:
        while proc.alive() and time.monotonic() < deadline:
            time.sleep(0.5)
        timed_out = proc.alive()
    finally:
        procs.stop_all([proc])
    if timed_out:
        return {"status": f"timeout after {seconds + GRACE_S:.0f}s", "log": str(log)}
    summaries = [line for line in proc.output().splitlines() if line.startswith("{")]
    if not summaries:
        return {"status": f"failed (exit {proc.popen.returncode})", "log": str(log)}
    result: dict[str, Any] = orjson.loads(summaries[-1])
    return {"status": "ok", **result}
