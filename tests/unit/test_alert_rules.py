"""The alert rules load in Prometheus, fire when they should (promtool unit tests), name only series
and labels that exist, and each has a runbook entry."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring import (
    ALERTS_DIR,
    PROMETHEUS_CONFIG,
    ROOT,
    alert_rules,
    exported_series,
    rule_files,
    unknown_references,
    write_prometheus_config,
)

RULE_TESTS = ALERTS_DIR / "streampulse.rules.test.yml"
MONITORING_DOC = ROOT / "docs" / "monitoring.md"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: `make setup` installs Debian's prometheus package"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, check=False)


def test_rule_files_exist() -> None:
    assert [p.name for p in rule_files()] == ["streampulse.rules.yml"]


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", *map(str, rule_files()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    fired = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts - fired == set(), "alerts never shown to fire"
    assert alerts - quiet == set(), "alerts never shown to stay quiet"


def test_rule_files_run_by_the_unit_tests_are_the_loaded_ones() -> None:
    tested = {(ALERTS_DIR / name).resolve() for name in yaml.safe_load(RULE_TESTS.read_text())["rule_files"]}
    assert tested == {p.resolve() for p in rule_files()}


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_names_only_exported_series_and_labels(rule: dict[str, Any]) -> None:
    assert unknown_references(rule["expr"], exported_series()) == []


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_has_severity_and_a_runbook_entry(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning"}
    doc, _, anchor = rule["annotations"]["runbook_url"].partition("#")
    assert doc == "docs/monitoring.md"
    assert anchor == rule["alert"].lower()
    headings = re.findall(r"^#+ (.+)$", MONITORING_DOC.read_text(), flags=re.M)
    assert rule["alert"] in [h.strip() for h in headings], (
        f"docs/monitoring.md has no heading {rule['alert']}"
    )


def test_compose_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", "--syntax-only", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_templated_config_scrapes_given_targets_and_loads_the_rules(tmp_path: Path) -> None:
    path = write_prometheus_config(
        tmp_path / "prometheus.yml",
        ["127.0.0.1:6066", "127.0.0.1:6067"],
        ["127.0.0.1:8000"],
        scrape_interval="2s",
    )
    config = yaml.safe_load(path.read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {
        "streampulse-worker": ["127.0.0.1:6066", "127.0.0.1:6067"],
        "streampulse-api": ["127.0.0.1:8000"],
    }
    # Without --syntax-only promtool also loads every rule file the config names.
    result = promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout
