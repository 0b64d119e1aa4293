"""Waits until Kafka or Redis (from the StreamPulse settings) answers; exit 1 on timeout.

This is for the services StreamPulse runs on, before any of its own processes starts
(``scripts/stack.sh``, the test session). Whether a worker or an API process is ready is its own
``/ready`` page (app/readiness.py): one rule per thing, so this script never guesses at those.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from aiokafka.admin import AIOKafkaAdminClient

from app.kafka_client import client_kwargs
from app.redis_client import redis_client
from app.settings import Settings, get_settings
from app.version import version_line


async def kafka_ok(settings: Settings) -> bool:
    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=3000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        await admin.close()


async def redis_ok(settings: Settings) -> bool:
    client = redis_client(settings, socket_connect_timeout=1, socket_timeout=2)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


async def main() -> int:
    logging.disable(logging.CRITICAL)
    parser = argparse.ArgumentParser(
        prog="scripts/ready.py", description="Wait until Kafka or Redis answers."
    )
    parser.add_argument("service", choices=["kafka", "redis"])
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--version", action="version", version=version_line(parser.prog))
    args = parser.parse_args()
    settings = get_settings()
    deadline = time.monotonic() + args.timeout
    while True:
        if args.service == "kafka":
            ok = await kafka_ok(settings)
        else:
            ok = await redis_ok(settings)
        if ok:
            return 0
        if time.monotonic() > deadline:
            target = settings.kafka_bootstrap if args.service == "kafka" else settings.redis_url_masked
            print(f"{args.service}: no answer at {target} after {args.timeout:.0f}s", file=sys.stderr)
            return 1
        await asyncio.sleep(0.5)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
