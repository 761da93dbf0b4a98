"""Canonical billing and usage event contracts (wire format of `billing-events` and `usage-events`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = 1

# Timestamps outside this range are rejected by the schema itself; tighter, clock-relative
# bounds (lateness, future skew) are enforced by the pipeline, which knows the watermark.
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_EVENT_TIME = datetime(2100, 1, 1, tzinfo=UTC)


def _utc_and_sane(value: datetime) -> datetime:
    """Every timestamp in a contract is timezone-aware, normalised to UTC, and within 2000..2100."""
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a timezone (UTC recommended)")
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp is out of range") from None
    if not EARLIEST_EVENT_TIME <= value < LATEST_EVENT_TIME:
        raise ValueError("timestamp must be between 2000-01-01 and 2100-01-01")
    return value


# Longest identifier (event, account, user, ...), name (plan, feature, ...) and source, in characters; the
# decoder's pydantic-free path for plain usage events checks the same bounds, and the event-time range above, with
# these constants (streams.ingest.decode.decode_hot).
ID_MAX_CHARS = 128
NAME_MAX_CHARS = 64
SOURCE_MAX_CHARS = 64
COUNT_MAX = 10**9

UtcDatetime = Annotated[datetime, AfterValidator(_utc_and_sane)]
Id = Annotated[str, Field(min_length=1, max_length=ID_MAX_CHARS)]
Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX_CHARS)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
# Money is always integer minor units (cents); never floats.
MinorUnits = Annotated[int, Field(ge=0, le=10**12)]
Count = Annotated[int, Field(ge=0, le=COUNT_MAX)]
PositiveCount = Annotated[int, Field(ge=1, le=COUNT_MAX)]
Role = Literal["owner", "admin", "champion", "member", "viewer", "billing"]
Priority = Literal["low", "normal", "high", "urgent"]
BillingInterval = Literal["month", "year"]


class Envelope(BaseModel):
    """Fields every canonical event carries; `event_id` is the idempotency key."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    event_id: Id
    account_id: Id
    occurred_at: UtcDatetime
    source: Annotated[str, Field(min_length=1, max_length=SOURCE_MAX_CHARS)] = "canonical"
    schema_version: Literal[1] = 1


class SubscriptionSnapshot(Envelope):
    """A billing event that states the subscription's terms after it happened."""

    plan: Name
    seats: Count = 1
    # Normalised monthly recurring revenue after discounts (annual / 12), minor units.
    mrr: MinorUnits
    currency: Currency = "USD"
    billing_interval: BillingInterval = "month"
    subscription_id: Id | None = None
    # End of the current paid period: the next renewal date.
    renews_at: UtcDatetime | None = None


# --- billing -----------------------------------------------------------------------------------


class SubscriptionStarted(SubscriptionSnapshot):
    type: Literal["subscription.started"]


class SubscriptionChanged(SubscriptionSnapshot):
    type: Literal["subscription.changed"]
    previous_plan: Name | None = None
    previous_seats: Count | None = None
    previous_mrr: MinorUnits | None = None


class SubscriptionRenewed(SubscriptionSnapshot):
    type: Literal["subscription.renewed"]


class SubscriptionReactivated(SubscriptionSnapshot):
    type: Literal["subscription.reactivated"]


class SubscriptionCancelScheduled(Envelope):
    type: Literal["subscription.cancel_scheduled"]
    cancel_at: UtcDatetime | None = None
    reason: Annotated[str, Field(max_length=256)] | None = None


class SubscriptionCancelUnscheduled(Envelope):
    type: Literal["subscription.cancel_unscheduled"]


class SubscriptionCanceled(Envelope):
    type: Literal["subscription.canceled"]
    reason: Annotated[str, Field(max_length=256)] | None = None


class SubscriptionPaused(Envelope):
    type: Literal["subscription.paused"]


class SubscriptionResumed(Envelope):
    type: Literal["subscription.resumed"]


class TrialStarted(Envelope):
    type: Literal["trial.started"]
    plan: Name
    trial_ends_at: UtcDatetime | None = None


