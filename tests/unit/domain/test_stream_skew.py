"""Billing and usage arrive on separate topics: lateness is judged per stream, so consumer skew loses nothing."""

from __future__ import annotations

from streams.domain.account import apply_event, new_account
from streams.domain.codec import decode_state, encode_state
from streams.domain.config import DomainConfig
from tests.unit.domain.factories import event, session

CONFIG = DomainConfig()


def billing_history() -> list:
    return [
        event("subscription.started", "2026-01-05T10:00:00Z", event_id="b1", plan="team", seats=5, mrr=19900),
        event("subscription.changed", "2026-02-05T10:00:00Z", event_id="b2", plan="team", seats=8, mrr=29900),
        event("subscription.cancel_scheduled", "2026-03-01T10:00:00Z", event_id="b3"),
    ]


def usage_history() -> list:
    return [session(f"2026-03-{d:02d}T09:00:00Z", event_id=f"u{d}") for d in range(1, 29)]


def test_billing_read_weeks_behind_usage_is_not_too_late() -> None:
    state = new_account("acct")
    outcomes = [apply_event(state, e, CONFIG).outcome for e in usage_history() + billing_history()]
    assert set(outcomes) == {"processed"}
    assert state.mrr == 29900 and state.cancel_scheduled


def test_usage_read_weeks_behind_billing_is_not_too_late() -> None:
    state = new_account("acct")
    outcomes = [apply_event(state, e, CONFIG).outcome for e in billing_history() + usage_history()]
    assert set(outcomes) == {"processed"}


def test_either_stream_first_gives_the_same_encoded_state() -> None:
    a, b = new_account("acct"), new_account("acct")
    for e in usage_history() + billing_history():
        apply_event(a, e, CONFIG)
    for e in billing_history() + usage_history():
        apply_event(b, e, CONFIG)
    assert encode_state(a) == encode_state(b)
    assert encode_state(decode_state(encode_state(a))) == encode_state(a)


def test_lateness_still_applies_within_one_stream() -> None:
    state = new_account("acct")
    for e in usage_history():
        apply_event(state, e, CONFIG)
    late = session("2026-02-01T09:00:00Z", event_id="late")
    assert apply_event(state, late, CONFIG).outcome == "too_late"
