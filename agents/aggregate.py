"""The windowed aggregation agent: decode, validate, aggregate, emit — a batch at a time.

Each batch is grouped by source partition and applied in memory; the windows the frontier closed
are published to the results topic. Once the broker has acknowledged everything the batch sent,
per partition, every touched open window is written to the changelogged table once, then the
partition's progress record, then the final windows are deleted from the table (a real
tombstone). That order is what makes a crash at any point recoverable without loss or double
counting (see tables/partition_state.py and docs/processing.md).

Records arrive a fetched batch at a time through the events topic's inbox (app/batches.py), not
one by one through a Faust Stream. Table writes need Faust's "current event" to pick the
changelog partition, so the context is set explicitly to an event of the partition being written
(faust.streams._current_event, pinned with faust-streaming==0.15.3 and covered by the recovery
tests).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from faust import Event
from faust import streams as faust_streams
from faust.types import TP, Message

from app import batches, faults, metrics
from app.control import IDLE, control_kind, decode_control, encode_control
from app.events import Rejection, TripEvent, default_limits, parse_event
from app.main import app, settings
from app.publish import publish
from app.state import state_table
from app.topics import dlq_topic, events_topic, late_topic
from app.zones import load_zones
from tables.aggregate import TripAggregate
from tables.partition_state import (
    LateEvent,
    PartitionState,
    Progress,
    Slot,
    WindowKey,
    parse_slot_table_key,
    progress_table_key,
    slot_state,
    slot_table_key,
    windows_from_slot_state,
)
from tables.results import window_record
from tables.times import format_time_ms
from tables.windows import WindowSize

log = logging.getLogger(__name__)

BATCH_MAX = 10_000
#: How long a batch waits for more records once one is there: what a quiet stream adds to
#: latency, and what saves rewriting the same windows' state for every single record.
BATCH_LINGER_S = 0.02
BATCH_RETRY_S = 1.0
BATCH_RETRY_MAX_S = 10.0
#: Attempts of a batch that fails on its own data (not on the broker or the disk) before its
#: records are processed one at a time and the one that fails alone is dead-lettered.
BATCH_ATTEMPTS = 3
CLOSED_AT_HEADER = "streampulse-closed-at-ms"
PRODUCER_BUFFER_MAX = 4 * BATCH_MAX
#: Dead-lettered values and keys are cut to these sizes (the original size is in a header):
#: the producer refuses requests over 1,000,000 bytes, and the broker accepts slightly more.
DLQ_VALUE_MAX = 900_000
DLQ_KEY_MAX = 1024
#: Failures of the infrastructure rather than of a record: retried for as long as they last.
_INFRA_ERRORS = (KafkaError, OSError)

#: Fetched records of the events topic wait here for the agent (bounded: fetching pauses).
inbox = batches.inbox(app, settings.events, max_buffered=4 * BATCH_MAX)

SIZES: list[WindowSize] = settings.window_sizes
SIZE_NAMES = {s.size_ms: s.name for s in SIZES}

#: Per-partition state cached in memory; rebuilt from the table after (re)assignment.
_states: dict[int, PartitionState] = {}
#: Wall-clock time a record was last seen per partition, and whether an idle marker is pending.
_last_seen: dict[int, float] = {}
_idle_sent: set[int] = set()
#: Partitions whose last changelog writes were not acknowledged, with the slots whose tombstones
#: went unacknowledged: the next store re-sends their whole state (RocksDB already has it).
_changelog_behind: dict[int, set[Slot]] = {}
#: Open windows changed since the last live mirror, with the oldest unmirrored record timestamp.
#: The aggregate itself is kept, not its record: the record is built only when the mirror runs
#: (once a second), not for every window on every batch.
live_dirty: dict[WindowKey, tuple[TripAggregate, float]] = {}
#: Set when ``live_dirty`` gained windows: the sink's mirror writes them as soon as its rate allows.
live_changed = asyncio.Event()


def _load_partition(partition: int) -> PartitionState:
    """Rebuild a partition's state from the (recovered) table.

    Reads that partition's RocksDB directly: ``Table.items()`` only visits partitions the assignor
    lists as active at that instant, which during back-to-back rebalances can omit a partition
    whose events are already being processed — the worker then started it from empty state.
    """
    store: Any = state_table.data  # faust.stores.rocksdb.Store (faust-streaming pinned)
    db = store._db_for_partition(partition)
    windows: dict[WindowKey, TripAggregate] = {}
    progress_state = None
    progress_key = progress_table_key(partition)
    for raw_key, raw_value in store._visible_items(db):
        key = store._decode_key(raw_key)
        value = store._decode_value(raw_value)
        if value is None:
            continue
        if key == progress_key:
            progress_state = value
            continue
        parsed = parse_slot_table_key(key)
        if parsed is not None and parsed[0] == partition and parsed[1][0] in SIZE_NAMES:
            try:
                windows.update(windows_from_slot_state(parsed[1], value))
            except (ValueError, TypeError, KeyError, IndexError):
                # A slot no version of the worker wrote (forged, or corrupted): its partial windows
                # are lost, loudly, rather than every batch of the partition failing on it.
                log.error("partition %d: unreadable state under %r, skipped", partition, key)
                metrics.EVENTS_INVALID.labels("unreadable_state").inc()
    progress = Progress.from_state(progress_state)
    log.info(
        "partition %d: %d open windows recovered, progress offset %d",
        partition,
        len(windows),
        progress.offset,
    )
    return PartitionState(partition, SIZES, settings.lateness_ms, progress, windows)


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


def _dlq_record(
    msg: Message, reason: str, message: str
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """Key, value and headers of a dead letter: the record as it came (cut to a size the
    producer accepts, the original size kept), why it was refused, and where it came from."""
    value = msg.value or b""
    headers = [
        ("streampulse-error-reason", reason.encode()),
        ("streampulse-error-message", message.encode()[:1000]),
        ("streampulse-source", f"{msg.topic}/{msg.partition}/{msg.offset}".encode()),
        ("streampulse-original-size", str(len(value)).encode()),
    ]
    if len(value) > DLQ_VALUE_MAX:
        value = value[:DLQ_VALUE_MAX]
        headers.append(("streampulse-truncated", b"true"))
    key = msg.key[:DLQ_KEY_MAX] if msg.key is not None else None
    return key, value, headers


def _headers(msg: Any) -> list[tuple[str, bytes]]:
    headers = msg.headers
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers or ())


@dataclass(slots=True)
class _Tally:
    """A batch's per-event metrics, recorded once per batch (per event they cost a fifth of
    the worker's time): trips and revenue per region, fares and durations observed."""

    trips: dict[int, list[float]] = field(default_factory=dict)
    fares: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)

    def add(self, ev: TripEvent) -> None:
        tally = self.trips.get(ev.region_id)
        if tally is None:
            self.trips[ev.region_id] = [1.0, ev.fare]
        else:
            tally[0] += 1
            tally[1] += ev.fare
        self.fares.append(ev.fare)
        self.durations.append(ev.duration)

    def record(self) -> None:
        for region, (count, revenue) in self.trips.items():
            metrics.TRIPS.labels(str(region)).inc(count)
            metrics.REVENUE.labels(str(region)).inc(revenue)
        metrics.observe_many(metrics.TRIP_FARE, self.fares)
        metrics.observe_many(metrics.TRIP_DURATION, self.durations)


