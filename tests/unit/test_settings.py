from __future__ import annotations

import pytest

from app.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("STREAMPULSE_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir("/")


def test_defaults_follow_the_contract() -> None:
    s = Settings()
    assert (s.events, s.dlq, s.late, s.results) == ("events", "events-dlq", "events-late", "window-results")
    assert [w.name for w in s.window_sizes] == ["1m", "5m", "15m", "1h"]
    assert s.lateness_ms == 30_000
    assert s.partitions == 8
    assert s.kafka_bootstrap == "localhost:9092"


def test_topics_derive_from_the_app_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMPULSE_APP_ID", "city2")
    s = load_settings()
    assert {s.events, s.dlq, s.late, s.results} == {
        "city2.events",
        "city2.events-dlq",
        "city2.events-late",
        "city2.window-results",
    }


def test_explicit_topic_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMPULSE_APP_ID", "city2")
    monkeypatch.setenv("STREAMPULSE_EVENTS_TOPIC", "raw-trips")
    assert load_settings().events == "raw-trips"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("STREAMPULSE_WINDOWS", "1m,7x"),
        ("STREAMPULSE_WINDOWS", "1m,60s"),
        ("STREAMPULSE_ALLOWED_LATENESS", "soon"),
        ("STREAMPULSE_REDIS_URL", "http://localhost"),
        ("STREAMPULSE_KAFKA_BOOTSTRAP", "no-port"),
        ("STREAMPULSE_PARTITIONS", "0"),
        ("STREAMPULSE_APP_ID", "bad id!"),
        ("STREAMPULSE_RETENTION_1m", "forever"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=var.upper() if "RETENTION" not in var else var):
        load_settings()


def test_retention_per_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMPULSE_RETENTION_1m", "2h")
    retention = load_settings().retention_s()
    assert retention["1m"] == 7200
    assert retention["1h"] == 90 * 86400
