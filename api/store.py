"""Reads window results from Redis in the layout of :mod:`app.redis_keys`.

Sorted-set indexes can outlive the window hashes they point to: a hash expires on its own TTL while
its index entry stays until the sink's next trim. Every read therefore checks that the hash exists
and skips entries whose hash is gone, in batches once such entries show up. The API never writes:
its Redis user is read-only, and trimming indexes is the sink's job (``app/redis_keys.py``).

Nothing read is trusted: Redis may hold a window written by an older version or by anyone who got
write access. A stored window that does not decode, does not match the model, or does not belong
to the key it was read from is logged and treated as absent (a 404 for that window), never a 500.
Each Redis round trip is timed for ``streampulse_api_redis_call_duration_seconds``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from api.metrics import INVALID_STORED, redis_call
from api.models import StoredWindow
from app.redis_client import RedisClient
from app.redis_keys import RedisKeys
from tables.windows import WindowSize

#: The newest start in a history index and one window hash, in one command (KEYS: index, window hash).
_NEWEST_AND_WINDOW_LUA = """
local newest = redis.call('ZRANGE', KEYS[1], '+inf', '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, 1)[1]
local row = redis.call('HMGET', KEYS[2], 'final', 'data')
return {newest or false, row[1], row[2]}
"""
#: Index entries read per round trip once expired entries show up (the first read takes one).
_SCAN_BATCH = 64

#: Bound on the remembered newest starts (one per region and size): past it they are forgotten.
_MAX_LATEST_SEEN = 100_000

Record = dict[str, Any]
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Record]
    has_more: bool


class WindowStore:
    """Queries for one app id's results; one instance per API process, sharing its Redis pool."""

    def __init__(self, redis: RedisClient, keys: RedisKeys, max_future_ms: int | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.max_future_ms = max_future_ms
        self._newest_and_window = redis.register_script(_NEWEST_AND_WINDOW_LUA)
        self._latest_seen: dict[tuple[str, int], int] = {}

    async def last_final_ms(self) -> int | None:
        with redis_call("last_final"):
            raw = await self.redis.get(self.keys.last_final_ms)
        return int(raw) if raw is not None else None

    async def has_history(self, size: WindowSize, region_id: int) -> bool:
        with redis_call("has_history"):
            return bool(await self.redis.exists(self.keys.history(size.name, region_id)))

    async def window(self, size: WindowSize, region_id: int, start_ms: int) -> Record | None:
        """The window starting at ``start_ms``, final or open; ``None`` if never written or expired."""
        with redis_call("window"):
            final, data = await self.redis.hmget(
                self.keys.window(size.name, region_id, start_ms), "final", "data"
            )
        return _record(final, data, size, region_id, start_ms)

    async def latest_final(self, size: WindowSize, region_id: int) -> Record | None:
        """The region's newest final window whose hash still exists.

        One command in the common case: a script reads the index's newest start together with the
        hash of the start this process saw last for the region, which is used only if the index
        still names it (atomically, so no write can slip in between). A new final window (once
        per window length) or an expired one costs a second round trip.
        """
        guess = self._latest_seen.get((size.name, region_id))
        if guess is not None:
            with redis_call("latest"):
                newest, final, data = await self._newest_and_window(
                    keys=[
                        self.keys.history(size.name, region_id),
                        self.keys.window(size.name, region_id, guess),
                    ]
                )
            record = _record(final, data, size, region_id, guess)
            if record is not None and newest is not None and int(newest) == guess:
                return record
        page = await self._scan(size, region_id, "-inf", "+inf", limit=1, descending=True, probe_more=False)
        if not page.items:
            return None
        if len(self._latest_seen) >= _MAX_LATEST_SEEN:
            self._latest_seen.clear()
        self._latest_seen[(size.name, region_id)] = int(page.items[0]["window_start_ms"])
        return page.items[0]

    async def open_window(self, size: WindowSize, region_id: int) -> Record | None:
        """The newest open window the live mirror wrote, or ``None`` once it has become final."""
        with redis_call("open_pointer"):
            start = await self.redis.get(self.keys.open_window(size.name, region_id))
        if start is None:
            return None
        record = await self.window(size, region_id, int(start))
        return record if record is not None and not record["final"] else None

    async def history(
        self, size: WindowSize, region_id: int, lower_ms: int | None, upper_ms: int | None, limit: int
    ) -> Page:
        """Final windows with ``lower_ms <= start < upper_ms`` (either bound open), ascending."""
        low = "-inf" if lower_ms is None else str(lower_ms)
        high = "+inf" if upper_ms is None else f"({upper_ms}"
        return await self._scan(size, region_id, low, high, limit=limit, descending=False, probe_more=True)

    async def latest_starts(self, size: WindowSize) -> dict[int, int]:
        """Region id -> start of its newest retained final window.

        The ``latest`` index holds each region's newest final start; where that window has expired,
        the region's history index is asked for the newest one still retained.
        """
        with redis_call("latest_index"):
            entries = await self.redis.zrange(self.keys.latest(size.name), 0, -1, withscores=True)
        starts = dict(_scored(entries))
        if not starts:
            return starts
        with redis_call("windows_exist"):
            pipe = self.redis.pipeline(transaction=False)
            for region_id, start in starts.items():
                pipe.exists(self.keys.window(size.name, region_id, start))
            found = await pipe.execute()
        for (region_id, _), exists in zip(list(starts.items()), found, strict=True):
            if not exists:
                older = await self.latest_final(size, region_id)
                if older is None:
                    del starts[region_id]
                else:
                    starts[region_id] = int(older["window_start_ms"])
        return starts

    async def newest_final_windows(self, size: WindowSize) -> list[Record]:
        """Every retained region window at the newest start in the ``latest`` index, ignoring
        starts more than ``max_future_ms`` ahead of the wall clock: the worker rejects events that
        far ahead, so such a window is forged or corrupt and must not hide the real latest one."""
        key = self.keys.latest(size.name)
        high = "+inf"
        if self.max_future_ms is not None:
            high = str(int(time.time() * 1000) + self.max_future_ms)
        with redis_call("latest_index"):
            top = await self.redis.zrange(
                key, high, "-inf", desc=True, byscore=True, offset=0, num=1, withscores=True
            )
        if not top:
            return []
        start = _scored(top)[0][1]
        with redis_call("latest_index"):
            members = await self.redis.zrange(key, start, start, byscore=True)
        regions = sorted(_ints(members))
        with redis_call("windows"):
            pipe = self.redis.pipeline(transaction=False)
            for region_id in regions:
                pipe.hmget(self.keys.window(size.name, region_id, start), "final", "data")
            rows = await pipe.execute()
        records = [
            _record(final, data, size, region_id, start)
            for region_id, (final, data) in zip(regions, rows, strict=True)
        ]
        return [r for r in records if r is not None and r["final"]]

    async def _scan(
        self,
        size: WindowSize,
        region_id: int,
        low: str,
        high: str,
        *,
        limit: int,
        descending: bool,
        probe_more: bool,
    ) -> Page:
        """Up to ``limit`` existing final windows of the history index with ``low <= start <= high``.

        With ``probe_more`` it reads one entry beyond ``limit`` so ``has_more`` is known without
        another round trip. Once an expired entry shows up it reads in larger batches, continuing
        past the last entry seen, so a run of expired entries costs few round trips.
        """
        hkey = self.keys.history(size.name, region_id)
        items: list[Record] = []
        expired: list[int] = []
        extra = 1 if probe_more else 0
        while True:
            want = limit - len(items) + extra
            if expired:
                want = max(want, _SCAN_BATCH)
            with redis_call("history_index"):
                if descending:
                    members = await self.redis.zrange(
                        hkey, high, low, desc=True, byscore=True, offset=0, num=want
                    )
                else:
                    members = await self.redis.zrange(hkey, low, high, byscore=True, offset=0, num=want)
            starts = _ints(members)
            rows = await self._windows(size, region_id, starts)
            for start, record in zip(starts, rows, strict=True):
                if record is None:
                    expired.append(start)
                elif len(items) == limit:
                    return Page(items, has_more=True)
                else:
                    items.append(record)
                    if len(items) == limit and not probe_more:
                        return Page(items, has_more=False)
            if len(starts) < want:
                return Page(items, has_more=False)
            if descending:
                high = f"({starts[-1]}"
            else:
                low = f"({starts[-1]}"

    async def _windows(self, size: WindowSize, region_id: int, starts: list[int]) -> list[Record | None]:
        if not starts:
            return []
        with redis_call("windows"):
            pipe = self.redis.pipeline(transaction=False)
            for start in starts:
                pipe.hmget(self.keys.window(size.name, region_id, start), "final", "data")
            rows = await pipe.execute()
        return [
            _record(final, data, size, region_id, start)
            for start, (final, data) in zip(starts, rows, strict=True)
        ]


def _record(final: Any, data: Any, size: WindowSize, region_id: int, start_ms: int) -> Record | None:
    """The stored record if it is a valid window of this key; ``final`` comes from the hash field,
    which a late live write can't flip."""
    if data is None:
        return None
    try:
        record = orjson.loads(data)
        StoredWindow.model_validate(record)
    except (orjson.JSONDecodeError, ValidationError):
        record = None
    if (
        not isinstance(record, dict)
        or record["window"] != size.name
        or record["region_id"] != region_id
        or record["window_start_ms"] != start_ms
        or record["window_end_ms"] != start_ms + size.size_ms
    ):
        INVALID_STORED.inc()
        log.error("ignoring a malformed stored window: %s region %d start %d", size.name, region_id, start_ms)
        return None
    record["final"] = final in (b"1", "1")
    return record


def _ints(members: Any) -> list[int]:
    return [int(m) for m in members]


def _scored(entries: Any) -> list[tuple[int, int]]:
    return [(int(member), int(score)) for member, score in entries]
