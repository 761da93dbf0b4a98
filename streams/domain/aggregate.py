"""The account table value: engagement state + MRR ledger + NPS history + alert book, applied together.

`apply(aggregate, event)` is the one transition the worker and replay call per event. It delegates to
`account.apply_event` (engagement, subscription, health inputs, dedupe, lateness), to `mrr.apply_billing_event`
(monthly MRR facts for cohorts), and decides WHEN alerts are evaluated (docs/adr/0004):
- day ends: every rule is evaluated at the end of each UTC day (23:59:59) of the account's life, once the
  stream has passed that day, on the state holding the usage of that day and before: when a USAGE event
  moves the account's usage clock to a later day, the ends of the days from its clock day up to the day before
  the event are evaluated first (`close_days`); when a partition's event-time watermark passes day ends
  without an event of the account, `tick` evaluates them. Each day end is evaluated exactly once, by whichever
  comes first, on the same state, so alerts do not depend on batching, tick timing or restarts;
- billing checkpoints: right after a billing event, the billing triggers (payment failed, cancellation
  scheduled, downgrade, churn) are evaluated at the billing stream's time, so those alerts are immediate. They
  do not move the clock that usage checkpoints use: a worker catching up may read the small billing topic weeks
  ahead of usage, and usage rules must never be judged at a time whose usage has not arrived yet.
None of these depend on how records were batched or when a timer ran, so the worker and replay decide the same
alerts (up to events later than the watermark delay, and billing read out of step with usage: ADR 0004).
`cohort_snapshot` is what the cohort aggregator needs of an account.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

import orjson

from schemas.alerts import AlertAction, AlertRecord
from schemas.events import BILLING_TYPES, CanonicalEvent, canonical_event_adapter
from streams.domain.account import AccountState, already_applied, apply_event, new_account
from streams.domain.alerts import (
    AlertBook,
    apply_action,
    decode_book,
    encode_book,
    evaluate_account,
    new_book,
)
from streams.domain.codec import decode_state, encode_state
from streams.domain.config import DomainConfig
from streams.domain.engagement import DAY_S, epoch_of, utc_of
from streams.domain.hot_events import HotEvent
from streams.domain.mrr import (
    LateEventError,
    MrrLedger,
    apply_billing_event,
    decode_ledger,
    encode_ledger,
    month_of_day,
)
from streams.domain.thresholds import Thresholds, load_thresholds, thresholds_for

# Triggers decided by billing registers alone: evaluated right after the billing event (immediate alerts).
BILLING_TRIGGERS = frozenset({"payment_failed", "cancellation_scheduled", "downgrade"})

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
    book: AlertBook | None = None  # created on first evaluation
    # Billing events dated after the usage front, oldest first: (event time s, canonical JSON). Applied when
    # the front passes them, so billing and usage meet the state in event-time order (ADR 0006).
    held: list[tuple[int, bytes]] = field(default_factory=list)
    # Event time (s) the usage stream is known to have reached for this account's partition (ticks).
    front_s: int = 0

    @property
    def account_id(self) -> str:
        return self.state.account_id


class Applied:
    """What `apply` did (a plain class for the compiled build, as account.ApplyResult)."""

    __slots__ = ("aggregate", "alerts", "ledger_changed", "outcome")

    def __init__(self, aggregate: AccountAggregate, outcome: str, ledger_changed: bool,
                 alerts: list[AlertRecord]) -> None:
        self.aggregate = aggregate
        self.outcome = outcome  # processed / duplicate / too_late
        self.ledger_changed = ledger_changed
        self.alerts = alerts


@dataclass(frozen=True)
class Rules:
    """Thresholds and domain config: everything alert evaluation needs, loaded once per worker."""

    thresholds: Thresholds
    config: DomainConfig
    # The default rules' RuleSet, resolved once here. Not a cached_property: in the compiled class that is called
    # on every access (found in a profile: override matching and a pydantic private attribute per evaluation).
    defaults: Any = field(init=False, repr=False, compare=False)
    # False when the thresholds file has no overrides: every account has the default rules.
    has_overrides: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", thresholds_for(self.thresholds, None))
        object.__setattr__(self, "has_overrides", bool(self.thresholds.overrides))

    @classmethod
    def load(cls, path: Any = None, config: DomainConfig | None = None) -> Rules:
        return cls(load_thresholds(path), config or DomainConfig())

    def for_account(self, state: AccountState) -> Any:
        if not self.has_overrides:
            return self.defaults  # no override matching per evaluation
        return thresholds_for(self.thresholds, state.plan, state.traits)


_NO_ALERTS: list[AlertRecord] = []


def new_aggregate(account_id: str) -> AccountAggregate:
    return AccountAggregate(new_account(account_id), MrrLedger(account_id))


def _newest_event_s(state: AccountState) -> int | None:
    usage, billing = state.last_event_s, state.last_billing_s
    if usage is None:
        return billing
    return usage if billing is None or usage >= billing else billing


def _book(agg: AccountAggregate) -> AlertBook:
    if agg.book is None:
        agg.book = new_book(agg.account_id)
    return agg.book


def _is_billing_trigger(trigger: str) -> bool:
    return trigger in BILLING_TRIGGERS


def _not_billing_trigger(trigger: str) -> bool:
    return trigger not in BILLING_TRIGGERS


def _evaluate_at(
    agg: AccountAggregate, as_of_s: int, rules: Rules, triggered_by: datetime | None, *, only_billing: bool = False
) -> list[AlertRecord]:
    """Evaluate the account at event time as_of_s. Billing triggers are only decided when every billing event
    applied is dated at or before as_of (a billing fact from the future of as_of would stamp an alert before
    its cause); they wait for a later checkpoint otherwise."""
    state = agg.state
    if only_billing:
        triggers: Any = _is_billing_trigger
    elif state.last_billing_s is None or state.last_billing_s <= max(as_of_s, _book(agg).as_of_s):
        triggers = None
    else:
        triggers = _not_billing_trigger
    _, records = evaluate_account(
        _book(agg), state, utc_of(as_of_s), rules.for_account(state), rules.config,
        triggered_by_event_at=triggered_by, triggers=triggers,
    )
    return records


def _day_end(day: int) -> int:
    return day * DAY_S + DAY_S - 1


def _first_open_day(agg: AccountAggregate) -> int | None:
    """The first UTC day whose end is not evaluated yet (None before the account's first event).

    Never earlier than the account's usage clock day: a day before it had its end evaluated when the usage
    clock moved past it (or the account did not exist yet)."""
    state = agg.state
    newest = _newest_event_s(state)
    if newest is None:
        return None
    floor_day = state.engagement.clock_day if state.last_event_s is not None else newest // DAY_S
    evaluated = agg.book.as_of_s if agg.book is not None else 0
    return max(floor_day, (evaluated + 1) // DAY_S) if evaluated else floor_day


def usage_front(agg: AccountAggregate) -> int:
    """The event time up to which this account's usage has arrived: its newest usage, or a tick's front."""
    last = agg.state.last_event_s
    return max(agg.front_s, last) if last is not None else agg.front_s


class Released:
    """What releasing held billing (or closing day ends) did; a plain class for the compiled build, as Applied."""

    __slots__ = ("alerts", "ledger_changed")

    def __init__(self, alerts: list[AlertRecord], ledger_changed: bool) -> None:
        self.alerts = alerts
        self.ledger_changed = ledger_changed


def release_held(agg: AccountAggregate, config: DomainConfig, rules: Rules | None, up_to_s: int) -> Released:
    """Apply the held billing events dated at or before `up_to_s`, oldest first."""
    held = agg.held
    if not held or held[0][0] > up_to_s:
        return Released(_NO_ALERTS, False)
    alerts: list[AlertRecord] = []
    ledger_changed = False
    while held and held[0][0] <= up_to_s:
        at_s, raw = held.pop(0)
        applied = _apply_now(agg, canonical_event_adapter.validate_json(raw), config, None, None, rules, at_s)
        alerts.extend(applied.alerts)
        ledger_changed = ledger_changed or applied.ledger_changed
    return Released(alerts, ledger_changed)


def close_days(
    agg: AccountAggregate, rules: Rules, before_day: int, config: DomainConfig | None = None
) -> Released:
    """Evaluate every rule at the end of each day not yet evaluated, up to (excluding) `before_day`; held
    billing dated before each day end is applied first."""
    first = _first_open_day(agg)
    if first is None or first >= before_day:
        return Released(_NO_ALERTS, False)
    records: list[AlertRecord] = []
    ledger_changed = False
    for day in range(first, before_day):
        at_s = _day_end(day)
        if agg.held and agg.held[0][0] <= at_s:
            released = release_held(agg, config or rules.config, rules, at_s)
            records.extend(released.alerts)
            ledger_changed = ledger_changed or released.ledger_changed
        # triggered_by: the day's newest usage event for a day the account was active; a silent day's end is a
        # pure time tick.
        last = agg.state.last_event_s
        cause = utc_of(last) if last is not None and last // DAY_S == day else None
        records.extend(_evaluate_at(agg, at_s, rules, cause))
    return Released(records, ledger_changed)


class Ticked:
    """What `tick` did; a plain class for the compiled build, as Applied."""

    __slots__ = ("alerts", "changed", "ledger_changed")

    def __init__(self, alerts: list[AlertRecord], changed: bool, ledger_changed: bool) -> None:
        self.alerts = alerts
        self.changed = changed  # the aggregate must be written back (day ends evaluated, or held billing applied)
        self.ledger_changed = ledger_changed


def tick(agg: AccountAggregate, watermark: datetime, rules: Rules, front: datetime | None = None) -> Ticked:
    """Event-time progress without events for this account: the day ends the watermark has passed, then the
    held billing up to the usage front (newest usage of the partition; the watermark when not given)."""
    held_before = len(agg.held)
    evaluated_before = agg.book.as_of_s if agg.book is not None else 0
    watermark_s = epoch_of(watermark)
    closed = close_days(agg, rules, watermark_s // DAY_S)
    front_s = epoch_of(front) if front is not None else watermark_s
    if front_s > agg.front_s:
        agg.front_s = front_s
    released = release_held(agg, rules.config, rules, usage_front(agg))
    alerts = closed.alerts + released.alerts if released.alerts else closed.alerts
    # Written back when day ends were evaluated (the book moved, even without a record: otherwise every tick
    # re-evaluates every day since the last write) or held billing was applied. A moved front alone is not
    # worth a write: a stale front only holds billing a little longer.
    evaluated = (agg.book.as_of_s if agg.book is not None else 0) != evaluated_before
    changed = evaluated or len(agg.held) != held_before
    return Ticked(alerts, changed, closed.ledger_changed or released.ledger_changed)


def due(agg: AccountAggregate, watermark: datetime, front: datetime | None = None) -> bool:
    """Can a tick at this watermark change the account? Lets the timer skip accounts without evaluating."""
    watermark_s = epoch_of(watermark)
    if agg.held and agg.held[0][0] <= (epoch_of(front) if front is not None else watermark_s):
        return True
    first = _first_open_day(agg)
    return first is not None and first < watermark_s // DAY_S


def act(agg: AccountAggregate, action: AlertAction, rules: Rules) -> list[AlertRecord]:
    """A person's acknowledge / snooze / resolve from the alert-actions topic."""
    _, records = apply_action(_book(agg), action, action.occurred_at, rs=rules.for_account(agg.state))
    return records


def _billing_checkpoint(agg: AccountAggregate, event: CanonicalEvent, rules: Rules, event_s: int) -> list[AlertRecord]:
    """Billing triggers right away, at the billing stream's time. The book's clock is left where the usage
    checkpoints put it: billing may be read weeks ahead of usage while a worker catches up, and usage rules
    must not be judged at a time whose usage has not arrived yet."""
    book = _book(agg)
    usage_clock = book.as_of_s
    at_s = max(event_s, agg.state.last_billing_s or 0)
    records = _evaluate_at(agg, at_s, rules, event.occurred_at, only_billing=True)
    book.as_of_s = usage_clock if usage_clock else book.as_of_s
    return records


def apply(
    agg: AccountAggregate,
    event: CanonicalEvent | HotEvent,
    config: DomainConfig,
    *,
    source: str | None = None,
    offset: int | None = None,
    rules: Rules | None = None,
    at_s: int | None = None,
) -> Applied:
    """Apply one event to every part of the account; mutates `agg` in place and returns it.

    A billing event dated after the account's usage front is held (ADR 0006) and applied when usage or a tick
    passes it; a usage event first closes the days before it and applies the held billing before it. With
    `rules`, alerts are evaluated at the checkpoints described in the module docstring. `at_s`, when the caller
    has it, is int(event.occurred_at.timestamp()) (saves converting the datetime again).
    """
    if at_s is None:
        at_s = epoch_of(event.occurred_at)
    if event.type in BILLING_TYPES:
        if at_s > usage_front(agg):
            return _hold(agg, cast(CanonicalEvent, event), at_s, source, offset)  # a hot event is a usage event
        return _apply_now(agg, event, config, source, offset, rules, at_s)
    state = agg.state
    alerts: list[AlertRecord] = _NO_ALERTS
    ledger_changed = False
    last = state.last_event_s
    if (last is None or at_s > last) and not (
        source is not None and offset is not None and already_applied(state, source, offset)
    ):
        # Only events that will be applied can move the usage clock (duplicates and late events are older).
        # Both calls are skipped when they have nothing to do (the common case: most usage events land on the
        # usage clock's day with nothing held before them): close_days starts at the clock day at the earliest.
        if rules is not None and (last is None or state.engagement.clock_day < at_s // DAY_S):
            closed = close_days(agg, rules, at_s // DAY_S, config)
            alerts, ledger_changed = closed.alerts, closed.ledger_changed
        held = agg.held
        if held and held[0][0] <= at_s:
            released = release_held(agg, config, rules, at_s)
            if released.alerts:
                alerts = alerts + released.alerts
            ledger_changed = ledger_changed or released.ledger_changed
    applied = _apply_now(agg, event, config, source, offset, rules, at_s)
    if not alerts and not ledger_changed:
        return applied
    return Applied(agg, applied.outcome, ledger_changed or applied.ledger_changed, alerts + applied.alerts)


def _hold(agg: AccountAggregate, event: CanonicalEvent, at_s: int, source: str | None,
          offset: int | None) -> Applied:
    state = agg.state
    if source is not None and offset is not None:
        if already_applied(state, source, offset):
            return Applied(agg, "duplicate", False, _NO_ALERTS)
        state.offsets[source] = offset  # a redelivered record is a duplicate while it is held
    raw = event.model_dump_json().encode()
    eid = event.event_id
    if any(canonical_event_adapter.validate_json(r).event_id == eid for t, r in agg.held if t == at_s):
        return Applied(agg, "duplicate", False, _NO_ALERTS)  # a webhook retry of a held event
    insort(agg.held, (at_s, raw))
    return Applied(agg, "processed", False, _NO_ALERTS)


def _apply_now(
    agg: AccountAggregate,
    event: CanonicalEvent | HotEvent,
    config: DomainConfig,
    source: str | None,
    offset: int | None,
    rules: Rules | None,
    at_s: int,
) -> Applied:
    """The event reaches the state now: engagement / subscription, MRR ledger, NPS, billing checkpoint."""
    alerts: list[AlertRecord] = _NO_ALERTS
    etype = event.type
    billing = etype in BILLING_TYPES
    result = apply_event(agg.state, event, config, source=source, offset=offset, at_s=at_s)
    if result.outcome != "processed":
        return Applied(agg, result.outcome, False, alerts)
    changed = False
    if billing:
        event = cast(CanonicalEvent, event)  # a hot event (domain.hot_events) is a usage event
        try:
            before = agg.ledger
            agg.ledger, _months = apply_billing_event(
                agg.ledger, event, lateness=timedelta(days=config.allowed_lateness_days)
            )
            # Any new ledger, not only changed month facts: a payment that moves only the ledger's watermark
            # still moves the company's horizon (its month appears in the portfolio), and the cohort aggregator
            # must see it as replay does. apply_billing_event returns the same object when nothing changed.
            changed = agg.ledger is not before
        except LateEventError:
            # The engagement state's lateness rule is at least as strict, so this does not happen in
            # practice; if it does, the ledger keeps its folded history and the event still counts once.
            changed = False
        if rules is not None:
            alerts = alerts + _billing_checkpoint(agg, event, rules, at_s)
    elif etype == "nps.responded":
        changed = record_nps_response(agg, event, at_s)
    return Applied(agg, "processed", changed, alerts)


def record_nps_response(agg: AccountAggregate, event: Any, at_s: int | None = None) -> bool:
    """Keep the newest response per (month, user), bounded; True when monthly NPS inputs changed. `at_s`: the
    event's whole epoch seconds when the caller has them."""
    if at_s is None:
        at_s = epoch_of(event.occurred_at)
    month = month_of_day(at_s // DAY_S)
    keep = []
    for item in agg.nps:
        if item[2] == event.user_id and month_of_day(item[0] // DAY_S) == month:
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


def encode_aggregate(agg: AccountAggregate) -> bytes:
    """Version byte, 4-byte length of the state part, the state (its own codec), then ledger + NPS as JSON."""
    state = encode_state(agg.state)
    book = encode_book(agg.book) if agg.book is not None else None
    held = [[at, raw.decode()] for at, raw in agg.held]
    rest = orjson.dumps([encode_ledger(agg.ledger), agg.nps, book, held, agg.front_s])
    return bytes((FORMAT_VERSION,)) + len(state).to_bytes(4, "big") + state + rest


def decode_aggregate(data: bytes) -> AccountAggregate:
    if not data or data[0] != FORMAT_VERSION:
        raise ValueError(f"unknown account aggregate format {data[:1]!r}")
    n = int.from_bytes(data[1:5], "big")
    state = decode_state(data[5 : 5 + n])
    ledger_data, nps, book, *rest = orjson.loads(data[5 + n :])
    held, front_s = rest if rest else ([], 0)  # values written before ADR 0006 have neither
    return AccountAggregate(
        state, decode_ledger(ledger_data), [tuple(x) for x in nps],  # type: ignore[misc]
        decode_book(book) if book is not None else None,
        [(at, raw.encode()) for at, raw in held], front_s,
    )


def read_model(agg: AccountAggregate, config: DomainConfig) -> dict[str, Any]:
    """The account's health record (Redis, HTTP, health topic): state view + open alerts + ledger cohort.

    The cohort is the ledger's (first month that ends paying), the same definition the cohort tables use.
    """
    from streams.domain.alerts import open_alerts
    from streams.domain.codec import to_read_model

    record = to_read_model(agg.state, config=config)
    record["cohort"] = agg.ledger.first_paid_month
    record["open_alerts"] = open_alerts(agg.book) if agg.book is not None else []
    return record


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
