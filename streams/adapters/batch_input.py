"""Batch delivery of the account agent's input records from Faust's fetch loop, without its per-record path (ADR 0011).

Faust hands every fetched record to its agents one at a time: `Service.wait_first(callback(message),
suspend_flow.wait())` per record (two tasks created and cancelled), the conductor, the channel queue, the stream
iterator and an `Event` per record. On the 2-core development machine that costs about 215 CPU-µs per record,
which caps any agent on Faust's stream near 4,500 records/s whatever it does (ADR 0008). Here the fetch loop
appends the records of the chosen topics, a fetch answer at a time, to a list that the agent takes whole batches
from; records of every other topic still take Faust's conductor, with one race against a suspension of the flow per
partition of an answer instead of one per record (ADR 0027). Everything else stays Faust's: group membership and
assignment, the `Message` objects, `_unacked_messages` (so a rebalance waits for the batch in flight),
acknowledgement, commits, seeks, tables and changelogs.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
from collections.abc import Iterable
from itertools import zip_longest
from types import MethodType
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.types import TP
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

# Records buffered ahead of the agent, in multiples of its batch size: enough to have the next batch ready while
# one is applied, small enough that a rebalance does not discard much fetched work.
AHEAD_BATCHES = 2

# The fetch loop lets other tasks run after handing over this many records of one fetch answer (Faust's loop: 100).
YIELD_EVERY = 500

# sha256 of the source of faust-streaming 0.15.3's `Consumer._drain_messages`, the method `_make_drain` copies. The
# copy is installed only over that exact method: another Faust version must be re-checked first (ADR 0011).
FAUST_DRAIN_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"
# sha256 of the source of faust-streaming 0.15.3's `Consumer.getmany`, whose per-record loop the copy does a fetch
# answer at a time.
FAUST_GETMANY_SHA256 = "4b168d84882a70d6e3e2f9804430a63b92f8fd117d3187cbb4aeb54305bda34e"
# sha256 of the source of faust-streaming 0.15.3's `Consumer.ack`, whose bookkeeping `acknowledge` does in bulk.
FAUST_ACK_SHA256 = "5fcf41cf45153475de3790dc56fec1b83335956dc8b3bf7ff6bbb2b57627f03f"
# sha256 of the source of faust-streaming 0.15.3's `Consumer._new_offset`, which `new_offset` replaces (ADR 0024).
FAUST_NEW_OFFSET_SHA256 = "1d2c7ea89a7ad4f1a216c1d51936e569162cd66bd56f889e13fd29c910b58eb0"


# Records applied and not yet acknowledged, one per partition of a batch: (topic, partition, offsets in order).
# Not the Faust messages, nor a tuple per record: either kept ~10 s of input alive until the flush, and that was
# most of what each young garbage collection traversed (ADR 0019).
Ack = tuple[str, int, list[int]]


class FaustVersionError(RuntimeError):
    """The installed Faust's fetch loop is not the one this module copies."""


def faust_drain_matches() -> bool:
    """Whether the installed Faust's fetch loop is the one `_make_drain` copies."""
    return source_hash(Consumer._drain_messages) == FAUST_DRAIN_SHA256


def faust_getmany_matches() -> bool:
    """Whether the installed Faust's `Consumer.getmany` is the one `_make_drain` does a fetch answer at a time."""
    return source_hash(Consumer.getmany) == FAUST_GETMANY_SHA256


def faust_ack_matches() -> bool:
    """Whether the installed Faust's `Consumer.ack` keeps the bookkeeping `acknowledge` does in bulk."""
    return source_hash(Consumer.ack) == FAUST_ACK_SHA256


def faust_new_offset_matches() -> bool:
    """Whether the installed Faust's `Consumer._new_offset` is the one `new_offset` gives the same answers as."""
    return source_hash(Consumer._new_offset) == FAUST_NEW_OFFSET_SHA256


