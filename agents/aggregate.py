"""The windowed aggregation agent: I/O around the pure batch fold (:mod:`tables.fold`).

Each fetched batch is grouped by source partition, decoded (:mod:`app.inputs`) and folded into
the partition's state in memory; the windows the frontier closed are published to the results
topic, late events and dead letters to theirs. Once the broker has acknowledged everything the
batch sent, per partition, every touched open window is written to the changelogged table once,
then the partition's progress record, then the final windows are deleted from the table (a real
tombstone); the batch is acked only when the changelog has acknowledged those writes. That order
is what makes a crash at any point recoverable without loss or double counting
(docs/processing.md).

Records arrive a fetched batch at a time through the events topic's inbox (app/batches.py), not
one by one through a Faust Stream, so table writes are put in their partition's context
explicitly (:func:`app.internals.set_write_partition`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, cast

from aiokafka.errors import KafkaError
from faust.types import TP, Message

from app import faults, internals, metrics
from app.control import IDLE, encode_control
from app.events import TripEvent
from app.inputs import decode
from app.live import live_changed, live_dirty
from app.main import app, settings
from app.publish import publish
from app.records import dlq_record, late_record
from app.state import state_table
from app.topics import CLOSED_AT_HEADER, dlq_topic, events_topic, late_topic
from tables.fold import Folded, Rejected, Tally, fold, plan_store
from tables.partition_state import PartitionState, Slot, progress_table_key, state_from_items
from tables.results import final_records
from tables.windows import size_names

log = logging.getLogger(__name__)

BATCH_MAX = 10_000
#: How long a batch waits for more records once one is there: what a quiet stream adds to
#: latency, and what saves rewriting the same windows' state for every single record.
BATCH_LINGER_S = 0.02
BATCH_RETRY_S = 1.0
BATCH_RETRY_MAX_S = 10.0
#: A batch not through after this long is given up and processed again from the stored state:
#: an acknowledgement that never comes must not hold the worker's partitions forever. Longer
#: than a broker restart, so an ordinary outage is waited out rather than retried.
BATCH_STUCK_S = 60.0
#: Attempts of a batch that fails on its own data (not on the broker or the disk) before its
#: records are processed one at a time and the one that fails alone is dead-lettered.
BATCH_ATTEMPTS = 3
PRODUCER_BUFFER_MAX = 4 * BATCH_MAX
#: Failures of the infrastructure rather than of a record: retried for as long as they last.
_INFRA_ERRORS = (KafkaError, OSError)

#: Fetched records of the events topic wait here for the agent (bounded: fetching pauses).
inbox = internals.batch_inbox(app, settings.events, max_buffered=4 * BATCH_MAX)

SIZE_NAMES = size_names(settings.window_sizes)

#: Per-partition state cached in memory; rebuilt from the table after (re)assignment.
_states: dict[int, PartitionState] = {}
#: Wall-clock time a record was last seen per partition, and whether an idle marker is pending.
_last_seen: dict[int, float] = {}
_idle_sent: set[int] = set()
#: Partitions whose last changelog writes were not acknowledged, with the slots whose tombstones
#: went unacknowledged: the next store re-sends their whole state (RocksDB already has it).
_changelog_behind: dict[int, set[Slot]] = {}


def _load_partition(partition: int) -> PartitionState:
    """Rebuild a partition's state from its (recovered) RocksDB."""
    items = internals.partition_items(state_table, partition)
    state, unreadable = state_from_items(partition, items, settings.window_sizes, settings.lateness_ms)
    for key in unreadable:
        log.error("partition %d: unreadable state under %r, skipped", partition, key)
        metrics.EVENTS_INVALID.labels("unreadable_state").inc()
    log.info(
        "partition %d: %d open windows recovered, progress offset %d, %d stale slots to delete",
        partition,
        len(state.windows),
        state.progress.offset,
        len(state.stale),
    )
    return state


class _Revoked(Exception):
    """A rebalance began mid-batch: stop before writing state that may no longer be ours."""


#: Set while no batch is being processed; a rebalance waits for it before partitions move on,
#: so the changelog never gets writes from an old owner after the new one has recovered.
_batch_idle = asyncio.Event()
_batch_idle.set()


def _check_flow() -> None:
    if not app.flow_control.is_active():
        raise _Revoked


def _partition_state(partition: int) -> PartitionState:
    state = _states.get(partition)
    if state is None:
        state = _states[partition] = _load_partition(partition)
    return state


def _partitions_arg(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> set[Any]:
    """Faust sends the partition set positionally; accept the keyword form too."""
    return set(args[0]) if args else set(kwargs.get(name, ()))


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def _on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
    # Faust suspended the flow before this signal: a running batch stops at its next check.
    await _batch_idle.wait()
    for tp in _partitions_arg(args, kwargs, "revoked"):
        try:
            metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))
        except KeyError:
            pass
        if tp.topic == settings.events:
            _states.pop(tp.partition, None)


