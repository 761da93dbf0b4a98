"""Per-account state (the table value) and its transition function `apply_event(state, event) -> result`."""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import pairwise
from typing import Any, Literal
from zlib import crc32

from schemas.events import BILLING_TYPES, CanonicalEvent
from streams.domain.config import DomainConfig
from streams.domain.engagement import (
    API_CALLS,
    DAY_S,
    DETAIL_DAYS,
    FEATURE_USES,
    LIMIT_HITS,
    ROLE_CODE,
    SESSIONS,
    Engagement,
    bucket,
    day_index,
    epoch_of,
    fingerprint,
    fold_volumes,
    gc_tombstones,
    mark,
    record_nps,
    record_role,
    record_ticket,
    roll,
    utc_from_s,
)
from streams.domain.hot_events import HotEvent
from streams.domain.mrr import month_of_day

Status = Literal["none", "trialing", "active", "past_due", "paused", "canceled"]
Stage = Literal["trial", "onboarding", "adoption", "retention", "expansion", "churned", "reactivated"]
Outcome = Literal["processed", "duplicate", "too_late"]

STATUSES: tuple[str, ...] = ("none", "trialing", "active", "past_due", "paused", "canceled")
STAGES: tuple[str, ...] = ("trial", "onboarding", "adoption", "retention", "expansion", "churned", "reactivated")
INTERVALS: tuple[str, ...] = ("month", "year")
_FP_MASK = 0xFFFFFFFF
# The dedupe ring's keys count event seconds from this instant (2050-01-01 UTC, mid-way through the schema's
# 2000..2100 range), so that `(second << 32) | fingerprint` stays within mypyc's 63-bit tagged integers for events
# dated 2016..2084: keys from epoch seconds are above 2**62, and every comparison and shift on them went through
# boxed Python ints (~3 % of a replay). Only the in-memory key changes; the codec stores epoch seconds.
SEEN_EPOCH_S = 2_524_608_000


def seen_key(at_s: int, fp: int) -> int:
    """The dedupe ring's sort key of an event: its second (from SEEN_EPOCH_S), then its fingerprint."""
    return ((at_s - SEEN_EPOCH_S) << 32) | fp


def seen_second(key: int) -> int:
    """The event second (epoch seconds) of a dedupe ring key."""
    return (key >> 32) + SEEN_EPOCH_S

# Billing events that set the subscription's base status (latest by event time wins).
_BASE_STATUS_OF = {
    "trial.started": "trialing",
    "trial.converted": "active",
    "trial.expired": "canceled",
    "subscription.started": "active",
    "subscription.renewed": "active",
    "subscription.reactivated": "active",
    "subscription.resumed": "active",
    "subscription.canceled": "canceled",
    "subscription.paused": "paused",
}
# Same-second tie-break between base statuses: the more final one wins, deterministically.
_BASE_RANK = {"none": 0, "trialing": 1, "active": 2, "paused": 3, "canceled": 4}