def source_hash(method: Any) -> str | None:
    """sha256 of a Faust method's source, what the FAUST_*_SHA256 pins hold; None when there is no source."""
    try:
        source = inspect.getsource(method)
    except (OSError, TypeError):  # no source to compare (a frozen install): not known to match
        return None
    return hashlib.sha256(source.encode()).hexdigest()


def acknowledge(consumer: Any, acks: Iterable[Ack]) -> int:
    """Offsets, as (topic, partition, offsets) groups, acknowledged to Faust's consumer as its `Consumer.ack` does
    for a message, under one hold of its lock instead of one per record; returns how many were new.

    Through `ack` with a stand-in message (ADR 0019) a record cost ~1 µs, mostly the lock, and the
    acknowledgements were ~40 % of a flush's work at 15,000 events/s (ADR 0020); in bulk, ~0.06 µs. This is
    faust-streaming 0.15.3's bookkeeping (FAUST_ACK_SHA256, checked by `install`); a unit test keeps it in step
    with `ack` on a real consumer."""
    enabled = consumer.app.topics.acks_enabled_for
    committed_offsets, acked_index, acked = consumer._committed_offset, consumer._acked_index, consumer._acked
    added = 0
    with ack_lock:
        try:
            for topic, partition, offsets in acks:
                if not enabled(topic):
                    continue
                tp = TP(topic, partition)
                committed = committed_offsets[tp]
                index, acked_for_tp = acked_index[tp], acked[tp]
                for offset in offsets:
                    if (committed is None or offset >= committed) and offset not in index:
                        index.add(offset)
                        acked_for_tp.append(offset)
                        added += 1
        finally:
            consumer._n_acked += added
            notify(consumer._waiting_for_ack)  # as ack does: wakes a commit waiting for acknowledgements
    return added


def new_offset(consumer: Any, tp: TP) -> int | None:
    """Faust 0.15.3's `Consumer._new_offset`: the offset to commit for `tp` (one past the first run of consecutive
    acknowledged offsets, which it takes out of the bookkeeping; None when the run does not start right after the
    committed offset), with its common case done in C (ADR 0024).

    Faust finds the run with `itertools.groupby` and a lambda per offset: ~0.2 µs each, and a flush acknowledges
    ten seconds of input at once, so a commit held the event loop 25-32 ms at 19,000 events/s. Our input offsets
    are acknowledged without holes or repeats, so the run is usually the whole list: that is checked by comparing
    the sorted list with the range it would be, in C (2.4x faster for 190,000 offsets). Anything else, and
    partitions with Faust gaps (compacted topics), takes Faust's own method, unchanged."""
    acked = consumer._acked[tp]
    if not acked or consumer._gap[tp]:
        return _faust_new_offset(consumer, tp)
    acked.sort()
    first, count = acked[0], len(acked)
    committed = consumer._committed_offset[tp]
    if committed and first - committed > 1:
        return None  # as Faust: the offsets after the committed one are not all acknowledged yet
    if acked[-1] - first != count - 1 or acked != list(range(first, first + count)):
        return _faust_new_offset(consumer, tp)  # a hole or a repeated offset: Faust's search (the list is sorted)
    consumer._acked_index[tp].difference_update(acked)
    acked.clear()
    return first + count


_faust_new_offset = Consumer._new_offset


