"""The version every command prints for ``--version`` and the API reports in its schema.

It comes from the installed package's metadata (``setup.cfg``'s ``version``), so a release is
numbered in one place. Run from a checkout that was never installed, the same ``setup.cfg`` is
read directly, so the number is still the right one rather than a placeholder.
"""

from __future__ import annotations

import configparser
import sys
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

DISTRIBUTION = "streampulse"
_SETUP_CFG = Path(__file__).resolve().parent.parent / "setup.cfg"
UNKNOWN = "0+unknown"


@lru_cache(maxsize=1)
def package_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return _checkout_version(_SETUP_CFG)


def _checkout_version(setup_cfg: Path) -> str:
    parser = configparser.ConfigParser()
    if not parser.read(setup_cfg):
        return UNKNOWN
    return parser.get("metadata", "version", fallback=UNKNOWN)


def version_line(prog: str) -> str:
    """What ``prog --version`` prints."""
    return f"{prog} {package_version()}"


def program_name(module: str) -> str:
    """How the running command was started, for usage and ``--version``: the console script's
    name, or ``python -m module`` when run as a module."""
    started = Path(sys.argv[0])
    return f"python -m {module}" if started.suffix == ".py" else started.name