@app.on_partitions_assigned.connect  # type: ignore[arg-type]
async def _on_assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
    # The table may be recovered from the changelog after this; rebuild lazily on first use.
    for tp in _partitions_arg(args, kwargs, "assigned"):
        if tp.topic == settings.events:
            _states.pop(tp.partition, None)


def _record_tally(tally: Tally) -> None:
    for region, (count, revenue) in tally.trips.items():
        metrics.TRIPS.labels(str(region)).inc(count)
        metrics.REVENUE.labels(str(region)).inc(revenue)
    internals.observe_many(metrics.TRIP_FARE, tally.fares)
    internals.observe_many(metrics.TRIP_DURATION, tally.durations)


@dataclass(slots=True)
class _Part:
    """A partition's part of a batch, folded in memory: what to store once the broker has
    acknowledged everything the batch sent."""

    state: PartitionState
    last: Message
    folded: Folded
    final_slots: set[Slot]


async def _fold_partition(partition: int, messages: list[Message], sends: list[Any]) -> _Part:
    """Fold a partition's records and send what that produced (results, late events and dead
    letters go into ``sends``)."""
    state = _partition_state(partition)
    _last_seen[partition] = time.time()
    _idle_sent.discard(partition)
    _check_flow()
    folded = fold(state, [decode(m.offset, m.timestamp, m.value, m.headers) for m in messages])
    metrics.EVENTS_DUPLICATE.inc(folded.duplicates)
    for kind, count in folded.controls.items():
        metrics.CONTROL_RECORDS.labels(kind).inc(count)
    if folded.rejected:
        by_offset = {m.offset: m for m in messages}
        for offset, rejected in folded.rejected:
            sends.append(await _send_dlq(by_offset[offset], rejected))
    for offset, trip, late in folded.late:
        metrics.EVENTS_LATE.labels(late.size.name).inc()
        source = f"{settings.events}/{partition}/{offset}"
        value = late_record(cast(TripEvent, trip).to_canonical(), late, source)
        sends.append(await late_topic.send(key=str(trip.region_id).encode(), value=value))
    final = folded.final
    if final:
        for key, _ in final:
            live_dirty.pop(key, None)
        records, failed = final_records(final, SIZE_NAMES)
        for key in failed:  # finalizing never stops a partition; a bug here is logged loudly
            log.error("final window %r could not be emitted", key)
            metrics.EVENTS_INVALID.labels("unemittable_window").inc()
        for size_ms, count in Counter(key[0] for key, _ in final).items():
            metrics.WINDOWS_FINALIZED.labels(SIZE_NAMES[size_ms]).inc(count)
        headers = [(CLOSED_AT_HEADER, str(int(time.time() * 1000)).encode())]
        sends.extend(await publish(app, settings.results, records, headers))
    _check_flow()
    return _Part(state, messages[-1], folded, {(k[0], k[2]) for k, _ in final})


def _store_partition(partition: int, part: _Part) -> None:
    """Write the partition's open windows and progress, then delete its final slots.

    Runs after the broker acknowledged the batch's results: a window's final result is
    published before any progress past its events is stored, so a crash in between replays
    those events and publishes the same result again — never loses it. A window that opened
    and closed within the batch is never written to the table at all.
    """
    state, now = part.state, time.time()
    internals.set_write_partition(app, part.last)  # changelog partition = source partition
    dirty_slots: set[Slot] = set()
    for key, agg in state.take_dirty():
        dirty_slots.add((key[0], key[2]))
        prev = live_dirty.get(key)
        live_dirty[key] = (agg, prev[1] if prev else (part.folded.newest_ts or now))
    if dirty_slots:
        live_changed.set()
    plan = plan_store(state, dirty_slots, part.final_slots, _changelog_behind.get(partition))
    for table_key in plan.changelog_tombstones:
        state_table.send_changelog(partition, table_key, None)
    half = len(plan.slots) // 2
    for i, (table_key, value) in enumerate(plan.slots):
        if i == half and part.final_slots:
            faults.reached("mid-state-write")
        state_table[table_key] = value
    state_table[plan.progress[0]] = plan.progress[1]
    for table_key in plan.deletes:
        del state_table[table_key]
    # Counted once stored: a batch stopped by a rebalance is processed again by the new owner.
    metrics.EVENTS_PROCESSED.inc(part.folded.processed)
    _record_tally(part.folded.tally)
    _observe_partition(partition, state)


