"""Redis key layout: the one module that both the sink (writer) and the API (reader) use.

Layout under the prefix ``sp:<app_id>:`` (two app ids never share keys):

- ``w:<size>:<region>:<start_ms>`` hash ``{final: "0"|"1", data: <window JSON>}``, TTL = retention
- ``h:<size>:<region>``  sorted set of final window starts (member = score = start_ms), for ranges
- ``open:<size>:<region>`` start_ms of the newest open window mirrored live
- ``latest:<size>``      sorted set: member = region, score = start of its newest final window
- ``regions``            set of region ids that have data
- ``last_final_ms``      wall-clock ms of the newest final write (API freshness check)
"""

from __future__ import annotations

#: Writes a live (non-final) window unless a final value is already there, so a slow live
#: mirror can never overwrite a final result; also advances the region's open-window pointer.
LIVE_WRITE_LUA = """
if redis.call('HGET', KEYS[1], 'final') == '1' then return 0 end
redis.call('HSET', KEYS[1], 'final', '0', 'data', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local cur = redis.call('GET', KEYS[2])
if (not cur) or tonumber(cur) <= tonumber(ARGV[3]) then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
end
return 1
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

    @property
    def regions(self) -> str:
        return f"{self.prefix}regions"

    @property
    def last_final_ms(self) -> str:
        return f"{self.prefix}last_final_ms"
