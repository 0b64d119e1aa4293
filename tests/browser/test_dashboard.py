"""What a person sees on the dashboard (``GET /``) in headless Chromium, against the real stack.

The page's numbers must be the REST API's answers for the replayed sample; new events must show up
without a reload; the page must ride out an API restart; and the browser console must stay free of
errors throughout. The desktop and phone screenshots in docs/screenshots are written here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from redis.asyncio import Redis
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from app.settings import Settings
from tests.browser.conftest import DESKTOP, PARTITIONS, ApiServer, Dashboard, free_port, stack_env
from tests.integration.pipeline import replay
from tests.integration.stack import ROOT, StackInfo, wait_for
from tests.integration.test_api import delete_app_keys, fixture_trips, write_windows

pytestmark = pytest.mark.browser

SCREENSHOTS = ROOT / "docs" / "screenshots"
PHONE = (390, 844)
#: Midtown Center, the sample's busiest zone: the desktop screenshot shows its charts and new trips.
BUSY_REGION = 161
T = TypeVar("T")


# ---- what the page shows, formatted the way the page formats API values --------------------


def money(value: float | None) -> str:
    """en-US currency as the page's Intl.NumberFormat renders it (ties away from zero)."""
    if value is None:
        return "—"
    return f"${Decimal(value).quantize(Decimal('0.01'), ROUND_HALF_UP):,}"


def trips(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def seconds(value: float | None) -> str:
    return "—" if value is None else f"{Decimal(value).quantize(Decimal('0.1'), ROUND_HALF_UP)} s"


def expected_top_rows(board: ApiServer, by: str, window: str = "1h") -> list[list[str]]:
    top = board.json(f"/metrics/top?window={window}&by={by}&limit=10")
    return [
        [
            str(item["rank"]),
            str(item["region_id"]),
            item["region_name"] or "unknown zone",
            item["borough"] or "—",
            trips(item["trip_count"]),
            money(item["revenue"]),
            money(item["avg_fare"]),
        ]
        for item in top["items"]
    ]


def expected_stats(record: dict[str, Any] | None) -> dict[str, str]:
    if record is None:
        return dict.fromkeys(("trip_count", "revenue", "avg_fare", "p50_duration", "p95_duration"), "—")
    return {
        "trip_count": trips(record["trip_count"]),
        "revenue": money(record["revenue"]),
        "avg_fare": money(record["avg_fare"]),
        "p50_duration": seconds(record["p50_duration"]),
        "p95_duration": seconds(record["p95_duration"]),
    }


def shown_top_rows(driver: webdriver.Chrome) -> list[list[str]]:
    """The table's cells as rendered, read in one script call (the page replaces rows on refresh)."""
    rows: list[list[str]] = driver.execute_script(
        "return [...document.querySelectorAll('#top-table tbody tr')]"
        ".map(row => [...row.cells].map(cell => cell.innerText.trim()));"
    )
    return rows


def shown_stats(driver: webdriver.Chrome, list_id: str) -> dict[str, str]:
    stats: dict[str, str] = driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll(`#${arguments[0]} dd[data-field]`)]"
        ".map(dd => [dd.dataset.field, dd.innerText.trim()]));",
        list_id,
    )
    return stats


def text(driver: webdriver.Chrome, css: str) -> str:
    shown: str = driver.execute_script("return document.querySelector(arguments[0]).innerText.trim();", css)
    return shown


def eventually(check: Callable[[], T], what: str, timeout: float = 20) -> T:
    """Poll until ``check`` is truthy; the page refreshes every 2 s."""
    return wait_for(check, timeout, interval=0.25, what=what)


def equal_eventually(shown: Callable[[], Any], expected: Callable[[], Any], what: str) -> None:
    last: list[Any] = []

    def same() -> bool:
        last[:] = [shown(), expected()]
        return bool(last[1]) and last[0] == last[1]

    try:
        eventually(same, what)
    except AssertionError:
        assert last[0] == last[1], what


