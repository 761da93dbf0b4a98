"""Usage waits for the billing partition of its number; across batches the alerts equal the time-ordered run."""

from __future__ import annotations

import orjson

from streams.alignment import UsageGate, align, billing_read_to_end
from streams.domain.aggregate import AccountAggregate, Rules
from streams.domain.config import DomainConfig
from streams.processing import InputRecord, apply_decoded, decode_records, process_batch
from tests.unit.test_processing import BILLING, USAGE, paying_team_that_schedules_a_cancellation

CONFIG = DomainConfig()
RULES = Rules.load(None, CONFIG)
T0 = 1_767_600_000.0  # an event time, epoch seconds


def waiting_gate(**kw: float) -> UsageGate[str]:
    return UsageGate(**kw)  # type: ignore[arg-type]


def test_usage_dated_at_or_before_the_billing_read_passes() -> None:
    gate = waiting_gate()
    gate.saw_billing(0, T0)
    admitted = gate.admit(0, [(T0 - 1, "u1"), (T0, "u2")], billing_caught_up=False, now=0)
    assert admitted.now == ["u1", "u2"] and not admitted.deferred and gate.count() == 0


def test_usage_past_the_billing_read_waits_until_billing_reaches_it() -> None:
    gate = waiting_gate()
    gate.saw_billing(0, T0)
    first = gate.admit(0, [(T0 + 10, "u1"), (T0 + 20, "u2")], billing_caught_up=False, now=0)
    assert first.now == [] and first.deferred == ["u1", "u2"]
    gate.saw_billing(0, T0 + 15)
    second = gate.admit(0, [], billing_caught_up=False, now=1)
    assert second.released == ["u1"] and gate.count() == 1


def test_a_billing_partition_read_to_its_high_watermark_lets_all_usage_pass() -> None:
    gate = waiting_gate()
    gate.admit(0, [(T0, "u1")], billing_caught_up=False, now=0)  # nothing of billing read yet: waits
    admitted = gate.admit(0, [(T0 + 86400, "u2")], billing_caught_up=True, now=1)
    assert admitted.released == ["u1"] and admitted.now == ["u2"]


def test_a_record_behind_a_waiting_one_waits_too_so_the_partition_keeps_its_order() -> None:
    gate = waiting_gate()
    gate.saw_billing(0, T0)
    gate.admit(0, [(T0 + 10, "late-dated")], billing_caught_up=False, now=0)
    admitted = gate.admit(0, [(T0 - 5, "early-dated")], billing_caught_up=False, now=1)
    assert admitted.now == [] and admitted.deferred == ["early-dated"]


def test_partitions_wait_independently() -> None:
    gate = waiting_gate()
    gate.saw_billing(1, T0 + 100)
    assert gate.admit(0, [(T0, "p0")], billing_caught_up=False, now=0).deferred == ["p0"]
    assert gate.admit(1, [(T0, "p1")], billing_caught_up=False, now=0).now == ["p1"]


def test_usage_that_waited_past_the_time_limit_is_applied_and_counted_as_forced() -> None:
    gate = waiting_gate(max_wait_s=30)
    gate.admit(0, [(T0, "u1")], billing_caught_up=False, now=0)
    assert gate.admit(0, [], billing_caught_up=False, now=29).released == []
    forced = gate.admit(0, [(T0 + 1, "u2")], billing_caught_up=False, now=30)
    assert forced.released == ["u1"] and forced.now == ["u2"] and forced.forced == 1


def test_too_many_waiting_records_are_applied_and_counted_as_forced() -> None:
    gate = waiting_gate(max_waiting=3)
    gate.admit(0, [(T0, "a"), (T0, "b"), (T0, "c")], billing_caught_up=False, now=0)
    forced = gate.admit(0, [], billing_caught_up=False, now=1)
    assert forced.released == ["a", "b", "c"] and forced.forced == 3


