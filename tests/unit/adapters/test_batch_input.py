"""BatchInput: the account agent's batches taken straight from Faust's fetch loop (ADR 0011)."""

from __future__ import annotations

import asyncio
import inspect
import random
from dataclasses import dataclass
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.fetcher import Fetcher
from faust.types import TP

from streams.adapters.batch_input import (
    AHEAD_BATCHES,
    BatchInput,
    FaustVersionError,
    acknowledge,
    bound_fetch_wait,
    faust_ack_matches,
    faust_drain_matches,
    faust_getmany_matches,
    faust_new_offset_matches,
    install,
    last_fetch_ms,
    new_offset,
)
from tests.support.offline_app import offline_app


@dataclass
class Msg:  # stands in for a faust Message: BatchInput only keeps and returns the objects
    offset: int


def make_input(batch_size: int = 3) -> BatchInput:
    return BatchInput({"billing", "usage"}, batch_size)


def put(bi: BatchInput, *offsets: int) -> list[Msg]:
    msgs = [Msg(o) for o in offsets]
    for m in msgs:
        bi.put(m)
    return msgs


def test_a_whole_batch_is_taken_at_once_in_fetch_order() -> None:
    async def go() -> None:
        bi = make_input(3)
        msgs = put(bi, 1, 2, 3, 4)
        assert await bi.take(within_s=5) == msgs[:3]
        assert len(bi) == 1

    asyncio.run(asyncio.wait_for(go(), 2))


def test_a_partial_batch_is_taken_once_the_wait_is_over() -> None:
    async def go() -> None:
        bi = make_input(3)
        msgs = put(bi, 1)
        assert await bi.take(within_s=0.05) == msgs
        assert len(bi) == 0

    asyncio.run(asyncio.wait_for(go(), 2))


def test_a_waiting_take_returns_as_soon_as_the_batch_fills() -> None:
    async def go() -> None:
        bi = make_input(2)
        task = asyncio.create_task(bi.take(within_s=30))
        await asyncio.sleep(0.01)
        assert not task.done()  # nothing yet
        msgs = put(bi, 7)
        await asyncio.sleep(0.01)
        assert not task.done()  # one of two: waits for the batch
        msgs += put(bi, 8)
        assert await asyncio.wait_for(task, 1) == msgs

    asyncio.run(asyncio.wait_for(go(), 5))


def test_clearing_drops_what_was_not_taken_and_the_next_take_waits_for_new_records() -> None:
    async def go() -> None:
        bi = make_input(3)
        put(bi, 1, 2)
        bi.clear()
        assert len(bi) == 0
        task = asyncio.create_task(bi.take(within_s=0.05))
        await asyncio.sleep(0.01)
        assert not task.done()
        fresh = put(bi, 10)
        assert await asyncio.wait_for(task, 1) == fresh

    asyncio.run(asyncio.wait_for(go(), 5))


def test_the_fetch_loop_must_wait_once_two_batches_are_ahead_of_the_agent() -> None:
    async def go() -> None:
        bi = make_input(2)
        put(bi, *range(2 * AHEAD_BATCHES - 1))
        assert not bi.full()
        put(bi, 99)
        assert bi.full()
        waiter = asyncio.create_task(bi.wait_for_space())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        await bi.take(within_s=0)
        await asyncio.wait_for(waiter, 1)
        assert not bi.full()

    asyncio.run(asyncio.wait_for(go(), 5))


def test_a_rebalance_clearing_a_full_input_lets_the_fetch_loop_go_on() -> None:
    async def go() -> None:
        bi = make_input(1)
        put(bi, 1, 2)
        assert bi.full()
        bi.clear()
        await asyncio.wait_for(bi.wait_for_space(), 1)

    asyncio.run(asyncio.wait_for(go(), 5))


def test_the_installed_faust_fetch_loop_is_the_one_batch_input_copies() -> None:
    # A Faust upgrade changes Consumer._drain_messages: the copy in batch_input must be re-checked (ADR 0011).
    assert faust_drain_matches()


def test_the_installed_faust_getmany_is_the_one_the_fetch_loop_does_a_fetch_answer_at_a_time() -> None:
    # A Faust upgrade changes Consumer.getmany: the copy in batch_input must be re-checked (ADR 0011).
    assert faust_getmany_matches()


