"""The stack helpers of the tests: they live in :mod:`support.procs`, shared with the benchmark."""

from __future__ import annotations

from support.procs import ROOT, Proc, StackInfo, ready, wait_for

__all__ = ["ROOT", "Proc", "StackInfo", "ready", "wait_for"]
