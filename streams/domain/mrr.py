"""Per-account MRR ledger in event time: monthly MRR, movements, activation cohort (see docs/metrics.md)."""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

from schemas.events import BILLING_TYPES, Envelope, SubscriptionSnapshot
from streams.domain.engagement import EPOCH

# How far behind the account's newest billing event an event may be and still count. The pipeline passes
# its configured bound (`allowed_lateness_days`); months entirely older than it are folded and final.
DEFAULT_LATENESS = timedelta(days=7)
# Month records older than this many months (counted back from the newest event's month) are dropped;
# the activation cohort and its MRR survive the fold.
DEFAULT_RETENTION_MONTHS = 36
CODEC_VERSION = 1

_US = timedelta(microseconds=1)

# Subscription statuses as the ledger tracks them (MRR-relevant only; dunning lives elsewhere).
STATUS_NONE = "none"
STATUS_TRIALING = "trialing"
STATUS_TRIAL_EXPIRED = "trial_expired"
STATUS_ACTIVE = "active"
STATUS_PAUSED = "paused"
STATUS_CANCELED = "canceled"

# Change-point kinds: the only billing facts that can move MRR or the trial state.
KIND_SET = "set"  # a subscription snapshot: started / changed / renewed / reactivated / trial converted
KIND_CANCEL = "cancel"
KIND_PAUSE = "pause"
KIND_RESUME = "resume"
KIND_TRIAL = "trial"
KIND_TRIAL_END = "trial_end"

_KIND_BY_TYPE = {
    "subscription.started": KIND_SET,
    "subscription.changed": KIND_SET,
    "subscription.renewed": KIND_SET,
    "subscription.reactivated": KIND_SET,
    "trial.converted": KIND_SET,
    "subscription.canceled": KIND_CANCEL,
    "subscription.paused": KIND_PAUSE,
    "subscription.resumed": KIND_RESUME,
    "trial.started": KIND_TRIAL,
    "trial.expired": KIND_TRIAL_END,
}


class LateEventError(ValueError):
    """A billing event for a month already folded (older than the lateness bound); dead-letter it."""


class SubscriptionState(NamedTuple):
    """What the replay carries from one change point to the next."""

    mrr: int  # effective MRR now, minor units (0 while trialing, paused or canceled)
    contract_mrr: int  # MRR of the latest snapshot, minor units: what a resume restores
    status: str
    currency: str


INITIAL_STATE = SubscriptionState(0, 0, STATUS_NONE, "")


class ChangePoint(NamedTuple):
    """One MRR-relevant billing event, kept while its month is open; sorted by (at_us, event_id)."""

    at_us: int  # occurred_at, microseconds since the Unix epoch (UTC)
    event_id: str
    kind: str
    mrr: int  # minor units; only meaningful for KIND_SET
    currency: str  # only meaningful for KIND_SET


@dataclass(slots=True)
class MrrLedger:
    """One account's MRR history: final month ends, open months' change points, and derived current state.

    Months are UTC calendar months "YYYY-MM"; money is integer minor units.
    """

    account_id: str
    # --- derived by replay (kept so reads need no replay) ---
    mrr: int = 0  # current MRR after every applied event
    status: str = STATUS_NONE
    currency: str = ""
    first_paid_month: str | None = None  # activation cohort: first month that ENDS with MRR > 0
    activation_mrr: int = 0  # MRR at the end of first_paid_month (the cohort's initial MRR)
    trial_month: str | None = None  # month of the account's earliest trial.started
    # --- history ---
    watermark_us: int | None = None  # newest billing event time seen, epoch microseconds
    first_month: str | None = None  # month of month_ends[0]
    opening_mrr: int = 0  # MRR at the start of first_month (non-zero only after truncation)
    month_ends: list[int] = field(default_factory=list)  # MRR at the end of first_month, first_month+1, ...
    history_truncated: bool = False  # months before first_month were dropped and cannot be reported
    # --- open window: months >= open_from are replayed from `base` + `pending` on every change ---
    open_from: str | None = None
    base: SubscriptionState = INITIAL_STATE  # state at the start of open_from
    pending: list[ChangePoint] = field(default_factory=list)

    @property
    def churned(self) -> bool:
        """Was a paying customer at some month end and has no MRR now."""
        return self.first_paid_month is not None and self.mrr == 0


