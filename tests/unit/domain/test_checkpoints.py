"""Alert checkpoints are day ends: the alerts of an input do not depend on when (or whether) ticks ran."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from streams.domain.aggregate import Rules, apply, due, new_aggregate, tick
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
            out += tick(agg, pending.pop(0), RULES)
        out += apply(agg, e, CONFIG, rules=RULES).alerts
    for mark in pending:
        out += tick(agg, mark, RULES)
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
