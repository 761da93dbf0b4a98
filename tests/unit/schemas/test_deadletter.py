"""The dead-letter contract: reason codes, strict fields, JSON round trip."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.deadletter import DeadLetter, DeadLetterReason


def letter(**fields: object) -> dict[str, object]:
    body: dict[str, object] = {
        "reason": "invalid_json",
        "message": "invalid JSON: unexpected character",
        "source_topic": "usage-events",
        "partition": 0,
        "offset": 12,
        "original_b64": "e30=",
        "original_size": 2,
    }
    body.update(fields)
    return body


def test_a_dead_letter_round_trips_through_json() -> None:
    record = DeadLetter.model_validate(letter(event_id="e1", account_id="a1"))
    assert DeadLetter.model_validate_json(record.model_dump_json()) == record
    assert record.reason is DeadLetterReason.INVALID_JSON


def test_a_dead_letter_serialises_its_reason_as_the_plain_code() -> None:
    assert '"reason":"invalid_json"' in DeadLetter.model_validate(letter()).model_dump_json()


def test_a_dead_letter_carries_no_detection_timestamp_so_it_is_deterministic() -> None:
    assert not {"detected_at", "timestamp", "created_at"} & set(DeadLetter.model_fields)


def test_an_unknown_reason_is_refused() -> None:
    with pytest.raises(ValidationError):
        DeadLetter.model_validate(letter(reason="bad_vibes"))


def test_unexpected_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        DeadLetter.model_validate(letter(detected_at="2024-01-01T00:00:00Z"))


def test_reason_codes_are_lower_snake_case_metric_labels() -> None:
    assert all(r.value == r.name.lower() for r in DeadLetterReason)
