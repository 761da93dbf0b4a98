"""Segment / RudderStack track, identify and group calls to canonical usage event dicts (pure mapping)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from schemas.deadletter import DeadLetterReason
from schemas.events import USAGE_TYPES
from streams.ingest.outcome import AdapterError, Skipped, SkipReason

Json = Mapping[str, Any]
Out = dict[str, Any]
EventMap = Mapping[str, str | None]

MAX_NAME_CHARS = 64  # schemas.events.Name
MAX_COMMENT_CHARS = 2000  # NpsResponded.comment
MAX_TRAITS = 32  # AccountTraits.traits: at most 32 keys of <= 64 chars, values <= 128 chars
MAX_TRAIT_KEY_CHARS = 64
MAX_TRAIT_VALUE_CHARS = 128

# Track event name -> canonical usage type; None = skip deliberately. Names are matched after
# `normalise_event_name` (case, `_`, `-` and repeated spaces ignored). Covers Segment's B2B SaaS spec plus
# common names for the other usage types. Account lifecycle names (Trial Started/Ended, Account
# Created/Deleted) are billing facts: the billing topics are their source of truth, so they are skipped here
# rather than emitted twice with different ids.
DEFAULT_EVENT_MAP: dict[str, str | None] = {
    "Signed In": "session.started",
    "Logged In": "session.started",
    "User Signed In": "session.started",
    "User Logged In": "session.started",
    "Session Started": "session.started",
    "Signed Up": "user.added",
    "User Signed Up": "user.added",
    "Account Added User": "user.added",
    "Account Removed User": "user.removed",
    "Feature Used": "feature.used",
    "NPS Survey Submitted": "nps.responded",
    "NPS Submitted": "nps.responded",
    "Survey Responded": "nps.responded",
    "Ticket Opened": "ticket.opened",
    "Ticket Created": "ticket.opened",
    "Ticket Closed": "ticket.closed",
    "Ticket Resolved": "ticket.closed",
    "Usage Limit Reached": "usage_limit.reached",
    "API Called": "api.called",
    "API Call Made": "api.called",
    "Signed Out": None,
    "Trial Started": None,
    "Trial Ended": None,
    "Account Created": None,
    "Account Deleted": None,
}

ROLE_SYNONYMS: dict[str, str] = {
    "owner": "owner",
    "account owner": "owner",
    "admin": "admin",
    "administrator": "admin",
    "account admin": "admin",
    "champion": "champion",
    "member": "member",
    "user": "member",
    "editor": "member",
    "standard": "member",
    "contributor": "member",
    "viewer": "viewer",
    "read only": "viewer",
    "readonly": "viewer",
    "guest": "viewer",
    "billing": "billing",
    "billing admin": "billing",
    "finance": "billing",
}
PRIORITY_SYNONYMS: dict[str, str] = {
    "low": "low",
    "p4": "low",
    "normal": "normal",
    "medium": "normal",
    "p3": "normal",
    "high": "high",
    "p2": "high",
    "urgent": "urgent",
    "critical": "urgent",
    "p1": "urgent",
}


def normalise_event_name(name: str) -> str:
    """'Signed_In', 'signed-in' and ' Signed  In ' all match 'signed in'."""
    return " ".join(name.replace("_", " ").replace("-", " ").split()).casefold()


def build_event_map(mapping: EventMap) -> dict[str, str | None]:
    """Validated, normalised lookup table from a user mapping; raises ValueError for non-usage targets."""
    table: dict[str, str | None] = {}
    for name, target in mapping.items():
        if target is not None and target not in TRACK_BUILDERS:
            known = ", ".join(sorted(TRACK_BUILDERS))
            raise ValueError(f"segment event map: {name!r} -> {target!r} is not one of: {known}")
        table[normalise_event_name(name)] = target
    return table


# --- property readers ----------------------------------------------------------------------------------


def _obj(value: Any) -> Json:
    return value if isinstance(value, Mapping) else {}


def first(props: Json, *keys: str) -> Any:
    """The first present, non-null property among `keys`."""
    for key in keys:
        value = props.get(key)
        if value is not None:
            return value
    return None


def _id(value: Any) -> Any:
    """Ids may arrive as numbers; the contract wants strings (other types are left for validation)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def normalise_role(value: Any) -> str:
    """Map free-form role names onto the contract's roles; unknown or missing roles count as 'member'
    (only admin / champion / owner matter to the key-user rule, and those are matched here)."""
    if not isinstance(value, str):
        return "member"
    return ROLE_SYNONYMS.get(normalise_event_name(value), "member")