# Written-out __init__: compiled, unlike a generated one or a NamedTuple's (ADR 0018).
@dataclass(frozen=True, slots=True, init=False)
class MonthFacts:
    """One account in one calendar month: the unit every company and cohort figure is summed from."""

    account_id: str
    month: str
    cohort: str | None  # activation month; None before the account's first paying month end
    age: int | None  # months since activation, 0 in the activation month; None before it
    mrr_start: int  # MRR at the start of the month (= end of the previous month), minor units
    mrr_end: int  # MRR at the end of the month, minor units
    new_mrr: int
    expansion_mrr: int
    contraction_mrr: int
    churned_mrr: int
    reactivation_mrr: int
    paying_at_start: bool
    paying_at_end: bool
    new: bool
    churned: bool
    reactivated: bool
    activation_mrr: int  # the account's MRR at the end of its activation month; 0 before activation
    trial_started: bool  # this is the account's (counted) trial month
    trial_converted: bool  # ... and that trial became a paying customer (at any later month end)

    def __init__(
        self, account_id: str, month: str, cohort: str | None, age: int | None, mrr_start: int, mrr_end: int,
        new_mrr: int, expansion_mrr: int, contraction_mrr: int, churned_mrr: int, reactivation_mrr: int,
        paying_at_start: bool, paying_at_end: bool, new: bool, churned: bool, reactivated: bool,
        activation_mrr: int, trial_started: bool, trial_converted: bool,
    ) -> None:
        object.__setattr__(self, "account_id", account_id)
        object.__setattr__(self, "month", month)
        object.__setattr__(self, "cohort", cohort)
        object.__setattr__(self, "age", age)
        object.__setattr__(self, "mrr_start", mrr_start)
        object.__setattr__(self, "mrr_end", mrr_end)
        object.__setattr__(self, "new_mrr", new_mrr)
        object.__setattr__(self, "expansion_mrr", expansion_mrr)
        object.__setattr__(self, "contraction_mrr", contraction_mrr)
        object.__setattr__(self, "churned_mrr", churned_mrr)
        object.__setattr__(self, "reactivation_mrr", reactivation_mrr)
        object.__setattr__(self, "paying_at_start", paying_at_start)
        object.__setattr__(self, "paying_at_end", paying_at_end)
        object.__setattr__(self, "new", new)
        object.__setattr__(self, "churned", churned)
        object.__setattr__(self, "reactivated", reactivated)
        object.__setattr__(self, "activation_mrr", activation_mrr)
        object.__setattr__(self, "trial_started", trial_started)
        object.__setattr__(self, "trial_converted", trial_converted)


# Written-out __init__: compiled, unlike a generated one or a NamedTuple's (ADR 0018).
@dataclass(frozen=True, slots=True, init=False)
class Movements:
    """One account-month's MRR movements, all non-negative minor units."""

    new: int
    expansion: int
    contraction: int
    churn: int
    reactivation: int

    def __init__(
        self, new: int, expansion: int, contraction: int, churn: int, reactivation: int,
    ) -> None:
        object.__setattr__(self, "new", new)
        object.__setattr__(self, "expansion", expansion)
        object.__setattr__(self, "contraction", contraction)
        object.__setattr__(self, "churn", churn)
        object.__setattr__(self, "reactivation", reactivation)


# --- calendar months ---------------------------------------------------------------------------


def month_index(month: str) -> int:
    """'YYYY-MM' -> months since year 0 (so consecutive months differ by 1)."""
    return int(month[:4]) * 12 + int(month[5:7]) - 1


@lru_cache(maxsize=4096)
def month_from_index(index: int) -> str:
    year, month0 = divmod(index, 12)
    return f"{year:04d}-{month0 + 1:02d}"


def month_of(at: datetime) -> str:
    """The UTC calendar month an instant belongs to."""
    at = at.astimezone(UTC)
    return f"{at.year:04d}-{at.month:02d}"


