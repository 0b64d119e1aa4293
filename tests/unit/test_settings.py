from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from app.settings import Settings, SettingsError, load_settings
from tables.windows import parse_windows


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


def _dotenv_cases(tmp: Path) -> dict[str, tuple[str, object]]:
    """One non-default value per field: what a ``.env`` line says and what the field must hold."""
    pem = tmp / "ca.pem"
    pem.write_text("-")
    return {
        "kafka_bootstrap": ("k1:9093,k2:9093", "k1:9093,k2:9093"),
        "redis_url": ("redis://r:6380/2", "redis://r:6380/2"),
        "redis_ssl_cafile": (str(pem), pem),
        "redis_cluster": ("true", True),
        "redis_read_from_replicas": ("true", True),
        "kafka_security_protocol": ("SASL_SSL", "SASL_SSL"),
        "kafka_sasl_mechanism": ("PLAIN", "PLAIN"),
        "kafka_sasl_username": ("u", "u"),
        "kafka_sasl_password": ("p", "p"),
        "kafka_ssl_cafile": (str(pem), pem),
        "kafka_ssl_certfile": (str(pem), pem),
        "kafka_ssl_keyfile": (str(pem), pem),
        "topic_replication_factor": ("3", 3),
        "topic_min_insync_replicas": ("2", 2),
        "api_keys": ("k1,k2", "k1,k2"),
        "cors_origins": ("https://a.example", "https://a.example"),
        "rate_limit": ("5/second", "5/second"),
        "app_id": ("city2", "city2"),
        "events_topic": ("raw", "raw"),
        "dlq_topic": ("dead", "dead"),
        "late_topic": ("tardy", "tardy"),
        "results_topic": ("out", "out"),
        "partitions": ("4", 4),
        "windows": ("30s,2h", tuple(parse_windows("30s,2h"))),
        "allowed_lateness": ("5s", timedelta(seconds=5)),
        "idle_timeout": ("0", timedelta(0)),
        "data_dir": ("/tmp/sp-state", Path("/tmp/sp-state")),
        "web_port": ("7077", 7077),
        "web_host": ("0.0.0.0", "0.0.0.0"),
        "api_port": ("8088", 8088),
        "api_host": ("0.0.0.0", "0.0.0.0"),
        "max_future": ("2h", timedelta(hours=2)),
        "max_region_id": ("500", 500),
        "session_timeout": ("10s", timedelta(seconds=10)),
        "live_mirror_rate": ("2.5", 2.5),
        "push_retention": ("500", 500),
        "push_client_buffer": ("5000", 5000),
        "zones_file": (str(pem), pem),
        "results_stale_after": ("1m", timedelta(minutes=1)),
        "retention": ("", {"30s": timedelta(hours=2), "2h": timedelta(days=3)}),
        "log_format": ("json", "json"),
        "log_level": ("debug", "DEBUG"),
    }


def test_every_setting_is_read_from_a_dotenv_file_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cases = _dotenv_cases(tmp_path)
    assert set(cases) == set(Settings.model_fields), "a new setting needs its .env case here"
    lines = [f"STREAMPULSE_{name.upper()}={raw}" for name, (raw, _) in cases.items() if raw]
    # The retention of a size is its own variable, spelled with the size as configured.
    lines += ["STREAMPULSE_RETENTION_30s=2h", "streampulse_retention_2H=3d"]
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    for name, (_, expected) in cases.items():
        value = getattr(s, name)
        got = value.get_secret_value() if isinstance(value, SecretStr) else value
        assert got == expected, name
    assert s.retention_s() == {"30s": 7200, "2h": 3 * 86400}


def test_the_environment_wins_over_the_dotenv_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("STREAMPULSE_PARTITIONS=4\nSTREAMPULSE_RETENTION_1m=2h\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STREAMPULSE_PARTITIONS", "6")
    monkeypatch.setenv("STREAMPULSE_RETENTION_1m", "3h")
    s = load_settings()
    assert (s.partitions, s.retention_s()["1m"]) == (6, 3 * 3600)


def test_a_bad_retention_in_dotenv_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("STREAMPULSE_RETENTION_5m=forever\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError, match="STREAMPULSE_RETENTION_5m"):
        load_settings()


def test_a_retention_for_an_unknown_size_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMPULSE_RETENTION_1week", "2h")
    with pytest.raises(SettingsError, match="RETENTION_1week"):
        load_settings()


def test_durations_and_windows_are_parsed_once_into_typed_fields() -> None:
    s = Settings(allowed_lateness="250ms", windows="1h,1m", results_stale_after=0)
    assert s.allowed_lateness == timedelta(milliseconds=250) and s.lateness_ms == 250
    assert [w.name for w in s.windows] == ["1m", "1h"]
    assert s.stale_after_ms == 0
    with pytest.raises(ValidationError):
        Settings(max_future="0")
