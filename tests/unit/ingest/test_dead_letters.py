"""Bad input of every kind ends as a precise, replayable dead letter, never an exception."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from schemas.deadletter import DeadLetter, DeadLetterReason
from streams.ingest.decode import IngestConfig, decode_canonical, decode_for_topic, make_dead_letter

from .helpers import STRIPE_FIXTURES, canonical


def letter_for(raw: bytes, **kwargs: Any) -> DeadLetter:
    decoded = decode_canonical(raw, topic="usage-events", partition=3, offset=41, **kwargs)
    assert decoded.event is None, decoded.event
    assert decoded.dead_letter is not None
    return decoded.dead_letter


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


CASES: list[tuple[str, bytes, DeadLetterReason, str]] = [
    ("invalid JSON", b'{"type": "feature.used",', DeadLetterReason.INVALID_JSON, "invalid JSON:"),
    ("empty message", b"", DeadLetterReason.INVALID_JSON, "empty message"),
    ("non-UTF-8 bytes", b'{"a": "\xff\xfe"}', DeadLetterReason.INVALID_JSON, "invalid JSON:"),
    ("an array instead of an object", b"[1, 2]", DeadLetterReason.NOT_AN_OBJECT, "expected a JSON object"),
    ("a bare string", b'"hello"', DeadLetterReason.NOT_AN_OBJECT, "expected a JSON object"),
    (
        "a wrong field type",
        dumps(canonical(count="lots")),
        DeadLetterReason.INVALID_EVENT,
        "count: Input should be",
    ),
    (
        "NPS 11",
        dumps(canonical(type="nps.responded", feature=..., count=..., score=11)),
        DeadLetterReason.INVALID_EVENT,
        "score: Input should be less than or equal to 10",
    ),
    (
        "a negative amount",
        dumps(canonical(type="refund.issued", user_id=..., feature=..., count=..., amount=-1)),
        DeadLetterReason.INVALID_EVENT,
        "amount: Input should be greater than or equal to 0",
    ),
    (
        "an unknown type",
        dumps(canonical(type="moon.landed")),
        DeadLetterReason.UNKNOWN_TYPE,
        "type: unknown event type",
    ),
    ("a missing type", dumps(canonical(type=...)), DeadLetterReason.INVALID_EVENT, "type: Field required"),
    (
        "a missing account",
        dumps(canonical(account_id=...)),
        DeadLetterReason.MISSING_ACCOUNT,
        "account_id: Field required",
    ),
    ("a null account", dumps(canonical(account_id=None)), DeadLetterReason.MISSING_ACCOUNT, "account_id:"),
    ("a blank account", dumps(canonical(account_id="   ")), DeadLetterReason.MISSING_ACCOUNT, "account_id:"),
    (
        "a missing field",
        dumps(canonical(feature=...)),
        DeadLetterReason.INVALID_EVENT,
        "feature: Field required",
    ),
    (
        "a naive timestamp",
        dumps(canonical(occurred_at="2024-05-01T12:00:00")),
        DeadLetterReason.INVALID_EVENT,
        "occurred_at: Value error, timestamp must carry a timezone",
    ),
    (
        "the year 1900",
        dumps(canonical(occurred_at="1900-01-01T00:00:00Z")),
        DeadLetterReason.INVALID_EVENT,
        "occurred_at: Value error, timestamp must be between 2000-01-01 and 2100-01-01",
    ),
    (
        "a timestamp whose offset overflows the calendar",
        dumps(canonical(occurred_at="0001-01-01T00:00:00+23:59")),
        DeadLetterReason.INVALID_EVENT,
        "occurred_at: Value error, timestamp is out of range",
    ),
    (
        "a CloudEvent missing its source",
        dumps({"specversion": "1.0", "id": "1", "type": "feature.used", "data": {}}),
        DeadLetterReason.INVALID_EVENT,
        "cloudevent.source: required attribute missing",
    ),
]


@pytest.mark.parametrize(("label", "raw", "reason", "message_start"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_becomes_a_dead_letter_with_a_precise_reason_and_message(
    label: str, raw: bytes, reason: DeadLetterReason, message_start: str
) -> None:
    letter = letter_for(raw)
    assert letter.reason == reason, letter.message
    assert letter.message.startswith(message_start), letter.message
    assert "\n" not in letter.message


def test_a_dead_letter_keeps_the_original_bytes_and_where_they_came_from() -> None:
    raw = dumps(canonical(type="moon.landed"))
    letter = letter_for(raw)
    assert base64.b64decode(letter.original_b64) == raw
    assert (letter.source_topic, letter.partition, letter.offset) == ("usage-events", 3, 41)
    assert (letter.original_size, letter.original_truncated) == (len(raw), False)


def test_a_dead_letter_names_the_event_and_account_when_the_input_had_them() -> None:
    letter = letter_for(dumps(canonical(count=0)))
    assert (letter.event_id, letter.account_id) == ("evt-1", "acct_1")


def test_an_oversize_message_is_rejected_before_parsing_and_keeps_only_a_prefix() -> None:
    raw = b"{" + b" " * 200 + b"}"
    letter = letter_for(raw, max_bytes=100)
    assert letter.reason == DeadLetterReason.OVERSIZE
    assert letter.message == "message is 202 bytes, above the 100-byte limit"
    assert (letter.original_size, letter.original_truncated) == (202, True)
    assert base64.b64decode(letter.original_b64) == raw[:100]


def test_a_missing_message_value_such_as_a_tombstone_is_a_dead_letter() -> None:
    assert decode_canonical(None, topic="t").dead_letter.reason == DeadLetterReason.INVALID_JSON


def test_several_errors_report_the_first_and_how_many_more() -> None:
    letter = letter_for(dumps(canonical(feature=..., count=-3)))
    assert letter.message.endswith("(and 1 more)")


def test_a_missing_account_outranks_other_errors() -> None:
    letter = letter_for(dumps(canonical(account_id=..., count=-3)))
    assert letter.reason == DeadLetterReason.MISSING_ACCOUNT


def test_the_same_bad_input_always_gives_an_identical_dead_letter() -> None:
    raw = dumps(canonical(count=-1))
    assert letter_for(raw) == letter_for(raw)


@pytest.mark.parametrize("kind", ["stripe", "segment"])
def test_adapter_topics_dead_letter_bad_json_and_non_objects_too(kind: str) -> None:
    for raw, reason in ((b"{oops", DeadLetterReason.INVALID_JSON), (b"[]", DeadLetterReason.NOT_AN_OBJECT)):
        [decoded] = decode_for_topic(raw, kind, topic=f"{kind}-events")  # type: ignore[arg-type]
        assert decoded.dead_letter.reason == reason


def test_an_adapter_topic_rejects_an_oversize_message_as_oversize() -> None:
    [decoded] = decode_for_topic(b"{}" + b" " * 70_000, "stripe", topic="stripe-events")
    assert decoded.dead_letter.reason == DeadLetterReason.OVERSIZE


def test_make_dead_letter_serves_worker_side_checks_like_lateness() -> None:
    raw = dumps(canonical())
    letter = make_dead_letter(
        DeadLetterReason.TOO_LATE,
        "occurred_at 2024-05-01T12:34:56Z is 9 days behind the watermark\n(allowed 7 days)",
        raw,
        topic="usage-events",
        partition=0,
        offset=7,
        event_id="evt-1",
        account_id="acct_1",
    )
    assert (
        letter.message == "occurred_at 2024-05-01T12:34:56Z is 9 days behind the watermark (allowed 7 days)"
    )
    assert DeadLetter.model_validate_json(letter.model_dump_json()) == letter


def test_every_reason_code_required_by_the_pipeline_exists() -> None:
    assert {r.value for r in DeadLetterReason} >= {
        "invalid_json",
        "not_an_object",
        "invalid_event",
        "unknown_type",
        "missing_account",
        "oversize",
        "too_late",
        "future_timestamp",
        "unsupported_envelope",
        "adapter_error",
    }


def test_an_adapter_that_fails_unexpectedly_yields_an_adapter_error_dead_letter() -> None:
    def broken_mapping(customer: str) -> str | None:
        raise RuntimeError("lookup table unavailable")

    config = IngestConfig(stripe_account_for_customer=broken_mapping)
    raw = (STRIPE_FIXTURES / "customer.subscription.created.json").read_bytes()
    [decoded] = decode_for_topic(raw, "stripe", topic="stripe-events", config=config)  # type: ignore[misc]
    assert decoded.dead_letter.reason == DeadLetterReason.ADAPTER_ERROR
    assert decoded.dead_letter.message == "RuntimeError: lookup table unavailable"
