"""Churn-trigger rules: the worked example of docs/alerts.md for every trigger, and a control that does not fire."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import pytest

from schemas.alerts import ACCOUNT_TRIGGERS
from schemas.events import CanonicalEvent
from streams.domain import rules
from streams.domain.account import AccountState
from streams.domain.config import DomainConfig
from streams.domain.health import Health
from streams.domain.rules import RULES, Signal, assess
from streams.domain.thresholds import RuleSet, load_thresholds, thresholds_for
from tests.unit.domain.factories import event, feature, session, state_of

CONFIG = DomainConfig()
RS = thresholds_for(load_thresholds(None), "team", {})


def d(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2024, month, day, hour, tzinfo=UTC)


def subscribed(*more: CanonicalEvent, renews: datetime | None = None) -> list[CanonicalEvent]:
    """A 10-seat team customer on a yearly plan since 2024-01-01 (50,000 minor units MRR), plus the events."""
    evs = [
        event(
            "subscription.started",
            d(1, 1, 9),
            plan="team",
            seats=10,
            mrr=50_000,
            billing_interval="year",
            renews_at=renews or datetime(2025, 1, 1, tzinfo=UTC),
        ),
        event("invoice.paid", d(1, 1, 10), amount=50_000),
    ]
    return sorted([*evs, *more], key=lambda e: e.occurred_at)


def active_on(
    days: Iterable[date], features: tuple[str, ...] = ("reports",), user: str = "u1"
) -> list[CanonicalEvent]:
    out: list[CanonicalEvent] = []
    for day in days:
        t = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
        out.append(session(t, user))
        out += [feature(t + timedelta(minutes=i + 1), f, user) for i, f in enumerate(features)]
    return out


def run_of(first: date, n: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(n)]


def signal(
    rule, events: list[CanonicalEvent], as_of: datetime, rs: RuleSet = RS, health: Health | None = None
) -> Signal | None:
    state = state_of(events, CONFIG)
    a = assess(state, as_of, rs, CONFIG)
    return rule(state, a.summary, health or a.health, rs, as_of)


def fired(sig: Signal | None) -> bool:
    assert sig is not None
    return sig.active


END_OF_JUNE = d(6, 30, 23)


# --- registry -----------------------------------------------------------------------------------------------


def test_every_trigger_has_one_rule_named_after_it_in_evaluation_order() -> None:
    assert tuple(RULES) == ACCOUNT_TRIGGERS
    for trigger, fn in RULES.items():
        assert fn is getattr(rules, f"rule_{trigger}")


def test_a_disabled_rule_returns_none() -> None:
    th = load_thresholds(None)
    merged = th.rules.model_copy(
        update={"payment_failed": th.rules.payment_failed.model_copy(update={"enabled": False})}
    )
    rs = RuleSet(merged, th.playbooks)
    evs = subscribed(event("payment.failed", d(6, 20), amount=50_000, attempt=1))
    assert signal(rules.rule_payment_failed, evs, END_OF_JUNE, rs) is None


# --- usage_frequency_drop -----------------------------------------------------------------------------------


def test_usage_frequency_drop_fires_when_active_days_fall_from_20_to_8() -> None:
    evs = subscribed(*active_on(run_of(date(2024, 5, 2), 20)), *active_on(run_of(date(2024, 6, 1), 8)))
    sig = signal(rules.rule_usage_frequency_drop, evs, END_OF_JUNE)
    assert sig == Signal("usage_frequency_drop", "medium", 8, 20, 10.0, 30, True, False, sig.detail)
    assert "-60%" in sig.detail


def test_usage_frequency_drop_escalates_to_high_at_a_75_percent_drop() -> None:
    evs = subscribed(*active_on(run_of(date(2024, 5, 2), 20)), *active_on(run_of(date(2024, 6, 1), 4)))
    sig = signal(rules.rule_usage_frequency_drop, evs, END_OF_JUNE)
    assert fired(sig) and sig.severity == "high"


def test_usage_frequency_drop_does_not_fire_on_a_20_percent_dip_and_clears() -> None:
    evs = subscribed(*active_on(run_of(date(2024, 5, 2), 20)), *active_on(run_of(date(2024, 6, 1), 16)))
    sig = signal(rules.rule_usage_frequency_drop, evs, END_OF_JUNE)
    assert sig is not None and not sig.active and sig.clear


def test_usage_frequency_drop_holds_between_the_clear_and_open_levels() -> None:
    evs = subscribed(*active_on(run_of(date(2024, 5, 2), 20)), *active_on(run_of(date(2024, 6, 1), 12)))
    sig = signal(rules.rule_usage_frequency_drop, evs, END_OF_JUNE)  # -40%: between -25% and -50%
    assert sig is not None and not sig.active and not sig.clear


def test_usage_frequency_drop_ignores_accounts_with_a_thin_baseline() -> None:
    evs = subscribed(*active_on(run_of(date(2024, 5, 2), 5)))  # 5 < min_baseline_days 8
    assert signal(rules.rule_usage_frequency_drop, evs, END_OF_JUNE) is None


# --- usage_breadth_drop -------------------------------------------------------------------------------------

SIX = ("reports", "dashboards", "export", "alerts", "api-keys", "sso")


def test_usage_breadth_drop_fires_when_distinct_features_fall_from_6_to_2() -> None:
    evs = subscribed(
        *active_on(run_of(date(2024, 5, 6), 10), SIX), *active_on(run_of(date(2024, 6, 3), 10), SIX[:2])
    )
    sig = signal(rules.rule_usage_breadth_drop, evs, END_OF_JUNE)
    assert sig is not None
    assert (sig.observed, sig.baseline, sig.threshold, sig.active, sig.severity) == (2, 6, 3.0, True, "low")


def test_usage_breadth_drop_does_not_fire_when_five_of_six_features_are_still_used() -> None:
    evs = subscribed(
        *active_on(run_of(date(2024, 5, 6), 10), SIX), *active_on(run_of(date(2024, 6, 3), 10), SIX[:5])
    )
    sig = signal(rules.rule_usage_breadth_drop, evs, END_OF_JUNE)
    assert sig is not None and not sig.active and sig.clear


# --- inactivity -----------------------------------------------------------------------------------------------


def test_inactivity_fires_after_14_quiet_days_from_time_progress_alone() -> None:
    evs = subscribed(*active_on(run_of(date(2024, 5, 20), 13)))  # last active 2024-06-01
    state = state_of(evs, CONFIG)
    verdicts = {}
    for day in (10, 14, 15, 20):  # the same state, later and later as_of: no new event
        as_of = d(6, day, 23)
        a = assess(state, as_of, RS, CONFIG)
        verdicts[day] = rules.rule_inactivity(state, a.summary, a.health, RS, as_of)
    assert [verdicts[k].active for k in (10, 14, 15, 20)] == [False, False, True, True]
    sig = verdicts[20]
    assert (sig.observed, sig.threshold, sig.severity) == (19, 14, "medium")
    assert sig.since_s == int(datetime(2024, 6, 15, tzinfo=UTC).timestamp())  # the day the gap reached 14


def test_inactivity_escalates_to_high_after_30_days_and_critical_after_60() -> None:
    evs = subscribed(*active_on([date(2024, 5, 1)]))
    assert signal(rules.rule_inactivity, evs, d(5, 31)).severity == "high"
    assert signal(rules.rule_inactivity, evs, d(6, 30)).severity == "critical"


def test_inactivity_does_not_fire_for_an_account_active_yesterday_and_clears_on_two_active_days() -> None:
    evs = subscribed(*active_on([date(2024, 6, 28), date(2024, 6, 29)]))
    sig = signal(rules.rule_inactivity, evs, END_OF_JUNE)
    assert sig is not None and not sig.active and sig.clear


def test_inactivity_holds_after_a_single_visit() -> None:
    evs = subscribed(*active_on([date(2024, 6, 29)]))
    sig = signal(rules.rule_inactivity, evs, END_OF_JUNE)
    assert sig is not None and not sig.active and not sig.clear


def test_inactivity_ignores_accounts_never_active() -> None:
    assert signal(rules.rule_inactivity, subscribed(), END_OF_JUNE) is None


# --- nps_detractor --------------------------------------------------------------------------------------------


def test_nps_detractor_fires_on_a_users_latest_answer_of_4() -> None:
    evs = subscribed(
        event("nps.responded", d(6, 10), user_id="u1", score=4),
        event("nps.responded", d(6, 11), user_id="u2", score=9),
    )
    sig = signal(rules.rule_nps_detractor, evs, END_OF_JUNE)
    assert sig is not None
    assert (sig.active, sig.severity, sig.observed, sig.threshold, sig.baseline) == (
        True,
        "medium",
        4,
        6,
        0.0,
    )
    assert sig.since_s == int(d(6, 10).timestamp())


def test_nps_detractor_is_high_at_3_or_below() -> None:
    evs = subscribed(event("nps.responded", d(6, 10), user_id="u1", score=2))
    assert signal(rules.rule_nps_detractor, evs, END_OF_JUNE).severity == "high"


def test_nps_detractor_clears_when_the_detractor_answers_again_with_an_8() -> None:
    evs = subscribed(
        event("nps.responded", d(6, 10), user_id="u1", score=4),
        event("nps.responded", d(6, 20), user_id="u1", score=8),
    )
    sig = signal(rules.rule_nps_detractor, evs, END_OF_JUNE)
    assert sig is not None and not sig.active and sig.clear


def test_nps_detractor_ignores_answers_older_than_its_window() -> None:
    evs = subscribed(event("nps.responded", d(2, 10), user_id="u1", score=2))
    assert signal(rules.rule_nps_detractor, evs, END_OF_JUNE) is None


# --- nps_drop -------------------------------------------------------------------------------------------------


def _nps(scores_then: list[int], scores_now: list[int]) -> list[CanonicalEvent]:
    then = [event("nps.responded", d(2, 15), user_id=f"old{i}", score=s) for i, s in enumerate(scores_then)]
    now = [event("nps.responded", d(6, 15), user_id=f"new{i}", score=s) for i, s in enumerate(scores_now)]
    return subscribed(*then, *now)


def test_nps_drop_fires_when_account_nps_falls_from_100_to_33() -> None:
    sig = signal(rules.rule_nps_drop, _nps([9, 9, 10], [3, 5, 9]), END_OF_JUNE)
    assert sig is not None
    assert (sig.observed, sig.baseline, sig.threshold, sig.active, sig.severity) == (
        33.3,
        100.0,
        70.0,
        True,
        "high",
    )


def test_nps_drop_does_not_fire_when_new_answers_are_promoters() -> None:
    sig = signal(rules.rule_nps_drop, _nps([9, 9, 10], [9, 10, 9]), END_OF_JUNE)
    assert sig is not None and not sig.active and sig.clear


def test_nps_drop_needs_three_answers_then_and_now() -> None:
    assert signal(rules.rule_nps_drop, _nps([9, 9], [3, 3, 3]), END_OF_JUNE) is None


# --- key_user_removed -----------------------------------------------------------------------------------------


def test_key_user_removed_fires_from_the_removal_the_state_keeps() -> None:
    evs = subscribed(
        event("user.added", d(3, 1), user_id="ada", role="admin"),
        event("user.removed", d(6, 20), user_id="ada", role="admin"),
    )
    sig = signal(rules.rule_key_user_removed, evs, END_OF_JUNE)
    assert sig is not None and sig.active and sig.severity == "high"
    assert sig.detail == "admin removed on 2024-06-20"


def test_removing_a_member_is_not_a_key_user_removal() -> None:
    evs = subscribed(
        event("user.added", d(3, 1), user_id="bob", role="member"),
        event("user.removed", d(6, 20), user_id="bob", role="member"),
    )
    assert signal(rules.rule_key_user_removed, evs, END_OF_JUNE) is None


def test_key_user_removed_fires_for_an_admin_removed_10_days_ago() -> None:
    removed = d(6, 20)
    evs = subscribed(
        event("user.added", d(3, 1), user_id="ada", role="admin"),
        event("user.removed", removed, user_id="ada", role="admin"),
    )
    sig = signal(rules.rule_key_user_removed, evs, END_OF_JUNE)
    assert sig is not None
    assert (sig.active, sig.severity, sig.observed, sig.threshold) == (True, "high", 10, 30)
    assert "admin removed on 2024-06-20" in sig.detail


def test_key_user_removed_clears_once_a_new_admin_is_added() -> None:
    removed = d(6, 20)
    evs = subscribed(
        event("user.added", d(3, 1), user_id="ada", role="admin"),
        event("user.removed", removed, user_id="ada", role="admin"),
        event("user.added", d(6, 24), user_id="bob", role="admin"),
    )
    sig = signal(rules.rule_key_user_removed, evs, END_OF_JUNE)
    assert sig is not None and not sig.active and sig.clear


def test_key_user_removed_does_not_fire_for_a_removal_older_than_30_days() -> None:
    evs = subscribed(
        event("user.added", d(3, 1), user_id="cy", role="champion"),
        event("user.removed", d(5, 1), user_id="cy", role="champion"),
    )
    sig = signal(rules.rule_key_user_removed, evs, END_OF_JUNE)
    assert sig is not None and not sig.active


# --- usage_limit_hits -----------------------------------------------------------------------------------------


def _limits(n: int) -> list[CanonicalEvent]:
    return [event("usage_limit.reached", d(6, 5 + i), limit="projects", used=10, quota=10) for i in range(n)]


def test_usage_limit_hits_fires_on_the_third_hit_in_30_days() -> None:
    sig = signal(rules.rule_usage_limit_hits, subscribed(*_limits(3)), END_OF_JUNE)
    assert sig is not None
    assert (sig.active, sig.severity, sig.observed, sig.baseline, sig.threshold) == (True, "low", 3, 0, 3)


def test_usage_limit_hits_does_not_fire_on_two_hits_and_holds() -> None:
    sig = signal(rules.rule_usage_limit_hits, subscribed(*_limits(2)), END_OF_JUNE)
    assert sig is not None and not sig.active and not sig.clear


def test_usage_limit_hits_clears_when_no_limit_was_hit_for_30_days() -> None:
    sig = signal(rules.rule_usage_limit_hits, subscribed(*_limits(3)), d(7, 31))
    assert sig is not None and sig.clear


# --- payment_failed -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("attempts", "severity"), [(1, "low"), (2, "medium"), (3, "high"), (5, "high")])
def test_payment_failed_severity_follows_the_attempt_number(attempts: int, severity: str) -> None:
    evs = subscribed(
        *[event("payment.failed", d(6, 10 + 3 * a), amount=50_000, attempt=a + 1) for a in range(attempts)]
    )
    sig = signal(rules.rule_payment_failed, evs, END_OF_JUNE)
    assert sig is not None and sig.active and (sig.observed, sig.severity) == (attempts, severity)


def test_payment_failed_clears_when_the_invoice_is_paid() -> None:
    evs = subscribed(
        event("payment.failed", d(6, 10), amount=50_000, attempt=1),
        event("invoice.paid", d(6, 12), amount=50_000),
    )
    sig = signal(rules.rule_payment_failed, evs, END_OF_JUNE)
    assert sig is not None and not sig.active and sig.clear


# --- downgrade ------------------------------------------------------------------------------------------------


def _changed(when: datetime, mrr: int, seats: int = 10) -> CanonicalEvent:
    return event("subscription.changed", when, plan="team", seats=seats, mrr=mrr)


def test_downgrade_fires_when_mrr_falls_40_percent() -> None:
    sig = signal(rules.rule_downgrade, subscribed(_changed(d(6, 25), 30_000, 6)), d(6, 26))
    assert sig is not None
    assert (sig.active, sig.severity, sig.observed, sig.baseline, sig.threshold) == (
        True,
        "medium",
        30_000,
        50_000,
        40_000,
    )


def test_downgrade_does_not_fire_on_a_10_percent_contraction() -> None:
    sig = signal(rules.rule_downgrade, subscribed(_changed(d(6, 25), 45_000)), d(6, 26))
    assert sig is not None and not sig.active and not sig.clear


def test_downgrade_clears_when_mrr_comes_back_within_the_window() -> None:
    evs = subscribed(_changed(d(6, 25), 30_000), _changed(d(6, 27), 50_000))
    sig = signal(rules.rule_downgrade, evs, d(6, 28))
    assert sig is not None and not sig.active and sig.clear


# --- cancellation_scheduled -----------------------------------------------------------------------------------


def _cancel(cancel_at: datetime | None = d(7, 31)) -> CanonicalEvent:
    return event("subscription.cancel_scheduled", d(6, 20), cancel_at=cancel_at)


def test_cancellation_scheduled_fires_high_and_turns_critical_14_days_before_it_takes_effect() -> None:
    evs = subscribed(_cancel())
    sig = signal(rules.rule_cancellation_scheduled, evs, d(6, 21))
    assert sig is not None and sig.active and (sig.severity, sig.observed) == ("high", 40)
    later = signal(rules.rule_cancellation_scheduled, evs, d(7, 20))
    assert later.severity == "critical" and later.observed == 11


def test_cancellation_scheduled_clears_when_the_cancellation_is_withdrawn() -> None:
    evs = subscribed(_cancel(), event("subscription.cancel_unscheduled", d(6, 22)))
    sig = signal(rules.rule_cancellation_scheduled, evs, d(6, 23))
    assert sig is not None and not sig.active and sig.clear


# --- renewal_risk ---------------------------------------------------------------------------------------------


def test_renewal_risk_fires_20_days_before_renewal_with_health_below_50() -> None:
    evs = subscribed(renews=d(7, 20))  # paying, but nobody uses the product
    sig = signal(rules.rule_renewal_risk, evs, END_OF_JUNE)
    assert sig is not None and sig.active and sig.observed < 50
    assert (sig.severity, sig.threshold, sig.window_days) == ("medium", 50, 45)
    assert signal(rules.rule_renewal_risk, evs, d(7, 8)).severity == "high"  # 12 days to go


def test_renewal_risk_is_time_driven_quiet_80_days_out() -> None:
    sig = signal(rules.rule_renewal_risk, subscribed(renews=d(7, 20)), d(5, 1))
    assert sig is not None and not sig.active and sig.clear


def test_renewal_risk_leaves_monthly_subscriptions_to_low_health() -> None:
    evs = [event("subscription.started", d(6, 21), plan="team", seats=10, mrr=50_000, renews_at=d(7, 20))]
    assert signal(rules.rule_renewal_risk, evs, END_OF_JUNE) is None


def test_renewal_risk_does_not_fire_for_a_healthy_account() -> None:
    sig = signal(
        rules.rule_renewal_risk, subscribed(renews=d(7, 20)), END_OF_JUNE, health=Health(75, {}, 0.0)
    )
    assert sig is not None and not sig.active and sig.clear


# --- ticket_spike ---------------------------------------------------------------------------------------------


def _tickets(days: Iterable[datetime]) -> list[CanonicalEvent]:
    return [event("ticket.opened", t, ticket_id=f"T{i}") for i, t in enumerate(days)]


def test_ticket_spike_fires_on_4_tickets_in_a_week_after_a_quiet_month() -> None:
    sig = signal(
        rules.rule_ticket_spike, subscribed(*_tickets(d(6, day) for day in (25, 26, 27, 28))), END_OF_JUNE
    )
    assert sig is not None
    assert (sig.active, sig.severity, sig.observed, sig.baseline, sig.threshold) == (
        True,
        "medium",
        4,
        0.0,
        3.0,
    )


def test_ticket_spike_does_not_fire_for_an_account_that_always_opens_tickets() -> None:
    # 9 tickets in the 4 weeks before the last 7 days: 2.25 a week, so 3 this week is no spike
    usual = [d(5, 27) + timedelta(days=3 * i) for i in range(9)]
    sig = signal(
        rules.rule_ticket_spike, subscribed(*_tickets([*usual, d(6, 25), d(6, 26), d(6, 27)])), END_OF_JUNE
    )
    assert sig is not None and not sig.active and sig.threshold == 4.5


# --- activation_stalled ---------------------------------------------------------------------------------------


def _trial(*more: CanonicalEvent) -> list[CanonicalEvent]:
    return [event("trial.started", d(6, 1, 9), plan="team", trial_ends_at=d(7, 1)), *more]


def test_activation_stalled_fires_14_days_after_the_start_without_a_key_action() -> None:
    evs = _trial(session(d(6, 2), "u1"))
    assert not signal(rules.rule_activation_stalled, evs, d(6, 14)).active
    sig = signal(rules.rule_activation_stalled, evs, d(6, 20))
    assert sig is not None and sig.active and (sig.observed, sig.severity) == (19, "medium")


def test_activation_stalled_does_not_fire_once_the_first_key_action_happened() -> None:
    sig = signal(rules.rule_activation_stalled, _trial(feature(d(6, 5), "reports", "u1")), d(6, 20))
    assert sig is not None and not sig.active and sig.clear


# --- low_health -----------------------------------------------------------------------------------------------


def test_low_health_fires_for_an_unused_account_in_dunning() -> None:
    evs = subscribed(event("payment.failed", d(6, 20), amount=50_000, attempt=1))
    sig = signal(rules.rule_low_health, evs, END_OF_JUNE)
    assert sig is not None and sig.active and sig.observed < 40 and sig.threshold == 40


def test_low_health_does_not_fire_for_a_busy_account() -> None:
    evs = subscribed(*active_on(run_of(date(2024, 5, 1), 61), SIX))
    sig = signal(rules.rule_low_health, evs, END_OF_JUNE)
    assert sig is not None and not sig.active and sig.clear and sig.observed >= 50


@pytest.mark.parametrize(("score", "severity"), [(39, "medium"), (30, "high"), (20, "critical")])
def test_low_health_severity_ladder(score: int, severity: str) -> None:
    sig = signal(
        rules.rule_low_health, subscribed(), END_OF_JUNE, health=Health(score, {"billing": 1.0}, 0.0)
    )
    assert sig is not None and sig.severity == severity


def test_rules_read_no_state_they_should_not_change() -> None:
    evs = subscribed(*active_on(run_of(date(2024, 5, 2), 20)), _cancel(), *_limits(3))
    state: AccountState = state_of(evs, CONFIG)
    from streams.domain.codec import encode_state

    before = encode_state(state)
    assess(state, d(7, 30), RS, CONFIG)
    assert encode_state(state) == before


def test_a_signal_whose_text_is_written_on_demand_equals_the_one_with_the_text() -> None:
    calls = []

    def text() -> str:
        calls.append(1)
        return "no activity for 12 days"

    lazy = Signal("inactivity", "high", 12.0, None, 10.0, 30, True, False, text)
    assert calls == []  # nothing written until the text is read (an alert record, a comparison)
    eager = Signal("inactivity", "high", 12.0, None, 10.0, 30, True, False, "no activity for 12 days")
    assert lazy.detail == "no activity for 12 days"
    assert lazy == eager and hash(lazy) == hash(eager)
    assert lazy != Signal("inactivity", "high", 12.0, None, 10.0, 30, True, False, "another text")


def test_a_ladder_raises_the_severity_to_the_highest_rung_the_measure_reaches_either_way() -> None:
    defaults = load_thresholds(None).rules
    # low_health: lower is worse, medium opens, high at 30, critical at 20 (health score).
    assert [rules.severity_at(defaults.low_health, s) for s in (39, 30, 25, 20, 5)] == [
        "medium", "high", "high", "critical", "critical"]
    # inactivity: higher is worse, medium opens, high at 30, critical at 60 (days inactive).
    assert [rules.severity_at(defaults.inactivity, d) for d in (14, 29, 30, 59, 60, 90)] == [
        "medium", "medium", "high", "high", "critical", "critical"]