@lru_cache(maxsize=4096)
def month_of_day(day: int) -> str:
    """The UTC calendar month of a day index (days since 1970-01-01). Memoised: asked at every evaluation (the
    account's cohort), where building and formatting a datetime each time was 3 % of an evaluation-heavy replay."""
    return month_of(EPOCH + timedelta(days=day))


def add_months(month: str, n: int) -> str:
    return month_from_index(month_index(month) + n)


def months_between(first: str, last: str) -> list[str]:
    """Every month from first to last, inclusive; empty when first > last."""
    return [month_from_index(i) for i in range(month_index(first), month_index(last) + 1)]


def _to_us(at: datetime) -> int:
    return (at.astimezone(UTC) - EPOCH) // _US


def _month_index_of_us(at_us: int) -> int:
    at = EPOCH + timedelta(microseconds=at_us)
    return at.year * 12 + at.month - 1


@lru_cache(maxsize=4096)
def _month_start_us(index: int) -> int:
    year, month0 = divmod(index, 12)
    return _to_us(datetime(year, month0 + 1, 1, tzinfo=UTC))


# --- business rules ----------------------------------------------------------------------------


def is_paying(mrr: int) -> bool:
    """A paying customer has MRR > 0 (trials, paused, canceled and free plans have 0)."""
    return mrr > 0


def change_point(event: Envelope) -> ChangePoint | None:
    """The MRR-relevant part of a billing event; None for events that never move MRR.

    Invoices, failed payments and refunds are cash, not contracted recurring revenue; a scheduled
    cancellation changes nothing until `subscription.canceled` takes effect.
    """
    kind = _KIND_BY_TYPE.get(getattr(event, "type", ""))
    if kind is None:
        return None
    if isinstance(event, SubscriptionSnapshot):
        return ChangePoint(_to_us(event.occurred_at), event.event_id, kind, event.mrr, event.currency)
    return ChangePoint(_to_us(event.occurred_at), event.event_id, kind, 0, "")


def next_state(state: SubscriptionState, change: ChangePoint) -> SubscriptionState:
    """Subscription state after one change point (applied in (occurred_at, event_id) order)."""
    kind = change.kind
    if kind == KIND_SET:
        # A snapshot states the terms after it happened, whatever came before (also after a cancel).
        return SubscriptionState(change.mrr, change.mrr, STATUS_ACTIVE, change.currency)
    if kind == KIND_CANCEL:
        return SubscriptionState(0, 0, STATUS_CANCELED, state.currency)
    if kind == KIND_PAUSE:
        # A paused subscription bills nothing: MRR 0 (churn), restored by a resume (reactivation).
        if state.status == STATUS_ACTIVE:
            return SubscriptionState(0, state.contract_mrr, STATUS_PAUSED, state.currency)
        return state
    if kind == KIND_RESUME:
        if state.status == STATUS_PAUSED:
            return SubscriptionState(state.contract_mrr, state.contract_mrr, STATUS_ACTIVE, state.currency)
        return state
    if kind == KIND_TRIAL:
        # A trial of a paying (or paused) customer is an add-on trial: it changes nothing here.
        if state.mrr == 0 and state.status != STATUS_PAUSED:
            return SubscriptionState(0, state.contract_mrr, STATUS_TRIALING, state.currency)
        return state
    if kind == KIND_TRIAL_END:
        if state.status == STATUS_TRIALING:
            return SubscriptionState(0, state.contract_mrr, STATUS_TRIAL_EXPIRED, state.currency)
        return state
    raise ValueError(f"unknown change-point kind {kind!r}")


def classify_movement(mrr_start: int, mrr_end: int, paid_before: bool) -> Movements:
    """Net per-account-month classification: compare the month's end with its start.

    0 -> >0 is new (first paying month end ever) or reactivation (paid at an earlier month end);
    >0 -> 0 is churn of the whole start MRR; >0 -> >0 is expansion or contraction by the difference.
    """
    if mrr_start == 0:
        if mrr_end == 0:
            return Movements(0, 0, 0, 0, 0)
        if paid_before:
            return Movements(0, 0, 0, 0, mrr_end)
        return Movements(mrr_end, 0, 0, 0, 0)
    if mrr_end == 0:
        return Movements(0, 0, 0, mrr_start, 0)
    if mrr_end >= mrr_start:
        return Movements(0, mrr_end - mrr_start, 0, 0, 0)
    return Movements(0, 0, mrr_start - mrr_end, 0, 0)


