"""Pacing schedules of the replayer (``--rate``, ``--speed``), without a clock or a broker."""

from __future__ import annotations

import pytest

from producers.pacing import Pacer


def test_unpaced_is_inactive() -> None:
    assert not Pacer().active
    assert Pacer(rate=1).active and Pacer(speed=2).active


def test_rate_schedule_is_absolute() -> None:
    pacer = Pacer(rate=2000)
    pacer.start(100.0)
    assert [pacer.due(i, 0) for i in (0, 1, 2000, 3999)] == pytest.approx([100.0, 100.0005, 101.0, 101.9995])


def test_speed_follows_event_time_from_the_first_event() -> None:
    pacer = Pacer(speed=10)
    pacer.start(5.0)
    assert pacer.due(0, 1_000_000) == 5.0
    assert pacer.due(1, 1_020_000) == pytest.approx(7.0)
    assert pacer.due(2, 990_000) == 5.0  # out of order: at once, never back in time


def test_with_rate_and_speed_the_slower_governs() -> None:
    pacer = Pacer(rate=1, speed=1000)
    pacer.start(0.0)
    assert pacer.due(0, 0) == 0.0
    assert pacer.due(3, 1000) == 3.0
    assert pacer.due(4, 60_000_000) == pytest.approx(60.0)
