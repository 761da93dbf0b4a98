"""Churn-trigger rules: pure functions of (state, engagement summary, health, RuleSet, as_of) -> Signal | None.

Every rule is a module-level `rule_<trigger>` function. A Signal says whether the rule's open condition holds
(`active`) and whether the account is back beyond the clear level (`clear`); neither = hold (hysteresis). None
means the rule is disabled or cannot judge the account (missing data): the lifecycle then holds too. The
lifecycle (streams.domain.alerts) turns signals into alert transitions. Rules never read the wall clock: time-
driven rules (inactivity, renewal_risk, activation_stalled, cancellation escalation) fire from `as_of` alone.

Units of observed / baseline / threshold per trigger are listed in docs/alerts.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from streams.domain.account import AccountState, lifecycle_stage
from streams.domain.config import DEFAULT_KEY_ROLES, DomainConfig
from streams.domain.engagement import (
    DAY_S,
    ROLES,
    EngagementSummary,
    account_nps,
    day_date,
    day_index,
    engagement_summary,
    epoch_of,
    tickets_opened,
)
from streams.domain.health import Health, health_score
from streams.domain.thresholds import RANK, LadderRule, RuleSet


# eq=False: equal when every field is, with `describe` compared as the text it gives (see __eq__).
@dataclass(frozen=True, slots=True, init=False, eq=False)  # written-out __init__: compiled (ADR 0018)
class Signal:
    """One rule's verdict on one account at as_of."""

    trigger: str
    severity: str  # low / medium / high / critical, from the rule's ladder
    observed: float | None
    baseline: float | None
    threshold: float | None  # the level at which the alert opens, in the unit of `observed`
    window_days: int | None
    active: bool  # the open threshold is crossed
    clear: bool  # back beyond the clear threshold (never together with active)
    # The evidence text (`detail`), or a function that writes it from values taken at the evaluation. The text
    # is read only when an alert record is written; written at every evaluation, the rules' texts took about a
    # sixth of an evaluation's time (ADR 0018, addendum of 2026-12-06).
    describe: str | Callable[[], str] = ""
    # Event time (epoch s) at which the open condition started to hold, when the rule knows it (time-driven
    # rules): the episode's start day then does not depend on when the evaluation ran.
    since_s: int | None = None

    def __init__(
        self, trigger: str, severity: str, observed: float | None, baseline: float | None, threshold: float | None,
        window_days: int | None, active: bool, clear: bool, describe: str | Callable[[], str] = "",
        since_s: int | None = None,
    ) -> None:
        object.__setattr__(self, "trigger", trigger)
        object.__setattr__(self, "severity", severity)
        object.__setattr__(self, "observed", observed)
        object.__setattr__(self, "baseline", baseline)
        object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "window_days", window_days)
        object.__setattr__(self, "active", active)
        object.__setattr__(self, "clear", clear)
        object.__setattr__(self, "describe", describe)
        object.__setattr__(self, "since_s", since_s)

    @property
    def detail(self) -> str:
        """The evidence text of the alert record."""
        d = self.describe
        return d if isinstance(d, str) else d()

    def _compared(self) -> tuple[object, ...]:
        return (self.trigger, self.severity, self.observed, self.baseline, self.threshold, self.window_days,
                self.active, self.clear, self.detail, self.since_s)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Signal):
            return NotImplemented
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash(self._compared())


def _as_of_s(as_of: datetime | date | int) -> tuple[int, int]:
    """(day index, epoch seconds) of as_of; a date or a day index means the end of that UTC day."""
    if isinstance(as_of, datetime):
        seconds = epoch_of(as_of)  # every rule asks, at every evaluation: converted once (engagement.epoch_of)
        return seconds // DAY_S, seconds
    day = day_index(as_of)
    return day, (day + 1) * DAY_S - 1


def severity_at(r: LadderRule, measure: float) -> str:
    """The rule's opening severity raised to the highest rung of its `escalate` ladder that `measure` reaches
    (at or above the rung's level for a HIGHER_IS_WORSE rule, at or below it otherwise)."""
    severity = r.severity
    rank = RANK[severity]
    worse = r.HIGHER_IS_WORSE
    for name, level in r.escalate.items():
        if level is not None and (measure >= level if worse else measure <= level) and RANK[name] > rank:
            severity, rank = name, RANK[name]
    return severity


