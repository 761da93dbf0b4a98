"""Alert lifecycle: per-account AlertBook, `evaluate` (signals -> transitions), `apply_action` (people), and the
stateless portfolio alerts. Pure functions; every timestamp is event time, so replays are byte-identical.

Lifecycle of one trigger of one account (docs/alerts.md):

    (idle) --active--> opened --severity rises--> escalated --> resolved (recovered | churned | superseded |
                                                                         expired | resolved_by_user)
    people: acknowledge, snooze until, resolve

An episode is one opened..resolved run; `alert_id` = sha256(account, trigger, episode start day)[:24].
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from schemas.alerts import (
    ACCOUNT_TRIGGERS,
    PORTFOLIO_ACCOUNT,
    ActionPlan,
    AlertAction,
    AlertRecord,
    Evidence,
)
from streams.domain.account import AccountState
from streams.domain.cohorts import CohortCell, CompanyMonth
from streams.domain.config import DomainConfig
from streams.domain.engagement import DAY_S, day_date, epoch_of, utc_of
from streams.domain.health import Health
from streams.domain.rules import Signal, assess
from streams.domain.thresholds import RANK, Playbook, RuleSet, Thresholds

# Book layout version (first element of encode_book). Trigger codes are indexes into ACCOUNT_TRIGGERS, which is
# append-only; status and severity codes are indexes into STATUSES / SEVERITY_CODES.
BOOK_FORMAT = 1
STATUSES: tuple[str, ...] = ("resolved", "open", "acknowledged", "snoozed")
SEVERITY_CODES: tuple[str, ...] = ("low", "medium", "high", "critical")
_TRIGGER_CODE = {t: i for i, t in enumerate(ACCOUNT_TRIGGERS)}
_MAX_DETAIL = 500

# While an alert of the key trigger is open, alerts of the listed triggers are resolved as `superseded` and do
# not open: the key trigger explains them and has the more specific playbook.
SUPERSEDES: dict[str, frozenset[str]] = {
    "cancellation_scheduled": frozenset(
        {
            "renewal_risk",
            "low_health",
            "usage_frequency_drop",
            "usage_breadth_drop",
            "inactivity",
            "downgrade",
        }
    ),
    "inactivity": frozenset({"usage_frequency_drop", "usage_breadth_drop"}),
    "renewal_risk": frozenset({"low_health"}),
}
SUPERSEDED_BY: dict[str, tuple[str, ...]] = {
    t: tuple(k for k in ACCOUNT_TRIGGERS if t in SUPERSEDES.get(k, ())) for t in ACCOUNT_TRIGGERS
}
# Resolutions after which the trigger waits cooldown_days before it can open again.
_COOLDOWN_AFTER = frozenset({"recovered", "expired", "resolved_by_user"})
# cooldown_until_s of a slot resolved by apply_action without a RuleSet: changed_s + the rule's cooldown_days,
# fixed by the next evaluate().
_COOLDOWN_PENDING = -1
_STATUS_OF = {
    "opened": "open",
    "escalated": "open",
    "acknowledged": "acknowledged",
    "snoozed": "snoozed",
    "resolved": "resolved",
}


# --- state ----------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class AlertSlot:
    """One trigger of one account: the current (or last) episode and the trigger's cooldown and snooze."""

    episode: int = 0  # episodes opened so far; the current / last one
    episode_day: int = 0  # UTC day index the current / last episode started (part of alert_id)
    cooldown_until_s: int = 0  # epoch s; the trigger cannot open before this
    snoozed_until_s: int = 0  # epoch s; no opened / escalated records before this
    status: str = "resolved"  # resolved (= idle) / open / acknowledged / snoozed
    severity: str = "low"  # highest severity reached in the episode
    published: str | None = None  # severity of the last opened / escalated record; None = not published yet
    opened_at_s: int = 0
    changed_s: int = 0  # last transition (published or not)
    seq: int = 0  # records emitted in this episode (part of record_id)
    acked: bool = False  # acknowledged since the last escalation
    # latest evidence (observed, baseline, threshold, window_days), for records made without a signal
    evidence: tuple[float | None, float | None, float | None, int | None] | None = None

    @property
    def is_open(self) -> bool:
        return self.status != "resolved"


