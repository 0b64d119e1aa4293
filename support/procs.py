"""Processes on the real stack: ports, polling, private redis-servers, workers, replays, the API.

Every process is started in its own process group and stopped by its pid, never by a name, so a
run on a machine shared with other runs only ever signals what it started itself.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from redis import Redis, RedisError

from app.readiness import READY_PATH, probe

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
T = TypeVar("T")
#: Short enough that a survivor takes a killed worker's partitions over in seconds, not 30 s.
SESSION_TIMEOUT = "6s"


@dataclass(frozen=True)
class StackInfo:
    bootstrap: str
    redis_url: str


def ready(service: str, timeout: float = 2) -> bool:
    """True when the service answers (scripts/ready.py, the same check as `make up`)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ready.py"), service, "--timeout", str(timeout)],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.2, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns a truthy value; ``AssertionError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: T = predicate()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)
        last = predicate()
    return last


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Proc:
    """A child process in its own process group, signalled by pid only."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.log = log
        self.env = dict(env)
        log.parent.mkdir(parents=True, exist_ok=True)
        self._fh = log.open("ab")
        self.popen = subprocess.Popen(
            args, env=dict(env), cwd=ROOT, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        self.kill(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.popen.wait(10)
        self._fh.close()
        return self.popen.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def redis_answers(url: str) -> bool:
    client = Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except RedisError:
        return False
    finally:
        client.close()


@dataclass
class RedisServer:
    """A private redis-server on its own port and directory, for tests that stop Redis.

    ``persistent`` keeps an append-only file, so a restart (:meth:`start` again) comes back with
    the data; without it a restart is an empty Redis."""

    home: Path
    persistent: bool = False
    port: int = 0
    proc: Proc | None = None

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.home.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20) -> Proc:
        """Start it (again) and return its process once it answers."""
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.home)]
        args += ["--save", "", "--appendonly", "yes" if self.persistent else "no"]
        self.proc = Proc(args, os.environ, self.home / "redis.log")
        proc = self.proc

        def answers() -> bool:
            if not proc.alive():
                raise AssertionError(f"redis-server exited:\n{proc.output()[-2000:]}")
            return redis_answers(self.url)

        wait_for(answers, timeout, 0.05, what=f"redis-server :{self.port}")
        return proc

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(10)
            self.proc = None


def metric_values(web_port: int, name: str) -> list[float]:
    """Sample values of one metric from a worker's /metrics (empty when it is down)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return []
    return [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    ]


def start_worker(env: Mapping[str, str], tmp: Path, name: str, web_port: int) -> Proc:
    """A real ``faust -A app worker`` with its own data dir (by ``name``) and web port."""
    worker_env = dict(env)
    worker_env["STREAMPULSE_WEB_PORT"] = str(web_port)
    worker_env["STREAMPULSE_DATA_DIR"] = str(tmp / f"data-{name}")
    return Proc([str(BIN / "faust"), "-A", "app", "worker", "-l", "info"], worker_env, tmp / f"{name}.log")


def wait_worker_ready(proc: Proc, timeout: float = 90) -> None:
    """Until the worker's ``/ready`` says so: the rule of app/readiness.py, which Compose and the
    demo wait on too (assigned, recovered, not rebalancing)."""
    url = f"http://127.0.0.1:{proc.env.get('STREAMPULSE_WEB_PORT', '6066')}{READY_PATH}"

    def is_ready() -> bool:
        if not proc.alive():
            raise AssertionError(f"worker exited:\n{proc.output()[-3000:]}")
        return probe(url)[0] == 200

    wait_for(is_ready, timeout, interval=0.3, what=f"worker ready at {url}")


@dataclass
class Worker:
    """A worker process and the web port its metrics are on."""

    proc: Proc
    port: int

    def processed(self) -> float:
        return sum(metric_values(self.port, "streampulse_events_processed_total"))


def launch_worker(env: Mapping[str, str], tmp: Path, name: str) -> Worker:
    """:func:`start_worker` on a free port; a new ``name`` means a new, empty RocksDB directory."""
    port = free_port()
    return Worker(start_worker(env, tmp, name, port), port)


def start_api(env: Mapping[str, str], tmp: Path, port: int, timeout: float = 30) -> Proc:
    """``uvicorn api.main:app`` as ``make api`` runs it, returned once it serves its schema."""
    args = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)]
    proc = Proc([*args, "--no-access-log"], env, tmp / "api.log")

    def up() -> bool:
        if not proc.alive():
            raise AssertionError(f"API exited:\n{proc.output()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    wait_for(up, timeout, 0.1, what="API up")
    return proc


def run_replay(env: Mapping[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m producers.replay ARGS`` to its end, whatever its exit status."""
    return subprocess.run(
        [sys.executable, "-m", "producers.replay", *args],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def replay(env: Mapping[str, str], *args: str, timeout: float = 300) -> dict[str, Any]:
    """Run ``python -m producers.replay ... --json`` to its end and return its summary."""
    result = run_replay(env, *args, "--json", timeout=timeout)
    assert result.returncode == 0, f"replay failed ({result.returncode}): {result.stderr[-3000:]}"
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


def start_replay(env: Mapping[str, str], tmp: Path, *args: str) -> Proc:
    return Proc([sys.executable, "-m", "producers.replay", *args, "--json"], env, tmp / "replay.log")


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a process from /proc (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
