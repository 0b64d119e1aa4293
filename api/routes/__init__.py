"""One APIRouter per resource; :func:`api.main.create_app` includes them all."""

from __future__ import annotations

from typing import Any

from api.models import ErrorBody, ValidationErrorBody

#: Error responses documented on every data route (schemathesis checks responses against them).
INVALID: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ValidationErrorBody,
        "description": "Invalid parameter; the message names it and the allowed values",
    }
}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorBody,
        "description": "Redis is unreachable or failing; retry after the Retry-After header",
    }
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown region, or no retained data for the request"}
}