def counts_as_trial(trial_month: str | None, first_paid_month: str | None) -> bool:
    """A trial counts for conversion if the account had not already been paying before its trial month."""
    return trial_month is not None and (first_paid_month is None or first_paid_month >= trial_month)


def trial_converted(trial_month: str | None, first_paid_month: str | None) -> bool:
    """A counted trial converts when the account becomes paying at any later month end (no deadline)."""
    return counts_as_trial(trial_month, first_paid_month) and first_paid_month is not None


def months_since_activation(cohort: str, month: str) -> int:
    return month_index(month) - month_index(cohort)


# --- the ledger --------------------------------------------------------------------------------


def apply_billing_event(
    ledger: MrrLedger,
    event: Envelope,
    *,
    lateness: timedelta = DEFAULT_LATENESS,
    retention_months: int = DEFAULT_RETENTION_MONTHS,
    through_month: str | None = None,
) -> tuple[MrrLedger, list[str]]:
    """Apply one canonical billing event (any arrival order within `lateness`); never mutates `ledger`.

    Returns the new ledger and the months whose `account_month_facts` changed, ascending. The list covers
    months up to `through_month` (the aggregator's current month) or the newest event's month, whichever is
    later; facts of later months are a steady carry of the last one. Duplicates (same occurred_at and
    event_id) are no-ops. Raises LateEventError for an MRR-relevant event in an already folded month.
    """
    etype = getattr(event, "type", None)
    if etype not in BILLING_TYPES:
        raise ValueError(f"not a billing event: {etype!r}")
    if event.account_id != ledger.account_id:
        raise ValueError(f"event for account {event.account_id!r} applied to ledger {ledger.account_id!r}")
    if retention_months < 1:
        raise ValueError("retention_months must be >= 1")
    lateness_us = lateness // _US
    at_us = _to_us(event.occurred_at)
    change = change_point(event)
    watermark_us = at_us if ledger.watermark_us is None else max(ledger.watermark_us, at_us)
    if change is None:
        # Cash events only move the watermark (which drives folding), never a month's facts.
        if watermark_us == ledger.watermark_us:
            return ledger, []
        moved = _rebuilt(
            ledger, ledger.pending, watermark_us, ledger.trial_month, lateness_us, retention_months
        )
        return moved, []

    month = month_from_index(_month_index_of_us(at_us))
    if ledger.open_from is not None and month < ledger.open_from:
        raise LateEventError(
            f"billing event {event.event_id} of {month} is older than the lateness bound: "
            f"months before {ledger.open_from} are final for account {ledger.account_id}"
        )
    pending = ledger.pending
    pos = bisect_left(pending, (change.at_us, change.event_id), key=lambda c: (c.at_us, c.event_id))
    if pos < len(pending) and pending[pos].at_us == change.at_us and pending[pos].event_id == change.event_id:
        return ledger, []
    pending = list(pending)
    insort(pending, change)
    trial_month = ledger.trial_month
    if change.kind == KIND_TRIAL and (trial_month is None or month < trial_month):
        trial_month = month

    last = month_from_index(_month_index_of_us(watermark_us))
    if through_month is not None and through_month > last:
        last = through_month
    candidates = months_between(month, last)
    # A trial's conversion flag lives in its (possibly earlier) trial month.
    for extra in (ledger.trial_month, trial_month):
        if extra is not None and extra < month and extra not in candidates:
            candidates.insert(0, extra)
    candidates.sort()
    before = [account_month_facts(ledger, m) if _reportable(ledger, m) else None for m in candidates]
    updated = _rebuilt(ledger, pending, watermark_us, trial_month, lateness_us, retention_months)
    changed = [
        m
        for m, old in zip(candidates, before, strict=True)
        if _reportable(updated, m) and account_month_facts(updated, m) != old
    ]
    return updated, changed