class BookContext(NamedTuple):
    """The account figures of the last evaluation, for records made by people's actions."""

    health_score: int | None
    plan: str | None
    mrr_at_risk: int
    currency: str | None
    cohort: str | None
    stage: str | None


@dataclass(slots=True)
class AlertBook:
    """Alert state of one account (a table value next to AccountState)."""

    account_id: str
    as_of_s: int = 0  # newest evaluation / action time: the book's clock never goes backwards
    slots: dict[str, AlertSlot] = field(default_factory=dict)
    context: BookContext | None = None

    def alert_id_of(self, trigger: str) -> str | None:
        slot = self.slots.get(trigger)
        return (
            None
            if slot is None or slot.episode == 0
            else alert_id(self.account_id, trigger, slot.episode_day)
        )


# Written-out __init__: compiled, unlike a generated one or a NamedTuple's (ADR 0018).
@dataclass(frozen=True, slots=True, init=False)
class AlertContext:
    """What evaluate() needs besides the state: the health the rules saw, the event time that caused this
    evaluation (None for a time tick) and the lifecycle stage at as_of (None = state.stage)."""

    health: Health | None = None
    triggered_by_event_at: datetime | None = None
    stage: str | None = None

    def __init__(
        self, health: Health | None = None, triggered_by_event_at: datetime | None = None,
        stage: str | None = None,
    ) -> None:
        object.__setattr__(self, "health", health)
        object.__setattr__(self, "triggered_by_event_at", triggered_by_event_at)
        object.__setattr__(self, "stage", stage)


def new_book(account_id: str) -> AlertBook:
    return AlertBook(account_id)


def alert_id(account_id: str, trigger: str, episode_day: int) -> str:
    """sha256 of (account, trigger, episode start date) -> 24 hex chars: stable across processes and replays."""
    key = orjson.dumps([account_id, trigger, day_date(episode_day).isoformat()])
    return hashlib.sha256(key).hexdigest()[:24]


def _portfolio_alert_id(trigger: str, key: str) -> str:
    return hashlib.sha256(orjson.dumps([PORTFOLIO_ACCOUNT, trigger, key])).hexdigest()[:24]


# --- records --------------------------------------------------------------------------------------------------


class _Emitter:
    """Builds the records of one evaluate / apply_action call (shared context, deterministic ids)."""

    __slots__ = ("book", "components", "ctx", "now_s", "records", "rs", "triggered_by")

    def __init__(
        self,
        book: AlertBook,
        now_s: int,
        rs: RuleSet | None,
        ctx: BookContext | None,
        components: Mapping[str, float] | None,
        triggered_by: datetime | None,
    ) -> None:
        self.book = book
        self.now_s = now_s
        self.rs = rs
        self.ctx = ctx
        self.components = components
        self.triggered_by = triggered_by
        self.records: list[AlertRecord] = []

    def emit(
        self,
        trigger: str,
        slot: AlertSlot,
        transition: str,
        sig: Signal | None = None,
        *,
        reason: str | None = None,
        actor: str | None = None,
        note: str | None = None,
        detail: str | None = None,
    ) -> None:
        aid = alert_id(self.book.account_id, trigger, slot.episode_day)
        rid = f"{aid}:{slot.seq}:{transition}"
        slot.seq += 1
        if sig is not None:
            evidence = Evidence(
                observed=sig.observed,
                baseline=sig.baseline,
                threshold=sig.threshold,
                window_days=sig.window_days,
                detail=(detail or sig.detail)[:_MAX_DETAIL],
            )
        else:
            obs, base, thr, win = slot.evidence or (None, None, None, None)
            evidence = Evidence(
                observed=obs,
                baseline=base,
                threshold=thr,
                window_days=win,
                detail=(detail or "")[:_MAX_DETAIL],
            )
        plan = None
        if self.rs is not None:
            pid, pb = self.rs.playbook_of(trigger)
            plan = _action_plan(pid, pb)
        ctx = self.ctx
        self.records.append(
            AlertRecord(
                alert_id=aid,
                record_id=rid,
                account_id=self.book.account_id,
                trigger=trigger,  # type: ignore[arg-type]
                severity=slot.severity,  # type: ignore[arg-type]
                transition=transition,  # type: ignore[arg-type]
                status=_STATUS_OF[transition],  # type: ignore[arg-type]
                resolution_reason=reason,  # type: ignore[arg-type]
                evidence=evidence,
                health_score=None if ctx is None else ctx.health_score,
                health_components={k: round(v, 2) for k, v in (self.components or {}).items()},
                mrr_at_risk=0 if ctx is None else ctx.mrr_at_risk,
                currency=None if ctx is None else ctx.currency,
                cohort=None if ctx is None else ctx.cohort,
                lifecycle_stage=None if ctx is None else ctx.stage,
                plan=None if ctx is None else ctx.plan,
                action_plan=plan,
                opened_at=utc_of(slot.opened_at_s),
                occurred_at=utc_of(self.now_s),
                triggered_by_event_at=self.triggered_by,
                snoozed_until=utc_of(slot.snoozed_until_s) if slot.snoozed_until_s > self.now_s else None,
                actor=actor,
                note=note,
            )
        )


