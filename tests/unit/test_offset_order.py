"""The input-order guard applies each partition's records once, in offset order, whatever Faust delivers."""

from __future__ import annotations

import random

from streams.offset_order import InputOrder, Verdict, verdict

TP = ("churnwatch.usage", 0)


def started_at(offset: int) -> InputOrder[tuple[str, int]]:
    order: InputOrder[tuple[str, int]] = InputOrder(patience_s=2.0)
    order.start(TP, offset)
    return order


def test_the_next_offset_is_applied_and_moves_the_partition_on() -> None:
    order = started_at(300)
    assert order.judge(TP, 300, now=0.0) is Verdict.APPLY
    assert order.expected(TP) == 301


def test_an_offset_below_the_next_one_was_seen_and_does_not_move_the_partition() -> None:
    order = started_at(300)
    assert order.judge(TP, 299, now=0.0) is Verdict.SEEN
    assert order.expected(TP) == 300


def test_an_offset_past_a_gap_is_ahead_and_is_not_applied() -> None:
    order = started_at(300)
    assert order.judge(TP, 350, now=0.0) is Verdict.AHEAD
    assert order.expected(TP) == 300


def test_records_ahead_wait_quietly_while_a_rewind_is_under_way() -> None:
    order = started_at(300)
    order.rewound(TP, now=10.0)
    assert order.judge(TP, 351, now=11.0) is Verdict.WAIT


def test_a_record_still_ahead_after_the_patience_asks_for_a_new_rewind() -> None:
    order = started_at(300)
    order.rewound(TP, now=10.0)
    assert order.judge(TP, 351, now=12.5) is Verdict.AHEAD


def test_the_re_read_ends_the_wait() -> None:
    order = started_at(300)
    order.rewound(TP, now=10.0)
    assert order.judge(TP, 300, now=10.1) is Verdict.APPLY
    assert order.partitions[TP].rewound_at is None


def test_offsets_that_hold_no_record_are_stepped_over() -> None:
    order = started_at(300)  # 300 is a transaction marker: the first record at or after it is 301
    order.skip_absent(TP, 301)
    assert order.judge(TP, 301, now=0.0) is Verdict.APPLY


def test_a_probe_answer_below_the_next_offset_changes_nothing() -> None:
    order = started_at(300)
    order.skip_absent(TP, 200)
    assert order.expected(TP) == 300


def test_a_partition_not_started_waits_for_its_committed_offset() -> None:
    order: InputOrder[tuple[str, int]] = InputOrder()
    assert order.judge(TP, 5, now=0.0) is Verdict.WAIT


def test_a_reset_forgets_every_partition_and_tolerates_late_calls() -> None:
    order = started_at(300)
    order.reset()
    order.rewound(TP, now=1.0)  # a rewind that finished after the rebalance: no error, nothing recorded
    order.skip_absent(TP, 400)
    assert not order.knows(TP)


def test_the_plain_verdict_compares_against_the_next_offset() -> None:
    assert [verdict(5, o) for o in (4, 5, 6)] == [Verdict.SEEN, Verdict.APPLY, Verdict.AHEAD]


def test_whatever_order_faust_delivers_in_every_offset_is_applied_once_and_in_order() -> None:
    """A model of the rebalance failure modes of ADR 0007: the delivery cursor drops records (flow suspended),
    jumps ahead (stale fetches), repeats old ones (redelivery); a rewind moves the cursor back to `expected`."""
    for seed in range(200):
        rng = random.Random(seed)
        size, start = 400, rng.randrange(0, 50)
        order = started_at(start)
        cursor, clock, applied = start, 0.0, []
        for _ in range(20_000):
            if len(applied) == size - start:
                break
            clock += rng.choice((0.01, 0.5))
            roll = rng.random()
            if roll < 0.05:
                cursor += rng.randrange(1, 30)  # records skipped or a stale fetch from further on
            elif roll < 0.08:
                cursor = max(0, cursor - rng.randrange(1, 30))  # redelivery of older records
            offset = min(cursor, size - 1)
            cursor += 1
            v = order.judge(TP, offset, clock)
            if v is Verdict.APPLY:
                applied.append(offset)
            elif v is Verdict.AHEAD:
                order.rewound(TP, clock)
                cursor = order.expected(TP)  # the seek
        assert applied == list(range(start, size)), f"seed {seed}"



class Rec:
    """What the agent hands the guard: a Faust message's partition and offset."""

    def __init__(self, tp: tuple[str, int], offset: int) -> None:
        self.tp = tp
        self.offset = offset


def test_a_run_of_next_records_is_accepted_at_once_and_stops_before_the_first_other() -> None:
    other = ("churnwatch.usage", 1)
    order = started_at(10)
    order.start(other, 5)
    batch = [Rec(TP, 10), Rec(other, 5), Rec(TP, 11), Rec(TP, 9), Rec(TP, 12)]
    accepted: list[tuple[object, Verdict]] = []
    assert order.accept_run(batch, 0, accepted) == 3  # the seen offset 9 stops it
    assert accepted == [(batch[0], Verdict.APPLY), (batch[1], Verdict.APPLY), (batch[2], Verdict.APPLY)]
    assert (order.expected(TP), order.expected(other)) == (12, 6)
    assert order.accept_run(batch, 4, accepted) == 5 and accepted[-1] == (batch[4], Verdict.APPLY)


def test_a_run_stops_at_a_partition_not_started_and_at_a_gap_changing_nothing() -> None:
    order = started_at(10)
    accepted: list[tuple[object, Verdict]] = []
    assert order.accept_run([Rec(("churnwatch.billing", 0), 0)], 0, accepted) == 0
    assert order.accept_run([Rec(TP, 12)], 0, accepted) == 0
    assert accepted == [] and order.expected(TP) == 10


def test_runs_with_one_by_one_judging_in_between_give_what_judging_every_record_gives() -> None:
    """The agent's loop (accept_run, then `judge` for the record it stopped at) against `judge` alone."""
    parts = [("churnwatch.usage", p) for p in range(3)]
    for seed in range(100):
        rng = random.Random(seed)
        batch = [Rec(rng.choice(parts), rng.randrange(0, 40)) for _ in range(300)]
        # Mostly in order: each partition's next offsets, with repeats, gaps and an unstarted partition mixed in.
        nxt = {tp: 0 for tp in parts}
        for rec in batch:
            if rng.random() < 0.8:
                rec.offset = nxt[rec.tp]
                nxt[rec.tp] += 1
        one: InputOrder[tuple[str, int]] = InputOrder(patience_s=2.0)
        both: InputOrder[tuple[str, int]] = InputOrder(patience_s=2.0)
        for order in (one, both):
            order.start(parts[0], 0)
            order.start(parts[1], 0)  # parts[2] never started: WAIT
        judged = [(rec, one.judge(rec.tp, rec.offset, 0.0)) for rec in batch]
        accepted: list[tuple[object, Verdict]] = []
        i = 0
        while (i := both.accept_run(batch, i, accepted)) < len(batch):
            accepted.append((batch[i], both.judge(batch[i].tp, batch[i].offset, 0.0)))
            i += 1
        assert accepted == judged, f"seed {seed}"
        assert {tp: o.expected for tp, o in one.partitions.items()} == {
            tp: o.expected for tp, o in both.partitions.items()}
