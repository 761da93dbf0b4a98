"""The per-account MRR ledger: movements, event-time order, lateness, folding and the codec."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.domain.engagement import DAY_S, day_index
from streams.domain.mrr import (
    LateEventError,
    MonthFacts,
    MrrLedger,
    account_month_facts,
    apply_billing_event,
    decode_ledger,
    encode_ledger,
    month_end_mrr,
    month_of_day,
    months_between,
)
from tests.support.batch_metrics import build_accounts
from tests.support.worlds import canonical, deliver_within_lateness

FAR = timedelta(days=4000)  # a lateness bound that never folds: arrival order is free


def ledger_of(events: Iterable[Any], account_id: str = "acme", **options: Any) -> MrrLedger:
    ledger = MrrLedger(account_id)
    for event in events:
        ledger, _ = apply_billing_event(ledger, event, **options)
    return ledger


def movements(facts: MonthFacts) -> tuple[int, int, int, int, int, int, int]:
    return (
        facts.mrr_start,
        facts.mrr_end,
        facts.new_mrr,
        facts.expansion_mrr,
        facts.contraction_mrr,
        facts.churned_mrr,
        facts.reactivation_mrr,
    )


# docs/metrics.md, example 1
EXAMPLE_1 = [
    canonical("a1", "acme", "2024-01-10T09:00:00Z", "subscription.started", plan="pro", mrr=10_000),
    canonical("a2", "acme", "2024-02-05T09:00:00Z", "subscription.changed", plan="pro", seats=3, mrr=15_000),
    canonical("a3", "acme", "2024-03-03T09:00:00Z", "subscription.changed", plan="pro", seats=2, mrr=12_000),
    canonical("a4", "acme", "2024-04-20T09:00:00Z", "subscription.canceled"),
    canonical("a5", "acme", "2024-06-02T09:00:00Z", "subscription.reactivated", plan="basic", mrr=9_000),
    canonical("a6", "acme", "2024-07-05T09:00:00Z", "subscription.changed", plan="team", mrr=20_000),
    canonical("a7", "acme", "2024-07-25T09:00:00Z", "subscription.changed", plan="basic", mrr=9_000),
]


def test_worked_example_1_gives_the_documented_movements_per_month() -> None:
    ledger = ledger_of(EXAMPLE_1)
    table = {m: movements(account_month_facts(ledger, m)) for m in months_between("2024-01", "2024-07")}
    # (start, end, new, expansion, contraction, churn, reactivation)
    assert table == {
        "2024-01": (0, 10_000, 10_000, 0, 0, 0, 0),
        "2024-02": (10_000, 15_000, 0, 5_000, 0, 0, 0),
        "2024-03": (15_000, 12_000, 0, 0, 3_000, 0, 0),
        "2024-04": (12_000, 0, 0, 0, 0, 12_000, 0),
        "2024-05": (0, 0, 0, 0, 0, 0, 0),
        "2024-06": (0, 9_000, 0, 0, 0, 0, 9_000),
        "2024-07": (9_000, 9_000, 0, 0, 0, 0, 0),
    }
    assert ledger.first_paid_month == "2024-01"
    assert ledger.activation_mrr == 10_000
    assert ledger.mrr == 9_000 and ledger.status == "active" and not ledger.churned
    june = account_month_facts(ledger, "2024-06")
    assert (june.cohort, june.age, june.reactivated, june.new) == ("2024-01", 5, True, False)


def test_every_account_month_satisfies_the_mrr_identity() -> None:
    ledger = ledger_of(EXAMPLE_1)
    for month in months_between("2023-12", "2024-09"):
        f = account_month_facts(ledger, month)
        assert f.mrr_end == (
            f.mrr_start + f.new_mrr + f.expansion_mrr + f.reactivation_mrr - f.contraction_mrr - f.churned_mrr
        )


def test_months_after_the_newest_event_carry_the_last_mrr_without_movements() -> None:
    ledger = ledger_of(EXAMPLE_1)
    facts = account_month_facts(ledger, "2025-02")
    assert movements(facts) == (9_000, 9_000, 0, 0, 0, 0, 0)
    assert facts.age == 13 and facts.paying_at_start and facts.paying_at_end


def test_months_before_the_first_event_are_empty_and_have_no_cohort() -> None:
    facts = account_month_facts(ledger_of(EXAMPLE_1), "2023-11")
    assert movements(facts) == (0, 0, 0, 0, 0, 0, 0)
    assert facts.cohort is None and facts.age is None


# docs/metrics.md, example 2
EXAMPLE_2 = [
    canonical("g1", "globex", "2024-01-03T10:00:00Z", "trial.started", plan="business"),
    canonical(
        "g2",
        "globex",
        "2024-01-17T10:00:00Z",
        "trial.converted",
        plan="business",
        mrr=10_000,
        billing_interval="year",
    ),
    canonical("g3", "globex", "2024-03-10T10:00:00Z", "subscription.paused"),
    canonical("g4", "globex", "2024-04-05T10:00:00Z", "subscription.resumed"),
    canonical("g5", "globex", "2024-05-02T10:00:00Z", "invoice.paid", amount=120_000),
    canonical("g6", "globex", "2024-05-20T10:00:00Z", "payment.failed", amount=120_000, attempt=2),
    canonical("g7", "globex", "2024-05-21T10:00:00Z", "refund.issued", amount=50_000),
]


def test_worked_example_2_trial_annual_plan_and_pause() -> None:
    ledger = ledger_of(EXAMPLE_2, "globex")
    table = {m: movements(account_month_facts(ledger, m)) for m in months_between("2024-01", "2024-05")}
    assert table == {
        "2024-01": (0, 10_000, 10_000, 0, 0, 0, 0),
        "2024-02": (10_000, 10_000, 0, 0, 0, 0, 0),
        "2024-03": (10_000, 0, 0, 0, 0, 10_000, 0),
        "2024-04": (0, 10_000, 0, 0, 0, 0, 10_000),
        "2024-05": (10_000, 10_000, 0, 0, 0, 0, 0),
    }
    january = account_month_facts(ledger, "2024-01")
    assert january.trial_started and january.trial_converted and january.cohort == "2024-01"


def test_a_trial_alone_is_worth_nothing_and_makes_no_customer() -> None:
    ledger = ledger_of(EXAMPLE_2[:1], "globex")
    facts = account_month_facts(ledger, "2024-01")
    assert ledger.status == "trialing" and ledger.mrr == 0
    assert facts.trial_started and not facts.trial_converted and facts.cohort is None


def test_the_cohort_is_the_first_paying_month_end_not_the_trial_or_signup_month() -> None:
    events = [
        canonical("t1", "late", "2024-01-25T10:00:00Z", "trial.started", plan="pro"),
        canonical("t2", "late", "2024-02-08T10:00:00Z", "trial.converted", plan="pro", mrr=2_900),
    ]
    ledger = ledger_of(events, "late")
    assert ledger.first_paid_month == "2024-02"
    assert account_month_facts(ledger, "2024-01").trial_converted


def test_a_start_and_cancel_inside_one_month_never_makes_a_customer() -> None:
    events = [
        canonical("b1", "blip", "2024-03-02T10:00:00Z", "subscription.started", plan="pro", mrr=3_000),
        canonical("b2", "blip", "2024-03-28T10:00:00Z", "subscription.canceled"),
    ]
    ledger = ledger_of(events, "blip")
    facts = account_month_facts(ledger, "2024-03")
    assert movements(facts) == (0, 0, 0, 0, 0, 0, 0)
    assert ledger.first_paid_month is None and facts.cohort is None and not ledger.churned


def test_a_free_plan_counts_as_churn_and_paying_again_as_reactivation() -> None:
    events = [
        canonical("f1", "free", "2024-01-10T10:00:00Z", "subscription.started", plan="pro", mrr=5_000),
        canonical("f2", "free", "2024-02-10T10:00:00Z", "subscription.changed", plan="free", mrr=0),
        canonical("f3", "free", "2024-03-10T10:00:00Z", "subscription.changed", plan="pro", mrr=5_000),
    ]
    ledger = ledger_of(events, "free")
    assert movements(account_month_facts(ledger, "2024-02")) == (5_000, 0, 0, 0, 0, 5_000, 0)
    assert movements(account_month_facts(ledger, "2024-03")) == (0, 5_000, 0, 0, 0, 0, 5_000)


def test_an_event_exactly_at_midnight_on_the_first_belongs_to_the_new_month() -> None:
    events = [
        canonical("m1", "edge", "2024-01-10T10:00:00Z", "subscription.started", plan="pro", mrr=5_000),
        canonical("m2", "edge", "2024-02-01T00:00:00Z", "subscription.canceled"),
    ]
    ledger = ledger_of(events, "edge")
    assert month_end_mrr(ledger, "2024-01") == 5_000
    assert account_month_facts(ledger, "2024-02").churned_mrr == 5_000


def test_events_at_the_same_instant_apply_in_event_id_order() -> None:
    at = "2024-01-10T10:00:00Z"
    events = [
        canonical("x-2", "tie", at, "subscription.changed", plan="pro", mrr=7_000),
        canonical("x-1", "tie", at, "subscription.started", plan="pro", mrr=5_000),
    ]
    assert ledger_of(events, "tie").mrr == 7_000
    assert ledger_of(reversed(events), "tie").mrr == 7_000


def test_a_late_event_updates_its_month_and_every_later_month() -> None:
    ledger = ledger_of(EXAMPLE_1[:1] + EXAMPLE_1[2:4], lateness=timedelta(days=90))
    assert movements(account_month_facts(ledger, "2024-02")) == (10_000, 10_000, 0, 0, 0, 0, 0)
    ledger, changed = apply_billing_event(ledger, EXAMPLE_1[1], lateness=timedelta(days=90))
    # February gains the upgrade, March starts from it (contraction 3000 instead of expansion 2000).
    assert changed == ["2024-02", "2024-03"]
    assert movements(account_month_facts(ledger, "2024-02")) == (10_000, 15_000, 0, 5_000, 0, 0, 0)
    assert movements(account_month_facts(ledger, "2024-03")) == (15_000, 12_000, 0, 0, 3_000, 0, 0)
    assert ledger == ledger_of(EXAMPLE_1[:4], lateness=timedelta(days=90))


def test_changed_months_run_through_the_aggregators_current_month() -> None:
    ledger = ledger_of(EXAMPLE_1[:1])
    _, changed = apply_billing_event(ledger, EXAMPLE_1[1], through_month="2024-05")
    assert changed == ["2024-02", "2024-03", "2024-04", "2024-05"]


def test_a_conversion_also_changes_the_earlier_trial_month() -> None:
    ledger = ledger_of(EXAMPLE_2[:1], "globex")
    converted = canonical("c1", "globex", "2024-03-05T10:00:00Z", "subscription.started", plan="p", mrr=100)
    ledger, changed = apply_billing_event(ledger, converted)
    assert changed == ["2024-01", "2024-03"]
    assert account_month_facts(ledger, "2024-01").trial_converted


def test_a_duplicate_delivery_changes_nothing() -> None:
    ledger = ledger_of(EXAMPLE_1, lateness=FAR)
    for event in EXAMPLE_1:
        again, changed = apply_billing_event(ledger, event, lateness=FAR)
        assert changed == [] and again == ledger


def test_cash_events_move_neither_mrr_nor_any_month() -> None:
    ledger = ledger_of(EXAMPLE_2[:4], "globex")
    for event in EXAMPLE_2[4:]:
        before = [account_month_facts(ledger, m) for m in months_between("2024-01", "2024-06")]
        ledger, changed = apply_billing_event(ledger, event)
        assert changed == []
        assert [account_month_facts(ledger, m) for m in months_between("2024-01", "2024-06")] == before


def test_an_mrr_event_for_a_folded_month_raises_late_event_error() -> None:
    ledger = ledger_of(EXAMPLE_1[:4], lateness=timedelta(days=7))
    assert ledger.open_from == "2024-04"
    with pytest.raises(LateEventError):
        apply_billing_event(ledger, canonical("z", "acme", "2024-03-30T00:00:00Z", "subscription.canceled"))


def test_a_late_cash_event_is_accepted_as_a_no_op() -> None:
    ledger = ledger_of(EXAMPLE_1[:4], lateness=timedelta(days=7))
    late = canonical("z", "acme", "2024-01-30T00:00:00Z", "invoice.paid", amount=10_000)
    assert apply_billing_event(ledger, late) == (ledger, [])


def test_usage_events_and_other_accounts_are_refused() -> None:
    ledger = MrrLedger("acme")
    with pytest.raises(ValueError):
        apply_billing_event(
            ledger, canonical("u", "acme", "2024-01-01T00:00:00Z", "session.started", user_id="u")
        )
    with pytest.raises(ValueError):
        apply_billing_event(ledger, EXAMPLE_2[0])


def test_folded_months_keep_only_month_ends_and_the_open_months_keep_their_change_points() -> None:
    ledger = ledger_of(EXAMPLE_1, lateness=timedelta(days=7))
    assert ledger.open_from == "2024-07"
    assert [c.event_id for c in ledger.pending] == ["a6", "a7"]
    assert ledger.month_ends == [10_000, 15_000, 12_000, 0, 0, 9_000, 9_000]


def test_months_past_the_retention_horizon_are_dropped_but_the_cohort_survives() -> None:
    ledger = ledger_of(EXAMPLE_1, lateness=timedelta(days=7), retention_months=3)
    assert ledger.history_truncated and ledger.first_month == "2024-05"
    assert ledger.opening_mrr == 0 and ledger.month_ends == [0, 9_000, 9_000]
    assert (ledger.first_paid_month, ledger.activation_mrr) == ("2024-01", 10_000)
    june = account_month_facts(ledger, "2024-06")
    assert (june.reactivation_mrr, june.cohort, june.age) == (9_000, "2024-01", 5)
    with pytest.raises(ValueError):
        account_month_facts(ledger, "2024-04")


def test_the_codec_round_trips_through_orjson_and_stays_small() -> None:
    ledger = ledger_of(EXAMPLE_1, lateness=timedelta(days=7))
    raw = orjson.dumps(encode_ledger(ledger))
    assert decode_ledger(orjson.loads(raw)) == ledger
    assert len(raw) < 300


def test_the_codec_refuses_an_unknown_version() -> None:
    with pytest.raises(ValueError):
        decode_ledger([99, "acme"])


# --- properties ---------------------------------------------------------------------------------

BASE = datetime(2024, 1, 1, tzinfo=UTC)
SNAPSHOTS = [
    "subscription.started",
    "subscription.changed",
    "subscription.renewed",
    "subscription.reactivated",
    "trial.converted",
]
OTHERS = [
    "subscription.canceled",
    "subscription.paused",
    "subscription.resumed",
    "trial.started",
    "trial.expired",
    "subscription.cancel_scheduled",
    "invoice.paid",
]


@st.composite
def account_events(draw: st.DrawFn, max_events: int = 20) -> list[Any]:
    """One account's events over Jan-May 2024, with midnight boundaries and same-instant ties."""
    count = draw(st.integers(1, max_events))
    out = []
    for i in range(count):
        day = draw(st.integers(0, 140))
        second = draw(st.sampled_from([0, 0, 1, 3_600, 43_200, 86_399]))
        at = (BASE + timedelta(days=day, seconds=second)).isoformat()
        etype = draw(st.sampled_from(SNAPSHOTS + OTHERS))
        fields: dict[str, Any] = {}
        if etype in SNAPSHOTS:
            fields = {"plan": "p", "mrr": draw(st.sampled_from([0, 1_000, 2_500, 9_900]))}
        elif etype == "trial.started":
            fields = {"plan": "p"}
        elif etype == "invoice.paid":
            fields = {"amount": 1_000}
        event_id = f"e{draw(st.integers(0, 99)):02d}-{i:02d}"
        out.append(canonical(event_id, "acct", at, etype, **fields))
    return out


