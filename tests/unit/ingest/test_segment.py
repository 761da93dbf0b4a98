"""Segment / RudderStack track, identify and group calls -> canonical usage events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.deadletter import DeadLetterReason
from streams.ingest.decode import IngestConfig
from streams.ingest.outcome import Skipped, SkipReason

from .helpers import decode_segment, only_dead_letter, segment_event, segment_message


def test_signed_in_starts_a_session_for_the_user_in_the_account_of_context_group_id() -> None:
    event = segment_event(segment_message(event="Signed In"))
    assert (event.type, event.account_id, event.user_id) == ("session.started", "acct_123", "user-1")
    assert (event.event_id, event.source) == ("msg-1", "segment")
    assert event.occurred_at == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def test_logged_in_is_also_a_session() -> None:
    assert segment_event(segment_message(event="Logged In")).type == "session.started"


def test_event_names_match_regardless_of_case_underscores_and_spacing() -> None:
    assert segment_event(segment_message(event="signed_in")).type == "session.started"
    assert segment_event(segment_message(event="  SIGNED   in ")).type == "session.started"


def test_an_anonymous_session_uses_the_anonymous_id() -> None:
    assert segment_event(segment_message(userId=None)).user_id == "anon-1"


def test_a_numeric_user_id_becomes_a_string() -> None:
    assert segment_event(segment_message(userId=42)).user_id == "42"


def test_a_rudderstack_message_uses_original_timestamp_and_is_labelled_rudderstack() -> None:
    msg = segment_message(
        event="Feature Used", channel="web", rudderId="r-1", originalTimestamp="2024-05-02T08:00:00Z"
    )
    del msg["timestamp"]
    msg["properties"] = {"feature": "reports"}
    event = segment_event(msg)
    assert (event.source, event.feature) == ("rudderstack", "reports")
    assert event.occurred_at == datetime(2024, 5, 2, 8, 0, tzinfo=UTC)


def test_account_added_user_adds_the_message_user_with_the_spec_role() -> None:
    event = segment_event(segment_message(event="Account Added User", properties={"role": "Owner"}))
    assert (event.type, event.user_id, event.role) == ("user.added", "user-1", "owner")


def test_account_removed_user_prefers_an_explicit_user_id_property() -> None:
    msg = segment_message(
        event="Account Removed User", properties={"user_id": "user-9", "role": "Administrator"}
    )
    event = segment_event(msg)
    assert (event.type, event.user_id, event.role) == ("user.removed", "user-9", "admin")


def test_an_unknown_role_counts_as_member() -> None:
    event = segment_event(segment_message(event="Account Added User", properties={"role": "Chief Llama"}))
    assert event.role == "member"


@pytest.mark.parametrize("key", ["feature", "name"])
def test_feature_used_takes_the_feature_from_feature_or_name(key: str) -> None:
    event = segment_event(segment_message(event="Feature Used", properties={key: "csv-export", "count": 4}))
    assert (event.type, event.feature, event.count, event.user_id) == (
        "feature.used",
        "csv-export",
        4,
        "user-1",
    )


def test_an_unmapped_track_name_is_a_feature_named_after_the_event() -> None:
    event = segment_event(segment_message(event="Report Exported", properties={"name": "Q3 revenue"}))
    assert (event.type, event.feature) == ("feature.used", "Report Exported")


def test_a_very_long_unmapped_name_is_cut_to_the_feature_limit() -> None:
    event = segment_event(segment_message(event="Clicked " + "x" * 100))
    assert len(event.feature) == 64


def test_unmapped_names_are_skipped_when_the_feature_fallback_is_off() -> None:
    config = IngestConfig(segment_unmapped_as_feature=False)
    result = decode_segment(segment_message(event="Report Exported"), config)
    assert isinstance(result, Skipped) and result.reason == SkipReason.UNMAPPED_EVENT


def test_a_custom_mapping_adds_names_and_can_silence_defaults() -> None:
    config = IngestConfig(segment_event_map={"Dashboard Viewed": "feature.used", "Signed In": None})
    assert segment_event(segment_message(event="Dashboard Viewed"), config).feature == "Dashboard Viewed"
    result = decode_segment(segment_message(event="Signed In"), config)
    assert isinstance(result, Skipped) and result.reason == SkipReason.UNMAPPED_EVENT


def test_a_mapping_to_a_non_usage_type_is_refused_at_configuration_time() -> None:
    with pytest.raises(ValueError, match=r"invoice\.paid"):
        IngestConfig(segment_event_map={"Paid": "invoice.paid"})


@pytest.mark.parametrize("name", ["NPS Survey Submitted", "Survey Responded"])
def test_an_nps_submission_carries_score_and_comment(name: str) -> None:
    event = segment_event(segment_message(event=name, properties={"score": 9, "comment": "great"}))
    assert (event.type, event.score, event.comment) == ("nps.responded", 9, "great")


def test_an_nps_score_of_eleven_is_dead_lettered_naming_the_field() -> None:
    letter = only_dead_letter(
        decode_segment(segment_message(event="NPS Survey Submitted", properties={"score": 11}))
    )
    assert letter.reason == DeadLetterReason.INVALID_EVENT
    assert letter.message == "score: Input should be less than or equal to 10"
    assert (letter.event_id, letter.account_id) == ("msg-1", "acct_123")


def test_tickets_open_and_close_with_normalised_priority() -> None:
    opened = segment_event(
        segment_message(event="Ticket Opened", properties={"ticket_id": 77, "priority": "P1"})
    )
    closed = segment_event(
        segment_message(event="Ticket Closed", properties={"ticket_id": "77", "priority": "Medium"})
    )
    assert (opened.type, opened.ticket_id, opened.priority) == ("ticket.opened", "77", "urgent")
    assert (closed.type, closed.priority) == ("ticket.closed", "normal")


def test_an_unknown_ticket_priority_is_dead_lettered() -> None:
    msg = segment_message(event="Ticket Opened", properties={"ticket_id": "t1", "priority": "whenever"})
    assert only_dead_letter(decode_segment(msg)).message.startswith("priority:")


def test_usage_limit_reached_carries_limit_used_and_quota() -> None:
    msg = segment_message(
        event="Usage Limit Reached", properties={"limit": "projects", "used": 10, "quota": 10}
    )
    event = segment_event(msg)
    assert (event.type, event.limit, event.used, event.quota) == ("usage_limit.reached", "projects", 10, 10)


def test_api_called_carries_the_call_count() -> None:
    assert segment_event(segment_message(event="API Called", properties={"count": 250})).count == 250


def test_a_zero_count_is_rejected_rather_than_silently_made_one() -> None:
    letter = only_dead_letter(decode_segment(segment_message(event="API Called", properties={"count": 0})))
    assert letter.message.startswith("count:")


@pytest.mark.parametrize(
    "name", ["Trial Started", "Trial Ended", "Account Created", "Account Deleted", "Signed Out"]
)
def test_account_lifecycle_names_are_skipped_because_billing_owns_them(name: str) -> None:
    result = decode_segment(segment_message(event=name))
    assert isinstance(result, Skipped) and result.reason == SkipReason.UNMAPPED_EVENT


def test_signed_up_adds_a_user() -> None:
    assert segment_event(segment_message(event="Signed Up")).type == "user.added"


def test_identify_calls_are_skipped_and_counted() -> None:
    result = decode_segment(segment_message(call="identify", event=None, traits={"email": "a@b.c"}))
    assert isinstance(result, Skipped) and result.reason == SkipReason.IDENTIFY_CALL


@pytest.mark.parametrize("call", ["page", "screen", "alias"])
def test_page_screen_and_alias_calls_are_skipped(call: str) -> None:
    result = decode_segment(segment_message(call=call, event=None))
    assert isinstance(result, Skipped) and result.reason == SkipReason.UNSUPPORTED_CALL


def test_a_group_call_becomes_flattened_string_account_traits() -> None:
    traits = {
        "name": "Initech",
        "plan": "enterprise",
        "employees": 250,
        "paying": True,
        "address": {"city": "Austin", "state": "TX"},
        "tags": ["b2b", "fintech"],
        "deleted_at": None,
        "notes": "x" * 500,
    }
    msg = segment_message(call="group", event=None, groupId="acct_9", traits=traits)
    event = segment_event(msg)
    assert (event.type, event.account_id) == ("account.traits", "acct_9")
    assert event.traits == {
        "address.city": "Austin",
        "address.state": "TX",
        "employees": "250",
        "name": "Initech",
        "notes": "x" * 128,
        "paying": "true",
        "plan": "enterprise",
        "tags": "b2b,fintech",
    }


def test_a_group_call_keeps_at_most_32_traits_in_sorted_key_order() -> None:
    traits = {f"k{n:02d}": str(n) for n in range(50)}
    event = segment_event(segment_message(call="group", event=None, groupId="acct_9", traits=traits))
    assert list(event.traits) == [f"k{n:02d}" for n in range(32)]


def test_a_group_call_without_traits_is_skipped() -> None:
    result = decode_segment(segment_message(call="group", event=None, groupId="acct_9", traits={}))
    assert isinstance(result, Skipped) and result.reason == SkipReason.NO_CHURN_SIGNAL


def test_a_group_call_without_group_id_is_dead_lettered_as_missing_account() -> None:
    letter = only_dead_letter(decode_segment(segment_message(call="group", event=None, traits={"a": 1})))
    assert (letter.reason, letter.message.split(":")[0]) == (DeadLetterReason.MISSING_ACCOUNT, "groupId")


def test_a_track_call_without_context_group_id_is_dead_lettered_as_missing_account() -> None:
    msg = segment_message(event="Feature Used", context={"library": {"name": "analytics.js"}})
    letter = only_dead_letter(decode_segment(msg))
    assert letter.reason == DeadLetterReason.MISSING_ACCOUNT
    assert letter.message.startswith("context.groupId: missing")
    assert letter.event_id == "msg-1"


def test_a_message_without_message_id_is_an_invalid_event() -> None:
    letter = only_dead_letter(decode_segment(segment_message(messageId=None)))
    assert (letter.reason, letter.message) == (DeadLetterReason.INVALID_EVENT, "messageId: missing")


def test_a_message_without_any_timestamp_is_an_invalid_event() -> None:
    letter = only_dead_letter(decode_segment(segment_message(timestamp=None)))
    assert letter.message.startswith("timestamp: missing")


def test_an_unknown_call_type_is_an_unsupported_envelope() -> None:
    letter = only_dead_letter(decode_segment(segment_message(call="purchase")))
    assert letter.reason == DeadLetterReason.UNSUPPORTED_ENVELOPE


def test_a_batch_envelope_is_an_unsupported_envelope() -> None:
    letter = only_dead_letter(decode_segment({"batch": [segment_message()]}))
    assert letter.reason == DeadLetterReason.UNSUPPORTED_ENVELOPE