def _action_plan(pid: str, pb: Playbook) -> ActionPlan:
    return ActionPlan(playbook_id=pid, title=pb.title, steps=list(pb.steps))


# --- transitions (mutate the slot, emit when the episode is published) ----------------------------------------


def _open(em: _Emitter, trigger: str, slot: AlertSlot, sig: Signal) -> None:
    now = em.now_s
    # When the rule knows when its condition began, the episode starts then: its id AND its opened_at are the
    # same whenever an evaluation noticed it (a worker's tick and replay's tick run at different moments).
    start = sig.since_s if sig.since_s is not None and sig.since_s <= now else now
    day = start // DAY_S
    if slot.episode:
        day = max(day, slot.episode_day + 1)  # a new episode never reuses the previous one's id
    slot.episode += 1
    slot.episode_day = day
    slot.severity = sig.severity
    slot.opened_at_s = max(start, day * DAY_S)  # a new episode's start is never before its (bumped) day
    slot.changed_s = now  # expiry counts from the last change the pipeline saw, not from the condition start
    slot.seq = 0
    slot.acked = False
    slot.evidence = (sig.observed, sig.baseline, sig.threshold, sig.window_days)
    if slot.snoozed_until_s > now:
        slot.status = "snoozed"
        slot.published = None
    else:
        slot.status = "open"
        slot.published = sig.severity
        em.emit(trigger, slot, "opened", sig)


def _escalate(em: _Emitter, trigger: str, slot: AlertSlot, sig: Signal) -> None:
    slot.severity = sig.severity
    slot.changed_s = em.now_s
    if slot.status == "snoozed" or slot.published is None:
        return  # delivered when the snooze ends (_end_snooze)
    slot.status = "open"
    slot.acked = False
    slot.published = sig.severity
    em.emit(trigger, slot, "escalated", sig)


def _resolve(
    em: _Emitter,
    trigger: str,
    slot: AlertSlot,
    reason: str,
    sig: Signal | None,
    rs: RuleSet | None,
    *,
    actor: str | None = None,
    note: str | None = None,
    detail: str | None = None,
) -> None:
    published = slot.published is not None
    slot.status = "resolved"
    slot.changed_s = em.now_s
    if reason in _COOLDOWN_AFTER:
        slot.cooldown_until_s = (
            _COOLDOWN_PENDING if rs is None else em.now_s + rs.rule(trigger).cooldown_days * DAY_S
        )
    if published:
        em.emit(trigger, slot, "resolved", sig, reason=reason, actor=actor, note=note, detail=detail)
    # an idle slot keeps only what the next episode needs (see encode_book)
    slot.severity, slot.published, slot.evidence = "low", None, None
    slot.opened_at_s = slot.seq = 0
    slot.acked = False


