"""Topic provisioning's pure parts: which topics an app id has, and when they count as ready."""

from __future__ import annotations

import pytest

from app.provision import ProvisioningError, _not_ready, changelog_topic, topic_specs
from app.settings import EVENTS_TOPIC_CONFIG, Settings


@pytest.mark.parametrize("app_id", ["streampulse", "city2"])
def test_every_topic_of_the_app_id_with_the_configured_partitions(app_id: str) -> None:
    settings = Settings(app_id=app_id, partitions=6)
    specs = {s.name: s for s in topic_specs(settings)}
    assert set(specs) == {
        settings.events,
        settings.dlq,
        settings.late,
        settings.results,
        f"{app_id}-window-state-changelog",
    }
    assert {s.partitions for s in specs.values()} == {6}
    assert specs[settings.events].config == EVENTS_TOPIC_CONFIG  # record times are event times
    assert specs[changelog_topic(settings)].config == {"cleanup.policy": "compact"}


def test_an_extra_events_topic_is_provisioned_like_the_events_topic() -> None:
    settings = Settings()
    specs = {s.name: s for s in topic_specs(settings, ["other-input", settings.events])}
    assert specs["other-input"].config == EVENTS_TOPIC_CONFIG
    assert len(specs) == 6


def _topic(name: str, leaders: list[int], error: int = 0) -> dict[str, object]:
    parts = [{"partition": i, "leader": leader} for i, leader in enumerate(leaders)]
    return {"topic": name, "error_code": error, "partitions": parts}


def test_ready_only_when_every_topic_is_listed_with_every_partition_led() -> None:
    expected = {"a": 2, "b": 2}
    assert _not_ready([_topic("a", [1, 1]), _topic("b", [1, 1])], expected) == []
    assert _not_ready([_topic("a", [1, 1])], expected) == ["b: not in the metadata yet"]
    assert _not_ready([_topic("a", [1, 1]), _topic("b", [], error=3)], expected) == [
        "b: not in the metadata yet"
    ]
    assert _not_ready([_topic("a", [1, -1]), _topic("b", [1, 1])], expected) == [
        "a: partitions without a leader"
    ]


def test_a_topic_with_another_partition_count_is_an_error_naming_it() -> None:
    with pytest.raises(ProvisioningError, match="topic a has 4 partitions, the settings say 2"):
        _not_ready([_topic("a", [1, 1, 1, 1])], {"a": 2})
