"""Redis key layout: the one module that both the sink (writer) and the API (reader) use.

Layout under the prefix ``sp:<app_id>:`` (two app ids never share keys; Redis ACLs grant
``~sp:<app_id>:*``). ``{<app>:<size>}`` is a Redis Cluster hash tag: every key of one app id and
window size lives in one hash slot, so each script call and pipeline (which touch one size's
windows, indexes and updates stream together) runs on one node, while sizes and app ids spread
over the cluster:

- ``w:{<app>:<size>}:<region>:<start_ms>`` hash ``{final: "0"|"1", data: <window JSON>}``, TTL =
  retention
- ``h:{<app>:<size>}:<region>``  sorted set of final window starts (member = score = start_ms), for
  ranges; trimmed to the retention by every write, TTL = retention
- ``open:{<app>:<size>}:<region>`` start_ms of the newest open window mirrored live, TTL = retention
- ``latest:{<app>:<size>}``      sorted set: member = region, score = start of its newest final
  window, TTL = retention
- ``updates:{<app>:<size>}``     stream of window updates (field ``w``: the window JSON, final or
  live), appended by the same scripts when a window's stored value changes, trimmed to about
  ``PUSH_RETENTION`` entries, TTL = retention: what ``GET /stream`` serves and resumes from (an
  entry id is the SSE event id)
- ``regions``            set of region ids that have data, TTL = the longest retention written
- ``last_final_ms``      wall-clock ms of the newest final write (API freshness check), same TTL
- ``pipeline_stats``     hash: worker -> JSON of its counters, rewritten every second (dashboard)

The last three are single keys outside any tag, each written by a command of its own after the
windows, so a reader that sees a region or a freshness time also finds its windows.

Every key expires, renewed by the writes that need it, so Redis holds at most the retention's
worth of windows per region and size (docs/security.md gives the bound).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

#: Writes final windows of one size in one script call. The sink's cost was redis-py packing
#: eight commands per window and parsing their replies, then Redis running them: one JSON
#: argument carries the batch, and the indexes are updated once per key, not once per window.
#: Every key comes in KEYS (all in one slot, see the module docstring), so it runs on Redis Cluster.
#: KEYS[1]: latest index, KEYS[2]: updates stream, KEYS[2i+1], KEYS[2i+2]: window i's hash and its
#: region's history index. ARGV[1]: the size's retention (s), ARGV[2]: the updates stream's
#: approximate length, ARGV[3]: JSON list of [region, start_ms, window JSON], numbers as strings:
#: stored as given, compared with tonumber (exact below 2^53). A window re-emitted unchanged
#: (after a crash, a replay of the results topic) adds no update: a subscriber sees each final
#: window once.
FINAL_WRITE_LUA = """
local ttl = tonumber(ARGV[1])
local newest, latest, changed = {}, {}, false
for i, e in ipairs(cjson.decode(ARGV[3])) do
  local w, h, region, start = KEYS[2 * i + 1], KEYS[2 * i + 2], e[1], e[2]
  local t = tonumber(start)
  local prev = redis.call('HMGET', w, 'final', 'data')
  if prev[1] ~= '1' or prev[2] ~= e[3] then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'w', e[3])
    changed = true
  end
  redis.call('HSET', w, 'final', '1', 'data', e[3])
  redis.call('EXPIRE', w, ttl)
  redis.call('ZADD', h, start, start)
  if not newest[h] or t > newest[h] then newest[h] = t end
  if not latest[region] or t > tonumber(latest[region]) then latest[region] = start end
end
for h, t in pairs(newest) do
  redis.call('ZREMRANGEBYSCORE', h, '-inf', string.format('(%d', t - ttl * 1000))
  redis.call('EXPIRE', h, ttl)
end
local n = 0
for region, start in pairs(latest) do
  redis.call('ZADD', KEYS[1], 'GT', start, region)
  n = n + 1
end
if n > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
if changed and redis.call('TTL', KEYS[2]) < ttl then redis.call('EXPIRE', KEYS[2], ttl) end
return #KEYS / 2 - 1
"""

#: Writes live (non-final) windows of one size, skipping any that is already final, so a slow
#: live mirror can never overwrite a final result; also advances each region's open-window
#: pointer. Like :data:`FINAL_WRITE_LUA`, with KEYS[1]: updates stream, KEYS[2i], KEYS[2i+1]:
#: window i's hash and its region's open pointer. Returns how many were written.
LIVE_WRITE_LUA = """
local ttl = tonumber(ARGV[1])
local written, newest, starts, changed = 0, {}, {}, false
for i, e in ipairs(cjson.decode(ARGV[3])) do
  local w, o = KEYS[2 * i], KEYS[2 * i + 1]
  local prev = redis.call('HMGET', w, 'final', 'data')
  if prev[1] ~= '1' then
    local t = tonumber(e[2])
    if prev[2] ~= e[3] then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'w', e[3])
      changed = true
    end
    redis.call('HSET', w, 'final', '0', 'data', e[3])
    redis.call('EXPIRE', w, ttl)
    if not newest[o] or t > newest[o] then newest[o], starts[o] = t, e[2] end
    written = written + 1
  end