def _deliver_held_back(em: _Emitter, trigger: str, slot: AlertSlot, sig: Signal | None) -> bool:
    """Publish what a snooze held back: the opening, or an escalation since the last record. True if any."""
    if slot.published is None:
        slot.published = slot.severity
        slot.status = "open"
        em.emit(trigger, slot, "opened", sig)
        return True
    if RANK[slot.severity] > RANK[slot.published]:
        slot.published = slot.severity
        slot.status = "open"
        slot.acked = False
        em.emit(trigger, slot, "escalated", sig)
        return True
    return False


def _end_snooze(em: _Emitter, trigger: str, slot: AlertSlot, sig: Signal | None) -> None:
    """The snooze is over: deliver what it held back; otherwise the status returns to open / acknowledged
    silently (consumers see `snoozed_until` in the past on the last record)."""
    if slot.is_open and not _deliver_held_back(em, trigger, slot, sig) and slot.status == "snoozed":
        slot.status = "acknowledged" if slot.acked else "open"


# --- evaluate -------------------------------------------------------------------------------------------------


def _context_of(state: AccountState, context: AlertContext) -> BookContext:
    health = context.health
    return BookContext(
        None if health is None else health.score,
        state.plan,
        state.mrr or state.plan_mrr,
        state.currency,
        state.cohort,
        context.stage or state.stage,
    )


def evaluate(
    book: AlertBook,
    state: AccountState,
    signals: Iterable[Signal],
    as_of: datetime,
    rs: RuleSet,
    context: AlertContext | None = None,
) -> tuple[AlertBook, list[AlertRecord]]:
    """Apply one evaluation's signals to the account's alerts. MUTATES and returns the book, with the records.

    Order per trigger (ACCOUNT_TRIGGERS order, superseding triggers first): an account whose subscription is
    canceled gets every open alert resolved as `churned` and opens none; otherwise an open alert is resolved as
    superseded (an open alert of a SUPERSEDES key), recovered (signal.clear), escalated (signal active with a
    higher severity) or expired (not active and unchanged for max_open_days); an idle trigger opens on an active
    signal unless superseded or cooling down. A snooze holds back opened / escalated records until it ends.
    Time never goes backwards: as_of earlier than the book's clock is taken as the book's clock.
    """
    context = context or AlertContext()
    now_s = max(epoch_of(as_of), book.as_of_s)
    book.as_of_s = now_s
    ctx = book.context = _context_of(state, context)
    health = context.health
    em = _Emitter(
        book, now_s, rs, ctx, None if health is None else health.components, context.triggered_by_event_at
    )
    by_trigger = {s.trigger: s for s in signals}
    slots = book.slots

    # Snoozes that ended: lift them now, deliver what they held back after this evaluation's changes.
    ended = [t for t, slot in slots.items() if 0 < slot.snoozed_until_s <= now_s]
    for trigger in ended:
        slots[trigger].snoozed_until_s = 0

    if state.status == "canceled":
        churned = state.churned_s
        detail = "subscription canceled" + ("" if churned is None else f" on {day_date(churned // DAY_S)}")
        for trigger in ACCOUNT_TRIGGERS:
            slot = slots.get(trigger)
            if slot is not None and slot.is_open:
                _resolve(em, trigger, slot, "churned", by_trigger.get(trigger), rs, detail=detail)
        return book, em.records

    open_now: set[str] = set()
    for trigger in ACCOUNT_TRIGGERS:
        sig = by_trigger.get(trigger)
        slot = slots.get(trigger)
        blocker = next((t for t in SUPERSEDED_BY[trigger] if t in open_now), None)
        if slot is not None and slot.is_open:
            if sig is not None:
                slot.evidence = (sig.observed, sig.baseline, sig.threshold, sig.window_days)
            if blocker is not None:
                _resolve(em, trigger, slot, "superseded", sig, rs, detail=f"superseded by {blocker}")
            elif sig is not None and sig.clear:
                _resolve(em, trigger, slot, "recovered", sig, rs)
            elif sig is not None and sig.active:
                if RANK[sig.severity] > RANK[slot.severity]:
                    _escalate(em, trigger, slot, sig)
            elif now_s - slot.changed_s >= rs.rule(trigger).max_open_days * DAY_S:
                _resolve(
                    em,
                    trigger,
                    slot,
                    "expired",
                    sig,
                    rs,
                    detail=f"open {(now_s - slot.opened_at_s) // DAY_S} days, no longer active",
                )
            if slot.is_open:
                open_now.add(trigger)
        elif sig is not None and sig.active and blocker is None:
            if slot is None:
                slot = slots[trigger] = AlertSlot()
            if slot.cooldown_until_s == _COOLDOWN_PENDING:  # resolved by a person without a RuleSet at hand
                slot.cooldown_until_s = slot.changed_s + rs.rule(trigger).cooldown_days * DAY_S
            if now_s >= slot.cooldown_until_s:
                _open(em, trigger, slot, sig)
                open_now.add(trigger)
    for trigger in sorted(ended, key=_TRIGGER_CODE.__getitem__):
        _end_snooze(em, trigger, slots[trigger], by_trigger.get(trigger))
    return book, em.records


