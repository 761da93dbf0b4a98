"""Write-back cache of decoded account states: one decode per load, one table write per account per flush (ADR 0010)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
# What the caller acknowledges once the states it changed are written (the agent: Kafka record offsets, ADR 0019).
M = TypeVar("M")


class Flush(Generic[K, V, M]):
    """What a flush writes: every dirty state once, then the records whose effects those states hold.

    A plain class, not a dataclass: mypyc (ADR 0018) cannot compile a generic dataclass."""

    __slots__ = ("acks", "states")

    def __init__(self, states: dict[K, V], acks: list[M]) -> None:
        self.states = states
        self.acks = acks


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
    committed offset, so the re-read rebuilds them.

    A flush can be written in steps (ADR 0012): `begin_flush` makes the dirty values the flush's to write and
    their records its to acknowledge; `next_write` hands out one value at a time, and batches may change the
    cache in between (a value changed again is dirty again, for the next flush; written now, it only holds
    more than the records acknowledged with it, which the per-account offsets dedupe on a re-read);
    `end_flush` returns the acknowledgements once every value is written. Values waiting to be written are
    never evicted.

    Only clean values are in the eviction order (`_clean`): an eviction takes the first of them in O(1). When the
    order held every value, an eviction during a flush first passed over the values waiting to be written, and
    counted them: ~0.6-2.3 ms a cache miss with 20,000 states in the flush, against ~1-1.5 us now (a worker owning more
    accounts than it caches misses on every cold account, and a flush runs most of the time, ADR 0031). A value
    the flush writes joins the clean ones as the most recently used: it was changed within the flush interval, and
    a value a batch loads is changed by it, so clean values are in practice ordered by their last change."""

    def __init__(self, max_clean: int) -> None:
        self.max_clean = max_clean
        self._values: dict[K, V] = {}  # every cached value, clean or not
        self._clean: OrderedDict[K, None] = OrderedDict()  # keys of values the table has, least recently used first
        self._dirty: dict[K, V] = {}
        self._acks: list[M] = []
        self.dirty_since: float | None = None  # monotonic seconds of the oldest unflushed change
        self._writing: dict[K, V] = {}  # values of the flush in progress still to write
        self._writing_acks: list[M] = []  # records acknowledged when the flush in progress ends
        self.flushing = False  # a flush is in progress (begin_flush .. end_flush)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    @property
    def dirty_count(self) -> int:
        return len(self._dirty)

    @property
    def writes_left(self) -> int:
        """Values the flush in progress has still to write."""
        return len(self._writing)

    @property
    def pending_acks(self) -> int:
        return len(self._acks)

    def dirty_keys(self) -> Iterator[K]:
        """Keys whose values are not in the table yet: dirty, or waiting in the flush in progress."""
        yield from self._dirty
        yield from (key for key in self._writing if key not in self._dirty)

    def peek(self, key: K) -> V | None:
        """The cached value, if any, without loading or touching the eviction order (readers outside the agent)."""
        return self._values.get(key)

    def get(self, key: K, load: Callable[[K], V | None]) -> V | None:
        """The cached value, or `load(key)` (the table's, decoded) kept for next time."""
        value = self._values.get(key)
        if value is not None:
            if key in self._clean:
                self._clean.move_to_end(key)
            return value
        value = load(key)
        if value is not None:
            self._values[key] = value
            self._clean[key] = None
            self._evict()
        return value

    def changed(self, key: K, value: V, now: float) -> None:
        """The value was changed in memory and must reach the table at the next flush."""
        self._values[key] = value
        self._clean.pop(key, None)
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
        """Everything to write and acknowledge in one step; the values stay cached, now clean."""
        self.begin_flush()
        states, self._writing = self._writing, {}
        for key in states:
            self._written(key)
        return Flush(states, self.end_flush())

    def begin_flush(self) -> None:
        """Start a flush of every dirty value and every record applied so far (one flush at a time)."""
        if self.flushing:
            raise RuntimeError("a flush is already in progress")
        self._writing, self._writing_acks = self._dirty, self._acks
        self._dirty, self._acks = {}, []
        self.dirty_since = None
        self.flushing = True

    def next_write(self) -> tuple[K, V] | None:
        """The next value of the flush in progress to write (its newest version), or None when all are."""
        if not self._writing:
            return None
        key, value = self._writing.popitem()
        self._written(key)
        return key, self._values.get(key, value)

    def _written(self, key: K) -> None:
        """The key's value goes to the table now: clean (most recently used) unless changed again meanwhile."""
        if key not in self._dirty and key in self._values:
            self._clean[key] = None

    def end_flush(self) -> list[M]:
        """Every value of the flush is written: the records to acknowledge now."""
        if self._writing:
            raise RuntimeError(f"{len(self._writing)} values of the flush are not written yet")
        acks, self._writing_acks = self._writing_acks, []
        self.flushing = False
        self._evict()
        return acks

    def discard(self) -> int:
        """Forget every value and acknowledgement (a rebalance); returns the number of dirty values dropped."""
        dropped = len(self._dirty) + sum(1 for key in self._writing if key not in self._dirty)
        self._values.clear()
        self._clean.clear()
        self._dirty.clear()
        self._acks.clear()
        self._writing.clear()
        self._writing_acks.clear()
        self.flushing = False
        self.dirty_since = None
        return dropped

    def _evict(self) -> None:
        """Least recently used clean values out, down to `max_clean`."""
        clean, values = self._clean, self._values
        for _ in range(len(clean) - self.max_clean):
            key, _ = clean.popitem(last=False)
            del values[key]


def changed_accounts(cache: StateCache[bytes, V, M], values: dict[str, V], now: float) -> None:
    """`changed` for every value of a batch, keyed by account id: the table's key is its UTF-8 bytes. One compiled
    loop instead of the agent's (ADR 0018)."""
    for account_id, value in values.items():
        cache.changed(account_id.encode(), value, now)