def _observe_partition(partition: int, state: PartitionState) -> None:
    label = str(partition)
    now = time.time()
    metrics.OPEN_WINDOWS.labels(label).set(len(state.windows))
    wm = state.watermark_ms
    if wm is not None and state.progress.max_event_ms is not None:
        metrics.WATERMARK.labels(label).set(wm / 1000)
        metrics.WATERMARK_DELAY.labels(label).set(now - wm / 1000)
        metrics.EVENT_TIME_LAG.labels(label).set(now - state.progress.max_event_ms / 1000)
    metrics.LAST_EVENT_SECONDS.set(now)


async def _send_dlq(msg: Message, rejected: Rejected) -> Any:
    metrics.EVENTS_INVALID.labels(rejected.reason).inc()
    log.warning("invalid record %s/%d/%d: %s", msg.topic, msg.partition, msg.offset, rejected.message)
    source = f"{msg.topic}/{msg.partition}/{msg.offset}"
    key, value, headers = dlq_record(source, msg.key, msg.value, rejected.reason, rejected.message)
    return await dlq_topic.send(key=key, value=value, headers=headers)


class _StoreFailed(Exception):
    """Writing the table or getting its changelog acknowledged failed: the disk or the broker,
    not the batch's records, so it is retried for as long as it lasts."""


async def _process_batch(messages: list[Message]) -> None:
    by_partition: dict[int, list[Message]] = defaultdict(list)
    for msg in messages:
        by_partition[msg.partition].append(msg)
    global _current_stage
    _current_stage = "fold"
    sends: list[Any] = []
    stages: list[tuple[str, float]] = []
    clock = time.perf_counter()
    parts = {p: await _fold_partition(p, part, sends) for p, part in by_partition.items()}
    clock = _stage(stages, "fold", clock)
    finalized = any(part.final_slots for part in parts.values())
    # One wait for the broker's acks per batch (not per partition), then the state writes.
    await _acknowledged(sends)
    clock = _stage(stages, "publish", clock)
    if finalized:
        faults.reached("after-publish")
    _check_flow()
    try:
        for partition, part in parts.items():
            _store_partition(partition, part)
    except Exception as exc:
        raise _StoreFailed(f"storing the batch's state failed: {exc!r}") from exc
    finally:
        internals.clear_write_partition()
    clock = _stage(stages, "store", clock)
    # Offsets are committed only for state the changelog holds: a worker taking over recovers it.
    written = state_table.take_unacked()
    try:
        await _acknowledged(written)
    except BaseException as exc:  # a stuck batch is cancelled here: RocksDB is ahead all the same
        for partition, part in parts.items():
            _changelog_behind.setdefault(partition, set()).update(part.final_slots)
        if isinstance(exc, Exception):
            raise _StoreFailed(f"the broker did not acknowledge the changelog: {exc!r}") from exc
        raise
    _stage(stages, "changelog", clock)
    for partition in parts:
        _changelog_behind.pop(partition, None)
    # Observed only for a batch that went through: a retried one would count its stages twice.
    for stage, seconds in stages:
        metrics.BATCH_STAGE_SECONDS.labels(stage).observe(seconds)
    if finalized:
        faults.reached("before-commit")


#: The step the running batch is in: what a stuck batch's warning names.
_current_stage = "fold"


def _stage(stages: list[tuple[str, float]], name: str, started: float) -> float:
    global _current_stage
    now = time.perf_counter()
    stages.append((name, now - started))
    _current_stage = _NEXT_STAGE.get(name, name)
    return now


_NEXT_STAGE = {"fold": "publish", "publish": "store", "store": "changelog"}


async def _acknowledged(sent: list[Any]) -> None:
    """Wait for the broker's acknowledgements. Shielded: a batch given up as stuck
    (``BATCH_STUCK_S``) leaves its sends to the producer rather than cancelling them."""
    if not sent:
        return
    acks = asyncio.gather(*sent)
    acks.add_done_callback(lambda done: done.cancelled() or done.exception())
    await asyncio.shield(acks)


async def _through_or_stuck(messages: list[Message]) -> None:
    try:
        await asyncio.wait_for(_process_batch(messages), BATCH_STUCK_S)
    except TimeoutError:
        raise _StoreFailed(f"not through after {BATCH_STUCK_S:.0f}s, waiting in {_current_stage}") from None


def _forget_batch_state(messages: list[Message]) -> None:
    """After a batch stopped midway: its partitions' in-memory state may be ahead of what was
    stored, so it is rebuilt from the table when next needed."""
    for partition in {msg.partition for msg in messages}:
        _states.pop(partition, None)
    internals.clear_write_partition()


