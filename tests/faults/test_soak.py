"""The soak of ``make soak``, in a 2-minute version: a worker SIGKILLed and restarted every ~40 s."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench.soak import run_soak
from support.procs import StackInfo

SECONDS = 120
KILL_EVERY_S = 40
#: Lower than the soak's default (half the measured live rate): the check of a 2-minute run at
#: that rate would take longer than the run itself on two shared cores.
RATE = int(os.environ.get("STREAMPULSE_SOAK_TEST_RATE", "1500"))


def test_two_minute_soak_with_a_sigkill_every_40s_is_exact_and_rss_flat(
    stack: StackInfo, app_id: str, tmp_path: Path
) -> None:
    report = run_soak(
        stack, tmp_path / "soak", seconds=SECONDS, kill_every_s=KILL_EVERY_S, rate=RATE, app_id=app_id
    )
    (tmp_path / "soak-report.json").write_text(json.dumps(report, indent=2))
    summary = {k: report[k] for k in ("exact", "rss_flat", "restarts", "windows_expected", "windows_got")}
    assert len(report["restarts"]) >= 2, summary
    assert report["exact"], (
        summary,
        report["missing"],
        report["unexpected"],
        report["wrong"],
        report["examples"],
    )
    assert report["rss_flat"], [life["peak_rss_mb"] for life in report["lifetimes"]]
    assert report["worker_alive_at_end"]
