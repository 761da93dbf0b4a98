"""Churn-alert contracts: `AlertRecord` (wire format of `churn-alerts`) and `AlertAction` (`alert-actions`).

See docs/alerts.md for the lifecycle that produces the records and honours the actions.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.events import Currency, Id, MinorUnits, UtcDatetime

# Account triggers, in the order the lifecycle evaluates them (superseding triggers first; see docs/alerts.md),
# then the portfolio triggers (account_id "portfolio"). The Literals are the single source of both lists.
AccountTrigger = Literal[
    "cancellation_scheduled",
    "payment_failed",
    "downgrade",
    "key_user_removed",
    "renewal_risk",
    "inactivity",
    "activation_stalled",
    "nps_detractor",
    "nps_drop",
    "ticket_spike",
    "usage_limit_hits",
    "usage_frequency_drop",
    "usage_breadth_drop",
    "low_health",
]
PortfolioTrigger = Literal["customer_churn_rate", "cohort_retention", "company_nps"]
Trigger = Literal[AccountTrigger, PortfolioTrigger]  # nested Literals flatten: one enum in the JSON Schema
ACCOUNT_TRIGGERS: tuple[str, ...] = get_args(AccountTrigger)
PORTFOLIO_TRIGGERS: tuple[str, ...] = get_args(PortfolioTrigger)
PORTFOLIO_ACCOUNT = "portfolio"

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")  # ascending
Transition = Literal["opened", "escalated", "acknowledged", "snoozed", "resolved"]
AlertStatus = Literal["open", "acknowledged", "snoozed", "resolved"]
ResolutionReason = Literal["recovered", "churned", "resolved_by_user", "superseded", "expired"]
ActionKind = Literal["acknowledge", "snooze", "resolve"]

AlertId = Annotated[str, Field(pattern=r"^[0-9a-f]{24}$")]
Text = Annotated[str, Field(max_length=500)]

# The transition of a record determines its status, except that an escalation keeps a snooze (never emitted
# while snoozed) and opened/escalated records are always "open".
_STATUS_OF: dict[str, str] = {
    "opened": "open",
    "escalated": "open",
    "acknowledged": "acknowledged",
    "snoozed": "snoozed",
    "resolved": "resolved",
}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Evidence(_Model):
    """What the rule saw. `observed`, `baseline` and `threshold` share one unit, named in `detail` and in
    docs/alerts.md per trigger (e.g. active days; the threshold is the level at which the alert opens)."""

    observed: float | None = None
    baseline: float | None = None
    threshold: float | None = None
    window_days: Annotated[int, Field(ge=0, le=3650)] | None = None
    detail: Text = ""


class ActionPlan(_Model):
    """The playbook configured for the trigger (thresholds file, `playbooks`)."""

    playbook_id: Annotated[str, Field(min_length=1, max_length=64)]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    steps: list[Annotated[str, Field(min_length=1, max_length=500)]]


class AlertRecord(_Model):
    """One lifecycle transition of one alert. Deterministic: replaying the same events (and actions) with the
    same evaluation times gives byte-identical records; every timestamp is event time.

    `alert_id` names the alert (account, trigger, episode start day); `record_id` names this transition, so
    consumers can deduplicate redeliveries.
    """

    schema_version: Literal[1] = 1
    alert_id: AlertId
    record_id: Annotated[str, Field(min_length=1, max_length=64)]
    account_id: Id
    trigger: Trigger
    severity: Severity
    transition: Transition
    status: AlertStatus
    resolution_reason: ResolutionReason | None = None
    evidence: Evidence
    health_score: Annotated[int, Field(ge=0, le=100)] | None = None
    health_components: dict[str, float] = Field(default_factory=dict)
    mrr_at_risk: MinorUnits = 0
    currency: Currency | None = None
    cohort: Annotated[str, Field(max_length=32)] | None = None
    lifecycle_stage: Annotated[str, Field(max_length=32)] | None = None
    plan: Annotated[str, Field(max_length=64)] | None = None
    action_plan: ActionPlan | None = None
    opened_at: UtcDatetime
    occurred_at: UtcDatetime  # event time of this transition
    # event time of the event that caused it (None: a time tick or a portfolio computation)
    triggered_by_event_at: UtcDatetime | None = None
    snoozed_until: UtcDatetime | None = None
    actor: Annotated[str, Field(max_length=128)] | None = None  # who, for transitions made by a person
    note: Text | None = None  # the person's free-text reason, for transitions made by a person

    @model_validator(mode="after")
    def _consistent(self) -> AlertRecord:
        if self.status != _STATUS_OF[self.transition]:
            raise ValueError(f"status {self.status!r} does not follow transition {self.transition!r}")
        if (self.transition == "resolved") != (self.resolution_reason is not None):
            raise ValueError("resolution_reason is set exactly on resolved records")
        return self


class AlertAction(BaseModel):
    """A person's action on an alert, addressed by alert_id or, for the account's current alert, by trigger."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    schema_version: Literal[1] = 1
    action_id: Id
    account_id: Id
    alert_id: AlertId | None = None
    trigger: Trigger | None = None
    action: ActionKind
    snooze_until: UtcDatetime | None = None  # required for snooze
    reason: Text | None = None
    actor: Annotated[str, Field(min_length=1, max_length=128)]
    occurred_at: UtcDatetime

    @model_validator(mode="after")
    def _addressed(self) -> AlertAction:
        if self.alert_id is None and self.trigger is None:
            raise ValueError("give alert_id or trigger")
        if self.action == "snooze":
            if self.snooze_until is None:
                raise ValueError("snooze needs snooze_until")
            if self.snooze_until <= self.occurred_at:
                raise ValueError("snooze_until must be after occurred_at")
        elif self.snooze_until is not None:
            raise ValueError("snooze_until is only for snooze")
        return self


JSON_SCHEMAS: dict[str, Any] = {"alert-record": AlertRecord, "alert-action": AlertAction}
