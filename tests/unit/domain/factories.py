"""Small builders of canonical events and of typical / busy accounts for the account-state tests."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

from schemas.events import CanonicalEvent, canonical_event_adapter
from streams.domain.account import AccountState, apply_event, new_account
from streams.domain.config import DomainConfig

ACCOUNT = "acct_0042"
_ids = itertools.count(1)


def at(text: str) -> datetime:
    """'2024-05-01T09:00:00Z' (or any ISO offset) -> aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def event(etype: str, when: datetime | str, *, event_id: str | None = None, account: str = ACCOUNT,
          **fields: Any) -> CanonicalEvent:
    """A validated canonical event; ids are unique unless given."""
    return canonical_event_adapter.validate_python({
        "type": etype,
        "event_id": event_id or f"evt_{next(_ids):08d}",
        "account_id": account,
        "occurred_at": at(when) if isinstance(when, str) else when,
        **fields,
    })


def session(when: datetime | str, user: str = "u1", **kw: Any) -> CanonicalEvent:
    return event("session.started", when, user_id=user, **kw)


def feature(when: datetime | str, name: str = "reports", user: str | None = "u1", count: int = 1,
            **kw: Any) -> CanonicalEvent:
    return event("feature.used", when, feature=name, user_id=user, count=count, **kw)


def state_of(events: Iterable[CanonicalEvent], config: DomainConfig | None = None,
             account: str = ACCOUNT) -> AccountState:
    config = config or DomainConfig()
    state = new_account(account)
    for ev in events:
        state = apply_event(state, ev, config).state
    return state


# --- profiles measured in docs/state.md ---------------------------------------------------------------------

PROFILE_END = date(2024, 6, 30)  # last day of both profiles


def _day_start(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _billing(start: datetime, seats: int, mrr: int, months: int) -> list[CanonicalEvent]:
    evs = [event("subscription.started", start, plan="business", seats=seats, mrr=mrr,
                 renews_at=start + timedelta(days=30))]
    for m in range(1, months + 1):
        evs.append(event("invoice.paid", start + timedelta(days=30 * m, hours=1), amount=mrr, invoice_id=f"in_{m}"))
    return evs


@cache
def busy_events(dense: bool = False) -> tuple[CanonicalEvent, ...]:
    """A busy account: active every one of 90 days, 50 users, 40 features, 3 NPS answers, tickets, API traffic.

    dense=True is the worst case: every user and every feature active every day.
    """
    rng = random.Random(2024)
    first = PROFILE_END - timedelta(days=89)
    evs = _billing(_day_start(first) - timedelta(days=200), seats=60, mrr=180_000, months=9)
    evs.append(event("account.traits", _day_start(first), traits={
        "industry": "logistics", "region": "emea", "size": "200-500", "segment": "mid-market"}))
    for i, role in enumerate(("owner", "admin", "champion", "admin")):
        evs.append(event("user.added", _day_start(first), user_id=f"user_{i:02d}", role=role))
    for n in range(90):
        d = first + timedelta(days=n)
        t = _day_start(d) + timedelta(hours=8)
        weekend = d.weekday() >= 5
        for u in range(50):
            p = 1.0 if dense else (0.9, 0.55, 0.15)[0 if u < 10 else 1 if u < 35 else 2] * (0.3 if weekend else 1)
            if rng.random() >= p:
                continue
            user = f"user_{u:02d}"
            evs.append(session(t + timedelta(minutes=u), user))
            for k in range(rng.randint(2, 6)):
                f = rng.choice(range(10)) if rng.random() < 0.7 else rng.choice(range(10, 40))
                evs.append(feature(t + timedelta(minutes=u, seconds=k), f"feature_{f:02d}", user,
                                   count=rng.randint(1, 9)))
        if dense:
            for f in range(40):
                evs.append(feature(t + timedelta(hours=1, seconds=f), f"feature_{f:02d}", "user_00"))
        evs.append(event("api.called", t + timedelta(hours=2), count=rng.randint(800, 20_000)))
        if n % 9 == 0:
            evs.append(event("usage_limit.reached", t + timedelta(hours=3), limit="api", used=10_000, quota=10_000))
        if n % 6 == 0:
            evs.append(event("ticket.opened", t + timedelta(hours=4), ticket_id=f"T{n}"))
        if n % 6 == 0 and n < 84:
            evs.append(event("ticket.closed", t + timedelta(days=2), ticket_id=f"T{n}"))
        if n in (20, 55, 80):
            evs.append(event("nps.responded", t + timedelta(hours=5), user_id=f"user_{n % 50:02d}", score=n % 11))
    return tuple(sorted(evs, key=lambda e: e.occurred_at))


@cache
def typical_events() -> tuple[CanonicalEvent, ...]:
    """A typical account: 8 users, 12 features, active on about a third of the 90 days, a ticket, an NPS."""
    rng = random.Random(7)
    first = PROFILE_END - timedelta(days=89)
    evs = _billing(_day_start(first) - timedelta(days=300), seats=10, mrr=49_00, months=12)
    evs.append(event("account.traits", _day_start(first), traits={"industry": "retail", "size": "11-50"}))
    evs.append(event("user.added", _day_start(first), user_id="u0", role="owner"))
    for n in range(90):
        d = first + timedelta(days=n)
        t = _day_start(d) + timedelta(hours=10)
        if n == 40:
            evs.append(event("ticket.opened", t, ticket_id="T1"))
        if n == 60:
            evs.append(event("nps.responded", t, user_id="u1", score=8))
        if d.weekday() >= 5 or rng.random() > 0.5:
            continue
        for u in range(8):
            if rng.random() < 0.35:
                evs.append(session(t + timedelta(minutes=u), f"u{u}"))
                for k in range(rng.randint(1, 4)):
                    evs.append(feature(t + timedelta(minutes=u, seconds=k), f"f{rng.randrange(12)}", f"u{u}"))
    return tuple(sorted(evs, key=lambda e: e.occurred_at))


def busy_account(dense: bool = False) -> AccountState:
    return state_of(busy_events(dense))


def typical_account() -> AccountState:
    return state_of(typical_events())
