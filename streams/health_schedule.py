"""Which accounts' coalesced health records the health timer publishes next (ADR 0017), in O(due) per tick.

The worker keeps, per account, the newest state whose health record is not published yet (`pending`) and the
monotonic time of its last publish (`last_published`). A record is due once its last publish is
`publish_interval_s` old; a tick publishes at most a quota of them, longest-waiting first.

Until 2026-12-06 every tick scanned every pending account for the due ones and sorted them: ~13 ms of event loop
a second at 50,000 pending accounts (the issue's company), during which no batch ran. Here a heap holds one entry
per pending account, keyed by its last publish, so a tick pops only what it publishes.

Invariant: every pending account has an entry `(last_published.get(account, 0.0), account)` in `_due_heap`. An
account's last-publish time changes only when it is published, which also takes it out of `pending`, so the
entries of published accounts are stale: a popped entry counts only if its account is pending and its time is
the account's. Stale entries have old times and leave the heap as the ticks reach them."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

V = TypeVar("V")


def publishes_health_now(alert_transition: bool, cohort_changed: bool, ever_published: bool) -> bool:
    """Whether a batch or tick that changed an account publishes its health record at once. Otherwise the record
    waits in the health schedule for the health timer, which publishes it once its last publish is
    publish_interval_s old, at most `health_publish_quota` a tick.

    A changed account whose interval has passed waits for the timer too, however busy it is (ADR 0017, amended
    2026-12-05): accounts that changed together come due together, and publishing each at its next event (~0.15 ms
    a record with its send and Redis writes) put ~240-890 health records a second on the batches for ~9 s every
    interval in the bench's latency phase, a 5,000-account wave the timer's quota was made to spread."""
    return alert_transition or cohort_changed or not ever_published


class HealthSchedule(Generic[V]):
    """Pending health records per account, their last-publish times and the due order (monotonic seconds)."""

    def __init__(self) -> None:
        self.pending: dict[str, V] = {}
        self.last_published: dict[str, float] = {}
        self._due_heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self.pending)

    def ever_published(self, account_id: str) -> bool:
        return account_id in self.last_published

    def defer(self, account_id: str, value: V) -> None:
        """The account's record changed and waits for the timer: `value` replaces any value already waiting."""
        if account_id not in self.pending:
            heapq.heappush(self._due_heap, (self.last_published.get(account_id, 0.0), account_id))
        self.pending[account_id] = value

    def route(self, changed: dict[str, V], alerted: set[str], cohort_changed: set[str] | frozenset[str]) -> list[str]:
        """The accounts a batch or tick changed whose records go out now (`publishes_health_now`), in `changed`'s
        order; every other one is deferred to the timer. Compiled (ADR 0018), like `state_cache.changed_accounts`:
        the agent's loop over them (`_publish`, ~5 % of a live worker's samples, most of it this dictionary and
        heap work) ran in the interpreter: 602 against 480 ns an account for the two (2026-12-07)."""
        now_ids: list[str] = []
        for account_id, value in changed.items():
            if publishes_health_now(account_id in alerted, account_id in cohort_changed,
                                    self.ever_published(account_id)):
                now_ids.append(account_id)
            else:
                self.defer(account_id, value)
        return now_ids

    def published(self, account_id: str, now: float) -> None:
        """The account's record was published at `now`: nothing of it waits any more."""
        self.last_published[account_id] = now
        self.pending.pop(account_id, None)
        if len(self._due_heap) > 2 * len(self.pending) + 10_000:  # bound stale entries (batches publish too)
            self._due_heap = [(self.last_published.get(a, 0.0), a) for a in self.pending]
            heapq.heapify(self._due_heap)

    def is_due(self, account_id: str, now: float, interval_s: float) -> bool:
        return now - self.last_published.get(account_id, 0.0) >= interval_s

    def take_due(self, now: float, interval_s: float, quota: int) -> list[str]:
        """Up to `quota` pending accounts whose last publish is at least `interval_s` old, longest-waiting first.
        They stay pending until `published`; an account not published after all goes back with `put_back`."""
        heap, pending, last = self._due_heap, self.pending, self.last_published
        cutoff = now - interval_s
        due: list[str] = []
        taken: set[str] = set()  # an account put back and deferred again meanwhile has two equal entries
        while heap and len(due) < quota and heap[0][0] <= cutoff:
            at, account_id = heapq.heappop(heap)
            if account_id in pending and last.get(account_id, 0.0) == at and account_id not in taken:
                taken.add(account_id)
                due.append(account_id)
        return due

    def put_back(self, account_ids: Iterable[str]) -> None:
        """Accounts `take_due` returned that were not published (the tick stopped early): due again next tick."""
        for account_id in account_ids:
            if account_id in self.pending:
                heapq.heappush(self._due_heap, (self.last_published.get(account_id, 0.0), account_id))

    def clear_pending(self) -> None:
        """Every waiting record goes (their values belong to a discarded cache); last-publish times stay."""
        self.pending.clear()
        self._due_heap.clear()

    def forget_unowned(self, owns: Callable[[str], bool]) -> int:
        """Drop the last-publish times (and any waiting record) of accounts this worker no longer owns (rebalances
        moved them away); returns how many times went. Only theirs: an owned account without a time counts as never
        published (`publishes_health_now`), so forgetting every account, as this once did, had the next batches
        publish all owned accounts at once."""
        gone = [account_id for account_id in self.last_published if not owns(account_id)]
        for account_id in gone:
            del self.last_published[account_id]
            self.pending.pop(account_id, None)  # its heap entry is stale now: its time is no longer the account's
        return len(gone)
