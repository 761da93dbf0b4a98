"""session.started and feature.used, most of a product's usage stream, as compiled classes (ADR 0021).

The decoder builds these instead of the schema's pydantic models when an event's JSON is plain
(`streams.ingest.decode.decode_hot`): every attribute has the value, and the type, the model would give it, so the
domain reads either the same way. A pydantic model costs ~3 µs an event to validate and build, and every attribute
read on it goes through its `__getattr__` hook; these are built and read natively.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from schemas.events import canonical_event_adapter


class HotUsageEvent:
    """The envelope fields every canonical event has, with the values the schema's validation would give."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "event_id", "account_id", "occurred_at", "source", "schema_version", "type", "user_id",
    )

    def __init__(self, event_type: str, event_id: str, account_id: str, occurred_at: datetime, source: str,
                 user_id: str | None) -> None:
        self.event_id = event_id
        self.account_id = account_id
        self.occurred_at = occurred_at  # timezone-aware, UTC
        self.source = source
        self.schema_version = 1
        self.type = event_type
        self.user_id = user_id

    def fields(self) -> dict[str, Any]:
        """Field name -> value, as the model's `model_dump()` gives them."""
        return {name: getattr(self, name) for name in self.FIELDS}

    def to_model(self) -> Any:
        """The schema's model of this event (for anything that needs the contract object)."""
        return canonical_event_adapter.validate_python(self.fields())

    def model_dump_json(self) -> str:
        """The event's canonical JSON, as the model's `model_dump_json` writes it."""
        return str(self.to_model().model_dump_json())

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and isinstance(other, HotUsageEvent) and self.fields() == other.fields()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.fields()!r})"


class HotSessionStarted(HotUsageEvent):
    """schemas.events.SessionStarted."""

    def __init__(self, event_id: str, account_id: str, occurred_at: datetime, source: str, user_id: str) -> None:
        super().__init__("session.started", event_id, account_id, occurred_at, source, user_id)


class HotFeatureUsed(HotUsageEvent):
    """schemas.events.FeatureUsed."""

    FIELDS: ClassVar[tuple[str, ...]] = (*HotUsageEvent.FIELDS, "feature", "count")

    def __init__(self, event_id: str, account_id: str, occurred_at: datetime, source: str, user_id: str | None,
                 feature: str, count: int) -> None:
        super().__init__("feature.used", event_id, account_id, occurred_at, source, user_id)
        self.feature = feature
        self.count = count


HotEvent = HotSessionStarted | HotFeatureUsed
