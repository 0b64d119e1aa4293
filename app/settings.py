"""The one settings object of StreamPulse, shared by the worker, the API and the producers.

Every value comes from the environment (prefix ``STREAMPULSE_``) or a ``.env`` file in the working
directory, the environment winning. Each is parsed once, into a typed field (durations into
``timedelta``, window sizes into :class:`WindowSize`), so a bad value fails at start-up with a
message naming the variable: a worker that starts with a misread window size or lateness computes
wrong results silently for hours.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from app.redis_keys import PUSH_RETENTION
from tables.windows import WindowSize, parse_duration_ms, parse_windows

ENV_PREFIX = "STREAMPULSE_"
DEFAULT_APP_ID = "streampulse"

#: Redis retention per window size when ``STREAMPULSE_RETENTION_<size>`` is not set: long enough
#: for a dashboard to scroll back a useful span, short enough to keep Redis small.
_DEFAULT_RETENTION_S = {60_000: 2 * 86_400, 300_000: 7 * 86_400, 900_000: 30 * 86_400}
_LONG_RETENTION_S = 90 * 86_400

#: Topic config of the events topic, wherever it is created (worker, replayer, bench). Its record
#: timestamps are event times, possibly years old in a replay; time-based retention would delete
#: such records on arrival, so the topic is bounded by size only (1 GiB per partition).
EVENTS_TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": str(1 << 30)}

_APP_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_HOSTPORT_RE = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


class SettingsError(ValueError):
    """A setting could not be read; the message names the environment variable."""


def _duration(*, allow_zero: bool) -> BeforeValidator:
    """``"30s"``, ``"5m"``, ``"250ms"`` or plain seconds, the spelling of every duration setting."""

    def parse(value: object) -> object:
        if isinstance(value, timedelta):
            value = f"{round(value.total_seconds() * 1000)}ms"
        if isinstance(value, str | int) and not isinstance(value, bool):
            return timedelta(milliseconds=parse_duration_ms(str(value), allow_zero=allow_zero))
        return value

    return BeforeValidator(parse)


def _window_sizes(value: object) -> object:
    return tuple(parse_windows(value)) if isinstance(value, str) else value


#: A positive duration, and one where 0 turns a check off.
Duration = Annotated[timedelta, _duration(allow_zero=False)]
DurationOrOff = Annotated[timedelta, _duration(allow_zero=True)]
WindowSizes = Annotated[tuple[WindowSize, ...], NoDecode, BeforeValidator(_window_sizes)]

_RETENTION_PREFIX = f"{ENV_PREFIX}RETENTION_".lower()


class _RetentionSource(PydanticBaseSettingsSource):
    """``STREAMPULSE_RETENTION_<size>`` from the environment and the ``.env`` file, as the
    ``retention`` mapping: the size is part of the variable's name, and pydantic-settings only maps
    variables of fixed names to fields, so without this a ``.env`` line would be ignored."""

    def __init__(
        self, settings_cls: type[BaseSettings], env: EnvSettingsSource, dotenv: DotEnvSettingsSource
    ) -> None:
        super().__init__(settings_cls)
        self._sources = (dotenv, env)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, str] = {}
        for source in self._sources:  # the environment last: it wins over .env
            for key, value in source.env_vars.items():
                if key.lower().startswith(_RETENTION_PREFIX) and value:
                    found[key[len(_RETENTION_PREFIX) :].lower()] = value
        return {"retention": found} if found else {}


class Settings(BaseSettings):
    """Typed view of the ``STREAMPULSE_*`` environment (see the README's configuration table)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field("localhost:9092", description="host:port[,host:port]")
    redis_url: SecretStr = Field(
        SecretStr("redis://localhost:6379/0"), description="Redis URL (redis://, rediss://, unix://)"
    )
    redis_ssl_cafile: Path | None = Field(None, description="CA bundle that signed the Redis TLS certificate")
    redis_cluster: bool = Field(
        False, description="REDIS_URL names a node of a Redis Cluster (the client discovers the rest)"
    )
    redis_read_from_replicas: bool = Field(
        False, description="the API reads from Redis Cluster replicas too (REDIS_CLUSTER only)"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how Kafka clients connect"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism (SASL_* protocols only)"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user (SASL_* protocols only)")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (SASL_* protocols only)")
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle for the brokers' certificates")
    kafka_ssl_certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    kafka_ssl_keyfile: Path | None = Field(None, description="client certificate's private key")
    topic_replication_factor: int = Field(1, ge=1, le=32, description="replication factor of created topics")
    topic_min_insync_replicas: int = Field(
        1, ge=1, le=32, description="min.insync.replicas of created topics"
    )
    api_keys: SecretStr = Field(SecretStr(""), description="comma-separated API keys; empty: the API is open")
    cors_origins: str = Field("", description="comma-separated origins allowed by CORS; empty: none")
    rate_limit: str = Field(
        "", description="per-client limit, e.g. '100/second' or '1000 per minute'; empty: none"
    )
    app_id: str = Field(DEFAULT_APP_ID, description="Faust app id: consumer group, changelog and key prefix")
    events_topic: str | None = Field(None, description="input topic (default: events)")
    dlq_topic: str | None = Field(None, description="dead-letter topic (default: events-dlq)")
    late_topic: str | None = Field(None, description="late-event topic (default: events-late)")
    results_topic: str | None = Field(None, description="final-window topic (default: window-results)")
    partitions: int = Field(8, ge=1, le=1024, description="partitions of every StreamPulse topic")
    windows: WindowSizes = Field(
        default_factory=lambda: tuple(parse_windows("1m,5m,15m,1h")), description="tumbling window sizes"
    )
    allowed_lateness: DurationOrOff = Field(
        timedelta(seconds=30), description="how far behind the highest event time an event may be"
    )
    idle_timeout: DurationOrOff = Field(
        timedelta(seconds=60), description="silence after which a partition's windows close (0: never)"
    )
    data_dir: Path | None = Field(None, description="RocksDB directory (default: .data/worker-<WEB_PORT>)")
    web_port: int = Field(6066, ge=1, le=65535, description="worker web/metrics port")
    web_host: str = Field("127.0.0.1", description="address the worker web server binds")
    api_port: int = Field(8000, ge=1, le=65535, description="API port")
    api_host: str = Field("127.0.0.1", description="address the API binds")
    max_future: Duration = Field(
        timedelta(hours=1), description="how far ahead of the wall clock an event time may be"
    )
    max_region_id: int = Field(1_000_000, ge=0, le=2**63 - 1, description="highest accepted region_id")
    session_timeout: Duration = Field(
        timedelta(seconds=30), description="Kafka consumer-group session timeout of a worker"
    )
    live_mirror_rate: float = Field(
        10.0, gt=0, le=1000, description="at most this many Redis writes of open windows per second"
    )
    push_retention: int = Field(
        PUSH_RETENTION,
        ge=100,
        le=10_000_000,
        description="updates kept per window size for /stream resumption",
    )
    push_client_buffer: int = Field(
        2_000,
        ge=1_000,
        le=1_000_000,
        description="updates a /stream client may fall behind before it is dropped",
    )
    zones_file: Path = Field(
        Path(__file__).resolve().parent.parent / "data" / "tlc" / "taxi_zones.csv",
        description="TLC zone lookup (LocationID, zone, borough) naming the regions",
    )
    results_stale_after: DurationOrOff = Field(
        timedelta(minutes=15), description="/health fails after this long without a result"
    )
    retention: dict[str, Duration] = Field(
        default_factory=dict, description="Redis retention per window size name, from RETENTION_<size>"
    )
    log_format: Literal["plain", "json"] = Field("plain", description="log lines as text or as JSON objects")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="lowest level logged"
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        hosts = [h.strip() for h in value.split(",") if h.strip()]
        if not hosts or not all(_HOSTPORT_RE.match(h) for h in hosts):
            raise ValueError(f"expected host:port[,host:port], got {value!r}")
        return ",".join(hosts)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        parsed = urlparse(raw)
        if parsed.scheme not in {"redis", "rediss", "unix"} or not (parsed.netloc or parsed.path):
            raise ValueError(f"expected a redis://, rediss:// or unix:// URL, got {mask_url(raw)!r}")
        return value

    @field_validator("redis_ssl_cafile", "kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    @classmethod
    def _check_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        if value.strip():
            from limits import parse_many

            try:
                parse_many(value)
            except ValueError:
                raise ValueError(f"expected e.g. '100/second' or '1000 per minute', got {value!r}") from None
        return value.strip()

    @model_validator(mode="after")
    def _check_redis_cluster(self) -> Settings:
        if self.redis_read_from_replicas and not self.redis_cluster:
            raise ValueError(f"{ENV_PREFIX}REDIS_READ_FROM_REPLICAS needs {ENV_PREFIX}REDIS_CLUSTER=true")
        if self.redis_cluster and self.redis_dsn.startswith("unix://"):
            raise ValueError(f"{ENV_PREFIX}REDIS_CLUSTER needs a redis:// or rediss:// URL")
        return self

    @model_validator(mode="after")
    def _check_kafka_security(self) -> Settings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(
                f"{ENV_PREFIX}KAFKA_SASL_USERNAME and {ENV_PREFIX}KAFKA_SASL_PASSWORD are required "
                f"with {ENV_PREFIX}KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}"
            )
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError(f"{ENV_PREFIX}KAFKA_SSL_CERTFILE and {ENV_PREFIX}KAFKA_SSL_KEYFILE go together")
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(
                f"{ENV_PREFIX}TOPIC_MIN_INSYNC_REPLICAS cannot exceed {ENV_PREFIX}TOPIC_REPLICATION_FACTOR"
            )
        return self

    @field_validator("app_id")
    @classmethod
    def _check_app_id(cls, value: str) -> str:
        if not _APP_ID_RE.match(value):
            raise ValueError(f"letters, digits, '.', '_', '-' only (got {value!r})")
        return value

    @field_validator("events_topic", "dlq_topic", "late_topic", "results_topic")
    @classmethod
    def _check_topic(cls, value: str | None) -> str | None:
        if value is not None and not _TOPIC_RE.match(value):
            raise ValueError(f"not a valid Kafka topic name: {value!r}")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("retention")
    @classmethod
    def _check_retention(cls, value: dict[str, timedelta]) -> dict[str, timedelta]:
        for size, kept in value.items():
            try:
                parse_windows(size)
            except ValueError:
                raise ValueError(f"RETENTION_{size}: {size!r} is not a window size (e.g. 1m, 1h)") from None
            if kept < timedelta(seconds=1):
                raise ValueError(f"RETENTION_{size}: retention must be at least 1s")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(env_settings, EnvSettingsSource)
        assert isinstance(dotenv_settings, DotEnvSettingsSource)
        retention = _RetentionSource(settings_cls, env_settings, dotenv_settings)
        return init_settings, retention, env_settings, dotenv_settings, file_secret_settings

    # Derived values. Topic names derive from the app id so that two app ids never share topics.
    def _topic(self, explicit: str | None, base: str) -> str:
        if explicit:
            return explicit
        return base if self.app_id == DEFAULT_APP_ID else f"{self.app_id}.{base}"

    @property
    def events(self) -> str:
        return self._topic(self.events_topic, "events")

    @property
    def dlq(self) -> str:
        return self._topic(self.dlq_topic, "events-dlq")

    @property
    def late(self) -> str:
        return self._topic(self.late_topic, "events-late")

    @property
    def results(self) -> str:
        return self._topic(self.results_topic, "window-results")

    @property
    def window_sizes(self) -> list[WindowSize]:
        return list(self.windows)

    @property
    def lateness_ms(self) -> int:
        return _ms(self.allowed_lateness)

    @property
    def idle_timeout_ms(self) -> int:
        return _ms(self.idle_timeout)

    @property
    def max_future_ms(self) -> int:
        return _ms(self.max_future)

    @property
    def session_timeout_ms(self) -> int:
        return _ms(self.session_timeout)

    @property
    def stale_after_ms(self) -> int:
        return _ms(self.results_stale_after)

    @property
    def redis_dsn(self) -> str:
        """The Redis URL with its password, for the client factory only (never log it)."""
        return self.redis_url.get_secret_value()

    @property
    def redis_url_masked(self) -> str:
        """The Redis URL safe to print: any user and password replaced by ``***``."""
        return mask_url(self.redis_dsn)

    @property
    def api_key_set(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip())

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def worker_data_dir(self) -> Path:
        return self.data_dir or Path(".data") / f"worker-{self.web_port}"

    def retention_s(self) -> dict[str, int]:
        """Seconds Redis keeps results of each configured window size (``RETENTION_<size>`` or the
        default of that size); a retention set for a size not configured is unused."""
        return {
            size.name: int(self.retention[size.name.lower()].total_seconds())
            if size.name.lower() in self.retention
            else _DEFAULT_RETENTION_S.get(size.size_ms, _LONG_RETENTION_S)
            for size in self.window_sizes
        }


def _ms(value: timedelta) -> int:
    return round(value.total_seconds() * 1000)


def mask_url(url: str) -> str:
    """``url`` with the userinfo (user and password) replaced by ``***``, for logs and messages."""
    parsed = urlparse(url)
    if "@" not in parsed.netloc:
        return url
    host = parsed.netloc.rpartition("@")[2]
    return parsed._replace(netloc=f"***@{host}").geturl()


def load_settings() -> Settings:
    """Build the settings or raise :class:`SettingsError` naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # A retention's size keeps its spelling: RETENTION_1m, not RETENTION_1M.
            loc = "_".join([str(part).upper() for part in err["loc"][:1]] + [str(p) for p in err["loc"][1:]])
            name = f"{ENV_PREFIX}{loc}" if loc else "STREAMPULSE settings"
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}: {msg}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
