"""The readiness rules and the client every waiter uses (a real HTTP server on a free port)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.readiness import NotReady, WorkerState, api_readiness, main, wait_ready, worker_readiness

READY = WorkerState(
    topics_provisioned=True, rebalances=1, rebalancing=False, recovered=True, in_recovery=False, partitions=8
)


def _state(**changes: object) -> WorkerState:
    return WorkerState(**{**READY.__dict__, **changes})


def test_a_worker_is_ready_once_provisioned_assigned_recovered_and_not_rebalancing() -> None:
    ready = worker_readiness(READY)
    assert ready.ready and ready.status == 200
    assert ready.body() == {
        "ready": True,
        "failing": [],
        "checks": {
            "topics_provisioned": True,
            "assignment_received": True,
            "not_rebalancing": True,
            "table_recovered": True,
        },
        "partitions": 8,
    }


@pytest.mark.parametrize(
    ("changes", "failing"),
    [
        ({"topics_provisioned": False}, ["topics_provisioned"]),
        ({"rebalances": 0}, ["assignment_received"]),
        ({"rebalancing": True}, ["not_rebalancing"]),
        ({"recovered": False}, ["table_recovered"]),
        ({"in_recovery": True}, ["table_recovered"]),
    ],
)
def test_each_unmet_condition_makes_the_worker_unready_and_is_named(
    changes: dict[str, object], failing: list[str]
) -> None:
    readiness = worker_readiness(_state(**changes))
    assert readiness.status == 503
    assert readiness.body()["failing"] == failing


def test_a_worker_without_partitions_is_a_ready_standby() -> None:
    assert worker_readiness(_state(partitions=0)).ready


def test_partitions_are_unknown_before_the_first_assignment() -> None:
    assert worker_readiness(_state(rebalances=0)).body()["partitions"] is None


def test_the_api_needs_redis() -> None:
    assert api_readiness(True).ready
    assert api_readiness(False).body() == {"ready": False, "failing": ["redis"], "checks": {"redis": False}}


class _Flaky(BaseHTTPRequestHandler):
    """503 for the first ``unready`` requests, then 200."""

    unready = 0
    seen = 0

    def do_GET(self) -> None:
        cls = type(self)
        cls.seen += 1
        ready = cls.seen > cls.unready
        body = json.dumps({"ready": ready}).encode()
        self.send_response(200 if ready else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Flaky]]]:
    handler = type("Handler", (_Flaky,), {"unready": 0, "seen": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/ready", handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_wait_ready_polls_until_the_endpoint_says_ready(server: tuple[str, type[_Flaky]]) -> None:
    url, handler = server
    handler.unready = 3
    assert wait_ready(url, timeout=10, interval=0.05) == {"ready": True}
    assert handler.seen == 4


def test_wait_ready_gives_up_with_the_last_answer(server: tuple[str, type[_Flaky]]) -> None:
    url, handler = server
    handler.unready = 10**6
    with pytest.raises(NotReady, match=r'HTTP 503: \{"ready": false\}'):
        wait_ready(url, timeout=0.3, interval=0.05)


def test_nothing_listening_is_not_ready() -> None:
    with pytest.raises(NotReady, match="no answer"):
        wait_ready("http://127.0.0.1:9/ready", timeout=0.2, interval=0.05)


def test_the_command_exits_0_when_ready_and_1_when_not(server: tuple[str, type[_Flaky]]) -> None:
    url, handler = server
    handler.unready = 1
    assert main([url]) == 1
    assert main([url]) == 0