def evaluate_account(
    book: AlertBook,
    state: AccountState,
    as_of: datetime,
    rs: RuleSet,
    config: DomainConfig,
    *,
    triggered_by_event_at: datetime | None = None,
    health: Health | None = None,
    triggers: Callable[[str], bool] | None = None,
) -> tuple[AlertBook, list[AlertRecord]]:
    """assess() + evaluate() at one checkpoint (streams.domain.aggregate decides when). MUTATES the book.

    `triggers`, when given, selects which triggers this checkpoint may decide; the others keep their state.
    """
    now_s = max(epoch_of(as_of), book.as_of_s)
    when = utc_of(now_s)
    if state.status == "canceled" and not any(slot.is_open for slot in book.slots.values()):
        book.as_of_s = now_s  # a lost customer with nothing open: no rule can open anything
        return book, []
    a = assess(state, when, rs, config, health, triggers)
    signals = a.signals if triggers is None else [sig for sig in a.signals if triggers(sig.trigger)]
    return evaluate(book, state, signals, when, rs, AlertContext(a.health, triggered_by_event_at, a.stage))


# --- people's actions -----------------------------------------------------------------------------------------


def apply_action(
    book: AlertBook, action: AlertAction, as_of: datetime, *, rs: RuleSet | None = None
) -> tuple[AlertBook, list[AlertRecord]]:
    """Honour an alert-actions record. MUTATES and returns the book, with the records.

    The action addresses the account's current alert by alert_id (ignored when it names an older episode, an
    alert that is already resolved, or another account) or by trigger. acknowledge: status acknowledged (ends a snooze); snooze:
    status snoozed until snooze_until (opened / escalated records held back until then, across episodes);
    resolve: resolved as resolved_by_user (cooldown applies). Repeating an action changes nothing. Records carry
    the account figures of the last evaluation; action_plan is filled when rs is given.
    """
    if action.account_id != book.account_id:
        return book, []
    now_s = max(epoch_of(as_of), book.as_of_s)
    book.as_of_s = now_s
    trigger: str | None = action.trigger
    if action.alert_id is not None:
        trigger = next((t for t in book.slots if book.alert_id_of(t) == action.alert_id), None)
        if trigger is None or (action.trigger is not None and action.trigger != trigger):
            return book, []
    assert trigger is not None
    slot = book.slots.get(trigger)
    if slot is None or not slot.is_open:
        return book, []
    em = _Emitter(book, now_s, rs, book.context, None, action.occurred_at)
    who, note = action.actor, action.reason
    if action.action == "acknowledge":
        if slot.status == "acknowledged":
            return book, []
        slot.snoozed_until_s = 0  # acknowledging ends a snooze: publish what it held back first
        _deliver_held_back(em, trigger, slot, None)
        slot.status = "acknowledged"
        slot.acked = True
        slot.changed_s = now_s
        em.emit(trigger, slot, "acknowledged", actor=who, note=note)
    elif action.action == "snooze":
        assert action.snooze_until is not None
        until = epoch_of(action.snooze_until)
        if until <= now_s or (slot.status == "snoozed" and slot.snoozed_until_s == until):
            return book, []
        slot.snoozed_until_s = until
        slot.changed_s = now_s
        if slot.published is None:
            return book, []  # still unpublished: it stays silent until the new end of the snooze
        slot.status = "snoozed"
        em.emit(trigger, slot, "snoozed", actor=who, note=note)
    else:
        slot.snoozed_until_s = 0
        _resolve(em, trigger, slot, "resolved_by_user", None, rs, actor=who, note=note)
    return book, em.records


