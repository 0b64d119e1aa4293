"""Redis key layout: the one module that both the sink (writer) and the API (reader) use.

Layout under the prefix ``sp:<app_id>:`` (two app ids never share keys):

- ``w:<size>:<region>:<start_ms>`` hash ``{final: "0"|"1", data: <window JSON>}``, TTL = retention
- ``h:<size>:<region>``  sorted set of final window starts (member = score = start_ms), for ranges;
  trimmed to the retention by every write, TTL = retention
- ``open:<size>:<region>`` start_ms of the newest open window mirrored live, TTL = retention
- ``latest:<size>``      sorted set: member = region, score = start of its newest final window, TTL
- ``regions``            set of region ids that have data, TTL = the longest retention written
- ``last_final_ms``      wall-clock ms of the newest final write (API freshness check), same TTL
- ``updates:<size>``     stream of window updates (field ``w``: the window JSON, final or live),
  appended by the same scripts when a window's stored value changes, trimmed to about
  ``PUSH_RETENTION`` entries, TTL = the longest retention written: what ``GET /stream`` serves
  and resumes from (an entry id is the SSE event id)

Every key expires, renewed by the writes that need it, so Redis holds at most the retention's
worth of windows per region and size (docs/security.md gives the bound).
- ``pipeline_stats``     hash: worker -> JSON of its counters, rewritten every second (dashboard)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

#: Writes a batch of final windows in one script call. The sink's cost was redis-py packing
#: eight commands per window and parsing their replies, then Redis running them: one JSON
#: argument carries the batch, and the indexes are updated once per key, not once per window.
#: The key names come inside that argument (built by :func:`final_write`), so the script
#: declares no KEYS: fine on one Redis server, not on Redis Cluster.
#: ARGV[1]: last_final_ms key, ARGV[2]: now_ms, ARGV[3]: regions key, ARGV[4]: JSON list of
#: [window key, history key, latest key, region, start_ms, ttl_s, window JSON, updates key],
#: numbers as strings: stored as given, compared with tonumber (exact below 2^53); ARGV[5]: the
#: updates streams' approximate length. A window re-emitted unchanged (after a crash, a replay of
#: the results topic) adds no update: a subscriber sees each final window once.
FINAL_WRITE_LUA = """
local entries = cjson.decode(ARGV[4])
local newest, ttls, latest, regions, streams = {}, {}, {}, {}, {}
for _, e in ipairs(entries) do
  local h, l, region, start, ttl = e[2], e[3], e[4], e[5], e[6]
  local t = tonumber(start)
  local prev = redis.call('HMGET', e[1], 'final', 'data')
  if prev[1] ~= '1' or prev[2] ~= e[7] then
    redis.call('XADD', e[8], 'MAXLEN', '~', ARGV[5], '*', 'w', e[7])
    streams[e[8]] = true
  end
  redis.call('HSET', e[1], 'final', '1', 'data', e[7])
  redis.call('EXPIRE', e[1], ttl)
  redis.call('ZADD', h, start, start)
  if not newest[h] or t > newest[h] then newest[h] = t end
  ttls[h], ttls[l] = ttl, ttl
  latest[l] = latest[l] or {}
  if not latest[l][region] or t > tonumber(latest[l][region]) then latest[l][region] = start end
  regions[region] = true
end
for h, t in pairs(newest) do
  redis.call('ZREMRANGEBYSCORE', h, '-inf', string.format('(%d', t - tonumber(ttls[h]) * 1000))
  redis.call('EXPIRE', h, ttls[h])
end
for l, starts in pairs(latest) do
  for region, start in pairs(starts) do
    redis.call('ZADD', l, 'GT', start, region)
  end
  redis.call('EXPIRE', l, ttls[l])
end
local longest = 0
for region in pairs(regions) do
  redis.call('SADD', ARGV[3], region)
end
for _, ttl in pairs(ttls) do longest = math.max(longest, tonumber(ttl)) end
if #entries > 0 then
  if redis.call('TTL', ARGV[3]) < longest then redis.call('EXPIRE', ARGV[3], longest) end
  redis.call('SET', ARGV[1], ARGV[2], 'EX', longest)
end
for u in pairs(streams) do
  if redis.call('TTL', u) < longest then redis.call('EXPIRE', u, longest) end
