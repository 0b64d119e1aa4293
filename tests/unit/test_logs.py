"""The one logging configuration: both formats, the level, and libraries' loggers under it."""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Iterator

import pytest

from app.logs import logging_config
from app.settings import Settings


class _Stderr:
    """What the configured handler wrote to stderr (which it looks up when configured)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def getvalue(self) -> str:
        return self._capsys.readouterr().err


@pytest.fixture
def captured(capsys: pytest.CaptureFixture[str]) -> Iterator[_Stderr]:
    """stderr, and the logging state restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    named = {
        n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level)
        for n in ("aiokafka", "x", "uvicorn.error")
    }
    yield _Stderr(capsys)
    root.handlers[:], root.level = saved[0], saved[1]
    for name, (handlers, level) in named.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).setLevel(level)


def test_json_lines_carry_time_level_logger_message_and_traceback(captured: _Stderr) -> None:
    logging.config.dictConfig(logging_config(Settings(log_format="json")))
    log = logging.getLogger("x")
    log.info("hello %s", "world")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    first, second = (json.loads(line) for line in captured.getvalue().splitlines())
    assert set(first) == {"ts", "level", "logger", "message"}
    assert (first["level"], first["logger"], first["message"]) == ("INFO", "x", "hello world")
    assert first["ts"].endswith("+00:00") and "T" in first["ts"]
    assert second["message"] == "failed" and "RuntimeError: boom" in second["exc"]


def test_plain_lines_and_the_level_setting(captured: _Stderr) -> None:
    logging.config.dictConfig(logging_config(Settings(log_level="warning")))
    log = logging.getLogger("x")
    log.info("hidden")
    log.warning("shown")
    (line,) = captured.getvalue().splitlines()
    assert line.endswith(" WARNING x: shown")


def test_per_message_loggers_stay_at_info_even_at_debug(captured: _Stderr) -> None:
    logging.config.dictConfig(logging_config(Settings(log_level="DEBUG")))
    logging.getLogger("aiokafka").debug("per message")
    logging.getLogger("x").debug("ours")
    written = captured.getvalue()
    assert "per message" not in written and "ours" in written


def test_a_command_may_silence_one_library(captured: _Stderr) -> None:
    logging.config.dictConfig(logging_config(Settings(), {"aiokafka": logging.CRITICAL}))
    logging.getLogger("aiokafka").error("connection refused")
    assert captured.getvalue() == ""


def test_uvicorn_lines_follow_the_level_and_format(captured: _Stderr) -> None:
    logging.getLogger("uvicorn.error").setLevel(logging.INFO)  # as uvicorn leaves it
    logging.config.dictConfig(logging_config(Settings(log_level="WARNING", log_format="json")))
    logging.getLogger("uvicorn.error").info("Started server process")
    logging.getLogger("uvicorn.error").error("Address already in use")
    (line,) = captured.getvalue().splitlines()
    assert json.loads(line)["message"] == "Address already in use"
