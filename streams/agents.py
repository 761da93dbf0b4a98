"""Faust agents: decode -> domain -> table writes and topic sends. Thin by design: logic is in the domain."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from faust.types import TP

from schemas.events import BILLING_TYPES
from streams.adapters.batch_input import Ack, BatchInput, acknowledge, bound_fetch_wait, last_fetch_ms
from streams.adapters.batch_input import install as install_batch_input
from streams.adapters.changelog_recovery import install as install_changelog_recovery
from streams.adapters.changelog_writer import ChangelogWriter, Staged, aiokafka_producer
from streams.adapters.take_events import refuse_unpinned_faust as refuse_unpinned_take_events
from streams.adapters.take_events import take_events
from streams.adapters.topic_sender import TopicSender
from streams.alignment import UsageGate, align, billing_read_to_end, partitions_to_check
from streams.domain.aggregate import (
    AccountAggregate,
    cohort_snapshot,
    decode_aggregate,
    encode_aggregate,
    read_model,
    tick,
)
from streams.domain.portfolio import PortfolioBuilder, portfolio_alert_records
from streams.health_schedule import HealthSchedule
from streams.ingest.decode import IngestConfig, TopicKind, decode_for_topic
from streams.ingest.outcome import Skipped
from streams.offset_order import InputOrder, Verdict
from streams.partitioning import PartitionCache
from streams.processing import DecodedRecord, InputRecord, apply_decoded, decode_records
from streams.state_cache import StateCache, changed_accounts
from streams.stepping import BusyShare, Pacer, Steps, background_step_s, pause_after_step

if TYPE_CHECKING:
    from streams.bootstrap import Context

log = logging.getLogger(__name__)


# A billing partition that usage waits for (ADR 0009) and that made no progress for this long, with records left
# on the broker, is read again (monotonic seconds; longer than a fetch round trip, shorter than the 10-s stall check).
BLOCKING_PATIENCE_S = 3.0
# How often waiting usage (ADR 0009) is checked when no batch comes, seconds. A billing partition often turns out
# read to its end by a fetch answer without records (it was left out of the fetch that brought the usage, or it
# is led by another broker), and no batch follows such an answer. A check with nothing waiting returns at once.
RELEASE_CHECK_S = 0.1

# Accounts re-published per second after a rebalance: bounds the event loop's time on it (a read model costs
# ~0.1-0.2 ms, so 400 is ~0.06 s a second); 50,000 owned accounts take about two minutes.
REPUBLISH_PER_S = 400
# The health publish timer's period, seconds: at most publish_interval_s, and short enough that re-publishing and
# coalesced records do not wait for a long publish_interval_s tick.
PUBLISH_TICK_MAX_S = 1.0
# A flush spreads its writes over up to this share of CHURNWATCH_STATE_FLUSH_INTERVAL_S, then runs back to back, so
# it ends before the next is due (ADR 0031; half until 2026-12-07: the same work in about half the time, a larger
# share of the event loop while it ran, and a higher event-to-alert p99 at 70 % load).
FLUSH_BUDGET_SHARE = 0.9
# Records acknowledged between two checks of the step's deadline (~0.06 us each in bulk, ADR 0020).
ACK_CHUNK = 1000
# Coalesced health records the health timer may always publish per tick, however few accounts are pending.
HEALTH_MIN_PER_TICK = 50


def ack_groups(records: Iterable[Any]) -> list[Ack]:
    """The records' (topic, partition, offset) grouped by partition, each partition's offsets in record order."""
    groups: dict[tuple[str, int], list[int]] = {}
    for record in records:
        key = (record.topic, record.partition)
        offsets = groups.get(key)
        if offsets is None:
            offsets = groups[key] = []
        offsets.append(record.offset)
    return [(topic, partition, offsets) for (topic, partition), offsets in groups.items()]


def ack_chunks(groups: list[Ack], size: int) -> list[list[Ack]]:
    """The groups cut into chunks of at most `size` offsets each (a group may be split), in order."""
    chunks: list[list[Ack]] = []
    chunk: list[Ack] = []
    room = size
    for topic, partition, offsets in groups:
        start = 0
        while start < len(offsets):
            part = offsets[start : start + room]
            chunk.append((topic, partition, part))
            start += len(part)
            room -= len(part)
            if room == 0:
                chunks.append(chunk)
                chunk, room = [], size
    if chunk:
        chunks.append(chunk)
    return chunks


def health_publish_quota(pending: int, tick_s: float, interval_s: float) -> int:
    """Coalesced health records to publish in one tick of the health timer: twice the steady rate (each of the
    `pending` accounts once per `interval_s`), at least HEALTH_MIN_PER_TICK.

    Why not every due record at once: accounts changed together (a day-end tick, a burst of input) come due
    together one interval later, and publishing all of them (~0.15 ms each) held the stream up for their whole
    cost, every interval, since they stay in step. At this rate a burst takes at most half an interval to publish,
    its accounts drift apart, and a tick costs a bounded share of the worker (ADR 0017)."""
    return max(HEALTH_MIN_PER_TICK, math.ceil(2 * pending * tick_s / interval_s))


def cohort_backlog_read(end: int | None, applied: int, committed: int | None) -> bool:
    """Is every cohort input that was in the cohort-inputs topic when this assignment began in the cohort table?

    `end`: the partition's high watermark measured after the assignment (the offset after its last record; None:
    not measured yet). `applied`: the newest offset the cohort collector put in the table (-1: none).
    `committed`: the group's committed offset for the partition (the next record to read; None: none known).

    Why: after a SIGKILL the topic can hold snapshots the killed worker delivered (its flush awaited them before
    committing its input, so its input is not read again) that its collector had not yet applied. Until they
    are in the table, the table is missing answers of months the event-time front may already call final."""
    if end is None:
        return False
    return applied >= end - 1 or (committed is not None and committed >= end)


def portfolio_front_may_move(backlog_read: bool, in_flight: int, sent: int, applied: int) -> bool:
    """May the portfolio front (which makes months final) move? Only while the cohort table holds every cohort input
    this worker knows of: the assignment's backlog (`cohort_backlog_read`), none of its own still in flight, and
    its own delivered ones (newest offset `sent`) applied (newest `applied`). Offsets as in `cohort_backlog_read`."""
    return backlog_read and in_flight == 0 and applied >= sent


# ADR 0025: every worker reports the usage fronts of its partitions on the cohort-inputs topic under this key, after
# the cohort inputs they cover; the cohort collector keeps the highest per partition in the cohort table. Never an
# account id: keys are account ids in UTF-8, and 0xFF never occurs in UTF-8.
USAGE_FRONTS_KEY = b"\xffusage-fronts"


def decode_usage_fronts(raw: bytes | None) -> dict[int, float]:
    """A usage-fronts value (JSON object: usage partition number -> front, epoch seconds) as a dict."""
    return {int(p): float(f) for p, f in orjson.loads(raw).items()} if raw else {}


def encode_usage_fronts(fronts: Mapping[int, float]) -> bytes:
    return orjson.dumps({str(p): f for p, f in sorted(fronts.items())})


def merge_usage_fronts(held: bytes | None, reported: bytes) -> bytes:
    """The cohort table's usage fronts with one worker's report merged in: per partition, the highest.

    Why the highest: a report says "every cohort input from this partition's usage up to the front is in the topic
    before this record". That stays true after the partition moves to another worker, whose first report (its
    watermarks start again from the committed offset, ADR 0014) can be lower; and two workers' reports around a
    rebalance reach the topic in either order."""
    merged = decode_usage_fronts(held)
    for p, f in decode_usage_fronts(reported).items():
        if f > merged.get(p, float("-inf")):
            merged[p] = f
    return encode_usage_fronts(merged)


def usage_fronts_of(partitions: int, own: Mapping[int, float], reported: Mapping[int, float]) -> list[float | None]:
    """Per usage partition 0..partitions-1, the front the portfolio counts (epoch seconds): the higher of this
    worker's own (`own`: its active partitions) and the one reported on the cohort-inputs topic (`reported`,
    ADR 0025); None when it has neither: its worker has not read it yet."""
    out: list[float | None] = []
    for p in range(partitions):
        mine, theirs = own.get(p), reported.get(p)
        out.append(theirs if mine is None else mine if theirs is None else max(mine, theirs))
    return out


def portfolio_front_of(fronts: Iterable[float | None]) -> float:
    """The event time every usage partition has reached: the lowest of `usage_fronts_of`. 0.0 (no month final)
    while a partition has none: a month's cohort inputs may still be in it."""
    listed = list(fronts)
    if not listed or any(f is None for f in listed):
        return 0.0
    return min(f for f in listed if f is not None)


