"""Validated settings of the account domain: lateness, dedupe, retention bounds, lifecycle and health scoring."""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Role = Literal["owner", "admin", "champion", "member", "viewer", "billing"]
DEFAULT_KEY_ROLES: frozenset[str] = frozenset({"owner", "admin", "champion"})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HealthWeights(_Frozen):
    """Relative weight of each health component; any non-negative numbers, normalised to sum 1."""

    usage_frequency: float = Field(0.20, ge=0)
    usage_trend: float = Field(0.15, ge=0)
    breadth: float = Field(0.10, ge=0)
    stickiness: float = Field(0.10, ge=0)
    nps: float = Field(0.10, ge=0)
    billing: float = Field(0.20, ge=0)
    support: float = Field(0.05, ge=0)
    seat_utilisation: float = Field(0.10, ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> HealthWeights:
        if sum(self.model_dump().values()) <= 0:
            raise ValueError("health weights must not all be zero")
        return self

    @cached_property
    def _normalised(self) -> dict[str, float]:
        raw = self.model_dump()
        total = sum(raw.values())
        return {name: value / total for name, value in raw.items()}

    def normalised(self) -> dict[str, float]:
        """Component name -> weight / sum of weights (sums to 1.0); computed once per (frozen) instance."""
        return dict(self._normalised)

    @cached_property
    def shares(self) -> tuple[tuple[str, float], ...]:
        """`normalised()` as (component, share) pairs, without a copy per call: every health score reads them."""
        return tuple(self._normalised.items())


class HealthTargets(_Frozen):
    """The level at which a component reaches 100 (or 0 for penalties); see docs/health-score.md."""

    active_days_30: int = Field(20, ge=1, le=30)  # active days in 30 that count as fully engaged (~workdays)
    breadth_30: int = Field(8, ge=1, le=10_000)  # distinct features in 30 days that count as broad use
    stickiness: float = Field(0.4, gt=0, le=1)  # DAU/MAU that counts as a daily habit
    seat_utilisation: float = Field(0.8, gt=0, le=1)  # active users / seats that counts as fully used
    tickets_per_seat_30: float = Field(0.5, gt=0)  # tickets opened per seat in 30 days at which support = 0
    trend_full_ratio: float = Field(1.25, gt=1)  # active days now / baseline at which trend = 100
    failed_attempt_penalty: float = Field(20, ge=0, le=100)  # billing points lost per open failed attempt
    failed_attempts_max_penalty: float = Field(60, ge=0, le=100)
    past_due_penalty: float = Field(20, ge=0, le=100)
    cancel_scheduled_cap: float = Field(10, ge=0, le=100)  # billing is at most this while a cancel is pending
    paused_cap: float = Field(50, ge=0, le=100)


class LifecycleThresholds(_Frozen):
    """Day counts of the lifecycle-stage rule (streams.domain.account.lifecycle_stage)."""

    onboarding_days: int = Field(30, ge=1, le=365)  # paying for fewer days than this -> onboarding
    adoption_days: int = Field(90, ge=1, le=730)  # paying for fewer days than this -> adoption
    expansion_days: int = Field(30, ge=1, le=365)  # MRR rose within this many days -> expansion
    reactivated_days: int = Field(30, ge=1, le=365)  # came back after a cancellation within this -> reactivated

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleThresholds:
        if self.adoption_days < self.onboarding_days:
            raise ValueError("adoption_days must be >= onboarding_days")
        return self


class DomainConfig(_Frozen):
    """Everything the account state machine and the health score need; one instance per worker."""

    # An event dated before (the account's newest event day - this many days), UTC midnight, is too late.
    allowed_lateness_days: int = Field(7, ge=0, le=30)
    # Fingerprints of the N newest event ids (by event time) kept per account to drop webhook retries.
    dedupe_ring_size: int = Field(64, ge=0, le=1024)
    # Daily counter buckets kept, days; 90 covers the 90-day figures (30-day windows need 60).
    bucket_horizon_days: int = Field(90, ge=90, le=400)
    # Feature names whose first use is the account's "first value"; empty = any feature.used.
    key_action_features: frozenset[str] = frozenset()
    # Subscription snapshots kept within the lateness bound to find MRR rises in event order (billing events
    # are rare; beyond this many the oldest are folded and a very late snapshot may be compared out of order).
    max_recent_snapshots: int = Field(8, ge=1, le=64)
    # Roles remembered per user (for key-user-removed); other roles are forgotten after the lateness bound.
    key_roles: frozenset[Role] = DEFAULT_KEY_ROLES  # type: ignore[assignment]
    max_key_users: int = Field(16, ge=0, le=256)
    # Latest NPS answer kept for at most this many users (the newest answers win), for this many days.
    max_nps_users: int = Field(16, ge=0, le=256)
    nps_max_age_days: int = Field(180, ge=31, le=730)
    # Open tickets tracked per account; tickets open longer than the bucket horizon are forgotten.
    max_open_tickets: int = Field(32, ge=0, le=1024)
    # account.traits kept: at most this many keys (sorted order), values cut to this many characters.
    trait_keys: frozenset[str] | None = None  # when set, only these keys are kept
    max_traits: int = Field(8, ge=0, le=32)
    max_trait_chars: int = Field(48, ge=1, le=128)
    lifecycle: LifecycleThresholds = LifecycleThresholds()
    health_weights: HealthWeights = HealthWeights()
    health_targets: HealthTargets = HealthTargets()

    @model_validator(mode="after")
    def _bounds_consistent(self) -> DomainConfig:
        # Expiry must never drop what a still-accepted late event could touch, or order would matter.
        if self.bucket_horizon_days <= self.allowed_lateness_days:
            raise ValueError("bucket_horizon_days must exceed allowed_lateness_days")
        if self.nps_max_age_days <= self.allowed_lateness_days:
            raise ValueError("nps_max_age_days must exceed allowed_lateness_days")
        return self
