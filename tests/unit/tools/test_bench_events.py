"""The bench's generated events: a consistent book whatever the span."""

from __future__ import annotations

from datetime import datetime

import orjson

from streams.tools.bench import generate_events, replay_sparse

END_S = 1_780_000_000.0  # a fixed end, so the test does not depend on the wall clock


def events_by_account(days: int) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for _key, value, _billing in generate_events(4_000, 200, seed=3, end_s=END_S, days=days):
        body = orjson.loads(value)
        out.setdefault(body["account_id"], []).append(body)
    return out


def at_s(body: dict) -> float:
    return datetime.fromisoformat(body["occurred_at"].replace("Z", "+00:00")).timestamp()


def test_every_account_subscribes_before_its_other_events_and_nothing_is_dated_after_the_end() -> None:
    for days in (1, 2, 60):
        accounts = events_by_account(days)
        assert len(accounts) == 200
        for events in accounts.values():
            assert events[0]["type"] == "subscription.started"
            assert all(at_s(e) >= at_s(events[0]) for e in events)
            assert all(END_S - days * 86400 <= at_s(e) <= END_S for e in events)


def test_a_sparse_replay_counts_each_account_day_end_it_evaluated_once() -> None:
    # 40 accounts over 10 days: each account's days from its first event to the last one closed before the
    # newest event's day (the replay does not tick past it), so at most 10 per account and at least 1.
    sparse = replay_sparse(seed=3, events=400, accounts=40, days=10)
    assert sparse["replay_sparse_events"] == 400
    assert 40 <= sparse["replay_sparse_account_days"] <= 40 * 10
    assert sparse["replay_sparse_eps"] > 0 and sparse["replay_account_days_per_s"] > 0
