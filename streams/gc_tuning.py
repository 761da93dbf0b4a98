"""Garbage-collector settings for the long-running hot loops (worker, replay): fewer full collections (ADR 0013)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# CPython's default young-generation threshold (net container allocations between two young collections).
CPYTHON_GEN0_THRESHOLD = 700
# Ours (CHURNWATCH_GC_GEN0_THRESHOLD): a young collection every 50,000 net allocations, a full one every 5 million.
GEN0_THRESHOLD = 50_000


def tune_gc(gen0_threshold: int) -> None:
    """Collect once, freeze what start-up allocated, and collect the young generation every `gen0_threshold` net
    container allocations (0: leave CPython's collector as it is).

    Why: an account state is hundreds of small containers, and with CPython's threshold of 700 the collector
    traverses every live state again on each full collection (every 70,000 net allocations): 21 % of an
    in-process replay's time (ADR 0013). Frozen start-up objects (modules, Faust, pydantic schemas) are never
    traversed again. The older generations keep CPython's ratios (10, 10), so cycles are still collected."""
    if gen0_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


@contextmanager
def tuned_gc(gen0_threshold: int) -> Iterator[None]:
    """`tune_gc` for a block of an otherwise ordinary process (the replay command, the bench's replay phase), undone
    at its end. `gc.unfreeze` cannot tell whose objects it thaws: a process that froze its own must not use this."""
    if gen0_threshold <= 0:
        yield
        return
    before = gc.get_threshold()
    tune_gc(gen0_threshold)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
