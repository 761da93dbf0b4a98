"""Property tests: whatever bytes or JSON arrive, decoding ends in events, a skip or a dead letter."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.ingest.decode import decode_canonical, decode_for_topic
from streams.ingest.outcome import Decoded, Skipped

from .helpers import canonical, envelope, segment_message, stripe_fixture, subscription

KINDS = ("canonical", "cloudevents", "stripe", "segment")
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "type",
        "event_id",
        "account_id",
        "occurred_at",
        "score",
        "amount",
        "count",
        "feature",
        "user_id",
        "traits",
        "specversion",
        "id",
        "source",
        "time",
        "subject",
        "data",
        "messageId",
        "groupId",
        "context",
        "properties",
        "event",
        "timestamp",
        "created",
        "customer",
        "status",
        "items",
        "previous_attributes",
    ]
)
patches = st.dictionaries(field_names, json_values, max_size=4)


def assert_well_formed(result: Decoded | list[Decoded] | Skipped) -> None:
    if isinstance(result, Skipped):
        assert result.detail
        return
    results = result if isinstance(result, list) else [result]
    assert results, "a decode result is never an empty list"
    for decoded in results:
        assert (decoded.event is None) != (decoded.dead_letter is None)
        if decoded.dead_letter is not None:
            assert "\n" not in decoded.dead_letter.message
    if len(results) > 1:
        assert all(d.event is not None for d in results), "several outputs are always all events"


def decode_everywhere(raw: bytes) -> None:
    assert_well_formed(decode_canonical(raw, topic="t"))
    for kind in KINDS:
        assert_well_formed(decode_for_topic(raw, kind, topic="t"))  # type: ignore[arg-type]


@SETTINGS
@given(st.binary(max_size=512))
def test_any_byte_string_decodes_to_events_a_skip_or_a_dead_letter(raw: bytes) -> None:
    decode_everywhere(raw)


@SETTINGS
@given(json_values)
def test_any_json_value_decodes_to_events_a_skip_or_a_dead_letter(value: Any) -> None:
    decode_everywhere(orjson.dumps(value))


@SETTINGS
@given(patches)
def test_a_valid_canonical_event_with_any_fields_overwritten_never_raises(patch: dict[str, Any]) -> None:
    decode_everywhere(orjson.dumps({**canonical(), **patch}))


@SETTINGS
@given(patches, patches)
def test_a_stripe_envelope_with_any_fields_overwritten_never_raises(
    top: dict[str, Any], obj: dict[str, Any]
) -> None:
    for base in (
        envelope("customer.subscription.updated", subscription(), {"status": "trialing"}),
        stripe_fixture("invoice.payment_failed.json"),
    ):
        base["data"]["object"].update(obj)
        base.update(top)
        assert_well_formed(decode_for_topic(orjson.dumps(base), "stripe", topic="stripe-events"))


@SETTINGS
@given(patches)
def test_a_segment_message_with_any_fields_overwritten_never_raises(patch: dict[str, Any]) -> None:
    for call in ("track", "group"):
        raw = orjson.dumps({**segment_message(call=call, groupId="g"), **patch})
        assert_well_formed(decode_for_topic(raw, "segment", topic="segment-events"))
