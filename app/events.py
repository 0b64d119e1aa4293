"""The trip event: one pydantic model decides validity in the replayer and in the agents.

Validation errors become a short, bounded reason code (``field:error``) for counters and a
human message for the rejects file and the dead-letter topic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from app.settings import get_settings
from tables.times import EPOCH, format_time_ms, parse_time

_MS = timedelta(milliseconds=1)
#: The rejection reason of an event time too far ahead of the wall clock.
FUTURE = "future"


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds of a valid event that come from the settings and the wall clock.

    Kafka 4 refuses records stamped more than an hour ahead of its clock, and a window that far
    in the future would hold its partition's watermark hostage: such events are rejected here,
    by the model, so the replayer reports them instead of the broker failing a whole batch.
    ``now_ms`` is injectable so the rule is testable without waiting.
    """

    max_future_ms: int
    max_region_id: int
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000)

    def latest_ms(self) -> int:
        return self.now_ms() + self.max_future_ms


@lru_cache(maxsize=1)
def default_limits() -> Limits:
    """The limits of this process's settings (``MAX_FUTURE``, ``MAX_REGION_ID``)."""
    settings = get_settings()
    return Limits(settings.max_future_ms, settings.max_region_id)


def _limits(info: ValidationInfo) -> Limits:
    context = info.context
    return context if isinstance(context, Limits) else default_limits()


def _time(value: Any) -> Any:
    """The one time rule (:func:`tables.times.parse_time`), never pydantic's own (which guesses
    seconds or milliseconds from a number's size); other types are left to pydantic to refuse."""
    if isinstance(value, str | int | float):
        return parse_time(value)
    return value


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a number is required, not a boolean")
    return value


Number = Annotated[float, BeforeValidator(_not_bool)]


class TripEvent(BaseModel):
    """A completed trip, as carried on the ``events`` topic."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    trip_id: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    region_id: Annotated[int, BeforeValidator(_not_bool), Field(ge=0, le=2**63 - 1)]
    event_time: Annotated[datetime, BeforeValidator(_time)]
    fare: Annotated[Number, Field(ge=0, le=10_000)]
    duration: Annotated[Number, Field(ge=0, le=86_400)]
    distance: Annotated[Number, Field(ge=0, le=1_000)]

    @field_validator("event_time")
    @classmethod
    def _utc(cls, value: datetime, info: ValidationInfo) -> datetime:
        if value < EPOCH:  # a Kafka record timestamp (= event time) cannot be negative
            raise ValueError("event_time before 1970-01-01T00:00:00Z")
        limits = _limits(info)
        if (value - EPOCH) // _MS > limits.latest_ms():
            raise PydanticCustomError(
                FUTURE,
                "event_time is more than {max_future_s}s ahead of the wall clock",
                {"max_future_s": limits.max_future_ms // 1000},
            )
        return value

    @field_validator("region_id")
    @classmethod
    def _bounded_region(cls, value: int, info: ValidationInfo) -> int:
        highest = _limits(info).max_region_id
        if value > highest:
            raise ValueError(f"region_id above the highest accepted ({highest})")
        return value

    @property
    def event_time_ms(self) -> int:
        return (self.event_time - EPOCH) // _MS

    def to_canonical(self) -> dict[str, Any]:
        """The contract's JSON shape, with event_time in UTC ``Z`` notation."""
        return {
            "trip_id": self.trip_id,
            "region_id": self.region_id,
            "event_time": format_time_ms(self.event_time_ms),
            "fare": self.fare,
            "duration": self.duration,
            "distance": self.distance,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_canonical())


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record is invalid: ``reason`` is a bounded code, ``message`` is for humans."""

    reason: str
    message: str


def rejection_from_error(exc: ValidationError) -> Rejection:
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in first["loc"]) or "record"
    if first["type"] == "missing":
        return Rejection(f"missing:{field}", f"{field}: field required")
    if first["type"] in {"json_invalid", "json_type"}:
        return Rejection("invalid_json", f"not a JSON object: {first['msg']}")
    if first["type"] == "model_type":
        return Rejection("not_an_object", "the record is not a JSON object")
    if first["type"] == FUTURE:
        return Rejection(FUTURE, f"{field}: {first['msg']} (got {_short(first.get('input'))})")
    return Rejection(f"invalid:{field}", f"{field}: {first['msg']} (got {_short(first.get('input'))})")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_event(data: bytes | str | dict[str, Any], limits: Limits | None = None) -> TripEvent | Rejection:
    """Validate raw JSON or a mapping (against ``limits``, default: the settings'); never raises
    on bad input, however large, deep or malformed."""
    try:
        if isinstance(data, dict):
            return TripEvent.model_validate(data, context=limits)
        return TripEvent.model_validate_json(data, context=limits)
    except ValidationError as exc:
        return rejection_from_error(exc)
    except (ValueError, RecursionError) as exc:  # defensive: the parser's own limits
        return Rejection("invalid_json", f"not a JSON object: {_short(str(exc))}")