class BatchInput:
    """Records of `topics`, fetched and not yet taken by the agent, in fetch order (per partition: offset order)."""

    def __init__(self, topics: Iterable[str], batch_size: int) -> None:
        self.topics = frozenset(topics)
        self.batch_size = batch_size
        self.max_buffered = AHEAD_BATCHES * batch_size
        self._buf: list[Any] = []
        self._ready = asyncio.Event()  # set while at least one record waits
        self._full = asyncio.Event()  # set while a whole batch waits
        self._space = asyncio.Event()  # set while the fetch loop may add records
        self._space.set()

    def __len__(self) -> int:
        return len(self._buf)

    def put(self, message: Any) -> None:
        buf = self._buf
        buf.append(message)
        n = len(buf)
        if n == 1:
            self._ready.set()
        if n == self.batch_size:
            self._full.set()
        if n >= self.max_buffered:
            self._space.clear()

    def full(self) -> bool:
        return not self._space.is_set()

    async def wait_for_space(self) -> None:
        await self._space.wait()

    def clear(self) -> None:
        """Drop what was fetched and not taken. Faust calls this (flow control) when a rebalance starts and when
        it ends, as it does for its own stream buffers: the records are not acknowledged, so they are read again
        from the committed offset."""
        self._buf = []
        self._ready.clear()
        self._full.clear()
        self._space.set()

    async def take(self, within_s: float) -> list[Any]:
        """Up to `batch_size` records: waits for the first, then up to `within_s` seconds for a whole batch."""
        while not self._buf:
            await self._ready.wait()
            if not self._buf:  # cleared meanwhile
                self._ready.clear()
        if len(self._buf) < self.batch_size:
            deadline = time.monotonic() + within_s
            while len(self._buf) < self.batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._full.wait(), remaining)
                except TimeoutError:
                    break
                if len(self._buf) < self.batch_size:
                    self._full.clear()  # cleared by a rebalance, then refilled less than a batch
        n = self.batch_size
        batch, self._buf = self._buf[:n], self._buf[n:]
        left = len(self._buf)
        if not left:
            self._ready.clear()
        if left < n:
            self._full.clear()
        if left < self.max_buffered:
            self._space.set()
        return batch


def refuse_unless_pinned(matches: bool, method: str, use: str, adr: str, constant: str) -> None:
    """FaustVersionError, one line for the worker command, unless the installed Faust's `method` is the
    faust-streaming 0.15.3 one that `use` copies or relies on (`matches`: its source hash is `constant`)."""
    if not matches:
        import faust

        raise FaustVersionError(f"faust-streaming {faust.__version__}: {method} is not the one {use}; re-check it "
                                f"({adr}) and update {constant}")


def _refuse_unpinned_faust() -> None:
    """FaustVersionError unless every Faust method this module copies or replaces is faust-streaming 0.15.3's."""
    here = "streams/adapters/batch_input.py's"
    for matches, method, use, adr, constant in (
        (faust_drain_matches, "Consumer._drain_messages", "_make_drain copies", "ADR 0011", "FAUST_DRAIN_SHA256"),
        (faust_getmany_matches, "Consumer.getmany", "_make_drain copies", "ADR 0011", "FAUST_GETMANY_SHA256"),
        (faust_ack_matches, "Consumer.ack", "acknowledge follows", "ADR 0020", "FAUST_ACK_SHA256"),
        (faust_new_offset_matches, "Consumer._new_offset", "new_offset replaces", "ADR 0024",
         "FAUST_NEW_OFFSET_SHA256"),
    ):
        refuse_unless_pinned(matches(), method, f"{here} {use}", adr, constant)


def install(app: Any, batch_input: BatchInput) -> None:
    """Route `batch_input.topics` records of the app's fetch loop into `batch_input`. Call before the worker starts
    (the Fetcher looks the method up when it starts)."""
    _refuse_unpinned_faust()
    consumer = app.consumer
    consumer._new_offset = MethodType(new_offset, consumer)
    app.flow_control.manage_queue(batch_input)  # cleared with Faust's own buffers (a weak set: kept alive by ctx)
    consumer._drain_messages = MethodType(_make_drain(batch_input), consumer)


