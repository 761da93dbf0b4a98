"""The single hot-path decoder: raw topic bytes to canonical events, a deliberate skip, or a dead letter.

Interface (all pure, none raises for any input):

    decode_canonical(raw, *, topic, partition=None, offset=None, max_bytes=65536,
                     type_prefixes=("com.churnwatch.",)) -> Decoded
        For `billing-events` / `usage-events`: a canonical event, or a CloudEvents 1.0 structured-JSON
        envelope around one. Returns Decoded(event, None) or Decoded(None, dead_letter). The event is a
        schema model, or for a plain session.started / feature.used a compiled Hot* event with the same
        attributes and values (decode_hot, ADR 0021).

    decode_for_topic(raw, kind, *, topic, partition=None, offset=None, config=DEFAULT_CONFIG)
        -> list[Decoded] | Skipped
        kind: "canonical" | "cloudevents" (CloudEvents required) | "stripe" | "segment". One input yields a
        Skipped (deliberately dropped; count it by `.reason`), or a non-empty list that is either all events
        or exactly one dead letter (all-or-nothing: replaying a dead letter re-creates every event).

    make_dead_letter(reason, message, raw, *, topic, ...) -> DeadLetter
        For checks the worker makes after decoding (too_late, future_timestamp).

    account_of(raw) -> str | None
        The account a canonical record belongs to, when a plain top-level account_id tells it without decoding
        (a split replay's routing, ADR 0022).

The size limit is checked before parsing. Plain session.started / feature.used events are read with orjson and
checked against the schema's bounds without pydantic (decode_hot, ADR 0021); every other canonical event, and any
such event decode_hot declines, is validated straight from bytes by pydantic (`validate_json`, measured faster
than orjson + validate_python), which also words every dead letter. orjson is used besides for CloudEvents, the
source adapters, account_of, and to classify failures.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeGuard

import orjson
from pydantic import TypeAdapter, ValidationError

from schemas.deadletter import MAX_MESSAGE_CHARS, DeadLetter, DeadLetterReason
from schemas.events import (
    COUNT_MAX,
    EARLIEST_EVENT_TIME,
    ID_MAX_CHARS,
    LATEST_EVENT_TIME,
    NAME_MAX_CHARS,
    SOURCE_MAX_CHARS,
    CanonicalEvent,
    Envelope,
    billing_event_adapter,
    canonical_event_adapter,
    usage_event_adapter,
)
from streams.domain.hot_events import HotEvent, HotFeatureUsed, HotSessionStarted
from streams.ingest import segment, stripe
from streams.ingest.outcome import AdapterError, Decoded, Skipped, SkipReason

TopicKind = Literal["canonical", "cloudevents", "stripe", "segment"]

DEFAULT_MAX_BYTES = 64 * 1024
DEFAULT_TYPE_PREFIXES: tuple[str, ...] = ("com.churnwatch.",)
CLOUDEVENTS_SPECVERSION = "1.0"
# CloudEvents 1.0 required context attributes (cloudevents.schema.json "required"), all non-empty strings.
CLOUDEVENTS_REQUIRED = ("id", "source", "specversion", "type")
MAX_SOURCE_CHARS = 64  # Envelope.source


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """Decoder settings; build once at startup. `segment_event_map` is validated and normalised here."""

    max_bytes: int = DEFAULT_MAX_BYTES
    cloudevents_type_prefixes: tuple[str, ...] = DEFAULT_TYPE_PREFIXES
    segment_event_map: Mapping[str, str | None] = field(
        default_factory=lambda: dict(segment.DEFAULT_EVENT_MAP)
    )
    segment_unmapped_as_feature: bool = True
    # Stripe customer id -> account id; None (the default) uses the customer id itself.
    stripe_account_for_customer: Callable[[str], str | None] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "segment_event_map", segment.build_event_map(self.segment_event_map))


DEFAULT_CONFIG = IngestConfig()

# The adapter's core validator, called directly: TypeAdapter.validate_json only forwards its default arguments
# to it, and that Python wrapper cost about 1.5 us per event (a quarter of the decode) on the hot path.
_validate_json = canonical_event_adapter.validator.validate_json
_validate_python = canonical_event_adapter.validate_python
_SPECVERSION_KEY = b'"specversion"'
_SESSION_TYPE, _FEATURE_TYPE = b'"session.started"', b'"feature.used"'
_DEFAULT_SOURCE: str = Envelope.model_fields["source"].default
# The timestamps decode_hot parses itself: RFC 3339 with a 'Z' or ±HH:MM offset, at most microseconds. Anything
# else goes to pydantic (datetime.fromisoformat alone accepts more than the schema does, e.g. '+05', week dates).
_PLAIN_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)", re.ASCII)


# --- dead letters --------------------------------------------------------------------------------------


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Collapse whitespace (newlines included) and cut to `limit` characters."""
    flat = " ".join(str(text).split()) or "no detail"
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _known(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None


def make_dead_letter(
    reason: DeadLetterReason,
    message: str,
    raw: bytes | None,
    *,
    topic: str,
    partition: int | None = None,
    offset: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    event_id: Any = None,
    account_id: Any = None,
) -> DeadLetter:
    """A DeadLetter for `raw`; inputs above `max_bytes` keep only their first `max_bytes` bytes."""
    if raw is None:
        data = b""
    elif isinstance(raw, str):  # tolerated for callers that pass text; Kafka hands us bytes
        data = raw.encode("utf-8", "surrogatepass")
    else:
        data = bytes(raw)
    truncated = len(data) > max_bytes
    kept = data[: max(max_bytes, 0)] if truncated else data
    return DeadLetter(
        reason=reason,
        message=one_line(message),
        source_topic=topic[:249] if isinstance(topic, str) and topic else "unknown",
        partition=partition if isinstance(partition, int) and partition >= 0 else None,
        offset=offset if isinstance(offset, int) and offset >= 0 else None,
        original_b64=base64.b64encode(kept).decode("ascii"),
        original_size=len(data),
        original_truncated=truncated,
        event_id=_known(event_id),
        account_id=_known(account_id),
    )


def _field_path(loc: tuple[int | str, ...], tag: Any) -> str:
    """'score' for ('nps.responded', 'score'): the union tag is dropped, nested keys are dotted."""
    parts = list(loc)
    if parts and isinstance(tag, str) and parts[0] == tag:
        parts = parts[1:]
    return ".".join(str(p) for p in parts)


def _is_missing_account(error: Mapping[str, Any], path: str) -> bool:
    if path != "account_id":
        return False
    value = error.get("input")
    return error["type"] == "missing" or value is None or (isinstance(value, str) and not value.strip())


def classify_validation_error(exc: ValidationError, obj: Any) -> tuple[DeadLetterReason, str]:
    """Reason code and a one-line message naming the field, e.g. 'score: Input should be less than or
    equal to 10'. A missing account wins over other errors (it decides where the event could go)."""
    errors = exc.errors(include_url=False)
    tag = obj.get("type") if isinstance(obj, Mapping) else None
    if not errors:
        return DeadLetterReason.INVALID_EVENT, one_line(str(exc))
    chosen = errors[0]
    reason = DeadLetterReason.INVALID_EVENT
    for error in errors:
        if _is_missing_account(error, _field_path(error["loc"], tag)):
            chosen, reason = error, DeadLetterReason.MISSING_ACCOUNT
            break
    kind = chosen["type"]
    path = _field_path(chosen["loc"], tag)
    if kind == "union_tag_invalid":
        return DeadLetterReason.UNKNOWN_TYPE, f"type: unknown event type {str(chosen['ctx']['tag'])[:80]!r}"
    if kind == "union_tag_not_found":
        return DeadLetterReason.INVALID_EVENT, "type: Field required (every canonical event names its type)"
    if kind == "json_invalid":
        return DeadLetterReason.INVALID_JSON, one_line(chosen["msg"])
    if kind in ("dict_type", "model_type", "model_attributes_type") and not path:
        return DeadLetterReason.NOT_AN_OBJECT, "expected a JSON object at the top level"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    message = f"{path}: {chosen['msg']}" if path else str(chosen["msg"])
    return reason, one_line(message + more)


# --- CloudEvents ---------------------------------------------------------------------------------------


def strip_type_prefix(event_type: str, prefixes: tuple[str, ...]) -> str:
    """'com.churnwatch.feature.used' -> 'feature.used'; unprefixed types pass unchanged."""
    for prefix in prefixes:
        if prefix and event_type.startswith(prefix):
            return event_type[len(prefix) :]
    return event_type


def from_cloudevent(envelope: Mapping[str, Any], prefixes: tuple[str, ...]) -> dict[str, Any]:
    """A canonical event dict from a CloudEvents 1.0 structured-JSON envelope.

    id -> event_id, time -> occurred_at, subject (else data.account_id) -> account_id, type (prefix
    stripped) -> type, source -> source (cut to 64 characters: a CloudEvents source is a URI and may be
    longer than the contract allows, but is informational only), data -> the payload fields.
    """
    event_id = envelope.get("id") if isinstance(envelope.get("id"), str) else None
    specversion = envelope.get("specversion")
    if specversion != CLOUDEVENTS_SPECVERSION:
        raise AdapterError(
            DeadLetterReason.UNSUPPORTED_ENVELOPE,
            f"specversion: {specversion!r:.20} is not supported (expected '1.0')",
            event_id=event_id,
        )
    for name in CLOUDEVENTS_REQUIRED:
        value = envelope.get(name)
        if not isinstance(value, str) or not value:
            raise AdapterError(
                DeadLetterReason.INVALID_EVENT,
                f"cloudevent.{name}: required attribute missing or not a non-empty string",
                event_id=event_id,
            )
    content_type = envelope.get("datacontenttype")
    if content_type is not None and not _is_json_content_type(content_type):
        raise AdapterError(
            DeadLetterReason.UNSUPPORTED_ENVELOPE,
            f"datacontenttype: {content_type!r:.60} is not JSON",
            event_id=event_id,
        )
    if envelope.get("data_base64") is not None:
        raise AdapterError(
            DeadLetterReason.UNSUPPORTED_ENVELOPE,
            "data_base64: binary data is not supported",
            event_id=event_id,
        )
    data = envelope.get("data")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise AdapterError(
            DeadLetterReason.INVALID_EVENT, "cloudevent.data: must be a JSON object", event_id=event_id
        )
    mapped: dict[str, Any] = dict(data)
    mapped["event_id"] = envelope["id"]
    mapped["type"] = strip_type_prefix(envelope["type"], prefixes)
    mapped["source"] = envelope["source"][:MAX_SOURCE_CHARS]
    if envelope.get("time") is not None:
        mapped["occurred_at"] = envelope["time"]
    if envelope.get("subject") is not None:
        mapped["account_id"] = envelope["subject"]
    return mapped


def _is_json_content_type(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    media = value.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


# --- decoders ------------------------------------------------------------------------------------------


def decode_canonical(
    raw: bytes | None,
    *,
    topic: str,
    partition: int | None = None,
    offset: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    type_prefixes: tuple[str, ...] = DEFAULT_TYPE_PREFIXES,
    require_cloudevents: bool = False,
) -> Decoded:
    """One canonical event (plain or CloudEvents-wrapped) or a dead letter; never raises."""
    try:
        if not raw:
            return _dead(
                DeadLetterReason.INVALID_JSON, "empty message", raw, topic, partition, offset, max_bytes
            )
        if len(raw) > max_bytes:
            message = f"message is {len(raw)} bytes, above the {max_bytes}-byte limit"
            return _dead(DeadLetterReason.OVERSIZE, message, raw, topic, partition, offset, max_bytes)
        first_error: ValidationError | None = None
        # find, not `in`: bytes.__contains__ first tries its argument as an int and formats a TypeError for a
        # bytes argument (measured: 8 % of decoding, per event).
        if not require_cloudevents and raw.find(_SPECVERSION_KEY) < 0:
            if raw.find(_FEATURE_TYPE) >= 0 or raw.find(_SESSION_TYPE) >= 0:
                hot = decode_hot(raw)
                if hot is not None:
                    return Decoded(hot, None)
            try:
                return Decoded(_validate_json(raw), None)
            except ValidationError as exc:
                first_error = exc
        return _decode_slow(
            raw, first_error, topic, partition, offset, max_bytes, type_prefixes, require_cloudevents
        )
    except Exception as exc:  # a decoder must not stop the pipeline, whatever the input
        return _dead(_unexpected_reason(exc), _describe(exc), raw, topic, partition, offset, max_bytes)


def decode_hot(raw: bytes) -> HotEvent | None:
    """A session.started or feature.used event whose JSON is plain, as a compiled HotSessionStarted / HotFeatureUsed
    without pydantic (ADR 0021); None for anything else, which the caller validates with pydantic.

    Plain: a JSON object whose fields have exactly the JSON types the schema's model takes unchanged, within its
    bounds: strings of printable ASCII with no space at either end (nothing to strip), integers as JSON integers,
    a timestamp matching _PLAIN_TIME within the schema's range. Unknown keys are ignored, as
    the model ignores them. Every event accepted here gets the values pydantic would give it (a property test
    holds the two together); an event refused here may still be valid, and pydantic decides it."""
    obj = _json_object(raw)
    if obj is None:
        return None
    etype = obj.get("type")
    if etype != "session.started" and etype != "feature.used":
        return None
    event_id = obj.get("event_id")
    account_id = obj.get("account_id")
    source = obj.get("source", _DEFAULT_SOURCE)
    user_id = obj.get("user_id")
    version = obj.get("schema_version", 1)
    if not (_plain(event_id, ID_MAX_CHARS) and _plain(account_id, ID_MAX_CHARS) and _plain(source, SOURCE_MAX_CHARS)
            and type(version) is int and version == 1):
        return None
    occurred_at = _plain_time(obj.get("occurred_at"))
    if occurred_at is None:
        return None
    if etype == "session.started":
        if not _plain(user_id, ID_MAX_CHARS):
            return None
        return HotSessionStarted(event_id, account_id, occurred_at, source, user_id)
    feature = obj.get("feature")
    count = obj.get("count", 1)
    if not (_plain(feature, NAME_MAX_CHARS) and type(count) is int and 1 <= count <= COUNT_MAX):
        return None
    if user_id is not None and not _plain(user_id, ID_MAX_CHARS):
        return None
    return HotFeatureUsed(event_id, account_id, occurred_at, source, user_id, feature, count)


def account_of(raw: bytes) -> str | None:
    """The account id `decode_canonical` gives this record if it decodes, read from a plain top-level `account_id`
    without decoding the rest (about a third of the cost); None when that is not certain: not a JSON object, a
    CloudEvents envelope, an id pydantic would change (strip, coerce) or refuse. A record it names an account for
    may still turn out invalid. Lets a replay process skip decoding other processes' records (ADR 0022)."""
    if raw.find(_SPECVERSION_KEY) >= 0:  # decode_canonical's own test for the CloudEvents path
        return None
    obj = _json_object(raw)
    account = obj.get("account_id") if obj is not None else None
    return account if _plain(account, ID_MAX_CHARS) else None


def _json_object(raw: bytes) -> dict[str, Any] | None:
    """The JSON object in raw, or None when raw is not JSON or holds something else."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return obj if type(obj) is dict else None


def _plain(value: Any, most: int) -> TypeGuard[str]:
    """1..most printable ASCII characters, not starting or ending with a space: a string pydantic keeps as it is
    (nothing to strip). `isascii` is a flag check; no one-character strings are made."""
    return (type(value) is str and 0 < len(value) <= most and value.isascii() and value.isprintable()
            and not value.startswith(" ") and not value.endswith(" "))


def _plain_time(value: Any) -> datetime | None:
    """The timestamp as the schema's `_utc_and_sane` would return it (aware, in range, `timezone.utc`), or None.
    The same checks, on the same constants, made here on the compiled side: calling the schema's Python validator
    cost a fifth of this decoder."""
    if type(value) is not str or _PLAIN_TIME.fullmatch(value) is None:
        return None
    try:
        at = datetime.fromisoformat(value)  # _PLAIN_TIME has an offset: aware; 'Z' and ±00:00 give timezone.utc
        if not EARLIEST_EVENT_TIME <= at < LATEST_EVENT_TIME:
            return None  # pydantic writes the dead letter's message
        return at if at.tzinfo is UTC else at.astimezone(UTC)
    except (ValueError, OverflowError):  # not a real date or time (month 13, 24:00, ...), or beyond datetime's range
        return None


def _decode_slow(
    raw: bytes,
    first_error: ValidationError | None,
    topic: str,
    partition: int | None,
    offset: int | None,
    max_bytes: int,
    type_prefixes: tuple[str, ...],
    require_cloudevents: bool,
) -> Decoded:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _dead(
            DeadLetterReason.INVALID_JSON, f"invalid JSON: {exc}", raw, topic, partition, offset, max_bytes
        )
    if not isinstance(obj, dict):
        message = f"expected a JSON object at the top level, got {_json_kind(obj)}"
        return _dead(DeadLetterReason.NOT_AN_OBJECT, message, raw, topic, partition, offset, max_bytes)
    try:
        if "specversion" in obj:
            obj = from_cloudevent(obj, type_prefixes)
        elif require_cloudevents:
            raise AdapterError(
                DeadLetterReason.UNSUPPORTED_ENVELOPE, "specversion: missing (not a CloudEvent)"
            )
        elif first_error is not None:
            reason, message = classify_validation_error(first_error, obj)
            return _dead(reason, message, raw, topic, partition, offset, max_bytes, obj)
        return Decoded(_validate_python(obj), None)
    except ValidationError as exc:
        reason, message = classify_validation_error(exc, obj)
        return _dead(reason, message, raw, topic, partition, offset, max_bytes, obj)
    except AdapterError as exc:
        return _dead_from_adapter(exc, raw, topic, partition, offset, max_bytes, obj)


_ADAPTERS: dict[str, TypeAdapter[Any]] = {"stripe": billing_event_adapter, "segment": usage_event_adapter}


def decode_for_topic(
    raw: bytes | None,
    kind: TopicKind,
    *,
    topic: str,
    partition: int | None = None,
    offset: int | None = None,
    config: IngestConfig = DEFAULT_CONFIG,
) -> list[Decoded] | Skipped:
    """Decode one message of a topic of the given kind; never raises. See the module docstring."""
    if kind == "canonical" or kind == "cloudevents":
        return [
            decode_canonical(
                raw,
                topic=topic,
                partition=partition,
                offset=offset,
                max_bytes=config.max_bytes,
                type_prefixes=config.cloudevents_type_prefixes,
                require_cloudevents=kind == "cloudevents",
            )
        ]
    max_bytes = config.max_bytes
    obj: Any = None
    try:
        if not raw:
            return [
                _dead(
                    DeadLetterReason.INVALID_JSON, "empty message", raw, topic, partition, offset, max_bytes
                )
            ]
        if len(raw) > max_bytes:
            message = f"message is {len(raw)} bytes, above the {max_bytes}-byte limit"
            return [_dead(DeadLetterReason.OVERSIZE, message, raw, topic, partition, offset, max_bytes)]
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            message = f"invalid JSON: {exc}"
            return [_dead(DeadLetterReason.INVALID_JSON, message, raw, topic, partition, offset, max_bytes)]
        if not isinstance(obj, dict):
            message = f"expected a JSON object at the top level, got {_json_kind(obj)}"
            return [_dead(DeadLetterReason.NOT_AN_OBJECT, message, raw, topic, partition, offset, max_bytes)]
        if kind == "stripe":
            mapped = stripe.to_canonical(obj, account_for_customer=config.stripe_account_for_customer)
        elif kind == "segment":
            mapped = segment.to_canonical(
                obj,
                event_map=config.segment_event_map,
                unmapped_as_feature=config.segment_unmapped_as_feature,
            )
        else:
            message = f"unknown topic kind {kind!r}"
            return [
                _dead(
                    DeadLetterReason.UNSUPPORTED_ENVELOPE, message, raw, topic, partition, offset, max_bytes
                )
            ]
        if isinstance(mapped, Skipped):
            return mapped
        if not mapped:
            return Skipped(SkipReason.NO_CHURN_SIGNAL, f"{kind} adapter produced no event")
        adapter = _ADAPTERS[kind]
        events: list[Decoded] = []
        for candidate in mapped:
            try:
                events.append(Decoded(adapter.validate_python(candidate), None))
            except ValidationError as exc:
                reason, message = classify_validation_error(exc, candidate)
                return [_dead(reason, message, raw, topic, partition, offset, max_bytes, candidate)]
        return events
    except AdapterError as exc:
        return [_dead_from_adapter(exc, raw, topic, partition, offset, max_bytes, obj)]
    except Exception as exc:  # a bug or a shape no rule foresaw: dead-letter it, keep the pipeline going
        reason = DeadLetterReason.ADAPTER_ERROR if isinstance(obj, dict) else _unexpected_reason(exc)
        return [_dead(reason, _describe(exc), raw, topic, partition, offset, max_bytes)]


def events_of(result: list[Decoded] | Skipped) -> list[CanonicalEvent | HotEvent]:
    """The canonical events in a decode result (empty for skips and dead letters)."""
    if isinstance(result, Skipped):
        return []
    return [d.event for d in result if d.event is not None]


# --- helpers -------------------------------------------------------------------------------------------


def _dead(
    reason: DeadLetterReason,
    message: str,
    raw: bytes | None,
    topic: str,
    partition: int | None,
    offset: int | None,
    max_bytes: int,
    obj: Any = None,
) -> Decoded:
    ids: Mapping[str, Any] = obj if isinstance(obj, Mapping) else {}
    letter = make_dead_letter(
        reason,
        message,
        raw,
        topic=topic,
        partition=partition,
        offset=offset,
        max_bytes=max_bytes,
        event_id=ids.get("event_id"),
        account_id=ids.get("account_id"),
    )
    return Decoded(None, letter)


def _dead_from_adapter(
    exc: AdapterError,
    raw: bytes | None,
    topic: str,
    partition: int | None,
    offset: int | None,
    max_bytes: int,
    obj: Any,
) -> Decoded:
    ids: Mapping[str, Any] = obj if isinstance(obj, Mapping) else {}
    letter = make_dead_letter(
        exc.reason,
        exc.message,
        raw,
        topic=topic,
        partition=partition,
        offset=offset,
        max_bytes=max_bytes,
        event_id=exc.event_id or ids.get("event_id") or ids.get("id") or ids.get("messageId"),
        account_id=exc.account_id or ids.get("account_id"),
    )
    return Decoded(None, letter)


def _json_kind(value: Any) -> str:
    names = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _unexpected_reason(exc: Exception) -> DeadLetterReason:
    # OverflowError / ValueError from datetime arithmetic on extreme (but well-formed) timestamps.
    if isinstance(exc, OverflowError | ValueError):
        return DeadLetterReason.INVALID_EVENT
    return DeadLetterReason.ADAPTER_ERROR


def _describe(exc: Exception) -> str:
    return one_line(f"{type(exc).__name__}: {exc}")
