"""The benchmark's CPU column and the Kafka Streams contender's build contract, without a broker."""

from __future__ import annotations

import pytest

pytest.importorskip("psutil", reason="the bench extra (psutil) is not installed")

from bench import kstreams  # noqa: E402
from bench.procs import RssSampler  # noqa: E402
from bench.run import cpu_per_1k  # noqa: E402


def sampler(points: list[tuple[float, float]]) -> RssSampler:
    s = RssSampler([])
    s.cpu = points
    return s


def test_cpu_over_a_span_is_interpolated_between_samples() -> None:
    s = sampler([(10.0, 1.0), (11.0, 2.0), (12.0, 4.0)])
    assert s.cpu_seconds(10.5, 11.5) == pytest.approx(1.5)  # 1.5 -> 3.0
    assert s.cpu_seconds(10.0, 12.0) == pytest.approx(3.0)


def test_cpu_outside_the_samples_is_unknown() -> None:
    s = sampler([(10.0, 1.0), (11.0, 2.0)])
    assert s.cpu_seconds(9.0, 10.5) is None
    assert s.cpu_seconds(10.5, 12.0) is None


def test_a_child_that_exited_never_makes_cpu_negative() -> None:
    assert sampler([(10.0, 5.0), (11.0, 3.0)]).cpu_seconds(10.0, 11.0) == 0.0


def test_cpu_per_thousand_events_in_milliseconds() -> None:
    assert cpu_per_1k(2.5, 100_000) == 25.0
    assert cpu_per_1k(None, 100_000) is None
    assert cpu_per_1k(1.0, 0) is None


def test_the_kafka_streams_contender_uses_the_brokers_kafka_version() -> None:
    assert kstreams.kafka_version() == kstreams._kafka_version(kstreams.BROKER_POM)
