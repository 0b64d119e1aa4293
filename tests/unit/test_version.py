"""``--version`` of every command: the package metadata, or the checkout's setup.cfg."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from app.version import _checkout_version, package_version, version_line

BENCH_EXTRA = all(importlib.util.find_spec(name) for name in ("psutil", "matplotlib"))


def test_the_version_is_the_package_metadata_or_the_checkout_setup_cfg(tmp_path: Path) -> None:
    assert package_version() == _checkout_version(Path(__file__).resolve().parents[2] / "setup.cfg")
    assert version_line("streampulse-replay") == f"streampulse-replay {package_version()}"
    assert _checkout_version(tmp_path / "missing.cfg") == "0+unknown"


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "producers.replay"],
        ["-m", "app.provision"],
        ["-m", "app.readiness"],
        pytest.param(
            ["-m", "bench"], marks=pytest.mark.skipif(not BENCH_EXTRA, reason="needs the bench extra")
        ),
        ["scripts/ready.py"],
    ],
)
def test_every_command_prints_the_package_version(command: list[str]) -> None:
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, *command, "--version"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f" {package_version()}")
