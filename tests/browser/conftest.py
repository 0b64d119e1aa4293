"""The dashboard in a real headless Chromium, against the real stack.

One worker, one API (``uvicorn api.main:app`` on its own port) and one replay of the bundled TLC
sample are shared by the module's tests: starting a worker and waiting for the sample's final
windows is most of a test's cost. The environment is built the way ``sp_env`` builds it, with
its own app id, so the module's topics, consumer group and Redis keys are its own. Every process
is stopped by pid at teardown.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from support.procs import free_port
from tests.integration.conftest import stack
from tests.integration.pipeline import (
    metric_values,
    replay,
    sorted_tlc_sample,
    start_worker,
    wait_final_windows,
    wait_worker_ready,
)
from tests.integration.stack import ROOT, Proc, StackInfo, wait_for

__all__ = ["stack"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PARTITIONS = 4
DESKTOP = (1440, 900)


@dataclass
class ApiServer:
    """``uvicorn api.main:app`` with ``env`` on ``port``, stopped and started again by the tests."""

    env: dict[str, str]
    port: int
    log: Path
    proc: Proc | None = None
    #: Sent as ``Authorization: Bearer`` with the tests' own requests (an API with API_KEYS).
    api_key: str = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            with urllib.request.urlopen(
                urllib.request.Request(self.base + path, headers=headers), timeout=5
            ) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")
        except OSError:
            return 0, None

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, f"GET {path}: HTTP {status} {body}"
        return body

    def start(self) -> None:
        args = [str(Path(sys.executable).parent / "uvicorn"), "api.main:app"]
        args += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = Proc(args, self.env, self.log)
        wait_for(self._answers, 60, interval=0.3, what="the API to answer")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def _answers(self) -> bool:
        assert self.proc is not None
        if not self.proc.alive():
            raise AssertionError(f"API exited:\n{self.proc.output()[-3000:]}")
        return self.get("/regions?window=1h")[0] == 200


@dataclass
class Dashboard(ApiServer):
    """The module's API, with the worker that writes its app id's results."""

    web_port: int = 0
    worker: Proc | None = None
    #: Events the sample's replay sent (its rejected rows never reach Kafka).
    sent: int = 0

    def end_markers_processed(self) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in _metrics_text(self.web_port).splitlines()
            if line.startswith('streampulse_control_records_total{kind="end-of-stream"}')
        )

    def wait_replay_settled(self, markers: float) -> None:
        """Until the worker has processed ``markers`` end-of-stream records and Redis holds every
        window the worker made final (the API then serves the replay's final answers)."""
        wait_for(lambda: self.end_markers_processed() >= markers, 180, interval=0.5, what="end-of-stream")

        finalized = sum(metric_values(self.web_port, "streampulse_windows_finalized_total"))
        wait_final_windows(self.env["STREAMPULSE_REDIS_URL"], self.env["STREAMPULSE_APP_ID"], int(finalized))


def _metrics_text(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def stack_env(stack: StackInfo) -> dict[str, str]:
    """Environment for the subprocesses, with a new app id (as ``sp_env`` builds it per test)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPULSE_")}
    env.update(
        STREAMPULSE_KAFKA_BOOTSTRAP=stack.bootstrap,
        STREAMPULSE_REDIS_URL=stack.redis_url,
        STREAMPULSE_APP_ID=f"t{uuid.uuid4().hex[:10]}",
        STREAMPULSE_PARTITIONS=str(PARTITIONS),
        PYTHONPATH=str(ROOT),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    )
    return env


@pytest.fixture(scope="module")
def dashboard(stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    tmp = tmp_path_factory.mktemp("dashboard")
    env = stack_env(stack)
    web_port = free_port()
    worker = start_worker(env, tmp, "worker", web_port)
    board = Dashboard(env, free_port(), tmp / "api.log", web_port=web_port, worker=worker)
    try:
        wait_worker_ready(worker)
        board.start()
        sample = sorted_tlc_sample(tmp / "sample-by-dropoff.csv")
        board.sent = replay(env, str(sample), "--rejects", str(tmp / "rejects.jsonl"))["sent"]
        board.wait_replay_settled(PARTITIONS)
        yield board
    finally:
        board.stop()
        worker.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