def normalise_priority(value: Any) -> Any:
    """Map common priority scales (Zendesk names, P1-P4, medium, critical); others go to validation."""
    if isinstance(value, str):
        return PRIORITY_SYNONYMS.get(value.strip().casefold(), value)
    return value


def message_user(msg: Json) -> Any:
    return _id(msg.get("userId")) or _id(msg.get("anonymousId"))


# --- track builders: (message, properties, event name) -> canonical payload fields ---------------------


def session_fields(msg: Json, props: Json, name: str) -> Out:
    return {"user_id": message_user(msg)}


def feature_fields(msg: Json, props: Json, name: str) -> Out:
    feature = first(props, "feature", "feature_name", "name")
    return {
        "user_id": message_user(msg),
        "feature": feature if feature is not None else name[:MAX_NAME_CHARS],
        "count": first(props, "count"),
    }


def unmapped_feature_fields(msg: Json, props: Json, name: str) -> Out:
    """Fallback for unmapped track names: the event name is the feature (cut to 64 characters), so
    `properties.name` of e.g. 'Report Exported' cannot masquerade as a feature."""
    return {"user_id": message_user(msg), "feature": name[:MAX_NAME_CHARS], "count": first(props, "count")}


def user_fields(msg: Json, props: Json, name: str) -> Out:
    # B2B SaaS spec: the message's userId is the user added or removed; an explicit property wins.
    return {
        "user_id": _id(first(props, "user_id", "userId")) or message_user(msg),
        "role": normalise_role(first(props, "role", "user_role")),
    }


def nps_fields(msg: Json, props: Json, name: str) -> Out:
    comment = first(props, "comment", "feedback", "reason")
    return {
        "user_id": message_user(msg),
        "score": first(props, "score", "nps", "nps_score", "rating", "value"),
        "comment": comment[:MAX_COMMENT_CHARS] if isinstance(comment, str) else comment,
    }


def ticket_fields(msg: Json, props: Json, name: str) -> Out:
    return {
        "ticket_id": _id(first(props, "ticket_id", "ticketId", "id")),
        "priority": normalise_priority(first(props, "priority")) or "normal",
    }


def usage_limit_fields(msg: Json, props: Json, name: str) -> Out:
    return {
        "limit": first(props, "limit", "limit_name", "name", "feature"),
        "used": first(props, "used", "usage", "current"),
        "quota": first(props, "quota", "limit_value", "max"),
    }


def api_fields(msg: Json, props: Json, name: str) -> Out:
    return {"count": first(props, "count", "calls", "requests")}


TrackBuilder = Callable[[Json, Json, str], Out]
TRACK_BUILDERS: dict[str, TrackBuilder] = {
    "session.started": session_fields,
    "feature.used": feature_fields,
    "user.added": user_fields,
    "user.removed": user_fields,
    "nps.responded": nps_fields,
    "ticket.opened": ticket_fields,
    "ticket.closed": ticket_fields,
    "usage_limit.reached": usage_limit_fields,
    "api.called": api_fields,
}
assert set(TRACK_BUILDERS) <= USAGE_TYPES, "every track target must be a canonical usage type"

DEFAULT_LOOKUP = build_event_map(DEFAULT_EVENT_MAP)


# --- group ---------------------------------------------------------------------------------------------


def _scalar_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list):
        parts = [t for t in (_scalar_text(v) for v in value if not isinstance(v, Mapping | list)) if t]
        return ",".join(parts)
    return None


def flatten_traits(traits: Json, prefix: str = "") -> dict[str, str]:
    """Nested traits as dotted keys with string values (bools 'true'/'false', lists comma-joined, nulls
    dropped), keys cut to 64 and values to 128 characters, the first 32 keys in sorted order."""
    flat: dict[str, str] = {}
    for key, value in traits.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_traits(value, f"{name}."))
        else:
            text = _scalar_text(value)
            if text is not None:
                flat[name[:MAX_TRAIT_KEY_CHARS]] = text[:MAX_TRAIT_VALUE_CHARS]
    if prefix:
        return flat
    return {k: flat[k] for k in sorted(flat)[:MAX_TRAITS]}


# --- the adapter ---------------------------------------------------------------------------------------


