"""Alert lifecycle: open, escalate, resolve (recovered / churned / superseded / expired / by a person), hysteresis,
cooldown, snooze, deterministic ids and records, book encoding, and the portfolio alerts."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest

from schemas.alerts import AlertAction, AlertRecord
from schemas.events import CanonicalEvent
from streams.domain import rules
from streams.domain.account import AccountState, apply_event
from streams.domain.alerts import (
    AlertBook,
    AlertContext,
    alert_id,
    apply_action,
    decode_book,
    encode_book,
    evaluate,
    evaluate_account,
    new_book,
    open_alerts,
    portfolio_alerts,
)
from streams.domain.cohorts import AggregateKey, cohort_cell, company_month
from streams.domain.config import DomainConfig
from streams.domain.engagement import DAY_S
from streams.domain.health import Health
from streams.domain.rules import Signal, assess
from streams.domain.thresholds import load_thresholds, thresholds_for
from tests.unit.domain.factories import ACCOUNT, event, session, state_of

CONFIG = DomainConfig()
TH = load_thresholds(None)
RS = thresholds_for(TH, "team", {})


def d(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2024, month, day, hour, tzinfo=UTC)


def customer(*more: CanonicalEvent) -> list[CanonicalEvent]:
    evs = [
        event(
            "subscription.started",
            d(1, 1, 9),
            plan="team",
            seats=10,
            mrr=50_000,
            renews_at=datetime(2025, 1, 1, tzinfo=UTC),
        )
    ]
    return sorted([*evs, *more], key=lambda e: e.occurred_at)


STATE = state_of(customer())


def sig(
    trigger: str,
    *,
    active: bool = False,
    clear: bool = False,
    severity: str = "medium",
    observed: float = 1.0,
    since_s: int | None = None,
) -> Signal:
    return Signal(trigger, severity, observed, None, 2.0, 30, active, clear, f"{trigger} detail", since_s)


def run(book: AlertBook, when: datetime, *signals: Signal, state: AccountState = STATE) -> list[AlertRecord]:
    _, records = evaluate(
        book, state, list(signals), when, RS, AlertContext(Health(33, {"billing": 60.0}, -5.0))
    )
    return records


def transitions(records: list[AlertRecord]) -> list[tuple[str, str, str | None]]:
    return [(r.trigger, r.transition, r.resolution_reason) for r in records]


def action(
    kind: str,
    when: datetime,
    *,
    trigger: str | None = "low_health",
    alert: str | None = None,
    until: datetime | None = None,
    reason: str | None = None,
) -> AlertAction:
    return AlertAction(
        action_id=f"act-{kind}-{when.isoformat()}",
        account_id=ACCOUNT,
        alert_id=alert,
        trigger=trigger,
        action=kind,
        snooze_until=until,
        reason=reason,
        actor="cs@example.com",
        occurred_at=when,
    )


# --- opening ----------------------------------------------------------------------------------------------------


def test_an_active_signal_opens_an_alert_with_evidence_context_and_playbook() -> None:
    book = new_book(ACCOUNT)
    triggered = d(6, 1, 11)
    _, records = evaluate(
        book,
        STATE,
        [sig("low_health", active=True)],
        d(6, 1),
        RS,
        AlertContext(Health(33, {"billing": 60.0}, -5.0), triggered, "retention"),
    )
    (rec,) = records
    assert rec.alert_id == alert_id(
        ACCOUNT, "low_health", date(2024, 6, 1).toordinal() - date(1970, 1, 1).toordinal()
    )
    assert rec.record_id == f"{rec.alert_id}:0:opened"
    assert (rec.transition, rec.status, rec.severity, rec.resolution_reason) == (
        "opened",
        "open",
        "medium",
        None,
    )
    assert rec.evidence.model_dump() == {
        "observed": 1.0,
        "baseline": None,
        "threshold": 2.0,
        "window_days": 30,
        "detail": "low_health detail",
    }
    assert (rec.health_score, rec.health_components, rec.mrr_at_risk, rec.currency) == (
        33,
        {"billing": 60.0},
        50_000,
        "USD",
    )
    assert (rec.plan, rec.cohort, rec.lifecycle_stage) == ("team", "2024-01", "retention")
    assert rec.action_plan is not None and rec.action_plan.playbook_id == "health-review"
    assert rec.action_plan.steps == list(TH.playbooks["health-review"].steps)
    assert rec.opened_at == rec.occurred_at == d(6, 1)
    assert rec.triggered_by_event_at == triggered
    assert open_alerts(book) == [
        {
            "alert_id": rec.alert_id,
            "trigger": "low_health",
            "severity": "medium",
            "status": "open",
            "opened_at": "2024-06-01T12:00:00Z",
            "snoozed_until": None,
        }
    ]


def test_a_signal_that_holds_or_clears_opens_nothing() -> None:
    book = new_book(ACCOUNT)
    assert run(book, d(6, 1), sig("low_health"), sig("inactivity", clear=True)) == []
    assert open_alerts(book) == []


# --- hysteresis and cooldown ------------------------------------------------------------------------------------


def _health_signal(score: int) -> Signal:
    s = rules.rule_low_health(
        STATE, assess(STATE, d(6, 1), RS, CONFIG).summary, Health(score, {"x": 1.0}, 0.0), RS, d(6, 1)
    )
    assert s is not None
    return s


def test_an_account_oscillating_around_the_threshold_has_one_episode_not_many() -> None:
    book = new_book(ACCOUNT)
    scores = [42, 38, 45, 39, 48, 35, 44, 41, 47, 38, 49]  # open < 40, clear >= 50
    records = []
    for i, score in enumerate(scores):
        records += run(book, d(6, 1) + timedelta(days=i), _health_signal(score))
    assert transitions(records) == [("low_health", "opened", None)]
    records = run(book, d(6, 20), _health_signal(52))
    assert transitions(records) == [("low_health", "resolved", "recovered")]


def test_after_recovery_the_trigger_cannot_reopen_until_its_cooldown_ends() -> None:
    book = new_book(ACCOUNT)
    first = run(book, d(6, 1), _health_signal(30))
    run(book, d(6, 2), _health_signal(55))
    assert RS.rules.low_health.cooldown_days == 14
    assert run(book, d(6, 3), _health_signal(30)) == []
    assert run(book, d(6, 15), _health_signal(30)) == []
    second = run(book, d(6, 16), _health_signal(30))
    assert transitions(second) == [("low_health", "opened", None)]
    assert second[0].alert_id != first[0].alert_id
    assert book.slots["low_health"].episode == 2


# --- escalation (through real events) ---------------------------------------------------------------------------


def test_payment_failures_open_low_escalate_to_medium_and_high_and_recover_when_paid() -> None:
    state, book = state_of(customer()), new_book(ACCOUNT)
    steps = [
        (event("payment.failed", d(6, 1), amount=50_000, attempt=1), ("opened", "low", None)),
        (event("payment.failed", d(6, 4), amount=50_000, attempt=2), ("escalated", "medium", None)),
        (event("payment.failed", d(6, 8), amount=50_000, attempt=3), ("escalated", "high", None)),
        (event("invoice.paid", d(6, 9), amount=50_000), ("resolved", "high", "recovered")),
    ]
    alert_ids = set()
    for ev, expected in steps:
        apply_event(state, ev, CONFIG)
        _, records = evaluate_account(
            book, state, ev.occurred_at, RS, CONFIG, triggered_by_event_at=ev.occurred_at
        )
        mine = [r for r in records if r.trigger == "payment_failed"]
        assert [(r.transition, r.severity, r.resolution_reason) for r in mine] == [expected]
        assert mine[0].triggered_by_event_at == ev.occurred_at
        alert_ids.add(mine[0].alert_id)
    assert len(alert_ids) == 1


def test_severity_never_falls_within_an_episode() -> None:
    book = new_book(ACCOUNT)
    run(book, d(6, 1), sig("ticket_spike", active=True, severity="high"))
    assert run(book, d(6, 2), sig("ticket_spike", active=True, severity="medium")) == []
    assert book.slots["ticket_spike"].severity == "high"


# --- snooze, acknowledge, resolve by a person -------------------------------------------------------------------


def test_snooze_suppresses_escalation_records_until_it_ends() -> None:
    book = new_book(ACCOUNT)
    (opened,) = run(book, d(6, 1), sig("inactivity", active=True))
    _, recs = apply_action(
        book, action("snooze", d(6, 2), trigger="inactivity", until=d(6, 10)), d(6, 2), rs=RS
    )
    assert [(r.transition, r.status, r.snoozed_until, r.actor) for r in recs] == [
        ("snoozed", "snoozed", d(6, 10), "cs@example.com")
    ]
    assert run(book, d(6, 5), sig("inactivity", active=True, severity="high")) == []
    assert run(book, d(6, 9), sig("inactivity", active=True, severity="high")) == []
    (escalated,) = run(book, d(6, 10), sig("inactivity", active=True, severity="high"))
    assert (escalated.transition, escalated.severity, escalated.status) == ("escalated", "high", "open")
    assert escalated.alert_id == opened.alert_id


def test_an_alert_reopening_during_a_snooze_is_published_when_the_snooze_ends() -> None:
    book = new_book(ACCOUNT)
    run(book, d(6, 1), sig("payment_failed", active=True, severity="low"))
    apply_action(
        book, action("snooze", d(6, 1, 13), trigger="payment_failed", until=d(6, 20)), d(6, 1, 13), rs=RS
    )
    resolved = run(book, d(6, 3), sig("payment_failed", clear=True))
    assert transitions(resolved) == [
        ("payment_failed", "resolved", "recovered")
    ]  # good news is not held back
    assert run(book, d(6, 5), sig("payment_failed", active=True, severity="low")) == []  # reopened, silently
    assert open_alerts(book) == []
    (opened,) = run(book, d(6, 20), sig("payment_failed", active=True, severity="medium"))
    assert (opened.transition, opened.severity, opened.opened_at, opened.occurred_at) == (
        "opened",
        "medium",
        d(6, 5),
        d(6, 20),
    )


def test_an_episode_opened_and_recovered_inside_a_snooze_publishes_nothing() -> None:
    book = new_book(ACCOUNT)
    run(book, d(6, 1), sig("payment_failed", active=True, severity="low"))
    apply_action(
        book, action("snooze", d(6, 1, 13), trigger="payment_failed", until=d(6, 20)), d(6, 1, 13), rs=RS
    )
    run(book, d(6, 2), sig("payment_failed", clear=True))
    assert run(book, d(6, 4), sig("payment_failed", active=True)) == []
    assert run(book, d(6, 6), sig("payment_failed", clear=True)) == []


def test_acknowledge_is_recorded_once_and_repeating_it_changes_nothing() -> None:
    book = new_book(ACCOUNT)
    (opened,) = run(book, d(6, 1), sig("low_health", active=True))
    ack = action("acknowledge", d(6, 2), trigger=None, alert=opened.alert_id)
    _, recs = apply_action(book, ack, d(6, 2), rs=RS)
    assert [(r.transition, r.status, r.record_id) for r in recs] == [
        ("acknowledged", "acknowledged", f"{opened.alert_id}:1:acknowledged")
    ]
    assert recs[0].health_score == 33 and recs[0].plan == "team"  # the figures of the last evaluation
    assert apply_action(book, ack, d(6, 2), rs=RS)[1] == []
    (esc,) = run(book, d(6, 3), sig("low_health", active=True, severity="high"))
    assert (esc.transition, esc.status) == ("escalated", "open")  # a rise needs a new look


def test_acknowledging_during_a_snooze_publishes_the_escalation_it_held_back() -> None:
    book = new_book(ACCOUNT)
    run(book, d(6, 1), sig("inactivity", active=True))
    apply_action(book, action("snooze", d(6, 2), trigger="inactivity", until=d(6, 20)), d(6, 2), rs=RS)
    assert run(book, d(6, 5), sig("inactivity", active=True, severity="high")) == []
    _, recs = apply_action(book, action("acknowledge", d(6, 6), trigger="inactivity"), d(6, 6), rs=RS)
    assert [(r.transition, r.severity, r.status) for r in recs] == [
        ("escalated", "high", "open"),
        ("acknowledged", "high", "acknowledged"),
    ]
    assert run(book, d(6, 20), sig("inactivity", active=True, severity="high")) == []


def test_resolve_by_a_person_records_who_and_why_and_starts_the_cooldown() -> None:
    book = new_book(ACCOUNT)
    (opened,) = run(book, d(6, 1), sig("low_health", active=True))
    res = action("resolve", d(6, 2), reason="customer confirmed the renewal")
    _, recs = apply_action(
        book, res, d(6, 2)
    )  # without a RuleSet: no action plan, cooldown set on next evaluate
    (rec,) = recs
    assert (rec.transition, rec.status, rec.resolution_reason, rec.actor, rec.note, rec.action_plan) == (
        "resolved",
        "resolved",
        "resolved_by_user",
        "cs@example.com",
        "customer confirmed the renewal",
        None,
    )
    assert rec.alert_id == opened.alert_id
    assert run(book, d(6, 3), sig("low_health", active=True)) == []
    assert book.slots["low_health"].cooldown_until_s == int(d(6, 2).timestamp()) + 14 * DAY_S
    assert transitions(run(book, d(6, 16), sig("low_health", active=True))) == [
        ("low_health", "opened", None)
    ]


def test_an_action_naming_an_older_episode_a_resolved_alert_or_another_account_is_ignored() -> None:
    book = new_book(ACCOUNT)
    (first,) = run(book, d(6, 1), sig("low_health", active=True))
    run(book, d(6, 2), sig("low_health", clear=True))
    assert (
        apply_action(book, action("acknowledge", d(6, 3), trigger=None, alert=first.alert_id), d(6, 3))[1]
        == []
    )
    assert apply_action(book, action("resolve", d(6, 3)), d(6, 3))[1] == []
    run(book, d(6, 20), sig("low_health", active=True))
    other = action("resolve", d(6, 21)).model_copy(update={"account_id": "acct_other"})
    assert apply_action(book, other, d(6, 21))[1] == []


# --- churned, superseded, expired -------------------------------------------------------------------------------


def test_a_canceled_subscription_resolves_every_open_alert_as_churned_and_opens_none() -> None:
    book, state = new_book(ACCOUNT), state_of(customer())
    run(book, d(6, 1), sig("low_health", active=True), sig("payment_failed", active=True), state=state)
    apply_event(state, event("subscription.canceled", d(6, 5)), CONFIG)
    assert state.status == "canceled"
    records = run(book, d(6, 5), sig("low_health", active=True), sig("inactivity", active=True), state=state)
    assert sorted(transitions(records)) == [
        ("low_health", "resolved", "churned"),
        ("payment_failed", "resolved", "churned"),
    ]
    assert all(r.mrr_at_risk == 50_000 for r in records)  # the MRR that was lost
    assert records[0].evidence.detail == "subscription canceled on 2024-06-05"
    assert run(book, d(6, 6), sig("inactivity", active=True), state=state) == []


def test_a_scheduled_cancellation_supersedes_low_health_and_inactivity() -> None:
    book = new_book(ACCOUNT)
    run(book, d(6, 1), sig("low_health", active=True), sig("inactivity", active=True))
    records = run(
        book,
        d(6, 2),
        sig("cancellation_scheduled", active=True, severity="high"),
        sig("low_health", active=True),
        sig("inactivity", active=True),
    )
    assert transitions(records) == [
        ("cancellation_scheduled", "opened", None),
        ("inactivity", "resolved", "superseded"),
        ("low_health", "resolved", "superseded"),
    ]
    assert records[1].evidence.detail == "superseded by cancellation_scheduled"
    assert (
        run(
            book,
            d(6, 3),
            sig("cancellation_scheduled", active=True, severity="high"),
            sig("low_health", active=True),
        )
        == []
    )
    # withdrawn: the superseded alert may open again at once (no cooldown after superseded)
    records = run(book, d(6, 4), sig("cancellation_scheduled", clear=True), sig("low_health", active=True))
    assert transitions(records) == [
        ("cancellation_scheduled", "resolved", "recovered"),
        ("low_health", "opened", None),
    ]


def test_an_open_renewal_risk_keeps_low_health_from_opening() -> None:
    book = new_book(ACCOUNT)
    records = run(book, d(6, 1), sig("renewal_risk", active=True), sig("low_health", active=True))
    assert transitions(records) == [("renewal_risk", "opened", None)]


def test_an_alert_no_longer_active_and_unchanged_for_max_open_days_expires() -> None:
    book = new_book(ACCOUNT)
    run(book, d(3, 1), sig("usage_frequency_drop", active=True))
    assert RS.rules.usage_frequency_drop.max_open_days == 60
    assert run(book, d(4, 1), sig("usage_frequency_drop")) == []  # holds
    assert run(book, d(4, 29), sig("usage_frequency_drop", active=True)) == []  # still active: never expires
    (rec,) = run(book, d(4, 30))  # 60 days, rule cannot judge any more
    assert (rec.transition, rec.resolution_reason) == ("resolved", "expired")
    assert rec.evidence.observed == 1.0  # the last evidence seen


# --- determinism ------------------------------------------------------------------------------------------------


def _story() -> list[CanonicalEvent]:
    evs = customer(
        event("payment.failed", d(6, 3), amount=50_000, attempt=1),
        event("payment.failed", d(6, 6), amount=50_000, attempt=2),
        event("subscription.cancel_scheduled", d(6, 12), cancel_at=d(7, 10)),
        event("nps.responded", d(6, 14), user_id="u2", score=3),
    )
    evs += [session(d(5, day), "u1") for day in range(1, 31)]
    return sorted(evs, key=lambda e: e.occurred_at)


def _replay(events: list[CanonicalEvent], ticks: list[datetime]) -> list[str]:
    state, book = state_of([]), new_book(ACCOUNT)
    out = []
    for ev in events:
        apply_event(state, ev, CONFIG)
    for t in ticks:
        _, recs = evaluate_account(book, state, t, RS, CONFIG)
        out += [r.model_dump_json() for r in recs]
        book = decode_book(orjson.loads(orjson.dumps(encode_book(book))))  # a restart between ticks
    return out


def test_two_independent_evaluations_give_byte_identical_records() -> None:
    ticks = [d(6, 20) + timedelta(days=i) for i in range(30)]
    first, second = _replay(_story(), ticks), _replay(_story(), ticks)
    assert first and first == second


def test_alert_ids_do_not_depend_on_the_order_of_events_within_the_lateness_bound() -> None:
    ticks = [d(6, 20), d(7, 5)]
    base = _replay(_story(), ticks)
    # shuffle inside each 7-day block, so no event arrives later than the 7-day lateness bound allows
    weeks: dict[int, list[CanonicalEvent]] = {}
    for ev in _story():
        weeks.setdefault(ev.occurred_at.toordinal() // 7, []).append(ev)
    rng = random.Random(5)
    permuted = []
    for key in sorted(weeks):
        chunk = weeks[key][:]
        rng.shuffle(chunk)
        permuted += chunk
    assert permuted != _story()
    assert _replay(permuted, ticks) == base


def test_time_driven_alert_ids_do_not_depend_on_how_often_the_timer_ran() -> None:
    state = state_of(customer(*[session(d(5, day), "u1") for day in range(1, 20)]))
    daily, weekly = new_book(ACCOUNT), new_book(ACCOUNT)
    ids_daily = [
        r.alert_id
        for t in range(30)
        for r in evaluate_account(daily, state, d(6, 1) + timedelta(days=t), RS, CONFIG)[1]
        if r.trigger == "inactivity" and r.transition == "opened"
    ]
    ids_weekly = [
        r.alert_id
        for t in range(0, 30, 9)
        for r in evaluate_account(weekly, state, d(6, 1) + timedelta(days=t), RS, CONFIG)[1]
        if r.trigger == "inactivity" and r.transition == "opened"
    ]
    assert ids_daily == ids_weekly and len(ids_daily) == 1
    day = (date(2024, 5, 19) + timedelta(days=14)).toordinal() - date(1970, 1, 1).toordinal()
    assert ids_daily[0] == alert_id(ACCOUNT, "inactivity", day)


def test_record_ids_are_unique_and_record_times_are_event_times() -> None:
    records = [
        AlertRecord.model_validate_json(r)
        for r in _replay(_story(), [d(6, 20) + timedelta(days=i) for i in range(30)])
    ]
    assert len({r.record_id for r in records}) == len(records)
    assert {r.occurred_at for r in records} <= {d(6, 20) + timedelta(days=i) for i in range(30)}


def test_an_evaluation_never_moves_the_books_clock_backwards() -> None:
    book = new_book(ACCOUNT)
    run(book, d(6, 10), sig("low_health", active=True))
    (rec,) = run(book, d(6, 1), sig("low_health", clear=True))
    assert rec.occurred_at == d(6, 10)


# --- encoding ---------------------------------------------------------------------------------------------------


def test_the_book_round_trips_through_orjson_and_evaluates_the_same_after() -> None:
    book = new_book(ACCOUNT)
    run(book, d(6, 1), sig("low_health", active=True), sig("payment_failed", active=True, severity="low"))
    apply_action(book, action("snooze", d(6, 2), trigger="low_health", until=d(6, 9)), d(6, 2), rs=RS)
    run(book, d(6, 3), sig("payment_failed", clear=True))
    raw = orjson.dumps(encode_book(book))
    copy = decode_book(orjson.loads(raw))
    assert copy == book
    assert orjson.dumps(encode_book(copy)) == raw
    step = (sig("low_health", active=True, severity="high"),)
    assert run(copy, d(6, 9), *step) == run(book, d(6, 9), *step)


def test_decode_rejects_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown alert book format"):
        decode_book([99, ACCOUNT, 0, None, []])


# --- portfolio --------------------------------------------------------------------------------------------------


def _month(month: str, **counters: int):
    return company_month(AggregateKey(None, month, None), counters)


def _cell(cohort: str, month: str, cohort_customers: int, customers_end: int):
    return cohort_cell(
        AggregateKey(None, month, cohort),
        {
            "cohort_customers": cohort_customers,
            "customers_end": customers_end,
            "cohort_mrr": cohort_customers * 1000,
            "capped_mrr_end": customers_end * 1000,
        },
    )


def test_portfolio_alerts_fire_for_churn_above_benchmark_a_weak_cohort_and_low_nps() -> None:
    months = [
        _month(
            "2024-06",
            customers_start=200,
            customers_end=195,
            churned_customers=8,
            churned_mrr=40_000,
            nps_promoters=10,
            nps_passives=5,
            nps_detractors=8,
        )
    ]
    cells = [
        _cell("2024-01", "2024-03", 20, 18),
        _cell("2024-02", "2024-04", 20, 17),
        _cell("2024-03", "2024-05", 20, 18),
        _cell("2024-04", "2024-06", 20, 12),
    ]
    records = portfolio_alerts(months, cells, TH, d(7, 1))
    assert [(r.trigger, r.account_id, r.severity) for r in records] == [
        ("customer_churn_rate", "portfolio", "high"),
        ("cohort_retention", "portfolio", "medium"),
        ("company_nps", "portfolio", "medium"),
    ]
    churn, cohort, nps = records
    assert (churn.evidence.observed, churn.evidence.threshold, churn.mrr_at_risk) == (0.04, 0.03, 40_000)
    assert (cohort.cohort, cohort.evidence.observed, cohort.evidence.baseline) == ("2024-04", 0.6, 0.883333)
    assert nps.evidence.observed == pytest.approx(8.7, abs=0.01)
    assert portfolio_alerts(months, cells, TH, d(7, 1)) == records  # stateless and deterministic


def test_portfolio_alerts_stay_quiet_for_a_healthy_month() -> None:
    months = [
        _month(
            "2024-06",
            customers_start=200,
            customers_end=205,
            churned_customers=4,
            nps_promoters=20,
            nps_passives=5,
            nps_detractors=2,
        )
    ]
    cells = [
        _cell("2024-01", "2024-03", 20, 18),
        _cell("2024-02", "2024-04", 20, 17),
        _cell("2024-03", "2024-05", 20, 18),
        _cell("2024-04", "2024-06", 20, 17),
    ]
    assert portfolio_alerts(months, cells, TH, d(7, 1)) == []
