"""Work over many items in steps of bounded time, so the event loop runs other work (batches) in between."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Steps(Generic[T]):
    """`items` handed out a step at a time: each step ends once the caller's work on it has taken `step_s()` seconds,
    asked at the step's start (at least one item per step). The caller takes the state lock per step and releases it in between, so batches
    waiting for it go first (ADR 0012, ADR 0016): a flush, a day-end tick, a burst of health records or a flush's
    acknowledgements never hold up the account stream for more than about one step at a time."""

    def __init__(self, items: Sequence[T], step_s: Callable[[], float],
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.items = items
        self.step_s = step_s  # asked at the start of each step: its length may follow the load (ADR 0034)
        self.clock = clock
        self.done = 0  # items handed out so far

    @property
    def left(self) -> bool:
        return self.done < len(self.items)

    def step(self) -> Iterator[T]:
        """The next items, until the work on them has taken step_s() (checked after each item's work)."""
        deadline = self.clock() + self.step_s()
        while self.done < len(self.items):
            item = self.items[self.done]
            self.done += 1
            yield item
            if self.clock() >= deadline:
                return


# Work paced by `pause_after_step` is spread to end by this share of its budget: the pace so far is an estimate, and
# a pause lasts longer than asked while a batch runs.
SPREAD_TARGET = 0.8


def duty_pause(work_s: float, duty: float) -> float:
    """Seconds to wait after `work_s` seconds of background work so that it takes `duty` of the event loop (or of the
    interpreter lock) and batches get the rest (ADR 0020); none at a duty of 1."""
    return 0.0 if duty >= 1.0 else work_s * (1.0 - duty) / duty


def pause_after_step(step_s: float, duty: float, elapsed_s: float, budget_s: float, *, work_s: float = 0.0,
                     done: int = 0, left: int = 0) -> float:
    """`duty_pause` after a step of one piece of work that ran `step_s` seconds, none once the work has run
    `budget_s` seconds of wall time in all (`elapsed_s`): it always ends within about budget_s plus its own CPU
    time.

    With `left` items still to do after `done` items took `work_s` seconds of work, the duty is raised as far as
    the rest needs to end by SPREAD_TARGET of the budget at that pace (ADR 0031). Paced at `duty` alone, work
    that needs more than `duty` of the budget ran its remainder back to back once the budget was spent: a flush
    of 5,000 accounts held the event loop ~0.35 s in 20-ms steps with a few ms between them."""
    if elapsed_s >= budget_s:
        return 0.0
    if done > 0 and left > 0:
        time_left_s = SPREAD_TARGET * budget_s - elapsed_s
        if time_left_s <= 0:  # the pace so far was too hopeful: what is left of the whole budget
            time_left_s = budget_s - elapsed_s
        duty = max(duty, work_s * left / done / time_left_s)
    return duty_pause(step_s, duty)


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


# A worker with slack does its background work in shorter steps (ADR 0034): below this share of the last second
# spent in batches, a step is SLACK_STEP_SHARE of CHURNWATCH_STATE_FLUSH_STEP_S, but not below SLACK_STEP_MIN_S
# (seconds): every step waits for its changelog records' delivery, a produce round trip of ~1-5 ms, before the
# next, so sub-millisecond steps would write a state or two per round trip (a precaution, not measured: ADR 0034).
SLACK_BUSY_SHARE = 0.35
SLACK_STEP_SHARE = 0.25
SLACK_STEP_MIN_S = 0.001


def background_step_s(step_s: float, busy_share: float) -> float:
    """How long the next step of background work (a flush's writes or acknowledgements, health records, the day-end
    tick) may hold the account stream, seconds (ADR 0034). With slack, short steps: an event that arrives during a
    step waits for it, and the steps' own overhead (their awaits, a flush step's changelog batch) is affordable.
    Busy, CHURNWATCH_STATE_FLUSH_STEP_S: near capacity that overhead grows the queue more than shorter steps shorten
    it (ADR 0031 addendum)."""
    if busy_share >= SLACK_BUSY_SHARE:
        return step_s
    return min(step_s, max(SLACK_STEP_MIN_S, step_s * SLACK_STEP_SHARE))


class BusyShare:
    """The share of wall time spent on batches over about the last `window_s` seconds: this window and the one
    before it, so the figure does not fall to zero when a window begins."""

    def __init__(self, window_s: float = 1.0) -> None:
        self.window_s = window_s
        self._window = 0  # index of the current window (monotonic seconds // window_s)
        self._current = 0.0  # busy seconds in the current window
        self._previous = 0.0  # and in the one before it

    def _roll(self, now: float) -> float:
        """Move to `now`'s window; the seconds into it."""
        window = int(now // self.window_s)
        if window != self._window:
            self._previous = self._current if window == self._window + 1 else 0.0
            self._current = 0.0
            self._window = window
        return now - window * self.window_s

    def add(self, seconds: float, now: float) -> None:
        """A batch took `seconds` of wall time, ending at `now` (monotonic seconds)."""
        self._roll(now)
        self._current += seconds

    def share(self, now: float) -> float:
        """Busy seconds over the previous and the current window, per second of them (0-1)."""
        into = self._roll(now)
        return min(1.0, (self._previous + self._current) / (self.window_s + into))
