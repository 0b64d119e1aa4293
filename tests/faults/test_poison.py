"""Records built to break a worker, among normal ones: none may stop it, each lands in the DLQ.

They are produced directly (not through the replayer, which validates), with the producer's
clock as record timestamp, as any other client of the topic would; several would be refused by
the broker if their event time were stamped on them.
"""

from __future__ import annotations

import json
from pathlib import Path

from app.control import CONTROL_HEADER
from support.kafka import read_topic
from support.procs import StackInfo, Worker, launch_worker, replay, wait_for, wait_worker_ready
from tests.faults.harness import (
    Raw,
    fault_env,
    now_ms,
    produce_raw,
    topic_of,
    worker_log_problems,
)
from tests.integration.pipeline import assert_exact, generate_canonical

DAY_MS = 86_400_000
#: Over the worker producer's 1,000,000-byte request limit, under the broker's 1,048,588.
OVERSIZE_BYTES = 1_000_300


def _event(trip_id: str, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "trip_id": trip_id,
        "region_id": 7,
        "event_time": "2025-08-15T10:05:00Z",
        "fare": 12.5,
        "duration": 600,
        "distance": 3.2,
    }
    base.update(fields)
    return base


def _raw_json(text: str) -> bytes:
    return text.encode()


def poison_records() -> dict[str, Raw]:
    """Name → record. Every one is invalid under the contract; most crashed or stalled a worker once."""
    wall = now_ms()
    control_soon = json.dumps({"control": "end-of-stream", "event_time_ms": wall - DAY_MS}).encode()
    oversize = json.dumps(_event("x" * OVERSIZE_BYTES)).encode()
    assert 1_000_000 < len(oversize) < 1_048_588 - 200
    return {
        "year-9999 event": Raw(json.dumps(_event("p-9999", event_time="9999-12-31T23:59:59Z")).encode()),
        "far-future control": Raw(
            json.dumps({"control": "end-of-stream", "event_time_ms": wall + 3650 * DAY_MS}).encode(),
            headers=((CONTROL_HEADER, b"end-of-stream"),),
        ),
        # Valid time (far ahead of the events, behind the wall clock): only the kind is wrong.
        "unknown control kind": Raw(
            json.dumps({"control": "rewind", "event_time_ms": wall - DAY_MS}).encode(),
            headers=((CONTROL_HEADER, b"rewind"),),
        ),
        # Not a control record (the header name is not exact), and not an event either.
        "control-prefixed header": Raw(control_soon, headers=((CONTROL_HEADER + "-v2", b"end-of-stream"),)),
        "value over 1 MB": Raw(oversize),
        "invalid UTF-8": Raw(
            b'{"trip_id": "\xff\xfe\xfd", "region_id": 7, "event_time": "2025-08-15T10:05:00Z", '
            b'"fare": 1, "duration": 1, "distance": 1}'
        ),
        "10,000-deep JSON": Raw(b"[" * 10_000 + b"]" * 10_000),
        "NaN and Infinity": Raw(
            _raw_json(
                '{"trip_id": "p-nan", "region_id": 7, "event_time": "2025-08-15T10:05:00Z", '
                '"fare": NaN, "duration": Infinity, "distance": -Infinity}'
            )
        ),
        "5,000-digit number": Raw(
            _raw_json(
                '{"trip_id": "p-big", "region_id": ' + "9" * 5000 + ', "event_time": "2025-08-15T10:05:00Z", '
                '"fare": 1, "duration": 1, "distance": 1}'
            )
        ),
        "region over MAX_REGION_ID": Raw(json.dumps(_event("p-region", region_id=1_000_001)).encode()),
    }


def test_poison_records_go_to_the_dlq_and_stop_nothing(
    stack: StackInfo, app_id: str, sp_env: dict[str, str], tmp_path: Path, workers: list[Worker]
) -> None:
    env = fault_env(sp_env)
    events = topic_of(app_id, "events")
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    generate_canonical(tmp_path / "all.jsonl", 1200, seed=606, regions=8)
    lines = (tmp_path / "all.jsonl").read_text().splitlines(keepends=True)
    first.write_text("".join(lines[:600]))
    second.write_text("".join(lines[600:]))
    worker = launch_worker(env, tmp_path, "w1")
    workers.append(worker)
    wait_worker_ready(worker.proc)
    replay(env, str(first), "--no-end-marker", "--rejects", str(tmp_path / "rej1.jsonl"))
    poison = poison_records()
    placed = dict(zip(poison, produce_raw(stack.bootstrap, events, poison.values()), strict=True))
    replay(env, str(second), "--rejects", str(tmp_path / "rej2.jsonl"))

    ref = assert_exact(stack, app_id, events, timeout=120)
    # The case means something only if normal events follow the poison on its partition: a
    # far-future or unknown control obeyed there would make them late and change their windows.
    partition, last_poison = max(placed.values())
    after = [
        r for r in read_topic(stack.bootstrap, events) if r.partition == partition and r.offset > last_poison
    ]
    assert len([r for r in after if not r.headers]) >= 50, "too few events after the poison"
    assert ref.invalid == len(poison), (
        f"the reference must find exactly the poison invalid, found {ref.invalid}"
    )
    expected = {f"{events}/{p}/{o}": name for name, (p, o) in placed.items()}

    def dead_letters() -> dict[str, dict[str, bytes]] | None:
        got = {}
        for rec in read_topic(stack.bootstrap, topic_of(app_id, "events-dlq")):
            headers = dict(rec.headers)
            got[headers.get("streampulse-source", b"").decode()] = headers
        return got if set(expected) <= set(got) else None

    try:
        dead = wait_for(dead_letters, 60, interval=1, what="every poison record in the DLQ")
    except AssertionError:
        found = {}
        for rec in read_topic(stack.bootstrap, topic_of(app_id, "events-dlq")):
            found[dict(rec.headers).get("streampulse-source", b"").decode()] = rec
        missing = sorted(name for src, name in expected.items() if src not in found)
        raise AssertionError(f"not dead-lettered: {missing}") from None
    assert dead is not None
    assert set(dead) == set(expected), f"dead-lettered but not poison: {sorted(set(dead) - set(expected))}"
    no_reason = [expected[src] for src, h in dead.items() if not h.get("streampulse-error-reason")]
    assert not no_reason, f"no reason header: {no_reason}"
    year_9999 = next(src for src, name in expected.items() if name == "year-9999 event")
    assert dead[year_9999]["streampulse-error-reason"] == b"future"

    # Still alive, not stalled: a later event on the poisoned partition is processed.
    before = worker.processed()
    tail = tmp_path / "tail.jsonl"
    tail.write_text(json.dumps(_event("p-after", event_time="2025-08-15T12:00:00Z")) + "\n")
    replay(env, str(tail), "--no-end-marker", "--rejects", str(tmp_path / "rej3.jsonl"))
    wait_for(lambda: worker.processed() > before, 30, what="processing after the poison")
    assert worker.proc.alive()
    assert not worker_log_problems(worker.proc.output()), worker_log_problems(worker.proc.output())[:5]