def _reportable(ledger: MrrLedger, month: str) -> bool:
    return not (ledger.history_truncated and ledger.first_month is not None and month < ledger.first_month)


def _rebuilt(
    old: MrrLedger,
    pending: list[ChangePoint],
    watermark_us: int,
    trial_month: str | None,
    lateness_us: int,
    retention_months: int,
) -> MrrLedger:
    """Replay the open months from `base`, then fold months past the lateness bound and truncate."""
    last_idx = _month_index_of_us(watermark_us)
    fold_idx = _month_index_of_us(watermark_us - lateness_us)
    if old.open_from is not None:
        fold_idx = max(fold_idx, month_index(old.open_from))

    folded_history = (
        old.first_month is not None and old.open_from is not None and old.first_month <= old.open_from
    )
    if folded_history:
        assert old.first_month is not None and old.open_from is not None
        replay_from = month_index(old.open_from)
        ends = old.month_ends[: replay_from - month_index(old.first_month)]
        first_month_idx = month_index(old.first_month)
    elif pending:
        # Nothing folded yet: every change point is still pending, the base is the initial state.
        replay_from = _month_index_of_us(pending[0].at_us)
        ends = []
        first_month_idx = replay_from
    else:
        return _with(
            old, watermark_us=watermark_us, open_from=month_from_index(fold_idx), trial_month=trial_month
        )

    state = old.base
    base = old.base
    p = 0
    n = len(pending)
    for idx in range(replay_from, last_idx + 1):
        if idx == fold_idx:
            base = state
        end_us = _month_start_us(idx + 1)
        while p < n and pending[p].at_us < end_us:
            state = next_state(state, pending[p])
            p += 1
        ends.append(state.mrr)
    if fold_idx > replay_from:
        fold_start_us = _month_start_us(fold_idx)
        pending = [c for c in pending if c.at_us >= fold_start_us]

    # The activation month is final once it lies before the replayed months.
    first_paid_month = old.first_paid_month
    activation_mrr = old.activation_mrr
    if first_paid_month is None or month_index(first_paid_month) >= replay_from:
        first_paid_month = None
        activation_mrr = 0
        offset = replay_from - first_month_idx
        for i in range(offset, len(ends)):
            if is_paying(ends[i]):
                first_paid_month = month_from_index(first_month_idx + i)
                activation_mrr = ends[i]
                break

    opening_mrr = old.opening_mrr
    truncated = old.history_truncated
    cut_idx = min(last_idx - retention_months + 1, fold_idx)
    if first_month_idx < cut_idx:
        drop = cut_idx - first_month_idx
        opening_mrr = ends[drop - 1]
        ends = ends[drop:]
        first_month_idx = cut_idx
        truncated = True

    return MrrLedger(
        account_id=old.account_id,
        mrr=state.mrr,
        status=state.status,
        currency=state.currency or old.currency,
        first_paid_month=first_paid_month,
        activation_mrr=activation_mrr,
        trial_month=trial_month,
        watermark_us=watermark_us,
        first_month=month_from_index(first_month_idx),
        opening_mrr=opening_mrr,
        month_ends=ends,
        history_truncated=truncated,
        open_from=month_from_index(fold_idx),
        base=base,
        pending=pending,
    )


def _with(old: MrrLedger, **changes: Any) -> MrrLedger:
    values = {name: getattr(old, name) for name in MrrLedger.__dataclass_fields__}
    values.update(changes)
    return MrrLedger(**values)


def month_end_mrr(ledger: MrrLedger, month: str) -> int:
    """MRR at the end of `month` (carried forward past the newest event), minor units."""
    if ledger.first_month is None:
        return 0
    offset = month_index(month) - month_index(ledger.first_month)
    if offset < 0:
        if ledger.history_truncated:
            raise ValueError(
                f"{month} is before the retained history of {ledger.account_id} ({ledger.first_month})"
            )
        return 0
    ends = ledger.month_ends
    return ends[offset] if offset < len(ends) else ends[-1]


