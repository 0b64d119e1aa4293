"""One replay: sources (or the generator) -> validated chunks -> paced appends -> Kafka.

The main process reads input and owns the Kafka producer; validation and serialisation run in
:mod:`producers.stage` (worker processes unless ``--workers 0``). Rejected rows go to the rejects
file as they are met; the summary counts what the broker acknowledged.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import stat
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import IO, Any

import orjson
from aiokafka.errors import KafkaError

from app.settings import Settings
from producers.batches import Batch, Prepared, Rejected, check_canonical, prepare_records, rejection_json
from producers.exceptions import KafkaUnreachable, StrictReject, UsageProblem
from producers.kafka_out import DELIVERY_TIMEOUT_S, EventSink
from producers.localtime import zone
from producers.pacing import Pacer
from producers.parsers import Format, Record, Schema, raw_text
from producers.progress import Progress
from producers.sources import STDIN, Source, open_source
from producers.stage import Job, Stage
from producers.synthetic import SyntheticSpec, generate

TLC_TIME_ZONE = "America/New_York"
FILE_CHUNK = 2048
SYNTHETIC_CHUNK = 4096
#: Under pacing, a send is held back only when it is at least this early: shorter sleeps cost
#: more in wake-ups than they gain in precision.
_MIN_SLEEP_S = 0.002
_FLUSH_TIMEOUT_S = DELIVERY_TIMEOUT_S + 30.0
SYNTHETIC_SOURCE = "synthetic"


@dataclass(frozen=True)
class ReplayOptions:
    files: tuple[str, ...] = ()
    synthetic: SyntheticSpec | None = None
    format: Format | None = None
    schema: Schema | None = None
    source_tz: str | None = None
    topic: str = "events"
    rejects: Path = Path("rejects.jsonl")
    rate: float = 0.0
    speed: float | None = None
    limit: int | None = None
    loops: int = 1
    strict: bool = False
    end_marker: bool = True
    workers: int = 1


@dataclass
class Summary:
    sent: int = 0
    rejected: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def events_per_s(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "sent": self.sent,
                "rejected": self.rejected,
                "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
                "seconds": round(self.seconds, 3),
                "events_per_s": round(self.events_per_s, 1),
            }
        )

    def text(self, topic: str, rejects: Path) -> str:
        head = "interrupted: sent" if self.interrupted else "sent"
        rate = f"{self.events_per_s:,.0f} events/s"
        line = f"{head} {self.sent:,} events to {topic} in {self.seconds:.2f}s ({rate})"
        if self.rejected:
            reasons = ", ".join(f"{r} {n:,}" for r, n in self.rejected_by_reason.most_common())
            line += f"; rejected {self.rejected:,} ({reasons}) -> {rejects}"
        else:
            line += "; no rejects"
        return line


class RejectsFile:
    """The rejects file, rewritten by every run so that it never mixes runs.

    It holds raw input rows, which may be private (trip data), so it is readable by its owner
    only (0600, also when it existed with a wider mode), and a symbolic link in its place is
    refused rather than followed: in a shared directory such a link could make the replay
    overwrite any file the user can write.
    """

    def __init__(self, path: Path) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UsageProblem(f"the rejects file {path} is a symbolic link; not following it") from None
            raise UsageProblem(f"cannot write the rejects file {path}: {exc.strerror or exc}") from None
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, 0o600)
        self._fh: IO[bytes] = os.fdopen(fd, "wb")

    def write(self, item: Rejected) -> None:
        raw, truncated = raw_text(item.raw)
        self._fh.write(rejection_json(item, raw, truncated))

    def close(self) -> None:
        self._fh.close()


def source_zone(options: ReplayOptions, schema: Schema) -> tzinfo | None:
    """``--source-tz``, by default New York time for TLC and UTC for everything else."""
    name = options.source_tz or (TLC_TIME_ZONE if schema is Schema.TLC else "UTC")
    try:
        return zone(name)
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None


class Replay:
    def __init__(self, options: ReplayOptions, settings: Settings, progress: Progress) -> None:
        self.options = options
        self.summary = Summary()
        self.sink = EventSink(settings, options.topic)
        self.pacer = Pacer(options.rate, options.speed)
        self.progress = progress
        self._stop = asyncio.Event()
        self._min_ms: int | None = None
        self._max_ms: int | None = None
        self._sources: list[Source] = []
        self._task: asyncio.Task[Any] | None = None

    def stop(self) -> None:
        """Ctrl-C: stop reading, flush what was appended, report; a second Ctrl-C stops waiting."""
        if self._stop.is_set() and self._task is not None:
            self._task.cancel()
        self._stop.set()

    async def run(self, stage: Stage[Any]) -> Summary:
        options = self.options
        if options.loops > 1 and STDIN in options.files:
            raise UsageProblem("--loop replays its input again, so it needs files, not stdin")
        async with AsyncExitStack() as cleanup:
            cleanup.callback(self.progress.close)
            for name in options.files:
                source = open_source(name, options.format, options.schema)
                cleanup.callback(source.close)
                self._sources.append(source)
            zones = [source_zone(options, source.schema) for source in self._sources]
            rejects = RejectsFile(options.rejects)
            cleanup.callback(rejects.close)
            self._task = asyncio.current_task()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop)
                cleanup.callback(loop.remove_signal_handler, sig)
            cleanup.push_async_callback(self.sink.close)
            await self.sink.start()
            started = time.monotonic()
            self.pacer.start(started)
            try:
                await self._replay(stage, zones, rejects)
                if options.end_marker and not self._stop.is_set() and self._max_ms is not None:
                    self.sink.end_of_stream(self._max_ms)
                await self.sink.flush(_FLUSH_TIMEOUT_S)
            except KafkaError as exc:
                raise KafkaUnreachable(f"Kafka at {self.sink.bootstrap} failed: {exc}") from None
            finally:
                self.summary.seconds = time.monotonic() - started
                self.summary.interrupted = self._stop.is_set()
        return self.summary

    async def _replay(self, stage: Stage[Any], zones: list[tzinfo | None], rejects: RejectsFile) -> None:
        span_ms = 0
        for loop in range(self.options.loops):
            if loop and not span_ms:
                return
            async with aclosing(stage.run(self._jobs(zones, loop, loop * span_ms))) as results:
                async for result, context in results:
                    if not await self._send(self._batch(result, context), rejects):
                        return
            if self._min_ms is not None and self._max_ms is not None:
                span_ms = span_ms or self._max_ms - self._min_ms + 1

    def _jobs(self, zones: list[tzinfo | None], loop: int, shift_ms: int) -> Iterator[Job[Any]]:
        """Chunks of work for the stage, in input order; the context rebuilds rejects' details."""
        spec = self.options.synthetic
        if spec is not None:
            for region_ids, times, values in generate(
                spec, loop=loop, shift_ms=shift_ms, size=SYNTHETIC_CHUNK
            ):
                yield check_canonical, (values,), (region_ids, times, values)
            return
        for source, tz in zip(self._sources, zones, strict=True):
            chunk: list[Record] = []
            for record in source.records():
                chunk.append(record)
                if len(chunk) >= FILE_CHUNK:
                    yield self._file_job(source, tz, chunk, loop, shift_ms)
                    chunk = []
            if chunk:
                yield self._file_job(source, tz, chunk, loop, shift_ms)

    @staticmethod
    def _file_job(
        source: Source, tz: tzinfo | None, chunk: list[Record], loop: int, shift_ms: int
    ) -> Job[Any]:
        args = ([r.payload for r in chunk], source.schema, tz, loop, shift_ms)
        return prepare_records, args, (source.label, chunk)

    def _batch(self, result: Any, context: Any) -> Batch:
        if isinstance(result, Prepared):
            label, records = context
            rejected = [
                (position, Rejected(label, records[i].line, records[i].row, records[i].raw, rejection))
                for i, position, rejection, repeat in result.problems
                if not repeat
            ]
            return Batch(result.region_ids, result.times_ms, result.values, rejected)
        region_ids, times, values = context
        if not result:
            return Batch(region_ids, times, values)
        batch = Batch()
        bad = dict(result)
        for i, value in enumerate(values):
            if i in bad:
                batch.rejected.append(
                    (len(batch.values), Rejected(SYNTHETIC_SOURCE, None, None, value, bad[i]))
                )
            else:
                batch.region_ids.append(region_ids[i])
                batch.times_ms.append(times[i])
                batch.values.append(value)
        return batch

    async def _send(self, batch: Batch, rejects: RejectsFile) -> bool:
        """Send one batch, paced; False when the replay must end (limit, Ctrl-C)."""
        summary, options = self.summary, self.options
        count = len(batch.values)
        take = count if options.limit is None else min(count, options.limit - summary.sent)
        for position, item in batch.rejected:
            if position > take or (position == take and take < count):
                break
            rejects.write(item)
            summary.rejected += 1
            summary.rejected_by_reason[item.rejection.reason] += 1
            if options.strict:
                await self._append(batch, position)
                await self.sink.flush(_FLUSH_TIMEOUT_S)
                where = f"{item.source}:{item.line or item.row or '?'}"
                raise StrictReject(f"{where}: {item.rejection.reason}: {item.rejection.message} (--strict)")
        sent = await self._append(batch, take)
        self.progress.update(summary.sent, summary.rejected)
        return (
            sent == take
            and not self._stop.is_set()
            and (options.limit is None or summary.sent < options.limit)
        )

    async def _append(self, batch: Batch, take: int) -> int:
        """Append the batch's first ``take`` events; fewer when Ctrl-C interrupts a paced wait."""
        if take <= 0:
            return 0
        region_ids, times, values = batch.region_ids, batch.times_ms, batch.values
        add = self.sink.add
        done = take
        if not self.pacer.active:
            for i in range(take):
                add(region_ids[i], times[i], values[i])
        else:
            base = self.summary.sent
            for i in range(take):
                wait = self.pacer.due(base + i, times[i]) - time.monotonic()
                if wait >= _MIN_SLEEP_S:
                    await self.sink.linger()
                    if await self._stopped_within(wait):
                        done = i
                        break
                add(region_ids[i], times[i], values[i])
        if done:
            self.summary.sent += done
            first, last = min(times[:done]), max(times[:done])
            self._min_ms = first if self._min_ms is None else min(self._min_ms, first)
            self._max_ms = last if self._max_ms is None else max(self._max_ms, last)
        await self.sink.submit()
        return done

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return False
        return True
