"""The streaming-shaped path agrees with an independent batch computation over generated worlds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

from streams.domain.cohorts import (
    AggregateKey,
    CohortCell,
    CompanyMonth,
    Counters,
    apply_delta,
    build_metrics,
    compute_metrics,
    keyed_contributions,
    nps_contribution,
    roll_forward,
    tally_nps,
)
from streams.domain.mrr import (
    MrrLedger,
    account_month_facts,
    add_months,
    apply_billing_event,
    encode_ledger,
    month_of,
)
from tests.support.batch_metrics import BatchResult, compute_batch
from tests.support.worlds import World, deliver_within_lateness, generate_world

LATENESS = timedelta(days=5)
GROSS_MARGIN = 0.8


def stream(world: World, *, seed: int, retention_months: int = 36) -> tuple[dict[str, MrrLedger], list[Any]]:
    """apply_billing_event per event in a shuffled-within-lateness arrival order."""
    ledgers: dict[str, MrrLedger] = {}
    nps = []
    for event in deliver_within_lateness(world.events, LATENESS, seed):
        if event.type == "nps.responded":
            nps.append(event)
            continue
        ledger = ledgers.get(event.account_id) or MrrLedger(event.account_id)
        ledgers[event.account_id], _ = apply_billing_event(
            ledger, event, lateness=LATENESS, retention_months=retention_months
        )
    return ledgers, nps


def same(ours: Any, theirs: Any) -> bool:
    """Ints and None exactly, rates within 1e-12, nested dicts key by key."""
    if isinstance(ours, float) or isinstance(theirs, float):
        return ours is not None and theirs is not None and abs(ours - theirs) <= 1e-12
    if isinstance(ours, dict):
        return ours.keys() == theirs.keys() and all(same(ours[k], theirs[k]) for k in ours)
    return type(ours) is type(theirs) and ours == theirs


def assert_matches_batch(months: list[CompanyMonth], cells: list[CohortCell], batch: BatchResult) -> None:
    assert {(m.segment, m.month) for m in months} == set(batch.months)
    assert {(c.segment, c.cohort, c.age) for c in cells} == set(batch.cells)
    for m in months:
        expected = batch.months[(m.segment, m.month)]
        mismatches = {k: (v, expected.get(k)) for k, v in m.as_dict().items() if not same(v, expected.get(k))}
        assert not mismatches, f"{m.segment} {m.month}: {mismatches}"
    for c in cells:
        expected = batch.cells[(c.segment, c.cohort, c.age)]
        mismatches = {k: (v, expected.get(k)) for k, v in c.as_dict().items() if not same(v, expected.get(k))}
        assert not mismatches, f"{c.segment} {c.cohort}+{c.age}: {mismatches}"


@pytest.fixture(scope="module", params=[20240601, 7])
def world(request: pytest.FixtureRequest) -> World:
    return generate_world(seed=request.param, accounts=300, months=15)


def test_the_world_is_rich_enough_to_mean_something(world: World) -> None:
    types = {e.type for e in world.events}
    assert {
        "trial.started",
        "trial.converted",
        "trial.expired",
        "subscription.started",
        "subscription.changed",
        "subscription.renewed",
        "subscription.canceled",
        "subscription.reactivated",
        "subscription.paused",
        "subscription.resumed",
        "nps.responded",
    } <= types
    assert len({e.account_id for e in world.events}) >= 250
    assert len(world.events) > len({e.event_id for e in world.events})  # retried duplicates included
    months, cells = compute_metrics(
        stream(world, seed=1)[0].values(), from_month=world.first_month, through_month=world.last_month
    )
    assert len(months) == 15 and max(c.age for c in cells) >= 12
    assert all(m.expansion_mrr and m.contraction_mrr and m.churned_mrr for m in months[2:])
    assert sum(m.reactivated_customers for m in months) > 10


@pytest.mark.parametrize("delivery_seed", [1, 2])
def test_every_company_month_and_cohort_cell_equals_the_batch_computation(
    world: World, delivery_seed: int
) -> None:
    ledgers, nps = stream(world, seed=delivery_seed)
    months, cells = compute_metrics(
        ledgers.values(),
        tally_nps(nps),
        world.segments,
        gross_margin=GROSS_MARGIN,
        from_month=world.first_month,
        through_month=world.last_month,
    )
    batch = compute_batch(
        world.events,
        first_month=world.first_month,
        last_month=world.last_month,
        segments=world.segments,
        gross_margin=GROSS_MARGIN,
    )
    assert_matches_batch(months, cells, batch)


def test_a_short_retention_horizon_still_reports_its_months_exactly(world: World) -> None:
    ledgers, nps = stream(world, seed=3, retention_months=6)
    assert any(ledger.history_truncated for ledger in ledgers.values())
    months, cells = compute_metrics(ledgers.values(), tally_nps(nps), through_month=world.last_month)
    first = months[0].month
    assert first == add_months(world.last_month, -5)
    batch = compute_batch(world.events, first_month=first, last_month=world.last_month)
    assert_matches_batch(months, cells, batch)


class IncrementalAggregator:
    """What a streaming aggregator does with the contract: roll months forward, apply fact deltas."""

    def __init__(self, segments: dict[str, str]) -> None:
        self.segments = segments
        self.totals: dict[AggregateKey, Counters] = {}
        self.current: str | None = None

    def advance_to(self, month: str) -> None:
        if self.current is None:
            self.current = month
        while self.current < month:
            for key, counters in [(k, v) for k, v in self.totals.items() if k.month == self.current]:
                next_key, seed = roll_forward(key, counters)
                self.totals[next_key] = apply_delta(self.totals.get(next_key, {}), None, seed)
            self.current = add_months(self.current, 1)

    def replace(self, account_id: str, old: MrrLedger, new: MrrLedger, months: list[str]) -> None:
        segment = self.segments.get(account_id, "unknown")
        for month in months:
            for key, counters in keyed_contributions(account_month_facts(old, month), segment):
                self.totals[key] = apply_delta(self.totals.get(key, {}), counters, None)
            for key, counters in keyed_contributions(account_month_facts(new, month), segment):
                self.totals[key] = apply_delta(self.totals.get(key, {}), None, counters)


def test_an_incremental_aggregator_fed_by_deltas_equals_the_batch_replay(world: World) -> None:
    aggregator = IncrementalAggregator(world.segments)
    ledgers: dict[str, MrrLedger] = {}
    nps = []
    for event in deliver_within_lateness(world.events, LATENESS, seed=4):
        aggregator.advance_to(month_of(event.occurred_at))
        if event.type == "nps.responded":
            nps.append(event)
            continue
        old = ledgers.get(event.account_id) or MrrLedger(event.account_id)
        new, changed = apply_billing_event(old, event, lateness=LATENESS, through_month=aggregator.current)
        aggregator.replace(event.account_id, old, new, changed)
        ledgers[event.account_id] = new
    aggregator.advance_to(world.last_month)
    for month, per_account in tally_nps(nps).items():
        for account_id, tally in per_account.items():
            for segment in (None, world.segments.get(account_id, "unknown")):
                key = AggregateKey(segment, month, None)
                aggregator.totals[key] = apply_delta(
                    aggregator.totals.get(key, {}), None, nps_contribution(tally)
                )

    live = build_metrics(aggregator.totals, gross_margin=GROSS_MARGIN)
    replay = compute_metrics(
        ledgers.values(),
        tally_nps(nps),
        world.segments,
        gross_margin=GROSS_MARGIN,
        from_month=world.first_month,
        through_month=world.last_month,
    )
    # The replay also lists months in which a segment had no account at all; the aggregator never saw them.
    live_keys = {(m.segment, m.month) for m in live[0]}
    unseen = [m for m in replay[0] if (m.segment, m.month) not in live_keys]
    assert all(m.customers_end == m.customers_start == m.mrr_end == 0 for m in unseen)
    assert [m.as_dict() for m in live[0]] == [m.as_dict() for m in replay[0] if m not in unseen]
    assert [c.as_dict() for c in live[1]] == [c.as_dict() for c in replay[1]]


def test_every_ledger_stays_well_under_two_kilobytes(world: World) -> None:
    ledgers, _ = stream(world, seed=1)
    sizes = [len(orjson.dumps(encode_ledger(ledger))) for ledger in ledgers.values()]
    assert max(sizes) < 2048
