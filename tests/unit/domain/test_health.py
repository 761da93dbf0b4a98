"""Health score: the worked example of docs/health-score.md, component rules, weights and trend."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from streams.domain.config import HealthTargets, HealthWeights
from streams.domain.health import (
    COMPONENTS,
    billing_component,
    health_score,
    nps_component,
    seat_utilisation_component,
    support_component,
    usage_trend_component,
    weighted_score,
)
from tests.unit.domain.factories import event, feature, session, state_of

TARGETS = HealthTargets()


def d(month: int, day: int, hour: int = 9, year: int = 2024) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def worked_example_events() -> list:
    """docs/health-score.md, "Worked example": an at-risk 20-seat account, scored as of 2024-06-30."""
    evs = [event("subscription.started", d(1, 15, year=2023), plan="team", seats=20, mrr=40_000,
                 renews_at=d(7, 15)),
           event("invoice.paid", d(5, 15), amount=40_000)]
    baseline_days = [date(2024, 4, 2) + timedelta(days=i) for i in range(18)]
    baseline_days += [date(2024, 5, 2) + timedelta(days=i) for i in range(18)]
    for day in baseline_days:  # u1 alone, on 18 days of each of the two previous 30-day periods
        t = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
        evs += [session(t, "u1"), feature(t + timedelta(minutes=5), "reports", "u1")]
    june = {1: ["u1", "u2"], 4: ["u1"], 8: ["u1", "u3"], 11: ["u1"], 15: ["u1", "u4"], 18: ["u1"],
            22: ["u1", "u5"], 25: ["u1"]}
    uses = {"u1": "reports", "u2": "dashboards", "u3": "export", "u4": "reports", "u5": "reports"}
    for day, users in june.items():
        for user in users:
            evs += [session(d(6, day), user), feature(d(6, day, 10), uses[user], user)]
    evs += [event("nps.responded", d(6, 10), user_id="u1", score=4),
            event("nps.responded", d(6, 12), user_id="u2", score=8)]
    evs += [event("ticket.opened", d(6, day), ticket_id=f"T{i}") for i, day in enumerate((5, 12, 19, 26), 1)]
    evs += [event("payment.failed", d(6, 20), amount=40_000, attempt=1),
            event("payment.failed", d(6, 27), amount=40_000, attempt=2)]
    return sorted(evs, key=lambda e: e.occurred_at)


def test_the_worked_example_scores_the_documented_36_with_a_trend_of_minus_24() -> None:
    state = state_of(worked_example_events())
    health = health_score(state, date(2024, 6, 30), HealthWeights())
    assert health.components == pytest.approx({
        "usage_frequency": 40.0,
        "usage_trend": 100 * (9 / 19) / 1.25,  # 37.89
        "breadth": 37.5,
        "stickiness": 20.0,
        "nps": 25.0,
        "billing": 40.0,
        "support": 60.0,
        "seat_utilisation": 31.25,
    })
    assert health.score == 36  # 36.06 rounded
    assert health.trend == -24.0  # 30 days earlier it scored 60
    assert health_score(state, date(2024, 5, 31), HealthWeights()).score == 60


def test_every_component_is_named_and_within_0_and_100() -> None:
    state = state_of(worked_example_events())
    health = health_score(state, date(2024, 6, 30), HealthWeights())
    assert tuple(health.components) == COMPONENTS
    assert all(0 <= v <= 100 for v in health.components.values())


def test_weights_are_normalised_and_must_not_all_be_zero() -> None:
    weights = HealthWeights(usage_frequency=2, usage_trend=0, breadth=0, stickiness=0, nps=0, billing=2, support=0,
                            seat_utilisation=0)
    assert weights.normalised()["billing"] == 0.5
    assert weighted_score({c: 10.0 for c in COMPONENTS} | {"billing": 90.0}, weights) == 50
    with pytest.raises(ValueError):
        HealthWeights(usage_frequency=0, usage_trend=0, breadth=0, stickiness=0, nps=0, billing=0, support=0,
                      seat_utilisation=0)
    with pytest.raises(ValueError):
        HealthWeights(billing=-1)


def test_default_weights_sum_to_one() -> None:
    assert sum(HealthWeights().model_dump().values()) == pytest.approx(1.0)


def test_no_nps_answers_and_no_seat_count_are_neutral() -> None:
    assert nps_component(None) == 50.0
    assert seat_utilisation_component(3, 0, TARGETS) == 50.0


def test_billing_health_penalises_dunning_and_caps_pending_cancellations() -> None:
    start = event("subscription.started", d(1, 1), plan="pro", mrr=1_000)
    assert billing_component(state_of([start]), TARGETS) == 100.0
    four_failures = [event("payment.failed", d(1, 2, h), amount=1_000, attempt=h) for h in range(1, 5)]
    assert billing_component(state_of([start, *four_failures]), TARGETS) == 20.0  # 100 - 60 (max) - 20
    cancel = event("subscription.cancel_scheduled", d(1, 3))
    assert billing_component(state_of([start, cancel]), TARGETS) == 10.0
    assert billing_component(state_of([start, event("subscription.canceled", d(1, 3))]), TARGETS) == 0.0


def test_support_load_is_tickets_per_seat_and_trend_needs_a_full_baseline() -> None:
    assert support_component(0, 10, 4, TARGETS) == 100.0
    assert support_component(5, 10, 4, TARGETS) == 0.0  # 0.5 tickets per seat
    assert support_component(1, 0, 4, TARGETS) == 50.0  # no seats: per active user
    assert usage_trend_component(20, 20, True, TARGETS) == 80.0
    assert usage_trend_component(30, 20, True, TARGETS) == 100.0
    assert usage_trend_component(0, 20, False, TARGETS) == 50.0


def test_a_young_account_takes_its_trend_from_the_last_two_weeks_of_usage() -> None:
    evs = [session(d(5, day), "u1") for day in (1, 2, 3)] + [session(d(5, day), "u1") for day in range(8, 15)]
    health = health_score(state_of(evs), date(2024, 5, 14), HealthWeights())
    # 7 active days in the last week vs 3 in the week before: (7 - 3) / 7 x 100 x 0.20
    assert health.trend == pytest.approx(400 / 7 * 0.2)
    assert health_score(state_of(evs[:2]), date(2024, 5, 2), HealthWeights()).trend == 0.0
