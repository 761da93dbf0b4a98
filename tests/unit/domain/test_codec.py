"""State codec: exact round trip, deterministic bytes, size budgets, and the JSON read model."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import struct
import zlib
from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from streams.domain.account import AccountState, advance, apply_event, new_account
from streams.domain.codec import FORMAT_VERSION, decode_state, encode_state, to_read_model
from streams.domain.config import DomainConfig
from tests.unit.domain import factories
from tests.unit.domain.factories import (
    PROFILE_END,
    busy_account,
    busy_events,
    event,
    feature,
    session,
    state_of,
    typical_account,
)

# Budgets from docs/state.md: a typical account stays within 1 KiB, a busy one under 2000 bytes.
TYPICAL_BUDGET = 1024
BUSY_BUDGET = 2000


def d(month: int, day: int, hour: int = 9) -> datetime:
    return datetime(2024, month, day, hour, tzinfo=UTC)


def everything_set() -> AccountState:
    """An account that touches every field: trial, conversion, dunning, cancel, traits, roles, offsets."""
    config = DomainConfig()
    state = new_account("acct_ü_éxotic")
    evs = [
        event("trial.started", d(1, 1), plan="pro", trial_ends_at=d(1, 15)),
        event("trial.converted", d(1, 15), plan="pro", mrr=9_900, billing_interval="year", renews_at=d(12, 31)),
        event("subscription.changed", d(1, 20), plan="team", seats=12, mrr=19_900, previous_mrr=9_900),
        event("payment.failed", d(1, 21), amount=19_900, attempt=3),
        event("subscription.cancel_scheduled", d(1, 22), cancel_at=d(2, 28), reason="too expensive"),
        event("account.traits", d(1, 22), traits={"region": "emea", "tier": "gold"}),
        event("user.added", d(1, 22), user_id="boss", role="owner"),
        event("user.removed", d(1, 23), user_id="intern", role="member"),
        event("nps.responded", d(1, 23), user_id="boss", score=2),
        event("ticket.opened", d(1, 23), ticket_id="T-1", priority="urgent"),
        event("ticket.closed", d(1, 24), ticket_id="T-0"),
        event("usage_limit.reached", d(1, 24), limit="seats", used=12, quota=12),
        event("api.called", d(1, 24), count=10**9),
        feature(d(1, 24), "reports", None, count=3),
        session(d(1, 24), "boss"),
    ]
    for offset, ev in enumerate(evs):
        apply_event(state, ev, config, source="billing-events" if offset < 5 else "usage-events", offset=offset)
    return state


# One state of each kind, every field among them, built afresh (the factories' event ids come from a module counter
# and their event lists are cached per process: a state built through them depends on which test ran first).
FRESH_STATES = {
    "new": lambda: new_account("a"),
    "everything": everything_set,
    "typical": lambda: state_of(factories.typical_events.__wrapped__()),
    "busy": lambda: state_of(factories.busy_events.__wrapped__(False)),
    "dense": lambda: state_of(factories.busy_events.__wrapped__(True)),
}


@pytest.mark.parametrize("name", sorted(FRESH_STATES))
def test_encode_then_decode_gives_back_an_equal_state_and_the_same_bytes(name: str) -> None:
    state = FRESH_STATES[name]()
    data = encode_state(state)
    back = decode_state(data)
    assert back == state
    assert back.seen_fps == state.seen_fps
    assert encode_state(back) == data


# sha256 of the version byte and the uncompressed payload of each state, as format version 1 has always written them
# (zlib's own bytes may differ between zlib versions, the payload may not). A change here is a new format: bump
# FORMAT_VERSION and keep a decoder for this one.
FORMAT_1_PAYLOADS = {
    "new": "dce406cefe70ea18ad57a9e70179e63795107361bc5644e167bb4e7edb8292d7",
    "everything": "c6ea492b00fda3ba4581b0bc46c3528680f96de5f6428429d370f8503957e397",
    "typical": "de00bef95f13147a51fd148e140d5c3e43236a8838a0085b173057e9fe30a16b",
    "busy": "e29f5e1a2d95fb5ca44a7fdb80c41e23cd778ecb21d5fd120c3855f347fd3d80",
    "dense": "7b85f82a922cb5dd0760a495566fabe9b4522ea7e3249e94d91028bf818b2278",
}


def format_1_payload_hash(name: str) -> str:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(factories, "_ids", itertools.count(1))  # event ids as in a fresh process
        data = encode_state(FRESH_STATES[name]())
    payload = zlib.decompress(data[2:]) if data[1] & 1 else data[2:]
    return hashlib.sha256(data[:1] + payload).hexdigest()


@pytest.mark.parametrize("name", sorted(FORMAT_1_PAYLOADS))
def test_the_encoder_writes_format_1_byte_for_byte(name: str) -> None:
    assert format_1_payload_hash(name) == FORMAT_1_PAYLOADS[name]


def test_times_beyond_the_int32_range_round_trip() -> None:
    state = state_of([event("subscription.started", d(1, 1), plan="pro", mrr=100)])
    state.renews_at_s = int(datetime(2099, 12, 31, tzinfo=UTC).timestamp())
    state.trial_started_at_s = 0  # 54 years before the newest event: beyond ±2^31 s together with the above
    assert decode_state(encode_state(state)) == state


def test_a_late_event_after_advance_lands_past_the_detail_range_and_still_round_trips() -> None:
    config = DomainConfig()
    state = state_of([session(d(3, 1), "ana")])
    advance(state, d(5, 5), config)  # 65 days on, without events
    # still within 7 days of the newest event (Mar 1): accepted, but its day is past the 60-day detail range
    for ev in (feature(d(2, 27), "reports", "ben", count=7), event("api.called", d(2, 27, 10), count=50)):
        assert apply_event(state, ev, config).outcome == "processed"
    assert state.engagement.days[state.clock_day - 68][1:3] == [1, 0]
    assert decode_state(encode_state(state)) == state


def test_the_first_byte_is_the_format_version_and_unknown_versions_are_refused() -> None:
    data = encode_state(typical_account())
    assert data[0] == FORMAT_VERSION == 1
    with pytest.raises(ValueError):
        decode_state(bytes([99]) + data[1:])


def test_a_state_cut_short_is_refused_rather_than_decoded_with_missing_values() -> None:
    data = encode_state(typical_account())
    assert data[1] == 0, "uncompressed: the cut falls in the columns themselves"
    for cut in (1, 2, 5, len(data) // 2):
        with pytest.raises((ValueError, IndexError, struct.error)):  # a column's bytes, or its width byte, missing
            decode_state(data[:-cut])


def test_equal_states_encode_to_equal_bytes_whatever_the_insertion_order() -> None:
    state = typical_account()
    shuffled = decode_state(encode_state(state))
    for table in (shuffled.engagement.users, shuffled.engagement.features, shuffled.engagement.days):
        items = list(table.items())
        table.clear()
        table.update(reversed(items))
    assert encode_state(shuffled) == encode_state(state)


def test_a_decoded_state_keeps_working_like_the_original() -> None:
    config = DomainConfig()
    original = busy_account()
    copy = decode_state(encode_state(original))
    extra = [feature(datetime(2024, 6, 30, 23, tzinfo=UTC), "feature_07", "user_03"), busy_events()[-1]]
    for ev in extra:
        assert apply_event(original, ev, config).outcome == apply_event(copy, ev, config).outcome
    assert encode_state(copy) == encode_state(original)


def test_a_typical_account_fits_in_one_kibibyte() -> None:
    assert len(encode_state(typical_account())) <= TYPICAL_BUDGET


def test_a_busy_account_stays_under_2000_bytes() -> None:
    assert len(encode_state(busy_account())) < BUSY_BUDGET
    assert len(encode_state(busy_account(dense=True))) < BUSY_BUDGET


def test_state_size_stays_bounded_as_time_passes() -> None:
    state = busy_account()
    advance(state, datetime(2024, 9, 30, tzinfo=UTC), DomainConfig())
    assert len(encode_state(state)) < 700  # buckets, users and features expired; ring, traits, roles remain


def test_the_read_model_is_json_with_the_documented_fields() -> None:
    state = everything_set()
    model = to_read_model(state)
    assert orjson.loads(orjson.dumps(model)) == model
    assert set(model) >= {"account_id", "score", "components", "trend", "stage", "status", "plan", "seats", "mrr",
                          "currency", "cohort", "last_activity", "engagement", "open_alerts"}
    assert model["open_alerts"] == []
    assert (model["status"], model["plan"], model["mrr"], model["cohort"]) == ("past_due", "team", 19_900, "2024-01")
    assert model["cancel_at"] == "2024-02-28T09:00:00Z"
    assert set(model["engagement"]) >= {"last7", "prev7", "last30", "prev30", "last90"}
    assert model["engagement"]["last7"]["api_calls"] == 10**9
    assert model["as_of"] == "2024-01-24"


def test_the_read_model_at_a_later_day_recomputes_windows_and_stage() -> None:
    state = typical_account()
    later = to_read_model(state, as_of=date(2024, 8, 31))
    assert later["as_of"] == "2024-08-31"
    assert later["engagement"]["last30"]["active_days"] == 0
    assert later["score"] < to_read_model(state, as_of=PROFILE_END)["score"]


def test_the_time_registers_the_encoder_reads_are_the_format_s_fields_in_their_order() -> None:
    """`_times_of` reads the registers directly for speed; the decoder sets them by the names in `_TIME_FIELDS`."""
    from streams.domain.codec import _ENG_TIMES, _TIME_FIELDS, _times_of

    state = everything_set()
    by_name = tuple(getattr(state.engagement if n in _ENG_TIMES else state, n) for n in _TIME_FIELDS)
    assert _times_of(state) == by_name and sum(t is not None for t in by_name) >= 10


def codec_with_struct_columns() -> ModuleType:
    """codec.py run as plain Python with `array` off: the column path of a big-endian machine, which these
    (little-endian) machines never take otherwise."""
    source = Path(__file__).resolve().parents[3] / "streams" / "domain" / "codec.py"
    spec = importlib.util.spec_from_file_location("codec_struct_columns", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module._ARRAY = False
    return module


def test_a_machine_without_little_endian_arrays_writes_and_reads_the_same_bytes() -> None:
    plain = codec_with_struct_columns()
    wide = state_of([event("subscription.started", d(1, 1), plan="pro", mrr=100)])
    wide.renews_at_s, wide.trial_started_at_s = int(datetime(2099, 12, 31, tzinfo=UTC).timestamp()), 0
    for state in [make() for make in FRESH_STATES.values()] + [wide]:
        data = encode_state(state)
        assert plain.encode_state(state) == data
        assert plain.decode_state(data) == decode_state(data) == state
    cut = encode_state(typical_account())[:-5]
    with pytest.raises(ValueError, match="truncated"):
        plain.decode_state(cut)
