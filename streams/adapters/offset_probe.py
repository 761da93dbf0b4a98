"""Broker lookups for the input-order guard: committed offsets and whether an offset exists (ADR 0007)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kafka import KafkaConsumer, TopicPartition

log = logging.getLogger(__name__)

# How long one existence check may wait for the broker's first record at or after an offset, milliseconds.
POLL_TIMEOUT_MS = 5000


class OffsetProbe:
    """A kafka-python consumer of its own, outside the worker's group membership: it never subscribes (so it
    never joins or rebalances the group) and never commits (auto-commit off), it only reads the group's
    committed offsets and fetches single records by offset. Calls run on one thread, off the event loop;
    they happen at an assignment and on a gap, never per record."""

    def __init__(self, group_id: str, client_config: dict[str, object]) -> None:
        self._group_id = group_id
        self._config = client_config
        self._consumer: KafkaConsumer | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="offset-probe")

    def _client(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = KafkaConsumer(
                group_id=self._group_id, enable_auto_commit=False, auto_offset_reset="earliest",
                client_id=f"{self._group_id}-offset-probe", max_poll_records=1,
                isolation_level="read_uncommitted",  # as the worker's consumer (at-least-once)
                **self._config,  # type: ignore[arg-type]
            )
        return self._consumer

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def start_offsets(self, tps: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Per partition, where the group resumes: its committed offset, or the log start if it has none."""
        return dict(await self._run(self._start_offsets, list(tps)))

    def _start_offsets(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        client = self._client()
        parts = [TopicPartition(t, p) for t, p in tps]
        out: dict[tuple[str, int], int] = {}
        missing = []
        for tp in parts:
            committed = client.committed(tp)
            if committed is None:
                missing.append(tp)
            else:
                out[(tp.topic, tp.partition)] = committed
        if missing:
            try:
                for tp, offset in client.beginning_offsets(missing).items():
                    out[(tp.topic, tp.partition)] = offset
            except KeyError:
                # kafka-python 3.0 raises KeyError when a partition's leader is not yet known. Offset 0 is safe:
                # if the log starts later, the first record is "ahead" and first_present() steps over the gap.
                log.debug("offset probe: log start unknown for %s; assuming 0", missing)
            for tp in missing:
                out.setdefault((tp.topic, tp.partition), 0)
        return out

    async def first_present(self, tp: tuple[str, int], offset: int) -> int | None:
        """The offset of the first record at or after `offset` (None: none arrived within POLL_TIMEOUT_MS).
        Above `offset` when the offsets between do not hold records: transaction markers, or a log start
        moved past them by retention."""
        result: int | None = await self._run(self._first_present, tp, offset)
        return result

    def _first_present(self, tp: tuple[str, int], offset: int) -> int | None:
        client = self._client()
        part = TopicPartition(*tp)
        client.assign([part])
        client.seek(part, offset)
        records = client.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=1)
        got = records.get(part) or []
        return got[0].offset if got else None

    def close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except Exception:  # pragma: no cover - closing a client whose broker is gone
                log.debug("offset probe: close failed", exc_info=True)
            self._consumer = None
        self._executor.shutdown(wait=False)
