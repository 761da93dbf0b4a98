"""Work over many items in steps of bounded time, so the event loop runs other work (batches) in between."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Steps(Generic[T]):
    """`items` handed out a step at a time: each step ends once the caller's work on it has taken `step_s` seconds
    (at least one item per step). The caller takes the state lock per step and releases it in between, so batches
    waiting for it go first (ADR 0012, ADR 0016): a flush, a day-end tick, a burst of health records or a flush's
    acknowledgements never hold up the account stream for more than about one step at a time."""

    def __init__(self, items: Sequence[T], step_s: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.items = items
        self.step_s = step_s
        self.clock = clock
        self.done = 0  # items handed out so far

    @property
    def left(self) -> bool:
        return self.done < len(self.items)

    def step(self) -> Iterator[T]:
        """The next items, until the work on them has taken step_s (checked after each item's work)."""
        deadline = self.clock() + self.step_s
        while self.done < len(self.items):
            item = self.items[self.done]
            self.done += 1
            yield item
            if self.clock() >= deadline:
                return


def duty_pause(work_s: float, duty: float) -> float:
    """Seconds to wait after `work_s` seconds of background work so that it takes `duty` of the event loop (or of the
    interpreter lock) and batches get the rest (ADR 0020); none at a duty of 1."""
    return 0.0 if duty >= 1.0 else work_s * (1.0 - duty) / duty


def pause_after_step(step_s: float, duty: float, elapsed_s: float, budget_s: float) -> float:
    """`duty_pause` after a step of one piece of work that ran `step_s` seconds, none once the work has run
    `budget_s` seconds of wall time in all (`elapsed_s`): it always ends within about budget_s plus its own CPU
    time."""
    return 0.0 if elapsed_s >= budget_s else duty_pause(step_s, duty)


class Pacer:
    """For work running in a thread beside the event loop (the portfolio refresh): called between items, it sleeps,
    releasing the interpreter lock, once the work since its last sleep has taken `step_s`, so the thread holds the
    lock at most about `duty` of the time (ADR 0020). Without it the thread and the loop share the lock about
    half and half, and batches take twice as long while the work runs."""

    def __init__(self, duty: float, step_s: float = 0.005, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.duty, self.step_s, self.clock, self.sleep = duty, step_s, clock, sleep
        self.began = clock()

    def __call__(self) -> None:
        worked = self.clock() - self.began
        if worked >= self.step_s:
            pause = duty_pause(worked, self.duty)
            if pause:
                self.sleep(pause)
            self.began = self.clock()
