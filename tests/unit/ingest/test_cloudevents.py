"""CloudEvents 1.0 structured-JSON envelopes on the canonical topics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from schemas.deadletter import DeadLetterReason
from streams.ingest.decode import IngestConfig, decode_canonical, decode_for_topic

from .helpers import canonical


def cloudevent(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "https://app.example.com/usage",
        "type": "com.churnwatch.feature.used",
        "subject": "acct_7",
        "time": "2024-05-01T09:30:00Z",
        "datacontenttype": "application/json",
        "data": {"feature": "exports", "user_id": "u-3", "count": 2},
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not ...}


def decode(obj: dict[str, Any], **kwargs: Any) -> Any:
    return decode_canonical(orjson.dumps(obj), topic="usage-events", **kwargs)


def test_a_cloudevent_maps_id_time_subject_type_source_and_data() -> None:
    event = decode(cloudevent()).event
    assert (event.type, event.event_id, event.account_id) == ("feature.used", "ce-1", "acct_7")
    assert (event.feature, event.user_id, event.count) == ("exports", "u-3", 2)
    assert event.occurred_at == datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    assert event.source == "https://app.example.com/usage"


def test_an_unprefixed_type_is_accepted_too() -> None:
    assert decode(cloudevent(type="feature.used")).event.type == "feature.used"


def test_a_configured_prefix_is_stripped() -> None:
    config = IngestConfig(cloudevents_type_prefixes=("io.acme.",))
    raw = orjson.dumps(cloudevent(type="io.acme.feature.used"))
    [decoded] = decode_for_topic(raw, "canonical", topic="usage-events", config=config)
    assert decoded.event.type == "feature.used"


def test_without_subject_the_account_comes_from_data_account_id() -> None:
    data = {"feature": "exports", "account_id": "acct_data"}
    assert decode(cloudevent(subject=..., data=data)).event.account_id == "acct_data"


def test_without_time_the_occurrence_comes_from_data_occurred_at() -> None:
    data = {"feature": "exports", "occurred_at": "2024-06-01T00:00:00Z"}
    assert decode(cloudevent(time=..., data=data)).event.occurred_at.month == 6


def test_a_long_source_uri_is_cut_to_the_contract_limit() -> None:
    assert len(decode(cloudevent(source="https://example.com/" + "a" * 100)).event.source) == 64


def test_extension_attributes_are_ignored() -> None:
    assert decode(cloudevent(traceparent="00-abc-def-01", partitionkey="acct_7")).event is not None


def test_a_billing_cloudevent_is_decoded_with_its_payload_bounds() -> None:
    obj = cloudevent(
        type="com.churnwatch.payment.failed", data={"amount": 1999, "currency": "EUR", "attempt": 2}
    )
    event = decode(obj).event
    assert (event.type, event.amount, event.attempt) == ("payment.failed", 1999, 2)


@pytest.mark.parametrize("attribute", ["id", "source", "type"])
def test_a_cloudevent_missing_a_required_attribute_is_dead_lettered_naming_it(attribute: str) -> None:
    letter = decode(cloudevent(**{attribute: ...})).dead_letter
    assert letter.reason == DeadLetterReason.INVALID_EVENT
    assert letter.message.startswith(f"cloudevent.{attribute}: required attribute missing")


def test_an_empty_required_attribute_counts_as_missing() -> None:
    assert decode(cloudevent(source="")).dead_letter.message.startswith("cloudevent.source")


def test_another_spec_version_is_an_unsupported_envelope() -> None:
    letter = decode(cloudevent(specversion="0.3")).dead_letter
    assert letter.reason == DeadLetterReason.UNSUPPORTED_ENVELOPE
    assert "specversion" in letter.message


def test_non_json_data_content_is_an_unsupported_envelope() -> None:
    letter = decode(cloudevent(datacontenttype="application/xml", data="<x/>")).dead_letter
    assert letter.reason == DeadLetterReason.UNSUPPORTED_ENVELOPE


def test_a_json_suffix_content_type_is_accepted() -> None:
    assert decode(cloudevent(datacontenttype="application/vnd.acme+json; charset=utf-8")).event is not None


def test_base64_data_is_an_unsupported_envelope() -> None:
    letter = decode(cloudevent(data=..., data_base64="e30=")).dead_letter
    assert letter.reason == DeadLetterReason.UNSUPPORTED_ENVELOPE


def test_data_that_is_not_an_object_is_an_invalid_event() -> None:
    letter = decode(cloudevent(datacontenttype=..., data=[1, 2])).dead_letter
    assert (letter.reason, letter.message) == (
        DeadLetterReason.INVALID_EVENT,
        "cloudevent.data: must be a JSON object",
    )


def test_an_unknown_cloudevent_type_is_an_unknown_type() -> None:
    letter = decode(cloudevent(type="com.churnwatch.moon.landed")).dead_letter
    assert letter.reason == DeadLetterReason.UNKNOWN_TYPE
    assert "moon.landed" in letter.message


def test_the_cloudevents_kind_requires_the_envelope() -> None:
    [decoded] = decode_for_topic(orjson.dumps(canonical()), "cloudevents", topic="usage-events")
    assert decoded.dead_letter.reason == DeadLetterReason.UNSUPPORTED_ENVELOPE


def test_the_canonical_kind_accepts_plain_and_wrapped_events_alike() -> None:
    for obj in (canonical(), cloudevent()):
        [decoded] = decode_for_topic(orjson.dumps(obj), "canonical", topic="usage-events")
        assert decoded.event is not None


def test_a_plain_event_mentioning_specversion_in_a_value_still_decodes() -> None:
    assert decode(canonical(feature="specversion")).event.feature == "specversion"
