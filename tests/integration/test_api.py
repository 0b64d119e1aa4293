"""The API against the real Redis, reading results written by the real sink functions.

Window records are folded with ``TripAggregate``, built with ``window_record`` and written with
``agents.redis_writer.write_final`` / ``write_live`` under the test's own app id, exactly as the
worker's sink writes them. The API runs in-process (ASGI, with its lifespan) or, where a real server
matters (Redis going away and coming back), as a uvicorn subprocess.
"""

from __future__ import annotations

import asyncio
import csv
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import pytest
from redis.asyncio import Redis

from agents.redis_writer import write_final, write_live
from api.cursor import Cursor, encode_cursor
from api.main import create_app
from app.events import TripEvent, parse_event
from app.redis_keys import RedisKeys
from app.settings import Settings
from producers.localtime import parse_local
from support.procs import ROOT, Proc, RedisServer, StackInfo, free_port, start_api
from support.reference import SIZES_MS
from tables.aggregate import TripAggregate
from tables.results import window_record
from tables.times import format_time_ms
from tables.windows import WindowSize

T0_MS = 1_551_715_800_000  # 2019-03-04T16:10:00Z
MINUTE_MS = 60_000
#: The fixture's watermark: windows ending at or before 16:13:00 are final, the rest are open.
WATERMARK_MS = T0_MS + 3 * MINUTE_MS
TOP_START_MS = T0_MS + 2 * MINUTE_MS  # 16:12, the newest final 1m window
LIVE_START_MS = T0_MS + 3 * MINUTE_MS  # 16:13, region 161's open 1m window
UNNAMED_REGION = 264  # TLC's "unknown" zone: not in the lookup
ALL_REGIONS = [7, 161, 236, UNNAMED_REGION]
WINDOWS = "1m, 5m, 15m, 1h"
STORAGE_ONLY = ("region_id", "window_start_ms", "window_end_ms")
API_PATHS = {
    "/metrics/region/{region_id}",
    "/metrics/region/{region_id}/history",
    "/regions",
    "/metrics/top",
    "/health",
    "/metrics",
    "/stream",
}


@dataclass(frozen=True)
class Trip:
    region_id: int
    t_ms: int
    fare: float
    duration: float
    distance: float


def fixture_trips() -> list[Trip]:
    """22 minutes of trips in regions 161 and 236, then a hand-made 16:12 minute for the ranking."""
    trips = []
    for minute in range(-20, 2):
        for region_id, count in ((161, 1 + (minute + 20) % 3), (236, 1 + (minute + 20) % 2)):
            for j in range(count):
                fare = 5.0 + ((minute + 20) * 7 + j * 3 + region_id) % 20
                t_ms = T0_MS + minute * MINUTE_MS + 7_000 + j * 11_000
                trips.append(Trip(region_id, t_ms, fare, 300.0 + 60 * j, 1.0 + j))
    trips.append(Trip(UNNAMED_REGION, T0_MS - 3 * MINUTE_MS + 1_000, 9.0, 400.0, 1.5))
    top = T0_MS + 2 * MINUTE_MS
    trips += [
        Trip(161, top + 1_000, 10.0, 600.0, 2.0),
        Trip(161, top + 2_000, 16.0, 900.0, 3.0),
        Trip(236, top + 3_000, 12.0, 500.0, 2.0),
        Trip(7, top + 4_000, 4.0, 200.0, 0.5),
        Trip(7, top + 5_000, 8.0, 300.0, 1.0),
        Trip(UNNAMED_REGION, top + 6_000, 40.0, 2000.0, 10.0),
        Trip(161, LIVE_START_MS + 10_000, 6.0, 200.0, 0.5),
    ]
    return trips


def fold(trips: list[Trip], sizes: list[WindowSize]) -> dict[tuple[WindowSize, int, int], TripAggregate]:
    windows: dict[tuple[WindowSize, int, int], TripAggregate] = defaultdict(TripAggregate)
    for trip in trips:
        for size in sizes:
            windows[(size, trip.region_id, size.start(trip.t_ms))].add_event(
                trip.fare, trip.duration, trip.distance, trip.t_ms
            )
    return windows


@dataclass
class Written:
    """What the fixture wrote, keyed by (size name, region, start ms)."""

    final: dict[tuple[str, int, int], dict[str, Any]]
    live: dict[tuple[str, int, int], dict[str, Any]]

    def finals(self, size: str, region_id: int) -> list[dict[str, Any]]:
        found = [rec for (s, r, _), rec in self.final.items() if s == size and r == region_id]
        return sorted(found, key=lambda rec: rec["window_start_ms"])