async def _apply_record(state: PartitionState, msg: Message, sends: list[Any], tally: _Tally) -> bool:
    """Apply one record; returns True for a folded trip event. Bad input goes to the DLQ."""
    kind = control_kind(_headers(msg)) if msg.headers else None
    if kind is not None:
        control = decode_control(kind, msg.value, default_limits().latest_ms())
        if isinstance(control, Rejection):
            metrics.EVENTS_INVALID.labels(control.reason).inc()
            log.warning(
                "invalid control record %s/%d/%d: %s", msg.topic, msg.partition, msg.offset, control.message
            )
            sends.append(await _send_dlq(msg, control.reason, control.message))
        else:
            state.apply_control(control.event_time_ms)
            metrics.CONTROL_RECORDS.labels(kind).inc()
        return False
    parsed = parse_event(msg.value if msg.value is not None else b"")
    if not isinstance(parsed, TripEvent):
        metrics.EVENTS_INVALID.labels(parsed.reason).inc()
        log.warning("invalid record %s/%d/%d: %s", msg.topic, msg.partition, msg.offset, parsed.message)
        sends.append(await _send_dlq(msg, parsed.reason, parsed.message))
        return False
    outcome = state.apply_event(
        msg.offset, parsed.region_id, parsed.event_time_ms, parsed.fare, parsed.duration, parsed.distance
    )
    for late in outcome.late:
        metrics.EVENTS_LATE.labels(late.size.name).inc()
        sends.append(await _send_late(parsed, msg.partition, late))
    tally.add(parsed)
    return True


