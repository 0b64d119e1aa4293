"""Panel builders and grid layout shared by the StreamPulse dashboards.

Every panel queries the provisioned Prometheus datasource by uid (grafana/provisioning/datasources),
so a dashboard never depends on which datasource Grafana happens to make its default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import attr
from grafanalib.core import (
    GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
    Dashboard,
    GridPos,
    Panel,
    RowPanel,
    Stat,
    Table,
    Target,
    Templating,
    Time,
    TimeSeries,
)

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
GRID_WIDTH = 24
#: Grafana >= 10 reads this schema without migrating the panels, which are already in its shape.
SCHEMA_VERSION = 39
#: Grafana replaces this with a window of at least four scrape intervals, so a rate() always has
#: enough samples whatever the zoom.
RATE = "$__rate_interval"
#: The dashboard's whole time range, for "over the range" totals in instant queries.
RANGE = "$__range"
#: Error panels show 0 rather than "No data" while no error series exists yet, so an empty panel
#: always means a broken query or a missing scrape, never "no errors".
OR_ZERO = " or on () vector(0)"


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel and the legend of its series."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


def _targets(queries: Sequence[Query]) -> list[Target]:
    return [
        Target(
            expr=q.expr,
            legendFormat=q.legend,
            refId=chr(ord("A") + i),
            instant=q.instant,
            format="table" if q.table else "time_series",
            datasource=DATASOURCE,
        )
        for i, q in enumerate(queries)
    ]


def _base(
    title: str, description: str, queries: Sequence[Query], *, height: int, width: int
) -> dict[str, Any]:
    """What every panel has: title, description, the datasource and its queries, and a size
    (the position is set by :func:`layout`)."""
    return {
        "title": title,
        "description": description,
        "dataSource": DATASOURCE,
        "targets": _targets(queries),
        "gridPos": GridPos(h=height, w=width, x=0, y=0),
    }


def timeseries(
    title: str,
    description: str,
    queries: Sequence[Query],
    *,
    unit: str = "short",
    width: int = 12,
    stacked: bool = False,
) -> TimeSeries:
    return TimeSeries(
        **_base(title, description, queries, height=8, width=width),
        unit=unit,
        fillOpacity=20 if stacked else 0,
        stacking={"mode": "normal", "group": "A"} if stacked else {"mode": "none"},
        legendDisplayMode="table",
        legendCalcs=["lastNotNull", "max"],
        tooltipMode="multi",
        tooltipSort="desc",
    )


def stat(title: str, description: str, query: Query, *, unit: str = "short", width: int = 6) -> Stat:
    return Stat(
        **_base(title, description, [query], height=4, width=width),
        format=unit,
        reduceCalc="lastNotNull",
        graphMode="area",
        noValue="no data",
        thresholds=[{"color": "green", "value": None}],
    )


def table(title: str, description: str, query: Query, *, unit: str = "short", width: int = 12) -> Table:
    """An instant query shown as rows, one per series, without the time column."""
    instant = Query(query.expr, query.legend, instant=True, table=True)
    return Table(
        **_base(title, description, [instant], height=9, width=width),
        unit=unit,
        transformations=[
            {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": {}}},
            {"id": "sortBy", "options": {"sort": [{"field": "Value", "desc": True}]}},
        ],
    )


@dataclass(frozen=True)
class Section:
    """A titled row of panels, laid out left to right and wrapped at the grid width."""

    title: str
    panels: Sequence[Panel]


def layout(sections: Sequence[Section]) -> list[Panel]:
    """Place every panel on Grafana's 24-column grid: a row header, then its panels in order."""
    placed: list[Panel] = []
    y = 0
    for section in sections:
        placed.append(RowPanel(title=section.title, gridPos=GridPos(h=1, w=GRID_WIDTH, x=0, y=y)))
        y += 1
        x = row_height = 0
        for panel in section.panels:
            w, h = panel.gridPos.w, panel.gridPos.h
            if x + w > GRID_WIDTH:
                x, y, row_height = 0, y + row_height, 0
            placed.append(attr.evolve(panel, gridPos=GridPos(h=h, w=w, x=x, y=y)))
            x += w
            row_height = max(row_height, h)
        y += row_height
    return placed


def dashboard(uid: str, title: str, description: str, sections: Sequence[Section]) -> Dashboard:
    return Dashboard(
        uid=uid,
        title=title,
        description=description,
        tags=["streampulse"],
        timezone="utc",
        refresh="30s",
        time=Time("now-1h", "now"),
        graphTooltip=GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        schemaVersion=SCHEMA_VERSION,
        templating=Templating(),
        panels=layout(sections),
    ).auto_panel_ids()
