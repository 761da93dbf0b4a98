"""Company months, cohort cells, NPS, trials and segments: the worked examples of docs/metrics.md."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain.aggregate import NpsResponse
from streams.domain.cohorts import (
    AggregateKey,
    CompanyMonth,
    NpsTally,
    apply_delta,
    company_month,
    compute_metrics,
    contribution,
    highest_churn_age,
    keyed_contributions,
    ltv,
    nps_contribution,
    roll_forward,
    second_month_retention,
    segment_breakdown,
    tally_nps,
    tally_nps_rows,
    trial_conversion_by_month,
    twelfth_month_retention,
)
from streams.domain.mrr import MrrLedger, account_month_facts, apply_billing_event
from tests.support.worlds import canonical


def ledgers_of(events: Iterable[Any]) -> list[MrrLedger]:
    ledgers: dict[str, MrrLedger] = {}
    for event in events:
        ledger = ledgers.get(event.account_id) or MrrLedger(event.account_id)
        ledgers[event.account_id], _ = apply_billing_event(ledger, event)
    return list(ledgers.values())


def started(event_id: str, account: str, at: str, mrr: int) -> Any:
    return canonical(event_id, account, at, "subscription.started", plan="pro", mrr=mrr)


# docs/metrics.md, examples 3 and 4
EXAMPLE_3 = [
    started("A1", "A", "2024-01-05T10:00:00Z", 10_000),
    started("B1", "B", "2024-01-08T10:00:00Z", 5_000),
    started("C1", "C", "2024-01-15T10:00:00Z", 20_000),
    started("D1", "D", "2024-01-20T10:00:00Z", 8_000),
    started("F1", "F", "2024-01-25T10:00:00Z", 4_000),
    canonical("F2", "F", "2024-02-15T10:00:00Z", "subscription.canceled"),
    started("G1", "G", "2024-03-02T10:00:00Z", 3_000),
    canonical("D2", "D", "2024-03-07T10:00:00Z", "subscription.changed", plan="pro", mrr=6_000),
    started("E1", "E", "2024-03-09T10:00:00Z", 7_000),
    canonical("B2", "B", "2024-03-12T10:00:00Z", "subscription.canceled"),
    canonical("F3", "F", "2024-03-18T10:00:00Z", "subscription.reactivated", plan="pro", mrr=4_000),
    canonical("C2", "C", "2024-03-20T10:00:00Z", "subscription.changed", plan="pro", mrr=25_000),
    canonical("G2", "G", "2024-03-28T10:00:00Z", "subscription.canceled"),
]


def example_3_months(**options: Any) -> dict[str, CompanyMonth]:
    months, _ = compute_metrics(ledgers_of(EXAMPLE_3), **options)
    return {m.month: m for m in months}


def test_worked_example_3_company_march() -> None:
    march = example_3_months(gross_margin=0.8)["2024-03"].as_dict()
    expected = {
        "customers_start": 4,
        "customers_end": 5,
        "new_customers": 1,
        "churned_customers": 1,
        "reactivated_customers": 1,
        "retained_customers": 3,
        "customer_churn_rate": 0.25,
        "customer_retention_rate": 0.75,
        "mrr_start": 43_000,
        "mrr_end": 52_000,
        "new_mrr": 7_000,
        "expansion_mrr": 5_000,
        "contraction_mrr": 2_000,
        "churned_mrr": 5_000,
        "reactivation_mrr": 4_000,
        "gross_revenue_retention": 36_000 / 43_000,
        "net_revenue_retention": 41_000 / 43_000,
        "revenue_churn": 7_000 / 43_000,
        "arpu": 10_400,
        "arr": 624_000,
        "ltv": 33_280,
        "paying_customers": 5,
    }
    assert {k: march[k] for k in expected} == expected
    assert round(march["gross_revenue_retention"], 4) == 0.8372
    assert round(march["net_revenue_retention"], 4) == 0.9535
    assert round(march["revenue_churn"], 4) == 0.1628


def test_worked_example_3_january_and_february() -> None:
    months = example_3_months()
    jan, feb = months["2024-01"], months["2024-02"]
    assert (jan.customers_start, jan.customers_end, jan.new_customers, jan.new_mrr) == (0, 5, 5, 47_000)
    assert jan.customer_churn_rate is None and jan.gross_revenue_retention is None and jan.ltv is None
    assert (feb.customers_start, feb.customers_end, feb.churned_customers, feb.churned_mrr) == (
        5,
        4,
        1,
        4_000,
    )
    assert (feb.customer_churn_rate, feb.customer_retention_rate) == (0.2, 0.8)
    assert (feb.arpu, feb.ltv) == (10_750, 53_750)


def test_company_months_obey_the_mrr_identity() -> None:
    for m in example_3_months().values():
        assert m.mrr_end == (
            m.mrr_start + m.new_mrr + m.expansion_mrr + m.reactivation_mrr - m.contraction_mrr - m.churned_mrr
        )
        assert (
            m.customers_end
            == m.customers_start + m.new_customers + m.reactivated_customers - m.churned_customers
        )


def test_company_month_as_dict_has_the_contract_keys_and_is_json() -> None:
    required = {
        "month",
        "customers_start",
        "customers_end",
        "new_customers",
        "churned_customers",
        "reactivated_customers",
        "customer_churn_rate",
        "customer_retention_rate",
        "mrr_start",
        "mrr_end",
        "new_mrr",
        "expansion_mrr",
        "contraction_mrr",
        "churned_mrr",
        "reactivation_mrr",
        "gross_revenue_retention",
        "net_revenue_retention",
        "arpu",
        "nps",
    }
    row = example_3_months()["2024-03"].as_dict()
    assert required <= row.keys()
    assert orjson.loads(orjson.dumps(row)) == row


def test_worked_example_4_cohort_cells() -> None:
    _, cells = compute_metrics(ledgers_of(EXAMPLE_3))
    table = {(c.cohort, c.age): c for c in cells}
    assert sorted(table) == [("2024-01", 0), ("2024-01", 1), ("2024-01", 2), ("2024-03", 0)]
    age0, age1, age2 = table["2024-01", 0], table["2024-01", 1], table["2024-01", 2]
    assert (age0.cohort_customers, age0.cohort_mrr, age0.new, age0.customers_end, age0.mrr_end) == (
        5,
        47_000,
        5,
        5,
        47_000,
    )
    assert (age0.customer_retention, age0.net_revenue_retention_cumulative) == (1.0, 1.0)
    assert age0.gross_revenue_retention_mom is None
    assert (age1.customers_start, age1.churned, age1.retained, age1.customers_end) == (5, 1, 4, 4)
    assert (age1.mrr_start, age1.mrr_end, age1.churned_mrr) == (47_000, 43_000, 4_000)
    assert (age1.customer_retention, age1.customer_churn_rate) == (0.8, 0.2)
    assert age1.gross_revenue_retention_mom == 43_000 / 47_000
    assert age1.gross_revenue_retention_cumulative == 43_000 / 47_000
    assert age1.net_revenue_retention_cumulative == 43_000 / 47_000
    assert (age2.customers_start, age2.churned, age2.reactivated, age2.retained, age2.customers_end) == (
        4,
        1,
        1,
        3,
        4,
    )
    assert (age2.mrr_start, age2.mrr_end, age2.capped_mrr_end) == (43_000, 45_000, 40_000)
    assert (age2.expansion_mrr, age2.contraction_mrr, age2.churned_mrr, age2.reactivation_mrr) == (
        5_000,
        2_000,
        5_000,
        4_000,
    )
    assert (age2.customer_retention, age2.customer_churn_rate) == (0.8, 0.25)
    assert age2.gross_revenue_retention_mom == 36_000 / 43_000
    assert age2.net_revenue_retention_mom == 41_000 / 43_000
    assert age2.gross_revenue_retention_cumulative == 40_000 / 47_000
    assert age2.net_revenue_retention_cumulative == 45_000 / 47_000
    e = table["2024-03", 0]
    assert (e.cohort_customers, e.new, e.new_mrr, e.cohort_mrr) == (1, 1, 7_000, 7_000)


def test_march_mrr_share_by_cohort_and_the_highest_churn_age() -> None:
    months, cells = compute_metrics(ledgers_of(EXAMPLE_3))
    by_month = {m.month: m for m in months}
    assert by_month["2024-03"].cohort_mrr_share == {"2024-01": 45_000 / 52_000, "2024-03": 7_000 / 52_000}
    assert (by_month["2024-01"].highest_churn_age, by_month["2024-02"].highest_churn_age) == (None, 1)
    assert by_month["2024-03"].highest_churn_age == 2
    assert highest_churn_age(cells) == 2  # age 1: 1/5 = 0.20, age 2: 1/4 = 0.25


def test_second_and_twelfth_month_retention_per_cohort() -> None:
    _, cells = compute_metrics(ledgers_of(EXAMPLE_3))
    assert second_month_retention(cells) == {"2024-01": 0.8}
    assert twelfth_month_retention(cells) == {}
    _, later = compute_metrics(ledgers_of(EXAMPLE_3), through_month="2024-12")
    assert twelfth_month_retention(later) == {"2024-01": 0.8}


# docs/metrics.md, example 5
EXAMPLE_5 = [
    canonical("n1", "A", "2024-03-02T10:00:00Z", "nps.responded", user_id="u1", score=10),
    canonical("n2", "A", "2024-03-03T10:00:00Z", "nps.responded", user_id="u2", score=9),
    canonical("n3", "A", "2024-03-20T10:00:00Z", "nps.responded", user_id="u2", score=6),
    canonical("n4", "B", "2024-03-05T10:00:00Z", "nps.responded", user_id="u1", score=7),
    canonical("n5", "C", "2024-03-06T10:00:00Z", "nps.responded", user_id="u4", score=8),
    canonical("n6", "D", "2024-03-08T10:00:00Z", "nps.responded", user_id="u5", score=9),
]


def test_worked_example_5_nps_counts_each_users_latest_answer_in_the_month() -> None:
    tallies = tally_nps(EXAMPLE_5)
    assert tallies == {
        "2024-03": {
            "A": NpsTally(promoters=1, passives=0, detractors=1),
            "B": NpsTally(passives=1),
            "C": NpsTally(passives=1),
            "D": NpsTally(promoters=1),
        }
    }
    march = example_3_months(nps_by_month=tallies)["2024-03"]
    assert (march.nps, march.nps_responses) == (20.0, 5)
    assert example_3_months(nps_by_month=tallies)["2024-02"].nps is None


def test_worked_example_5_tallied_from_cohort_snapshot_rows_gives_the_same_tallies() -> None:
    # The portfolio tallies an account's answers from its cohort snapshot's rows (at_s, event_id, user_id, score).
    rows: dict[str, list[tuple[int, str, str, int]]] = {}
    for e in EXAMPLE_5:
        rows.setdefault(e.account_id, []).append((int(e.occurred_at.timestamp()), e.event_id, e.user_id, e.score))
    merged: dict[str, dict[str, NpsTally]] = {}
    for account_id, answers in rows.items():
        for month, per_account in tally_nps_rows(account_id, answers).items():
            merged.setdefault(month, {}).update(per_account)
    assert merged == tally_nps(EXAMPLE_5)


# Whole epoch seconds from 2023-12-25 to 2024-03-08: answers around two month ends (and a year end).
NPS_ROWS = st.lists(st.tuples(st.integers(1_703_462_400, 1_709_856_000), st.sampled_from(["e1", "e2", "e3"]),
                              st.sampled_from(["u1", "u2"]), st.integers(0, 10)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(rows=NPS_ROWS)
def test_an_accounts_snapshot_rows_tally_as_its_answers_do(rows: list[tuple[int, str, str, int]]) -> None:
    responses = [NpsResponse(datetime.fromtimestamp(at, tz=UTC), eid, "acct", user, score)
                 for at, eid, user, score in rows]
    assert tally_nps_rows("acct", rows) == tally_nps(responses)  # type: ignore[arg-type]


# docs/metrics.md, example 6
EXAMPLE_6 = [
    canonical("t1a", "T1", "2024-04-03T10:00:00Z", "trial.started", plan="starter"),
    canonical("t1b", "T1", "2024-04-17T10:00:00Z", "trial.converted", plan="starter", mrr=2_900),
    canonical("t2a", "T2", "2024-04-10T10:00:00Z", "trial.started", plan="starter"),
    canonical("t2b", "T2", "2024-04-24T10:00:00Z", "trial.expired"),
    canonical("t3a", "T3", "2024-04-28T10:00:00Z", "trial.started", plan="starter"),
    canonical("t3b", "T3", "2024-05-12T10:00:00Z", "trial.converted", plan="starter", mrr=2_900),
    canonical("t4a", "T4", "2024-04-20T10:00:00Z", "trial.started", plan="starter"),
    canonical("t4b", "T4", "2024-05-04T10:00:00Z", "trial.expired"),
    started("t4c", "T4", "2024-07-01T10:00:00Z", 2_900),
    started("t5a", "T5", "2024-01-10T10:00:00Z", 9_900),
    canonical("t5b", "T5", "2024-04-15T10:00:00Z", "trial.started", plan="addon"),
]


def test_worked_example_6_trial_conversion_by_trial_start_month() -> None:
    months, _ = compute_metrics(ledgers_of(EXAMPLE_6))
    april = next(m for m in months if m.month == "2024-04")
    assert (april.trials_started, april.trials_converted, april.trial_conversion_rate) == (4, 3, 0.75)
    assert trial_conversion_by_month(months) == {"2024-04": 0.75}
    # Before T4 subscribes in July, April's rate is 2 / 4: trial months keep converting later.
    months_june, _ = compute_metrics(ledgers_of(e for e in EXAMPLE_6 if e.event_id != "t4c"))
    assert trial_conversion_by_month(months_june) == {"2024-04": 0.5}


def test_ltv_is_none_without_churn_and_scales_with_gross_margin() -> None:
    assert ltv(52_000, 5, 4, 0) is None
    assert ltv(52_000, 5, 4, 1) == 41_600
    assert ltv(52_000, 5, 4, 1, gross_margin=0.8) == 33_280
    assert ltv(10_001, 2, 1, 1) == 5_001  # 5000.5 rounds half up


def test_segment_rows_equal_metrics_of_the_segment_alone() -> None:
    segments = {"A": "smb", "B": "smb", "C": "enterprise", "D": "enterprise", "E": "smb", "F": "smb"}
    by_segment = segment_breakdown(ledgers_of(EXAMPLE_3), segments)
    assert sorted(by_segment) == ["enterprise", "smb", "unknown"]  # G has no segment
    for segment, (months, cells) in by_segment.items():
        members = [e for e in EXAMPLE_3 if segments.get(e.account_id, "unknown") == segment]
        alone_months, alone_cells = compute_metrics(
            ledgers_of(members), from_month="2024-01", through_month="2024-03"
        )
        strip = {"segment"}
        assert [{k: v for k, v in m.as_dict().items() if k not in strip} for m in months] == [
            {k: v for k, v in m.as_dict().items() if k not in strip} for m in alone_months
        ]
        assert [{k: v for k, v in c.as_dict().items() if k not in strip} for c in cells] == [
            {k: v for k, v in c.as_dict().items() if k not in strip} for c in alone_cells
        ]
    enterprise_march = by_segment["enterprise"][0][2]
    assert (enterprise_march.expansion_mrr, enterprise_march.contraction_mrr) == (5_000, 2_000)


def test_overall_rows_come_first_then_each_segment() -> None:
    months, _ = compute_metrics(ledgers_of(EXAMPLE_3), segments={"A": "x"})
    assert [(m.segment, m.month) for m in months][:4] == [
        (None, "2024-01"),
        (None, "2024-02"),
        (None, "2024-03"),
        ("unknown", "2024-01"),
    ]


def test_no_ledgers_give_no_rows() -> None:
    assert compute_metrics([]) == ([], [])


# --- the incremental-aggregation contract -------------------------------------------------------


def test_apply_delta_swaps_an_old_contribution_for_a_new_one() -> None:
    cell = {"customers_start": 3, "mrr_start": 30_000, "churned_customers": 1}
    updated = apply_delta(cell, {"churned_customers": 1, "mrr_start": 10_000}, {"mrr_start": 12_000})
    assert updated == {"customers_start": 3, "mrr_start": 32_000}
    assert cell == {"customers_start": 3, "mrr_start": 30_000, "churned_customers": 1}
    assert apply_delta(updated, updated, None) == {}


def test_contribution_keys_route_a_month_to_its_company_month_and_cohort_cell() -> None:
    ledger = ledgers_of(EXAMPLE_3[:1])[0]
    facts = account_month_facts(ledger, "2024-02")
    keys = [key for key, _ in keyed_contributions(facts, "smb")]
    assert keys == [
        AggregateKey(None, "2024-02", None),
        AggregateKey(None, "2024-02", "2024-01"),
        AggregateKey("smb", "2024-02", None),
        AggregateKey("smb", "2024-02", "2024-01"),
    ]
    assert contribution(facts) == {
        "customers_start": 1,
        "customers_end": 1,
        "retained_customers": 1,
        "mrr_start": 10_000,
        "mrr_end": 10_000,
        "cohort_customers": 1,
        "cohort_mrr": 10_000,
        "capped_mrr_end": 10_000,
    }


def test_rolling_a_month_forward_equals_the_facts_of_a_month_without_events() -> None:
    ledgers = ledgers_of(EXAMPLE_3)
    march: dict[AggregateKey, dict[str, int]] = {}
    april: dict[AggregateKey, dict[str, int]] = {}
    for ledger in ledgers:
        for key, counters in keyed_contributions(account_month_facts(ledger, "2024-03")):
            march[key] = apply_delta(march.get(key, {}), None, counters)
        for key, counters in keyed_contributions(account_month_facts(ledger, "2024-04")):
            april[key] = apply_delta(april.get(key, {}), None, counters)
    rolled = dict(roll_forward(key, counters) for key, counters in march.items())
    assert rolled == april


def test_nps_contributions_feed_the_company_month() -> None:
    counters = nps_contribution(NpsTally(promoters=2, passives=2, detractors=1))
    row = company_month(AggregateKey(None, "2024-03", None), counters)
    assert (row.nps, row.nps_responses) == (20.0, 5)


def test_a_cohort_key_is_not_a_company_month() -> None:
    with pytest.raises(ValueError):
        company_month(AggregateKey(None, "2024-03", "2024-01"), {})