def source_of(msg: Json) -> str:
    """'rudderstack' when the payload says so (rudderId, a Rudder library, or RudderStack's `channel`),
    else 'segment'. Segment warehouse exports also carry `channel`; the label is informational only."""
    library = _obj(_obj(msg.get("context")).get("library")).get("name")
    if "rudderId" in msg or (isinstance(library, str) and "rudder" in library.casefold()) or "channel" in msg:
        return "rudderstack"
    return "segment"


def envelope_fields(msg: Json, account_id: Any, source: str) -> Out:
    event_id = _id(msg.get("messageId"))
    if event_id is None:
        raise AdapterError(DeadLetterReason.INVALID_EVENT, "messageId: missing", account_id=_str(account_id))
    occurred_at = first(msg, "timestamp", "originalTimestamp")
    if occurred_at is None:
        raise AdapterError(
            DeadLetterReason.INVALID_EVENT,
            "timestamp: missing (neither timestamp nor originalTimestamp)",
            event_id=_str(event_id),
            account_id=_str(account_id),
        )
    return {"event_id": event_id, "account_id": account_id, "occurred_at": occurred_at, "source": source}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _require_account(account_id: Any, where: str, msg: Json) -> Any:
    if account_id is None or (isinstance(account_id, str) and not account_id.strip()):
        raise AdapterError(
            DeadLetterReason.MISSING_ACCOUNT,
            f"{where}: missing (the account id of a B2B event)",
            event_id=_str(msg.get("messageId")),
        )
    return _id(account_id)


def to_canonical(
    msg: Json, *, event_map: Mapping[str, str | None] = DEFAULT_LOOKUP, unmapped_as_feature: bool = True
) -> list[Out] | Skipped:
    """Canonical usage event dicts for one Segment / RudderStack message, or a deliberate Skipped.

    `event_map` must come from `build_event_map` (normalised keys). Unmapped track names become
    feature.used with the event name as the feature when `unmapped_as_feature`, else they are skipped.
    Raises AdapterError for messages that cannot be mapped (missing account, messageId or timestamp).
    """
    call = msg.get("type")
    if call == "track":
        name = msg.get("event")
        if not isinstance(name, str) or not name.strip():
            raise AdapterError(
                DeadLetterReason.INVALID_EVENT,
                "event: missing track event name",
                event_id=_str(msg.get("messageId")),
            )
        key = normalise_event_name(name)
        if key in event_map:
            target = event_map[key]
            if target is None:
                return Skipped(SkipReason.UNMAPPED_EVENT, f"track {name[:80]!r} is mapped to nothing")
            build = TRACK_BUILDERS[target]
        elif unmapped_as_feature:
            target, build = "feature.used", unmapped_feature_fields
        else:
            return Skipped(SkipReason.UNMAPPED_EVENT, f"track {name[:80]!r} has no mapping")
        account_id = _require_account(_obj(msg.get("context")).get("groupId"), "context.groupId", msg)
        props = _obj(msg.get("properties"))
        payload = build(msg, props, name.strip())
        fields = {k: v for k, v in payload.items() if v is not None}
        return [{**fields, **envelope_fields(msg, account_id, source_of(msg)), "type": target}]
    if call == "group":
        account_id = _require_account(msg.get("groupId"), "groupId", msg)
        traits = flatten_traits(_obj(msg.get("traits")) or _obj(_obj(msg.get("context")).get("traits")))
        if not traits:
            return Skipped(SkipReason.NO_CHURN_SIGNAL, "group call without traits")
        return [
            {"traits": traits, **envelope_fields(msg, account_id, source_of(msg)), "type": "account.traits"}
        ]
    if call == "identify":
        return Skipped(SkipReason.IDENTIFY_CALL, "identify: user traits are not account behaviour")
    if call in ("page", "screen", "alias"):
        return Skipped(SkipReason.UNSUPPORTED_CALL, f"{call} calls are not consumed")
    if "batch" in msg:
        raise AdapterError(
            DeadLetterReason.UNSUPPORTED_ENVELOPE,
            "batch: split Segment batches into single messages upstream",
        )
    raise AdapterError(
        DeadLetterReason.UNSUPPORTED_ENVELOPE,
        f"type: {call!r:.40} is not a Segment call (track, identify, group, page, screen, alias)",
        event_id=_str(msg.get("messageId")),
    )