@dataclass(slots=True)
class _Folded:
    """A partition's part of a batch, applied in memory: what to store once the broker has
    acknowledged everything the batch sent."""

    state: PartitionState
    context: Event
    final_slots: set[Slot]
    newest_ts: float
    processed: int
    tally: _Tally


async def _fold_partition(partition: int, messages: Sequence[Message], sends: list[Any]) -> _Folded:
    """Apply a partition's records and publish the windows they finalized (results, late
    events and dead letters go into ``sends``)."""
    state = _partition_state(partition)
    _last_seen[partition] = time.time()
    _idle_sent.discard(partition)
    newest_ts = 0.0
    processed = 0
    tally = _Tally()
    for msg in messages:
        _check_flow()
        offset = msg.offset
        if state.is_duplicate(offset):
            metrics.EVENTS_DUPLICATE.inc()
            continue
        try:
            if await _apply_record(state, msg, sends, tally):
                processed += 1
                newest_ts = max(newest_ts, msg.timestamp or 0.0)
        except Exception as exc:  # a worker never crashes on one record
            log.exception("record %s/%d/%d could not be processed", msg.topic, partition, offset)
            metrics.EVENTS_INVALID.labels("processing_error").inc()
            sends.append(await _send_dlq(msg, "processing_error", repr(exc)))
        state.mark_applied(offset)
    final = state.take_final()
    if final:
        records = []
        for key, agg in final:
            live_dirty.pop(key, None)
            try:
                record = window_record(key[1], SIZE_NAMES[key[0]], key[0], key[2], agg, final=True)
                records.append((str(key[1]).encode(), orjson.dumps(record)))
            except Exception:  # finalizing never stops a partition; a bug here is logged loudly
                log.exception("final window %r could not be emitted", key)
                metrics.EVENTS_INVALID.labels("unemittable_window").inc()
        for size_ms, count in Counter(key[0] for key, _ in final).items():
            metrics.WINDOWS_FINALIZED.labels(SIZE_NAMES[size_ms]).inc(count)
        headers = [(CLOSED_AT_HEADER, str(int(time.time() * 1000)).encode())]
        sends.extend(await publish(app, settings.results, records, headers))
    final_slots = {(k[0], k[2]) for k, _ in final}
    return _Folded(state, _partition_event(messages[-1]), final_slots, newest_ts, processed, tally)


def _store_partition(partition: int, folded: _Folded) -> None:
    """Write the partition's open windows and progress, then delete its final slots.

    Runs after the broker acknowledged the batch's results: a window's final result is
    published before any progress past its events is stored, so a crash in between replays
    those events and publishes the same result again — never loses it. A window that opened
    and closed within the batch is never written to the table at all.
    """
    state, now = folded.state, time.time()
    # Writes in the context of this partition: changelog partition = source partition.
    faust_streams._current_event.set(weakref.ref(folded.context))
    dirty_slots: set[Slot] = set()
    for key, agg in state.take_dirty():
        dirty_slots.add((key[0], key[2]))
        prev = live_dirty.get(key)
        live_dirty[key] = (agg, prev[1] if prev else (folded.newest_ts or now))
    if dirty_slots:
        live_changed.set()
    behind = _changelog_behind.get(partition)
    if behind is not None:
        # The changelog may miss writes RocksDB has: send the partition's whole state again.
        dirty_slots |= set(state.slots)
        for slot in behind - set(state.slots):
            state_table.send_changelog(partition, slot_table_key(partition, slot), None)
    half = len(dirty_slots) // 2
    for i, slot in enumerate(dirty_slots):
        if i == half and folded.final_slots:
            faults.reached("mid-state-write")
        state_table[slot_table_key(partition, slot)] = slot_state(state.slot_windows(slot))
    state.persisted |= dirty_slots
    state_table[progress_table_key(partition)] = state.progress.to_state()
    for slot in folded.final_slots & state.persisted:
        del state_table[slot_table_key(partition, slot)]
    state.persisted -= folded.final_slots
    # Counted once stored: a batch stopped by a rebalance is processed again by the new owner.
    metrics.EVENTS_PROCESSED.inc(folded.processed)
    folded.tally.record()
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