def test_the_installed_faust_acknowledges_as_acknowledge_does_in_bulk() -> None:
    # A Faust upgrade changes Consumer.ack: acknowledge must be re-checked (ADR 0020).
    assert faust_ack_matches()


def test_the_installed_faust_finds_commit_offsets_as_new_offset_does() -> None:
    # A Faust upgrade changes Consumer._new_offset: new_offset must be re-checked (ADR 0024).
    assert faust_new_offset_matches()


async def _another_getmany(self: Any, timeout: float) -> Any:  # another Faust's fetch generator
    yield None


def _another_new_offset(self: Any, tp: Any) -> None:  # another Faust's commit offset search
    return None


@pytest.mark.parametrize(("method", "replacement", "constant"), [
    ("getmany", _another_getmany, "FAUST_GETMANY_SHA256"),
    ("_new_offset", _another_new_offset, "FAUST_NEW_OFFSET_SHA256"),
])
def test_a_faust_whose_copied_or_replaced_method_changed_is_refused_before_the_worker_starts(
    monkeypatch: pytest.MonkeyPatch, method: str, replacement: Any, constant: str,
) -> None:
    monkeypatch.setattr(faust.transport.consumer.Consumer, method, replacement)
    app = offline_app("pinned")
    with pytest.raises(FaustVersionError, match=rf"Consumer\.{method} .* {constant}"):
        install(app, make_input())


def test_the_worker_consumer_is_created_with_the_bounded_fetch_wait_and_minimum_bytes() -> None:
    async def go() -> None:
        app = offline_app("fetch-wait")
        bound_fetch_wait(app, 20, 65536)
        consumer = app.consumer._thread._create_worker_consumer(app.transport)  # no connection until start()
        try:
            assert (consumer._fetch_max_wait_ms, consumer._fetch_min_bytes) == (20, 65536)
        finally:
            await consumer.stop()

    asyncio.run(go())
    # ...and start() hands those attributes to the Fetcher it builds (aiokafka is not pinned).
    start = inspect.getsource(AIOKafkaConsumer.start)
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in start and "fetch_min_bytes=self._fetch_min_bytes" in start


def test_the_last_fetch_time_of_a_partition_is_read_from_the_worker_consumer() -> None:
    """The usage gate's `billing_read_to_end` reads it (ADR 0009): through Faust's consumer thread, aiokafka's
    per-partition timestamp of the last fetch answer; None before the consumer exists and for a partition it does
    not hold."""
    async def go() -> None:
        app = offline_app("last-fetch")
        billing = TP("billing", 0)
        assert last_fetch_ms(app, billing) is None  # no consumer yet
        thread = app.consumer._thread
        consumer = thread._create_worker_consumer(app.transport)  # no connection until start()
        thread._consumer = consumer
        try:
            assert last_fetch_ms(app, billing) is None  # not assigned
            consumer.assign([TopicPartition("billing", 0)])
            assert last_fetch_ms(app, billing) is None  # no fetch answer yet
            # What aiokafka's Fetcher sets with the high watermark of each answer for the partition.
            consumer._subscription.subscription.assignment.state_value(TopicPartition("billing", 0)).timestamp = 1234
            assert last_fetch_ms(app, billing) == 1234
        finally:
            await consumer.stop()

    asyncio.run(go())
    fetcher = inspect.getsource(Fetcher)
    assert "tp_state.highwater = highwater" in fetcher and "tp_state.timestamp = now_ms" in fetcher


async def _start_reading_neither(self: AIOKafkaConsumer) -> None:
    return None


async def _start_reading_the_wait_only(self: AIOKafkaConsumer) -> None:
    self._fetch_max_wait_ms += 0


@pytest.mark.parametrize(("start", "missing"), [
    (_start_reading_neither, "_fetch_max_wait_ms"),
    (_start_reading_the_wait_only, "_fetch_min_bytes"),
], ids=["neither", "no-min-bytes"])
def test_an_aiokafka_without_a_fetch_attribute_is_refused_at_app_creation(
    monkeypatch: pytest.MonkeyPatch, start: Any, missing: str,
) -> None:
    monkeypatch.setattr(AIOKafkaConsumer, "start", start)
    app = offline_app("fetch-wait-refused")
    with pytest.raises(FaustVersionError, match=missing):
        bound_fetch_wait(app, 20, 1)


