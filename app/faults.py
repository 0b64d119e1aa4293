"""Fault injection for the fault tests: a worker that kills itself at a named point of a batch.

``STREAMPULSE_FAULT_POINT`` names the point (``after-publish``: the batch's results are
acknowledged, nothing is stored; ``mid-state-write``: some of the batch's window slots are in
the table, its progress is not; ``before-commit``: everything is stored and acknowledged, the
offsets are not committed). The worker SIGKILLs itself the first time a batch that finalized a
window reaches it, which is how the tests prove that a crash at any of these points is recovered
exactly. Unset (always, outside those tests) it does nothing.
"""

from __future__ import annotations

import os
import signal

FAULT_POINT_ENV = "STREAMPULSE_FAULT_POINT"
POINTS = frozenset({"after-publish", "mid-state-write", "before-commit"})

_armed = os.environ.get(FAULT_POINT_ENV) or None
if _armed is not None and _armed not in POINTS:
    raise SystemExit(
        f"{FAULT_POINT_ENV}: unknown fault point {_armed!r} (one of {', '.join(sorted(POINTS))})"
    )


def reached(point: str) -> None:
    """Die here, without any clean-up, if the tests armed this point."""
    if _armed == point:
        os.kill(os.getpid(), signal.SIGKILL)
