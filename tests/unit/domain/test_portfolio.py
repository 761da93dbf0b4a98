"""The worker's portfolio builder gives, refresh after refresh, exactly the batch computation of the same snapshots."""

from __future__ import annotations

import random
from functools import cache

import orjson
import pytest

from streams.domain.aggregate import cohort_snapshot
from streams.domain.portfolio import PortfolioBuilder, compute_portfolio
from streams.replay import replay_lines
from streams.tools.simulate import generate

Snapshots = list[tuple[str, bytes]]


@cache
def snapshots_along_history() -> tuple[Snapshots, ...]:
    """Every account's cohort snapshot after a quarter, half, three quarters and all of a simulated history
    (80 accounts, 150 days: several months and cohorts, churn, downgrades, NPS answers)."""
    events, _truth = generate(80, 150, seed=5)
    lines = [orjson.dumps(e) for e in events]
    out = []
    for share in (0.25, 0.5, 0.75, 1.0):
        states = replay_lines(lines[: int(len(lines) * share)], final_tick=False).states
        out.append([(account_id, cohort_snapshot(agg, "plan")) for account_id, agg in sorted(states.items())])
    return tuple(out)


def with_snapshot_of(snapshots: Snapshots, account_id: str, other: bytes) -> Snapshots:
    """`account_id` now has the ledger and NPS answers of another account's snapshot (kept under its own id)."""
    snap = orjson.loads(other)
    snap["ledger"][1] = account_id
    return [(a, orjson.dumps(snap) if a == account_id else raw) for a, raw in snapshots]


def test_a_builder_refreshed_along_a_growing_history_gives_the_batch_portfolio_each_time() -> None:
    builder = PortfolioBuilder(gross_margin=0.8)
    for snapshots in snapshots_along_history():
        assert builder.refresh(snapshots) == compute_portfolio(snapshots, gross_margin=0.8)


def test_changed_accounts_are_taken_out_and_added_again_exactly() -> None:
    snapshots = snapshots_along_history()[-1]
    builder = PortfolioBuilder()
    builder.refresh(snapshots)
    rng = random.Random(3)
    for _refresh in range(5):
        for _ in range(7):
            account_id, _raw = rng.choice(snapshots)
            snapshots = with_snapshot_of(snapshots, account_id, rng.choice(snapshots)[1])
        assert builder.refresh(snapshots) == compute_portfolio(snapshots)


def test_accounts_missing_from_a_refresh_are_taken_out() -> None:
    snapshots = snapshots_along_history()[-1]
    builder = PortfolioBuilder()
    builder.refresh(snapshots)
    half = snapshots[::2]
    assert builder.refresh(half) == compute_portfolio(half)
    assert builder.refresh(snapshots) == compute_portfolio(snapshots)


def test_an_earlier_history_arriving_moves_the_months_and_still_matches_the_batch() -> None:
    late, early = snapshots_along_history()[-1], snapshots_along_history()[0]
    builder = PortfolioBuilder()
    builder.refresh(late)
    assert builder.refresh(early) == compute_portfolio(early)


def test_accounts_with_usage_but_no_billing_yet_give_an_empty_portfolio_that_counts_them() -> None:
    events, _truth = generate(80, 150, seed=5)
    usage_only = [orjson.dumps(e) for e in events if e["type"] == "feature.used"][:50]
    states = replay_lines(usage_only, final_tick=False).states
    snapshots = [(account_id, cohort_snapshot(agg, "plan")) for account_id, agg in sorted(states.items())]
    portfolio = PortfolioBuilder().refresh(snapshots)
    assert portfolio == compute_portfolio(snapshots)
    assert portfolio.accounts == len(snapshots) > 0
    assert portfolio.months == []


def test_a_refresh_that_fails_on_a_broken_snapshot_leaves_the_next_one_exact() -> None:
    snapshots = snapshots_along_history()[-1]
    builder = PortfolioBuilder()
    builder.refresh(snapshots)
    # The first account's change is taken in before the broken snapshot stops the refresh half-way.
    changed = with_snapshot_of(snapshots, snapshots[0][0], snapshots[1][1])
    with pytest.raises(orjson.JSONDecodeError):
        builder.refresh([*changed[:40], ("acct-broken", b"{not json"), *changed[40:]])
    assert builder.refresh(changed) == compute_portfolio(changed)