def in_time_order(events: list[Any]) -> list[Any]:
    return sorted(events, key=lambda e: (e.occurred_at, e.event_id))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), events=account_events())
def test_any_arrival_order_gives_the_same_ledger(data: st.DataObject, events: list[Any]) -> None:
    shuffled = data.draw(st.permutations(events))
    assert ledger_of(shuffled, "acct", lateness=FAR) == ledger_of(in_time_order(events), "acct", lateness=FAR)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=account_events(), lateness_days=st.integers(1, 20), seed=st.integers(0, 10_000))
def test_any_arrival_within_the_lateness_bound_gives_the_same_ledger(
    events: list[Any], lateness_days: int, seed: int
) -> None:
    lateness = timedelta(days=lateness_days)
    delivered = deliver_within_lateness(events, lateness, seed)
    expected = ledger_of(in_time_order(events), "acct", lateness=lateness)
    assert ledger_of(delivered, "acct", lateness=lateness) == expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=account_events(), lateness_days=st.integers(1, 40), retention=st.integers(2, 6))
def test_month_ends_agree_with_a_daily_replay_of_the_same_events(
    events: list[Any], lateness_days: int, retention: int
) -> None:
    ledger = ledger_of(
        in_time_order(events), "acct", lateness=timedelta(days=lateness_days), retention_months=retention
    )
    batch = build_accounts(events, "2024-01", "2024-07")["acct"]
    assert (ledger.first_paid_month, ledger.activation_mrr) == (batch.first_paid, batch.activation_mrr)
    assert ledger.trial_month == batch.trial_month
    for month in months_between(ledger.first_month or "2024-01", "2024-07"):
        facts = account_month_facts(ledger, month)
        assert (facts.mrr_start, facts.mrr_end) == (batch.start(month), batch.month_end[month])
        assert facts.mrr_end == (
            facts.mrr_start
            + facts.new_mrr
            + facts.expansion_mrr
            + facts.reactivation_mrr
            - facts.contraction_mrr
            - facts.churned_mrr
        )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), events=account_events(max_events=12), lateness_days=st.sampled_from([3, 20, 4000]))
