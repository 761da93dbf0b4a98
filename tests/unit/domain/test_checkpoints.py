"""Alert checkpoints are day ends: the alerts of an input do not depend on when (or whether) ticks ran."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from schemas.events import BILLING_TYPES
from streams.domain.aggregate import (
    Rules,
    apply,
    cohort_snapshot,
    decode_aggregate,
    due,
    encode_aggregate,
    new_aggregate,
    tick,
)
from streams.domain.config import DomainConfig
from tests.unit.domain.factories import ACCOUNT, event, feature, session

CONFIG = DomainConfig()
RULES = Rules.load(None, CONFIG)


def fading_account() -> list:
    """A paying team that is busy for six weeks, then goes quiet for a month, then comes back once."""
    events = [event("subscription.started", "2026-01-05T10:00:00Z", event_id="b1", plan="team", seats=5,
                    mrr=19900)]
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    for day in range(42):
        for user in ("u1", "u2", "u3"):
            when = start + timedelta(days=day, hours=hash(user) % 5)
            events.append(session(when, user=user, event_id=f"s{day}{user}"))
            events.append(feature(when, name=f"f{day % 6}", user=user, event_id=f"f{day}{user}"))
    events.append(session(start + timedelta(days=75), user="u1", event_id="back"))
    return events


def run(events: list, tick_at: list[datetime]) -> list[tuple[str, str, str]]:
    """Apply the events in order, ticking at the given watermarks whenever the stream has passed them."""
    agg = new_aggregate(ACCOUNT)
    out = []
    pending = sorted(tick_at)
    for e in events:
        while pending and pending[0] < e.occurred_at:
            out += tick(agg, pending.pop(0), RULES).alerts
        out += apply(agg, e, CONFIG, rules=RULES).alerts
    for mark in pending:
        out += tick(agg, mark, RULES).alerts
    return [(r.alert_id, r.transition, r.occurred_at.isoformat()) for r in out]


def test_ticks_at_random_instants_give_the_same_alerts_as_no_ticks_then_a_final_one() -> None:
    events = fading_account()
    end = datetime(2026, 4, 1, tzinfo=UTC)
    baseline = run(events, [end])
    rng = random.Random(3)
    first, last = events[0].occurred_at, end
    for _ in range(5):
        marks = [first + (last - first) * rng.random() for _ in range(rng.randint(1, 40))] + [end]
        assert run(events, marks) == baseline
    assert any(t == "opened" for _, t, _ in baseline), "the fading account should raise something"


def test_every_silent_day_end_is_evaluated_when_the_next_event_arrives() -> None:
    events = fading_account()
    # Inactivity opens during the silence and resolves when the account comes back: both must be seen
    # without any tick, exactly as a worker ticking every day would see them.
    no_ticks = run(events, [])
    daily = run(events, [datetime(2026, 1, 6, tzinfo=UTC) + timedelta(days=d) for d in range(70)])
    assert no_ticks == daily
    assert any(alert_id and t == "opened" for alert_id, t, _ in no_ticks)


def test_an_account_is_due_only_when_the_watermark_passed_a_day_end_it_has_not_evaluated() -> None:
    agg = new_aggregate(ACCOUNT)
    assert not due(agg, datetime(2026, 1, 10, tzinfo=UTC))  # no event yet: nothing to evaluate
    apply(agg, session("2026-01-05T09:00:00Z", event_id="s1"), CONFIG, rules=RULES)
    assert not due(agg, datetime(2026, 1, 5, 23, tzinfo=UTC))  # the day has not ended
    assert due(agg, datetime(2026, 1, 6, 0, 0, 1, tzinfo=UTC))
    tick(agg, datetime(2026, 1, 6, 0, 0, 1, tzinfo=UTC), RULES)
    assert not due(agg, datetime(2026, 1, 6, 12, tzinfo=UTC))


def churning_team() -> list:
    """A paying team that loses its admin on day 20 and cancels on day 30 (events in event-time order)."""
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    events = [event("subscription.started", start, event_id="b1", plan="team", seats=5, mrr=19900)]
    for user, role in (("u1", "admin"), ("u2", "member"), ("u3", "member")):
        events.append(event("user.added", start + timedelta(minutes=5), event_id=f"add-{user}", user_id=user,
                            role=role))
    for day in range(29):
        for user in ("u1", "u2", "u3") if day < 20 else ("u2",):
            events.append(session(start + timedelta(days=day, hours=1), user=user, event_id=f"s{day}{user}"))
        if day == 12:
            events.append(event("payment.failed", start + timedelta(days=day, hours=3), event_id="pf1",
                                amount=19900, attempt=1))
        if day == 14:
            events.append(event("invoice.paid", start + timedelta(days=day, hours=3), event_id="ip1",
                                amount=19900))
        if day == 20:
            events.append(event("user.removed", start + timedelta(days=day, hours=2), event_id="rm-u1",
                                user_id="u1", role="admin"))
    events.append(event("subscription.canceled", start + timedelta(days=30), event_id="b2"))
    events.append(session(start + timedelta(days=31), user="u2", event_id="last"))  # another account's usage
    return events


def billing_first(events: list) -> list:
    """How a worker catching up reads them: the small billing topic far ahead of usage."""
    billing = [e for e in events if e.type in BILLING_TYPES]
    return billing + [e for e in events if e.type not in BILLING_TYPES]


def test_billing_read_weeks_ahead_of_usage_gives_the_alerts_and_state_of_the_time_ordered_stream() -> None:
    events = churning_team()
    in_order = run_aggregate(events)
    skewed = run_aggregate(billing_first(events))
    assert skewed[0] == in_order[0]
    assert encode_aggregate(skewed[1]) == encode_aggregate(in_order[1])
    triggers = {(t, tr) for _, t, tr in in_order[0]}
    # The admin's removal alerts (and is then resolved by the churn) even though the churn was read first.
    assert ("key_user_removed", "opened") in triggers and ("key_user_removed", "resolved") in triggers
    assert ("payment_failed", "opened") in triggers


def test_a_held_billing_event_is_applied_when_a_tick_front_passes_it() -> None:
    agg = new_aggregate(ACCOUNT)
    started = event("subscription.started", "2026-01-05T10:00:00Z", event_id="b1", plan="team", seats=5,
                    mrr=19900)
    assert apply(agg, started, CONFIG, rules=RULES, source="billing", offset=7).outcome == "processed"
    assert agg.state.mrr == 0 and len(agg.held) == 1  # no usage has reached 10:00 yet
    assert apply(agg, started, CONFIG, rules=RULES, source="billing", offset=7).outcome == "duplicate"
    assert apply(agg, started, CONFIG, rules=RULES, source="billing", offset=9).outcome == "duplicate"
    ticked = tick(agg, datetime(2026, 1, 5, 9, tzinfo=UTC), RULES, front=datetime(2026, 1, 5, 10, tzinfo=UTC))
    assert ticked.changed and ticked.ledger_changed and not agg.held
    assert agg.state.mrr == 19900
    assert decode_aggregate(encode_aggregate(agg)).front_s == int(datetime(2026, 1, 5, 10, tzinfo=UTC).timestamp())


def run_aggregate(events: list) -> tuple[list[tuple[str, str, str]], object]:
    agg = new_aggregate(ACCOUNT)
    out = []
    offsets = {"billing": 0, "usage": 0}  # each topic's records keep their order (and offsets) in any reading
    for e in events:
        source = "billing" if e.type in BILLING_TYPES else "usage"
        offsets[source] += 1
        out += apply(agg, e, CONFIG, rules=RULES, source=source, offset=offsets[source]).alerts
    end = datetime(2026, 3, 1, tzinfo=UTC)
    out += tick(agg, end, RULES, end).alerts
    return sorted((r.record_id, r.trigger, r.transition) for r in out), agg


def test_a_payment_that_only_moves_the_ledgers_clock_still_sends_new_cohort_inputs() -> None:
    # A first invoice with no subscription event changes no month's MRR facts, but it moves the ledger's
    # watermark, which decides the company's months: replay sees it, so the cohort aggregator must too
    # (found by the failover reliability check: live lacked the month 2026-03).
    agg = new_aggregate(ACCOUNT)
    apply(agg, session("2026-03-02T09:00:00Z"), CONFIG, rules=RULES)
    paid = event("invoice.paid", "2026-03-01T12:28:23Z", amount=31500, currency="USD", invoice_id="in_1",
                 subscription_id="sub_1")
    before = cohort_snapshot(agg, "plan")
    applied = apply(agg, paid, CONFIG, rules=RULES)
    assert applied.outcome == "processed" and not agg.held
    assert applied.ledger_changed
    assert cohort_snapshot(agg, "plan") != before


def billing_behind(events: list, lag: int) -> list:
    """How a worker reads billing that reached the broker after later usage: each billing event `lag` usage events
    late (billing keeps its own order)."""
    out: list = []
    pending: list = []
    usage_seen = 0
    for e in events:
        if e.type in BILLING_TYPES:
            pending.append((usage_seen + lag, e))
        else:
            usage_seen += 1
            out.append(e)
        while pending and pending[0][0] <= usage_seen:
            out.append(pending.pop(0)[1])
    return out + [e for _, e in pending]


def test_a_failed_payment_read_days_after_later_usage_opens_the_alert_id_of_the_time_ordered_stream() -> None:
    in_order = {r for r in run_aggregate(churning_team())[0] if r[1] == "payment_failed"}
    late = {r for r in run_aggregate(billing_behind(churning_team(), 12))[0] if r[1] == "payment_failed"}
    assert in_order and late == in_order  # the failure (day 12) applied at day 16: still its own day's episode
