"""The account table value: engagement state + MRR ledger + NPS history, applied and encoded together.

`apply(aggregate, event)` is the one transition the worker and replay call per event. It delegates to
`account.apply_event` (engagement, subscription, health inputs, dedupe, lateness) and, for events that state
accepted, to `mrr.apply_billing_event` (monthly MRR facts for cohorts). `cohort_snapshot` is what the cohort
aggregator needs of an account: its ledger, its NPS responses by month, and its segment value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson

from schemas.events import BILLING_TYPES, CanonicalEvent
from streams.domain.account import AccountState, apply_event, new_account
from streams.domain.codec import decode_state, encode_state
from streams.domain.config import DomainConfig
from streams.domain.mrr import LateEventError, MrrLedger, apply_billing_event, decode_ledger, encode_ledger

FORMAT_VERSION = 1
# NPS responses kept per account for monthly company NPS: newest per (month, user), at most this many.
MAX_NPS_RESPONSES = 48


class NpsResponse(NamedTuple):
    """The fields of an nps.responded event that monthly NPS needs (duck-types NpsResponded)."""

    occurred_at: Any  # datetime
    event_id: str
    account_id: str
    user_id: str
    score: int


@dataclass(slots=True)
class AccountAggregate:
    """Everything the worker keeps per account, stored as one table value (one write per batch)."""

    state: AccountState
    ledger: MrrLedger
    nps: list[tuple[int, str, str, int]] = field(default_factory=list)  # (at_s, event_id, user_id, score)

    @property
    def account_id(self) -> str:
        return self.state.account_id


class Applied(NamedTuple):
    aggregate: AccountAggregate
    outcome: str  # processed / duplicate / too_late
    ledger_changed: bool


def new_aggregate(account_id: str) -> AccountAggregate:
    return AccountAggregate(new_account(account_id), MrrLedger(account_id))


def apply(
    agg: AccountAggregate,
    event: CanonicalEvent,
    config: DomainConfig,
    *,
    source: str | None = None,
    offset: int | None = None,
) -> Applied:
    """Apply one event to every part of the account; mutates `agg` in place and returns it."""
    result = apply_event(agg.state, event, config, source=source, offset=offset)
    if result.outcome != "processed":
        return Applied(agg, result.outcome, False)
    etype = event.type
    changed = False
    if etype in BILLING_TYPES:
        try:
            agg.ledger, months = apply_billing_event(
                agg.ledger, event, lateness=timedelta(days=config.allowed_lateness_days)
            )
            changed = bool(months)
        except LateEventError:
            # The engagement state's lateness rule is at least as strict, so this does not happen in
            # practice; if it does, the ledger keeps its folded history and the event still counts once.
            changed = False
    elif etype == "nps.responded":
        changed = record_nps_response(agg, event)  # type: ignore[arg-type]
    return Applied(agg, "processed", changed)


def record_nps_response(agg: AccountAggregate, event: Any) -> bool:
    """Keep the newest response per (month, user), bounded; True when monthly NPS inputs changed."""
    at_s = int(event.occurred_at.timestamp())
    month = _month(at_s)
    keep = []
    for item in agg.nps:
        if item[2] == event.user_id and _month(item[0]) == month:
            if (item[0], item[1]) >= (at_s, event.event_id):
                return False  # an equal or newer answer of this user this month is already kept
            continue
        keep.append(item)
    keep.append((at_s, event.event_id, event.user_id, event.score))
    keep.sort()
    agg.nps = keep[-MAX_NPS_RESPONSES:]
    return True


def nps_responses(agg: AccountAggregate) -> list[NpsResponse]:
    return [
        NpsResponse(datetime.fromtimestamp(at, tz=UTC), eid, agg.account_id, user, score)
        for at, eid, user, score in agg.nps
    ]


def _month(at_s: int) -> str:
    d = datetime.fromtimestamp(at_s, tz=UTC)
    return f"{d.year:04d}-{d.month:02d}"


def encode_aggregate(agg: AccountAggregate) -> bytes:
    """Version byte, 4-byte length of the state part, the state (its own codec), then ledger + NPS as JSON."""
    state = encode_state(agg.state)
    rest = orjson.dumps([encode_ledger(agg.ledger), agg.nps])
    return bytes((FORMAT_VERSION,)) + len(state).to_bytes(4, "big") + state + rest


def decode_aggregate(data: bytes) -> AccountAggregate:
    if not data or data[0] != FORMAT_VERSION:
        raise ValueError(f"unknown account aggregate format {data[:1]!r}")
    n = int.from_bytes(data[1:5], "big")
    state = decode_state(data[5 : 5 + n])
    ledger_data, nps = orjson.loads(data[5 + n :])
    return AccountAggregate(state, decode_ledger(ledger_data), [tuple(x) for x in nps])  # type: ignore[misc]


def segment_of(agg: AccountAggregate, dimension: str) -> str:
    """The account's value of the segment dimension: `plan`, or any trait name (e.g. industry)."""
    if dimension == "plan":
        return agg.state.plan or "unknown"
    return agg.state.traits.get(dimension) or "unknown"


def cohort_snapshot(agg: AccountAggregate, dimension: str) -> bytes:
    """What the cohort aggregator keeps per account (latest wins, so re-sending is harmless)."""
    return orjson.dumps(
        {"ledger": encode_ledger(agg.ledger), "nps": agg.nps, "segment": segment_of(agg, dimension)}
    )
