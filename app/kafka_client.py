"""How every StreamPulse Kafka client connects: one place for bootstrap and security options.

The worker (through Faust), the replayer, topic provisioning, the readiness check, the tests and
the benchmark all build their aiokafka clients from :func:`client_kwargs`, so a change of
listener or credentials is made once.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from app.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of an SSL or SASL_SSL connection (``None`` for plaintext protocols).

    Built with aiokafka's helper, which verifies the broker certificate and its host name
    against ``KAFKA_SSL_CAFILE`` (the system store without one), and presents a client
    certificate when one is configured.
    """
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    return create_ssl_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
        keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
    )


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments shared by aiokafka's producer, consumer and admin client."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL_"):
        assert settings.kafka_sasl_password is not None
        kwargs.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password.get_secret_value(),
        )
    return kwargs


def faust_kwargs(settings: Settings) -> dict[str, Any]:
    """What ``faust.App`` needs to connect the same way (broker list and credentials).

    Faust turns ``broker_credentials`` into the same aiokafka options for its consumer,
    producer and admin client; a SASL credential carries the TLS context for SASL_SSL.
    """
    import faust  # here, not at the top: the replayer and the API never load Faust

    kwargs: dict[str, Any] = {"broker": [f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")]}
    protocol = settings.kafka_security_protocol
    context = ssl_context(settings)
    if protocol.startswith("SASL_"):
        assert settings.kafka_sasl_password is not None
        kwargs["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    elif context is not None:
        kwargs["broker_credentials"] = faust.SSLCredentials(context)
    return kwargs


async def connection_problem(settings: Settings, timeout_s: float = 10.0) -> str | None:
    """Why the first bootstrap server refuses a connection (TLS, SASL or the socket), or ``None``.

    aiokafka's clients log the cause of a failed bootstrap and raise only "Unable to bootstrap",
    so a wrong password and an untrusted CA would look like a broker that is down. One direct
    connection with the same options names the cause, in words safe to print (never a secret).
    """
    host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    options = client_kwargs(settings)
    options.pop("bootstrap_servers")
    try:
        conn = await asyncio.wait_for(
            create_conn(host.strip("[]"), int(port), request_timeout_ms=int(timeout_s * 1000), **options),
            timeout_s,
        )
    except ssl.SSLCertVerificationError as exc:
        return f"TLS: the broker's certificate is not trusted ({exc.verify_message})"
    except ssl.SSLError as exc:
        return f"TLS handshake failed ({exc.reason or exc})"
    except KafkaError as exc:
        if "authentication" in str(exc).lower() or "sasl" in type(exc).__name__.lower():
            return f"SASL authentication failed for user {settings.kafka_sasl_username!r}"
        return str(exc) or type(exc).__name__
    except TimeoutError:
        return f"no answer within {timeout_s:.0f}s"
    except OSError as exc:
        return f"cannot connect ({exc.strerror or exc})"
    conn.close()
    return None