async def write_windows(
    redis: Redis, settings: Settings, trips: list[Trip], watermark_ms: int = WATERMARK_MS
) -> Written:
    """Fold ``trips`` and write them with the real sink: final up to the watermark, live after it."""
    written = Written({}, {})
    for (size, region_id, start), agg in fold(trips, settings.window_sizes).items():
        final = start + size.size_ms <= watermark_ms
        record = window_record(region_id, size.name, size.size_ms, start, agg, final=final)
        (written.final if final else written.live)[(size.name, region_id, start)] = record
    keys = RedisKeys(settings.app_id)
    await write_final(redis, keys, list(written.final.values()), settings.retention_s())
    await write_live(redis, keys, list(written.live.values()), settings.retention_s())
    return written


async def delete_app_keys(redis: Redis, app_id: str) -> None:
    keys = [key async for key in redis.scan_iter(match=f"{RedisKeys(app_id).prefix}*", count=1000)]
    if keys:
        await redis.delete(*keys)


def public(record: Mapping[str, Any]) -> dict[str, Any]:
    """A stored window record as the API serves it."""
    return {k: v for k, v in record.items() if k not in STORAGE_ONLY}


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process, its lifespan run as uvicorn would run it."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        yield client


@pytest.fixture
def settings(stack: StackInfo, app_id: str) -> Settings:
    return Settings(redis_url=stack.redis_url, app_id=app_id)


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_dsn)
    yield client
    await delete_app_keys(client, settings.app_id)
    await client.aclose()


@pytest.fixture
async def written(redis: Redis, settings: Settings) -> Written:
    return await write_windows(redis, settings, fixture_trips())


