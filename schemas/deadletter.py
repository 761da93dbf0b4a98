"""Dead-letter record contract (wire format of `churnwatch-dead-letters`) and its reason codes."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class DeadLetterReason(StrEnum):
    """Why an input could not become canonical events; a bounded set, safe as a metric label."""

    INVALID_JSON = "invalid_json"  # not parseable as JSON (includes non-UTF-8 bytes and empty messages)
    NOT_AN_OBJECT = "not_an_object"  # valid JSON, but not a JSON object at the top level
    INVALID_EVENT = "invalid_event"  # schema validation failed: wrong type, out of bounds, missing field
    UNKNOWN_TYPE = "unknown_type"  # the `type` discriminator names no canonical event
    MISSING_ACCOUNT = "missing_account"  # no account id (absent, null or blank): the event cannot be keyed
    OVERSIZE = "oversize"  # larger than the configured payload limit; checked before parsing
    TOO_LATE = "too_late"  # event time behind the watermark by more than the allowed lateness (worker)
    FUTURE_TIMESTAMP = "future_timestamp"  # event time too far ahead of the wall clock (worker)
    UNSUPPORTED_ENVELOPE = "unsupported_envelope"  # recognised envelope in a shape we do not handle
    ADAPTER_ERROR = "adapter_error"  # a source adapter could not map an otherwise valid payload
    PROCESSING_ERROR = "processing_error"  # a valid event the domain failed on (a bug): kept here, not lost


# Bounds keep one dead letter comfortably inside Kafka's default 1 MiB message limit.
MAX_MESSAGE_CHARS = 1000


class DeadLetter(BaseModel):
    """One rejected input with enough context to find, understand and replay it.

    Deterministic by design (no detection timestamp): re-processing the same input yields the same record.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    reason: DeadLetterReason
    # Human-readable, one line, names the offending field when there is one.
    message: Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS)]
    source_topic: Annotated[str, Field(min_length=1, max_length=249)]
    partition: Annotated[int, Field(ge=0)] | None = None
    offset: Annotated[int, Field(ge=0)] | None = None
    # The original message value, base64 (RFC 4648, standard alphabet, padded). For `oversize` inputs only the
    # first `max_bytes` bytes are kept (`original_truncated` is then true); `original_size` is always the full
    # size in bytes.
    original_b64: str
    original_size: Annotated[int, Field(ge=0)]
    original_truncated: bool = False
    # Copied from the input when it carried them as strings, so a dead letter can be traced to an account.
    event_id: Annotated[str, Field(max_length=128)] | None = None
    account_id: Annotated[str, Field(max_length=128)] | None = None


JSON_SCHEMAS: dict[str, Any] = {"dead-letter": DeadLetter}
