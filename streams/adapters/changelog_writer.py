"""Writes of the account table: the store, and the changelog records produced in whole batches (ADR 0012)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

log = logging.getLogger(__name__)


@dataclass
class Staged:
    """Changelog records of values already in the store, in batches not yet handed to the Kafka client."""

    topic: str
    batches: list[tuple[int, Any, int]] = field(default_factory=list)  # (partition, batch builder, records)


def aiokafka_producer(app: Any) -> Any:
    """The aiokafka producer under a started Faust app's producer (the one its own sends go through)."""
    return app.producer._ensure_producer()


def partition_batches(producer: Any, records: Sequence[tuple[bytes, bytes]],
                      partition_of: Callable[[bytes], int]) -> list[tuple[int, Any, int]]:
    """The (key, value) records in aiokafka batch builders, one per partition (more when one fills), in order:
    (partition, builder, records in it). Nothing is sent."""
    open_batches: dict[int, tuple[Any, list[int]]] = {}  # partition -> (builder, [records in it])
    full: list[tuple[int, Any, int]] = []
    for key, value in records:
        partition = partition_of(key)
        entry = open_batches.get(partition)
        if entry is None:
            entry = open_batches[partition] = (producer.create_batch(), [0])
        builder, count = entry
        if builder.append(key=key, value=value, timestamp=None) is None:
            full.append((partition, builder, count[0]))  # the builder is full: a new one for this record
            builder = producer.create_batch()
            if builder.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit a producer batch")
            entry = open_batches[partition] = (builder, [0])
        entry[1][0] += 1
    full.extend((p, b, c[0]) for p, (b, c) in open_batches.items())
    return full


class ChangelogWriter:
    """`table[key] = value` for many keys at once, without Faust's per-record producer path.

    Faust sends one changelog record per table write through its producer buffer (a FutureMessage, callbacks,
    a debug log line and an aiokafka send each: about 300 µs of the worker's time per written account, most of
    a state flush). Here each value goes to the table's store as `table.data[key] = value` does, and the
    changelog records go to the same aiokafka producer in one BatchBuilder per partition, which is what the
    producer builds anyway. The partition is the key's murmur2 partition, the one Faust's producer picks for
    a table with `use_partitioner=True` (ADR 0002). After a batch is delivered, the store records the offset
    of its last record as persisted, as Faust's `_on_changelog_sent` does (RocksDB keeps it for recovery).

    Writing is two calls (ADR 0016): `stage` writes the store and builds the batches with nothing awaited, under the
    caller's lock; `send` hands them to the Kafka client after the lock is released, since aiokafka takes a
    partition's next batch only once the previous one left (a produce round trip, one request in flight per
    broker). The caller awaits the returned futures before it acknowledges the input records whose effects the
    values hold (at-least-once, ADR 0010)."""

    def __init__(self, table: Any, partition_of: Callable[[bytes], int]) -> None:
        self.table = table
        self.partition_of = partition_of

    def _producer(self) -> Any:
        return aiokafka_producer(self.table.app)

    def stage(self, items: Sequence[tuple[bytes, bytes]]) -> Staged:
        """Store every (key, value) and build its changelog record into a batch per partition, without awaiting
        anything: the caller holds its state lock for this part only, and hands the batches to the Kafka client
        with `send` after releasing it (ADR 0016)."""
        staged = Staged(self.table.changelog_topic.get_topic_name())
        if not items:
            return staged
        store = self.table.data
        for key, value in items:
            store[key] = value
        staged.batches = partition_batches(self._producer(), items, self.partition_of)
        return staged

    async def send(self, staged: Staged) -> list[asyncio.Future[Any]]:
        """Hand staged batches to the Kafka client, in order; returns their delivery futures. aiokafka queues one
        batch per partition and waits for it to leave before it takes the next, so this can await produce round
        trips: never with a lock that batches need held."""
        if not staged.batches:
            return []
        producer = self._producer()
        futures = []
        for partition, builder, records in staged.batches:
            builder.close()
            fut = await producer.send_batch(builder, staged.topic, partition=partition)
            fut.add_done_callback(self._persisted(TP(staged.topic, partition), records))
            futures.append(fut)
        return futures

    def _persisted(self, tp: TP, records: int) -> Callable[[asyncio.Future[Any]], None]:
        def done(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled():
                return
            exc = fut.exception()
            if exc is not None:
                log.error("changelog batch to %s[%d] failed: %r", tp.topic, tp.partition, exc)
                return
            self.table.data.set_persisted_offset(tp, fut.result().offset + records - 1)

        return done