def month_start_mrr(ledger: MrrLedger, month: str) -> int:
    """MRR at the start of `month` = at the end of the previous month, minor units."""
    if ledger.first_month is not None and month == ledger.first_month:
        return ledger.opening_mrr
    return month_end_mrr(ledger, add_months(month, -1))


def account_month_facts(ledger: MrrLedger, month: str) -> MonthFacts:
    """The account's figures for one calendar month (any month within the retained history)."""
    mrr_end = month_end_mrr(ledger, month)
    mrr_start = month_start_mrr(ledger, month)
    first_paid = ledger.first_paid_month
    paid_before = first_paid is not None and first_paid < month
    moves = classify_movement(mrr_start, mrr_end, paid_before)
    active_cohort = first_paid is not None and first_paid <= month
    trial = ledger.trial_month == month and counts_as_trial(ledger.trial_month, first_paid)
    return MonthFacts(
        account_id=ledger.account_id,
        month=month,
        cohort=first_paid if active_cohort else None,
        age=months_since_activation(first_paid, month) if active_cohort and first_paid else None,
        mrr_start=mrr_start,
        mrr_end=mrr_end,
        new_mrr=moves.new,
        expansion_mrr=moves.expansion,
        contraction_mrr=moves.contraction,
        churned_mrr=moves.churn,
        reactivation_mrr=moves.reactivation,
        paying_at_start=is_paying(mrr_start),
        paying_at_end=is_paying(mrr_end),
        new=moves.new > 0,
        churned=moves.churn > 0,
        reactivated=moves.reactivation > 0,
        activation_mrr=ledger.activation_mrr if active_cohort else 0,
        trial_started=trial,
        trial_converted=trial and trial_converted(ledger.trial_month, first_paid),
    )


def ledger_months(ledger: MrrLedger, through_month: str | None = None) -> list[str]:
    """The months this ledger can report on: retained history up to the newest event (or through_month)."""
    if ledger.first_month is None or ledger.watermark_us is None:
        return []
    last = month_from_index(_month_index_of_us(ledger.watermark_us))
    if through_month is not None:
        last = through_month
    return months_between(ledger.first_month, last)


# --- compact codec -----------------------------------------------------------------------------


def encode_ledger(ledger: MrrLedger) -> list[Any]:
    """A compact orjson-able list (months as month indexes, times as epoch microseconds)."""
    return [
        CODEC_VERSION,
        ledger.account_id,
        ledger.mrr,
        ledger.status,
        ledger.currency,
        _idx_or_none(ledger.first_paid_month),
        ledger.activation_mrr,
        _idx_or_none(ledger.trial_month),
        ledger.watermark_us,
        _idx_or_none(ledger.first_month),
        ledger.opening_mrr,
        ledger.month_ends,
        1 if ledger.history_truncated else 0,
        _idx_or_none(ledger.open_from),
        list(ledger.base),
        [list(c) for c in ledger.pending],
    ]


def decode_ledger(data: list[Any] | tuple[Any, ...]) -> MrrLedger:
    """Inverse of `encode_ledger`."""
    if not data or data[0] != CODEC_VERSION:
        raise ValueError(f"unsupported MrrLedger encoding version: {data[0] if data else None!r}")
    (
        _,
        account_id,
        mrr,
        status,
        currency,
        first_paid,
        activation_mrr,
        trial,
        watermark_us,
        first_month,
        opening_mrr,
        month_ends,
        truncated,
        open_from,
        base,
        pending,
    ) = data
    return MrrLedger(
        account_id=account_id,
        mrr=mrr,
        status=status,
        currency=currency,
        first_paid_month=_month_or_none(first_paid),
        activation_mrr=activation_mrr,
        trial_month=_month_or_none(trial),
        watermark_us=watermark_us,
        first_month=_month_or_none(first_month),
        opening_mrr=opening_mrr,
        month_ends=list(month_ends),
        history_truncated=bool(truncated),
        open_from=_month_or_none(open_from),
        base=SubscriptionState(*base),
        pending=[ChangePoint(*c) for c in pending],
    )


def _idx_or_none(month: str | None) -> int | None:
    return None if month is None else month_index(month)


def _month_or_none(index: int | None) -> str | None:
    return None if index is None else month_from_index(index)
