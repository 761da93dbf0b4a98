"""Decoded account states kept next to the bytes last written for them, so a batch skips decoding (ADR 0008)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

S = TypeVar("S")


class DecodedStates(Generic[S]):
    """Key -> (bytes written to the table, the decoded state they encode), least recently used first out.

    A hit needs the table to hold exactly the bytes cached: anything else that wrote the key (a tick, changelog
    recovery after a rebalance) makes it a miss, and the caller decodes. The caller owns the discipline that makes
    this safe: the state object is changed only on the way to writing its new bytes (and `put` again), never
    left changed with the old bytes in the table (a tick works on its own decoded copy for that reason)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.entries: OrderedDict[bytes, tuple[bytes, S]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes, raw: bytes) -> S | None:
        entry = self.entries.get(key)
        if entry is None or entry[0] != raw:
            self.misses += 1
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: bytes, raw: bytes, state: S) -> None:
        if self.max_entries <= 0:
            return
        self.entries[key] = (raw, state)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def clear(self) -> None:
        self.entries.clear()

    def __len__(self) -> int:
        return len(self.entries)
