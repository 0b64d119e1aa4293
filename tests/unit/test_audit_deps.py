"""The dependency audit's reading of PyPI's answers (fake responses in the registry's JSON shape):
an advisory or a yanked release fails `make lint`, a withdrawn advisory does not, and a pin the
registry cannot audit is named with what holds it back."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_deps", ROOT / "scripts" / "audit_deps.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


audit_deps = _load()
API = audit_deps.API

ADVISORY = {
    "id": "PYSEC-2099-1",
    "aliases": ["CVE-2099-0001"],
    "fixed_in": ["2.0.1"],
    "withdrawn": None,
}
WITHDRAWN = {"id": "PYSEC-2099-2", "aliases": [], "fixed_in": [], "withdrawn": "2099-01-02T00:00:00Z"}


def project(
    latest: str, versions: dict[str, bool], vulns: list[dict[str, Any]], **info: Any
) -> dict[str, Any]:
    """A ``/pypi/<name>/json`` document: releases with their files' yanked flag."""
    return {
        "info": {"version": latest, **info},
        "releases": {v: [{"yanked": yanked}] for v, yanked in versions.items()},
        "vulnerabilities": vulns,
    }


def run(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pins: list[str],
    docs: dict[str, dict[str, Any]],
    *flags: str,
) -> tuple[int, str]:
    lock = tmp_path / "requirements.lock"
    lock.write_text("# a header\n" + "".join(f"{pin}\n" for pin in pins))
    monkeypatch.setattr(audit_deps, "fetch", lambda url: docs.get(url))
    monkeypatch.setattr(sys, "argv", ["audit_deps.py", str(lock), *flags])
    status = audit_deps.main()
    out = capsys.readouterr()
    return status, out.out + out.err


def test_a_known_vulnerability_fails_with_its_id_and_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = {
        f"{API}/libA/1.0/json": {"info": {}, "urls": [{"yanked": False}], "vulnerabilities": [ADVISORY]},
        f"{API}/libB/2.0/json": {"info": {}, "urls": [{"yanked": False}], "vulnerabilities": [WITHDRAWN]},
    }
    status, out = run(monkeypatch, tmp_path, capsys, ["libA==1.0", "libB==2.0"], docs)
    assert status == 1
    assert "libA==1.0: PYSEC-2099-1 (CVE-2099-0001); fixed in 2.0.1" in out
    assert "libB" not in out.split("audit: 2 locked")[0], "a withdrawn advisory is no finding"
    assert "2 locked packages, 2 audited, 0 not audited (listed above), 1 with known problems" in out


def test_project_endpoint_only_audits_the_newest_release(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = {f"{API}/libA/json": project("2.0", {"1.0": False, "2.0": False}, [ADVISORY])}
    status, out = run(monkeypatch, tmp_path, capsys, ["libA==2.0"], docs)
    assert status == 1 and "libA==2.0: PYSEC-2099-1" in out


def test_yanked_and_unknown_pins_fail(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = {f"{API}/libA/json": project("2.0", {"1.0": True, "2.0": False}, [])}
    status, out = run(monkeypatch, tmp_path, capsys, ["libA==1.0", "nosuch==1.0"], docs)
    assert status == 1
    assert "libA==1.0: yanked by its maintainers" in out
    assert "nosuch==1.0: not found on PyPI" in out


def test_an_older_pin_is_listed_with_what_holds_it_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = {
        f"{API}/held/json": project("3.0", {"1.0": False, "3.0": False}, [ADVISORY]),
        f"{API}/framework/json": project(
            "5.0", {"5.0": False}, [], requires_dist=["held<2,>=1", "other; extra == 'docs'"]
        ),
        f"{API}/stale/json": project("1.1", {"1.0": False, "1.1": False}, []),
        f"{API}/newpy/json": project("9.0", {"8.0": False, "9.0": False}, [], requires_python=">=3.99"),
    }
    pins = ["held==1.0", "framework==5.0", "stale==1.0", "newpy==8.0"]
    status, out = run(monkeypatch, tmp_path, capsys, pins, docs)
    assert status == 0, "the newest release's advisory says nothing about the pinned one"
    assert "held==1.0 not audited (the registry serves advisories for the newest release only, 3.0)" in out
    assert "held back by framework 5.0 requires held<2,>=1" in out
    assert "stale==1.0 not audited" in out and "`make lock` moves it to 1.1" in out
    assert "newpy==8.0 not audited" in out and "needs Python >=3.99" in out
    assert "4 locked packages, 1 audited, 3 not audited" in out
    strict, _ = run(monkeypatch, tmp_path, capsys, pins, docs, "--strict")
    assert strict == 1
