"""A run's results in Redis: its final windows (:mod:`support.redis_io`), when it last wrote one,
and removing every key of the run afterwards.

Key names come from :mod:`app.redis_keys`, the module the sink and the API share.
"""

from __future__ import annotations

from redis import Redis

from app.redis_keys import RedisKeys
from support.redis_io import final_windows, scan_chunks

__all__ = ["delete_run_keys", "final_windows", "last_final_ms"]


def last_final_ms(redis_url: str, app_id: str) -> int | None:
    client = Redis.from_url(redis_url)
    try:
        value = client.get(RedisKeys(app_id).last_final_ms)
        return int(value) if value else None
    finally:
        client.close()


def delete_run_keys(redis_url: str, app_id_prefix: str) -> int:
    """Unlink every key of every app id starting with ``app_id_prefix`` (a run id: the whole run)."""
    client = Redis.from_url(redis_url)
    deleted = 0
    try:
        for chunk in scan_chunks(client, RedisKeys(app_id_prefix).prefix[:-1] + "*"):
            deleted += int(client.unlink(*chunk))
        return deleted
    finally:
        client.close()
