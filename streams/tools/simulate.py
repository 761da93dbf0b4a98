"""A seeded, deterministic generator of a small SaaS world in canonical events, with known churners."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PLANS = (("starter", 4900), ("team", 19900), ("business", 59900))  # monthly price per seat-pack, cents
FEATURES = tuple(f"feature-{i:02d}" for i in range(24))


@dataclass(frozen=True)
class GroundTruth:
    account_id: str
    churns_on: datetime | None  # None: a healthy account


def generate(accounts: int, days: int, seed: int = 7,
             start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
             churn_share: float = 0.2) -> tuple[list[dict], list[GroundTruth]]:
    """Events sorted by event time, and who churns when. Churners' usage decays before they cancel."""
    rng = random.Random(seed)
    events: list[dict] = []
    truth: list[GroundTruth] = []
    seq = 0

    def emit(account: str, when: datetime, etype: str, **fields: object) -> None:
        nonlocal seq
        seq += 1
        events.append({"event_id": f"sim-{seed}-{seq}", "account_id": account,
                       "occurred_at": when.isoformat().replace("+00:00", "Z"), "type": etype,
                       "source": "simulate", **fields})

    for i in range(accounts):
        account = f"acct-{i:05d}"
        joined = start + timedelta(days=rng.randrange(0, max(1, days // 3)), hours=rng.randrange(8, 18))
        plan, price = rng.choice(PLANS)
        seats = rng.choice((3, 5, 10, 20))
        users = [f"{account}-u{u}" for u in range(max(2, seats // 2 + rng.randrange(0, 3)))]
        churner = rng.random() < churn_share
        life = days - (joined - start).days
        churn_day = rng.randrange(max(15, life // 2), max(16, life)) if churner and life > 20 else None
        truth.append(GroundTruth(account, joined + timedelta(days=churn_day) if churn_day else None))
        emit(account, joined, "subscription.started", plan=plan, seats=seats, mrr=price, currency="USD")
        for u, user in enumerate(users):
            emit(account, joined + timedelta(minutes=5 + u), "user.added", user_id=user,
                 role="admin" if u == 0 else ("champion" if u == 1 else "member"))
        habit = rng.uniform(0.4, 0.9)  # share of weekdays a user is active
        breadth = rng.randrange(4, 14)
        last_day = churn_day if churn_day is not None else life
        for d in range(last_day):
            day = joined + timedelta(days=d)
            weekend = day.weekday() >= 5
            decay = 1.0
            if churn_day is not None and d > churn_day - 30:
                decay = max(0.05, (churn_day - d) / 30)  # disengage over the last month
            for user in users:
                if rng.random() < habit * decay * (0.25 if weekend else 1.0):
                    t = day + timedelta(hours=rng.randrange(0, 8), minutes=rng.randrange(60))
                    emit(account, t, "session.started", user_id=user)
                    for f in rng.sample(FEATURES[:breadth], k=min(breadth, rng.randrange(1, 4))):
                        emit(account, t + timedelta(minutes=3), "feature.used", user_id=user, feature=f,
                             count=rng.randrange(1, 5))
            if d % 30 == 29:
                emit(account, day + timedelta(hours=1), "invoice.paid", amount=price, currency="USD")
            if d == 45 and rng.random() < 0.5:
                score = rng.randrange(0, 7) if churn_day else rng.randrange(7, 11)
                emit(account, day + timedelta(hours=2), "nps.responded", user_id=users[0], score=score)
        if churn_day is not None:
            when = joined + timedelta(days=churn_day)
            emit(account, when - timedelta(days=7), "subscription.cancel_scheduled")
            emit(account, when, "subscription.canceled", reason="too_expensive")
    events.sort(key=lambda e: (e["occurred_at"], e["event_id"]))
    return events, truth
