"""The three outputs of a run: the terminal table, the JSON file and the PNG chart."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib
import orjson
from rich.console import Console
from rich.table import Table

from bench.run import Row

matplotlib.use("Agg")  # no display on a server; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402


def _num(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _correct(row: Row) -> str:
    if row.correct is None:
        return "n/a"
    return "yes" if row.correct else "NO"


def _pair(p50: float | None, p99: float | None) -> str:
    return "—" if p50 is None else f"{_num(p50)} / {_num(p99)}"


def _cells(row: Row) -> list[str]:
    return [
        row.name,
        row.workload,
        _num(row.events_per_s),
        _correct(row),
        _num(row.peak_rss_mb),
        _num(row.cpu_ms_per_1k_events, 1),
        _pair(row.open_window_latency_p50_ms, row.open_window_latency_p99_ms),
        _pair(row.final_latency_p50_ms, row.final_latency_p99_ms),
        _pair(row.push_latency_p50_ms, row.push_latency_p99_ms),
        _status(row),
    ]


def _status(row: Row) -> str:
    partial = row.details.get("partial_events_per_s")
    return row.status + (f" ({partial:,.0f} events/s until then)" if partial else "")


def table(rows: list[Row], title: str) -> Table:
    out = Table(title=title, title_justify="left")
    for name, justify in (
        ("contender", "left"),
        ("workload", "left"),
        ("events/s", "right"),
        ("correct", "center"),
        ("peak RSS MB", "right"),
        ("CPU ms/1k events", "right"),
        ("open p50/p99 ms", "right"),
        ("final p50/p99 ms", "right"),
        ("push p50/p99 ms", "right"),
        ("status", "left"),
    ):
        out.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        status = row.status + (f": {row.note}" if row.note else "")
        out.add_row(*_cells(row)[:-1], status)
    return out


def print_table(console: Console, rows: list[Row], title: str) -> None:
    console.print(table(rows, title))


def markdown_table(rows: list[Row]) -> str:
    """The same table for docs/benchmarks.md and the README."""
    lines = [
        "| contender | workload | events/s | correct | peak RSS MB | CPU ms/1k events | open p50/p99 ms "
        "| final p50/p99 ms | push p50/p99 ms | status |",
        "|---|---|---:|:---:|---:|---:|---:|---:|---:|---|",
    ]
    lines.extend("| " + " | ".join(_cells(row)) + " |" for row in rows)
    # A correct row's note qualifies its figure (e.g. more workers than cores), so it goes along.
    notes = [f"- {row.name} on {row.workload}: {row.note}" for row in rows if row.correct and row.note]
    return "\n".join(lines + ([""] + notes if notes else []))


#: Columns of the latency table: heading, then the figure's key in a case (p50 and p99 follow).
LATENCY_COLUMNS = (
    ("open window", "open_window_latency"),
    ("final", "final_latency"),
    ("push", "push_latency"),
    ("event → browser", "event_to_browser_latency"),
    ("broker hop", "broker_hop_latency"),
    ("worker: open written", "worker_open_window"),
    ("worker: final written", "worker_final"),
    ("worker: sink write (live)", "worker_sink_write_live"),
    ("API: push", "api_push"),
)


def _case_pair(case: dict[str, Any], key: str) -> str:
    figures = {**case, **case.get("histograms", {})}
    return _pair(figures.get(f"{key}_p50_ms"), figures.get(f"{key}_p99_ms"))


def latency_markdown(cases: dict[str, Any]) -> str:
    """The latency phase's cases, p50 / p99 in ms: from outside first, then the histograms."""
    head = ["case", "events/s (achieved)", "workers", *(name for name, _ in LATENCY_COLUMNS), "targets"]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---:|" + "---:|" * len(LATENCY_COLUMNS) + "---|"]
    for name, case in cases.items():
        if "status" in case:
            lines.append(f"| {name} | {case['status']} |")
            continue
        missed = [f"{t}: {said}" for t, said in case["targets"].items() if said != "met"]
        cells = [
            name,
            f"{_num(case['rate_events_per_s'])} ({_num(case['achieved_events_per_s'])})",
            str(case["workers"]),
            *(_case_pair(case, key) for _, key in LATENCY_COLUMNS),
            "; ".join(missed) or "all met",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: The worker's steps between a record's fetch and its open window in Redis, in order.
STAGE_COLUMNS = (
    ("wait in inbox (linger, queueing)", "worker_stage_wait"),
    ("fold", "worker_stage_fold"),
    ("publish acked", "worker_stage_publish"),
    ("RocksDB writes", "worker_stage_store"),
    ("changelog acked", "worker_stage_changelog"),
    ("mirror wait", "worker_stage_mirror_wait"),
    ("sink write (live)", "worker_sink_write_live"),
)


def stages_markdown(cases: dict[str, Any]) -> str:
    """Where a record's time goes inside the worker, from the worker's stage histograms."""
    head = ["case", "records per batch", *(name for name, _ in STAGE_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * len(STAGE_COLUMNS)]
    for name, case in cases.items():
        if "status" in case:
            continue
        figures = case.get("histograms", {})
        records = _pair(figures.get("worker_batch_records_p50"), figures.get("worker_batch_records_p99"))
        cells = [name, records, *(_case_pair(case, key) for _, key in STAGE_COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(path: Path, meta: dict[str, Any], rows: list[Row]) -> None:
    data = {**meta, "contenders": [row.to_json() for row in rows]}
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


def write_chart(path: Path, rows: list[Row], title: str) -> None:
    """Grouped bars of events/s per contender and workload (log scale); a contender without a
    figure (wrong, timed out, failed) gets no bar, only the reason at the foot of its slot."""
    workloads = list(dict.fromkeys(row.workload for row in rows))
    names = list(dict.fromkeys(row.name for row in rows))
    speeds = [row.events_per_s for row in rows if row.events_per_s]
    floor = min(speeds, default=10.0) / 3
    fig, ax = plt.subplots(figsize=(11, 5.5))
    width = 0.8 / max(1, len(workloads))
    for i, workload in enumerate(workloads):
        by_name = {row.name: row for row in rows if row.workload == workload}
        xs = [j + (i - (len(workloads) - 1) / 2) * width for j in range(len(names))]
        heights = [by_name[n].events_per_s or 0 if n in by_name else 0 for n in names]
        ax.bar(xs, heights, width, label=workload, bottom=0)
        for x, n, height in zip(xs, names, heights, strict=True):
            row = by_name.get(n)
            if row is None:
                continue
            if row.events_per_s is None:
                label, y = row.status.split(":")[0].replace(" after ", "\nafter "), floor * 1.1
            else:
                label, y = f"{row.events_per_s:,.0f}", height
                if row.status.startswith("ceiling"):
                    label += "\n(ceiling)"
            ax.annotate(label, (x, y), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=15)
    ax.set_ylabel("events/s, first record consumed → last result written")
    ax.set_yscale("log")
    ax.set_ylim(floor, max(speeds, default=100.0) * 3)
    ax.set_title(textwrap.fill(title, 120), fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
