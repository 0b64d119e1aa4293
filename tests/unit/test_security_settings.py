"""The security settings: secrets stay secret, bad values fail at start-up naming the variable,
and every Kafka client gets the same security options (aiokafka's directly, Faust's through its
credentials)."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest

from app.kafka_client import client_kwargs, faust_kwargs
from app.redis_client import connection_kwargs
from app.settings import Settings, SettingsError, load_settings, mask_url

CA = "/etc/ssl/certs/ca-certificates.crt"


def sasl_settings(**values: object) -> Settings:
    base: dict[str, object] = {
        "kafka_bootstrap": "broker-1:9094,broker-2:9094",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_username": "streampulse-worker",
        "kafka_sasl_password": "s3cret-pw",
        "kafka_ssl_cafile": CA,
    }
    return Settings(**(base | values))  # type: ignore[arg-type]


def test_secrets_are_not_printed() -> None:
    settings = Settings(
        redis_url="rediss://sp-api:redis-pw@redis:6380/0",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="u",
        kafka_sasl_password="kafka-pw",
        api_keys="key-one,key-two",
    )
    shown = repr(settings) + str(settings) + str(settings.model_dump())
    for secret in ("redis-pw", "kafka-pw", "key-one", "key-two"):
        assert secret not in shown
    assert settings.redis_url_masked == "rediss://***@redis:6380/0"
    assert settings.redis_dsn == "rediss://sp-api:redis-pw@redis:6380/0"
    assert settings.api_key_set == {"key-one", "key-two"}


def test_mask_url_keeps_urls_without_credentials() -> None:
    assert mask_url("redis://localhost:6379/0") == "redis://localhost:6379/0"
    assert mask_url("redis://:pw@localhost:6379/0") == "redis://***@localhost:6379/0"


def test_a_bad_redis_url_names_the_variable_but_not_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMPULSE_REDIS_URL", "http://user:hunter2@redis:6379")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "STREAMPULSE_REDIS_URL" in str(err.value) and "hunter2" not in str(err.value)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"STREAMPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_USERNAME"),
        ({"STREAMPULSE_KAFKA_SECURITY_PROTOCOL": "TLS"}, "STREAMPULSE_KAFKA_SECURITY_PROTOCOL"),
        ({"STREAMPULSE_KAFKA_SASL_MECHANISM": "GSSAPI"}, "STREAMPULSE_KAFKA_SASL_MECHANISM"),
        ({"STREAMPULSE_KAFKA_SSL_CAFILE": "/no/such/ca.pem"}, "STREAMPULSE_KAFKA_SSL_CAFILE"),
        ({"STREAMPULSE_KAFKA_SSL_CERTFILE": CA}, "KAFKA_SSL_KEYFILE"),
        ({"STREAMPULSE_RATE_LIMIT": "lots"}, "STREAMPULSE_RATE_LIMIT"),
        ({"STREAMPULSE_TOPIC_MIN_INSYNC_REPLICAS": "2"}, "TOPIC_REPLICATION_FACTOR"),
    ],
)
def test_bad_security_settings_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], names: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=names):
        load_settings()


def test_plaintext_client_kwargs_are_the_bootstrap_only() -> None:
    settings = Settings(kafka_bootstrap="broker-1:9092,broker-2:9092", kafka_security_protocol="PLAINTEXT")
    assert client_kwargs(settings) == {
        "bootstrap_servers": "broker-1:9092,broker-2:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert "broker_credentials" not in faust_kwargs(settings)


def test_sasl_ssl_client_kwargs() -> None:
    kwargs = client_kwargs(sasl_settings())
    context = kwargs.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert kwargs == {
        "bootstrap_servers": "broker-1:9094,broker-2:9094",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "streampulse-worker",
        "sasl_plain_password": "s3cret-pw",
    }


def test_faust_gets_the_same_credentials() -> None:
    kwargs = faust_kwargs(sasl_settings(kafka_sasl_mechanism="SCRAM-SHA-256"))
    assert kwargs["broker"] == ["kafka://broker-1:9094", "kafka://broker-2:9094"]
    creds = kwargs["broker_credentials"]
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-256"
    assert creds.username == "streampulse-worker" and creds.password == "s3cret-pw"
    assert "s3cret-pw" not in repr(creds)
    ssl_only = faust_kwargs(Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=Path(CA)))
    assert isinstance(ssl_only["broker_credentials"], faust.SSLCredentials)


def test_redis_tls_checks_certificate_and_host_name() -> None:
    settings = Settings(redis_url="rediss://redis:6380/0", redis_ssl_cafile=Path(CA))
    assert connection_kwargs(settings, socket_timeout=1) == {
        "socket_timeout": 1,
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": CA,
    }
    assert connection_kwargs(Settings(), socket_timeout=1) == {"socket_timeout": 1}
