"""Write-back cache of decoded account states: one decode per load, one table write per account per flush (ADR 0010)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
M = TypeVar("M")  # what the caller acknowledges once the states it changed are written (the agent: Kafka messages)


@dataclass
class Flush(Generic[K, V, M]):
    """What a flush writes: every dirty state once, then the records whose effects those states hold."""

    states: dict[K, V] = field(default_factory=dict)
    acks: list[M] = field(default_factory=list)


class StateCache(Generic[K, V, M]):
    """The decoded values of the accounts this worker owns, authoritative until written back.

    Kafka Streams' record cache, for the same reason: decoding and encoding an account state costs ~150-300 µs
    each in pure Python, ten times the domain's own work per event, so a worker that round-trips the table value
    in every batch spends most of its time in the codec. Here a value is decoded once, changed in memory by
    every batch, and written to the table (and so to its changelog) once per flush. The records whose effects
    are only in memory stay unacknowledged until their flush: a worker killed before it loses nothing, the
    group's committed offset is still before them.

    `max_clean` bounds the clean values kept (least recently used first out); dirty values are never evicted,
    the caller flushes when `dirty_count` reaches its own limit. `discard` drops everything, dirty values and
    pending acknowledgements included: after a rebalance every partition is read again from the group's
    committed offset, so the re-read rebuilds them."""

    def __init__(self, max_clean: int) -> None:
        self.max_clean = max_clean
        self._values: OrderedDict[K, V] = OrderedDict()
        self._dirty: dict[K, V] = {}
        self._acks: list[M] = []
        self.dirty_since: float | None = None  # monotonic seconds of the oldest unflushed change

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    @property
    def dirty_count(self) -> int:
        return len(self._dirty)

    @property
    def pending_acks(self) -> int:
        return len(self._acks)

    def dirty_keys(self) -> Iterator[K]:
        return iter(self._dirty)

    def peek(self, key: K) -> V | None:
        """The cached value, if any, without loading or touching the eviction order (readers outside the agent)."""
        return self._values.get(key)

    def get(self, key: K, load: Callable[[K], V | None]) -> V | None:
        """The cached value, or `load(key)` (the table's, decoded) kept for next time."""
        value = self._values.get(key)
        if value is not None:
            self._values.move_to_end(key)
            return value
        value = load(key)
        if value is not None:
            self._values[key] = value
            self._evict()
        return value

    def changed(self, key: K, value: V, now: float) -> None:
        """The value was changed in memory and must reach the table at the next flush."""
        self._values[key] = value
        self._values.move_to_end(key)
        self._dirty[key] = value
        if self.dirty_since is None:
            self.dirty_since = now

    def applied(self, acks: list[M], now: float) -> None:
        """Records applied to cached values: acknowledged after the next flush writes them."""
        self._acks.extend(acks)
        if acks and self.dirty_since is None:
            self.dirty_since = now

    def due(self, now: float, interval_s: float, max_dirty: int) -> bool:
        return self.dirty_since is not None and (
            now - self.dirty_since >= interval_s or len(self._dirty) >= max_dirty)

    def take(self) -> Flush[K, V, M]:
        """Everything to write and acknowledge; the values stay cached, now clean."""
        out: Flush[K, V, M] = Flush(self._dirty, self._acks)
        self._dirty, self._acks = {}, []
        self.dirty_since = None
        self._evict()
        return out

    def discard(self) -> int:
        """Forget every value and acknowledgement (a rebalance); returns the number of dirty values dropped."""
        dropped = len(self._dirty)
        self._values.clear()
        self._dirty.clear()
        self._acks.clear()
        self.dirty_since = None
        return dropped

    def _evict(self) -> None:
        values = self._values
        excess = len(values) - len(self._dirty) - self.max_clean
        if excess <= 0:
            return
        victims = []
        for key in values:  # oldest first; dirty values were moved to the end when they changed
            if key not in self._dirty:
                victims.append(key)
                if len(victims) == excess:
                    break
        for key in victims:
            del values[key]
