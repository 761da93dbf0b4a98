"""Seeded generator of multi-month canonical billing and NPS event streams for metric tests."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.events import (
    InvoicePaid,
    NpsResponded,
    PaymentFailed,
    SubscriptionCanceled,
    SubscriptionCancelScheduled,
    SubscriptionChanged,
    SubscriptionPaused,
    SubscriptionReactivated,
    SubscriptionRenewed,
    SubscriptionResumed,
    SubscriptionStarted,
    TrialConverted,
    TrialExpired,
    TrialStarted,
    canonical_event_adapter,
)

# List price per seat and month, minor units; annual plans bill 10 months for 12 (mrr = price * 10 // 12).
PLAN_PRICES = {"starter": 2_900, "pro": 9_900, "business": 29_900}
PLAN_ORDER = ["starter", "pro", "business"]
SEGMENTS = [("smb", 0.6, (1, 3)), ("mid", 0.3, (3, 15)), ("enterprise", 0.1, (15, 80))]


def canonical(event_id: str, account_id: str, occurred_at: str, type: str, **fields: Any) -> Any:
    """One validated canonical event, for hand-written examples ("2024-03-01T00:00:00Z" style times)."""
    return canonical_event_adapter.validate_python(
        {"event_id": event_id, "account_id": account_id, "occurred_at": occurred_at, "type": type, **fields}
    )


@dataclass
class World:
    """Events in occurred_at order, retried duplicates included; segments by account."""

    events: list[Any]
    segments: dict[str, str]
    first_month: str
    last_month: str

    @property
    def billing_events(self) -> list[Any]:
        return [e for e in self.events if e.type != "nps.responded"]

    @property
    def nps_events(self) -> list[Any]:
        return [e for e in self.events if e.type == "nps.responded"]


def plan_mrr(plan: str, seats: int, interval: str) -> int:
    monthly = PLAN_PRICES[plan] * seats
    return monthly * 10 // 12 if interval == "year" else monthly


@dataclass
class _Account:
    rng: random.Random
    account_id: str
    end: datetime  # exclusive: nothing at or after it is emitted
    duplicate_rate: float
    events: list[Any] = field(default_factory=list)
    plan: str = "starter"
    seats: int = 1
    interval: str = "month"

    def emit(self, cls: type, at: datetime, **fields: Any) -> bool:
        if at >= self.end:
            return False
        event = cls(
            event_id=f"ev-{self.rng.getrandbits(40):010x}",
            account_id=self.account_id,
            occurred_at=at,
            source="world",
            **fields,
        )
        self.events.append(event)
        if self.rng.random() < self.duplicate_rate:
            self.events.append(event)  # a webhook retry: same event_id, delivered again later
        return True

    def snapshot(self, cls: type, at: datetime, **extra: Any) -> bool:
        return self.emit(
            cls,
            at,
            plan=self.plan,
            seats=self.seats,
            mrr=plan_mrr(self.plan, self.seats, self.interval),
            billing_interval=self.interval,
            **extra,
        )


def _start_of_next_month(at: datetime) -> datetime:
    year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def _simulate(acc: _Account, start: datetime, seat_range: tuple[int, int]) -> None:
    rng = acc.rng
    acc.plan = rng.choice(PLAN_ORDER[:2])
    acc.seats = rng.randint(*seat_range)
    acc.interval = "year" if rng.random() < 0.15 else "month"
    t = start
    path = rng.random()
    if path < 0.4:
        acc.emit(TrialStarted, t, type="trial.started", plan=acc.plan)
        outcome = rng.random()
        if outcome < 0.55:
            t += timedelta(days=rng.randint(2, 14), minutes=rng.randint(0, 600))
            if not acc.snapshot(TrialConverted, t, type="trial.converted"):
                return
        elif outcome < 0.9:
            t += timedelta(days=14)
            acc.emit(TrialExpired, t, type="trial.expired")
            if rng.random() > 0.3:
                return
            t += timedelta(days=rng.randint(20, 100), hours=rng.randint(0, 23))
            if not acc.snapshot(SubscriptionStarted, t, type="subscription.started"):
                return
        else:
            return  # abandoned trial: never resolves
    elif path < 0.43:
        # Same-month blip: starts and cancels before the month ends (never a paying month end).
        if not acc.snapshot(SubscriptionStarted, t, type="subscription.started"):
            return
        month_end = _start_of_next_month(t)
        blip_end = t + (month_end - t) * rng.uniform(0.1, 0.9)
        acc.emit(SubscriptionCanceled, blip_end, type="subscription.canceled")
        if rng.random() < 0.5:
            return
        t = blip_end + timedelta(days=rng.randint(10, 60))
        if not acc.snapshot(SubscriptionStarted, t, type="subscription.started"):
            return
    elif not acc.snapshot(SubscriptionStarted, t, type="subscription.started"):
        return
    _live(acc, t)


def _live(acc: _Account, t: datetime) -> None:
    """Renewals and changes until the account cancels for good or the world ends."""
    rng = acc.rng
    period = timedelta(days=365) if acc.interval == "year" else timedelta(days=30, hours=10)
    renewal = t + period
    while t < acc.end:
        step = t + timedelta(days=rng.randint(4, 34), minutes=rng.randint(0, 1439))
        if rng.random() < 0.03:
            step = _start_of_next_month(t)  # exactly on a month boundary
        if step >= renewal:
            t = renewal
            acc.snapshot(SubscriptionRenewed, t, type="subscription.renewed")
            amount = plan_mrr(acc.plan, acc.seats, acc.interval) * (12 if acc.interval == "year" else 1)
            if rng.random() < 0.06:
                acc.emit(PaymentFailed, t, type="payment.failed", amount=amount, attempt=1)
                acc.emit(InvoicePaid, t + timedelta(days=2), type="invoice.paid", amount=amount)
            else:
                acc.emit(InvoicePaid, t + timedelta(minutes=1), type="invoice.paid", amount=amount)
            renewal += period
            continue
        t = step
        r = rng.random()
        if r < 0.07 and acc.plan != PLAN_ORDER[-1]:
            acc.plan = PLAN_ORDER[PLAN_ORDER.index(acc.plan) + 1]
            acc.snapshot(SubscriptionChanged, t, type="subscription.changed")
        elif r < 0.12 and acc.plan != PLAN_ORDER[0]:
            acc.plan = PLAN_ORDER[PLAN_ORDER.index(acc.plan) - 1]
            acc.snapshot(SubscriptionChanged, t, type="subscription.changed")
        elif r < 0.22:
            acc.seats = max(1, acc.seats + rng.choice([-3, -2, -1, 1, 1, 2, 3]))
            acc.snapshot(SubscriptionChanged, t, type="subscription.changed")
        elif r < 0.25:
            # Upgrade then back within a few days: usually nets out inside the month.
            acc.seats += rng.randint(1, 5)
            acc.snapshot(SubscriptionChanged, t, type="subscription.changed")
            acc.seats = max(1, acc.seats - rng.randint(1, 5))
            acc.snapshot(
                SubscriptionChanged, t + timedelta(days=rng.randint(0, 4)), type="subscription.changed"
            )
        elif r < 0.27:
            # Two changes at the same instant: (occurred_at, event_id) order decides.
            acc.seats += 1
            acc.snapshot(SubscriptionChanged, t, type="subscription.changed")
            acc.seats += 1
            acc.snapshot(SubscriptionChanged, t, type="subscription.changed")
        elif r < 0.29:
            acc.emit(SubscriptionPaused, t, type="subscription.paused")
            t += timedelta(days=rng.randint(10, 70))
            acc.emit(SubscriptionResumed, t, type="subscription.resumed")
            renewal = t + period
        elif r < 0.30:
            # Down to a free plan (MRR 0 while "active"), sometimes back later.
            saved = acc.plan
            acc.emit(SubscriptionChanged, t, type="subscription.changed", plan="free", seats=acc.seats, mrr=0)
            if rng.random() < 0.5:
                return
            t += timedelta(days=rng.randint(15, 90))
            acc.plan = saved
            acc.snapshot(SubscriptionChanged, t, type="subscription.changed")
        elif r < 0.36:
            acc.emit(SubscriptionCancelScheduled, t, type="subscription.cancel_scheduled", cancel_at=renewal)
            t = renewal
            acc.emit(SubscriptionCanceled, t, type="subscription.canceled")
            if rng.random() > 0.35:
                return
            t += timedelta(days=rng.randint(15, 120), hours=rng.randint(0, 23))
            acc.plan = rng.choice(PLAN_ORDER)
            acc.snapshot(SubscriptionReactivated, t, type="subscription.reactivated")
            renewal = t + period


def _nps(acc: _Account, first: datetime) -> None:
    rng = acc.rng
    month_start = datetime(first.year, first.month, 1, tzinfo=UTC)
    users = [f"u{i}" for i in range(rng.randint(1, 4))]
    while month_start < acc.end:
        nxt = _start_of_next_month(month_start)
        if rng.random() < 0.3:
            for user in rng.sample(users, rng.randint(1, len(users))):
                span = (nxt - month_start).total_seconds()
                at = month_start + timedelta(seconds=rng.uniform(0, span * 0.6))
                acc.emit(NpsResponded, at, type="nps.responded", user_id=user, score=rng.randint(0, 10))
                if rng.random() < 0.25:
                    later = at + timedelta(seconds=rng.uniform(1, (nxt - at).total_seconds() - 1))
                    acc.emit(
                        NpsResponded, later, type="nps.responded", user_id=user, score=rng.randint(0, 10)
                    )
        month_start = nxt


def generate_world(
    seed: int = 20240601,
    accounts: int = 300,
    months: int = 15,
    first_month: str = "2023-01",
    duplicate_rate: float = 0.03,
) -> World:
    """A reproducible SaaS: trials, starts, renewals, up/downgrades, seats, pauses, cancels, reactivations."""
    rng = random.Random(seed)
    begin = datetime(int(first_month[:4]), int(first_month[5:7]), 1, tzinfo=UTC)
    total = begin.year * 12 + begin.month - 1 + months
    end = datetime(total // 12, total % 12 + 1, 1, tzinfo=UTC)
    last = end - timedelta(days=1)
    events: list[Any] = []
    segments: dict[str, str] = {}
    signup_span = (end - begin) - timedelta(days=45)
    for n in range(accounts):
        account_id = f"acct-{n:04d}"
        roll = rng.random()
        cumulative = 0.0
        segment, seat_range = SEGMENTS[0][0], SEGMENTS[0][2]
        for name, weight, seats in SEGMENTS:
            cumulative += weight
            if roll < cumulative:
                segment, seat_range = name, seats
                break
        segments[account_id] = segment
        acc = _Account(random.Random(rng.getrandbits(64)), account_id, end, duplicate_rate)
        start = begin + signup_span * rng.random()
        _simulate(acc, start, seat_range)
        _nps(acc, start)
        events.extend(acc.events)
    events.sort(key=lambda e: (e.occurred_at, e.event_id))
    return World(events, segments, first_month, f"{last.year:04d}-{last.month:02d}")


def deliver_within_lateness(events: Iterable[Any], lateness: timedelta, seed: int = 1) -> list[Any]:
    """An arrival order where every event arrives less than `lateness` after its occurred_at.

    Each event gets a delay in [0, lateness) and the stream is ordered by occurred_at + delay, so an event is
    never older than `lateness` behind the newest event delivered before it.
    """
    rng = random.Random(seed)
    span_us = int(lateness / timedelta(microseconds=1))
    keyed = [
        (e.occurred_at + timedelta(microseconds=rng.randrange(span_us)), i, e) for i, e in enumerate(events)
    ]
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [e for _, _, e in keyed]
