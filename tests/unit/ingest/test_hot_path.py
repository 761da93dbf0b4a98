"""The decoder's pydantic-free path for plain session.started / feature.used events (ADR 0021) gives exactly what
pydantic gives, or declines and leaves the event to pydantic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.events import FeatureUsed, SessionStarted, canonical_event_adapter
from streams.domain.aggregate import Rules, encode_aggregate
from streams.domain.config import DomainConfig
from streams.domain.hot_events import HotFeatureUsed, HotSessionStarted
from streams.ingest.decode import decode_canonical, decode_hot
from streams.processing import InputRecord, process_batch

from .helpers import canonical

SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def session_started(**overrides: Any) -> dict[str, Any]:
    """A valid session.started event with overrides (`...` removes a field); feature.used is helpers.canonical."""
    fields: dict[str, Any] = {"type": "session.started", "feature": ..., "count": ..., "source": ...,
                              "occurred_at": "2026-03-02T09:31:00Z"}
    return canonical(**{**fields, **overrides})


def assert_same_as_pydantic(raw: bytes) -> None:
    """decode_hot either declines or gives every field pydantic gives, with the same value, type and timezone."""
    hot = decode_hot(raw)
    try:
        model = canonical_event_adapter.validate_json(raw)
    except ValidationError:
        assert hot is None, f"accepted what pydantic refuses: {raw!r}"
        return
    if hot is None:
        return  # declined: pydantic decides it (the decoder falls back to it)
    expected = model.model_dump()
    got = hot.fields()
    assert got == expected
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in expected.items()}
    assert got["occurred_at"].tzinfo is UTC


def test_a_plain_feature_used_event_is_decoded_without_pydantic() -> None:
    decoded = decode_canonical(orjson.dumps(canonical()), topic="usage-events")
    assert isinstance(decoded.event, HotFeatureUsed)
    assert decoded.event.fields() == canonical_event_adapter.validate_python(canonical()).model_dump()


def test_a_plain_session_started_event_is_decoded_without_pydantic() -> None:
    decoded = decode_canonical(orjson.dumps(session_started()), topic="usage-events")
    assert isinstance(decoded.event, HotSessionStarted)
    assert decoded.event.source == "canonical"  # the schema's default
    assert decoded.event.occurred_at == datetime(2026, 3, 2, 9, 31, tzinfo=UTC)


@pytest.mark.parametrize("overrides", [
    {"account_id": " acct-1 "},  # whitespace pydantic strips
    {"count": 2.0},  # a float pydantic takes as an integer
    {"count": "2"},  # a string pydantic takes as an integer
    {"occurred_at": "2026-03-02T09:30:00.1234567Z"},  # more than microseconds: pydantic truncates
    {"occurred_at": 1772443800},  # epoch seconds
    {"user_id": "ü-1"},  # non-ASCII at an end
])
def test_an_event_the_hot_path_declines_still_decodes_through_pydantic(overrides: dict[str, Any]) -> None:
    raw = orjson.dumps(canonical(**overrides))
    assert decode_hot(raw) is None
    decoded = decode_canonical(raw, topic="usage-events")
    assert decoded.dead_letter is None
    assert decoded.event == canonical_event_adapter.validate_json(raw)


@pytest.mark.parametrize("overrides, reason", [
    ({"occurred_at": "1999-12-31T23:59:59Z"}, "invalid_event"),
    ({"occurred_at": "2026-03-02T09:30:00"}, "invalid_event"),  # no timezone
    ({"count": 0}, "invalid_event"),
    ({"feature": "x" * 65}, "invalid_event"),
    ({"account_id": ...}, "missing_account"),
])
def test_an_invalid_usage_event_is_still_a_dead_letter_with_pydantic_s_reason(overrides: dict[str, Any],
                                                                              reason: str) -> None:
    decoded = decode_canonical(orjson.dumps(canonical(**overrides)), topic="usage-events")
    assert decoded.event is None
    assert decoded.dead_letter is not None and decoded.dead_letter.reason == reason


def test_a_hot_event_serialises_to_the_canonical_json_of_its_model() -> None:
    raw = orjson.dumps(canonical())
    hot = decode_hot(raw)
    assert hot is not None
    assert hot.model_dump_json() == canonical_event_adapter.validate_json(raw).model_dump_json()
    assert hot.to_model() == canonical_event_adapter.validate_json(raw)


def test_duplicate_keys_take_the_last_value_as_pydantic_does() -> None:
    raw = orjson.dumps(canonical())[:-1] + b',"feature":"imports"}'
    assert_same_as_pydantic(raw)
    hot = decode_hot(raw)
    assert hot is not None and getattr(hot, "feature", None) == "imports"


# --- property: any mix of plain and unusual field values --------------------------------------------------------

texts = (
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)
    | st.text(max_size=6)  # anything: whitespace, control and non-ASCII characters, empty
    | st.sampled_from(["x" * 64, "x" * 65, "x" * 128, "x" * 129, " a", "a ", "\ta", "a\u00a0", "\u2003a", "a\x1f"])
)
values = texts | st.none() | st.integers(-3, 3) | st.sampled_from([2.0, True, 10**9, 10**9 + 1, "2", [], {}])
times = st.sampled_from([
    "2026-03-02T09:30:00Z", "2026-03-02T09:30:00.5Z", "2026-03-02T09:30:00.123456Z", "2026-03-02T09:30:00.1234567Z",
    "2026-03-02T09:30:00+05:30", "2026-03-02T09:30:00-00:00", "2026-03-02T09:30:00+23:59", "2026-03-02T09:30:00+24:00",
    "2026-03-02T09:30:00+05", "2026-W09-1T09:30:00Z", "2026-03-02 09:30:00Z", "2026-03-02T09:30Z",
    "2026-03-02T09:30:00z", "2026-03-02T09:30:00", "2026-13-02T09:30:00Z", "2026-02-30T09:30:00Z",
    "2026-03-02T24:00:00Z", "2026-03-02T23:59:60Z", "1999-12-31T23:59:59Z", "2000-01-01T00:00:00Z",
    "2099-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "2099-12-31T23:00:00-02:00", "2000-01-01T01:00:00+02:00",
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "2026-03-02T09:30:00.000000Z",
]) | st.integers(0, 5_000_000_000) | values
fields = {
    "type": st.sampled_from(["feature.used", "session.started", "feature.used", "session.started", "user.added",
                             "Feature.used", None]),
    "event_id": texts | values, "account_id": texts | values, "occurred_at": times, "source": texts | values,
    "user_id": texts | values, "feature": texts | values, "count": st.integers(-1, 10**9 + 1) | values,
    "schema_version": st.sampled_from([1, 1, 2, "1", True, 1.0, None]), "extra": values,
}


plain = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)
offsets = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)),
                           timezone(timedelta(hours=-23, minutes=-59))])
instants = st.builds(lambda dt, tz, micro: dt.replace(tzinfo=tz, microsecond=micro if micro >= 0 else 0),
                     st.datetimes(min_value=datetime(1999, 12, 30), max_value=datetime(2100, 1, 2)), offsets,
                     st.sampled_from([-1, 0, 1, 500_000, 123_456, 999_999]))
iso_times = st.builds(lambda dt, zulu: dt.isoformat().replace("+00:00", "Z" if zulu else "+00:00"), instants,
                      st.booleans())


@st.composite
def usage_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A plain event of a hot type with random ids and time, then up to three fields changed or removed."""
    etype = draw(st.sampled_from(["feature.used", "session.started"]))
    obj = canonical() if etype == "feature.used" else session_started()
    obj.update(event_id=draw(plain), account_id=draw(plain), user_id=draw(plain), occurred_at=draw(iso_times))
    if etype == "feature.used":
        obj.update(feature=draw(plain), count=draw(st.integers(1, 10**9)))
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True)):
        if draw(st.integers(0, 4)):
            obj[name] = draw(fields[name])
        else:
            obj.pop(name, None)
    return obj