@dataclass(slots=True)
class AccountState:
    """Everything kept per account. Times are epoch seconds (UTC, whole seconds); money is minor units.

    Billing fields are last-writer-wins registers keyed by event time (ties broken by the values themselves),
    or min/max of event times, so they do not depend on arrival order; `*_s` register times are kept for that.
    """

    account_id: str
    # --- subscription (from billing events) ---
    status: str = "none"  # one of STATUSES, derived by derive_billing()
    plan: str | None = None
    seats: int = 0
    mrr: int = 0  # effective MRR: plan_mrr while active or past_due, else 0
    plan_mrr: int = 0  # normalised monthly amount of the latest subscription snapshot
    currency: str | None = None
    billing_interval: str | None = None
    renews_at_s: int | None = None
    cancel_scheduled: bool = False
    cancel_at_s: int | None = None  # as sent with the cancel; None = at the end of the period (renews_at)
    trial_started_at_s: int | None = None
    trial_ends_at_s: int | None = None
    first_paid_at_s: int | None = None  # earliest paid invoice / paid subscription term (trials excluded)
    started_at_s: int | None = None  # earliest trial or subscription start: origin of time to first value
    failed_payment_attempts: int = 0  # attempt number of the latest failure not followed by a paid invoice
    stage: str = "trial"  # lifecycle_stage() at the clock day, refreshed on every change
    traits: dict[str, str] = field(default_factory=dict)
    first_seen_day: int | None = None
    last_event_s: int | None = None  # newest usage event: drives the engagement clock and usage lateness
    last_billing_s: int | None = None  # newest billing event: billing lateness (a separate stream)
    engagement: Engagement = field(default_factory=Engagement)
    # --- exact-redelivery and retry dedupe ---
    offsets: dict[str, int] = field(default_factory=dict)  # input source -> highest offset applied
    seen: list[int] = field(default_factory=list)  # sorted seen_key(at_s, event fingerprint), newest N
    seen_fps: set[int] = field(default_factory=set, compare=False, repr=False)  # fingerprints in `seen`
    # --- register times (order-insensitivity bookkeeping) ---
    snapshot_s: int | None = None  # event time of the snapshot in plan..renews_at_s
    base_status: str = "none"  # status set by the latest lifecycle event, before dunning
    status_s: int | None = None
    cancel_s: int | None = None  # latest event that scheduled or cleared a cancellation
    paid_s: int | None = None  # latest invoice.paid
    failed_s: int | None = None  # latest payment.failed
    failed_attempt: int = 0  # its attempt number
    mrr_rose_s: int | None = None  # latest MRR rise already final (see last_mrr_rise_s)
    # (event time, MRR) of snapshots dated within the lateness bound, plus the newest one before it: MRR rises
    # are found between neighbours in event time, so a late snapshot slots in where it belongs.
    snapshots: list[tuple[int, int]] = field(default_factory=list)
    churned_s: int | None = None  # latest subscription.canceled
    restarted_s: int | None = None  # latest subscription.started / reactivated
    traits_s: int | None = None
    # Latest removal of a key user (role in config.key_roles): event time and role code (engagement.ROLE_CODE).
    key_user_removed_s: int | None = None
    key_user_removed_role: int = 0

    # Datetime views of the stored epoch seconds.
    @property
    def renews_at(self) -> datetime | None:
        return utc_from_s(self.renews_at_s)

    @property
    def cancel_effective_s(self) -> int | None:
        """When a scheduled cancellation takes effect (the period end if the cancel gave no date); else None."""
        if not self.cancel_scheduled:
            return None
        return self.cancel_at_s if self.cancel_at_s is not None else self.renews_at_s

    @property
    def cancel_at(self) -> datetime | None:
        return utc_from_s(self.cancel_effective_s)

    @property
    def trial_started_at(self) -> datetime | None:
        return utc_from_s(self.trial_started_at_s)

    @property
    def trial_ends_at(self) -> datetime | None:
        return utc_from_s(self.trial_ends_at_s)

    @property
    def first_paid_at(self) -> datetime | None:
        return utc_from_s(self.first_paid_at_s)

    @property
    def last_event_at(self) -> datetime | None:
        return utc_from_s(self.last_event_s)

    @property
    def cohort(self) -> str | None:
        """Activation cohort: the UTC calendar month ("YYYY-MM") of the first payment."""
        first = self.first_paid_at_s
        return None if first is None else month_of_day(first // DAY_S)

    @property
    def last_mrr_rise_s(self) -> int | None:
        """Event time of the latest MRR increase: previous_mrr < mrr, or a snapshot above its predecessor."""
        rise = self.mrr_rose_s
        snaps = self.snapshots
        for (_, before), (at, after) in pairwise(snaps):
            if after > before and (rise is None or at > rise):
                rise = at
        return rise

    @property
    def as_of_day(self) -> int:
        """The state's own notion of "today": the newest day either stream has reached (days since epoch)."""
        billing = self.last_billing_s // DAY_S if self.last_billing_s is not None else 0
        return max(self.engagement.clock_day, billing)

    @property
    def clock_day(self) -> int:
        """Newest UTC day the state has seen (events or advance()), days since 1970-01-01."""
        return self.engagement.clock_day


class ApplyResult:
    """What apply_event did. `state` is the input object, mutated in place (see apply_event).

    A plain class, not a NamedTuple: compiled, it is built by a direct C call, where a NamedTuple's `__new__`
    runs in the interpreter (~0.3 us, once per event; ADR 0018)."""

    __slots__ = ("outcome", "outputs", "state")

    def __init__(self, state: AccountState, outcome: Outcome, outputs: list[Any]) -> None:
        self.state = state
        self.outcome: Outcome = outcome
        self.outputs = outputs


def new_account(account_id: str) -> AccountState:
    return AccountState(account_id)


def already_applied(state: AccountState, source: str, offset: int) -> bool:
    """True when this input record was applied before (one account's records of a source are in order)."""
    done = state.offsets.get(source)
    return done is not None and offset <= done


# --- business rules -----------------------------------------------------------------------------------------


def lifecycle_stage(state: AccountState, as_of: date | datetime | int, config: DomainConfig) -> str:
    """The account's lifecycle stage on as_of's UTC day (int = day index). First matching rule wins:

    1. churned      - status canceled (a lost customer, or a trial that expired unconverted).
    2. trial        - status trialing, or no subscription yet (evaluating).
    3. reactivated  - came back (subscription started / reactivated) after a cancellation, within
                      `reactivated_days` (30).
    4. onboarding   - paying for fewer than `onboarding_days` (30), or no first value (key action) yet.
    5. expansion    - MRR rose within the last `expansion_days` (30).
    6. adoption     - paying for fewer than `adoption_days` (90).
    7. retention    - otherwise.
    "Paying since" is the first payment, else the first start. Paused and past-due customers follow rules 3-7.
    All inputs are order-insensitive registers, so the stage is too.
    """
    day = as_of if isinstance(as_of, int) else day_index(as_of)
    th = config.lifecycle
    status = state.status
    if status == "canceled":
        return "churned"
    if status in ("trialing", "none"):
        return "trial"
    churned, back = state.churned_s, state.restarted_s
    if churned is not None and back is not None and back > churned and day - back // DAY_S < th.reactivated_days:
        return "reactivated"
    since = state.first_paid_at_s or state.started_at_s or state.snapshot_s or state.status_s
    tenure = day - since // DAY_S if since is not None else 0
    if tenure < th.onboarding_days or state.engagement.first_value_s is None:
        return "onboarding"
    rose = state.last_mrr_rise_s
    if rose is not None and day - rose // DAY_S < th.expansion_days:
        return "expansion"
    if tenure < th.adoption_days:
        return "adoption"
    return "retention"


def derive_billing(state: AccountState) -> None:
    """Status, effective MRR and open failed attempts from the billing registers.

    past_due = an active subscription whose latest payment failure is newer than its latest paid invoice;
    the open attempt count is that failure's attempt number (a paid invoice resets it to 0).
    """
    base = state.base_status
    if base == "none" and state.snapshot_s is not None:
        base = "active"  # terms seen without a start event (e.g. tracking began mid-subscription)
    failed, paid = state.failed_s, state.paid_s
    dunning = failed is not None and (paid is None or failed > paid)
    state.failed_payment_attempts = state.failed_attempt if dunning else 0
    state.status = "past_due" if base == "active" and dunning else base
    state.mrr = state.plan_mrr if state.status in ("active", "past_due") else 0


def epoch_s(at: datetime | None) -> int | None:
    """Whole epoch seconds of a payload time (the schema makes them aware UTC; a naive one is taken as UTC)."""
    if at is None:
        return None
    return epoch_of(at if at.tzinfo is not None else at.replace(tzinfo=UTC))


def bounded_traits(traits: dict[str, str], config: DomainConfig) -> dict[str, str]:
    """The traits kept: allowed keys in sorted order, at most max_traits, values cut to max_trait_chars."""
    allowed = config.trait_keys
    keys = sorted(k for k in traits if allowed is None or k in allowed)[: config.max_traits]
    cut = config.max_trait_chars
    return {k: traits[k][:cut] for k in keys}


# --- transition ---------------------------------------------------------------------------------------------


def apply_event(
    state: AccountState,
    event: CanonicalEvent | HotEvent,
    config: DomainConfig,
    *,
    source: str | None = None,
    offset: int | None = None,
    at_s: int | None = None,
) -> ApplyResult:
    """Apply one canonical event. For speed the state is MUTATED IN PLACE and returned as result.state.

    `at_s`, when the caller has it, is int(event.occurred_at.timestamp()) (saves converting the datetime again).

    Callers that need the old state must copy it first (decode_state(encode_state(s)) is an exact copy).
    Outcomes: `duplicate` (offset already applied, or event id among the newest N ids) and `too_late` (dated
    before the newest event day OF THE SAME STREAM - allowed_lateness_days) leave the state untouched.

    Lateness is measured per stream (billing vs usage) because the two arrive on different topics that a
    worker consumes at different speeds: a worker catching up may read an account's billing history days
    ahead of its usage, or the reverse. Only usage events move the engagement clock; billing fields are
    event-time registers that any arrival order settles the same way.
    """
    if source is not None and offset is not None:
        done = state.offsets.get(source)
        if done is not None and offset <= done:
            return ApplyResult(state, "duplicate", [])
    etype = event.type
    billing = etype in BILLING_TYPES
    # Fingerprint of the event id; its lowest bit says which stream it came from (per-stream forgetting).
    efp = (crc32(event.event_id.encode()) & ~1) | billing
    if efp in state.seen_fps:
        return ApplyResult(state, "duplicate", [])
    if at_s is None:
        at_s = epoch_of(event.occurred_at)
    day = at_s // DAY_S
    last = state.last_billing_s if billing else state.last_event_s
    if last is not None and day < last // DAY_S - config.allowed_lateness_days:
        return ApplyResult(state, "too_late", [])

    size = config.dedupe_ring_size
    if size:
        _remember(state, seen_key(at_s, efp), efp, size)
    if source is not None and offset is not None:
        state.offsets[source] = offset
    eng = state.engagement
    refresh = False
    if billing:
        if last is None or at_s > last:
            state.last_billing_s = at_s
            if last is None or day > last // DAY_S:
                # The billing lateness bound moved: snapshots behind it can get no new neighbour.
                if len(state.snapshots) > 1:
                    _settle_snapshots(state, day - config.allowed_lateness_days)
                _forget_before(state, day - config.allowed_lateness_days, billing=True)
                refresh = True
    elif last is None or at_s > last:
        state.last_event_s = at_s
        if last is None or day > last // DAY_S:
            # The lateness bound moved: advance the clock (expiry) and forget tombstones behind the bound.
            bound = day - config.allowed_lateness_days
            if day > eng.clock_day:
                roll(eng, day, bound, config)
            else:
                gc_tombstones(eng, bound, config)
            _forget_before(state, bound, billing=False)
            refresh = True
    first = state.first_seen_day
    if first is None or day < first:
        state.first_seen_day = day
    # The two usage types that are most events are called directly: a call through the table goes through the
    # generic (boxed, keyword-parsing) call path of the compiled build.
    if etype == "feature.used":
        changed = _feature(state, event, at_s, day, config)
    elif etype == "session.started":
        changed = _session(state, event, at_s, day, config)
    else:
        changed = _HANDLERS[etype](state, event, at_s, day, config)
    if changed or refresh:
        state.stage = lifecycle_stage(state, state.as_of_day, config)
    return ApplyResult(state, "processed", [])


def advance(state: AccountState, as_of: datetime | date, config: DomainConfig) -> AccountState:
    """Event-time progress without an event for this account: expire old buckets, refresh the stage.

    Mutates and returns `state`. Never moves the clock backwards; does not change the lateness bound (that
    follows the account's own newest event).
    """
    day = day_index(as_of)
    eng = state.engagement
    if day > eng.clock_day:
        last = state.last_event_s
        bound = (last // DAY_S if last is not None else day) - config.allowed_lateness_days
        roll(eng, day, bound, config)
        state.stage = lifecycle_stage(state, state.as_of_day, config)
    return state


def _remember(state: AccountState, key: int, efp: int, size: int) -> None:
    """Keep the fingerprints of the `size` newest events by (event second, fingerprint): order-insensitive."""
    seen = state.seen
    n = len(seen)
    if n == size and key < seen[0]:
        return  # older than every kept id: nothing to evict for it
    if not n or key > seen[-1]:
        seen.append(key)  # the common case, events in time order: no search
    else:
        insort(seen, key)
    state.seen_fps.add(efp)
    while len(seen) > size:
        state.seen_fps.discard(seen.pop(0) & _FP_MASK)


def _fold_snapshots(state: AccountState, n: int) -> None:
    """Fold the n oldest snapshot pairs into mrr_rose_s, keeping the newest folded one as the anchor."""
    snaps = state.snapshots
    for (_, before), (at, after) in pairwise(snaps[: n + 1]):
        if after > before and (state.mrr_rose_s is None or at > state.mrr_rose_s):
            state.mrr_rose_s = at
    del snaps[:n]


def _settle_snapshots(state: AccountState, bound_day: int) -> None:
    """Snapshots before the lateness bound can get no new neighbour: keep only the newest of them."""
    snaps = state.snapshots
    bound_s = bound_day * DAY_S
    old = sum(1 for at, _ in snaps if at < bound_s)
    if old > 1:
        _fold_snapshots(state, old - 1)


def _forget_before(state: AccountState, bound_day: int, *, billing: bool) -> None:
    """Drop one stream's ids dated before its lateness bound: a retry of those is rejected as too_late anyway."""
    cut = seen_key(bound_day * DAY_S, 0)
    flag = int(billing)
    seen = state.seen
    drop = [key for key in seen if key < cut and key & 1 == flag]
    if drop:
        for key in drop:
            state.seen_fps.discard(key & _FP_MASK)
        gone = set(drop)
        state.seen = [key for key in seen if key not in gone]


# --- handlers: (state, event, at_s, day, config) -> "the stage may have changed" -----------------------------


def _snapshot(state: AccountState, ev: Any, at_s: int, day: int, config: DomainConfig) -> bool:
    etype = ev.type
    renews = epoch_s(ev.renews_at)
    # Only subscription.changed has the field; getattr with a default would raise and catch inside for the rest.
    prev = ev.previous_mrr if etype == "subscription.changed" else None
    if prev is not None and ev.mrr > prev and (state.mrr_rose_s is None or at_s > state.mrr_rose_s):
        state.mrr_rose_s = at_s
    point = (at_s, ev.mrr)
    snaps = state.snapshots
    if point not in snaps:
        insort(snaps, point)
        if len(snaps) > 1 + config.max_recent_snapshots:
            _fold_snapshots(state, len(snaps) - 1 - config.max_recent_snapshots)
    new_key = (at_s, ev.mrr, ev.seats, ev.plan, ev.currency, ev.billing_interval, renews or 0)
    old_s = state.snapshot_s
    if old_s is None or new_key > (
        old_s, state.plan_mrr, state.seats, state.plan or "", state.currency or "",
        state.billing_interval or "", state.renews_at_s or 0,
    ):
        state.snapshot_s = at_s
        state.plan_mrr = ev.mrr
        state.seats = ev.seats
        state.plan = ev.plan
        state.currency = ev.currency
        state.billing_interval = ev.billing_interval
        state.renews_at_s = renews
    if ev.mrr > 0 and (state.first_paid_at_s is None or at_s < state.first_paid_at_s):
        state.first_paid_at_s = at_s
    if etype in ("subscription.started", "trial.converted") and (
        state.started_at_s is None or at_s < state.started_at_s
    ):
        state.started_at_s = at_s
    if etype in ("subscription.started", "subscription.reactivated"):
        if state.restarted_s is None or at_s > state.restarted_s:
            state.restarted_s = at_s
        _cancel_register(state, at_s, False, None)
    if etype != "subscription.changed":
        _base_status(state, at_s, _BASE_STATUS_OF[etype])
    derive_billing(state)
    return True


def _base_status(state: AccountState, at_s: int, base: str) -> None:
    old = state.status_s
    if old is None or (at_s, _BASE_RANK[base]) > (old, _BASE_RANK[state.base_status]):
        state.status_s = at_s
        state.base_status = base


def _cancel_register(state: AccountState, at_s: int, scheduled: bool, cancel_at: int | None) -> None:
    old = state.cancel_s
    if old is None or (at_s, scheduled, cancel_at or 0) > (old, state.cancel_scheduled, state.cancel_at_s or 0):
        state.cancel_s = at_s
        state.cancel_scheduled = scheduled
        state.cancel_at_s = cancel_at if scheduled else None


def _lifecycle(state: AccountState, ev: Any, at_s: int, day: int, config: DomainConfig) -> bool:
    etype = ev.type
    if etype == "subscription.canceled":
        if state.churned_s is None or at_s > state.churned_s:
            state.churned_s = at_s
        _cancel_register(state, at_s, False, None)
    elif etype == "trial.started":
        ends = epoch_s(ev.trial_ends_at)
        old = state.trial_started_at_s
        if old is None or (at_s, ends or 0, ev.plan) > (old, state.trial_ends_at_s or 0, state.plan or ""):
            state.trial_started_at_s = at_s
            state.trial_ends_at_s = ends
            if state.snapshot_s is None:
                state.plan = ev.plan  # the trial's plan until real subscription terms arrive
        if state.started_at_s is None or at_s < state.started_at_s:
            state.started_at_s = at_s
    _base_status(state, at_s, _BASE_STATUS_OF[etype])
    derive_billing(state)
    return True


def _cancel_scheduled(state: AccountState, ev: Any, at_s: int, day: int, config: DomainConfig) -> bool:
    cancel_at = epoch_s(ev.cancel_at)
    _cancel_register(state, at_s, True, cancel_at)
    return True


def _cancel_unscheduled(state: AccountState, ev: Any, at_s: int, day: int, config: DomainConfig) -> bool:
    _cancel_register(state, at_s, False, None)
    return True


def _invoice_paid(state: AccountState, ev: Any, at_s: int, day: int, config: DomainConfig) -> bool:
    if state.paid_s is None or at_s > state.paid_s:
        state.paid_s = at_s
    if ev.amount > 0 and (state.first_paid_at_s is None or at_s < state.first_paid_at_s):
        state.first_paid_at_s = at_s
    derive_billing(state)
    return True


def _payment_failed(state: AccountState, ev: Any, at_s: int, day: int, config: DomainConfig) -> bool:
    old = state.failed_s
    if old is None or (at_s, ev.attempt) > (old, state.failed_attempt):
        state.failed_s = at_s
        state.failed_attempt = ev.attempt
    derive_billing(state)
    return True


def _nothing(state: AccountState, ev: Any, at_s: int, day: int, config: DomainConfig) -> bool:
    return False  # refunds move cash, not subscription state or MRR (the MRR ledger handles money)


def _session(state: AccountState, ev: Any, at_s: int, day: int, config: DomainConfig) -> bool:
    eng = state.engagement
    horizon = config.bucket_horizon_days
    b = eng.days.get(day) or bucket(eng, day, horizon)
    if b is not None:
        b[SESSIONS] += 1
    mark(eng.users, crc32(ev.user_id.encode()), day, eng.clock_day, horizon)  # = fingerprint(), inlined
    if eng.last_activity_s is None or at_s > eng.last_activity_s:
        eng.last_activity_s = at_s
    return False


def _feature(state: AccountState, ev: Any, at_s: int, day: int, config: DomainConfig) -> bool:
    eng = state.engagement
    horizon = config.bucket_horizon_days
    clock = eng.clock_day
    b = eng.days.get(day) or bucket(eng, day, horizon)
    if b is not None:
        b[FEATURE_USES] += ev.count
        if clock - day >= DETAIL_DAYS:
            fold_volumes(b)  # only possible after advance(): a late event for a day past the detail range
    feature = ev.feature
    mark(eng.features, crc32(feature.encode()), day, clock, horizon)  # = fingerprint(), inlined
    user = ev.user_id
    if user is not None:
        mark(eng.users, crc32(user.encode()), day, clock, horizon)
    if eng.last_activity_s is None or at_s > eng.last_activity_s:
        eng.last_activity_s = at_s
    keys = config.key_action_features
    if not keys or feature in keys:
        first = eng.first_value_s
        if first is None or at_s < first:
            eng.first_value_s = at_s
            return first is None
    return False


def _api(state: AccountState, ev: Any, at_s: int, day: int, config: DomainConfig) -> bool:
    eng = state.engagement
    b = eng.days.get(day) or bucket(eng, day, config.bucket_horizon_days)
    if b is not None:
        b[API_CALLS] += ev.count
        if eng.clock_day - day >= DETAIL_DAYS:
            fold_volumes(b)
    if eng.last_activity_s is None or at_s > eng.last_activity_s:
        eng.last_activity_s = at_s
    return False


def _limit(state: AccountState, ev: Any, at_s: int, day: int, config: DomainConfig) -> bool:
    eng = state.engagement
    b = eng.days.get(day) or bucket(eng, day, config.bucket_horizon_days)
    if b is not None:
        b[LIMIT_HITS] += 1
    return False


def _user(state: AccountState, ev: Any, at_s: int, day: int, config: DomainConfig) -> bool:
    code = ROLE_CODE[ev.role] if ev.type == "user.added" else 0
    record_role(state.engagement, fingerprint(ev.user_id), at_s, code, config)
    if ev.type == "user.removed" and ev.role in config.key_roles:
        # A register: the latest removal by event time wins (ties by role code), whatever the arrival order.
        removed = (at_s, ROLE_CODE[ev.role])
        if state.key_user_removed_s is None or removed > (state.key_user_removed_s, state.key_user_removed_role):
            state.key_user_removed_s, state.key_user_removed_role = removed
    return False


def _nps(state: AccountState, ev: Any, at_s: int, day: int, config: DomainConfig) -> bool:
    record_nps(state.engagement, fingerprint(ev.user_id), at_s, ev.score, config.max_nps_users)
    return False


def _ticket(state: AccountState, ev: Any, at_s: int, day: int, config: DomainConfig) -> bool:
    record_ticket(state.engagement, fingerprint(ev.ticket_id), day, ev.type == "ticket.opened", config)
    return False


def _traits(state: AccountState, ev: Any, at_s: int, day: int, config: DomainConfig) -> bool:
    new = bounded_traits(ev.traits, config)
    old = state.traits_s
    if old is None or (at_s, sorted(new.items())) > (old, sorted(state.traits.items())):
        state.traits_s = at_s
        state.traits = new
    return False


_HANDLERS = {
    "subscription.started": _snapshot,
    "subscription.changed": _snapshot,
    "subscription.renewed": _snapshot,
    "subscription.reactivated": _snapshot,
    "trial.converted": _snapshot,
    "subscription.cancel_scheduled": _cancel_scheduled,
    "subscription.cancel_unscheduled": _cancel_unscheduled,
    "subscription.canceled": _lifecycle,
    "subscription.paused": _lifecycle,
    "subscription.resumed": _lifecycle,
    "trial.started": _lifecycle,
    "trial.expired": _lifecycle,
    "invoice.paid": _invoice_paid,
    "payment.failed": _payment_failed,
    "refund.issued": _nothing,
    "session.started": _session,
    "feature.used": _feature,
    "user.added": _user,
    "user.removed": _user,
    "usage_limit.reached": _limit,
    "nps.responded": _nps,
    "ticket.opened": _ticket,
    "ticket.closed": _ticket,
    "api.called": _api,
    "account.traits": _traits,
}