def _pct_drop(baseline: float, observed: float) -> float:
    return 100.0 * (baseline - observed) / baseline if baseline else 0.0


def _crossed(baseline: float, observed: float, pct: float) -> bool:
    """observed fell by at least pct % of baseline (exact, no float rounding at the boundary)."""
    return 100 * (baseline - observed) >= pct * baseline


def _iso_day(seconds: int | None) -> str:
    return "?" if seconds is None else day_date(seconds // DAY_S).isoformat()


# --- accessors: figures AccountState does not keep (yet); None = unavailable -> the rule returns None ----------


def last_key_user_removal(state: AccountState) -> tuple[int, str] | None:
    """(event time, role) of the latest removal of a key user (owner / admin / champion), or None."""
    at = getattr(state, "key_user_removed_s", None)
    if at is None:
        return None
    code = getattr(state, "key_user_removed_role", 0) or 0
    return at, ROLES[code - 1] if 0 < code <= len(ROLES) else "key user"


def key_user_added_after(
    state: AccountState, at_s: int, key_roles: frozenset[str] = DEFAULT_KEY_ROLES
) -> bool:
    """True when a user currently holding a key role was added after at_s (the removed key user was replaced)."""
    return any(
        code and ROLES[code - 1] in key_roles and added > at_s
        for added, code in state.engagement.roles.values()
    )


def terms_history(state: AccountState) -> list[tuple[int, int, int | None]]:
    """(event time, MRR, seats or None) of the subscription snapshots the state still holds, oldest first.

    Today these are `state.snapshots` (event time, MRR): the snapshots within the lateness bound plus the newest
    one before it, without seats. The value in effect at a time t is known only from the oldest entry on.
    If snapshots grow a third element (seats), it is used.
    """
    out: list[tuple[int, int, int | None]] = []
    for snap in state.snapshots:
        seats: int | None = snap[2] if len(snap) > 2 else None  # type: ignore[misc]
        out.append((snap[0], snap[1], seats))
    return out


def nps_scores_as_of(state: AccountState, last_s: int) -> list[int]:
    """Each user's latest NPS answer dated before last_s, as the state knows it.

    The state keeps only each user's latest answer, so a user who answered again after last_s is missing from
    this list (their earlier answer is gone): the baseline of nps_drop is then computed without them.
    """
    return [score for at, score in state.engagement.nps.values() if at < last_s]


# --- rules ----------------------------------------------------------------------------------------------------


def _window_drop(
    trigger: str, r: Any, summary: EngagementSummary, figure: str, minimum: int, describe: str
) -> Signal | None:
    """A figure of the last window vs the equal window before fell by >= open_drop_pct (hysteresis: recovered
    below clear_drop_pct). `describe` is formatted with obs, base, w and drop."""
    if not r.enabled:
        return None
    w = r.window_days
    last, prev = (summary.last30, summary.prev30) if w == 30 else (summary.last7, summary.prev7)
    base, obs = getattr(prev, figure), getattr(last, figure)
    if not summary.baseline_complete(w) or base < minimum:
        return None
    drop = _pct_drop(base, obs)
    active = _crossed(base, obs, r.open_drop_pct)
    return Signal(
        trigger,
        severity_at(r, drop),
        obs,
        base,
        round(base * (1 - r.open_drop_pct / 100), 2),
        w,
        active,
        not active and not _crossed(base, obs, r.clear_drop_pct),
        lambda: describe.format(obs=obs, base=base, w=w, drop=-drop),
    )


def rule_usage_frequency_drop(
    state: AccountState, summary: EngagementSummary, health: Health, rs: RuleSet, as_of: datetime | date | int
) -> Signal | None:
    """Active days in the last window vs the window before fell by >= open_drop_pct (baseline >= min days)."""
    r = rs.rules.usage_frequency_drop
    return _window_drop(
        "usage_frequency_drop", r, summary, "active_days", r.min_baseline_days,
        "active on {obs} of the last {w} days vs {base} in the {w} before ({drop:+.0f}%)",
    )


def rule_usage_breadth_drop(
    state: AccountState, summary: EngagementSummary, health: Health, rs: RuleSet, as_of: datetime | date | int
) -> Signal | None:
    """Distinct features used in the last window vs the window before fell by >= open_drop_pct."""
    r = rs.rules.usage_breadth_drop
    return _window_drop(
        "usage_breadth_drop", r, summary, "breadth", r.min_baseline_features,
        "{obs} distinct features used in the last {w} days vs {base} in the {w} before ({drop:+.0f}%)",
    )


def rule_inactivity(
    state: AccountState, summary: EngagementSummary, health: Health, rs: RuleSet, as_of: datetime | date | int
) -> Signal | None:
    """No session, feature use or API call for >= open_days (time-driven); recovered when active on
    >= clear_active_days of the last 7 days. None for accounts never active."""
    r = rs.rules.inactivity
    last = summary.last_activity_day
    if not r.enabled or last is None:
        return None
    day, _ = _as_of_s(as_of)
    gap = max(0, day - last)
    active = gap >= r.open_days
    return Signal(
        "inactivity",
        severity_at(r, gap),
        gap,
        None,
        r.open_days,
        r.open_days,
        active,
        not active and summary.last7.active_days >= r.clear_active_days,
        lambda: f"no activity for {gap} days (last active {day_date(last).isoformat()})",
        (last + r.open_days) * DAY_S,
    )


def rule_nps_detractor(
    state: AccountState, summary: EngagementSummary, health: Health, rs: RuleSet, as_of: datetime | date | int
) -> Signal | None:
    """A user's latest answer, given within window_days, is <= open_max_score; recovered when every such answer
    is >= clear_min_score. None without recent answers (an aged-out detractor alert then expires)."""
    r = rs.rules.nps_detractor
    if not r.enabled:
        return None
    day, _ = _as_of_s(as_of)
    first_s, end_s = (day - r.window_days + 1) * DAY_S, (day + 1) * DAY_S
    recent = [(at, score) for at, score in state.engagement.nps.values() if first_s <= at < end_s]
    if not recent:
        return None
    worst = min(score for _, score in recent)
    detractors = [at for at, score in recent if score <= r.open_max_score]
    active = bool(detractors)
    return Signal(
        "nps_detractor",
        severity_at(r, worst),
        worst,
        None if summary.nps is None else round(summary.nps, 1),
        r.open_max_score,
        r.window_days,
        active,
        not active and worst >= r.clear_min_score,
        lambda: f"{len(detractors)} of {len(recent)} users answering in the last {r.window_days} days scored "
        f"<= {r.open_max_score}; lowest latest answer {worst}",
        min(detractors) if detractors else None,
    )


def rule_nps_drop(
    state: AccountState, summary: EngagementSummary, health: Health, rs: RuleSet, as_of: datetime | date | int
) -> Signal | None:
    """Account NPS fell by >= open_drop_points against window_days ago (both with >= min_responses answers)."""
    r = rs.rules.nps_drop
    if not r.enabled:
        return None
    day, _ = _as_of_s(as_of)
    now = nps_scores_as_of(state, (day + 1) * DAY_S)
    then = nps_scores_as_of(state, (day - r.window_days + 1) * DAY_S)
    if len(now) < r.min_responses or len(then) < r.min_responses:
        return None
    nps_now, nps_then = account_nps(now), account_nps(then)
    assert nps_now is not None and nps_then is not None
    drop = nps_then - nps_now
    active = drop >= r.open_drop_points
    return Signal(
        "nps_drop",
        severity_at(r, drop),
        round(nps_now, 1),
        round(nps_then, 1),
        round(nps_then - r.open_drop_points, 1),
        r.window_days,
        active,
        not active and drop < r.clear_drop_points,
        lambda: f"account NPS {nps_now:.0f} ({len(now)} answers) vs {nps_then:.0f} {r.window_days} days ago "
        f"({len(then)} answers)",
    )


def rule_key_user_removed(
    state: AccountState, summary: EngagementSummary, health: Health, rs: RuleSet, as_of: datetime | date | int
) -> Signal | None:
    """A key user was removed within window_days and no key user was added since. Needs the removal register
    (see last_key_user_removal); None while the state does not keep it."""
    r = rs.rules.key_user_removed
    if not r.enabled:
        return None
    removal = last_key_user_removal(state)
    if removal is None:
        return None
    at_s, role = removal
    day, _ = _as_of_s(as_of)
    age = max(0, day - at_s // DAY_S)
    replaced = key_user_added_after(state, at_s)
    active = age < r.window_days and not replaced
    return Signal(
        "key_user_removed",
        r.severity,
        age,
        summary.key_users,
        r.window_days,
        r.window_days,
        active,
        not active,
        lambda: f"{role} removed on {_iso_day(at_s)}" + ("; a key user was added since" if replaced else ""),
        at_s,
    )


def rule_usage_limit_hits(
    state: AccountState, summary: EngagementSummary, health: Health, rs: RuleSet, as_of: datetime | date | int
) -> Signal | None:
    """At least open_hits usage-limit hits in the window; recovered at <= clear_hits."""
    r = rs.rules.usage_limit_hits
    if not r.enabled:
        return None
    w = r.window_days
    last, prev = (summary.last30, summary.prev30) if w == 30 else (summary.last7, summary.prev7)
    hits = last.limit_hits
    active = hits >= r.open_hits
    return Signal(
        "usage_limit_hits",
        severity_at(r, hits),
        hits,
        prev.limit_hits,
        r.open_hits,
        w,
        active,
        not active and hits <= r.clear_hits,
        lambda: f"{hits} usage-limit hits in the last {w} days ({prev.limit_hits} in the {w} before)",
    )


def rule_payment_failed(
    state: AccountState, summary: EngagementSummary, health: Health, rs: RuleSet, as_of: datetime | date | int
) -> Signal | None:
    """An open failed payment (attempt >= open_attempts); severity by attempt; recovered when an invoice is paid."""
    r = rs.rules.payment_failed
    if not r.enabled:
        return None
    attempts, failed_s = state.failed_payment_attempts, state.failed_s
    active = attempts >= r.open_attempts
    return Signal(
        "payment_failed",
        severity_at(r, attempts),
        attempts,
        None,
        r.open_attempts,
        None,
        active,
        attempts == 0,
        (lambda: f"payment attempt {attempts} failed on {_iso_day(failed_s)}") if attempts
        else "no open failed payment",
        # The episode starts at the failed payment, not at the evaluation that saw it: billing read after later
        # usage is evaluated at the account's current day end (its book never goes back), and the alert id must
        # not depend on that (ADR 0004).
        state.failed_s if active else None,
    )


def rule_downgrade(
    state: AccountState, summary: EngagementSummary, health: Health, rs: RuleSet, as_of: datetime | date | int
) -> Signal | None:
    """MRR (or seats) fell by >= open_contraction_pct from its highest level within window_days.

    Uses terms_history(): the highest level is taken over the part of the window the state still covers, so a
    contraction is seen while its earlier level is kept (today: within the lateness bound of the change).
    Recovered only when the whole window is covered, the contraction is below clear_contraction_pct and MRR
    rose within the window; otherwise a contraction that left the window holds and the alert expires.
    """
    r = rs.rules.downgrade
    if not r.enabled:
        return None
    hist = terms_history(state)
    if not hist or state.snapshot_s is None:
        return None
    day, now_s = _as_of_s(as_of)
    start_s = (day - r.window_days + 1) * DAY_S
    covered = hist[0][0] <= start_s
    in_window = [p for p in hist if start_s < p[0] <= now_s]
    at_start = [p for p in hist if p[0] <= start_s][-1:]
    points = at_start + in_window
    if not points:
        return None
    cur_mrr, cur_seats = state.plan_mrr, state.seats
    peak_mrr = max(p[1] for p in points)
    mrr_drop = _pct_drop(peak_mrr, cur_mrr) if peak_mrr > 0 else 0.0
    seat_points = [p[2] for p in points if p[2] is not None]
    peak_seats = max(seat_points) if seat_points else None
    seat_drop = _pct_drop(peak_seats, cur_seats) if peak_seats else 0.0
    # Seats explain the drop only when there is a seat history and it fell more than MRR did (MRR may have
    # risen: a negative drop).
    by_seats = peak_seats is not None and seat_drop > mrr_drop
    drop = max(mrr_drop, seat_drop, 0.0)
    active = drop >= r.open_contraction_pct
    rose = state.last_mrr_rise_s
    clear = not active and covered and drop < r.clear_contraction_pct and rose is not None and rose >= start_s
    if by_seats:
        assert peak_seats is not None
        observed, baseline, what = float(cur_seats), float(peak_seats), "seats"
    else:
        observed, baseline, what = float(cur_mrr), float(peak_mrr), "MRR (minor units)"
    return Signal(
        "downgrade",
        severity_at(r, drop),
        observed,
        baseline,
        round(baseline * (1 - r.open_contraction_pct / 100), 2),
        r.window_days,
        active,
        clear,
        lambda: f"{what} {observed:.0f} vs {baseline:.0f} at the highest within {r.window_days} days (-{drop:.0f}%)",
        state.snapshot_s if active else None,
    )


def rule_cancellation_scheduled(
    state: AccountState, summary: EngagementSummary, health: Health, rs: RuleSet, as_of: datetime | date | int
) -> Signal | None:
    """A cancellation is scheduled; escalates as its effective date approaches; recovered when unscheduled."""
    r = rs.rules.cancellation_scheduled
    if not r.enabled:
        return None
    if not state.cancel_scheduled:
        return Signal(
            "cancellation_scheduled",
            r.severity,
            None,
            None,
            None,
            None,
            False,
            True,
            "no cancellation scheduled",
        )
    day, _ = _as_of_s(as_of)
    effective = state.cancel_effective_s
    days_left = None if effective is None else max(0, effective // DAY_S - day)
    severity = r.severity if days_left is None else severity_at(r, days_left)
    cancel_s = state.cancel_s
    return Signal(
        "cancellation_scheduled",
        severity,
        days_left,
        None,
        None,
        None,
        True,
        False,
        lambda: f"cancellation scheduled on {_iso_day(cancel_s)}, takes effect "
        + ("at the end of the period" if effective is None else f"on {_iso_day(effective)}"),
        cancel_s,
    )


def rule_renewal_risk(
    state: AccountState, summary: EngagementSummary, health: Health, rs: RuleSet, as_of: datetime | date | int
) -> Signal | None:
    """Renewal within within_days and health < open_below_score (time-driven), for subscriptions billed at one
    of billing_intervals; recovered when health >= clear_at_score or the renewal moved out of the window. A
    renewal date that passed without a renewal holds."""
    r = rs.rules.renewal_risk
    renews = state.renews_at_s
    if not r.enabled or renews is None or state.billing_interval not in r.billing_intervals:
        return None
    day, _ = _as_of_s(as_of)
    days_left = renews // DAY_S - day
    score = health.score

    def detail() -> str:
        return f"renews on {_iso_day(renews)} (in {days_left} days), health {score}"

    if days_left < 0:
        return Signal(
            "renewal_risk", r.severity, score, None, r.open_below_score, r.within_days, False, False, detail
        )
    in_window = days_left <= r.within_days
    active = in_window and score < r.open_below_score
    return Signal(
        "renewal_risk",
        severity_at(r, days_left),
        score,
        None,
        r.open_below_score,
        r.within_days,
        active,
        not active and (not in_window or score >= r.clear_at_score),
        detail,
    )


def rule_ticket_spike(
    state: AccountState, summary: EngagementSummary, health: Health, rs: RuleSet, as_of: datetime | date | int
) -> Signal | None:
    """Tickets opened in the last 7 days >= open_tickets and >= ratio x the weekly average of the baseline_weeks
    before; recovered at <= clear_tickets in the last 7 days."""
    r = rs.rules.ticket_spike
    if not r.enabled:
        return None
    day, _ = _as_of_s(as_of)
    last7 = summary.last7.tickets
    before = tickets_opened(state.engagement, day - 7 - 7 * r.baseline_weeks + 1, day - 7)
    weekly = before / r.baseline_weeks
    threshold = max(float(r.open_tickets), r.ratio * weekly)
    active = last7 >= threshold
    return Signal(
        "ticket_spike",
        severity_at(r, last7),
        last7,
        round(weekly, 2),
        round(threshold, 2),
        7,
        active,
        not active and last7 <= r.clear_tickets,
        lambda: f"{last7} tickets opened in the last 7 days vs {weekly:.1f} a week over the {r.baseline_weeks} weeks "
        "before",
    )


def rule_activation_stalled(
    state: AccountState, summary: EngagementSummary, health: Health, rs: RuleSet, as_of: datetime | date | int
) -> Signal | None:
    """No first value (key action) open_days after the start (time-driven); recovered at the first value."""
    r = rs.rules.activation_stalled
    started = state.started_at_s
    if not r.enabled or started is None:
        return None
    day, _ = _as_of_s(as_of)
    days = max(0, day - started // DAY_S)
    first_value = state.engagement.first_value_s
    if first_value is not None:
        return Signal(
            "activation_stalled",
            r.severity,
            days,
            None,
            r.open_days,
            r.open_days,
            False,
            True,
            lambda: f"first value on {_iso_day(first_value)}",
        )
    active = days >= r.open_days
    return Signal(
        "activation_stalled",
        severity_at(r, days),
        days,
        None,
        r.open_days,
        r.open_days,
        active,
        False,
        lambda: f"started on {_iso_day(started)}, no first value after {days} days",
        (started // DAY_S + r.open_days) * DAY_S,
    )


def rule_low_health(
    state: AccountState, summary: EngagementSummary, health: Health, rs: RuleSet, as_of: datetime | date | int
) -> Signal | None:
    """Health score < open_below_score; recovered at >= clear_at_score. Baseline: the score 30 days earlier."""
    r = rs.rules.low_health
    if not r.enabled or summary.tracked_days < r.min_tracked_days:
        return None
    score = health.score
    active = score < r.open_below_score
    return Signal(
        "low_health",
        severity_at(r, score),
        score,
        round(score - health.trend, 1),
        r.open_below_score,
        None,
        active,
        not active and score >= r.clear_at_score,
        lambda: "weakest components: " + ", ".join(
            f"{name} {value:.0f}" for name, value in sorted(health.components.items(), key=lambda kv: kv[1])[:3]
        ),
    )


RuleFn = Callable[
    [AccountState, EngagementSummary, Health, RuleSet, "datetime | date | int"], "Signal | None"
]

# trigger -> rule, in the lifecycle's evaluation order (schemas.alerts.ACCOUNT_TRIGGERS).
RULES: dict[str, RuleFn] = {
    "cancellation_scheduled": rule_cancellation_scheduled,
    "payment_failed": rule_payment_failed,
    "downgrade": rule_downgrade,
    "key_user_removed": rule_key_user_removed,
    "renewal_risk": rule_renewal_risk,
    "inactivity": rule_inactivity,
    "activation_stalled": rule_activation_stalled,
    "nps_detractor": rule_nps_detractor,
    "nps_drop": rule_nps_drop,
    "ticket_spike": rule_ticket_spike,
    "usage_limit_hits": rule_usage_limit_hits,
    "usage_frequency_drop": rule_usage_frequency_drop,
    "usage_breadth_drop": rule_usage_breadth_drop,
    "low_health": rule_low_health,
}


def run_rules(
    state: AccountState,
    summary: EngagementSummary,
    health: Health,
    rs: RuleSet,
    as_of: datetime | date | int,
    rules: Iterable[RuleFn] | None = None,
) -> list[Signal]:
    """Every rule's signal (None results dropped), in evaluation order."""
    out = []
    for rule in RULES.values() if rules is None else rules:
        sig = rule(state, summary, health, rs, as_of)
        if sig is not None:
            out.append(sig)
    return out


# Written-out __init__: compiled, unlike a generated one or a NamedTuple's (ADR 0018).
@dataclass(frozen=True, slots=True, init=False)
class Assessment:
    summary: EngagementSummary
    health: Health
    stage: str
    signals: list[Signal]

    def __init__(
        self, summary: EngagementSummary, health: Health, stage: str, signals: list[Signal],
    ) -> None:
        object.__setattr__(self, "summary", summary)
        object.__setattr__(self, "health", health)
        object.__setattr__(self, "stage", stage)
        object.__setattr__(self, "signals", signals)


def assess(
    state: AccountState,
    as_of: datetime | date | int,
    rs: RuleSet,
    config: DomainConfig,
    health: Health | None = None,
    triggers: Callable[[str], bool] | None = None,
) -> Assessment:
    """Engagement summary, health (computed unless given), lifecycle stage and every rule's signal at as_of;
    with `triggers`, only the signals of the triggers it selects (the other rules are not run)."""
    day, _ = _as_of_s(as_of)
    summary = engagement_summary(state, day, key_roles=config.key_roles)
    if health is None:
        health = health_score(state, day, config.health_weights, config.health_targets, summary)
    stage = state.stage if day == state.engagement.clock_day else lifecycle_stage(state, day, config)
    # A rule's signal carries its RULES key as trigger: skipping a rule drops exactly the signal a caller
    # filtering by trigger would drop (a billing checkpoint runs 3 of the 14 rules).
    selected = None if triggers is None else [rule for trigger, rule in RULES.items() if triggers(trigger)]
    return Assessment(summary, health, stage, run_rules(state, summary, health, rs, as_of, selected))
