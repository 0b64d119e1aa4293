"""``streampulse-replay`` (or ``python -m producers.replay``): the command line of the replayer.

Exit codes: 0 done (rejects are reported, not fatal), 1 ``--strict`` met an invalid row,
2 usage error, 3 Kafka unreachable, 130 interrupted (Ctrl-C, after flushing what was sent).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import click

from app.logs import configure_logging
from app.settings import Settings, SettingsError, get_settings
from app.version import package_version
from producers.exceptions import ReplayError, UsageProblem
from producers.localtime import zone
from producers.memory import keep_freed_memory, relax_gc
from producers.parsers import Format, Schema
from producers.progress import Progress
from producers.runner import Replay, ReplayOptions, Summary
from producers.stage import Stage
from producers.synthetic import DEFAULT_START, SyntheticSpec, parse_start

EXIT_INTERRUPTED = 130


def _default_workers() -> int:
    """One validation process beside the main one when there is a second core, else inline."""
    return 1 if (os.cpu_count() or 1) > 1 else 0


def _check_zone(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            zone(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def _check_start(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        return parse_start(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 time or epoch seconds: {value!r}") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_version(), "--version", message="%(prog)s %(version)s")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "--format", "fmt", type=click.Choice([f.value for f in Format]), help="Input format (default: detected)."
)
@click.option(
    "--schema", type=click.Choice([s.value for s in Schema]), help="Input schema (default: detected)."
)
@click.option(
    "--source-tz",
    callback=_check_zone,
    help="Zone of naive input times [default: America/New_York for tlc, UTC otherwise].",
)
@click.option("--topic", help="Topic to write [default: the events topic of the settings].")
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("rejects.jsonl"),
    show_default=True,
    help="File for invalid rows, one JSON line each (rewritten every run).",
)
@click.option("--strict", is_flag=True, help="Stop at the first invalid row (exit 1).")
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Events per second (0: as fast as possible).",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    help="Replay at X times the pace of the event times.",
)
@click.option("--limit", type=click.IntRange(min=0), help="Send at most N events.")
@click.option(
    "--loop",
    "loops",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Replay the input N times, each later by the span of the data, trip ids suffixed ~k.",
)
@click.option(
    "--synthetic",
    type=click.IntRange(min=1),
    metavar="N",
    help="Generate N synthetic trips instead of reading files.",
)
@click.option(
    "--regions", type=click.IntRange(min=1), default=50, show_default=True, help="Regions of --synthetic."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --synthetic.")
@click.option(
    "--start",
    callback=_check_start,
    default=DEFAULT_START,
    show_default=True,
    help="First event time of --synthetic (ISO-8601 or epoch seconds).",
)
@click.option(
    "--end-marker/--no-end-marker",
    default=True,
    show_default=True,
    help="After the last event, an end-of-stream control record per partition.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line.")
@click.option("--verbose", "-v", is_flag=True, help="Also show the Kafka client's log (at LOG_LEVEL).")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=_default_workers,
    show_default="1 with 2+ CPUs",
    help="Processes validating input beside the main one (0: in the main process).",
)
def replay(
    files: tuple[str, ...],
    fmt: str | None,
    schema: str | None,
    source_tz: str | None,
    topic: str | None,
    rejects: Path,
    strict: bool,
    rate: float,
    speed: float | None,
    limit: int | None,
    loops: int,
    synthetic: int | None,
    regions: int,
    seed: int,
    start: int,
    end_marker: bool,
    as_json: bool,
    verbose: bool,
    workers: int,
) -> None:
    """Replay trip files (CSV, JSON array or JSON Lines, gzip'd or not; - for stdin) or a synthetic
    stream into the events topic, validated by the shared event model, in input order."""
    if bool(files) == (synthetic is not None):
        raise click.UsageError("give FILE... or --synthetic N (not both)")
    try:
        settings = get_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    _configure_logging(settings, verbose)
    options = ReplayOptions(
        files=files,
        synthetic=SyntheticSpec(synthetic, regions, seed, start) if synthetic is not None else None,
        format=Format(fmt) if fmt else None,
        schema=Schema(schema) if schema else None,
        source_tz=source_tz,
        topic=topic or settings.events,
        rejects=rejects,
        rate=rate,
        speed=speed,
        limit=limit,
        loops=loops,
        strict=strict,
        end_marker=end_marker,
        workers=workers,
    )
    total = synthetic * loops if synthetic is not None else None
    if limit is not None:
        total = limit if total is None else min(total, limit)
    sys.exit(_run(options, settings, total, as_json))


def _configure_logging(settings: Settings, verbose: bool) -> None:
    """The replayer reports Kafka failures itself, in one line; the client's own log (each failed
    connection attempt, with its traceback) is for ``--verbose``."""
    configure_logging(settings, None if verbose else {"aiokafka": logging.CRITICAL})


def _run(options: ReplayOptions, settings: Settings, total: int | None, as_json: bool) -> int:
    keep_freed_memory()
    relax_gc()
    stage: Stage[object] = Stage(options.workers)
    progress = Progress(total)
    runner = Replay(options, settings, progress)
    code = 0
    try:
        summary = asyncio.run(runner.run(stage))
    except UsageProblem as exc:
        raise click.UsageError(str(exc)) from None
    except ReplayError as exc:
        click.echo(f"error: {exc}", err=True)
        summary, code = runner.summary, exc.exit_code
        if not summary.sent and not summary.rejected:
            return code
    except (KeyboardInterrupt, asyncio.CancelledError):
        summary, code = runner.summary, EXIT_INTERRUPTED
        summary.interrupted = True
    finally:
        progress.close()
        stage.close()
    if summary.interrupted:
        code = code or EXIT_INTERRUPTED
    _report(summary, options, as_json)
    return code


def _report(summary: Summary, options: ReplayOptions, as_json: bool) -> None:
    if as_json:
        click.echo(summary.to_json().decode())
    else:
        click.echo(summary.text(options.topic, options.rejects))


def main() -> None:
    """The console script and ``python -m producers[.replay]``; click names the program after how
    it was started."""
    replay()
