"""Dependency audit of the lock files (``make lint``): fails on a locked version with a known
vulnerability or one its maintainers yanked.

The data is PyPI's own advisory feed (the OSV records PyPI shows with each release), read from
the JSON API. pip-audit asks the same API per version, ``/pypi/<name>/<version>/json``; where
only the project endpoint ``/pypi/<name>/json`` is served (some mirrors and proxies, this
project's CI among them), vulnerability data comes only for the newest release, so a pin older
than that cannot be audited and is listed as such (an error with ``--strict``). Keeping the lock
on current releases (``make lock``) keeps it auditable.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

API = "https://pypi.org/pypi"
TIMEOUT_S = 30


@dataclass
class Finding:
    name: str
    version: str
    problems: list[str] = field(default_factory=list)
    unaudited: str | None = None


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


def audit(name: str, version: str) -> Finding:
    finding = Finding(name, version)
    release = fetch(f"{API}/{name}/{version}/json")
    if release is not None:
        finding.problems += vulnerabilities(release.get("vulnerabilities") or [])
        if any(f.get("yanked") for f in release.get("urls") or []):
            finding.problems.append("yanked by its maintainers")
        return finding
    project = fetch(f"{API}/{name}/json")
    if project is None:
        finding.problems.append("not found on PyPI")
        return finding
    files = project.get("releases", {}).get(version)
    if files and all(f.get("yanked") for f in files):
        finding.problems.append("yanked by its maintainers")
    latest = project["info"]["version"]
    if latest == version:
        finding.problems += vulnerabilities(project.get("vulnerabilities") or [])
    else:
        finding.unaudited = f"the registry gives advisories only for the newest release ({latest})"
    return finding


def read_lock(path: Path) -> list[tuple[str, str]]:
    pins = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins.append((name.strip(), version.strip()))
    return pins


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("locks", nargs="+", type=Path)
    parser.add_argument("--strict", action="store_true", help="a pin that cannot be audited is an error")
    args = parser.parse_args()
    pins = sorted({pin for lock in args.locks for pin in read_lock(lock)})
    try:
        with ThreadPoolExecutor(16) as pool:
            findings = list(pool.map(lambda pin: audit(*pin), pins))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"audit: cannot reach {API} ({exc}); nothing was audited", file=sys.stderr)
        return 1
    bad = [f for f in findings if f.problems]
    unaudited = [f for f in findings if f.unaudited and not f.problems]
    for f in bad:
        for problem in f.problems:
            print(f"audit: {f.name}=={f.version}: {problem}", file=sys.stderr)
    for f in unaudited:
        print(f"audit: {f.name}=={f.version} not audited: {f.unaudited}", file=sys.stderr)
    audited = len(findings) - len(unaudited)
    print(f"audit: {len(findings)} locked packages, {audited} audited, {len(bad)} with known problems")
    return 1 if bad or (args.strict and unaudited) else 0


if __name__ == "__main__":
    sys.exit(main())
