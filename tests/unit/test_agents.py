"""The account agent's pacing rules (the agent itself runs against the real broker in tests/integration)."""

from __future__ import annotations

import math

from streams.agents import HEALTH_MIN_PER_TICK, health_publish_quota


def test_a_few_pending_health_records_are_all_published_in_one_tick() -> None:
    assert health_publish_quota(pending=10, tick_s=1.0, interval_s=30.0) == HEALTH_MIN_PER_TICK


def test_a_burst_of_due_health_records_is_published_within_half_an_interval() -> None:
    pending, tick_s, interval_s = 50_000, 1.0, 30.0
    quota = health_publish_quota(pending, tick_s, interval_s)
    ticks_to_publish_all = math.ceil(pending / quota)
    assert ticks_to_publish_all * tick_s <= interval_s / 2


def test_the_quota_keeps_up_with_every_pending_account_once_per_interval() -> None:
    for pending in (0, 1, 49, 50, 51, 700, 5_000, 123_457):
        for tick_s, interval_s in ((1.0, 30.0), (0.05, 0.05), (1.0, 3600.0)):
            quota = health_publish_quota(pending, tick_s, interval_s)
            assert quota * interval_s / tick_s >= pending
