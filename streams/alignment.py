"""Usage records wait for the billing partition of their number, so both topics meet an account in event time (ADR 0009)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from streams.processing import DecodedRecord

T = TypeVar("T")
M = TypeVar("M")  # what the caller keeps with a record (the agent: its Kafka message, to acknowledge it later)

# A usage record waits at most this long (monotonic seconds) for its billing partition, and at most this many
# usage records wait per worker: past either, the waiting records are applied anyway (counted as forced), so a
# billing partition that never catches up (a broker fault, a bug) cannot stop the account stream for good.
MAX_WAIT_S = 120.0
MAX_WAITING = 50_000


# The classes here are plain classes, not dataclasses: the module runs compiled (ADR 0018), and mypyc cannot
# compile a generic dataclass.
class _Waiting(Generic[T]):
    __slots__ = ("at_s", "item", "since")

    def __init__(self, at_s: float, item: T, since: float) -> None:
        self.at_s = at_s  # the usage record's event time, epoch seconds
        self.item = item
        self.since = since  # monotonic seconds when it started waiting


class Admitted(Generic[T]):
    """What may be applied now: records that waited in earlier batches (`released`, already taken out of Faust's
    acknowledgement, so the caller acknowledges them once applied) and records of this batch (`now`)."""

    __slots__ = ("deferred", "forced", "now", "released")

    def __init__(self) -> None:
        self.released: list[T] = []
        self.now: list[T] = []
        self.deferred: list[T] = []  # records of this batch that start waiting
        self.forced = 0  # records applied because a wait limit was reached


class UsageGate(Generic[T]):
    """Per partition number: usage is applied only up to the event time the billing partition of the same number
    has been read to, unless that billing partition is fully read (nothing on the broker left to fetch).

    This is Kafka Streams' timestamp synchronisation across a task's co-partitioned inputs (max.task.idle.ms = 0:
    wait for data the broker already holds, never for producers), for the one direction ADR 0006 leaves open:
    billing read behind usage. Billing is never held here (ADR 0006 holds billing read ahead of usage)."""

    def __init__(self, max_wait_s: float = MAX_WAIT_S, max_waiting: int = MAX_WAITING) -> None:
        self.max_wait_s = max_wait_s
        self.max_waiting = max_waiting
        self.billing_read_s: dict[int, float] = {}  # partition -> newest billing event time read, epoch s
        self.waiting: dict[int, deque[_Waiting[T]]] = {}

    def saw_billing(self, partition: int, at_s: float) -> None:
        if at_s > self.billing_read_s.get(partition, float("-inf")):
            self.billing_read_s[partition] = at_s

    def bound(self, partition: int, billing_caught_up: bool) -> float:
        """Usage of this partition dated at or before the bound may be applied."""
        if billing_caught_up:
            return float("inf")
        return self.billing_read_s.get(partition, float("-inf"))

    def admit(self, partition: int, usage: Iterable[tuple[float, T]], billing_caught_up: bool,
              now: float) -> Admitted[T]:
        """The partition's waiting records, then this batch's usage records (offset order), up to the bound; the
        first one past it and everything after it wait (a partition's order is never broken)."""
        out: Admitted[T] = Admitted()
        queue = self.waiting.setdefault(partition, deque())
        bound = self.bound(partition, billing_caught_up)
        force = bool(queue) and (now - queue[0].since >= self.max_wait_s or self.count() >= self.max_waiting)
        while queue and (force or queue[0].at_s <= bound):
            out.released.append(queue.popleft().item)
        if force:
            out.forced = len(out.released)
        for at_s, item in usage:
            if not queue and (force or at_s <= bound):
                out.now.append(item)
            else:
                queue.append(_Waiting(at_s, item, now))
                out.deferred.append(item)
        if not queue:
            del self.waiting[partition]
        return out

    def partitions_waiting(self) -> list[int]:
        return list(self.waiting)

    def count(self) -> int:
        return sum(len(q) for q in self.waiting.values())

    def forget(self, keep: Iterable[int] | None = None) -> list[T]:
        """Drop the waiting records of partitions not in `keep` (all when None), and what was read of their billing:
        after a rebalance they are read again from the group's committed offset. Returns the dropped records."""
        kept = set(keep) if keep is not None else set()
        dropped: list[T] = []
        for p in [p for p in self.waiting if p not in kept]:
            dropped.extend(w.item for w in self.waiting.pop(p))
        for p in [p for p in self.billing_read_s if p not in kept]:
            del self.billing_read_s[p]
        return dropped


def billing_read_to_end(next_offset: int, high: int | None, billing_fetched_ms: int | None,
                        usage_fetched_ms: int | None) -> bool:
    """Is billing partition p read to its end, as far as the usage of partition p is concerned? Every record up to
    the high watermark of billing p's last fetch answer is applied (`next_offset`: the offset after the last one
    applied), and that answer is at least as recent as the last answer for usage p (epoch ms, the consumer's own
    clock).

    The second condition is what makes "read to its end" true for the usage records at hand: a usage record
    fetched in a later answer than billing's high watermark could be dated after billing records written in
    between, which that watermark does not count. The consumer leaves a partition out of its fetches while it
    holds fetched records of it that the worker has not taken yet (aiokafka's prefetch), and a fetch answer can
    fail for one partition (a broker restarting): both keep billing's high watermark old while usage moves on."""
    if high is None or next_offset < high:
        return False
    if usage_fetched_ms is None:
        return True  # no answer for usage p yet: no usage record of it was fetched after billing's
    return billing_fetched_ms is not None and billing_fetched_ms >= usage_fetched_ms


class Aligned(Generic[M]):
    """One batch after the gate: `ready` to apply now (each partition's records in offset order); `released` the
    messages of records that had waited, to acknowledge once applied; `deferred` the messages that start waiting."""

    __slots__ = ("deferred", "forced", "ready", "released")

    def __init__(self) -> None:
        self.ready: list[DecodedRecord] = []
        self.released: list[M] = []
        self.deferred: list[M] = []
        self.forced: dict[int, int] = {}  # partition -> records applied past a wait limit


def align(gate: UsageGate[tuple[DecodedRecord, M]], batch: Iterable[tuple[DecodedRecord, M]], usage_topic: str,
          billing_topic: str, billing_caught_up: Callable[[int], bool], now: float) -> Aligned[M]:
    """Billing and other records pass (billing moves its partition's bound); usage passes up to the bound of its
    partition number, after the records of that partition already waiting."""
    out: Aligned[M] = Aligned()
    usage: dict[int, list[tuple[float, tuple[DecodedRecord, M]]]] = {}
    for item, ref in batch:
        rec = item.rec
        if rec.topic == usage_topic and rec.partition is not None:
            usage.setdefault(rec.partition, []).append((item.at_s, (item, ref)))
            continue
        if rec.topic == billing_topic and rec.partition is not None and item.decoded is not None \
                and item.decoded.event is not None:
            gate.saw_billing(rec.partition, item.at_s)
        out.ready.append(item)
    for p in sorted(set(usage) | set(gate.partitions_waiting())):
        admitted = gate.admit(p, usage.get(p, ()), billing_caught_up(p), now)
        for item, ref in admitted.released:  # the partition's older offsets first
            out.ready.append(item)
            out.released.append(ref)
        out.ready.extend(item for item, _ in admitted.now)
        out.deferred.extend(ref for _, ref in admitted.deferred)
        if admitted.forced:
            out.forced[p] = admitted.forced
    return out


def partitions_to_check(gate: UsageGate[T], items: Iterable[DecodedRecord], usage_topic: str) -> set[int]:
    """Partition numbers whose billing partition the gate will ask about for this batch."""
    found = {i.rec.partition for i in items if i.rec.topic == usage_topic and i.rec.partition is not None}
    return found | set(gate.partitions_waiting())
