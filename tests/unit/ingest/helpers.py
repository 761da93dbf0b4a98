"""Test helpers: locate ../shared fixtures and build Stripe / Segment / canonical payload variants in code."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from schemas.events import CanonicalEvent
from streams.ingest.decode import DEFAULT_CONFIG, IngestConfig, decode_for_topic
from streams.ingest.outcome import Decoded, Skipped

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"
STRIPE_FIXTURES = SHARED_FIXTURES / "stripe"

T0 = 1_714_521_600  # 2024-05-01T00:00:00Z, unix seconds
DAY = 86_400


def stripe_fixture(name: str) -> dict[str, Any]:
    """A Stripe webhook fixture from ../shared/fixtures/stripe (read-only; callers get their own copy)."""
    path = STRIPE_FIXTURES / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: shared fixtures missing (clone with shared/ beside the repo)")
    return json.loads(path.read_text(encoding="utf-8"))


def openapi_object(kind: str) -> dict[str, Any]:
    """A Stripe-authored example object (newest API shape) from openapi_fixtures3.json."""
    return copy.deepcopy(stripe_fixture("openapi_fixtures3.json")["resources"][kind])


def price(
    unit_amount: int | None,
    *,
    interval: str = "month",
    interval_count: int = 1,
    currency: str = "usd",
    price_id: str = "price_basic",
    nickname: str | None = None,
    usage_type: str = "licensed",
    unit_amount_decimal: str | None = None,
) -> dict[str, Any]:
    return {
        "id": price_id,
        "object": "price",
        "currency": currency,
        "nickname": nickname,
        "lookup_key": None,
        "type": "recurring",
        "recurring": {"interval": interval, "interval_count": interval_count, "usage_type": usage_type},
        "unit_amount": unit_amount,
        "unit_amount_decimal": unit_amount_decimal
        if unit_amount_decimal is not None
        else (str(unit_amount) if unit_amount is not None else None),
        "transform_quantity": None,
    }


def item(unit_amount: int | None, quantity: int | None = 1, **price_kwargs: Any) -> dict[str, Any]:
    """A subscription item in the new API shape (no legacy `plan`); quantity None omits the key."""
    entry: dict[str, Any] = {
        "id": f"si_{price_kwargs.get('price_id', 'basic')}",
        "object": "subscription_item",
    }
    entry["price"] = price(unit_amount, **price_kwargs)
    if quantity is not None:
        entry["quantity"] = quantity
    return entry


def subscription(
    *items: dict[str, Any], status: str = "active", new_shape: bool = True, **fields: Any
) -> dict[str, Any]:
    """A subscription object. new_shape=True puts current_period_* on the items (API >= 2025-03-31) and
    drops the legacy top-level plan / quantity / current_period_*; False keeps them on the subscription."""
    sub = copy.deepcopy(stripe_fixture("customer.subscription.created.json")["data"]["object"])
    chosen = [copy.deepcopy(i) for i in items] if items else [item(1500)]
    if new_shape:
        for key in ("plan", "quantity", "current_period_end", "current_period_start", "discount"):
            sub.pop(key, None)
        sub["discounts"] = []
        for entry in chosen:
            entry.setdefault("current_period_start", T0)
            entry.setdefault("current_period_end", T0 + 30 * DAY)
    else:
        sub["current_period_start"], sub["current_period_end"] = T0, T0 + 30 * DAY
    sub["items"] = {"object": "list", "data": chosen}
    sub["status"] = status
    sub.update(fields)
    return sub


def envelope(
    event_type: str,
    obj: dict[str, Any],
    previous: dict[str, Any] | None = None,
    *,
    event_id: str = "evt_test_1",
    created: int = T0,
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": created,
        "type": event_type,
        "data": data,
    }


def decode_stripe(payload: dict[str, Any], config: IngestConfig = DEFAULT_CONFIG) -> list[Decoded] | Skipped:
    return decode_for_topic(orjson.dumps(payload), "stripe", topic="stripe-events", config=config)


def stripe_events(payload: dict[str, Any], config: IngestConfig = DEFAULT_CONFIG) -> list[CanonicalEvent]:
    """The canonical events of a payload; fails the test on a skip or a dead letter."""
    result = decode_stripe(payload, config)
    assert not isinstance(result, Skipped), f"unexpected skip: {result}"
    letters = [d.dead_letter for d in result if d.dead_letter is not None]
    assert not letters, f"unexpected dead letter: {letters[0].reason.value}: {letters[0].message}"
    events = [d.event for d in result if d.event is not None]
    models = [e for e in events if isinstance(e, BaseModel)]
    # The adapters build pydantic models only: the decoder's hot classes (ADR 0021) are for plain canonical bytes.
    assert len(models) == len(events), f"an adapter built a hot event: {events}"
    return models


def single_stripe_event(payload: dict[str, Any], config: IngestConfig = DEFAULT_CONFIG) -> Any:
    events = stripe_events(payload, config)
    assert len(events) == 1, [e.type for e in events]
    return events[0]


def only_dead_letter(result: list[Decoded] | Skipped) -> Any:
    assert isinstance(result, list) and len(result) == 1, result
    assert result[0].event is None, result[0].event
    assert result[0].dead_letter is not None
    return result[0].dead_letter


def segment_message(call: str = "track", event: str | None = "Signed In", **fields: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "type": call,
        "messageId": "msg-1",
        "userId": "user-1",
        "anonymousId": "anon-1",
        "timestamp": "2024-05-01T10:00:00.000Z",
        "sentAt": "2024-05-01T10:00:01.000Z",
        "receivedAt": "2024-05-01T10:00:02.000Z",
        "context": {"groupId": "acct_123", "library": {"name": "analytics.js", "version": "4.1.0"}},
        "properties": {},
    }
    if event is not None:
        msg["event"] = event
    msg.update(fields)
    return msg


def decode_segment(payload: dict[str, Any], config: IngestConfig = DEFAULT_CONFIG) -> list[Decoded] | Skipped:
    return decode_for_topic(orjson.dumps(payload), "segment", topic="segment-events", config=config)


def segment_event(payload: dict[str, Any], config: IngestConfig = DEFAULT_CONFIG) -> Any:
    result = decode_segment(payload, config)
    assert isinstance(result, list) and len(result) == 1, result
    assert result[0].dead_letter is None, result[0].dead_letter
    return result[0].event


def canonical(**fields: Any) -> dict[str, Any]:
    """A valid feature.used event with overrides."""
    base: dict[str, Any] = {
        "event_id": "evt-1",
        "account_id": "acct_1",
        "occurred_at": "2024-05-01T12:34:56Z",
        "source": "app",
        "type": "feature.used",
        "user_id": "u_1",
        "feature": "dashboards.export",
        "count": 3,
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}
