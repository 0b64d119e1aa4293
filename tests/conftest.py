"""Shared test configuration: integration tests may never be silently skipped under `make test`."""

from __future__ import annotations

import os

import pytest

_skipped_integration: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.fspath).replace(os.sep, "/")
        if "tests/integration" in path or "tests/browser" in path:
            item.add_marker(pytest.mark.integration)
        if "tests/faults" in path:  # on the real stack too: never skipped either
            item.add_marker(pytest.mark.fault)
            item.add_marker(pytest.mark.integration)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "integration" in report.keywords:
        _skipped_integration.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("STREAMPULSE_REQUIRE_INTEGRATION") == "1" and _skipped_integration:
        names = _skipped_integration[:5]
        print(f"\nERROR: {len(_skipped_integration)} integration test(s) were skipped: {names}")
        session.exitstatus = 1