def test_a_rebalance_forgets_waiting_records_and_what_was_read_of_billing() -> None:
    gate = waiting_gate()
    gate.saw_billing(0, T0)
    gate.admit(0, [(T0 + 1, "u1")], billing_caught_up=False, now=0)
    assert gate.forget() == ["u1"]
    assert gate.count() == 0 and gate.bound(0, billing_caught_up=False) == float("-inf")


def test_billing_applied_to_the_high_watermark_of_a_fetch_as_recent_as_usages_is_read_to_its_end() -> None:
    assert billing_read_to_end(next_offset=12, high=12, billing_fetched_ms=5_000, usage_fetched_ms=5_000)
    assert billing_read_to_end(next_offset=12, high=12, billing_fetched_ms=5_010, usage_fetched_ms=5_000)


def test_billing_with_records_below_its_high_watermark_not_applied_is_not_read_to_its_end() -> None:
    assert not billing_read_to_end(next_offset=11, high=12, billing_fetched_ms=5_000, usage_fetched_ms=5_000)
    assert not billing_read_to_end(next_offset=0, high=None, billing_fetched_ms=None, usage_fetched_ms=5_000)


def test_a_billing_high_watermark_older_than_usages_last_fetch_does_not_count_as_read_to_the_end() -> None:
    # Billing p's records of fetch 1 were still buffered (or its answer failed) when fetch 2 brought usage p:
    # billing written between the two is not in the old high watermark, and the usage may be dated after it.
    assert not billing_read_to_end(next_offset=12, high=12, billing_fetched_ms=4_990, usage_fetched_ms=5_000)
    assert not billing_read_to_end(next_offset=12, high=12, billing_fetched_ms=None, usage_fetched_ms=5_000)


def test_with_no_usage_fetched_yet_billing_at_its_high_watermark_is_read_to_its_end() -> None:
    assert billing_read_to_end(next_offset=3, high=3, billing_fetched_ms=5_000, usage_fetched_ms=None)


# --- across batches, through decode -> gate -> domain, as the agent runs it -----------------------------------

def alerts_over_batches(batches: list[list[InputRecord]], *, gated: bool) -> list[tuple[str, str, str]]:
    """Each batch applied as the worker does; billing counts as caught up once all of it has been read."""
    store: dict[str, AccountAggregate] = {}
    gate: UsageGate[tuple[object, int]] = UsageGate()
    billing_total = sum(1 for b in batches for r in b if r.topic == BILLING)
    billing_read = 0
    out = []
    for n, batch in enumerate(batches):
        items = decode_records(batch, 65536)
        billing_read += sum(1 for r in batch if r.topic == BILLING)
        if gated:
            caught_up = billing_read == billing_total
            ready = align(gate, [(i, n) for i in items], USAGE, BILLING, lambda _p, c=caught_up: c,
                          now=float(n)).ready
        else:
            ready = items
        result = apply_decoded(ready, store.get, CONFIG, max_event_bytes=65536, rules=RULES)
        store.update(result.states)
        out += [(a.trigger, a.transition, a.occurred_at.isoformat()) for a in result.alerts]
    return out


def test_billing_read_a_batch_behind_usage_gives_the_time_ordered_alerts() -> None:
    billing, usage = paying_team_that_schedules_a_cancellation()
    in_time_order = process_batch(sorted(billing + usage, key=lambda r: orjson.loads(r.value)["occurred_at"]),
                                  lambda _: None, CONFIG, max_event_bytes=65536, rules=RULES)
    expected = [(a.trigger, a.transition, a.occurred_at.isoformat()) for a in in_time_order.alerts]
    usage_first = [billing[:1] + usage, billing[1:]]  # after a restart: usage fetched, the cancellation not yet
    assert alerts_over_batches(usage_first, gated=True) == expected
    # Without the gate the usage closes the day ends first and the alert is stamped at a later day end.
    assert alerts_over_batches(usage_first, gated=False) != expected
