"""Account health score 0-100: named component rules, configurable weights, and a 30-day trend."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from streams.domain.account import AccountState
from streams.domain.config import HealthTargets, HealthWeights
from streams.domain.engagement import EngagementSummary, day_index, engagement_summary

COMPONENTS = (
    "usage_frequency", "usage_trend", "breadth", "stickiness", "nps", "billing", "support", "seat_utilisation"
)
NEUTRAL = 50.0  # a component without data neither helps nor hurts
_DEFAULT_TARGETS = HealthTargets()


# Written-out __init__: compiled, unlike a generated one or a NamedTuple's (ADR 0018).
@dataclass(frozen=True, slots=True, init=False)
class Health:
    score: int  # 0..100, weighted mean of the components, rounded half up
    components: dict[str, float]  # component -> 0..100
    trend: float  # score points gained (+) or lost (-) over the last 30 days, see health_trend()

    def __init__(
        self, score: int, components: dict[str, float], trend: float,
    ) -> None:
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "components", components)
        object.__setattr__(self, "trend", trend)


# --- component rules (each 0..100) ----------------------------------------------------------------------------


def _cap(x: float) -> float:
    return 0.0 if x < 0 else 100.0 if x > 100 else float(x)


def usage_frequency_component(active_days_30: int, t: HealthTargets) -> float:
    """Active days in the last 30 against the target (20 = every workday): 100 at or above it."""
    return _cap(100.0 * active_days_30 / t.active_days_30)


def usage_trend_component(active_days_30: int, baseline_30: int, baseline_complete: bool, t: HealthTargets
                          ) -> float:
    """Active days now vs the preceding 30 days, ratio smoothed by +1: 100 x min(r, 1.25) / 1.25.

    Steady use scores 80, halved use ~40, growth of 25% or more 100. Neutral 50 without a full baseline.
    """
    if not baseline_complete:
        return NEUTRAL
    ratio = (active_days_30 + 1) / (baseline_30 + 1)
    return _cap(100.0 * min(ratio, t.trend_full_ratio) / t.trend_full_ratio)


def breadth_component(breadth_30: int, t: HealthTargets) -> float:
    """Distinct features used in the last 30 days against the target (8)."""
    return _cap(100.0 * breadth_30 / t.breadth_30)


def stickiness_component(stickiness_30: float | None, t: HealthTargets) -> float:
    """DAU/MAU over 30 days against the target (0.4)."""
    return _cap(100.0 * (stickiness_30 or 0.0) / t.stickiness)


def nps_component(nps: float | None) -> float:
    """Account NPS -100..100 mapped to 0..100; neutral 50 without answers."""
    return NEUTRAL if nps is None else _cap((nps + 100.0) / 2.0)


def billing_component(state: AccountState, t: HealthTargets) -> float:
    """100 minus 20 per open failed payment attempt (at most 60) and 20 when past due; at most 10 while a
    cancellation is scheduled, at most 50 while paused; 0 once canceled."""
    if state.status == "canceled":
        return 0.0
    score = 100.0 - min(t.failed_attempts_max_penalty, t.failed_attempt_penalty * state.failed_payment_attempts)
    if state.status == "past_due":
        score -= t.past_due_penalty
    if state.cancel_scheduled:
        score = min(score, t.cancel_scheduled_cap)
    if state.status == "paused":
        score = min(score, t.paused_cap)
    return _cap(score)


def support_component(tickets_30: int, seats: int, active_users_30: int, t: HealthTargets) -> float:
    """Tickets opened in 30 days per seat (per active user without seats): 100 at none, 0 at the target (0.5)."""
    per = seats if seats > 0 else max(1, active_users_30)
    return _cap(100.0 * (1.0 - tickets_30 / per / t.tickets_per_seat_30))


def seat_utilisation_component(active_users_30: int, seats: int, t: HealthTargets) -> float:
    """Active users in 30 days / seats against the target (0.8); neutral 50 without a seat count."""
    if seats <= 0:
        return NEUTRAL
    return _cap(100.0 * active_users_30 / seats / t.seat_utilisation)


def components_of(state: AccountState, summary: EngagementSummary, t: HealthTargets) -> dict[str, float]:
    last, prev = summary.last30, summary.prev30
    return {
        "usage_frequency": usage_frequency_component(last.active_days, t),
        "usage_trend": usage_trend_component(last.active_days, prev.active_days, summary.baseline_complete(30), t),
        "breadth": breadth_component(last.breadth, t),
        "stickiness": stickiness_component(last.stickiness, t),
        "nps": nps_component(summary.nps),
        "billing": billing_component(state, t),
        "support": support_component(last.tickets, state.seats, last.active_users, t),
        "seat_utilisation": seat_utilisation_component(last.active_users, state.seats, t),
    }


def weighted_score(components: dict[str, float], weights: HealthWeights) -> int:
    """Sum of component x normalised weight, rounded half up, 0..100."""
    total = 0.0
    for name, share in weights.shares:
        total += components[name] * share
    return max(0, min(100, int(total + 0.5)))


def health_trend(state: AccountState, day: int, score: int, summary: EngagementSummary, weights: HealthWeights,
                 t: HealthTargets) -> float:
    """Score now minus the score 30 days earlier, when the account was tracked then (>= 60 days of history).

    The earlier score uses the engagement, tickets and NPS answers as they were 30 days earlier and today's
    billing and seats (billing history is not kept). With less history: the usage-frequency change of the
    last 7 days vs the 7 before, scaled to 30 days and weighted like the frequency component (0 under 14 days).
    """
    if summary.tracked_days >= 60:
        earlier = engagement_summary(state, day - 30)
        return float(score - weighted_score(components_of(state, earlier, t), weights))
    if summary.tracked_days >= 14:
        change = (summary.last7.active_days - summary.prev7.active_days) / 7.0  # share of days gained
        return 100.0 * change * weights.normalised()["usage_frequency"]
    return 0.0


def health_score(state: AccountState, as_of: date | datetime | int, weights: HealthWeights,
                 targets: HealthTargets | None = None, summary: EngagementSummary | None = None) -> Health:
    """Health on as_of's UTC day (int = day index): the weighted components and the 30-day trend. `summary`, when
    the caller has it, is the account's engagement summary on that day (any key roles: health does not read
    key users); it is computed otherwise."""
    day = as_of if isinstance(as_of, int) else day_index(as_of)
    t = targets or _DEFAULT_TARGETS
    if summary is None:
        summary = engagement_summary(state, day)
    components = components_of(state, summary, t)
    score = weighted_score(components, weights)
    return Health(score, components, health_trend(state, day, score, summary, weights, t))

