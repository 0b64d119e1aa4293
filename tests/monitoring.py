"""The monitoring configuration as tests see it: Prometheus config, alert rules, dashboard queries.

Shared by the unit tests of the rules and dashboards and by end-to-end tests that run a real
Prometheus: :func:`write_prometheus_config` points compose/prometheus.yml's jobs at processes on
this machine, and :func:`expand_grafana_macros` turns a panel query into plain PromQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from faust.sensors.prometheus import FaustMetrics
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics import MetricWrapperBase

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_CONFIG = ROOT / "compose" / "prometheus.yml"
ALERTS_DIR = ROOT / "compose" / "alerts"
DASHBOARDS_DIR = ROOT / "grafana" / "dashboards"
WORKER_JOB = "streampulse-worker"
API_JOB = "streampulse-api"
#: app/main.py passes this to setup_prometheus_sensors.
FAUST_PREFIX = "streampulse_faust"
#: Labels Prometheus attaches to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})


def rule_files() -> list[Path]:
    """The rule files Prometheus loads (compose/prometheus.yml globs ``*.rules.yml``)."""
    return sorted(ALERTS_DIR.glob("*.rules.yml"))


def render_prometheus_config(
    worker_targets: Sequence[str],
    api_targets: Sequence[str],
    *,
    scrape_interval: str = "15s",
    alertmanager_targets: Sequence[str] = (),
) -> dict[str, Any]:
    """compose/prometheus.yml with its StreamPulse jobs scraping the given ``host:port`` targets.

    Job names, scrape settings and rules stay those of the Compose file, so alerts and dashboards
    see the same labels; only discovery, the rule paths and the Alertmanager address change.
    """
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"]["scrape_interval"] = scrape_interval
    config["global"]["evaluation_interval"] = scrape_interval
    config["rule_files"] = [str(path) for path in rule_files()]
    if alertmanager_targets:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": list(alertmanager_targets)}]}]
        }
    else:
        config.pop("alerting", None)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    scrape_configs = []
    for name, targets in ((WORKER_JOB, worker_targets), (API_JOB, api_targets)):
        job = {k: v for k, v in jobs[name].items() if not k.endswith("_sd_configs") and k != "static_configs"}
        job["static_configs"] = [{"targets": list(targets)}]
        scrape_configs.append(job)
    config["scrape_configs"] = scrape_configs
    return config


def write_prometheus_config(
    path: Path, worker_targets: Sequence[str], api_targets: Sequence[str], **kw: Any
) -> Path:
    """Write :func:`render_prometheus_config` to ``path`` (for ``prometheus --config.file``)."""
    path.write_text(
        yaml.safe_dump(render_prometheus_config(worker_targets, api_targets, **kw), sort_keys=False)
    )
    return path


def expand_grafana_macros(expr: str, *, rate_interval: str = "1m", range_: str = "1h") -> str:
    """A panel query as Prometheus evaluates it once Grafana has substituted its macros."""
    return expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def panel_queries() -> list[PanelQuery]:
    """Every query of every panel of the committed dashboards."""
    out = []
    for path in dashboard_files():
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out.append(PanelQuery(board["title"], panel["title"], target["refId"], target["expr"]))
    return out


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of every loaded rule file."""
    return [
        rule
        for path in rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\((?P<labels>[^)]*)\)")
_SELECTOR = re.compile(r"(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)?\s*\{(?P<matchers>[^}]*)\}")
_IDENT = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*(?![\w(])(?!\s*\()")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"Inf", "NaN", "inf", "nan"}
)


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) of each series selector in a PromQL expression."""
    # Label matchers first (their values may contain anything), with strings blanked inside.
    found: list[tuple[str, set[str]]] = []
    blanked = _STRING.sub('""', expr)
    without_ranges = _RANGE.sub("", blanked)
    for m in _SELECTOR.finditer(without_ranges):
        found.append((m.group("name") or "", set(_MATCHER_LABEL.findall(m.group("matchers")))))
    bare = _SELECTOR.sub(lambda m: f" {m.group('name') or ''} ", without_ranges)
    bare = _GROUPING.sub(" ", bare)
    named = {name for name, _ in found}
    for ident in _IDENT.findall(bare):
        if ident not in _KEYWORDS and ident not in named:
            found.append((ident, set()))
            named.add(ident)
    return found


def _sample_names(metric: MetricWrapperBase) -> dict[str, frozenset[str]]:
    labels = frozenset(metric._labelnames)
    name = metric._name
    match metric._type:
        case "counter":
            return {f"{name}_total": labels}
        case "histogram":
            return {
                f"{name}_bucket": labels | {"le"},
                f"{name}_count": labels,
                f"{name}_sum": labels,
            }
        case _:
            return {name: labels}


def _module_metrics(module_vars: Iterable[object]) -> list[MetricWrapperBase]:
    return [m for m in module_vars if isinstance(m, MetricWrapperBase)]


def exported_series() -> dict[str, frozenset[str]]:
    """Sample name -> label names, for every series the worker and the API export.

    Read from the metric objects themselves (app.metrics, api.metrics, Faust's sensor with the
    prefix app/main.py gives it, the process collector) plus Prometheus's own ``up``, so a rule or
    panel naming a series or label that does not exist is caught without a running Prometheus.
    """
    import api.metrics
    import app.metrics

    metrics = _module_metrics(vars(app.metrics).values()) + _module_metrics(vars(api.metrics).values())
    metrics += list(FaustMetrics.create(CollectorRegistry(), FAUST_PREFIX))
    series: dict[str, frozenset[str]] = {"up": frozenset()}
    for metric in metrics:
        series.update(_sample_names(metric))
    for family in ProcessCollector(registry=None).collect():
        for sample in family.samples:
            series[sample.name] = frozenset()
    return {name: labels | TARGET_LABELS for name, labels in series.items()}


def grouping_labels(expr: str) -> set[str]:
    """Labels named in ``by``, ``without``, ``on``, ``ignoring`` and ``group_left/right`` clauses."""
    blanked = _STRING.sub('""', expr)
    return {
        label.strip()
        for m in _GROUPING.finditer(blanked)
        for label in m.group("labels").split(",")
        if label.strip()
    }


def unknown_references(expr: str, exported: dict[str, frozenset[str]]) -> list[str]:
    """Series or labels in ``expr`` that nothing exports: empty when the query can return data.

    A grouping label must belong to one of the series the expression selects, which catches a
    misspelt ``by (...)`` that would silently merge every series into one.
    """
    problems = []
    found = selectors(expr)
    for name, labels in found:
        if name not in exported:
            problems.append(f"series {name!r} is not exported")
            continue
        problems += [f"{name} has no label {label!r}" for label in sorted(labels - exported[name])]
    available = set().union(*(exported.get(name, frozenset()) for name, _ in found))
    problems += [
        f"no selected series has the label {label!r}" for label in sorted(grouping_labels(expr) - available)
    ]
    return problems