def open_page(driver: webdriver.Chrome, board: ApiServer, query: str) -> None:
    driver.get(f"{board.base}/?{query}")
    eventually(lambda: driver.find_element(By.ID, "conn").get_attribute("data-state") == "live", "live state")
    eventually(lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-updated"), "first render")


def screenshot(driver: webdriver.Chrome, path: Path, width: int, *, mobile: bool) -> None:
    """The whole page at ``width``: the viewport is stretched to the document's height first."""
    metrics = {
        "width": width,
        "height": DESKTOP[1],
        "deviceScaleFactor": 1,
        "mobile": mobile,
    }
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": height})
    rendered = driver.find_element(By.TAG_NAME, "body").get_attribute("data-updated")
    eventually(
        lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-updated") != rendered,
        "a render at the new size",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(path)), path


# ---- the console -----------------------------------------------------------------------------


def severe(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("level") == "SEVERE"]


@pytest.fixture(autouse=True)
def no_console_errors(browser: webdriver.Chrome) -> Iterator[None]:
    """Every test ends with no SEVERE entry in the browser's console since it started."""
    browser.get_log("browser")
    yield
    errors = severe(browser.get_log("browser"))
    assert not errors, f"console errors: {json.dumps(errors, indent=1)}"


# ---- the tests -------------------------------------------------------------------------------


def test_a_stack_without_results_yet_shows_it_is_waiting(
    stack: StackInfo, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    api = ApiServer(stack_env(stack), free_port(), tmp_path / "api.log")
    api.start()
    try:
        open_page(browser, api, "window=1h")
        assert text(browser, "#overview-range") == "Waiting for the first final window…"
        assert text(browser, "#top-window") == "No final window yet"
        assert shown_top_rows(browser) == []
        assert text(browser, "#pipe-workers") == "0"
        assert text(browser, "#pipe-freshness") == "no final window yet"
        assert text(browser, "#pipe-health").startswith("Healthy")
    finally:
        browser.get("about:blank")
        api.stop()


def test_top_regions_are_the_apis_ranking(dashboard: Dashboard, browser: webdriver.Chrome) -> None:
    open_page(browser, dashboard, "window=1h&by=revenue")
    equal_eventually(
        lambda: shown_top_rows(browser), lambda: expected_top_rows(dashboard, "revenue"), "top by revenue"
    )
    top = dashboard.json("/metrics/top?window=1h&by=revenue&limit=1")
    assert top["window_start"][:16].replace("T", " ") in text(browser, "#top-window")

    Select(browser.find_element(By.ID, "top-by")).select_by_value("trip_count")
    equal_eventually(
        lambda: shown_top_rows(browser), lambda: expected_top_rows(dashboard, "trip_count"), "top by trips"
    )
    Select(browser.find_element(By.ID, "top-by")).select_by_value("avg_fare")
    equal_eventually(
        lambda: shown_top_rows(browser), lambda: expected_top_rows(dashboard, "avg_fare"), "top by avg fare"
    )
    Select(browser.find_element(By.ID, "window-select")).select_by_value("5m")
    equal_eventually(
        lambda: shown_top_rows(browser),
        lambda: expected_top_rows(dashboard, "avg_fare", "5m"),
        "top of the 5m windows",
    )
    assert "window=5m" in browser.current_url
    for element in browser.find_elements(By.CSS_SELECTOR, "select, input, button"):
        assert element.accessible_name, element.get_attribute("outerHTML")


def test_city_overview_and_pipeline_state(dashboard: Dashboard, browser: webdriver.Chrome) -> None:
    open_page(browser, dashboard, "window=1h")
    city = dashboard.json("/metrics/city?window=1h&points=72")
    assert city["items"] and city["items"][-1]["trip_count"] > 0
    eventually(
        lambda: f"latest {trips(city['items'][-1]['trip_count'])}" in text(browser, "#city-trips-now"),
        "the city's latest trip count",
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#overview canvas")) == 3
    newest = dashboard.json("/metrics/top?window=1h&by=trip_count&limit=1000")
    assert city["items"][-1]["window_start"] == newest["window_start"]
    assert city["items"][-1]["trip_count"] == sum(item["trip_count"] for item in newest["items"])

    pipeline = dashboard.json("/pipeline")
    assert pipeline["workers"] == 1
    assert pipeline["events_processed"] + pipeline["invalid"] == dashboard.sent
    eventually(lambda: text(browser, "#pipe-workers") == "1", "one worker shown")
    assert text(browser, "#pipe-processed") == trips(pipeline["events_processed"])
    assert text(browser, "#pipe-late") == trips(pipeline["late"])
    assert text(browser, "#pipe-invalid") == trips(pipeline["invalid"])
    assert text(browser, "#pipe-health").startswith("Healthy")
    assert text(browser, "#pipe-freshness").endswith("s ago")


def test_drill_down_shows_the_apis_region(dashboard: Dashboard, browser: webdriver.Chrome) -> None:
    open_page(browser, dashboard, "window=1h")
    ranked = dashboard.json("/metrics/top?window=1h&by=trip_count&limit=5")["items"]
    region = next(item for item in reversed(ranked) if item["region_name"])
    field = browser.find_element(By.ID, "region-input")
    field.clear()
    field.send_keys(region["region_name"], Keys.ENTER)
    rid = region["region_id"]

    def api_region() -> dict[str, Any]:
        body: dict[str, Any] = dashboard.json(f"/metrics/region/{rid}?window=1h&include_current=true")
        return body

    eventually(lambda: text(browser, "#region-title").startswith(f"Region {rid} "), "the region's title")
    assert region["region_name"] in text(browser, "#region-title")
    equal_eventually(
        lambda: shown_stats(browser, "region-final"), lambda: expected_stats(api_region()), "final window"
    )
    equal_eventually(
        lambda: shown_stats(browser, "region-open"),
        lambda: expected_stats(api_region()["current"]),
        "open window",
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#region canvas")) == 2
    assert f"region={rid}" in browser.current_url

    other = dashboard.json("/regions?window=1h")[0]["region_id"]
    field.clear()
    field.send_keys(str(other), Keys.ENTER)
    eventually(lambda: text(browser, "#region-title").startswith(f"Region {other} "), "search by id")
    equal_eventually(
        lambda: shown_stats(browser, "region-final"),
        lambda: expected_stats(dashboard.json(f"/metrics/region/{other}?window=1h")),
        "final window of the region searched by id",
    )

    def click_second_row() -> str | None:
        """The row's region id once a click landed (a refresh may replace the row under it)."""
        try:
            row = browser.find_elements(By.CSS_SELECTOR, "#top-table tbody tr")[1]
            region_id = row.get_attribute("data-region-id")
            row.click()
        except StaleElementReferenceException:
            return None
        return region_id

    picked = eventually(click_second_row, "a click on the second row")
    eventually(lambda: text(browser, "#region-title").startswith(f"Region {picked} "), "a row's region")

    field.clear()
    field.send_keys("no such zone anywhere", Keys.ENTER)
    eventually(lambda: "No region" in text(browser, "#region-msg"), "the no-match message")


def test_phone_width_fits_without_sideways_scrolling(dashboard: Dashboard, browser: webdriver.Chrome) -> None:
    open_page(browser, dashboard, "window=1h")
    metrics = {"width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 2, "mobile": True}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        browser.refresh()
        open_page(browser, dashboard, "window=1h")
        equal_eventually(
            lambda: shown_top_rows(browser), lambda: expected_top_rows(dashboard, "revenue"), "top on a phone"
        )
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= PHONE[0], f"the page is {width}px wide on a {PHONE[0]}px screen"
        table = browser.execute_script(
            "const w = document.querySelector('#top .table-wrap'); return [w.scrollWidth, w.clientWidth];"
        )
        assert table[0] <= table[1], f"the top regions table needs {table[0]}px of {table[1]}px"
        screenshot(browser, SCREENSHOTS / "dashboard-phone.png", PHONE[0], mobile=True)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_new_events_appear_without_a_reload(
    dashboard: Dashboard, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    ids = [r["region_id"] for r in dashboard.json("/regions?window=1h")]
    rid = BUSY_REGION if BUSY_REGION in ids else ids[0]
    # The hour right after the newest final one: open on every partition, so not late.
    hour = datetime.fromisoformat(dashboard.json("/metrics/top?window=1h&limit=1")["window_end"])
    open_page(browser, dashboard, f"window=1h&region={rid}")
    browser.execute_script("window.__sameDocument = true;")

    first = [_event(rid, hour + timedelta(minutes=5, seconds=i), 10.0 + i) for i in range(3)]
    replay(dashboard.env, str(_jsonl(tmp_path / "open.jsonl", first)), "--no-end-marker")
    eventually(
        lambda: shown_stats(browser, "region-open")["trip_count"] == "3", "the open window's 3 new trips", 60
    )
    current = dashboard.json(f"/metrics/region/{rid}?window=1h&include_current=true")["current"]
    assert current is not None and current["window_start"].startswith(hour.strftime("%Y-%m-%dT%H"))
    equal_eventually(
        lambda: shown_stats(browser, "region-open"), lambda: expected_stats(current), "open window"
    )
    eventually(lambda: "open 3" in text(browser, "#city-trips-now"), "the city's open window")
    screenshot(browser, SCREENSHOTS / "dashboard-desktop.png", DESKTOP[0], mobile=False)
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    more = [_event(rid, hour + timedelta(minutes=20, seconds=i), 20.0) for i in range(2)]
    replay(dashboard.env, str(_jsonl(tmp_path / "final.jsonl", more)))
    dashboard.wait_replay_settled(2 * PARTITIONS)
    eventually(lambda: shown_stats(browser, "region-final")["trip_count"] == "5", "the closed window", 60)
    equal_eventually(
        lambda: shown_top_rows(browser),
        lambda: expected_top_rows(dashboard, "revenue"),
        "top after new events",
    )
    assert shown_top_rows(browser)[0][1] == str(rid)
    assert hour.strftime("%Y-%m-%d %H:00") in text(browser, "#top-window")
    eventually(lambda: "latest 5" in text(browser, "#city-trips-now"), "the city's new window")
    assert shown_stats(browser, "region-open")["trip_count"] == "—"
    assert browser.execute_script("return window.__sameDocument === true;"), "the page was reloaded"


def test_page_recovers_when_the_api_restarts(dashboard: Dashboard, browser: webdriver.Chrome) -> None:
    open_page(browser, dashboard, "window=1h")
    browser.execute_script("window.__sameDocument = true;")
    conn = browser.find_element(By.ID, "conn")
    dashboard.stop()
    eventually(lambda: conn.get_attribute("data-state") == "reconnecting", "the reconnecting state")
    assert conn.text.startswith("Reconnecting")
    dashboard.start()
    eventually(lambda: conn.get_attribute("data-state") == "live", "live again", 30)
    # While the API was down Chromium logs each refused request; nothing else may be logged.
    origin = dashboard.base
    unexpected = [
        e
        for e in severe(browser.get_log("browser"))
        if not (
            e.get("source") == "network" and origin in e.get("message", "") and "net::ERR_" in e["message"]
        )
    ]
    assert not unexpected, f"console errors besides refused requests: {json.dumps(unexpected, indent=1)}"
    equal_eventually(
        lambda: shown_top_rows(browser), lambda: expected_top_rows(dashboard, "revenue"), "top after restart"
    )
    assert browser.execute_script("return window.__sameDocument === true;"), "the page was reloaded"


def _event(region_id: int, when: datetime, fare: float) -> dict[str, Any]:
    stamp = when.strftime("%Y%m%dT%H%M%S")
    return {
        "trip_id": f"browser-{region_id}-{stamp}",
        "region_id": region_id,
        "event_time": when.isoformat().replace("+00:00", "Z"),
        "fare": fare,
        "duration": 600.0,
        "distance": 2.0,
    }


def _jsonl(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


@pytest.fixture
def stored_windows(stack: StackInfo) -> Iterator[dict[str, str]]:
    """A new app id's windows, written by the real sink as the API tests write them (no worker:
    the page needs only something to show), and the environment to serve them; deleted after."""
    env = stack_env(stack)
    settings = Settings(redis_url=stack.redis_url, app_id=env["STREAMPULSE_APP_ID"])

    async def write() -> None:
        client = Redis.from_url(stack.redis_url)
        try:
            await write_windows(client, settings, fixture_trips())
        finally:
            await client.aclose()

    async def delete() -> None:
        client = Redis.from_url(stack.redis_url)
        try:
            await delete_app_keys(client, settings.app_id)
        finally:
            await client.aclose()

    asyncio.run(write())
    yield env
    asyncio.run(delete())


def test_with_api_keys_the_page_asks_for_a_key_and_then_shows_the_data(
    stored_windows: dict[str, str], browser: webdriver.Chrome, tmp_path: Path
) -> None:
    key = "dash-key-5b1e0c9a"
    env = {**stored_windows, "STREAMPULSE_API_KEYS": key}
    api = ApiServer(env, free_port(), tmp_path / "api.log", api_key=key)
    api.start()
    try:
        browser.get(f"{api.base}/?window=1m&by=revenue")
        conn = browser.find_element(By.ID, "conn")
        eventually(lambda: conn.get_attribute("data-state") == "unauthorized", "the missing key is shown")
        assert conn.text == "API key needed"
        assert text(browser, "#key-msg").startswith("This API needs a key.")
        assert shown_top_rows(browser) == []
        # The page itself loaded without a key; only its data requests were refused (each one
        # is a network error in the console, nothing else may be).
        unexpected = [
            e
            for e in severe(browser.get_log("browser"))
            if not (e.get("source") == "network" and "401" in e.get("message", ""))
        ]
        assert not unexpected, f"console errors besides refused requests: {json.dumps(unexpected, indent=1)}"

        browser.find_element(By.ID, "key-input").send_keys("not-the-key", Keys.ENTER)
        eventually(lambda: text(browser, "#key-msg").startswith("The API refused this key"), "a refused key")
        browser.get_log("browser")
        browser.find_element(By.ID, "key-input").send_keys(key, Keys.ENTER)
        eventually(lambda: conn.get_attribute("data-state") == "live", "live with the key", 30)
        assert not browser.find_elements(By.ID, "key-panel")
        equal_eventually(
            lambda: shown_top_rows(browser),
            lambda: expected_top_rows(api, "revenue", "1m"),
            "top with the key",
        )
        browser.get_log("browser")

        # A link with the key in its fragment, in a new tab (whose session storage is empty): the
        # key is kept for that tab, leaves the address bar and never reaches the server.
        first = browser.current_window_handle
        browser.switch_to.new_window("tab")
        try:
            open_page(browser, api, f"window=1m&by=trip_count#key={key}")
            assert "key" not in browser.current_url
            equal_eventually(
                lambda: shown_top_rows(browser),
                lambda: expected_top_rows(api, "trip_count", "1m"),
                "top from a key link",
            )
        finally:
            browser.close()
            browser.switch_to.window(first)
        assert key not in api.log.read_text()
    finally:
        browser.get("about:blank")
        api.stop()
