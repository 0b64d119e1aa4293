"""The latency phase's pure parts: SSE parsing, push and event → browser timing, histogram
quantiles over several processes, and the target verdicts."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib", reason="the bench extra is not installed")

from bench.latency import Probe, quantile_of, verdict, verdicts  # noqa: E402
from bench.sse import SseEvent, SseParser  # noqa: E402


def feed(parser: SseParser, text: str, now_s: float = 100.0) -> list[SseEvent]:
    out = []
    for line in text.split("\n"):
        event = parser.feed(line, now_s)
        if event is not None:
            out.append(event)
    return out


def test_sse_parser_yields_one_event_per_blank_line_and_skips_comments_and_retry() -> None:
    text = (
        "retry: 2000\n\n: heartbeat\n\n"
        'id: 1764621234567-0\nevent: window\ndata: {"a": 1}\n\n'
        "id: 1764621234568-3\nevent: dropped\ndata: x\ndata: y\n\n"
    )
    events = feed(SseParser(), text)
    assert [(e.id, e.event, e.data) for e in events] == [
        ("1764621234567-0", "window", b'{"a": 1}'),
        ("1764621234568-3", "dropped", b"x\ny"),
    ]


def test_sse_parser_keeps_an_event_split_across_reads() -> None:
    parser = SseParser()
    assert feed(parser, "id: 5-0\nevent: window") == []
    assert [e.id for e in feed(parser, "data: {}\n")] == ["5-0"]


def window_event(entry_ms: int, received_ms: int, region: int, start_iso: str, count: int) -> SseEvent:
    data = f'{{"region_id": {region}, "window_start": "{start_iso}", "trip_count": {count}}}'
    return SseEvent(f"{entry_ms}-0", "window", data.encode(), received_ms / 1000)


def test_push_is_receipt_minus_the_entry_ids_milliseconds_and_browser_counts_new_trips_once() -> None:
    probe = Probe(sample_from_ms=0)
    start = 1_764_621_180_000  # 2025-12-01T20:33:00Z, a minute boundary
    for t in (start + 100, start + 200, start + 300):
        probe.track(8, t, measured=True)
    probe.on_sse(window_event(start + 250, start + 260, 8, "2025-12-01T20:33:00Z", 2))
    probe.on_sse(window_event(start + 400, start + 430, 8, "2025-12-01T20:33:00Z", 3))
    probe.on_sse(window_event(start + 500, start + 520, 8, "2025-12-01T20:33:00Z", 3))
    assert probe.push_ms == [10, 30, 20]
    assert probe.browser_ms == [160, 60, 130]  # 260-100, 260-200, then 430-300; nothing new after
    assert probe.sse_events == 3


def test_trips_sent_during_the_warm_up_count_but_are_not_timed() -> None:
    probe = Probe(sample_from_ms=0)
    start = 1_764_621_180_000
    probe.track(4, start + 10, measured=False)
    probe.track(4, start + 20, measured=True)
    probe.on_sse(window_event(start + 50, start + 60, 4, "2025-12-01T20:33:00Z", 2))
    assert probe.browser_ms == [40]


def exposition(le_counts: dict[str, int], labels: str = "") -> str:
    prefix = f"{labels}," if labels else ""
    return "\n".join(f'm_bucket{{{prefix}le="{le}"}} {n}.0' for le, n in le_counts.items())


def test_quantile_sums_buckets_across_processes_and_interpolates_within_one() -> None:
    a = exposition({"0.1": 5, "0.5": 10, "+Inf": 10})
    b = exposition({"0.1": 5, "0.5": 10, "+Inf": 10})
    assert quantile_of([a, b], "m", 0.5) == 100.0
    assert quantile_of([a, b], "m", 0.75) == 300.0  # halfway between 0.1 s and 0.5 s
    assert quantile_of([a, ""], "m", 0.5) == 100.0  # a process that did not answer adds nothing


def test_quantile_picks_one_labelled_series_and_is_none_without_observations() -> None:
    text = exposition({"0.1": 0, "1.0": 4, "+Inf": 4}, 'kind="live"') + "\n"
    text += exposition({"0.1": 4, "1.0": 4, "+Inf": 4}, 'kind="final"')
    assert quantile_of([text], "m", 0.99, 'kind="final"') == 99.0
    assert quantile_of([text], "m", 0.5, 'kind="live"') == 550.0
    assert quantile_of([exposition({"0.1": 0, "+Inf": 0})], "m", 0.5) is None


def test_verdicts_say_by_how_much_a_target_is_missed() -> None:
    assert verdict(120.0, 150) == "met"
    assert verdict(1_650.4, 500) == "missed by 1,150 ms"
    assert verdict(None, 500) == "not measured"
    said = verdicts({"open_window_latency_p50_ms": 100.0, "push_latency_p99_ms": 180.0})
    assert said["open_window p50 ≤ 150 ms"] == "met"
    assert said["push p99 ≤ 100 ms"] == "missed by 80 ms"
    assert said["final p99 ≤ 1000 ms"] == "not measured"
    assert "push p50" not in " ".join(said)  # push has a p99 target only
