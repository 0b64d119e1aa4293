"""``GET /stream`` on the real stack: a worker, the API under uvicorn, Redis, the TLC sample.

Each test checks what a subscriber ends up with against the plain-Python reference over the
events topic and against the REST answers: every final window exactly once, across a disconnect
resumed with ``Last-Event-ID``, and whatever another subscriber does.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.timeparse import parse_time_ms
from support.kafka import read_topic
from support.procs import (
    Proc,
    StackInfo,
    free_port,
    replay,
    start_api,
    start_replay,
    start_worker,
    wait_for,
    wait_worker_ready,
)
from support.reference import reference_windows
from tests.integration.pipeline import Subscriber, sorted_tlc_sample, wait_final_windows

WINDOW = "1h"

Key = tuple[str, int, int]


def _key(window: dict[str, Any]) -> Key:
    return (window["window"], window["region_id"], parse_time_ms(window["window_start"]))


@pytest.fixture
def pipeline(
    stack: StackInfo, sp_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[str, dict[str, str], Path]]:
    with _pipeline(sp_env, tmp_path) as running:
        yield running


@contextmanager
def _pipeline(sp_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """A worker and an API for this test's app id; yields the API's base URL, env and the sample
    sorted by drop-off time."""
    web_port, api_port = free_port(), free_port()
    env = dict(sp_env, STREAMPULSE_API_PORT=str(api_port))
    worker = start_worker(env, tmp_path, "w1", web_port)
    api: Proc | None = None
    try:
        wait_worker_ready(worker)
        api = start_api(env, tmp_path, api_port)
        yield f"http://127.0.0.1:{api_port}", env, sorted_tlc_sample(tmp_path / "sample.csv")
    finally:
        if api is not None:
            api.stop()
        worker.stop()


def _expected_finals(stack: StackInfo, app_id: str) -> set[Key]:
    ref = reference_windows(read_topic(stack.bootstrap, f"{app_id}.events"))
    return {key for key in ref.windows if key[0] == WINDOW}


def _wait_for_finals(sub: Subscriber, expected: set[Key], *others: Subscriber) -> None:
    def complete() -> bool:
        if sub.error is not None:
            raise AssertionError(f"subscriber failed: {sub.error!r}")
        if any(kind == "dropped" for _, kind, _ in sub.events):
            raise AssertionError("the subscriber was dropped as too slow")
        got = {_key(w) for s in (*others, sub) for w in s.finals()}
        return got >= expected

    wait_for(complete, 120, interval=0.5, what="every final window on the stream")


def test_a_subscriber_gets_every_final_window_once_equal_to_rest(
    stack: StackInfo, app_id: str, tmp_path: Path, pipeline: tuple[str, dict[str, str], Path]
) -> None:
    base, env, sample = pipeline
    sub = Subscriber(f"{base}/stream?window={WINDOW}")
    sub.start()
    replay(env, str(sample), "--rejects", str(tmp_path / "rejects.jsonl"))
    expected = _expected_finals(stack, app_id)
    assert len(expected) > 100
    _wait_for_finals(sub, expected)
    wait_final_windows(stack.redis_url, app_id, 1)
    sub.stop.set()
    finals = sub.finals()
    keys = [_key(w) for w in finals]
    assert len(keys) == len(set(keys)), "a final window was pushed twice"
    assert set(keys) == expected
    ids = [event_id for event_id, kind, _ in sub.events if kind == "window"]
    assert len(ids) == len(set(ids))
    with httpx.Client(base_url=base, timeout=5) as client:
        for window in finals:
            rest = client.get(
                f"/metrics/region/{window['region_id']}",
                params={"window": WINDOW, "at": window["window_start"]},
            )
            assert rest.status_code == 200, rest.text
            assert rest.json() == window


def test_a_subscriber_that_reconnects_with_last_event_id_misses_nothing_and_repeats_nothing(
    stack: StackInfo, app_id: str, tmp_path: Path, pipeline: tuple[str, dict[str, str], Path]
) -> None:
    base, env, sample = pipeline
    url = f"{base}/stream?window={WINDOW}"
    first = Subscriber(url)
    first.start()
    feeder = start_replay(
        env, tmp_path, str(sample), "--rate", "1500", "--rejects", str(tmp_path / "r.jsonl")
    )
    try:
        wait_for(lambda: len(first.finals()) >= 50, 90, what="the first final windows")
        first.stop.set()
        resume_from = [event_id for event_id, kind, _ in first.events if kind == "window"][-1]
        received = len(first.events)
        wait_for(lambda: not feeder.alive(), 120, what="the replay to finish")
    finally:
        feeder.stop()
    first_events = first.events[:received]
    second = Subscriber(url, last_event_id=resume_from)
    second.start()
    expected = _expected_finals(stack, app_id)
    got: list[Key] = []

    def complete() -> bool:
        got[:] = [_key(d) for _, k, d in first_events + second.events if k == "window" and d["final"]]
        return set(got) >= expected

    wait_for(complete, 120, interval=0.5, what="the resumed subscriber to catch up")
    second.stop.set()
    ids = [i for i, k, _ in first_events + second.events if k == "window"]
    assert len(ids) == len(set(ids)), "an event was delivered twice across the reconnect"
    assert len(got) == len(set(got)) and set(got) == expected


def test_a_subscriber_that_never_reads_slows_no_one(
    stack: StackInfo, app_id: str, tmp_path: Path, sp_env: dict[str, str]
) -> None:
    """Three loops of the sample on 1m windows, about 20,000 updates: far more than the socket
    buffers and a 1,000-update client buffer hold, so a client that never reads must be dropped."""
    env = dict(sp_env, STREAMPULSE_PUSH_CLIENT_BUFFER="1000")
    with _pipeline(env, tmp_path) as (base, env, sample):
        _never_reading_slows_no_one(stack, app_id, tmp_path, base, env, sample)


def _never_reading_slows_no_one(
    stack: StackInfo, app_id: str, tmp_path: Path, base: str, env: dict[str, str], sample: Path
) -> None:
    port = int(base.rsplit(":", 1)[1])
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    stalled.connect(("127.0.0.1", port))
    stalled.sendall(f"GET /stream?window=1m HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    try:
        reader = Subscriber(f"{base}/stream?window=1m")
        reader.start()
        replay(env, str(sample), "--loop", "3", "--rejects", str(tmp_path / "rejects.jsonl"))
        ref = reference_windows(read_topic(stack.bootstrap, f"{app_id}.events"))
        expected = {key for key in ref.windows if key[0] == "1m"}
        _wait_for_finals(reader, expected)
        reader.stop.set()
        keys = [_key(w) for w in reader.finals()]
        assert len(keys) == len(set(keys)) and set(keys) == expected

        def dropped() -> bool:
            with httpx.Client(timeout=5) as client:
                text = client.get(f"{base}/metrics").text
            seen[:] = [line for line in text.splitlines() if line.startswith("streampulse_api_push")]
            return any(
                line.startswith("streampulse_api_push_dropped_total ") and float(line.split()[1]) >= 1
                for line in seen
            )

        # The stalled one was really held up: its queue overflowed and it was dropped.
        seen: list[str] = []
        try:
            wait_for(dropped, 30, interval=0.5, what="the stalled subscriber to be dropped")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {seen}") from None
    finally:
        stalled.close()
