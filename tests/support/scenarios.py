"""A scripted population for alert tests: each account crosses one trigger at a known day, plus controls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday
DAYS = 70


def _ev(events: list[dict[str, Any]], account: str, day: float, etype: str, **fields: Any) -> None:
    when = T0 + timedelta(days=day)
    events.append({"event_id": f"{account}-{len(events)}", "account_id": account, "type": etype,
                   "occurred_at": when.isoformat().replace("+00:00", "Z"), **fields})


def _healthy_account(events: list[dict[str, Any]], account: str, active_until: int = DAYS) -> None:
    _ev(events, account, 0, "subscription.started", plan="team", seats=4, mrr=19900, currency="USD")
    users = [("admin", f"{account}-a"), ("champion", f"{account}-c"), ("member", f"{account}-m1"),
             ("member", f"{account}-m2")]
    for i, (role, user) in enumerate(users):
        _ev(events, account, 0.01 * (i + 1), "user.added", user_id=user, role=role)
    for day in range(active_until):
        if (T0 + timedelta(days=day)).weekday() >= 5:
            continue
        for n, (_role, user) in enumerate(users):
            _ev(events, account, day + 0.1 + n * 0.01, "session.started", user_id=user)
            for f in range(6):
                _ev(events, account, day + 0.2 + n * 0.01, "feature.used", user_id=user, feature=f"f{f}")
        if day % 30 == 29:
            _ev(events, account, day + 0.5, "invoice.paid", amount=19900, currency="USD")


def scenario() -> tuple[list[dict[str, Any]], dict[str, list[tuple[str, str, int]]]]:
    """Events sorted by time, and per account the expected (trigger, transition, day since T0) records."""
    events: list[dict[str, Any]] = []
    expected: dict[str, list[tuple[str, str, int]]] = {}
    for i in range(5):
        _healthy_account(events, f"ctrl-{i}")
        expected[f"ctrl-{i}"] = []
    _healthy_account(events, "pay-1")
    _ev(events, "pay-1", 50.3, "payment.failed", amount=19900, attempt=1)
    _ev(events, "pay-1", 52.3, "payment.failed", amount=19900, attempt=3)
    _ev(events, "pay-1", 55.3, "invoice.paid", amount=19900)
    expected["pay-1"] = [("payment_failed", "opened", 50), ("payment_failed", "escalated", 52),
                         ("payment_failed", "resolved", 55)]
    _healthy_account(events, "cancel-1")
    _ev(events, "cancel-1", 50.3, "subscription.cancel_scheduled")
    expected["cancel-1"] = [("cancellation_scheduled", "opened", 50)]
    _healthy_account(events, "nps-1")
    _ev(events, "nps-1", 50.3, "nps.responded", user_id="nps-1-a", score=2)
    expected["nps-1"] = [("nps_detractor", "opened", 50)]
    _healthy_account(events, "champ-1")
    _ev(events, "champ-1", 45.3, "user.removed", user_id="champ-1-c", role="champion")
    expected["champ-1"] = [("key_user_removed", "opened", 45)]
    _healthy_account(events, "ghost-1", active_until=40)
    expected["ghost-1"] = [("inactivity", "opened", 53)]
    events.sort(key=lambda e: (e["occurred_at"], e["event_id"]))
    return events, expected
