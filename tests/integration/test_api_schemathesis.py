"""Schemathesis against ``/openapi.json`` of a real ``uvicorn api.main:app`` reading real Redis.

The schema is the API's promise: every status code, content type, header and body a client can get
must be documented there, nothing may be a 5xx, and data the schema forbids must be refused with a
4xx. Each operation gets up to 50 schema-valid requests, 50 schema-invalid ones if it has
parameters, and 50 valid ones for a region that has data (random ids rarely hit one), without a
deadline: the run stays well under a minute. Operations are driven through
``APIOperation.as_strategy`` with plain Hypothesis, because schemathesis's pytest plugin
(``from_fixture``) reads a pytest-internal attribute that pytest 9 no longer has.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from redis.asyncio import Redis
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.stack import StackInfo
from tests.integration.test_api import API_PATHS, delete_app_keys, free_port, start_api, write_sync

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
EXAMPLES_PER_OPERATION = 50
REGION_WITH_DATA = 161


@pytest.fixture
def api_schema(
    stack: StackInfo, sp_env: dict[str, str], app_id: str, tmp_path: Path
) -> Iterator[schemathesis.BaseSchema]:
    """The schema of an API serving the integration fixture's windows, so valid requests find data."""
    write_sync(stack.redis_url, app_id)
    port = free_port()
    proc = start_api(sp_env, tmp_path, port)
    try:
        yield schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/openapi.json")
    finally:
        proc.stop(10)
        asyncio.run(_delete_keys(stack.redis_url, app_id))


async def _delete_keys(url: str, app_id: str) -> None:
    client = Redis.from_url(url)
    try:
        await delete_app_keys(client, app_id)
    finally:
        await client.aclose()


PUSH_PATHS = {"/stream"}


def test_no_5xx_and_every_response_matches_the_schema(api_schema: schemathesis.BaseSchema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations() if isinstance(result, Ok)]
    assert {op.path for op in operations} == API_PATHS
    # A push stream never ends, so it cannot be called like the others; tests/integration/test_stream.py
    # covers it.
    operations = [op for op in operations if op.path not in PUSH_PATHS]
    failures: list[str] = []
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    for operation in operations:
        for mode, fixed in _passes(operation):

            @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: schemathesis.Case) -> None:
                response = case.call_and_validate(checks=CHECKS, timeout=10)
                statuses[case.operation.path][response.status_code] += 1

            try:
                run()
            except Exception as exc:  # collected so every operation runs before the test fails
                failures.append(f"{operation.method.upper()} {operation.path} ({mode}, {fixed}): {exc}")
    assert not failures, "\n\n".join(failures)
    for path, seen in statuses.items():
        assert seen[200], f"{path} never answered 200 ({dict(seen)}): the run did not reach the data"
        assert not any(status >= 500 for status in seen), (path, dict(seen))


def _passes(operation: APIOperation) -> list[tuple[GenerationMode, dict[str, Any] | None]]:
    """Valid and invalid data everywhere, plus valid data for a region that has windows."""
    if not (operation.path_parameters or operation.query):
        return [(GenerationMode.POSITIVE, None)]
    passes: list[tuple[GenerationMode, dict[str, Any] | None]] = [
        (GenerationMode.POSITIVE, None),
        (GenerationMode.NEGATIVE, None),
    ]
    if operation.path_parameters:
        passes.append((GenerationMode.POSITIVE, {"region_id": REGION_WITH_DATA}))
    return passes
