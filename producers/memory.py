"""Memory tuning for the replayer's allocation pattern: glibc's heap and Python's collector.

A replay allocates and frees a few MB per chunk (JSON values, batches). By default glibc hands
the freed top of the heap back to the OS after every chunk and faults the pages in again for the
next one; on the VMs this runs on that costs more than validating the events (orjson.dumps with
its results kept per chunk: 4.5 us per call against 1.3 us with the heap kept). Keeping up to a
few hundred MB of freed heap makes the allocation cost flat.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed heap memory; False where there is no ``mallopt`` (musl, macOS)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_TRIM_THRESHOLD, 256 << 20) and mallopt(_M_TOP_PAD, 16 << 20)
    return bool(ok and mallopt(_M_MMAP_THRESHOLD, 8 << 20))


def relax_gc() -> None:
    """Collect less often: a replay allocates tens of thousands of short-lived, acyclic objects
    per chunk (dicts, models, datetimes), and at the default threshold the collector runs every
    700 of them (docs/benchmarks.md, "Hot-path choices", has the saving). Objects alive at start-up
    (modules, the model, lookup tables) are frozen out of every collection. Call before forking
    the workers: they inherit it."""
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)
