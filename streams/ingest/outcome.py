"""Result types shared by the decoder and the source adapters: Decoded, Skipped, AdapterError."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from schemas.deadletter import DeadLetter, DeadLetterReason
from schemas.events import CanonicalEvent
from streams.domain.hot_events import HotEvent


class SkipReason(StrEnum):
    """Why an input was deliberately dropped; a bounded set, safe as a metric label."""

    NO_CHURN_SIGNAL = "no_churn_signal"  # the event (or the change it reports) carries nothing we use
    COVERED_ELSEWHERE = (
        "covered_elsewhere"  # the same fact arrives through another event; avoids double counts
    )
    NOT_STARTED = "not_started"  # a subscription that never became active (Stripe incomplete*)
    NOT_ATTRIBUTABLE = "not_attributable"  # legitimately belongs to no account (e.g. a guest charge)
    ZERO_AMOUNT = "zero_amount"  # a money event for 0 minor units
    UNHANDLED_TYPE = "unhandled_type"  # a source event type the pipeline does not consume
    IDENTIFY_CALL = "identify_call"  # Segment identify: user traits, not account behaviour
    UNSUPPORTED_CALL = "unsupported_call"  # Segment page / screen / alias
    UNMAPPED_EVENT = "unmapped_event"  # a track name mapped to nothing (or unmapped with the fallback off)


class Skipped(NamedTuple):
    """A deliberate, counted drop: `reason` is the metric label, `detail` a one-line explanation."""

    reason: SkipReason
    detail: str


class Decoded:
    """Exactly one of `event` / `dead_letter` is set. One per input record: a plain class, not a NamedTuple, so
    the compiled decoder builds it with a direct C call (ADR 0018)."""

    __slots__ = ("dead_letter", "event")

    def __init__(self, event: CanonicalEvent | HotEvent | None, dead_letter: DeadLetter | None) -> None:
        self.event = event
        self.dead_letter = dead_letter

    def __repr__(self) -> str:
        return f"Decoded(event={self.event!r}, dead_letter={self.dead_letter!r})"

    def __eq__(self, other: object) -> bool:  # the same decode twice is equal (a retried webhook's events)
        return isinstance(other, Decoded) and self.event == other.event and self.dead_letter == other.dead_letter


class AdapterError(Exception):
    """An adapter cannot map its input; the decoder turns it into a dead letter with this reason."""

    def __init__(
        self,
        reason: DeadLetterReason,
        message: str,
        *,
        event_id: str | None = None,
        account_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.event_id = event_id
        self.account_id = account_id