async def _run_batch(messages: list[Message], *, alone: bool = False) -> None:
    """Process a batch until its effects are stored; raises :class:`_Revoked` on a rebalance.

    A failure of the broker, the network or the disk is retried with backoff for as long as it
    lasts (a record is never dead-lettered for it). A failure caused by the batch itself is
    retried ``BATCH_ATTEMPTS`` times; then its records go through one at a time, and a record
    that still fails alone is dead-lettered with the error, so the partition moves on.
    """
    attempts, backoff = 0, BATCH_RETRY_S
    while True:
        try:
            await _through_or_stuck(messages)
            return
        except _Revoked:
            _forget_batch_state(messages)
            raise
        except (_StoreFailed, *_INFRA_ERRORS) as exc:
            log.warning("batch of %d records not stored (%s); retrying in %.0fs", len(messages), exc, backoff)
            metrics.BATCH_RETRIES.inc()
            _forget_batch_state(messages)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BATCH_RETRY_MAX_S)
        except Exception as exc:
            attempts += 1
            log.exception(
                "batch of %d records failed (attempt %d of %d)", len(messages), attempts, BATCH_ATTEMPTS
            )
            metrics.BATCH_RETRIES.inc()
            _forget_batch_state(messages)
            if attempts < BATCH_ATTEMPTS:
                await asyncio.sleep(BATCH_RETRY_S)
            elif not alone:
                for msg in messages:
                    await _run_batch([msg], alone=True)
                return
            else:
                await _dead_letter_poison(messages[0], exc)
                return


async def _dead_letter_poison(msg: Message, exc: Exception) -> None:
    """Dead-letter a record that fails on its own, and store that its partition is past it."""
    state = _partition_state(msg.partition)
    if state.is_duplicate(msg.offset):
        return
    log.error("record %s/%d/%d fails alone (%r): dead-lettered", msg.topic, msg.partition, msg.offset, exc)
    await (await _send_dlq(msg, Rejected("processing_error", repr(exc)[:500])))
    metrics.POISON_RECORDS.inc()
    state.mark_applied(msg.offset)
    internals.set_write_partition(app, msg)
    try:
        state_table[progress_table_key(msg.partition)] = state.progress.to_state()
    finally:
        internals.clear_write_partition()
    await asyncio.gather(*state_table.take_unacked())


@app.agent(events_topic)
async def aggregate_trips(stream: Any) -> None:
    """Fold trip events into their windows; one pass per batch, partitions kept apart.

    The records come from ``inbox`` (a fetched batch at a time); ``stream`` is Faust's, which
    this agent declares the topic with but does not iterate. A batch that fails midway (the
    broker not acknowledging, say) is retried from the partitions' stored state, exactly like
    a restart after a crash: nothing is acked, so nothing is committed, until it went through.
    """
    # Table writes queue changelog messages in Faust's producer buffer, and the conductor stops
    # consuming while more than ``max_messages`` (100) are queued, draining them one by one:
    # with one write per touched window per batch that cap throttles the worker to a few
    # hundred events/s. The buffer is bounded by the batch size instead.
    app.producer.buffer.max_messages = PRODUCER_BUFFER_MAX
    while True:
        messages = await inbox.take(BATCH_MAX, BATCH_LINGER_S)
        metrics.BATCH_STAGE_SECONDS.labels("wait").observe(inbox.waited_s)
        metrics.BATCH_RECORDS.observe(len(messages))
        _batch_idle.clear()
        try:
            await _run_batch(messages)
        except _Revoked:
            # Not acked: after the rebalance the records are fetched again by their owner, from
            # the committed offset, and applied to that partition's stored state.
            log.info("rebalance during a batch of %d records: stopped it", len(messages))
            continue
        finally:
            _batch_idle.set()
        inbox.ack(messages)


@app.timer(1.0)
async def send_idle_markers() -> None:
    """Close the windows of partitions that have gone silent, through the log (deterministic)."""
    idle_ms = settings.idle_timeout_ms
    if not idle_ms:
        return
    now = time.time()
    consumer = app.consumer
    assigned = consumer.assignment()
    for partition, state in list(_states.items()):
        seen = _last_seen.get(partition)
        if seen is None or partition in _idle_sent or not state.windows:
            continue
        if (now - seen) * 1000 < idle_ms or state.progress.max_event_ms is None:
            continue
        # Quiet, and caught up: every record the partition holds is processed. A worker that is
        # only held up (Redis down, a long batch) has a backlog and must not close windows early.
        tp = TP(settings.events, partition)
        if tp not in assigned or state.progress.offset + 1 < consumer.highwater(tp):
            continue
        value, headers = encode_control(IDLE, state.progress.max_event_ms)
        try:
            await (await events_topic.send(value=value, headers=headers, partition=partition))
        except Exception as exc:  # sent again on the next tick
            log.warning("idle marker for partition %d not sent (%r); retrying", partition, exc)
            continue
        _idle_sent.add(partition)
        log.info("partition %d idle for %.0fs: closing its windows", partition, now - seen)
