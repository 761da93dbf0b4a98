"""Which partition an account lives on: Kafka's default (murmur2) partitioner, which tables rely on (ADR 0002)."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def expected_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives this key; tables rely on it."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class PartitionCache:
    """Memo of account -> expected partition (murmur2 in pure Python costs a few µs per call)."""

    def __init__(self, partitions: int, limit: int = 200_000) -> None:
        self._partitions = partitions
        self._limit = limit
        self._memo: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        p = self._memo.get(key)
        if p is None:
            if len(self._memo) >= self._limit:
                self._memo.clear()
            p = self._memo[key] = expected_partition(key, self._partitions)
        return p