end
for o, t in pairs(newest) do
  local cur = redis.call('GET', o)
  if (not cur) or tonumber(cur) <= t then
    redis.call('SET', o, starts[o], 'EX', ttl)
  end
end
if changed and redis.call('TTL', KEYS[1]) < ttl then redis.call('EXPIRE', KEYS[1], ttl) end
return written
"""


class RedisKeys:
    """Key builders for one app id."""

    __slots__ = ("app_id", "prefix")

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self.prefix = f"sp:{app_id}:"

    def slot_tag(self, size: str) -> str:
        """The hash tag shared by every key of this app id and window size."""
        return f"{{{self.app_id}:{size}}}"

    def window(self, size: str, region_id: int, start_ms: int) -> str:
        return f"{self.prefix}w:{self.slot_tag(size)}:{region_id}:{start_ms}"

    def history(self, size: str, region_id: int) -> str:
        return f"{self.prefix}h:{self.slot_tag(size)}:{region_id}"

    def open_window(self, size: str, region_id: int) -> str:
        return f"{self.prefix}open:{self.slot_tag(size)}:{region_id}"

    def latest(self, size: str) -> str:
        return f"{self.prefix}latest:{self.slot_tag(size)}"

    def updates(self, size: str) -> str:
        return f"{self.prefix}updates:{self.slot_tag(size)}"

    @property
    def windows_pattern(self) -> str:
        """SCAN ``MATCH`` pattern of every window hash of this app id (tests, the bench)."""
        return f"{self.prefix}w:*"

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


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """KEYS and ARGV of one call of a write script: one window size, so one hash slot."""

    keys: list[str]
    args: list[Any]
    size: str
    regions: list[int]


def final_writes(
    keys: RedisKeys,
    windows: Iterable[Mapping[str, Any]],
    retention_s: Mapping[str, int],
    chunk: int,
    push_retention: int = PUSH_RETENTION,
) -> Iterator[ScriptCall]:
    """Calls of :data:`FINAL_WRITE_LUA` for these windows (results-topic records), one per window
    size and up to ``chunk`` windows each, in the windows' order within a size."""
    for size, group in _by_size(windows, chunk):
        call_keys = [keys.latest(size), keys.updates(size)]
        for win in group:
            region = int(win["region_id"])
            call_keys += [keys.window(size, region, int(win["window_start_ms"])), keys.history(size, region)]
        yield _call(call_keys, size, group, retention_s, push_retention)


def live_writes(
    keys: RedisKeys,
    windows: Iterable[Mapping[str, Any]],
    retention_s: Mapping[str, int],
    chunk: int,
    push_retention: int = PUSH_RETENTION,
) -> Iterator[ScriptCall]:
    """Calls of :data:`LIVE_WRITE_LUA` for these windows (open-window records), as :func:`final_writes`."""
    for size, group in _by_size(windows, chunk):
        call_keys = [keys.updates(size)]
        for win in group:
            region = int(win["region_id"])
            call_keys += [
                keys.window(size, region, int(win["window_start_ms"])),
                keys.open_window(size, region),
            ]
        yield _call(call_keys, size, group, retention_s, push_retention)


def _by_size(
    windows: Iterable[Mapping[str, Any]], chunk: int
) -> Iterator[tuple[str, list[Mapping[str, Any]]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for win in windows:
        groups.setdefault(win["window"], []).append(win)
    for size, group in groups.items():
        for i in range(0, len(group), chunk):
            yield size, group[i : i + chunk]


def _call(
    call_keys: list[str],
    size: str,
    group: list[Mapping[str, Any]],
    retention_s: Mapping[str, int],
    push_retention: int,
) -> ScriptCall:
    entries = [
        (str(int(win["region_id"])), str(int(win["window_start_ms"])), orjson.dumps(win).decode())
        for win in group
    ]
    regions = sorted({int(win["region_id"]) for win in group})
    return ScriptCall(call_keys, [retention_s[size], push_retention, orjson.dumps(entries)], size, regions)