end
return #entries
"""

#: Writes a batch of live (non-final) windows, skipping any that is already final, so a slow
#: live mirror can never overwrite a final result; also advances each region's open-window
#: pointer. Like :data:`FINAL_WRITE_LUA`: ARGV[1]: regions key, ARGV[2]: the same JSON list,
#: with the open-pointer key in place of the history key (the latest key is not used), ARGV[3]:
#: the updates streams' approximate length.
LIVE_WRITE_LUA = """
local written, newest, starts, ttls, regions, streams = 0, {}, {}, {}, {}, {}
for _, e in ipairs(cjson.decode(ARGV[2])) do
  local prev = redis.call('HMGET', e[1], 'final', 'data')
  if prev[1] ~= '1' then
    local o, t = e[2], tonumber(e[5])
    if prev[2] ~= e[7] then
      redis.call('XADD', e[8], 'MAXLEN', '~', ARGV[3], '*', 'w', e[7])
      streams[e[8]] = true
    end
    redis.call('HSET', e[1], 'final', '0', 'data', e[7])
    redis.call('EXPIRE', e[1], e[6])
    if not newest[o] or t > newest[o] then newest[o], starts[o], ttls[o] = t, e[5], e[6] end
    regions[e[4]] = true
    written = written + 1
  end
end
for o, t in pairs(newest) do
  local cur = redis.call('GET', o)
  if (not cur) or tonumber(cur) <= t then
    redis.call('SET', o, starts[o], 'EX', ttls[o])
  end
end
local longest = 0
for region in pairs(regions) do
  redis.call('SADD', ARGV[1], region)
end
for _, ttl in pairs(ttls) do longest = math.max(longest, tonumber(ttl)) end
if written > 0 and redis.call('TTL', ARGV[1]) < longest then redis.call('EXPIRE', ARGV[1], longest) end
for u in pairs(streams) do
  if redis.call('TTL', u) < longest then redis.call('EXPIRE', u, longest) end
end
return written
"""


class RedisKeys:
    """Key builders for one app id."""

    __slots__ = ("prefix",)

    def __init__(self, app_id: str) -> None:
        self.prefix = f"sp:{app_id}:"

    def window(self, size: str, region_id: int, start_ms: int) -> str:
        return f"{self.prefix}w:{size}:{region_id}:{start_ms}"

    def history(self, size: str, region_id: int) -> str:
        return f"{self.prefix}h:{size}:{region_id}"

    def open_window(self, size: str, region_id: int) -> str:
        return f"{self.prefix}open:{size}:{region_id}"

    def latest(self, size: str) -> str:
        return f"{self.prefix}latest:{size}"

    def updates(self, size: str) -> str:
        return f"{self.prefix}updates:{size}"

    @property
    def regions(self) -> str:
        return f"{self.prefix}regions"

    @property
    def last_final_ms(self) -> str:
        return f"{self.prefix}last_final_ms"

    @property
    def pipeline_stats(self) -> str:
        return f"{self.prefix}pipeline_stats"


#: Default approximate length of each window size's updates stream: how far back a
#: disconnected subscriber can resume (``STREAMPULSE_PUSH_RETENTION``).
PUSH_RETENTION = 20_000


def final_write(
    keys: RedisKeys,
    windows: Iterable[Mapping[str, Any]],
    retention_s: Mapping[str, int],
    now_ms: int,
    push_retention: int = PUSH_RETENTION,
) -> list[Any]:
    """ARGV of :data:`FINAL_WRITE_LUA` for these windows (results-topic records)."""
    entries = _entries(keys, windows, retention_s, final=True)
    return [keys.last_final_ms, now_ms, keys.regions, entries, push_retention]


def live_write(
    keys: RedisKeys,
    windows: Iterable[Mapping[str, Any]],
    retention_s: Mapping[str, int],
    push_retention: int = PUSH_RETENTION,
) -> list[Any]:
    """ARGV of :data:`LIVE_WRITE_LUA` for these windows (open-window records)."""
    return [keys.regions, _entries(keys, windows, retention_s, final=False), push_retention]


def _entries(
    keys: RedisKeys, windows: Iterable[Mapping[str, Any]], retention_s: Mapping[str, int], *, final: bool
) -> bytes:
    entries = []
    for win in windows:
        size, region, start = win["window"], int(win["region_id"]), int(win["window_start_ms"])
        entries.append(
            (
                keys.window(size, region, start),
                keys.history(size, region) if final else keys.open_window(size, region),
                keys.latest(size),
                str(region),
                str(start),
                str(retention_s[size]),
                orjson.dumps(win).decode(),
                keys.updates(size),
            )
        )
    return orjson.dumps(entries)
