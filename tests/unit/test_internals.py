"""The library internals StreamPulse uses still exist, and an untested version is refused."""

from __future__ import annotations

import inspect
import re
from importlib import metadata

import pytest

from app import internals


def _assigned_in_source(owner: object, name: str) -> bool:
    classes = inspect.getmro(owner) if isinstance(owner, type) else ()
    assigned = re.compile(rf"self\.{re.escape(name)}\s*(:[^=\n]+)?=")
    return any(assigned.search(inspect.getsource(cls)) for cls in classes if cls.__module__ != "builtins")


@pytest.mark.parametrize(
    ("owner", "name"),
    internals.PRIVATE_NAMES,
    ids=[f"{getattr(o, '__name__', o)}.{n}" for o, n in internals.PRIVATE_NAMES],
)
def test_every_private_name_used_still_exists(owner: object, name: str) -> None:
    assert hasattr(owner, name) or _assigned_in_source(owner, name), f"{owner!r} has no {name}"


def test_the_installed_versions_are_the_tested_ones() -> None:
    internals.check_versions()


def test_an_untested_version_is_refused_with_the_fix_in_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    real = metadata.version

    def version(package: str) -> str:
        return "0.99.0" if package == "faust-streaming" else real(package)

    monkeypatch.setattr(internals, "version", version)
    with pytest.raises(
        internals.UntestedVersion, match=r"faust-streaming 0\.99\.0 is not a version .* \(0\.15\.3\)"
    ):
        internals.check_versions()


def test_a_release_prefix_accepts_its_patch_releases(monkeypatch: pytest.MonkeyPatch) -> None:
    real = metadata.version
    monkeypatch.setattr(internals, "version", lambda p: "0.14.7" if p == "aiokafka" else real(p))
    internals.check_versions()
    monkeypatch.setattr(internals, "version", lambda p: "0.140.0" if p == "aiokafka" else real(p))
    with pytest.raises(internals.UntestedVersion, match="aiokafka 0.140.0"):
        internals.check_versions()