@pytest.fixture
async def api(settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(settings) as client:
        yield client


# --- GET /metrics/region/{region_id} ---------------------------------------------------------


async def test_latest_final_window_has_every_contract_field(api: httpx.AsyncClient, written: Written) -> None:
    resp = await api.get("/metrics/region/161", params={"window": "1m"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    expected = written.final[("1m", 161, TOP_START_MS)]
    assert body == {
        "region_id": 161,
        "region_name": "Midtown Center",
        "borough": "Manhattan",
        **public(expected),
        "current": None,
    }
    assert body["window_start"] == "2019-03-04T16:12:00Z" and body["window_end"] == "2019-03-04T16:13:00Z"
    assert body["final"] is True
    assert (body["trip_count"], body["revenue"], body["avg_fare"]) == (2, 26.0, 13.0)
    assert (body["min_fare"], body["max_fare"], body["total_distance"]) == (10.0, 16.0, 5.0)
    for field in ("avg_duration", "p50_duration", "p95_duration", "avg_distance"):
        assert isinstance(body[field], float)
    assert body["first_event_time"] == "2019-03-04T16:12:01Z"


async def test_include_current_adds_the_open_window(api: httpx.AsyncClient, written: Written) -> None:
    resp = await api.get("/metrics/region/161", params={"window": "1m", "include_current": "true"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["window_start"] == "2019-03-04T16:12:00Z" and body["final"] is True
    assert body["current"] == public(written.live[("1m", 161, LIVE_START_MS)])
    assert body["current"]["final"] is False
    assert (body["current"]["window_start"], body["current"]["trip_count"]) == ("2019-03-04T16:13:00Z", 1)

    no_open = (
        await api.get("/metrics/region/236", params={"window": "1m", "include_current": "true"})
    ).json()
    assert no_open["current"] is None


async def test_open_pointer_to_a_window_that_became_final_gives_no_current(
    api: httpx.AsyncClient, redis: Redis, settings: Settings, written: Written
) -> None:
    closed = window_record(161, "1m", MINUTE_MS, LIVE_START_MS, fold_one(161, LIVE_START_MS), final=True)
    await write_final(redis, RedisKeys(settings.app_id), [closed], settings.retention_s())
    body = (await api.get("/metrics/region/161", params={"window": "1m", "include_current": "1"})).json()
    assert body["window_start"] == "2019-03-04T16:13:00Z" and body["final"] is True
    assert body["current"] is None


def fold_one(region_id: int, start_ms: int) -> TripAggregate:
    agg = TripAggregate()
    for trip in fixture_trips():
        if trip.region_id == region_id and start_ms <= trip.t_ms < start_ms + MINUTE_MS:
            agg.add_event(trip.fare, trip.duration, trip.distance, trip.t_ms)
    return agg


@pytest.mark.parametrize(
    ("at", "window", "start", "final"),
    [
        ("2019-03-04T16:11:30Z", "1m", "2019-03-04T16:11:00Z", True),
        ("2019-03-04T16:11:00Z", "1m", "2019-03-04T16:11:00Z", True),  # start is inclusive
        ("2019-03-04T16:10:59.999Z", "1m", "2019-03-04T16:10:00Z", True),
        ("2019-03-04T17:11:30+01:00", "1m", "2019-03-04T16:11:00Z", True),
        ("2019-03-04T11:11:30-05:00", "1m", "2019-03-04T16:11:00Z", True),
        ("2019-03-04T16:11:30", "1m", "2019-03-04T16:11:00Z", True),  # naive is UTC
        ("1551715890", "1m", "2019-03-04T16:11:00Z", True),  # epoch seconds
        ("1551715890.5", "1m", "2019-03-04T16:11:00Z", True),
        ("2019-03-04T16:03:00Z", "5m", "2019-03-04T16:00:00Z", True),
        ("2019-03-04T15:59:00Z", "1h", "2019-03-04T15:00:00Z", True),
        ("2019-03-04T16:13:30Z", "1m", "2019-03-04T16:13:00Z", False),  # the open window
        ("2019-03-04T16:12:00Z", "5m", "2019-03-04T16:10:00Z", False),
    ],
)
async def test_at_selects_the_window_containing_it(
    api: httpx.AsyncClient, written: Written, at: str, window: str, start: str, final: bool
) -> None:
    resp = await api.get(f"/metrics/region/161?window={window}&at={quote(at)}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["window_start"], body["final"]) == (start, final)
    records = written.final if final else written.live
    start_ms = next(k[2] for k in records if k[0] == window and k[1] == 161 and format_time_ms(k[2]) == start)
    assert public(records[(window, 161, start_ms)]).items() <= body.items()


async def test_unencoded_plus_in_an_offset_still_means_plus(api: httpx.AsyncClient, written: Written) -> None:
    resp = await api.get("/metrics/region/161?window=1m&at=2019-03-04T17:11:30+01:00")
    assert resp.status_code == 200, resp.text
    assert resp.json()["window_start"] == "2019-03-04T16:11:00Z"


async def test_region_without_a_name_still_works(api: httpx.AsyncClient, written: Written) -> None:
    body = (await api.get(f"/metrics/region/{UNNAMED_REGION}", params={"window": "1m"})).json()
    assert (body["region_id"], body["region_name"], body["borough"]) == (UNNAMED_REGION, None, None)
    assert (body["window_start"], body["revenue"]) == ("2019-03-04T16:12:00Z", 40.0)


# --- GET /metrics/region/{region_id}/history -------------------------------------------------


async def test_history_pages_through_every_final_window_ascending(
    api: httpx.AsyncClient, written: Written
) -> None:
    items: list[dict[str, Any]] = []
    pages = 0
    params: dict[str, Any] = {"window": "1m", "limit": 5}
    while True:
        resp = await api.get("/metrics/region/161/history", params=params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert (body["region_id"], body["region_name"], body["window"]) == (161, "Midtown Center", "1m")
        assert len(body["items"]) <= 5
        items += body["items"]
        pages += 1
        if body["next"] is None:
            break
        params["cursor"] = body["next"]
    expected = [public(rec) for rec in written.finals("1m", 161)]
    assert len(expected) == 23 and pages == 5
    assert items == expected
    assert all(item["final"] for item in items)


async def test_history_default_page_and_bounds(api: httpx.AsyncClient, written: Written) -> None:
    body = (await api.get("/metrics/region/161/history", params={"window": "5m"})).json()
    assert [i["window_start"] for i in body["items"]] == [
        "2019-03-04T15:50:00Z",
        "2019-03-04T15:55:00Z",
        "2019-03-04T16:00:00Z",
        "2019-03-04T16:05:00Z",
    ]
    assert body["next"] is None

    # start picks the window containing it, end is exclusive on window_start.
    ranged = await api.get(
        "/metrics/region/161/history",
        params={"window": "1m", "start": "2019-03-04T16:00:30Z", "end": "2019-03-04T16:05:00Z"},
    )
    assert [i["window_start"][11:16] for i in ranged.json()["items"]] == [
        "16:00",
        "16:01",
        "16:02",
        "16:03",
        "16:04",
    ]

    exact = await api.get("/metrics/region/161/history", params={"window": "1m", "limit": 23})
    assert len(exact.json()["items"]) == 23 and exact.json()["next"] is None

    epoch = await api.get(
        "/metrics/region/161/history", params={"window": "1m", "start": "1551715200", "end": "1551715320"}
    )
    assert [i["window_start"][11:16] for i in epoch.json()["items"]] == ["16:00", "16:01"]


async def test_history_cursor_combines_with_range(api: httpx.AsyncClient, written: Written) -> None:
    params: dict[str, Any] = {
        "window": "1m",
        "start": "2019-03-04T16:00:00Z",
        "end": "2019-03-04T16:06:00Z",
        "limit": 4,
    }
    first = (await api.get("/metrics/region/161/history", params=params)).json()
    second = (await api.get("/metrics/region/161/history", params={**params, "cursor": first["next"]})).json()
    starts = [i["window_start"][11:16] for i in first["items"] + second["items"]]
    assert starts == ["16:00", "16:01", "16:02", "16:03", "16:04", "16:05"]
    assert second["next"] is None


async def test_history_of_a_known_region_outside_its_data_is_empty(
    api: httpx.AsyncClient, written: Written
) -> None:
    resp = await api.get(
        "/metrics/region/161/history",
        params={"window": "1m", "start": "2018-01-01T00:00:00Z", "end": "2018-01-02T00:00:00Z"},
    )
    assert resp.status_code == 200
    assert resp.json()["items"] == [] and resp.json()["next"] is None


# --- GET /regions ------------------------------------------------------------------------------


async def test_regions_lists_names_and_last_window_end(api: httpx.AsyncClient, written: Written) -> None:
    resp = await api.get("/regions", params={"window": "1m"})
    assert resp.status_code == 200
    assert resp.json() == [
        {
            "region_id": 7,
            "region_name": "Astoria",
            "borough": "Queens",
            "last_window_end": "2019-03-04T16:13:00Z",
        },
        {
            "region_id": 161,
            "region_name": "Midtown Center",
            "borough": "Manhattan",
            "last_window_end": "2019-03-04T16:13:00Z",
        },
        {
            "region_id": 236,
            "region_name": "Upper East Side North",
            "borough": "Manhattan",
            "last_window_end": "2019-03-04T16:13:00Z",
        },
        {
            "region_id": UNNAMED_REGION,
            "region_name": None,
            "borough": None,
            "last_window_end": "2019-03-04T16:13:00Z",
        },
    ]
    hourly = (await api.get("/regions", params={"window": "1h"})).json()
    assert [(r["region_id"], r["last_window_end"]) for r in hourly] == [
        (161, "2019-03-04T16:00:00Z"),
        (236, "2019-03-04T16:00:00Z"),
    ]


async def test_regions_is_an_empty_list_without_data(api: httpx.AsyncClient) -> None:
    resp = await api.get("/regions", params={"window": "5m"})
    assert resp.status_code == 200
    assert resp.json() == []


# --- GET /metrics/top --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        ("revenue", [(1, UNNAMED_REGION, 40.0), (2, 161, 26.0), (3, 7, 12.0), (3, 236, 12.0)]),
        ("trip_count", [(1, 7, 2), (1, 161, 2), (3, 236, 1), (3, UNNAMED_REGION, 1)]),
        ("avg_fare", [(1, UNNAMED_REGION, 40.0), (2, 161, 13.0), (3, 236, 12.0), (4, 7, 6.0)]),
    ],
)
async def test_top_ranks_the_latest_final_window(
    api: httpx.AsyncClient, written: Written, by: str, expected: list[tuple[int, int, float]]
) -> None:
    resp = await api.get("/metrics/top", params={"window": "1m", "by": by})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["window"], body["by"]) == ("1m", by)
    assert (body["window_start"], body["window_end"]) == ("2019-03-04T16:12:00Z", "2019-03-04T16:13:00Z")
    assert [(i["rank"], i["region_id"], i["value"]) for i in body["items"]] == expected
    for item in body["items"]:
        record = written.final[("1m", item["region_id"], TOP_START_MS)]
        assert (item["trip_count"], item["revenue"], item["avg_fare"]) == (
            record["trip_count"],
            record["revenue"],
            record["avg_fare"],
        )
    named = {i["region_id"]: (i["region_name"], i["borough"]) for i in body["items"]}
    assert named[161] == ("Midtown Center", "Manhattan") and named[UNNAMED_REGION] == (None, None)


async def test_top_defaults_and_limit(api: httpx.AsyncClient, written: Written) -> None:
    body = (await api.get("/metrics/top", params={"window": "1m", "limit": 2})).json()
    assert body["by"] == "revenue"
    assert [i["region_id"] for i in body["items"]] == [UNNAMED_REGION, 161]

    five = (await api.get("/metrics/top", params={"window": "5m"})).json()
    assert five["window_start"] == "2019-03-04T16:05:00Z", "the 16:10 5m window is still open"
    start = T0_MS - 5 * MINUTE_MS
    in_window = [rec for (s, _, st), rec in written.final.items() if s == "5m" and st == start]
    expected = sorted(in_window, key=lambda rec: (-rec["revenue"], rec["region_id"]))
    assert [(i["region_id"], i["value"]) for i in five["items"]] == [
        (r["region_id"], r["revenue"]) for r in expected
    ]
    assert {i["region_id"] for i in five["items"]} == {161, 236, UNNAMED_REGION}


# --- expired windows still in an index ---------------------------------------------------------


async def expire(redis: Redis, key: str) -> None:
    """Let Redis expire ``key`` by its TTL (as retention would), not delete it."""
    await redis.pexpire(key, 1)

    async def gone() -> bool:
        return not await redis.exists(key)

    deadline = time.monotonic() + 5
    while not await gone():
        assert time.monotonic() < deadline, f"{key} did not expire"
        await asyncio.sleep(0.01)


async def test_expired_windows_are_skipped(
    api: httpx.AsyncClient, redis: Redis, settings: Settings, written: Written
) -> None:
    keys = RedisKeys(settings.app_id)
    for start in (TOP_START_MS, TOP_START_MS - MINUTE_MS, T0_MS - 10 * MINUTE_MS):
        await expire(redis, keys.window("1m", 161, start))
    history_key = keys.history("1m", 161)
    assert await redis.zscore(history_key, str(TOP_START_MS)) is not None, "index still names it"

    latest = (await api.get("/metrics/region/161", params={"window": "1m"})).json()
    assert latest["window_start"] == "2019-03-04T16:10:00Z"

    page = (await api.get("/metrics/region/161/history", params={"window": "1m", "limit": 100})).json()
    starts = [i["window_start"][11:16] for i in page["items"]]
    assert len(starts) == 20 and "16:12" not in starts and "16:11" not in starts and "16:00" not in starts

    paged: list[str] = []
    params: dict[str, Any] = {"window": "1m", "limit": 3}
    while True:
        body = (await api.get("/metrics/region/161/history", params=params)).json()
        paged += [i["window_start"][11:16] for i in body["items"]]
        if body["next"] is None:
            break
        params["cursor"] = body["next"]
    assert paged == starts

    assert await redis.zscore(history_key, str(TOP_START_MS)) is not None, "the API never writes"

    regions = {r["region_id"]: r["last_window_end"] for r in (await api.get("/regions?window=1m")).json()}
    assert regions[161] == "2019-03-04T16:11:00Z", "falls back to the newest retained window"

    top = (await api.get("/metrics/top", params={"window": "1m"})).json()
    assert 161 not in [i["region_id"] for i in top["items"]]
    assert [i["rank"] for i in top["items"]] == [1, 2, 2]


async def test_expired_window_at_a_time_is_404(
    api: httpx.AsyncClient, redis: Redis, settings: Settings, written: Written
) -> None:
    await expire(redis, RedisKeys(settings.app_id).window("1m", 236, T0_MS))
    resp = await api.get("/metrics/region/236", params={"window": "1m", "at": "2019-03-04T16:10:30Z"})
    assert resp.status_code == 404
    assert resp.json() == {"detail": "region 236 has no 1m window containing 2019-03-04T16:10:30Z"}


# --- 404 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("/metrics/region/999?window=1m", "region 999 has no final 1m window"),
        ("/metrics/region/999?window=1m&include_current=true", "region 999 has no final 1m window"),
        ("/metrics/region/7?window=15m", "region 7 has no final 15m window"),  # only an open one
        (
            "/metrics/region/161?window=1m&at=2018-01-01T00:00:00Z",
            "region 161 has no 1m window containing 2018-01-01T00:00:00Z",
        ),
        ("/metrics/region/999/history?window=1m", "region 999 has no final 1m window"),
        ("/metrics/region/7/history?window=1h", "region 7 has no final 1h window"),
    ],
)
async def test_not_found(api: httpx.AsyncClient, written: Written, url: str, detail: str) -> None:
    resp = await api.get(url)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {"detail": detail}


async def test_top_without_any_data_is_404(api: httpx.AsyncClient) -> None:
    resp = await api.get("/metrics/top", params={"window": "1m"})
    assert resp.status_code == 404 and resp.json() == {"detail": "no final 1m window yet"}


async def test_unknown_route_is_a_json_404(api: httpx.AsyncClient) -> None:
    resp = await api.get("/nope")
    assert resp.status_code == 404 and resp.json() == {"detail": "Not Found"}


# --- 422 ---------------------------------------------------------------------------------------

OTHER_REGION_CURSOR = encode_cursor(Cursor("1m", 236, T0_MS))
OTHER_WINDOW_CURSOR = encode_cursor(Cursor("5m", 161, T0_MS))


@pytest.mark.parametrize(
    ("url", "loc", "message"),
    [
        ("/metrics/region/161?window=2m", ["query", "window"], f"window must be one of {WINDOWS} (got '2m')"),
        ("/metrics/region/161", ["query", "window"], f"window is required: one of {WINDOWS}"),
        ("/metrics/region/161?window=", ["query", "window"], f"one of {WINDOWS}"),
        ("/metrics/region/-1?window=1m", ["path", "region_id"], "greater than or equal to 0"),
        ("/metrics/region/abc?window=1m", ["path", "region_id"], "valid integer"),
        ("/metrics/region/1.5?window=1m", ["path", "region_id"], "valid integer"),
        (f"/metrics/region/{2**63}?window=1m", ["path", "region_id"], "less than or equal to"),
        ("/metrics/region/161?window=1m&at=yesterday", ["query", "at"], "ISO-8601"),
        ("/metrics/region/161?window=1m&at=-5", ["query", "at"], "epoch seconds must be between 0"),
        ("/metrics/region/161?window=1m&at=" + "1" * 65, ["query", "at"], "at most 64 characters"),
        (
            "/metrics/region/161?window=1m&include_current=maybe",
            ["query", "include_current"],
            "valid boolean",
        ),
        ("/metrics/region/161/history?window=1h&start=x", ["query", "start"], "ISO-8601"),
        ("/metrics/region/161/history?window=1h&end=2019-02-30", ["query", "end"], "ISO-8601"),
        (
            "/metrics/region/161/history?window=1m&start=2019-03-04T16:10:00Z&end=2019-03-04T16:10:00Z",
            ["query", "end"],
            "end must be after start",
        ),
        (
            "/metrics/region/161/history?window=1m&start=2019-03-05&end=2019-03-04",
            ["query", "end"],
            "end must be after start",
        ),
        ("/metrics/region/161/history?window=1m&limit=0", ["query", "limit"], "greater than or equal to 1"),
        (
            "/metrics/region/161/history?window=1m&limit=10001",
            ["query", "limit"],
            "less than or equal to 10000",
        ),
        ("/metrics/region/161/history?window=1m&limit=ten", ["query", "limit"], "valid integer"),
        ("/metrics/region/161/history?window=1m&cursor=garbage", ["query", "cursor"], "not a cursor"),
        (
            f"/metrics/region/161/history?window=1m&cursor={OTHER_REGION_CURSOR}",
            ["query", "cursor"],
            "issued for region 236 window 1m, not region 161 window 1m",
        ),
        (
            f"/metrics/region/161/history?window=1m&cursor={OTHER_WINDOW_CURSOR}",
            ["query", "cursor"],
            "issued for region 161 window 5m",
        ),
        ("/metrics/region/161/history?window=7m", ["query", "window"], f"window must be one of {WINDOWS}"),
        ("/regions?window=1d", ["query", "window"], f"window must be one of {WINDOWS} (got '1d')"),
        ("/regions", ["query", "window"], f"window is required: one of {WINDOWS}"),
        ("/metrics/top?window=1m&by=fare", ["query", "by"], "'revenue', 'trip_count' or 'avg_fare'"),
        ("/metrics/top?window=1m&limit=0", ["query", "limit"], "greater than or equal to 1"),
        ("/metrics/top?window=1m&limit=1001", ["query", "limit"], "less than or equal to 1000"),
        ("/metrics/top?window=60s", ["query", "window"], f"window must be one of {WINDOWS}"),
    ],
)
async def test_invalid_parameters_are_422_naming_them(
    api: httpx.AsyncClient, written: Written, url: str, loc: list[str], message: str
) -> None:
    resp = await api.get(url)
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert [e["loc"] for e in detail] == [loc]
    assert message in detail[0]["msg"]
    assert set(detail[0]) == {"loc", "msg", "type"}


async def test_every_invalid_parameter_is_reported_at_once(api: httpx.AsyncClient) -> None:
    resp = await api.get("/metrics/top?window=1m&by=x&limit=0")
    assert resp.status_code == 422
    assert sorted(tuple(e["loc"]) for e in resp.json()["detail"]) == [("query", "by"), ("query", "limit")]


async def test_window_enum_follows_the_configured_sizes(stack: StackInfo, app_id: str, redis: Redis) -> None:
    settings = Settings(redis_url=stack.redis_url, app_id=app_id, windows="30s,1h")
    async with serve(settings) as client:
        schema = (await client.get("/openapi.json")).json()
        resp = await client.get("/regions", params={"window": "1m"})
    params = schema["paths"]["/regions"]["get"]["parameters"]
    assert next(p for p in params if p["name"] == "window")["schema"]["enum"] == ["30s", "1h"]
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["msg"] == "window must be one of 30s, 1h (got '1m')"


# --- /health -----------------------------------------------------------------------------------


async def test_health_ok_with_fresh_results(api: httpx.AsyncClient, written: Written) -> None:
    resp = await api.get("/health")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ok" and body["detail"] == "all checks passed"
    assert body["checks"]["redis"]["ok"] is True
    fresh = body["checks"]["freshness"]
    assert fresh["ok"] is True and fresh["age_s"] < 60 and fresh["stale_after_s"] == 900
    assert fresh["last_final_write"].endswith("Z")


async def test_health_before_any_result_passes_during_the_grace_period(api: httpx.AsyncClient) -> None:
    body = (await api.get("/health")).json()
    assert body["status"] == "ok"
    assert body["checks"]["freshness"]["last_final_write"] is None
    assert body["checks"]["freshness"]["detail"].startswith("no final result written yet")


@pytest.mark.parametrize("with_data", [True, False])
async def test_health_fails_when_results_go_stale(
    stack: StackInfo, app_id: str, redis: Redis, with_data: bool
) -> None:
    settings = Settings(redis_url=stack.redis_url, app_id=app_id, results_stale_after="1s")
    if with_data:
        await write_windows(redis, settings, fixture_trips())
    async with serve(settings) as client:
        assert (await client.get("/health")).status_code == 200
        deadline = time.monotonic() + 10
        while (resp := await client.get("/health")).status_code == 200:
            assert time.monotonic() < deadline, "never went stale"
            await asyncio.sleep(0.1)
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "failing" and body["detail"] == "failing: freshness"
    assert body["checks"]["redis"]["ok"] is True
    assert body["checks"]["freshness"]["ok"] is False
    assert body["checks"]["freshness"]["stale_after_s"] == 1
    if not with_data:
        assert body["checks"]["freshness"]["detail"].startswith("no final result written yet")


async def test_stale_after_zero_turns_the_freshness_check_off(
    stack: StackInfo, app_id: str, redis: Redis
) -> None:
    settings = Settings(redis_url=stack.redis_url, app_id=app_id, results_stale_after="0")
    await redis.set(RedisKeys(app_id).last_final_ms, 0)
    async with serve(settings) as client:
        resp = await client.get("/health")
    assert resp.status_code == 200
    assert "not checked" in resp.json()["checks"]["freshness"]["detail"]


# --- /metrics, /docs, /openapi.json ------------------------------------------------------------


async def test_prometheus_metrics(api: httpx.AsyncClient, written: Written) -> None:
    await api.get("/metrics/region/161?window=1m")
    await api.get("/metrics/region/161?window=2m")
    await api.get("/metrics/region/12345?window=1m")
    await api.get("/metrics/region/161/history?window=1m")
    await api.get("/nope/12345")
    resp = await api.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    for status in ("200", "404", "422"):
        assert (
            f'streampulse_api_requests_total{{method="GET",route="/metrics/region/{{region_id}}",status="{status}"}}'
            in text
        )
    assert 'route="unmatched",status="404"' in text
    assert "12345" not in text, "route templates, never raw paths"
    assert (
        'streampulse_api_request_duration_seconds_bucket{le="0.01",method="GET",route="/metrics/region/{region_id}"}'
        in text
    )
    assert 'streampulse_api_redis_call_duration_seconds_count{operation="history_index"}' in text
    assert 'streampulse_api_redis_call_duration_seconds_count{operation="windows"}' in text


async def test_docs_and_openapi_describe_every_field(api: httpx.AsyncClient) -> None:
    docs = await api.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    schema = (await api.get("/openapi.json")).json()
    assert set(schema["paths"]) == API_PATHS
    for name, component in schema["components"]["schemas"].items():
        for field, prop in component.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{field} has no description"
            assert prop.get("examples"), f"{name}.{field} has no example"
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            for param in operation.get("parameters", []):
                assert param.get("description"), f"{path} {param['name']} has no description"
            if path not in {"/health", "/metrics"}:
                assert {"422", "503"} <= set(operation["responses"]), path
    window = next(p for p in schema["paths"]["/regions"]["get"]["parameters"] if p["name"] == "window")
    assert window["required"] is True and window["schema"]["enum"] == list(SIZES_MS)


# --- Redis unreachable: 503, then recovery -----------------------------------------------------


def write_sync(url: str, app_id: str) -> None:
    async def run() -> None:
        client = Redis.from_url(url)
        try:
            await write_windows(client, Settings(redis_url=url, app_id=app_id), fixture_trips())
        finally:
            await client.aclose()

    asyncio.run(run())


def test_503_while_redis_is_down_and_recovery_after(
    sp_env: dict[str, str], app_id: str, tmp_path: Path, processes: list[Proc]
) -> None:
    redis = RedisServer(tmp_path / "redis")
    url = redis.url
    processes.append(redis.start())
    write_sync(url, app_id)
    api_port = free_port()
    processes.append(start_api({**sp_env, "STREAMPULSE_REDIS_URL": url}, tmp_path, api_port))
    base = f"http://127.0.0.1:{api_port}"
    data_urls = [
        "/metrics/region/161?window=1m&include_current=true",
        "/metrics/region/161/history?window=1m",
        "/regions?window=1m",
        "/metrics/top?window=1m",
    ]
    with httpx.Client(base_url=base, timeout=10) as client:
        for path in data_urls:
            assert client.get(path).status_code == 200, path
        assert client.get("/health").status_code == 200

        processes[0].kill()
        processes[0].popen.wait(10)
        for path in data_urls:
            started = time.monotonic()
            resp = client.get(path)
            assert resp.status_code == 503, (path, resp.text)
            assert resp.json()["detail"] == "Redis unavailable"
            assert resp.headers["retry-after"] == "1"
            assert time.monotonic() - started < 2, "503 must come fast"
        health = client.get("/health")
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "failing" and body["detail"] == "failing: redis, freshness"
        assert body["checks"]["redis"]["ok"] is False
        assert body["checks"]["freshness"]["detail"] == "not checked: Redis is unreachable"
        assert client.get("/metrics/region/161?window=2m").status_code == 422, "validation needs no Redis"
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert 'route="/regions",status="503"' in metrics.text

        processes.append(redis.start())
        assert client.get("/metrics/region/161?window=1m").status_code == 404, "back, but empty"
        write_sync(url, app_id)
        for path in data_urls:
            assert client.get(path).status_code == 200, path
        assert client.get("/health").status_code == 200
    api_proc = processes.pop(1)
    api_proc.stop(10)
    assert "Application shutdown complete" in api_proc.output(), api_proc.output()[-2000:]


# --- the bundled TLC sample ------------------------------------------------------------------


def tlc_trips() -> list[TripEvent]:
    """The sample mapped as data/tlc/README.md says (dropoff = event time, New York local -> UTC)."""
    new_york = ZoneInfo("America/New_York")
    events = []
    with (ROOT / "data" / "tlc" / "tlc_trips_2019-03_sample.csv").open(newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            pickup = parse_local(row["tpep_pickup_datetime"], new_york)
            dropoff = parse_local(row["tpep_dropoff_datetime"], new_york)
            event = parse_event(
                {
                    "trip_id": f"tlc-{i}",
                    "region_id": int(row["PULocationID"]),
                    "event_time": dropoff.isoformat(),
                    "fare": float(row["fare_amount"]),
                    "duration": (dropoff - pickup).total_seconds(),
                    "distance": float(row["trip_distance"]),
                }
            )
            if isinstance(event, TripEvent):
                events.append(event)
    return events


async def test_tlc_sample_served_with_zone_names(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    events = tlc_trips()
    assert len(events) > 6000
    trips = [Trip(e.region_id, e.event_time_ms, e.fare, e.duration, e.distance) for e in events]
    hour = next(size for size in settings.window_sizes if size.name == "1h")
    final_until = hour.start(max(t.t_ms for t in trips))  # the newest hour stays open
    await write_windows(redis, settings, trips, watermark_ms=final_until)
    final_trips = [t for t in trips if hour.end(t.t_ms) <= final_until]

    regions = (await api.get("/regions", params={"window": "1h"})).json()
    per_region = Counter(t.region_id for t in final_trips)
    assert [r["region_id"] for r in regions] == sorted(per_region)
    named = {r["region_id"]: (r["region_name"], r["borough"]) for r in regions}
    assert named[132] == ("JFK Airport", "Queens") and named[138] == ("LaGuardia Airport", "Queens")
    assert named.get(264, (None, None)) == (None, None)

    busiest = per_region.most_common(1)[0][0]
    served: list[dict[str, Any]] = []
    params: dict[str, Any] = {"window": "1h", "limit": 250}
    while True:
        page = (await api.get(f"/metrics/region/{busiest}/history", params=params)).json()
        served += page["items"]
        if page["next"] is None:
            break
        params["cursor"] = page["next"]
    assert sum(i["trip_count"] for i in served) == per_region[busiest]
    assert [i["window_start"] for i in served] == sorted(i["window_start"] for i in served)
    fares = sum(t.fare for t in final_trips if t.region_id == busiest)
    assert sum(i["revenue"] for i in served) == pytest.approx(fares)

    newest_start = max(hour.start(t.t_ms) for t in final_trips)
    in_newest = Counter(t.region_id for t in final_trips if hour.start(t.t_ms) == newest_start)
    top = (await api.get("/metrics/top", params={"window": "1h", "by": "trip_count", "limit": 3})).json()
    assert top["window_start"] == format_time_ms(newest_start)
    expected = sorted(in_newest.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    assert [(i["region_id"], i["value"]) for i in top["items"]] == expected
