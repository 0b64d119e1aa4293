"""The committed dashboards and their panel reference in docs/monitoring.md are what the generator
makes, and every panel has a PromQL query that parses and names only exported series and labels."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from grafana.dashboards_src.generate import outputs
from tests.monitoring import (
    ROOT,
    PanelQuery,
    dashboard_files,
    expand_grafana_macros,
    exported_series,
    panel_queries,
    unknown_references,
)

DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources"


def _panels() -> list[tuple[str, dict[str, object]]]:
    return [
        (json.loads(path.read_text())["title"], panel)
        for path in dashboard_files()
        for panel in json.loads(path.read_text())["panels"]
        if panel["type"] != "row"
    ]


def test_committed_json_and_panel_reference_are_what_the_generator_makes() -> None:
    expected = outputs()
    assert sorted(dashboard_files()) == sorted(p for p in expected if p.suffix == ".json"), (
        "run `make dashboards`"
    )
    for path, text in expected.items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} is stale: run `make dashboards`"


def test_both_dashboards_exist_with_unique_uids() -> None:
    boards = [json.loads(p.read_text()) for p in dashboard_files()]
    assert {b["title"] for b in boards} == {"StreamPulse / Pipeline health", "StreamPulse / Trip metrics"}
    assert len({b["uid"] for b in boards}) == len(boards)


@pytest.mark.parametrize("panel", _panels(), ids=lambda p: f"{p[0]}: {p[1]['title']}")
def test_every_panel_queries_the_provisioned_prometheus(panel: tuple[str, dict]) -> None:
    _, spec = panel
    uids = {
        ds["uid"]
        for path in DATASOURCES.glob("*.yml")
        for ds in yaml.safe_load(path.read_text())["datasources"]
        if ds["type"] == "prometheus"
    }
    targets = spec["targets"]
    assert targets, "panel has no query"
    assert all(t["expr"].strip() for t in targets), "panel has an empty query"
    assert spec["datasource"]["uid"] in uids
    assert all(t["datasource"]["uid"] in uids for t in targets)


@pytest.mark.parametrize("query", panel_queries(), ids=lambda q: f"{q.dashboard}: {q.panel} {q.ref_id}")
def test_panel_query_names_only_exported_series_and_labels(query: PanelQuery) -> None:
    assert unknown_references(expand_grafana_macros(query.expr), exported_series()) == []


def test_every_panel_query_parses(tmp_path: Path) -> None:
    """promtool parses each query as the expression of a recording rule (no server needed)."""
    rules = [
        {"record": f"panel:query_{i}", "expr": expand_grafana_macros(q.expr)}
        for i, q in enumerate(panel_queries())
    ]
    path = tmp_path / "panels.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: `make setup` installs Debian's prometheus package"
    result = subprocess.run([exe, "check", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