def bound_fetch_wait(app: Any, max_wait_ms: int, min_bytes: int) -> None:
    """Create the worker's Kafka consumer with fetch.max.wait.ms = `max_wait_ms` instead of Faust's fixed 1500
    (ADR 0015) and fetch.min.bytes = `min_bytes` (ADR 0026). Call before the worker starts:
    the consumer thread creates its client when it starts.

    aiokafka is not pinned, and an attribute of another name would silently leave Faust's 1500 ms in place: an
    aiokafka whose consumer does not set `_fetch_max_wait_ms` in its constructor and read it in `start()` is
    refused here, at app creation (the worker command reports it in one line). The same for `_fetch_min_bytes`."""
    from aiokafka import AIOKafkaConsumer

    for attribute in ("_fetch_max_wait_ms", "_fetch_min_bytes"):
        if not all(attribute in f.__code__.co_names for f in (AIOKafkaConsumer.__init__, AIOKafkaConsumer.start)):
            raise FaustVersionError(f"the installed aiokafka's consumer does not keep {attribute}: re-check "
                                    "streams/adapters/batch_input.py:bound_fetch_wait (ADR 0015, ADR 0026)")
    thread = app.consumer._thread
    create = thread._create_worker_consumer

    def _create_worker_consumer(transport: Any) -> Any:
        consumer = create(transport)
        # Both read by AIOKafkaConsumer.start() when it builds its Fetcher.
        consumer._fetch_max_wait_ms = max_wait_ms
        consumer._fetch_min_bytes = min_bytes
        return consumer

    thread._create_worker_consumer = _create_worker_consumer


def last_fetch_ms(app: Any, tp: TP) -> int | None:
    """When the worker's consumer last had a fetch answer for `tp` (epoch ms; aiokafka's `last_poll_timestamp`,
    set with the partition's high watermark): None before the first, and for a partition not assigned (ADR 0009).

    The consumer runs on Faust's consumer thread; this reads one int it writes, as `Consumer.highwater` does."""
    try:
        stamp = app.consumer._thread._ensure_consumer().last_poll_timestamp(tp)
    except Exception:  # consumer not started yet, or the partition not assigned (aiokafka asserts it)
        return None
    return stamp if isinstance(stamp, int) else None


