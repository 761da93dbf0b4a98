"""The account agent's pacing rules (the agent itself runs against the real broker in tests/integration)."""

from __future__ import annotations

import math
from typing import NamedTuple

from streams.agents import (
    HEALTH_MIN_PER_TICK,
    USAGE_FRONTS_KEY,
    ack_chunks,
    ack_groups,
    cohort_backlog_read,
    decode_usage_fronts,
    encode_usage_fronts,
    health_publish_quota,
    merge_usage_fronts,
    portfolio_front_may_move,
    portfolio_front_of,
    usage_fronts_of,
)


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


class Record(NamedTuple):
    """The fields of a Kafka record the acknowledgement needs."""

    topic: str
    partition: int
    offset: int


def test_applied_records_are_kept_as_offsets_grouped_by_partition_in_record_order() -> None:
    records = [Record("usage", 0, 5), Record("usage", 1, 7), Record("usage", 0, 6), Record("billing", 0, 2)]
    assert ack_groups(records) == [("usage", 0, [5, 6]), ("usage", 1, [7]), ("billing", 0, [2])]


def test_acknowledgement_chunks_hold_at_most_the_chunk_size_and_keep_every_offset_in_order() -> None:
    groups = [("usage", 0, list(range(0, 5))), ("usage", 1, list(range(10, 13))), ("billing", 0, [1])]
    chunks = ack_chunks(groups, 3)
    assert [sum(len(offsets) for _t, _p, offsets in chunk) for chunk in chunks] == [3, 3, 3]
    flattened = [(t, p, o) for chunk in chunks for t, p, offsets in chunk for o in offsets]
    assert flattened == [(t, p, o) for t, p, offsets in groups for o in offsets]


def test_no_records_make_no_chunks() -> None:
    assert ack_chunks([], 1000) == []
    assert ack_groups([]) == []


def test_the_cohort_backlog_is_not_read_before_the_partition_end_is_measured() -> None:
    assert not cohort_backlog_read(end=None, applied=500, committed=600)


def test_cohort_inputs_a_killed_worker_delivered_hold_the_backlog_until_applied() -> None:
    # The killed worker's collector had committed 100 and applied nothing after it; the topic ends at 140.
    assert not cohort_backlog_read(end=140, applied=-1, committed=100)
    assert not cohort_backlog_read(end=140, applied=120, committed=100)
    assert cohort_backlog_read(end=140, applied=139, committed=100)


def test_a_cohort_partition_with_nothing_left_to_read_counts_as_read() -> None:
    assert cohort_backlog_read(end=140, applied=-1, committed=140)
    assert cohort_backlog_read(end=0, applied=-1, committed=None)  # an empty topic


def test_a_commit_past_the_measured_end_means_the_backlog_was_applied() -> None:
    # Records are acknowledged (and so committed) only after the collector put them in the table.
    assert cohort_backlog_read(end=140, applied=-1, committed=150)


def test_the_portfolio_front_waits_for_the_backlog_and_for_this_workers_own_cohort_inputs() -> None:
    assert portfolio_front_may_move(backlog_read=True, in_flight=0, sent=-1, applied=-1)
    assert not portfolio_front_may_move(backlog_read=False, in_flight=0, sent=-1, applied=-1)
    assert not portfolio_front_may_move(backlog_read=True, in_flight=3, sent=10, applied=10)
    assert not portfolio_front_may_move(backlog_read=True, in_flight=0, sent=12, applied=10)
    assert portfolio_front_may_move(backlog_read=True, in_flight=0, sent=12, applied=13)


# ADR 0025: the portfolio front over every usage partition, whichever worker owns it.
JAN_31 = 1_706_659_200.0  # 2024-01-31T00:00:00Z
DAY = 86_400.0


def test_the_portfolio_front_is_the_lowest_usage_partition_whoever_owns_it() -> None:
    own = {0: JAN_31 + 40 * DAY, 1: JAN_31 + 41 * DAY}  # this worker ran well into March
    reported = {2: JAN_31 + 2 * DAY, 3: JAN_31 + 45 * DAY}  # another worker's partition 2 is still in January
    assert portfolio_front_of(usage_fronts_of(4, own, reported)) == JAN_31 + 2 * DAY


def test_no_month_is_final_while_a_usage_partition_has_not_reported() -> None:
    own = {0: JAN_31 + 40 * DAY, 1: JAN_31 + 41 * DAY}
    fronts = usage_fronts_of(4, own, {2: JAN_31 + 40 * DAY})
    assert fronts[3] is None and portfolio_front_of(fronts) == 0.0
    assert portfolio_front_of(usage_fronts_of(4, {}, {})) == 0.0


def test_a_partitions_own_front_and_its_reported_front_count_the_higher() -> None:
    # Just moved here: this worker's first tick is behind what the previous owner had reported.
    fronts = usage_fronts_of(2, {0: JAN_31, 1: JAN_31 + 9 * DAY}, {0: JAN_31 + 5 * DAY})
    assert fronts == [JAN_31 + 5 * DAY, JAN_31 + 9 * DAY] and portfolio_front_of(fronts) == JAN_31 + 5 * DAY


def test_one_worker_owning_every_partition_needs_no_reports() -> None:
    assert portfolio_front_of(usage_fronts_of(2, {0: JAN_31 + DAY, 1: JAN_31}, {})) == JAN_31


def test_reported_fronts_merge_to_the_highest_per_partition_in_any_order() -> None:
    a = encode_usage_fronts({0: JAN_31 + 3 * DAY, 1: JAN_31})
    b = encode_usage_fronts({1: JAN_31 + 2 * DAY, 2: JAN_31 + DAY})
    older_a = encode_usage_fronts({0: JAN_31})  # the partition's previous owner, arriving late
    expected = {0: JAN_31 + 3 * DAY, 1: JAN_31 + 2 * DAY, 2: JAN_31 + DAY}
    assert decode_usage_fronts(merge_usage_fronts(merge_usage_fronts(a, b), older_a)) == expected
    assert decode_usage_fronts(merge_usage_fronts(merge_usage_fronts(older_a, b), a)) == expected
    assert decode_usage_fronts(merge_usage_fronts(None, b)) == decode_usage_fronts(b)


def test_the_usage_fronts_key_can_never_be_an_account_id() -> None:
    try:
        USAGE_FRONTS_KEY.decode("utf-8")
    except UnicodeDecodeError:
        return
    raise AssertionError("an account id's UTF-8 bytes could equal the usage-fronts key")
