"""Faust's RocksDB store, filing each key under its Kafka partition instead of the current event's."""

from __future__ import annotations

from typing import Any

from faust.stores import STORES
from faust.stores.rocksdb import Store as RocksDBStore

from streams.partitioning import expected_partition

# The URL scheme bootstrap uses for `rocksdb://` settings (see register()).
SCHEME = "churnwatch-rocksdb"


class KeyPartitionedRocksDB(RocksDBStore):
    """Faust 0.15's RocksDB store picks the partition database from `current_event()`: with batched
    processing that is the batch's last event (another account's partition), and in a timer there is none
    (the agent crashed with an AssertionError). Our tables use `use_partitioner=True`, so a key's partition is
    the murmur2 hash of the key, exactly as for its changelog record; that is what the store must use too."""

    def _set(self, key: bytes, value: bytes | None) -> None:
        partition = expected_partition(key, self.table.partitions or self.app.conf.topic_partitions)
        self._key_index[key] = partition
        self._db_for_partition(partition).put(key, value)


def register() -> None:
    STORES.aliases[SCHEME] = f"{__name__}:KeyPartitionedRocksDB"


def store_url(url: str) -> Any:
    """`rocksdb://...` -> our store's URL; anything else unchanged."""
    return SCHEME + url[len("rocksdb"):] if url.startswith("rocksdb:") else url