class _Message:
    """What Faust's Consumer.ack reads of a message (and a weak reference to it)."""

    def __init__(self, topic: str, tp: Any, offset: int) -> None:
        self.acked, self.topic, self.tp, self.offset = False, topic, tp, offset


def _faust_consumer() -> Any:
    """A real Faust consumer (faust-streaming as pinned), never started: only its acknowledgement bookkeeping."""
    app = offline_app("ack")
    app.topics._acking_topics.add("usage")  # what subscribing an agent to the topic does
    return app.consumer


def _bookkeeping(consumer: Any) -> tuple[Any, ...]:
    return (
        {tp: list(offsets) for tp, offsets in consumer._acked.items() if offsets},
        {tp: set(index) for tp, index in consumer._acked_index.items() if index},
        consumer._n_acked,
    )


def test_offsets_acknowledged_in_bulk_leave_the_consumer_as_acking_each_record_does() -> None:
    groups = [("usage", 0, [5, 6, 7]), ("usage", 1, [3]), ("usage", 0, [7, 9]), ("usage", 2, [1, 2])]
    one_by_one, in_bulk = _faust_consumer(), _faust_consumer()
    for consumer in (one_by_one, in_bulk):
        consumer._committed_offset[TP("usage", 2)] = 2  # offset 1 is below the committed one: ignored
    for topic, partition, offsets in groups:
        for offset in offsets:
            record = _Message(topic, TP(topic, partition), offset)
            one_by_one.ack(record)

    added = acknowledge(in_bulk, groups)

    assert _bookkeeping(one_by_one)[2] == 6  # 7 twice and 1 (below the committed offset): acknowledged once, never
    assert _bookkeeping(in_bulk) == _bookkeeping(one_by_one)
    assert added == 6


def _acked_offsets(rng: random.Random) -> list[int]:
    """A partition's acknowledged offsets as the worker leaves them: a run, sometimes with a hole, a repeat (a
    Faust gap filled twice) or out of order."""
    start = rng.randint(1, 12)
    offsets = list(range(start, start + rng.randint(1, 40)))
    if rng.random() < 0.3 and len(offsets) > 2:
        del offsets[rng.randrange(1, len(offsets) - 1)]
    if rng.random() < 0.3:
        offsets.insert(rng.randrange(len(offsets)), rng.choice(offsets))
    if rng.random() < 0.3:
        rng.shuffle(offsets)
    return offsets


def _commit_bookkeeping(consumer: Any, tp: TP) -> tuple[Any, ...]:
    return list(consumer._acked[tp]), set(consumer._acked_index[tp]), sorted(consumer._gap[tp])


def test_new_offset_gives_fausts_commit_offsets_and_leaves_its_bookkeeping_as_faust_does() -> None:
    rng = random.Random(24)
    tp = TP("usage", 0)
    for _ in range(2000):
        offsets = _acked_offsets(rng)
        committed = rng.choice([None, 0, offsets[0] - 1, offsets[0] - 3, min(offsets) - 1])
        gap = rng.random() < 0.1
        faust_way, ours = _faust_consumer(), _faust_consumer()
        for consumer in (faust_way, ours):
            consumer._committed_offset[tp] = committed
            consumer._acked[tp] = list(offsets)
            consumer._acked_index[tp] = set(offsets)
            if gap:  # an offset jump Faust recorded (a compacted topic): filled in when committing
                consumer._gap[tp].addi(max(offsets) + 1, max(offsets) + 4)
        for _commit in range(3):  # the run goes; what is left answers the next commit
            assert new_offset(ours, tp) == faust_way._new_offset(tp), (offsets, committed, gap)
            assert _commit_bookkeeping(ours, tp) == _commit_bookkeeping(faust_way, tp)


def test_a_commit_takes_every_offset_of_a_run_without_holes() -> None:
    consumer, tp = _faust_consumer(), TP("usage", 3)
    consumer._committed_offset[tp] = 99
    for offset in (102, 100, 101):  # acknowledged by two partitions' flush steps in either order
        consumer.ack(_Message("usage", tp, offset))

    assert new_offset(consumer, tp) == 103  # Kafka's committed offset: the next record to read
    assert consumer._acked[tp] == [] and consumer._acked_index[tp] == set()
