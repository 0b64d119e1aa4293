"""Closing the API, on the real Redis: API keys, the rate limit, CORS, untrusted stored windows,
and 503 bodies that give nothing away.

The app runs in-process as in ``test_api.py``, over windows written by the real sink functions.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from api.main import create_app
from app.redis_keys import RedisKeys
from app.settings import Settings
from tests.integration.stack import StackInfo
from tests.integration.test_api import (
    TOP_START_MS,
    Written,
    delete_app_keys,
    fixture_trips,
    free_port,
    serve,
    write_windows,
)

pytestmark = pytest.mark.integration

KEY = "k-3f9a1c27b6d04e58"
OTHER_KEY = "k-second-0a1b2c3d"
ORIGIN = "https://dash.example.org"
DATA = "/metrics/region/161?window=1m"


def settings_for(stack: StackInfo, app_id: str, **values: str) -> Settings:
    return Settings(redis_url=stack.redis_url, app_id=app_id, **values)  # type: ignore[arg-type]


@pytest.fixture
async def redis(stack: StackInfo, app_id: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_url)
    yield client
    await delete_app_keys(client, app_id)
    await client.aclose()


@pytest.fixture
async def written(redis: Redis, stack: StackInfo, app_id: str) -> Written:
    return await write_windows(redis, settings_for(stack, app_id), fixture_trips())


async def test_api_keys_guard_every_data_route_and_health_stays_open(
    stack: StackInfo, app_id: str, written: Written
) -> None:
    async with serve(settings_for(stack, app_id, api_keys=f"{KEY}, {OTHER_KEY}")) as api:
        for path in (
            DATA,
            "/regions?window=1m",
            "/metrics/top?window=1m",
            "/metrics",
            "/docs",
            "/openapi.json",
            "/stream?window=1m",
        ):
            resp = await api.get(path)
            assert resp.status_code == 401, (path, resp.text)
            assert resp.json() == {"detail": "missing or invalid API key"}
            assert resp.headers["www-authenticate"] == "Bearer"
        assert (await api.get(DATA, headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (await api.get(DATA, headers={"X-API-Key": KEY[:-1]})).status_code == 401
        assert (await api.get(DATA, headers={"Authorization": f"Basic {KEY}"})).status_code == 401

        ok = await api.get(DATA, headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200, ok.text
        assert ok.json()["region_id"] == 161
        assert (await api.get(DATA, headers={"X-API-Key": OTHER_KEY})).status_code == 200
        assert (await api.get("/health")).status_code == 200, "probes need no key"
        ready = await api.get("/ready")
        assert ready.status_code == 200 and ready.json()["ready"] is True, ready.text


async def test_the_dashboard_page_and_assets_need_no_key(
    stack: StackInfo, app_id: str, written: Written
) -> None:
    """They hold no data: a browser loads them, then the page asks for a key for the data."""
    async with serve(settings_for(stack, app_id, api_keys=KEY)) as api:
        page = await api.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        script = await api.get("/static/api.js")
        assert script.status_code == 200 and "Authorization" in script.text
        escaped = await api.get("/static/%2E%2E/openapi.json")
        assert escaped.status_code == 404, "only the dashboard's files are under /static/"
        assert (await api.get("/staticx")).status_code == 401
        assert (await api.get(DATA)).status_code == 401


async def test_without_api_keys_the_api_is_open(stack: StackInfo, app_id: str, written: Written) -> None:
    async with serve(settings_for(stack, app_id)) as api:
        assert (await api.get(DATA)).status_code == 200


async def test_rate_limit_gives_429_with_retry_after(stack: StackInfo, app_id: str, written: Written) -> None:
    async with serve(settings_for(stack, app_id, rate_limit="5/minute")) as api:
        for _ in range(5):
            assert (await api.get(DATA)).status_code == 200
        limited = await api.get(DATA)
        assert limited.status_code == 429
        assert limited.json()["detail"].startswith("rate limit exceeded")
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert (await api.get("/health")).status_code == 200, "health is not limited"


async def test_rate_limit_is_per_key(stack: StackInfo, app_id: str, written: Written) -> None:
    settings = settings_for(stack, app_id, api_keys=f"{KEY},{OTHER_KEY}", rate_limit="2/minute")
    async with serve(settings) as api:
        first = {"X-API-Key": KEY}
        assert [(await api.get(DATA, headers=first)).status_code for _ in range(3)] == [200, 200, 429]
        assert (await api.get(DATA, headers={"X-API-Key": OTHER_KEY})).status_code == 200


async def test_cors_allows_only_the_configured_origins(
    stack: StackInfo, app_id: str, written: Written
) -> None:
    async with serve(settings_for(stack, app_id, cors_origins=ORIGIN, api_keys=KEY)) as api:
        preflight = await api.options(
            DATA,
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200, "a preflight carries no key"
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        denied = await api.get(DATA, headers={"Origin": ORIGIN})
        assert denied.status_code == 401
        assert denied.headers["access-control-allow-origin"] == ORIGIN, "the page can read the 401"
        ok = await api.get(DATA, headers={"Origin": ORIGIN, "Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
        other = await api.get(
            DATA, headers={"Origin": "https://evil.example", "Authorization": f"Bearer {KEY}"}
        )
        assert "access-control-allow-origin" not in other.headers
    async with serve(settings_for(stack, app_id)) as api:
        resp = await api.get(DATA, headers={"Origin": ORIGIN})
        assert "access-control-allow-origin" not in resp.headers, "no CORS unless configured"


async def test_malformed_or_forged_stored_windows_are_404_not_500(
    stack: StackInfo, app_id: str, redis: Redis, written: Written
) -> None:
    keys = RedisKeys(app_id)
    newest = keys.window("1m", 161, TOP_START_MS)
    older_start = TOP_START_MS - 60_000
    older = keys.window("1m", 161, older_start)
    await redis.hset(newest, "data", b"{not json")
    forged = dict(written.final[("1m", 236, older_start)])
    await redis.hset(older, "data", orjson.dumps(forged))
    other_start = TOP_START_MS - 120_000
    await redis.hset(
        keys.window("1m", 161, other_start), "data", orjson.dumps({"window": "1m", "trip_count": "x"})
    )
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(TOP_START_MS / 1000))
    async with serve(settings_for(stack, app_id)) as api:
        assert (await api.get(f"{DATA}&at={at}")).status_code == 404
        older_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(older_start / 1000))
        assert (await api.get(f"{DATA}&at={older_at}")).status_code == 404, "another region's window"
        latest = await api.get(DATA)
        assert latest.status_code == 200
        assert latest.json()["window_start"] < at, "falls back to the newest valid window"
        history = await api.get("/metrics/region/161/history?window=1m&limit=1000")
        assert history.status_code == 200
        starts = {item["window_start"] for item in history.json()["items"]}
        assert at not in starts and older_at not in starts
        for path in (
            "/metrics/top?window=1m",
            "/regions?window=1m",
            "/metrics/region/161?window=1m&include_current=true",
        ):
            assert (await api.get(path)).status_code in (200, 404), path
        metrics = (await api.get("/metrics")).text
        assert "streampulse_api_invalid_stored_windows_total" in metrics


async def test_top_ignores_windows_beyond_max_future(
    stack: StackInfo, app_id: str, redis: Redis, written: Written
) -> None:
    keys = RedisKeys(app_id)
    future_start = (int(time.time()) // 60 + 24 * 60) * 60_000
    record = dict(written.final[("1m", 236, TOP_START_MS)])
    record.update(
        window_start=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(future_start / 1000)),
        window_end=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(future_start / 1000 + 60)),
        window_start_ms=future_start,
        window_end_ms=future_start + 60_000,
        revenue=1e9,
    )
    await redis.hset(
        keys.window("1m", 236, future_start), mapping={"final": "1", "data": orjson.dumps(record)}
    )
    await redis.zadd(keys.latest("1m"), {"236": future_start})
    async with serve(settings_for(stack, app_id)) as api:
        top = await api.get("/metrics/top?window=1m")
        assert top.status_code == 200, top.text
        assert top.json()["window_start"] == "2019-03-04T16:12:00Z"
        assert all(item["value"] < 1e9 for item in top.json()["items"])


async def test_503_bodies_name_neither_host_nor_secret(app_id: str) -> None:
    password = "pw-never-shown-4711"
    url = f"redis://reader:{password}@127.0.0.1:{free_port()}/0"
    settings = Settings(redis_url=url, app_id=app_id)
    assert password not in repr(settings) and password not in str(settings.model_dump())
    assert password not in settings.redis_url_masked
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api,
    ):
        for path in (DATA, "/regions?window=1m", "/health"):
            resp = await api.get(path)
            assert resp.status_code == 503, (path, resp.text)
            assert password not in resp.text and "127.0.0.1" not in resp.text, resp.text
        assert (await api.get(DATA)).json() == {"detail": "Redis unavailable"}


async def test_every_key_the_sink_writes_expires(redis: Redis, app_id: str, written: Written) -> None:
    keys = [key async for key in redis.scan_iter(match=f"{RedisKeys(app_id).prefix}*", count=1000)]
    assert len(keys) > 10
    ttls = {key: await redis.ttl(key) for key in keys}
    assert all(ttl > 0 for ttl in ttls.values()), [k for k, ttl in ttls.items() if ttl <= 0]
