"""Readiness: when a worker or an API process can do its job, and a client that waits for it.

One rule per process, served on one HTTP path, ``GET /ready``: 200 with ``{"ready": true, ...}``
when ready, 503 with the same body naming what is not yet true otherwise. The demo, the tests,
the bench and the Compose healthchecks all ask that path (:func:`wait_ready`, or
``python -m app.readiness URL``), so "ready" means the same thing to each of them.

A worker is ready once it has provisioned its topics, joined its consumer group and received an
assignment, finished recovering its table from the changelog, and is not in a rebalance: from
then on an event written to the events topic is processed without a restart or a recovery in the
way. A worker given no partition (more workers than partitions) is ready too: it is a healthy
standby member, and calling it unready would mark a correctly scaled group as failing.

An API process is ready when Redis answers: every route but ``/metrics`` reads it, and the push
hub of ``/stream`` is built before the first request is served (its readers start per
subscription), so there is nothing else to wait for. That is not ``/health``, which also fails
when final results are stale: a stale pipeline is an alert, but restarting or unrouting the API
would not fix it.

This module uses only the standard library so that a healthcheck starts quickly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

READY_PATH = "/ready"


@dataclass(frozen=True)
class Readiness:
    """The outcome of a rule: every check by name, and whether all of them hold."""

    checks: dict[str, bool]
    details: dict[str, Any]

    @property
    def ready(self) -> bool:
        return all(self.checks.values())

    @property
    def status(self) -> int:
        return 200 if self.ready else 503

    def body(self) -> dict[str, Any]:
        failing = [name for name, ok in self.checks.items() if not ok]
        return {"ready": self.ready, "failing": failing, "checks": self.checks, **self.details}


@dataclass(frozen=True)
class WorkerState:
    """What the worker knows about itself, read from Faust's public state by the worker."""

    topics_provisioned: bool
    rebalances: int
    rebalancing: bool
    recovered: bool
    in_recovery: bool
    partitions: int


def worker_readiness(state: WorkerState) -> Readiness:
    joined = state.rebalances > 0
    return Readiness(
        checks={
            "topics_provisioned": state.topics_provisioned,
            "assignment_received": joined,
            "not_rebalancing": not state.rebalancing,
            "table_recovered": state.recovered and not state.in_recovery,
        },
        details={"partitions": state.partitions if joined else None},
    )


def api_readiness(redis_answers: bool) -> Readiness:
    return Readiness(checks={"redis": redis_answers}, details={})


def probe(url: str, timeout: float = 3.0) -> tuple[int, dict[str, Any] | None]:
    """One ``GET``: the status (0 when nothing answered) and the JSON body, if any."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, _json(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, _json(err.read())
    except (OSError, ValueError):
        return 0, None


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


class NotReady(TimeoutError):
    """The endpoint did not report ready in time; the message has its last answer."""


def wait_ready(url: str, timeout: float, interval: float = 0.5) -> dict[str, Any]:
    """Poll ``url`` until it answers 200 and return its body; :class:`NotReady` after ``timeout``.

    A refused connection counts as not ready yet: the process may still be starting.
    """
    deadline = time.monotonic() + timeout
    while True:
        status, body = probe(url)
        if status == 200 and body is not None:
            return body
        if time.monotonic() >= deadline:
            last = f"HTTP {status}: {json.dumps(body)}" if status else "no answer"
            raise NotReady(f"{url} not ready after {timeout:g}s ({last})")
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    """``python -m app.readiness URL [--timeout S]``: exit 0 once ``URL`` is ready, else 1."""
    from app.version import program_name, version_line

    parser = argparse.ArgumentParser(prog=program_name("app.readiness"), description=main.__doc__)
    parser.add_argument("url", help=f"a readiness page, e.g. http://127.0.0.1:6066{READY_PATH}")
    parser.add_argument("--timeout", type=float, default=0.0, help="seconds to wait (0: ask once)")
    parser.add_argument("--version", action="version", version=version_line(parser.prog))
    args = parser.parse_args(argv)
    try:
        wait_ready(args.url, args.timeout)
    except NotReady as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