def _make_drain(batch_input: BatchInput) -> Any:
    fast_topics = batch_input.topics
    put = batch_input.put

    async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - runs inside Faust's worker
        """Faust 0.15's `Consumer._drain_messages` and `Consumer.getmany`, with records of `fast_topics` put into
        the batch input instead of awaited through the conductor, a fetch answer at a time (ADR 0011). Read
        offsets and gaps are kept as in Faust's loop, and commit-every is checked once per answer rather than per
        record; records of other topics take Faust's conductor, one suspension race per partition (`_other`)."""
        callback = self.callback
        wait_next_records = self._wait_next_records
        to_message = self._to_message
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        suspend_flow = self.suspend_flow
        app = self.app
        unacked = self._unacked_messages

        async def _commit_if_due() -> None:
            """Faust's commit-every: a commit once `commit_every` records were acknowledged since the last."""
            if commit_every is not None and self._n_acked >= commit_every:
                self._n_acked = 0
                await self.commit()

        def _flow_stopped(generation_id: int) -> bool:
            """A rebalance began since the answer was fetched: what is left of it is read again."""
            return not self.flow_active or suspend_flow.is_set() or app.consumer_generation_id != generation_id

        async def _other(tp: TP, records: list[Any], generation_id: int) -> bool:
            """Faust's loop body for one partition's records of a topic that is not ours (changelogs while tables
            recover or keep standbys, raw events, cohort inputs); False: the flow stopped.

            Faust races each record's callback against a suspension of the flow (`wait_first`: four tasks created
            and cancelled a record, ~3/4 of this path's cost while a table recovers, ADR 0027). Here one race
            covers the partition's records, delivered in order inside it: a suspension cancels the delivery at the
            record it waits on, whose read offset is still set, as Faust's loop does, and nothing after it is
            delivered. Commit-every is checked before the partition's records, not before each."""
            await _commit_if_due()
            delivered = await self.wait_first(_deliver(tp, records, generation_id), suspend_flow.wait())
            return bool(delivered.results) and delivered.results[0] is True

        async def _deliver(tp: TP, records: list[Any], generation_id: int) -> bool:
            since_yield = 0
            for record in records:
                if _flow_stopped(generation_id):
                    return False
                message = to_message(tp, record)
                offset = message.offset
                r_offset = get_read_offset(tp)
                if r_offset is None or offset >= r_offset:
                    gap = offset - (r_offset or 0)
                    if gap > 1 and r_offset and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    try:
                        await callback(message)
                    except asyncio.CancelledError:  # the flow was suspended while it waited: as in Faust's loop
                        set_read_offset(tp, offset)
                        raise
                    set_read_offset(tp, offset)
                since_yield += 1
                if since_yield >= YIELD_EVERY:  # a callback that does not block does not yield either
                    await asyncio.sleep(0)
                    since_yield = 0
            return True

        async def _take(records: Any, active_partitions: Any) -> None:
            """One fetch answer. Faust's getmany does, per record, what is the same for a partition's records of
            one answer (the active-partition test, the high watermark for the monitor) and hands them out one
            partition after the other through a generator: here that is done once per partition, and the
            records of our topics go into the batch input round robin over the answer's partitions, as Faust's
            scheduler interleaves them, so a batch spans them all (the usage gate needs billing beside usage)."""
            generation_id = app.consumer_generation_id
            track_end = app.monitor.track_tp_end_offset
            ours: list[list[Any]] = []
            for tp, partition_records in records.items():
                if not (active_partitions is None or tp in active_partitions or tp in self._buffered_partitions):
                    continue
                track_end(tp, self.highwater(tp))
                if tp.topic not in fast_topics:
                    if not await _other(tp, partition_records, generation_id):
                        return
                    continue
                r_offset = get_read_offset(tp)
                messages = [to_message(tp, record) for record in partition_records
                            if r_offset is None or record.offset >= r_offset]
                if not messages:
                    continue
                if r_offset and acks_enabled_for(tp.topic):
                    previous = r_offset
                    for message in messages:
                        if message.offset - previous > 1:
                            await self._add_gap(tp, previous + 1, message.offset)
                        previous = message.offset
                # Before the records are handed over: a seek meanwhile (a rewind, ADR 0007) sets it again.
                set_read_offset(tp, messages[-1].offset)
                ours.append(messages)
            await _commit_if_due()
            interleaved = ours[0] if len(ours) == 1 else [m for ms in zip_longest(*ours) for m in ms if m is not None]
            since_yield = 0
            for message in interleaved:
                if batch_input.full():
                    # Back-pressure: wait for the agent, or give the record up if a rebalance suspends the flow
                    # meanwhile (as Faust's loop does; it is read again).
                    await self.wait_first(batch_input.wait_for_space(), suspend_flow.wait())
                    since_yield = 0
                if _flow_stopped(generation_id):
                    return  # a rebalance: the rest is read again from the committed offset
                unacked.add(message)  # a rebalance waits for it (Consumer.track_message)
                put(message)
                since_yield += 1
                if since_yield >= YIELD_EVERY:
                    await asyncio.sleep(0)
                    since_yield = 0

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                # Faust's `self.sleep(0)` is a `wait_for` on the stop event: a task and a timer an answer, to yield.
                await asyncio.sleep(0)
                if not self.should_stop:
                    records, active_partitions = await wait_next_records(1.0)
                    if records is not None and not self.should_stop:
                        if self.flow_active:
                            await _take(records, active_partitions)
                        else:
                            self.log.dev("getmany called while flow not active. Seek back to committed offsets.")
                            try:
                                await self.perform_seek()
                            except Exception as ex:
                                self.log.warning(f"exception performing seek when flow not active {ex}")
                    unset_flag(flag_consumer_fetching)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)

    return _drain_messages