def every(app: Any, interval_s: float) -> Callable[[Callable[[], Awaitable[None]]], Any]:
    """Like `app.timer`, for work meant to run longer than its interval at times: the next run starts `interval_s`
    after the previous one ended. `app.timer` logged a WARNING ("Timer ... is overlapping") after each such run,
    every ~10 s for the paced flush under steady load (ADR 0020), and an operator cannot tell that from trouble."""
    def decorate(fun: Callable[[], Awaitable[None]]) -> Any:
        @functools.wraps(fun)
        async def around() -> None:
            while not app.should_stop:
                await app.sleep(interval_s)  # returns early when the worker stops
                if app.should_stop:
                    return
                await fun()
        return app.task(around)
    return decorate


def register(ctx: Context) -> None:
    app = ctx.app
    settings = ctx.settings
    metrics = ctx.metrics
    # How long each step of background work holds up the account stream (its labels bound once).
    held_flush, held_acknowledge, held_health, held_tick = (
        metrics.stream_held.labels(work) for work in ("flush", "acknowledge", "health", "tick"))
    table = ctx.account_to_state
    cohort_table = ctx.account_to_cohort_inputs
    topics = ctx.topics
    partition_of = PartitionCache(settings.topic_partitions)
    changelog = ChangelogWriter(table, partition_of)
    # Health records go out in batches per partition (ADR 0032), not one by one through Faust's producer buffer.
    health_name = settings.topic(settings.health_topic)
    health_out = TopicSender(functools.partial(aiokafka_producer, app), health_name,
                             metrics.output_records_failed.labels(health_name).inc)
    sink = ctx.sink
    key_prefix = settings.redis_key_prefix
    billing_name = settings.topic(settings.billing_topic)
    actions_name = settings.topic(settings.alert_actions_topic)
    usage_name = settings.topic(settings.usage_topic)
    # Newest event time seen per input partition number, epoch seconds: the event-time watermark that drives
    # time-based rules for the accounts of that partition (billing and usage partitions share numbers).
    watermarks: dict[int, float] = {}
    ticked_day: dict[int, int] = {}  # partition -> event-time day of its last tick
    # Portfolio alert records already sent by this process (ids are deterministic; after a restart they are
    # sent again and consumers dedupe by record_id, as for every alert record).
    published_portfolio: set[str] = set()
    # Offsets of the cohort-inputs topic (one partition): the newest this worker's account agent had delivered,
    # the newest its cohort collector put in the cohort table; and the portfolio front last let through (epoch s).
    cohort_sent, cohort_applied, portfolio_front = [-1], [-1], [0.0]
    # The cohort-inputs partition's high watermark measured after the current assignment settled: the backlog
    # `cohort_backlog_read` waits for (None: not measured yet; mark_ready resets it with the rest).
    cohort_backlog_end: list[int | None] = [None]
    # ADR 0025, per usage partition this worker owns, epoch seconds: the usage front up to which its last completed
    # tick ended days and released held billing (so every cohort input up to it was sent), and the front it last
    # reported on the cohort-inputs topic. Both start again after a rebalance (mark_ready).
    ticked_fronts: dict[int, float] = {}
    reported_fronts: dict[int, float] = {}
    cohort_inputs_name = settings.topic(settings.cohort_inputs_topic)
    ingest_config = IngestConfig(max_bytes=settings.max_event_bytes)

    # Held while account state is read, changed and written back (a batch, or a tick of time-driven rules):
    # _publish awaits deliveries, and a tick must not read a state a batch is about to overwrite.
    state_lock = asyncio.Lock()

    async def _ensure_changelog_metadata() -> None:
        """The Kafka client must know the changelog topics' partitions at the moment of a table write: Faust
        computes the partition eagerly inside `table[key] = value` and crashed the agent with a TypeError when
        it did not (a freshly started worker; found by the SIGKILL reliability check, and the batch was then
        acked unapplied). Checked right before the (synchronous) writes, so no metadata refresh can intervene."""
        producer = aiokafka_producer(app)
        for t in (table, cohort_table):
            name = t.changelog_topic.get_topic_name()
            if producer._metadata.partitions_for_topic(name) is None:
                await producer.partitions_for(name)

    def _fail_stop(agent: str, exc: BaseException) -> None:
        """A batch that could not be persisted must not be acknowledged: Faust's take_events acks every event
        of a batch in a `finally`, even when processing raised, and the supervisor restarts the agent on the
        next batch, so the failed one would be silently lost. Exit the process instead (before the `finally`
        runs): the restarted worker re-reads the batch from the last committed offset."""
        log.critical("%s: a batch could not be persisted (%s: %s); stopping the worker without acknowledging "
                     "it, it is re-read on restart", agent, type(exc).__name__, exc, exc_info=exc)
        logging.shutdown()
        os._exit(70)  # EX_SOFTWARE

    # ADR 0010: decoded account states, changed in memory by every batch and written to the table once per flush;
    # the records applied to them are acknowledged after that write.
    cache: StateCache[bytes, AccountAggregate, Ack] = StateCache(settings.state_cache_accounts)
    # Faust's rebalance count at the last on_rebalance_complete (mark_ready): the tables are recovered and every
    # partition is about to be sought to the committed offset, and the cache was emptied (its unwritten changes
    # are lost on purpose: their records were never acknowledged and are read again). From a rebalance's start
    # until then a table may still be recovering, so no account state is loaded, applied, cached or written
    # (-1: before the first assignment). Code that awaits checks the count again (`_still`) before it keeps,
    # writes or acknowledges what it loaded.
    settled_generation = [-1]

    def _settled() -> bool:
        return app.rebalancing_count == settled_generation[0]

    def _still(gen: int) -> bool:
        """No rebalance started since `gen`: what was loaded at `gen` may still be kept, written, acknowledged."""
        return app.rebalancing_count == gen

    def _decode_from_table(key: bytes) -> AccountAggregate | None:
        raw = table.get(key)
        return decode_aggregate(raw) if raw is not None else None

    def _load_into_cache(key: bytes) -> AccountAggregate | None:
        """A cache miss: the table's value, decoded and counted (an account never seen has none)."""
        loaded = _decode_from_table(key)
        if loaded is not None:
            metrics.state_cache_loads.inc()
        return loaded

    def load_state(account_id: str) -> AccountAggregate | None:
        return cache.get(account_id.encode(), _load_into_cache)

    def _load_for_reader(key: bytes) -> AccountAggregate | None:
        """The newest state for HTTP: the cache's value while it is current, else the table's, never kept (a table
        still recovering from its changelog must not leave a value in the cache that recovery then moves on)."""
        cached = cache.peek(key) if _settled() else None
        return cached if cached is not None else _decode_from_table(key)

    ctx.load_account = _load_for_reader

    def _drop_cache() -> None:
        """A rebalance completed: values and pending health records of the previous assignment go."""
        dropped = cache.discard()
        health_schedule.clear_pending()  # objects of the discarded cache; mark_ready re-publishes every owned account
        if dropped:
            metrics.state_cache_dropped.inc(dropped)
            log.info("state cache: rebalanced; %d unwritten account states dropped, their records are read again "
                     "from the committed offset", dropped)

    # The flush in progress: the rebalance count at its start, and its start time (perf_counter seconds).
    flush_began = [0, 0.0]
    # The share of the last second or two the account agent spent on batches: sets background steps' length (ADR 0034).
    busy = BusyShare()
    # Its writes so far: seconds of work (perf_counter) and states written, the pace its pauses spread the rest at.
    flush_work = [0.0, 0]

    def _step_s() -> float:
        """How long the next step of background work (flush, acknowledgements, health records, day-end tick) may
        hold the account stream, seconds: shorter while the worker has slack (ADR 0034)."""
        return background_step_s(settings.state_flush_step_s, busy.share(time.monotonic()))

    async def _flush_step() -> Staged | None:
        """One step of the account-state flush (ADR 0010, ADR 0012). Starts a flush when one is due (every state
        changed since the last one is written to the table once); writes states for at most
        state_flush_step_s and returns their changelog records, which the caller hands to the Kafka client once it
        has released the lock (ADR 0016); a step with nothing left to write ends the flush, and the caller then
        acknowledges the records applied to its states. The caller holds `state_lock`; batches run between steps,
        so a flush of thousands of accounts does not stop the account stream for the whole of it."""
        if not _settled():
            return None
        if not cache.flushing:
            if not cache.due(time.monotonic(), settings.state_flush_interval_s, settings.state_flush_accounts):
                return None
            cache.begin_flush()
            flush_began[:] = [app.rebalancing_count, time.perf_counter()]
            flush_work[:] = [0.0, 0]
        gen = int(flush_began[0])
        # Before any state is written: the outputs recorded in it as done are delivered (ADR 0005, ADR 0015).
        await _await_deliveries()
        await _ensure_changelog_metadata()
        if not _still(gen):
            return None  # the rebalance's completion discards the flush with the cache; its records are read again
        if cache.writes_left:
            started = time.perf_counter()
            deadline = started + _step_s()
            writes = []
            observe = metrics.state_bytes.observe
            while (item := cache.next_write()) is not None:
                value = encode_aggregate(item[1])
                writes.append((item[0], value))
                observe(len(value))
                if time.perf_counter() >= deadline:
                    break
            metrics.state_flush_accounts.inc(len(writes))
            flush_work[0] += time.perf_counter() - started
            flush_work[1] += len(writes)
            # The store writes happen here, with nothing awaited; their changelog records, in batches (ADR 0012),
            # go to the Kafka client after the lock is released (ADR 0016).
            return changelog.stage(writes)
        # Re-routed records and other sends: handed to the Kafka client before the records are acknowledged.
        await _drain_send_buffer()
        if not _still(gen):  # the partitions may be another worker's now: the re-read dedupes by offset
            return None
        # Acknowledged by the flush timer in steps (ADR 0016): ten seconds of records is ~150,000 offsets.
        to_acknowledge.extend(cache.end_flush())
        metrics.state_flushes.inc()
        metrics.state_cache_accounts.set(len(cache))
        metrics.state_flush_duration.observe(time.perf_counter() - flush_began[1])
        return None

    # Records whose states the last flush wrote, still to acknowledge (ADR 0010, ADR 0016).
    to_acknowledge: list[Ack] = []

    async def _acknowledge_in_steps(gen: int) -> None:
        """Acknowledge the flushed records, at most state_flush_step_s at a time with batches running in between:
        a flush's records are seconds of input (~0.06 us each in bulk, ADR 0020). After a rebalance started,
        none: the partitions may be another worker's, which reads them again from the committed offset (the
        re-read dedupes by offset)."""
        chunks = Steps(ack_chunks(to_acknowledge, ACK_CHUNK), _step_s)
        while chunks.left and _still(gen):
            began = time.perf_counter()
            for chunk in chunks.step():
                acknowledge(app.consumer, chunk)
            step_s = time.perf_counter() - began
            held_acknowledge.observe(step_s)
            await asyncio.sleep(_flush_pause(step_s))
        to_acknowledge.clear()

    def _flush_pause(step_s: float) -> float:
        """How long the flush waits after a step of step_s seconds, batches running meanwhile (ADR 0020): its
        writes left are spread over what is left of FLUSH_BUDGET_SHARE of the flush interval at the pace so far
        (ADR 0031)."""
        return pause_after_step(step_s, settings.background_duty, time.perf_counter() - flush_began[1],
                                FLUSH_BUDGET_SHARE * settings.state_flush_interval_s, work_s=flush_work[0],
                                done=int(flush_work[1]),
                                left=cache.writes_left)

    # ADR 0007: Faust can hand a partition's records to the agent out of offset order around a rebalance
    # (records fetched while the flow is suspended are dropped, stale fetches arrive after a seek), and the
    # per-account dedupe would then take the skipped records for duplicates. So records are applied strictly
    # in offset order per partition; one from ahead of a gap is dropped unacknowledged and the partition is
    # sought back to the gap, which is read again.
    input_order: InputOrder[Any] = InputOrder()
    probe = ctx.offset_probe

    async def _start_partitions(tps: set[Any]) -> None:
        """Partitions new to this assignment start at the group's committed offset (the log start without
        one): that is where Faust's own seek puts the consumer, and everything before it is applied."""
        new = [tp for tp in tps if not input_order.knows(tp)]
        if not new:
            return
        try:
            starts = await probe.start_offsets(new)
        except Exception as exc:  # broker unreachable: the records are dropped, and sought back (_in_order)
            log.warning("input order: committed offsets unavailable (%s: %s); the batch is read again",
                        type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            return
        for tp in new:
            if tp in starts:
                input_order.start(tp, starts[tp])
                log.debug("input order: %s[%d] starts at %d", tp.topic, tp.partition, starts[tp])

    async def _on_gap(tp: Any, offset: int) -> Verdict:
        """A record past the partition's next offset: either the offsets between hold no records (transaction
        markers, retention) and it is the next one after all, or records were skipped and are read again."""
        expected = input_order.expected(tp)
        if tp not in app.consumer.assignment():
            input_order.rewound(tp, time.monotonic())  # not ours any more: the new owner reads it
            return Verdict.WAIT
        try:
            first = await probe.first_present(tp, expected)
        except Exception as exc:
            log.warning("input order: could not check %s[%d] at %d (%s); rewinding", tp.topic, tp.partition,
                        expected, type(exc).__name__)
            first = None
        if first is not None and first > expected:
            log.warning("input order: %s[%d] offsets %d..%d hold no records (transaction markers or retention)",
                        tp.topic, tp.partition, expected, first - 1)
            metrics.input_gaps.labels(tp.topic).inc()
            input_order.skip_absent(tp, first)
            v = input_order.judge(tp, offset, time.monotonic())
            if v is not Verdict.AHEAD:
                return v
            expected = first
        await _rewind(tp, expected)
        log.info("input order: %s[%d] delivered %d before %d; read again from %d", tp.topic, tp.partition,
                 offset, expected, expected)
        return Verdict.WAIT

    async def _rewind(tp: Any, offset: int) -> None:
        consumer = app.consumer
        try:
            await consumer.seek(tp, offset)
        except Exception as exc:  # revoked meanwhile: the next owner starts from the committed offset
            log.warning("input order: seek %s[%d] to %d failed (%s)", tp.topic, tp.partition, offset, exc)
        input_order.rewound(tp, time.monotonic())
        metrics.input_rewinds.labels(tp.topic).inc()

    # Every topic an agent reads: the account agent's inputs, the raw webhook topics and the cohort inputs.
    input_topics = {billing_name, usage_name, actions_name, settings.topic(settings.stripe_topic),
                    settings.topic(settings.segment_topic), cohort_inputs_name}

    def _input_tps(tps: Any) -> list[str]:
        return sorted(f"{tp.topic.rsplit('.', 1)[-1]}[{tp.partition}]" for tp in tps or () if tp.topic in input_topics)

    def _forget_faust_gaps() -> None:
        """Faust records an offset jump it delivers as a "gap" (meant for compacted topics) and, once a later
        offset is acknowledged, commits the gap as if processed and adds its offsets to its ack list (the
        re-read then acknowledges them again: the duplicates that made commits crawl). For our input topics
        the order guard accounts for every offset, so Faust's gaps are dropped before each batch: a gap
        exists only once the record that opened it was delivered, so it is gone before anything past it is
        acknowledged."""
        gaps = app.consumer._gap  # type: ignore[attr-defined]
        for tp in [tp for tp in gaps if tp.topic in input_topics]:
            del gaps[tp]

    async def _in_order(messages: list[Any]) -> list[tuple[Any, Verdict]]:
        """The batch's records that may be applied, each with its verdict: APPLY (next in its partition) or SEEN
        (applied before). The rest are dropped unacknowledged and read again (ADR 0007). Every agent that reads
        a topic goes through here, so none can lose records to a rebalance."""
        _forget_faust_gaps()
        await _start_partitions({msg.tp for msg in messages})
        now = time.monotonic()
        unstarted: dict[Any, int] = {}  # partition -> its first record dropped for want of a start offset
        accepted: list[tuple[Any, Verdict]] = []
        i, end = 0, len(messages)
        while (i := input_order.accept_run(messages, i, accepted)) < end:
            # The record is not the next of its partition (or its partition is not started): judged on its own.
            msg = messages[i]
            i += 1
            tp = msg.tp
            v = input_order.judge(tp, msg.offset, now)
            if v is Verdict.AHEAD:
                v = await _on_gap(tp, msg.offset)
            if v is Verdict.WAIT:
                _drop(msg)
                if not input_order.knows(tp):
                    unstarted.setdefault(tp, msg.offset)
                continue
            accepted.append((msg, v))
        for tp, offset in unstarted.items():  # nothing later may come to reveal the gap: read them again now
            if tp in app.consumer.assignment():
                log.info("input order: %s[%d] has no start offset yet; read again from %d", tp.topic,
                         tp.partition, offset)
                await _rewind(tp, offset)
        return accepted

    stalled_at: dict[Any, int] = {}  # input partition -> its next offset at the previous lag measurement

    async def _revive_stalled(highwaters: Mapping[Any, int]) -> None:
        """A partition holding records past its next offset that made no progress between two lag measurements
        (10 s) is read again from there. Covers what the order guard cannot see from records alone: records
        Faust dropped at the tail of a partition (nothing arrives after them to reveal the gap), and a rewind
        whose seek was undone."""
        tps = {tp: high for tp, high in highwaters.items() if tp.topic in input_topics and high is not None}
        await _start_partitions({tp for tp in tps if not input_order.knows(tp)})
        for tp, high in tps.items():
            if not input_order.knows(tp):
                continue
            expected = input_order.expected(tp)
            if high <= expected:
                stalled_at.pop(tp, None)
            elif stalled_at.get(tp) == expected:
                log.info("input order: %s[%d] holds records from %d to %d, none applied for 10 s; read again",
                         tp.topic, tp.partition, expected, high - 1)
                stalled_at.pop(tp)
                await _rewind(tp, expected)
            else:
                stalled_at[tp] = expected

    def _drop(msg: Any) -> None:
        """Take a record out of Faust's acknowledgement: never committed, so it is read again."""
        msg.acked = True  # Faust's ack() then skips it (no offset recorded)
        app.consumer._unacked_messages.discard(msg)  # type: ignore[attr-defined]  # nor waited for at rebalance

    # ADR 0009: usage is applied only up to the event time its billing partition has been read to (or once that
    # partition is fully read), so billing read behind usage (after a restart, a broker outage) still meets the
    # account's state before the usage dated after it. Waiting records are held here, unacknowledged.
    gate: UsageGate[tuple[DecodedRecord, Any]] = UsageGate(max_wait_s=settings.usage_wait_max_s)
    # One batch at a time, including the timer's release of waiting usage: records of one partition must reach
    # the state in offset order.
    batch_lock = asyncio.Lock()

    def _billing_caught_up(partition: int) -> bool:
        """Nothing left to fetch from the billing partition of this number: this worker applied it up to the
        high watermark of the consumer's last fetch answer for it, and that answer is no older than the last one
        for the usage partition (`billing_read_to_end`)."""
        tp = TP(billing_name, partition)
        if tp not in app.consumer.assignment():
            return True  # not ours (co-partitioning broken by hand): nothing of it will come here
        if not input_order.knows(tp):
            return False
        try:
            high = app.consumer.highwater(tp)
        except Exception:  # not fetched yet, or revoked meanwhile
            return False
        return billing_read_to_end(input_order.expected(tp), high, last_fetch_ms(app, tp),
                                   last_fetch_ms(app, TP(usage_name, partition)))

    async def _align(items: list[DecodedRecord], messages: list[Any]
                     ) -> tuple[list[DecodedRecord], list[Any], list[Any]]:
        """The records to apply now, the messages of waiting records released by this call (to acknowledge once
        applied) and the messages of this batch that start waiting. Billing and alert actions always pass; usage
        passes up to its billing partition's bound."""
        partitions = partitions_to_check(gate, items, usage_name)
        if partitions:
            await _start_partitions({TP(billing_name, p) for p in partitions})
        aligned = align(gate, zip(items, messages, strict=True), usage_name, billing_name, _billing_caught_up,
                        time.monotonic())
        # Deferred messages are out of Faust's acknowledgement like the whole batch (_apply_batch_locked) and are
        # left out of the flush's acknowledgements until released.
        if aligned.deferred:
            metrics.usage_waited.inc(len(aligned.deferred))
        for p, n in aligned.forced.items():
            metrics.usage_forced.inc(n)
            log.warning("usage[%d]: %d records waited past the limit for billing[%d] and are applied without it "
                        "(ADR 0009)", p, n, p)
        if partitions:
            metrics.usage_waiting.set(gate.count())
        return aligned.ready, aligned.released, aligned.deferred

    # ADR 0011: the canonical topics' records reach this agent in whole batches straight from Faust's fetch loop,
    # not one by one through its stream (about 215 CPU-µs a record on the development machine). The agent stays
    # declared on the topics, so Faust still subscribes to them and assigns the tables' partitions with them.
    batch_input = BatchInput((billing_name, usage_name, actions_name), settings.batch_size)
    install_batch_input(app, batch_input)
    install_changelog_recovery(app)  # ADR 0027
    refuse_unpinned_take_events()  # ADR 0029: the two agents on Faust streams take batches with the copy
    bound_fetch_wait(app, settings.fetch_max_wait_ms, settings.fetch_min_bytes)
    ctx.batch_input = batch_input  # Faust's flow control holds it weakly

    @app.agent(topics["canonical"], concurrency=1)  # concurrency=1: agents that write tables (faust #606)
    async def track_engagement(stream: Any) -> None:
        """Apply canonical billing/usage events to per-account state; one table write per account per batch."""
        inbound_time = app.monitor.stream_inbound_time  # Faust's stalled-stream check reads it per partition
        while True:
            messages = await batch_input.take(settings.batch_timeout_s)
            if not messages:
                continue
            now = time.monotonic()
            for tp in {msg.tp for msg in messages}:
                inbound_time[tp] = now
            try:
                await _apply_batch(messages)
            except Exception as exc:
                _fail_stop("track_engagement", exc)

    async def _apply_batch(events: list[Any]) -> None:
        """One batch: decode, apply, persist and publish (ADR 0005 for the order). With no events: applies usage
        that waited and may pass now (the lag timer's call)."""
        async with batch_lock:
            await _apply_batch_locked(events)

    async def _apply_batch_locked(events: list[Any]) -> None:
        started = time.perf_counter()
        gen = app.rebalancing_count
        records = []
        messages = []
        accepted = []  # applied, seen or re-routed: acknowledged by the flush after this batch
        rerouted = 0
        for msg, v in await _in_order(events):
            accepted.append(msg)
            key = msg.key
            # Records not on their account's partition would split an account's state across
            # workers: re-produce them keyed by account id (ADR 0002). A SEEN one was re-produced before.
            if key is not None and msg.partition != partition_of(key):
                if v is Verdict.APPLY:
                    target = topics["billing"] if msg.topic == billing_name else topics["usage"]
                    if msg.topic == actions_name:
                        target = topics["alert_actions"]
                    target.send_soon(key=key, value=msg.value)
                    rerouted += 1
                continue
            records.append(InputRecord(msg.value, msg.topic, msg.partition, msg.offset))
            messages.append(msg)
        if log.isEnabledFor(logging.DEBUG):
            seen: dict[Any, list[int]] = {}
            for msg in events:
                seen.setdefault(msg.tp, []).append(msg.offset)
            log.debug("input order: batch %s; %d applied or seen", {f"{tp.topic[-14:]}[{tp.partition}]": (
                o[0], o[-1], len(o)) for tp, o in seen.items()}, len(records))
        ready, released, deferred = await _align(decode_records(records, settings.max_event_bytes, actions_name),
                                                 messages)
        if not ready and not events:
            return
        async with state_lock:
            # Not between a rebalance's start and its completion: tables may be recovering, and a value loaded then
            # would enter the cache and outlive the recovery (the release timer can get here then; Faust's streams
            # cannot). Records dropped then are read again: the seek to the committed offset comes after.
            applied = _still(gen) and _settled()
            if applied:
                result = apply_decoded(ready, load_state, ctx.domain, max_event_bytes=settings.max_event_bytes,
                                       rules=ctx.rules)
                applied = await _publish(result.states, result.alerts, result.cohort_changed, gen,
                                         result.dead_letters)
                if applied:
                    # After the batch's cohort inputs are delivered, in the same step as cohort_sent is updated:
                    # the portfolio front never passes event time whose cohort inputs are not on the broker.
                    _advance_watermarks(result.usage_by_partition)
            # The batch's records leave Faust's acknowledgement only now, so a rebalance still waits for the batch
            # in flight (Faust's wait_empty). Applied, they are acknowledged by the flush that writes their states
            # (ADR 0010), which also hands re-routed records to the Kafka client first; otherwise (a rebalance
            # started meanwhile and the cache is dropped) never, and read again from the committed offset.
            for msg in events:
                _drop(msg)
            if not applied:
                return
            for account_id, agg in result.states.items():
                _track_holding(account_id.encode(), agg)
            waiting = {id(msg) for msg in deferred}  # acknowledged once the gate releases them
            # Written and acknowledged by the flush timer (flush_account_states), not here: a flush step holds the
            # state lock for up to state_flush_step_s plus its awaits, and one after every batch doubled the time
            # a batch waited while a flush ran (ADR 0015).
            cache.applied(ack_groups([msg for msg in accepted if id(msg) not in waiting] + released),
                          time.monotonic())
        now = time.time()
        metrics.record_events(result.tally)
        metrics.record_dead_letters(result.dead_letter_reasons)
        for stream, late in result.out_of_order().items():
            metrics.out_of_order.labels(stream).inc(late)
        if rerouted:
            metrics.events.labels("canonical", "unknown", "rerouted").inc(rerouted)
        if result.newest_event_s:
            metrics.event_time_lag.labels("canonical", "all").set(max(0.0, now - result.newest_event_s))
        metrics.batch_events.labels("track_engagement").inc(len(events))
        took = time.perf_counter() - started
        metrics.batch_duration.labels("track_engagement").observe(took)
        busy.add(took, time.monotonic())

    @app.timer(interval=RELEASE_CHECK_S)
    async def release_waiting_usage() -> None:
        """Usage waiting for its billing partition (ADR 0009) is released by the batch that brings the billing;
        when none comes (the billing partition turned out read to its end, or the input stopped), here."""
        if not gate.partitions_waiting():
            blocking_since.clear()
            return
        try:
            await _apply_batch([])
            await _revive_blocking_billing()
        except Exception as exc:
            _fail_stop("release_waiting_usage", exc)

    # Billing partition -> (its next offset, monotonic time first seen there) while usage waits for it.
    blocking_since: dict[Any, tuple[int, float]] = {}

    async def _revive_blocking_billing() -> None:
        """A billing partition that usage waits for, with records on the broker past its next offset and no
        progress for BLOCKING_PATIENCE_S, is read again from there at once, rather than at the 10-s stall check:
        records Faust dropped at a rebalance (ADR 0007) now hold up usage too."""
        now = time.monotonic()
        waiting = set(gate.partitions_waiting())
        for tp in [tp for tp in blocking_since if tp.partition not in waiting]:
            del blocking_since[tp]
        for p in waiting:
            tp = TP(billing_name, p)
            if not input_order.knows(tp) or tp not in app.consumer.assignment():
                continue
            try:
                high = app.consumer.highwater(tp)
            except Exception:
                continue
            expected = input_order.expected(tp)
            if high is None or high <= expected:
                blocking_since.pop(tp, None)
                continue
            seen = blocking_since.get(tp)
            if seen is None or seen[0] != expected:
                blocking_since[tp] = (expected, now)
            elif now - seen[1] >= BLOCKING_PATIENCE_S:
                log.info("input order: %s[%d] holds records from %d to %d that usage waits for, none applied "
                         "for %.0f s; read again", tp.topic, p, expected, high - 1, now - seen[1])
                del blocking_since[tp]
                await _rewind(tp, expected)

    async def _drain_send_buffer() -> None:
        buffer = app.producer.buffer
        while buffer.size:
            await buffer.flush_atmost(buffer.size)

    advanced_wall: dict[int, float] = {}  # partition -> wall time its watermark last moved

    def _advance_watermarks(newest_usage: dict[int, float]) -> None:
        """Per partition: newest usage event time minus a bounded out-of-orderness delay (never backwards)."""
        now = time.monotonic()
        for partition, at in newest_usage.items():
            mark = at - settings.watermark_delay_s
            if mark > watermarks.get(partition, 0.0):
                watermarks[partition] = mark
                advanced_wall[partition] = now

    def _effective_watermark(partition: int) -> float | None:
        """The partition's watermark; an idle partition follows the highest watermark of this worker, so its
        silent accounts still age (ADR 0004). Idle = no new usage for idle_partition_s of wall time AND a lag
        measurement since found nothing left to read on it: a partition that is merely behind (a broker
        outage, a catch-up) must not jump ahead of its own unread usage."""
        mark = watermarks.get(partition)
        moved = advanced_wall.get(partition, 0.0)
        idle = (time.monotonic() - moved >= settings.idle_partition_s
                and usage_read_at.get(partition, 0.0) > moved)
        if idle and watermarks:
            return max(mark or 0.0, max(watermarks.values()))
        return mark

    # Accounts whose health record changed but was not urgent: published together every publish_interval_s.
    health_schedule: HealthSchedule[AccountAggregate] = HealthSchedule()

    def _emit_health(account_id: str, agg: AccountAggregate) -> None:
        key = account_id.encode()
        health = read_model(agg, ctx.domain)
        body = orjson.dumps(health)
        health_out.put(key, body)
        if sink is not None:
            sink.put(f"{key_prefix}account:{account_id}", body)
            sink.put_score(f"{key_prefix}accounts:by_score", account_id, float(health["score"]))
        health_schedule.published(account_id, time.monotonic())

    # ADR 0015: outputs sent by batches and ticks (alerts, dead letters, cohort inputs) whose delivery the next flush
    # step awaits before it writes any account state: a state that records them as done never reaches the
    # changelog before they reach the broker (ADR 0005), and a batch does not wait a produce round trip.
    in_flight: list[Any] = []
    cohort_in_flight = [0]  # cohort inputs sent and not yet delivered: the portfolio front waits for them

    def _track_delivery(sent: Any) -> None:
        if len(in_flight) >= 10_000:  # long between flushes (many dead letters): keep only the undelivered
            in_flight[:] = [f for f in in_flight if not f.done()]
        in_flight.append(sent)
        sent.add_done_callback(_check_delivery)

    def _check_delivery(sent: Any) -> None:
        """A failed delivery stops the worker at once, as an awaited one did (ADR 0005): the records that
        produced it are not acknowledged yet and are read again on restart."""
        if not sent.cancelled() and (exc := sent.exception()) is not None:
            _fail_stop("output delivery", exc)

    def _cohort_delivered(sent: Any) -> None:
        cohort_in_flight[0] -= 1
        if not sent.cancelled() and sent.exception() is None:
            cohort_sent[0] = max(cohort_sent[0], sent.result().offset)

    def _alert_latency(event_s: float) -> Any:
        def observe(sent: Any) -> None:
            if not sent.cancelled() and sent.exception() is None:
                metrics.event_to_alert.observe(max(0.0, time.time() - event_s))
        return observe

    async def _await_deliveries() -> None:
        """Every output sent so far is on the broker (a failed one stopped the worker: _check_delivery)."""
        while in_flight:
            pending = [f for f in in_flight if not f.done()]
            in_flight.clear()
            if pending:
                await asyncio.gather(*pending)

    async def _publish(
        states: dict[str, AccountAggregate], alerts: list[Any], cohort_changed: set[str] | frozenset[str],
        gen: int, dead_letters: list[Any] | tuple[()] = (),
    ) -> bool:
        """Persist and publish what a batch or a tick changed, in the order that keeps at-least-once true
        across a SIGKILL at any point (ADR 0005). False when a rebalance started meanwhile: nothing is kept.

        1. alerts, dead letters and cohort inputs are sent; the next flush step awaits their delivery before it
           writes any state (ADR 0015): the state records them as done (alert book, offsets), so it must never
           reach the changelog before they do. Killed before that write, the restarted worker recomputes them
           with the same ids (a raw duplicate that consumers dedupe by record id), never a loss;
        2. the changed states are marked for the next flush (ADR 0010), which writes each to the table once;
        3. health records: coalesced per account and published by the health timer, at most every
           publish_interval_s, unless the account has a new alert transition or cohort change or was never
           published (`publishes_health_now`). A killed worker's pending records are re-published by the new
           owner after the rebalance (mark_ready).
        The caller holds `state_lock`, so a tick and a batch never interleave on the table."""
        alerted = set()
        for record in alerts:
            sent = await topics["alerts"].send(
                key=record.account_id.encode(), value=record.model_dump_json().encode())
            _track_delivery(sent)
            if record.transition == "opened" and record.triggered_by_event_at is not None:
                sent.add_done_callback(_alert_latency(record.triggered_by_event_at.timestamp()))
            metrics.alerts.labels(record.trigger, record.severity, record.transition).inc()
            alerted.add(record.account_id)
        for dl in dead_letters:
            _track_delivery(await topics["dead_letters"].send(
                key=(dl.account_id or "").encode() or None, value=dl.model_dump_json().encode()))
        for account_id in cohort_changed:
            agg = states.get(account_id)
            if agg is not None:
                sent = await topics["cohort_inputs"].send(
                    key=account_id.encode(), value=cohort_snapshot(agg, settings.segment_dimension))
                _track_delivery(sent)
                cohort_in_flight[0] += 1
                sent.add_done_callback(_cohort_delivered)
        if not _still(gen):  # `states` are values of the dropped cache
            return False
        changed_accounts(cache, states, time.monotonic())
        for account_id in health_schedule.route(states, alerted, cohort_changed):
            _emit_health(account_id, states[account_id])
        return True

    # Keys of owned accounts still to re-publish after a rebalance or restart (see mark_ready).
    republish: list[bytes] = []

    publish_tick_s = min(PUBLISH_TICK_MAX_S, settings.publish_interval_s)
    republish_chunk = max(1, int(REPUBLISH_PER_S * publish_tick_s))

    @app.timer(interval=publish_tick_s)
    async def publish_pending_health() -> None:
        """The coalesced health records of accounts whose last publish is publish_interval_s old; after a
        rebalance, also every owned account, a chunk per tick, so records held in memory by a killed worker are
        not lost. Under `state_lock` (the values are the cache's), held at most about state_flush_step_s at a time
        (ADR 0015); at most `health_publish_quota` records a tick, longest-waiting first (ADR 0017)."""
        now = time.monotonic()
        interval = settings.publish_interval_s
        quota = health_publish_quota(len(health_schedule), publish_tick_s, interval)
        # The longest-waiting first, at most the quota; the rest wait for the next tick.
        steps = Steps(health_schedule.take_due(now, interval, quota), _step_s)
        tick_began, work_s = time.perf_counter(), 0.0
        while steps.left:
            async with state_lock:
                if not _settled():
                    # Pending values may be of the previous assignment; re-publishing resumes after it.
                    health_schedule.put_back(steps.items[steps.done:])
                    return
                began = time.perf_counter()
                for account_id in steps.step():
                    agg = health_schedule.pending.get(account_id)
                    # Gone, or pending again after a batch published it meanwhile: not due (yet).
                    if agg is not None and health_schedule.is_due(account_id, now, interval):
                        _emit_health(account_id, agg)
                step_s = time.perf_counter() - began
                held_health.observe(step_s)
            # Spread over half the tick (ADR 0031): back to back, the steps held the input path up; past the tick,
            # Faust's timer would warn that it overlaps.
            work_s += step_s
            await asyncio.sleep(pause_after_step(step_s, settings.background_duty, time.perf_counter() - tick_began,
                                                 publish_tick_s / 2, work_s=work_s, done=steps.done,
                                                 left=len(steps.items) - steps.done) if steps.left else 0)
        async with state_lock:
            if not _settled():
                return
            chunk, republish[:] = republish[:republish_chunk], republish[republish_chunk:]
            if not chunk:
                return
            owned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == billing_name}
            for key in chunk:
                if partition_of(key) not in owned:
                    continue  # a standby copy: the active owner publishes it
                loaded = cache.get(key, _load_into_cache)
                if loaded is not None:
                    _emit_health(key.decode(), loaded)
            if len(health_schedule.last_published) > 2 * max(len(table), 1) + 10_000:  # bound memory after rebalances
                health_schedule.forget_unowned(lambda account_id: partition_of(account_id.encode()) in owned)

    # Often enough that a flush is at most this late after state_flush_interval_s (monotonic seconds). A paced flush
    # runs longer than this (ADR 0020): `every`, not `app.timer`, so that is not logged as a warning.
    @every(app, min(1.0, max(0.05, settings.state_flush_interval_s / 2)))
    async def flush_account_states() -> None:
        """Changed account states are written once they waited state_flush_interval_s (ADR 0010). The one place a
        flush starts and runs (ADR 0015): a step at a time with the lock released in between, so batches waiting
        for the lock go first (asyncio.Lock is first come, first served)."""
        try:
            while True:
                # What a step would wait for with the lock held, waited for without it, so batches run meanwhile:
                # the outputs the states record as done (ADR 0015) and, before the last step acknowledges its
                # records, Faust's send buffer (the step drains again what batches added since, usually nothing).
                await _await_deliveries()
                if cache.flushing and not cache.writes_left:
                    await _drain_send_buffer()
                async with state_lock:
                    began = time.perf_counter()
                    staged = await _flush_step()
                    step_s = time.perf_counter() - began
                if staged is not None or to_acknowledge:  # a step that wrote states, or the one that ended the flush
                    held_flush.observe(step_s)
                if staged is not None:
                    # Delivered before the next step (ADR 0016): the producer holds at most one step of changelog,
                    # so outputs sent meanwhile (alerts) do not queue behind a whole flush (aiokafka has one
                    # request in flight per broker), and records are acknowledged after their states are stored.
                    await asyncio.gather(*await changelog.send(staged))
                if to_acknowledge:
                    await _acknowledge_in_steps(int(flush_began[0]))
                if not cache.flushing or not _settled() or not _still(int(flush_began[0])):
                    break
                await asyncio.sleep(_flush_pause(step_s))
        except Exception as exc:
            _fail_stop("flush_account_states", exc)

    # Monotonic time of the last lag measurement that found every owned input partition fully read (0: never),
    # and per usage partition number, the last one that found that partition fully read.
    caught_up_at = [0.0]
    usage_read_at: dict[int, float] = {}

    # Accounts of this worker holding billing events (ADR 0006): key -> time of the oldest held event, epoch s.
    # Rebuilt after a restart or rebalance by the next tick, which scans every account it owns.
    holding: dict[bytes, int] = {}

    def _track_holding(key: bytes, agg: AccountAggregate) -> None:
        if agg.held:
            holding[key] = agg.held[0][0]
        else:
            holding.pop(key, None)

    def _effective_front(mark: float) -> float:
        """The usage front for a partition whose watermark is `mark`: its newest usage event time. When no
        usage at all arrived for idle_partition_s of wall time, the wall clock (held billing dated up to now
        must not wait for usage that may not come)."""
        front = mark + settings.watermark_delay_s
        if _input_exhausted():
            front = max(front, time.time())
        return front

    def _input_exhausted() -> bool:
        """No usage arrived for idle_partition_s of wall time AND a lag measurement since the last usage found
        nothing left to read: the input stopped, rather than the worker or the broker (during an outage the
        measurement fails, so held billing keeps waiting)."""
        if not advanced_wall:
            return False
        last_usage = max(advanced_wall.values())
        return time.monotonic() - last_usage >= settings.idle_partition_s and caught_up_at[0] > last_usage

    @app.timer(interval=settings.alert_tick_s)
    async def advance_event_time() -> None:
        """Day ends and held billing up to the usage fronts (`_end_days_and_release`); then, once every cohort
        input they caused was sent, those fronts are reported for the portfolio (ADR 0025)."""
        if not _settled():
            return  # tables may be recovering, and the assignment is the previous one's
        gen = app.rebalancing_count
        fronts = await _end_days_and_release()
        if fronts is None or not _still(gen):
            return  # interrupted (a rebalance): the next tick ends the rest
        ticked_fronts.clear()
        ticked_fronts.update(_usage_fronts(fronts))
        await _report_usage_fronts()

    def _usage_fronts(fronts: dict[int, float]) -> dict[int, float]:
        """Of the fronts a tick ended days and released billing up to, those of the usage partitions this worker
        owns actively. A partition without a watermark gets the wall clock once the input is exhausted and a lag
        measurement of this assignment found it read to its end (after a rebalance the exhaustion can be the
        previous assignment's, and the partition's records not yet read again); otherwise none: it holds the
        portfolio front (ADR 0025)."""
        owned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == usage_name}
        usage = {p: f for p, f in fronts.items() if p in owned}
        if _input_exhausted():
            now = time.time()
            usage.update({p: now for p in owned if p not in usage and p in usage_read_at})
        return usage

    async def _report_usage_fronts() -> None:
        """Send the fronts that moved since the last report on the cohort-inputs topic, after the cohort inputs
        they cover: one partition, so the cohort owner's collector applies those first (ADR 0025)."""
        moved = {p: f for p, f in ticked_fronts.items() if f > reported_fronts.get(p, float("-inf"))}
        if not moved:
            return
        sent = await topics["cohort_inputs"].send(key=USAGE_FRONTS_KEY, value=encode_usage_fronts(moved))
        _track_delivery(sent)  # a failed delivery stops the worker, as for every output (ADR 0005)
        reported_fronts.update(moved)

    async def _end_days_and_release() -> dict[int, float] | None:
        """Day ends each owned partition's watermark has passed (time-driven rules such as inactivity, renewal,
        activation stalled) and held billing its usage front has passed. Returns those fronts (partition -> epoch
        seconds; none before the first watermark), or None when it did not finish: tables not settled, or a
        rebalance started.

        In steps of at most state_flush_step_s under `state_lock`, batches running in between (ADR 0016): when a
        watermark passes midnight UTC, every account of its partition is due at once (~0.15 ms each, more when
        its state is decoded from the table), and one lock hold over 50,000 accounts would stop the stream for
        seconds. An account a batch reaches first has its day ends closed by that batch (`close_days`); the
        tick then finds nothing open for it."""
        if not watermarks:
            return {}
        from datetime import UTC, datetime

        owned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == billing_name
                 or tp.topic == settings.topic(settings.usage_topic)}
        marks = {p: m for p in owned if (m := _effective_watermark(p)) is not None}
        fronts = {p: _effective_front(m) for p, m in marks.items()}
        # Rules are day-granular: a partition is scanned once per event-time day its watermark reaches.
        todo = {p for p, m in marks.items() if int(m // 86400) > ticked_day.get(p, -1)}
        releasable = [k for k, at in holding.items() if at <= fronts.get(partition_of(k), 0.0)]
        if not _settled():
            return None  # tables may be recovering (their values must not enter the cache)
        if not todo and not releasable:
            return fronts
        gen = app.rebalancing_count
        # Every owned account of the partitions to day-end: those in the table, and those only in the cache
        # (first seen since the last flush).
        keys = [k for k in table if partition_of(k) in todo] if todo else []
        if todo:
            keys += [k for k in cache.dirty_keys() if partition_of(k) in todo and k not in table]
        keys += [k for k in releasable if partition_of(k) not in todo]
        mark_at = {p: datetime.fromtimestamp(m, tz=UTC) for p, m in marks.items()}
        front_at = {p: datetime.fromtimestamp(f, tz=UTC) for p, f in fronts.items()}
        n_changed = n_cohort = 0
        steps = Steps(keys, _step_s)
        while steps.left:
            async with state_lock:
                if not _settled() or not _still(gen):
                    return None  # the next tick scans again; the accounts ticked so far have nothing left open
                began = time.perf_counter()
                changed: dict[str, AccountAggregate] = {}
                cohort_changed: set[str] = set()
                alerts: list[Any] = []
                for key in steps.step():
                    agg = cache.get(key, _load_into_cache)
                    if agg is None:
                        continue
                    partition = partition_of(key)
                    front_before = agg.front_s
                    ticked = tick(agg, mark_at[partition], ctx.rules, front_at[partition])
                    _track_holding(key, agg)
                    # A moved usage front alone is written too: the cached value the next batch meets has it, so
                    # the table must, or a worker recovering from it would hold billing the uninterrupted one
                    # applies.
                    if ticked.alerts or ticked.changed or agg.front_s != front_before:
                        changed[agg.account_id] = agg
                        alerts.extend(ticked.alerts)
                    if ticked.ledger_changed:
                        cohort_changed.add(agg.account_id)
                if changed and not await _publish(changed, alerts, cohort_changed, gen):
                    return None
                n_changed += len(changed)
                n_cohort += len(cohort_changed)
                held_tick.observe(time.perf_counter() - began)
            await asyncio.sleep(0)
        for p in todo:
            ticked_day[p] = int(marks[p] // 86400)
        log.debug("tick: %d partitions to day-end, %d accounts releasable, %d holding, exhausted %s, "
                 "%d changed, %d cohort inputs", len(todo), len(releasable), len(holding), _input_exhausted(),
                 n_changed, n_cohort)
        return fronts

    @app.agent(topics["raw"], concurrency=1)
    async def normalize_raw_events(stream: Any) -> None:
        """Adapt Stripe / Segment payloads to canonical events, keyed by account, on the canonical topics."""
        stripe_name = settings.topic(settings.stripe_topic)
        async for events in take_events(stream, settings.batch_size, within=settings.batch_timeout_s):
            try:
                await _normalize(events, stripe_name)
            except Exception as exc:
                _fail_stop("normalize_raw_events", exc)

    async def _normalize(events: list[Any], stripe_name: str) -> None:
        """Stripe / Segment records -> canonical events on the billing and usage topics, or dead letters."""
        tally: Counter[tuple[str, str, str]] = Counter()
        reasons: Counter[str] = Counter()
        for msg, v in await _in_order([ev.message for ev in events]):
            if v is Verdict.SEEN:
                continue  # converted before: its canonical events are on the topics already
            kind: TopicKind = "stripe" if msg.topic == stripe_name else "segment"
            out = decode_for_topic(
                msg.value, kind, topic=msg.topic, partition=msg.partition, offset=msg.offset,
                config=ingest_config,
            )
            if isinstance(out, Skipped):
                tally[(msg.topic, str(out.reason), "skipped")] += 1
                continue
            for decoded in out:
                canonical, dl = decoded.event, decoded.dead_letter
                if canonical is not None:
                    target = topics["billing"] if canonical.type in BILLING_TYPES else topics["usage"]
                    await target.send(
                        key=canonical.account_id.encode(), value=canonical.model_dump_json().encode()
                    )
                    tally[(msg.topic, canonical.type, "converted")] += 1
                elif dl is not None:
                    await topics["dead_letters"].send(key=msg.key, value=dl.model_dump_json().encode())
                    reasons[str(dl.reason)] += 1
                    tally[(msg.topic, "unknown", "dead_lettered")] += 1
        metrics.record_events(tally)
        metrics.record_dead_letters(reasons)

    @app.agent(topics["cohort_inputs"], concurrency=1)
    async def collect_cohort_inputs(stream: Any) -> None:
        """Keep the newest cohort snapshot per account (latest wins, so redelivery is harmless)."""
        async for events in take_events(stream, settings.batch_size, within=settings.batch_timeout_s):
            try:
                await _ensure_changelog_metadata()
                # Only APPLY: a SEEN snapshot is older than one already in the table for its account.
                latest = {}
                fronts = None
                for msg, v in await _in_order([ev.message for ev in events]):
                    if v is not Verdict.APPLY:
                        continue
                    if msg.key == USAGE_FRONTS_KEY:  # every worker's reports, merged (ADR 0025)
                        fronts = merge_usage_fronts(fronts or cohort_table.get(USAGE_FRONTS_KEY), msg.value)
                    else:
                        latest[msg.key] = msg.value
                for key, value in latest.items():
                    cohort_table[key] = value
                if fronts is not None:
                    cohort_table[USAGE_FRONTS_KEY] = fronts
                if latest:
                    ctx.cohort_dirty = True
                cohort_applied[0] = max([cohort_applied[0]] + [ev.message.offset for ev in events])
                await _drain_send_buffer()  # changelog writes handed to the client before this batch is acked
            except Exception as exc:
                _fail_stop("collect_cohort_inputs", exc)

    # The cohort and company figures, kept up to date refresh by refresh (one refresh at a time: the timer awaits it).
    portfolio_builder = PortfolioBuilder(gross_margin=settings.gross_margin)

    @every(app, settings.cohort_refresh_s)  # paced (ADR 0020): ~10x its CPU time, which grows with changed accounts
    async def refresh_portfolio() -> None:
        """Recompute cohort and company metrics on the worker that owns the cohort-inputs partition when its
        inputs changed; publish the portfolio alerts of months that became final."""
        if not _owns(app, cohort_inputs_name, 0):
            return
        # Only final months (the event-time front past their end plus the lateness allowance): interim figures
        # would give one record id two bodies across recomputations and restarts. The front moves only while
        # every cohort input this worker sent is in the cohort table, and it is taken before the table is read:
        # a month is never final in a portfolio computed without cohort inputs dated in it.
        backlog_read = await _cohort_backlog_read()
        if portfolio_front_may_move(backlog_read, cohort_in_flight[0], cohort_sent[0], cohort_applied[0]):
            portfolio_front[0] = _portfolio_front()
        front = portfolio_front[0]
        if ctx.cohort_dirty:
            ctx.cohort_dirty = False
            snapshots = [(k.decode(), v) for k, v in cohort_table.items() if k != USAGE_FRONTS_KEY]
            # Only accounts whose snapshot changed since the last refresh are decoded and summed again.
            fresh_portfolio = await asyncio.get_running_loop().run_in_executor(
                None, lambda: portfolio_builder.refresh(snapshots, pace=Pacer(settings.background_duty))
            )
            ctx.portfolio = fresh_portfolio
            metrics.record_portfolio(fresh_portfolio)
            if sink is not None:
                for month in fresh_portfolio.months:
                    if month.segment is None:
                        sink.put(f"{key_prefix}company:{month.month}", orjson.dumps(month.as_dict()))
                sink.put(f"{key_prefix}cohorts", orjson.dumps(fresh_portfolio.cells_json()))
                sink.put(f"{key_prefix}company", orjson.dumps(fresh_portfolio.months_json()))
        portfolio = ctx.portfolio
        if portfolio is None:
            return
        records = portfolio_alert_records(portfolio, ctx.rules.thresholds, final_until_s=front,
                                          lateness_days=ctx.domain.allowed_lateness_days)
        for record in records:
            if record.record_id in published_portfolio:
                continue
            topics["alerts"].send_soon(key=b"portfolio", value=record.model_dump_json().encode())
            metrics.alerts.labels(record.trigger, record.severity, record.transition).inc()
            published_portfolio.add(record.record_id)

    async def _cohort_backlog_read() -> bool:
        """`cohort_backlog_read` for the current assignment; measures the partition's end once per assignment
        (after it settled: Faust seeks to the committed offsets right after mark_ready). A held front only delays
        portfolio alerts by a refresh interval or two; a front moved too early sends a record with two bodies."""
        gen = settled_generation[0]
        if not _settled():
            return False
        tp = TP(cohort_inputs_name, 0)
        if cohort_backlog_end[0] is None:
            try:
                high = (await app.consumer.highwaters(tp)).get(tp)
            except Exception as exc:  # the broker unreachable: measured again at the next refresh
                log.debug("cohort inputs: high watermark not measured (%s: %s)", type(exc).__name__, exc)
                return False
            if high is None or not _still(gen):  # a rebalance meanwhile: its mark_ready reset the measurement
                return False
            cohort_backlog_end[0] = high
            if high > 0:
                log.info("cohort inputs: the portfolio front waits until offset %d is in the cohort table", high - 1)
            else:
                log.info("cohort inputs: the topic is empty, the portfolio front need not wait for a backlog")
        committed = app.consumer._committed_offset.get(tp)  # type: ignore[attr-defined]  # Faust: last commit
        return cohort_backlog_read(cohort_backlog_end[0], cohort_applied[0], committed)

    def _portfolio_front() -> float:
        """The event time every usage partition has reached (`portfolio_front_of`): this worker's own partitions'
        fronts as its last completed tick left them, and the fronts other workers reported on the cohort-inputs
        topic (ADR 0025), which this collector has applied, so their cohort inputs are in the table. The lowest,
        not the highest: one partition running ahead after a restart called a month final before another
        partition's cohort snapshots for it arrived (one company_nps record id with two bodies, 20 vs 17 NPS
        answers, in a clean-clone SIGKILL check); with several workers, each knows only its own partitions."""
        own = {p: f for p, f in ticked_fronts.items() if _owns(app, usage_name, p)}
        fronts = usage_fronts_of(settings.topic_partitions, own,
                                 decode_usage_fronts(cohort_table.get(USAGE_FRONTS_KEY)))
        front = portfolio_front_of(fronts)
        metrics.record_portfolio_front(front, fronts)  # which partition holds portfolio alerts back, if any
        return front

    @app.timer(interval=10.0)
    async def report_table_sizes_and_lag() -> None:
        """Table sizes and consumer lag for the metrics; with the high watermarks at hand, the order guard's
        stall check (ADR 0007) and the input-exhausted bookkeeping of held billing (ADR 0006)."""
        metrics.table_keys.labels("account_to_state").set(len(table))
        metrics.table_keys.labels("account_to_cohort_inputs").set(len(cohort_table))
        consumer = app.consumer
        try:
            assigned = [tp for tp in app.assignor.assigned_actives() if not tp.topic.endswith("-changelog")]
            highwaters = await consumer.highwaters(*assigned) if assigned else {}
        except Exception:
            return
        measured_at = time.monotonic()  # after the answer: during an outage the call blocks for a long time
        await _revive_stalled(highwaters)
        committed = consumer._committed_offset  # type: ignore[attr-defined]  # Faust: last commit per partition
        behind = 0
        first_behind = ""
        for tp in assigned:
            high = highwaters.get(tp)
            if high is None:
                continue  # no answer for it (Faust's own leader topic, for one): says nothing either way
            done = committed.get(tp)
            # Faust commits the offset of the next record to read (last acked + 1), like Kafka itself.
            lag = high - (done if done is not None else 0)
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, lag))
            if lag > 0:
                behind += 1
                first_behind = first_behind or f"{tp.topic}[{tp.partition}] high {high} committed {done}"
            if lag <= 0 and tp.topic == usage_name:
                usage_read_at[tp.partition] = measured_at
        if assigned and not behind:
            caught_up_at[0] = measured_at
        elif log.isEnabledFor(logging.DEBUG):  # where the agent waits while input is left: diagnosing stalls
            log.debug("input lag: fetching %s; paused %s; held back by buffer pressure %s",
                      _input_tps(getattr(consumer, "_active_partitions", None)),
                      _input_tps(getattr(consumer, "_paused_partitions", None)),
                      _input_tps(getattr(consumer, "_buffered_partitions", None)))
        log.debug("input lag: %d of %d partitions behind%s; exhausted %s; portfolio months %s", behind,
                 len(assigned), f" (first: {first_behind})" if first_behind else "", _input_exhausted(),
                 [m.month for m in ctx.portfolio.months if m.segment is None] if ctx.portfolio else None)

    @app.task
    async def start_sink() -> None:
        if sink is not None:
            await sink.start()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def mark_ready(sender: Any, **kwargs: Any) -> None:
        ctx.ready = True
        _drop_cache()
        settled_generation[0] = app.rebalancing_count
        ctx.cohort_dirty = True  # a new owner of the cohort partition recomputes once
        cohort_backlog_end[0] = None  # its backlog is measured again, after this assignment settled
        # Health records coalesced in memory by a worker that died are gone: re-publish what we now own.
        # (At-least-once for the read model; every record is a whole value, so repeats are harmless.)
        republish[:] = list(table.keys())
        # Every partition starts again from the group's committed offset (ADR 0007).
        input_order.reset()
        stalled_at.clear()
        # Waiting usage was never acknowledged: it is read again from the committed offset, like the rest.
        gate.forget()
        blocking_since.clear()
        metrics.usage_waiting.set(0)
        # Accounts that arrived with this rebalance may hold billing this worker has never seen: the next tick
        # scans every owned account once (rebuilding `holding`), as after a restart.
        ticked_day.clear()
        # Event time starts again with the input, as after a restart (ADR 0014): the previous assignment's
        # watermarks are ahead of the records now read again, and a tick at them would day-end a partition before
        # its accounts are back (those not in the table are skipped, and their last day ends never evaluated).
        # A partition counts as read (so idle, ADR 0004) only after a lag measurement of this assignment.
        watermarks.clear()
        usage_read_at.clear()
        ticked_fronts.clear()  # this assignment's partitions report again from their first tick (ADR 0025)
        reported_fronts.clear()

    async def _stop_sink(*args: Any, **kwargs: Any) -> None:
        if sink is not None:
            await asyncio.shield(sink.stop())
        probe.close()

    app.on_before_shutdown.connect(_stop_sink)


def _owns(app: Any, topic: str, partition: int) -> bool:
    """Is this worker the active owner of topic/partition (not merely a standby)?"""
    try:
        return any(tp.topic == topic and tp.partition == partition for tp in app.assignor.assigned_actives())
    except Exception:  # pragma: no cover - assignor not ready during startup
        return False
