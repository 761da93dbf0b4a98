"""A batch is applied in event-time order across its partitions, each partition's own order kept."""

from __future__ import annotations

from datetime import timedelta

from streams.domain.aggregate import Rules
from streams.domain.config import DomainConfig
from streams.partitioning import expected_partition
from streams.processing import InputRecord, decode_shard, process_batch
from tests.unit.domain.factories import at, event, session

CONFIG = DomainConfig()
RULES = Rules.load(None, CONFIG)
BILLING, USAGE = "billing-events", "usage-events"


def record(ev, topic: str, offset: int) -> InputRecord:
    return InputRecord(ev.model_dump_json().encode(), topic, 0, offset)


def paying_team_that_schedules_a_cancellation() -> tuple[list[InputRecord], list[InputRecord]]:
    """(billing records, usage records) of one account: daily use for a week, a cancellation on day 2."""
    start = at("2026-01-05T09:00:00Z")
    billing = [
        record(event("subscription.started", start - timedelta(days=1), plan="team", seats=5, mrr=19900), BILLING, 0),
        record(event("subscription.cancel_scheduled", start + timedelta(days=1, hours=12),
                     cancel_at=start + timedelta(days=30)), BILLING, 1),
    ]
    usage = [record(session(start + timedelta(days=d)), USAGE, d) for d in range(7)]
    return billing, usage


def alerts_of(records: list[InputRecord]) -> list[tuple[str, str, str]]:
    out = process_batch(records, lambda _: None, CONFIG, max_event_bytes=65536, rules=RULES)
    return [(a.trigger, a.transition, a.occurred_at.isoformat()) for a in out.alerts]


def test_usage_delivered_ahead_of_billing_in_one_batch_gives_the_time_ordered_alerts() -> None:
    billing, usage = paying_team_that_schedules_a_cancellation()
    in_time_order = sorted(billing + usage, key=lambda r: event_time(r))
    assert alerts_of(usage + billing) == alerts_of(in_time_order)
    assert ("cancellation_scheduled", "opened", "2026-01-06T21:00:00+00:00") in alerts_of(usage + billing)


def test_a_time_ordered_input_applies_nothing_out_of_order() -> None:
    billing, usage = paying_team_that_schedules_a_cancellation()
    out = process_batch(sorted(billing + usage, key=event_time), lambda _: None, CONFIG, max_event_bytes=65536,
                        rules=RULES)
    assert (out.billing_behind_usage, out.usage_behind_billing) == (0, 0)
    assert out.out_of_order() == {}


def test_billing_applied_after_later_usage_of_its_account_is_counted_as_out_of_order() -> None:
    billing, usage = paying_team_that_schedules_a_cancellation()
    store: dict = {}
    counts = []
    for batch in (billing[:1] + usage, billing[1:]):  # the cancellation (day 2) reaches the broker after day 7
        out = process_batch(batch, store.get, CONFIG, max_event_bytes=65536, rules=RULES)
        store.update(out.states)
        counts.append((out.billing_behind_usage, out.usage_behind_billing, out.out_of_order()))
    assert counts == [(0, 0, {}), (1, 0, {"billing": 1})]


def test_usage_applied_after_later_billing_of_its_account_is_counted_as_out_of_order() -> None:
    billing, usage = paying_team_that_schedules_a_cancellation()
    store: dict = {}
    first = process_batch(billing + usage[:3], store.get, CONFIG, max_event_bytes=65536, rules=RULES)
    store.update(first.states)
    # A usage event dated before the applied cancellation (day 2, 21:00), read after it: its partition was behind.
    late = [record(session(at("2026-01-06T20:00:00Z"), user="u9"), USAGE, 99)]
    second = process_batch(late, store.get, CONFIG, max_event_bytes=65536, rules=RULES)
    assert (second.billing_behind_usage, second.usage_behind_billing) == (0, 1)
    assert second.out_of_order() == {"usage": 1}  # the stream label of the late event


def test_a_partition_keeps_its_own_order_even_when_its_events_are_not_in_time_order() -> None:
    late_first = [record(session("2026-01-05T10:00:00Z", event_id="b"), USAGE, 0),
                  record(session("2026-01-05T09:00:00Z", event_id="a"), USAGE, 1)]
    out = process_batch(late_first, lambda _: None, CONFIG, max_event_bytes=65536, rules=RULES)
    # Both offsets are applied (the later offset is not taken for a duplicate of the earlier one).
    assert sum(n for (_, _, outcome), n in out.tally.items() if outcome == "processed") == 2


def event_time(rec: InputRecord) -> str:
    import orjson

    return str(orjson.loads(rec.value)["occurred_at"])


def test_every_record_is_decoded_by_exactly_one_replay_process_in_input_order() -> None:
    events = [session(f"2024-05-01T{2 * n:02d}:00:00Z", account=f"acct_{n % 6}") for n in range(12)]
    raws = [e.model_dump_json().encode() for e in events]
    raws += [b"not json", b'{"type": "session.started", "account_id": "  acct_3 "}',
             b'{"type": "session.started", "account_id": "acct_5"}']  # invalid, but names its account
    records = [InputRecord(raw, USAGE, 0, offset) for offset, raw in enumerate(raws)]
    shards = [decode_shard(records, shard, lambda key: expected_partition(key, 3), 65536) for shard in range(3)]
    offsets = [[item.rec.offset for item in items] for items in shards]
    assert sorted(o for each in offsets for o in each) == list(range(len(raws)))
    assert all(each == sorted(each) for each in offsets)
    for shard, items in enumerate(shards):
        for item in items:
            assert item.decoded is not None
            event = item.decoded.event
            if event is not None:
                assert expected_partition(event.account_id.encode(), 3) == shard
    assert 12 in offsets[0]  # not json: dead-lettered by the first process
    assert 14 in offsets[expected_partition(b"acct_5", 3)]  # invalid, dead-lettered by its account's process
