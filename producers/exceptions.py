"""Errors that end a replay, each carrying the exit code the CLI documents."""

from __future__ import annotations


class ReplayError(Exception):
    """A replay cannot go on; ``str(exc)`` is the one line shown to the user."""

    exit_code = 1


class UsageProblem(ReplayError):
    """The command line or an input cannot be used as given (exit 2, like click's own usage errors)."""

    exit_code = 2


class StrictReject(ReplayError):
    """``--strict`` met an invalid row (exit 1)."""

    exit_code = 1


class KafkaUnreachable(ReplayError):
    """The broker cannot be reached or refused the replay (exit 3)."""

    exit_code = 3
