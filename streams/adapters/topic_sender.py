"""Records for one output topic put without awaiting, and handed to the Kafka client in one batch per partition."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka.errors import ProducerClosed

from streams.adapters.changelog_writer import partition_batches
from streams.partitioning import PartitionCache

log = logging.getLogger(__name__)


class TopicSender:
    """`topic.send_soon(key=, value=)` for many records, without Faust's per-record producer path (ADR 0032).

    Faust's `send_soon` puts each record in its producer buffer, whose task sends it with a FutureMessage,
    callbacks and aiokafka's `send` (Kafka's murmur2 partitioner in Python, a future per record): ~0.1-0.15 ms
    of the worker's event loop a record. The health records are a few hundred a second at the bench's live
    rate, ~4 % of the live worker. Here `put` appends to a list; one task per burst takes what was put, builds
    one aiokafka batch per partition and hands it to the same producer (as `ChangelogWriter` does for the
    tables, ADR 0012).

    - Partition: the key's murmur2 partition over the topic's partitions in the producer's metadata, the one
      Faust's producer (Kafka's default partitioner) gives it.
    - Order: one task at a time sends, in the order of `put`, so each key's records stay in order.
    - Delivery is not awaited by anyone, as with `send_soon`; a failed batch is logged with its topic and
      partition and counted through `on_failed(records)`.
    """

    def __init__(self, producer_of: Callable[[], Any], topic: str,
                 on_failed: Callable[[int], None] | None = None) -> None:
        self._producer_of = producer_of  # the aiokafka producer (Faust's starts it with the app)
        self.topic = topic
        self._on_failed = on_failed
        self._pending: list[tuple[bytes, bytes]] = []
        self._task: asyncio.Future[None] | None = None
        self._partition_of: PartitionCache | None = None

    def put(self, key: bytes, value: bytes) -> None:
        """Queue one record; the running loop sends it at its next turn (or after the burst being sent)."""
        self._pending.append((key, value))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._send_pending())

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Every record put so far handed to the Kafka client (the producer's own flush then delivers it)."""
        while self._pending or (self._task is not None and not self._task.done()):
            if self._task is None or self._task.done():
                self._task = asyncio.ensure_future(self._send_pending())
            await asyncio.shield(self._task)

    async def _send_pending(self) -> None:
        while self._pending:
            records, self._pending = self._pending, []
            try:
                await self._send(records)
            except ProducerClosed:  # the worker is stopping: its next start re-publishes every account it owns
                log.info("%d records for %s not sent: the producer stopped", len(records), self.topic)
                return
            except Exception as exc:  # nothing awaits this task: say what was lost, and go on with the next
                log.error("%d records for %s not sent: %r", len(records), self.topic, exc)
                if self._on_failed is not None:
                    self._on_failed(len(records))

    async def _send(self, records: list[tuple[bytes, bytes]]) -> None:
        producer = self._producer_of()
        if self._partition_of is None:
            self._partition_of = PartitionCache(len(await producer.partitions_for(self.topic)))
        ready = partition_batches(producer, records, self._partition_of)
        for partition, builder, count in ready:
            builder.close()
            fut = await producer.send_batch(builder, self.topic, partition=partition)
            fut.add_done_callback(self._delivered(partition, count))

    def _delivered(self, partition: int, records: int) -> Callable[[asyncio.Future[Any]], None]:
        def done(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled():
                return
            exc = fut.exception()
            if exc is not None:
                log.error("batch of %d records to %s[%d] failed: %r", records, self.topic, partition, exc)
                if self._on_failed is not None:
                    self._on_failed(records)

        return done