# --- views and encoding ---------------------------------------------------------------------------------------


def open_alerts(book: AlertBook) -> list[dict[str, Any]]:
    """The published, unresolved alerts (for the read model's `open_alerts`), in trigger order."""
    out = []
    for trigger in ACCOUNT_TRIGGERS:
        slot = book.slots.get(trigger)
        if slot is None or not slot.is_open or slot.published is None:
            continue
        out.append(
            {
                "alert_id": alert_id(book.account_id, trigger, slot.episode_day),
                "trigger": trigger,
                "severity": slot.severity,
                "status": slot.status,
                "opened_at": _iso(slot.opened_at_s),
                "snoozed_until": _iso(slot.snoozed_until_s) if slot.snoozed_until_s else None,
            }
        )
    return out


def _iso(seconds: int) -> str:
    return utc_of(seconds).isoformat().replace("+00:00", "Z")


def encode_book(book: AlertBook) -> list[Any]:
    """Compact orjson-able lists: [format, account, as_of_s, context | None, slots], slots by trigger code.

    An idle slot is [code, episode, episode_day, cooldown_until_s, snoozed_until_s, changed_s]; an open one adds
    status, severity, published severity (-1 = none), opened_at_s, seq, acked and the 4 evidence values.
    """
    slots = []
    for trigger in sorted(book.slots, key=_TRIGGER_CODE.__getitem__):
        s = book.slots[trigger]
        row: list[Any] = [
            _TRIGGER_CODE[trigger],
            s.episode,
            s.episode_day,
            s.cooldown_until_s,
            s.snoozed_until_s,
            s.changed_s,
        ]
        if s.is_open:
            ev = s.evidence or (None, None, None, None)
            row += [
                STATUSES.index(s.status),
                SEVERITY_CODES.index(s.severity),
                -1 if s.published is None else SEVERITY_CODES.index(s.published),
                s.opened_at_s,
                s.seq,
                int(s.acked),
                *ev,
            ]
        slots.append(row)
    ctx = None if book.context is None else list(book.context)
    return [BOOK_FORMAT, book.account_id, book.as_of_s, ctx, slots]


def decode_book(data: list[Any]) -> AlertBook:
    """Inverse of encode_book (after an orjson round trip too)."""
    if not data or data[0] != BOOK_FORMAT:
        raise ValueError(f"unknown alert book format {data[0] if data else None!r}")
    _, account_id, as_of_s, ctx, rows = data
    book = AlertBook(account_id, as_of_s, {}, None if ctx is None else BookContext(*ctx))
    for row in rows:
        slot = AlertSlot(row[1], row[2], row[3], row[4], changed_s=row[5])
        if len(row) > 6:
            status, sev, pub, opened, seq, acked, *ev = row[6:]
            slot.status = STATUSES[status]
            slot.severity = SEVERITY_CODES[sev]
            slot.published = None if pub < 0 else SEVERITY_CODES[pub]
            slot.opened_at_s, slot.seq, slot.acked = opened, seq, bool(acked)
            slot.evidence = None if all(v is None for v in ev) else (ev[0], ev[1], ev[2], ev[3])
        book.slots[ACCOUNT_TRIGGERS[row[0]]] = slot
    return book


# --- portfolio alerts -----------------------------------------------------------------------------------------


def _portfolio_record(
    trigger: str,
    key: str,
    severity: str,
    evidence: Evidence,
    as_of: datetime,
    playbook: tuple[str, Playbook],
    *,
    mrr_at_risk: int = 0,
    cohort: str | None = None,
) -> AlertRecord:
    aid = _portfolio_alert_id(trigger, key)
    return AlertRecord(
        alert_id=aid,
        record_id=f"{aid}:0:opened",
        account_id=PORTFOLIO_ACCOUNT,
        trigger=trigger,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        transition="opened",
        status="open",
        evidence=evidence,
        mrr_at_risk=max(0, mrr_at_risk),
        cohort=cohort,
        action_plan=_action_plan(*playbook),
        opened_at=as_of,
        occurred_at=as_of,
    )