@SETTINGS
@given(usage_objects())
def test_the_hot_path_agrees_with_pydantic_on_any_usage_object(obj: dict[str, Any]) -> None:
    assert_same_as_pydantic(orjson.dumps(obj))


@SETTINGS
@given(usage_objects())
def test_a_plain_version_of_any_valid_event_takes_the_hot_path(obj: dict[str, Any]) -> None:
    """What pydantic accepts, re-serialised as pydantic writes it, is plain whenever its strings have nothing to
    strip: the hot path is not declining ordinary events."""
    try:
        model = canonical_event_adapter.validate_json(orjson.dumps(obj))
    except ValidationError:
        return
    if model.type not in ("feature.used", "session.started"):
        return
    strings = [v for v in model.model_dump().values() if isinstance(v, str)]
    if not all(s.isascii() and s.isprintable() and s == s.strip() for s in strings):
        return
    raw = model.model_dump_json().encode()
    hot = decode_hot(raw)
    assert hot is not None, raw
    assert hot.fields() == model.model_dump()


# --- the domain: hot events and pydantic models change an account the same way -----------------------------------


def test_a_stream_decoded_through_the_hot_path_gives_the_states_and_alerts_pydantic_models_give() -> None:
    events = [orjson.dumps({"event_id": "s0", "account_id": "acct_1", "occurred_at": "2026-03-01T08:00:00Z",
                            "type": "subscription.started", "plan": "team", "mrr": 9900, "seats": 5})]
    start = datetime(2026, 3, 1, 9, tzinfo=UTC)
    for day in range(1, 40):
        if day % 9 == 0:
            continue  # some silent days: day ends with no activity
        for n in range(3):
            at = (start + timedelta(days=day, hours=n)).isoformat().replace("+00:00", "Z")
            events.append(orjson.dumps(canonical(event_id=f"f{day}-{n}", occurred_at=at, feature=f"f{n}",
                                                    user_id=f"u-{n}")))
            events.append(orjson.dumps(session_started(event_id=f"s{day}-{n}", occurred_at=at, user_id=f"u-{n}")))
    # The same events made unusual in a way pydantic normalises away: every identifier padded with a space.
    padded = [orjson.dumps({k: f" {v} " if isinstance(v, str) and k not in ("type", "occurred_at") else v
                            for k, v in orjson.loads(raw).items()}) for raw in events]
    assert decode_hot(events[1]) is not None and decode_hot(padded[1]) is None
    config = DomainConfig()
    rules = Rules.load(None, config)

    def run(lines: list[bytes]) -> tuple[dict[str, bytes], list[str]]:
        states: dict[str, Any] = {}
        alerts: list[str] = []
        for i in range(0, len(lines), 25):
            batch = [InputRecord(raw, "usage-events", 0, i + j) for j, raw in enumerate(lines[i:i + 25])]
            out = process_batch(batch, states.get, config, max_event_bytes=65536, rules=rules)
            states.update(out.states)
            alerts += [a.model_dump_json() for a in out.alerts]
        return {k: encode_aggregate(v) for k, v in states.items()}, alerts

    assert run(events) == run(padded)


def test_the_hot_classes_have_exactly_the_fields_of_the_schema_models() -> None:
    """A field added to SessionStarted or FeatureUsed must be added to its hot class and to decode_hot (ADR 0021)."""
    assert set(HotSessionStarted.FIELDS) == set(SessionStarted.model_fields)
    assert set(HotFeatureUsed.FIELDS) == set(FeatureUsed.model_fields)