class TrialConverted(SubscriptionSnapshot):
    type: Literal["trial.converted"]


class TrialExpired(Envelope):
    type: Literal["trial.expired"]


class InvoicePaid(Envelope):
    type: Literal["invoice.paid"]
    amount: MinorUnits
    currency: Currency = "USD"
    invoice_id: Id | None = None
    # The subscription the invoice bills, when it bills one (added for the Stripe adapter).
    subscription_id: Id | None = None


class PaymentFailed(Envelope):
    type: Literal["payment.failed"]
    amount: MinorUnits
    currency: Currency = "USD"
    attempt: Annotated[int, Field(ge=1, le=100)] = 1
    invoice_id: Id | None = None
    subscription_id: Id | None = None
    next_attempt_at: UtcDatetime | None = None


class RefundIssued(Envelope):
    type: Literal["refund.issued"]
    amount: MinorUnits
    currency: Currency = "USD"


BillingEvent = Annotated[
    SubscriptionStarted
    | SubscriptionChanged
    | SubscriptionRenewed
    | SubscriptionReactivated
    | SubscriptionCancelScheduled
    | SubscriptionCancelUnscheduled
    | SubscriptionCanceled
    | SubscriptionPaused
    | SubscriptionResumed
    | TrialStarted
    | TrialConverted
    | TrialExpired
    | InvoicePaid
    | PaymentFailed
    | RefundIssued,
    Field(discriminator="type"),
]


# --- usage -------------------------------------------------------------------------------------


class SessionStarted(Envelope):
    """A user session or login."""

    type: Literal["session.started"]
    user_id: Id


class FeatureUsed(Envelope):
    type: Literal["feature.used"]
    user_id: Id | None = None
    feature: Name
    count: PositiveCount = 1


class UserAdded(Envelope):
    type: Literal["user.added"]
    user_id: Id
    role: Role = "member"


class UserRemoved(Envelope):
    type: Literal["user.removed"]
    user_id: Id
    role: Role = "member"


class UsageLimitReached(Envelope):
    type: Literal["usage_limit.reached"]
    limit: Name
    used: Count
    quota: Count


class NpsResponded(Envelope):
    type: Literal["nps.responded"]
    user_id: Id
    score: Annotated[int, Field(ge=0, le=10)]
    comment: Annotated[str, Field(max_length=2000)] | None = None


class TicketOpened(Envelope):
    type: Literal["ticket.opened"]
    ticket_id: Id
    priority: Priority = "normal"


class TicketClosed(Envelope):
    type: Literal["ticket.closed"]
    ticket_id: Id
    priority: Priority = "normal"


class ApiCalled(Envelope):
    type: Literal["api.called"]
    count: PositiveCount = 1


class AccountTraits(Envelope):
    """Descriptive traits of an account (Segment group call): the segment dimensions for cohorts."""

    type: Literal["account.traits"]
    traits: Annotated[
        dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=128)]],
        Field(max_length=32),
    ]


UsageEvent = Annotated[
    SessionStarted
    | FeatureUsed
    | UserAdded
    | UserRemoved
    | UsageLimitReached
    | NpsResponded
    | TicketOpened
    | TicketClosed
    | ApiCalled
    | AccountTraits,
    Field(discriminator="type"),
]

CanonicalEvent = Annotated[
    BillingEvent | UsageEvent,
    Field(discriminator="type"),
]

BILLING_TYPES: frozenset[str] = frozenset(
    m.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for m in BillingEvent.__origin__.__args__  # type: ignore[attr-defined]
)
USAGE_TYPES: frozenset[str] = frozenset(
    m.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for m in UsageEvent.__origin__.__args__  # type: ignore[attr-defined]
)

billing_event_adapter: TypeAdapter[BillingEvent] = TypeAdapter(BillingEvent)
usage_event_adapter: TypeAdapter[UsageEvent] = TypeAdapter(UsageEvent)
canonical_event_adapter: TypeAdapter[CanonicalEvent] = TypeAdapter(CanonicalEvent)