def portfolio_alerts(
    months: Iterable[CompanyMonth],
    cells: Iterable[CohortCell],
    thresholds: Thresholds,
    as_of: datetime,
    *,
    month: str | None = None,
    segment: str | None = None,
) -> list[AlertRecord]:
    """Portfolio alerts for one calendar month (default: the newest in `months`), for all accounts (segment None)
    or one segment: customer churn above the benchmark, a cohort retaining worse than the mean of earlier cohorts
    at the same age, company NPS too low. Stateless: one `opened` record per breach with a deterministic id
    (trigger + segment + month [+ cohort]); recomputing gives the same records, which consumers deduplicate."""
    p = thresholds.portfolio
    pbs = thresholds.playbooks
    seg = "all" if segment is None else segment
    month_rows = [m for m in months if m.segment == segment]
    cell_rows = [c for c in cells if c.segment == segment]
    if month is None:
        candidates = [m.month for m in month_rows] + [c.month for c in cell_rows]
        if not candidates:
            return []
        month = max(candidates)
    out: list[AlertRecord] = []
    row = next((m for m in month_rows if m.month == month), None)
    r = p.customer_churn_rate
    if (
        r.enabled
        and row is not None
        and row.customer_churn_rate is not None
        and row.customers_start >= r.min_customers
        and row.customer_churn_rate > r.open_above
    ):
        out.append(
            _portfolio_record(
                "customer_churn_rate",
                f"{seg}/{month}",
                r.severity,
                Evidence(
                    observed=round(row.customer_churn_rate, 6),
                    threshold=r.open_above,
                    detail=(
                        f"{row.churned_customers} of {row.customers_start} customers churned in {month} "
                        f"({row.customer_churn_rate:.1%}) vs benchmark {r.open_above:.1%}"
                    ),
                ),
                as_of,
                (r.playbook, pbs[r.playbook]),
                mrr_at_risk=row.churned_mrr,
            )
        )
    c = p.cohort_retention
    if c.enabled:
        for cell in sorted((x for x in cell_rows if x.month == month), key=lambda x: x.cohort):
            if (
                cell.age < 1
                or cell.customer_retention is None
                or cell.cohort_customers < c.min_cohort_customers
            ):
                continue
            earlier = [
                x.customer_retention
                for x in cell_rows
                if x.age == cell.age
                and x.cohort < cell.cohort
                and x.customer_retention is not None
                and x.cohort_customers >= c.min_cohort_customers
            ]
            if len(earlier) < c.min_earlier_cohorts:
                continue
            mean = sum(earlier) / len(earlier)
            if cell.customer_retention < mean - c.tolerance:
                out.append(
                    _portfolio_record(
                        "cohort_retention",
                        f"{seg}/{month}/{cell.cohort}",
                        c.severity,
                        Evidence(
                            observed=round(cell.customer_retention, 6),
                            baseline=round(mean, 6),
                            threshold=round(mean - c.tolerance, 6),
                            detail=(
                                f"cohort {cell.cohort} retains {cell.customer_retention:.1%} at age {cell.age} vs "
                                f"{mean:.1%} for {len(earlier)} earlier cohorts"
                            ),
                        ),
                        as_of,
                        (c.playbook, pbs[c.playbook]),
                        mrr_at_risk=cell.cohort_mrr - cell.capped_mrr_end,
                        cohort=cell.cohort,
                    )
                )
    n = p.company_nps
    if (
        n.enabled
        and row is not None
        and row.nps is not None
        and row.nps_responses >= n.min_responses
        and row.nps < n.open_below
    ):
        out.append(
            _portfolio_record(
                "company_nps",
                f"{seg}/{month}",
                n.severity,
                Evidence(
                    observed=round(row.nps, 2),
                    threshold=n.open_below,
                    detail=f"company NPS {row.nps:.0f} in {month} over {row.nps_responses} answers",
                ),
                as_of,
                (n.playbook, pbs[n.playbook]),
            )
        )
    return out