def test_changed_months_are_exactly_the_months_whose_facts_changed(
    data: st.DataObject, events: list[Any], lateness_days: int
) -> None:
    months = months_between("2023-12", "2024-08")
    lateness = timedelta(days=lateness_days)
    ledger = MrrLedger("acct")
    for event in data.draw(st.permutations(events)):
        before = {m: account_month_facts(ledger, m) for m in months}
        try:
            updated, changed = apply_billing_event(ledger, event, lateness=lateness, through_month="2024-08")
        except LateEventError:
            continue  # refused events leave the (immutable) ledger as it was
        assert changed == [m for m in months if account_month_facts(updated, m) != before[m]]
        ledger = updated


@settings(max_examples=100, deadline=None)
@given(events=account_events(), lateness_days=st.integers(1, 40))
def test_any_ledger_survives_the_codec(events: list[Any], lateness_days: int) -> None:
    ledger = ledger_of(in_time_order(events), "acct", lateness=timedelta(days=lateness_days))
    assert decode_ledger(orjson.loads(orjson.dumps(encode_ledger(ledger)))) == ledger


def test_the_month_of_a_day_is_its_utc_calendar_month_across_month_year_and_leap_day_ends() -> None:
    ends = [date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1), date(2025, 12, 31), date(2026, 1, 1),
            date(1970, 1, 1), date(2100, 2, 28), date(2100, 3, 1)]
    for d in ends:
        assert month_of_day(day_index(d)) == f"{d.year:04d}-{d.month:02d}"
    for day in range(day_index(date(2023, 1, 1)), day_index(date(2027, 1, 1))):
        at = datetime.fromtimestamp(day * DAY_S + DAY_S - 1, UTC)  # the day's last second is still that month
        assert month_of_day(day) == at.strftime("%Y-%m")
