"""The one logging configuration of StreamPulse: the worker, the API and every command line.

``LOG_FORMAT=plain`` writes ``time level logger: message`` lines for a person reading a terminal;
``json`` writes one JSON object per line (``ts``, ``level``, ``logger``, ``message`` and ``exc``
when a traceback is attached) so that a log collector never has to parse text or split a
multi-line traceback. ``LOG_LEVEL`` is the lowest level written. Records go to stderr: stdout
belongs to what a command prints as its result (the replayer's JSON summary).

Each process applies it once at start: the worker hands it to Faust (``logging_config``, which
Faust's worker installs in place of its own), the API when its module is loaded by uvicorn
(uvicorn's own loggers then write through it), the command lines in their ``main``.
"""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from app.settings import Settings

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Loggers that write a record per produced message at DEBUG: formatting those alone is a
#: measurable share of a worker's CPU (docs/benchmarks.md, "Hot-path choices"), so they stay at
#: INFO or above whatever LOG_LEVEL says.
PER_MESSAGE_LOGGERS = ("aiokafka", "faust.topics")

#: uvicorn configures these with handlers and levels of its own before it loads the API; emptied
#: and set to LOG_LEVEL, their records reach the root handler and are written like every other line.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a traceback is a string field, not more lines)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def logging_config(settings: Settings, levels: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` schema of these settings; ``levels`` sets the level of
    particular loggers (a command that reports a library's failures itself silences it)."""
    root_level = logging.getLevelName(settings.log_level)
    per_message = max(logging.INFO, root_level)
    loggers: dict[str, dict[str, Any]] = {name: {"level": per_message} for name in PER_MESSAGE_LOGGERS}
    for name in UVICORN_LOGGERS:
        loggers[name] = {"handlers": [], "propagate": True, "level": root_level}
    for name, level in (levels or {}).items():
        loggers.setdefault(name, {})["level"] = level
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if settings.log_format == "json" else {"format": PLAIN_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"streampulse": formatter},
        "handlers": {
            "streampulse": {
                "class": "logging.StreamHandler",
                "formatter": "streampulse",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": root_level, "handlers": ["streampulse"]},
        "loggers": loggers,
    }


def configure_logging(settings: Settings, levels: Mapping[str, int] | None = None) -> None:
    logging.config.dictConfig(logging_config(settings, levels))
