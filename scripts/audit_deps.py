"""Dependency audit of the lock files (``make lint``): fails on a locked version with a known
vulnerability or one its maintainers yanked.

The data is PyPI's own advisory feed (the OSV records PyPI shows with each release), read from
the JSON API. pip-audit asks the same API per version, ``/pypi/<name>/<version>/json``; where
only the project endpoint ``/pypi/<name>/json`` is served (some mirrors and proxies, this
project's CI among them), vulnerability data comes only for the newest release, so a pin older
than that cannot be audited. Each such pin is listed with what holds it back (a bound of another
locked package, or the newest release's Python requirement) so that the gap is known, not silent;
``--strict`` makes any of them an error. Yanked releases are seen for every pin either way.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

API = "https://pypi.org/pypi"
TIMEOUT_S = 30

Fetch = Callable[[str], dict[str, Any] | None]


@dataclass
class Finding:
    name: str
    version: str
    problems: list[str] = field(default_factory=list)
    #: The newest release when only it carries advisories and the pin is older (not audited).
    newer: str | None = None
    #: ``Requires-Python`` of that newest release.
    newer_requires_python: str | None = None
    #: The pin's own requirements, where the registry or the environment knows them.
    requires: list[str] = field(default_factory=list)


def fetch(url: str) -> dict[str, Any] | None:
    """The JSON document at ``url``; ``None`` when it is not served (404 or an empty body)."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    if not body.strip():
        return None
    document: dict[str, Any] = json.loads(body)
    return document


def vulnerabilities(entries: list[dict[str, Any]]) -> list[str]:
    out = []
    for vuln in entries:
        if vuln.get("withdrawn"):
            continue
        aliases = ", ".join(vuln.get("aliases") or [])
        fixed = ", ".join(vuln.get("fixed_in") or []) or "no fixed release"
        out.append(f"{vuln.get('id')} ({aliases or 'no alias'}); fixed in {fixed}")
    return out


def installed_requires(name: str, version: str) -> list[str]:
    """The pin's requirements from the running environment, if it has exactly that version (the
    registry serves them only for the newest release)."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return []
    return list(dist.requires or []) if dist.version == version else []


def audit(name: str, version: str, get: Fetch) -> Finding:
    finding = Finding(name, version)
    release = get(f"{API}/{name}/{version}/json")
    if release is not None:
        finding.problems += vulnerabilities(release.get("vulnerabilities") or [])
        if any(f.get("yanked") for f in release.get("urls") or []):
            finding.problems.append("yanked by its maintainers")
        finding.requires = list(release.get("info", {}).get("requires_dist") or [])
        return finding
    project = get(f"{API}/{name}/json")
    if project is None:
        finding.problems.append("not found on PyPI")
        return finding
    files = project.get("releases", {}).get(version)
    if files and all(f.get("yanked") for f in files):
        finding.problems.append("yanked by its maintainers")
    info = project["info"]
    if info["version"] == version:
        finding.problems += vulnerabilities(project.get("vulnerabilities") or [])
        finding.requires = list(info.get("requires_dist") or [])
    else:
        finding.newer = info["version"]
        finding.newer_requires_python = info.get("requires_python")
        finding.requires = installed_requires(name, version)
    return finding


def _applies(requirement: Requirement) -> bool:
    """Whether a requirement counts for the lock: its marker holds with the locks' extras (all)."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in ("", "test", "all"))


def held_back_by(finding: Finding, findings: Iterable[Finding]) -> str:
    """Why the lock does not hold the newest release of an unaudited pin."""
    assert finding.newer is not None
    python = platform.python_version()
    if finding.newer_requires_python and not SpecifierSet(finding.newer_requires_python).contains(python):
        return f"its newest release {finding.newer} needs Python {finding.newer_requires_python}"
    target = canonicalize_name(finding.name)
    holders = []
    for other in findings:
        for line in other.requires:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            if (
                canonicalize_name(requirement.name) == target
                and _applies(requirement)
                and not requirement.specifier.contains(finding.newer, prereleases=True)
            ):
                holders.append(
                    f"{other.name} {other.version} requires {requirement.name}{requirement.specifier}"
                )
    if holders:
        return "held back by " + "; ".join(sorted(holders))
    return f"nothing in the lock holds it back: `make lock` moves it to {finding.newer}"


def read_lock(path: Path) -> list[tuple[str, str]]:
    pins = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins.append((name.strip(), version.strip()))
    return pins


def report(findings: list[Finding], strict: bool) -> int:
    """Prints the findings; the exit status (1 on a known problem, or an unaudited pin if strict)."""
    bad = [f for f in findings if f.problems]
    unaudited = [f for f in findings if f.newer and not f.problems]
    for f in bad:
        for problem in f.problems:
            print(f"audit: {f.name}=={f.version}: {problem}", file=sys.stderr)
    for f in unaudited:
        print(
            f"audit: {f.name}=={f.version} not audited (the registry serves advisories for the newest "
            f"release only, {f.newer}): {held_back_by(f, findings)}",
            file=sys.stderr,
        )
    audited = len(findings) - len(unaudited)
    print(
        f"audit: {len(findings)} locked packages, {audited} audited, {len(unaudited)} not audited "
        f"(listed above), {len(bad)} with known problems"
    )
    return 1 if bad or (strict and unaudited) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("locks", nargs="+", type=Path)
    parser.add_argument("--strict", action="store_true", help="a pin that cannot be audited is an error")
    args = parser.parse_args()
    pins = sorted({pin for lock in args.locks for pin in read_lock(lock)})
    try:
        with ThreadPoolExecutor(16) as pool:
            findings = list(pool.map(lambda pin: audit(pin[0], pin[1], fetch), pins))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"audit: cannot reach {API} ({exc}); nothing was audited", file=sys.stderr)
        return 1
    return report(findings, args.strict)


if __name__ == "__main__":
    sys.exit(main())