def _partition_event(msg: Message) -> Event:
    """An event of ``msg``'s partition, to write table keys in that partition's context."""
    return Event(app, msg.key, msg.value, msg.headers, msg)


async def _send_dlq(msg: Message, reason: str, message: str) -> Any:
    key, value, headers = _dlq_record(msg, reason, message)
    return await dlq_topic.send(key=key, value=value, headers=headers)


async def _send_late(ev: TripEvent, partition: int, late: LateEvent) -> Any:
    size, start_ms = late.size, late.window_start_ms
    value = orjson.dumps(
        {
            "event": ev.to_canonical(),
            "window": size.name,
            "window_start": format_time_ms(start_ms),
            "window_end": format_time_ms(start_ms + size.size_ms),
            "closed_up_to": format_time_ms(late.frontier_ms),
            "reason": f"the {size.name} window was already final",
            "source": f"{settings.events}/{partition}/{late.offset}",
        }
    )
    return await late_topic.send(key=str(ev.region_id).encode(), value=value)


class _StoreFailed(Exception):
    """Writing the table or getting its changelog acknowledged failed: the disk or the broker,
    not the batch's records, so it is retried for as long as it lasts."""


async def _process_batch(messages: list[Message]) -> None:
    by_partition: dict[int, list[Message]] = defaultdict(list)
    for msg in messages:
        by_partition[msg.partition].append(msg)
    sends: list[Any] = []
    folded = {p: await _fold_partition(p, part, sends) for p, part in by_partition.items()}
    finalized = any(part.final_slots for part in folded.values())
    # One wait for the broker's acks per batch (not per partition), then the state writes.
    if sends:
        await asyncio.gather(*sends)
    if finalized:
        faults.reached("after-publish")
    _check_flow()
    try:
        for partition, part in folded.items():
            _store_partition(partition, part)
    except Exception as exc:
        raise _StoreFailed(f"storing the batch's state failed: {exc!r}") from exc
    finally:
        faust_streams._current_event.set(None)
    # Offsets are committed only for state the changelog holds: a worker taking over recovers it.
    written = state_table.take_unacked()
    try:
        await asyncio.gather(*written)
    except Exception as exc:
        for partition, part in folded.items():
            _changelog_behind.setdefault(partition, set()).update(part.final_slots)
        raise _StoreFailed(f"the broker did not acknowledge the changelog: {exc!r}") from exc
    for partition in folded:
        _changelog_behind.pop(partition, None)
    if finalized:
        faults.reached("before-commit")


def _forget_batch_state(messages: list[Message]) -> None:
    """After a batch stopped midway: its partitions' in-memory state may be ahead of what was
    stored, so it is rebuilt from the table when next needed."""
    for partition in {msg.partition for msg in messages}:
        _states.pop(partition, None)
    faust_streams._current_event.set(None)


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
            await _process_batch(messages)
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
    await (await _send_dlq(msg, "processing_error", repr(exc)[:500]))
    metrics.EVENTS_INVALID.labels("processing_error").inc()
    metrics.POISON_RECORDS.inc()
    state.mark_applied(msg.offset)
    faust_streams._current_event.set(weakref.ref(_partition_event(msg)))
    try:
        state_table[progress_table_key(msg.partition)] = state.progress.to_state()
    finally:
        faust_streams._current_event.set(None)
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
    # with one write per touched window per batch that cap throttled the worker to ~600
    # events/s. The buffer is bounded by the batch size instead.
    app.producer.buffer.max_messages = PRODUCER_BUFFER_MAX
    while True:
        messages = await inbox.take(BATCH_MAX, BATCH_LINGER_S)
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


@app.timer(5.0)
async def observe_consumer_lag() -> None:
    """Records not yet committed per assigned partition (what the lag alert watches): counted
    from the committed offset, not the fetch position, so a stalled partition shows."""
    consumer: Any = app.consumer
    try:
        for tp in consumer.assignment():
            lag = consumer.uncommitted(tp)
            if lag is not None:
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
    except Exception as exc:  # the assignment can change under the loop during a rebalance
        log.debug("consumer lag not observed this time: %r", exc)


@app.task
async def publish_region_names() -> None:
    """One streampulse_region_info series per known zone, for the dashboards' joins."""
    for region_id, zone in load_zones(settings.zones_file).items():
        metrics.REGION_INFO.labels(str(region_id), zone.name or "", zone.borough or "").set(1)


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
