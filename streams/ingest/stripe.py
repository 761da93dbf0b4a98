"""Stripe webhook envelopes to canonical billing event dicts (pure mapping; decode.py validates them)."""

# Entry point: to_canonical(). Mapping table, MRR normalisation and skip list: docs/events/stripe.md.

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from schemas.deadletter import DeadLetterReason
from streams.ingest.outcome import AdapterError, Skipped, SkipReason

Json = Mapping[str, Any]
Out = dict[str, Any]
AccountMapper = Callable[[str], str | None]

SOURCE = "stripe"

# Statuses whose subscription counts as paying: MRR is reported. past_due / unpaid stay paying until Stripe
# cancels the subscription (it then sends customer.subscription.deleted); payment trouble travels as
# payment.failed events, so the domain sees dunning without the MRR flickering.
PAYING_STATUSES = frozenset({"active", "past_due", "unpaid"})
NOT_STARTED_STATUSES = frozenset({"incomplete", "incomplete_expired"})

# Months per billing unit, exact. A month is 1/12 of a 365.25-day year = 30.4375 days, so a 7-day price and
# a 1-week price give the same MRR (52/12 weeks would not agree with 365.25/12 days).
DAYS_PER_MONTH = Fraction(1461, 48)  # 30.4375
MONTHS_PER_UNIT: dict[str, Fraction] = {
    "day": 1 / DAYS_PER_MONTH,
    "week": 7 / DAYS_PER_MONTH,
    "month": Fraction(1),
    "year": Fraction(12),
}

# Fields in `previous_attributes` that can change what a subscription is worth.
TERMS_FIELDS = frozenset({"items", "plan", "quantity", "discount", "discounts"})
MAX_PLAN_CHARS = 64
MAX_REASON_CHARS = 256


# --- small readers -------------------------------------------------------------------------------------


def _obj(value: Any) -> Json:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else []


def _id_of(value: Any) -> str | None:
    """A Stripe reference is either an id string or an expanded object carrying `id`."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str) and value["id"]:
        return str(value["id"])
    return None


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AdapterError(DeadLetterReason.INVALID_EVENT, f"{field}: expected an integer, got {value!r:.40}")
    return value


def timestamp(value: Any, field: str) -> datetime | None:
    """Stripe timestamps are unix seconds (UTC); null stays None."""
    if value is None:
        return None
    seconds = _int(value, field)
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise AdapterError(
            DeadLetterReason.INVALID_EVENT, f"{field}: timestamp {seconds} out of range"
        ) from exc


def currency_code(value: Any) -> str | None:
    """Stripe sends ISO 4217 codes lower-case; the contract wants them upper-case."""
    return value.upper() if isinstance(value, str) and value else None


def _amount(value: Any) -> Fraction | None:
    """A minor-unit amount from an int or a decimal string (`unit_amount_decimal` may carry fractions)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, str | float):
        try:
            return Fraction(str(value))
        except (ValueError, ZeroDivisionError):
            return None
    return None


# --- MRR -----------------------------------------------------------------------------------------------


def months_per_interval(interval: Any, interval_count: Any) -> Fraction:
    """Length of one billing period in months (e.g. quarterly = month x 3 -> 3; annual -> 12)."""
    unit = MONTHS_PER_UNIT.get(interval) if isinstance(interval, str) else None
    if unit is None:
        raise AdapterError(
            DeadLetterReason.ADAPTER_ERROR, f"recurring.interval: unknown interval {interval!r}"
        )
    count = 1 if interval_count is None else interval_count
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise AdapterError(DeadLetterReason.ADAPTER_ERROR, f"recurring.interval_count: invalid {count!r}")
    return unit * count


def item_recurring(item: Json) -> tuple[str, int] | None:
    """(interval, interval_count) of a licensed recurring item, from `price.recurring` or the legacy `plan`.

    Metered items (usage_type=metered) and one-time prices return None: their revenue is not recurring at a
    known rate, so they add nothing to MRR.
    """
    price, plan = _obj(item.get("price")), _obj(item.get("plan"))
    recurring = _obj(price.get("recurring"))
    if recurring:
        if recurring.get("usage_type") == "metered":
            return None
        return recurring.get("interval"), recurring.get("interval_count")  # type: ignore[return-value]
    if price.get("type") == "one_time":
        return None
    if plan.get("interval") is not None:
        if plan.get("usage_type") == "metered":
            return None
        return plan.get("interval"), plan.get("interval_count")  # type: ignore[return-value]
    return None


def item_unit_amount(item: Json) -> Fraction:
    """Price per unit per billing period, minor units: price.unit_amount_decimal / unit_amount, else the
    legacy plan.amount_decimal / amount. Tiered prices without a unit amount count 0 (tiers are not in the
    webhook payload)."""
    price, plan = _obj(item.get("price")), _obj(item.get("plan"))
    for value in (
        price.get("unit_amount_decimal"),
        price.get("unit_amount"),
        plan.get("amount_decimal"),
        plan.get("amount"),
    ):
        amount = _amount(value)
        if amount is not None:
            if amount < 0:
                raise AdapterError(DeadLetterReason.INVALID_EVENT, f"unit_amount: negative ({amount})")
            return amount
    return Fraction(0)


def item_quantity(item: Json) -> int:
    """Billed quantity: a missing quantity means 1; `transform_quantity` (package pricing) divides and rounds
    the way Stripe bills it (round up or down)."""
    quantity = item.get("quantity")
    if quantity is None:
        quantity = 1
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise AdapterError(DeadLetterReason.INVALID_EVENT, f"items.quantity: invalid {quantity!r:.40}")
    transform = _obj(_obj(item.get("price")).get("transform_quantity"))
    divide_by = transform.get("divide_by")
    if isinstance(divide_by, int) and not isinstance(divide_by, bool) and divide_by > 0:
        ratio = Fraction(quantity, divide_by)
        return math.ceil(ratio) if transform.get("round") == "up" else math.floor(ratio)
    return quantity


def coupon_of(discount: Json) -> Json:
    """The coupon of a discount: `discount.coupon` (until 2025) or `discount.source.coupon` (newest).
    Only an expanded coupon object can be used; a bare coupon id returns {}."""
    coupon = discount.get("coupon")
    if coupon is None:
        coupon = _obj(discount.get("source")).get("coupon")
    return _obj(coupon)


def active_discounts(owner: Json, at: datetime | None) -> list[Json]:
    """Expanded discounts in effect at `at` from `discount` (legacy, single) and `discounts` (list),
    de-duplicated by id, in listed order. Ids that are not expanded cannot be priced and are left out."""
    found: list[Json] = []
    seen: set[str] = set()
    for discount in [owner.get("discount"), *_list(owner.get("discounts"))]:
        if not isinstance(discount, Mapping):
            continue
        key = _id_of(discount)
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        end = discount.get("end")
        if at is not None and isinstance(end, int) and not isinstance(end, bool) and end <= at.timestamp():
            continue
        found.append(discount)
    return found


def apply_discounts(
    monthly: Fraction, discounts: Sequence[Json], currency: str | None, period_months: Fraction
) -> Fraction:
    """Apply coupons in order to a monthly amount, never below 0.

    percent_off: multiply by (1 - p/100). amount_off: minor units off each invoice, i.e. per billing period,
    so it is divided by the period length in months; a coupon in another currency (with no matching
    `currency_options`) is ignored. Coupons with duration=once affect one invoice, not the recurring rate, and
    are ignored.
    """
    for discount in discounts:
        coupon = coupon_of(discount)
        if not coupon or coupon.get("duration") == "once":
            continue
        percent = _amount(coupon.get("percent_off"))
        if percent is not None:
            monthly = monthly * (1 - percent / 100)
        else:
            off = _amount(coupon.get("amount_off"))
            coupon_currency = currency_code(coupon.get("currency"))
            if off is not None and coupon_currency is not None and coupon_currency != currency:
                options = _obj(_obj(coupon.get("currency_options")).get((currency or "").lower()))
                off = _amount(options.get("amount_off"))
            if off is not None:
                monthly = monthly - off / period_months
        monthly = max(monthly, Fraction(0))
    return monthly


def subscription_items(sub: Json) -> list[Json]:
    """items.data, or for very old payloads without items, one item built from the top-level plan/quantity."""
    items = [i for i in _list(_obj(sub.get("items")).get("data")) if isinstance(i, Mapping)]
    if not items and isinstance(sub.get("plan"), Mapping):
        items = [{"plan": sub["plan"], "quantity": sub.get("quantity")}]
    return items


def item_monthly_amount(item: Json, currency: str | None, at: datetime | None) -> tuple[Fraction, Fraction]:
    """(monthly amount after item-level discounts, period length in months) of one item; (0, 1) if it is
    not a licensed recurring item."""
    recurring = item_recurring(item)
    if recurring is None:
        return Fraction(0), Fraction(1)
    period = months_per_interval(*recurring)
    monthly = item_unit_amount(item) * item_quantity(item) / period
    return apply_discounts(monthly, active_discounts(item, at), currency, period), period


def subscription_currency(sub: Json) -> str:
    """The subscription's currency; all items must agree (Stripe enforces one currency per subscription)."""
    found = {
        c
        for c in (
            currency_code(_obj(item.get("price")).get("currency") or _obj(item.get("plan")).get("currency"))
            for item in subscription_items(sub)
        )
        if c
    }
    top = currency_code(sub.get("currency"))
    if top:
        found.add(top)
    if len(found) > 1:
        raise AdapterError(
            DeadLetterReason.ADAPTER_ERROR,
            f"items: mixed currencies {', '.join(sorted(found))} in one subscription",
        )
    return found.pop() if found else "USD"


def subscription_mrr(sub: Json, at: datetime | None) -> int:
    """Monthly recurring revenue of a subscription in minor units, status aside.

    Sum over items of unit amount x quantity / period months, less item discounts, less subscription
    discounts (amount_off spread over the first recurring item's period), rounded half-to-even once, at the
    end, so per-item fractions of a cent do not accumulate.
    """
    currency = subscription_currency(sub)
    total = Fraction(0)
    first_period: Fraction | None = None
    for item in subscription_items(sub):
        monthly, period = item_monthly_amount(item, currency, at)
        total += monthly
        if first_period is None and item_recurring(item) is not None:
            first_period = period
    total = apply_discounts(total, active_discounts(sub, at), currency, first_period or Fraction(1))
    return round(total)


def primary_item(sub: Json) -> Json:
    """The item that names the plan: the largest undiscounted monthly amount, the first one on ties."""
    best: Json = {}
    best_amount = Fraction(-1)
    for item in subscription_items(sub):
        recurring = item_recurring(item)
        amount = (
            item_unit_amount(item) * item_quantity(item) / months_per_interval(*recurring)
            if recurring
            else Fraction(0)
        )
        if amount > best_amount:
            best, best_amount = item, amount
    return best


def plan_name(item: Json) -> str:
    """price.lookup_key, nickname or id (legacy: plan nickname, name or id), cut to 64 characters."""
    price, plan = _obj(item.get("price")), _obj(item.get("plan"))
    for value in (
        price.get("lookup_key"),
        price.get("nickname"),
        price.get("id"),
        plan.get("nickname"),
        plan.get("name"),
        plan.get("id"),
    ):
        if isinstance(value, str) and value.strip():
            return value.strip()[:MAX_PLAN_CHARS]
    return "unknown"


def billing_interval(item: Json) -> str:
    """The contract's coarse cadence: 'year' for yearly prices, 'month' for everything shorter."""
    recurring = item_recurring(item)
    return "year" if recurring is not None and recurring[0] == "year" else "month"


def period_end(sub: Json) -> datetime | None:
    """End of the current period: on the subscription (until 2025-03-31) or the earliest among items."""
    if sub.get("current_period_end") is not None:
        return timestamp(sub.get("current_period_end"), "current_period_end")
    ends = [
        item["current_period_end"]
        for item in subscription_items(sub)
        if isinstance(item.get("current_period_end"), int)
    ]
    return timestamp(min(ends), "items.current_period_end") if ends else None


def subscription_terms(sub: Json, at: datetime | None) -> Out:
    """The SubscriptionSnapshot fields. Trialing and other non-paying statuses report MRR 0.

    `at` drops discounts that ended by then; None keeps every attached discount (used for the state before
    an update, when whatever was attached was in effect).
    """
    item = primary_item(sub)
    status = sub.get("status")
    return {
        "plan": plan_name(item),
        "seats": item_quantity(item) if item else 1,
        "mrr": subscription_mrr(sub, at) if status in PAYING_STATUSES else 0,
        "currency": subscription_currency(sub),
        "billing_interval": billing_interval(item),
        "subscription_id": _id_of(sub.get("id")),
        "renews_at": period_end(sub),
    }


# --- what changed --------------------------------------------------------------------------------------


def previous_subscription(sub: Json, prev: Json) -> Json:
    """The subscription as it was: `previous_attributes` laid over the current object.

    Legacy payloads may report a changed top-level `plan` / `quantity` without `items`; for a single-item
    subscription those are carried into the item so both shapes compare alike.
    """
    before = {**sub, **prev}
    if "items" not in prev and ("plan" in prev or "quantity" in prev):
        items = subscription_items(sub)
        if len(items) == 1:
            item = dict(items[0])
            if "plan" in prev:
                item["plan"] = prev["plan"]
                item.pop("price", None)
            if "quantity" in prev:
                item["quantity"] = prev["quantity"]
            before["items"] = {"object": "list", "data": [item]}
    return before


def status_change_type(before: str, after: str) -> str | None:
    """Canonical type for a status transition seen in customer.subscription.updated, or None.

    None where no event is due here: changes between paying statuses (dunning; invoices carry it), to
    `canceled` (customer.subscription.deleted carries it) and to / from `paused` (the dedicated
    customer.subscription.paused / resumed events carry it).
    """
    if before == "trialing":
        if after in PAYING_STATUSES:
            return "trial.converted"
        if after == "paused":
            return "trial.expired"  # trial ended without a payment method
        return None
    if before == "incomplete" and after in PAYING_STATUSES:
        return "subscription.started"
    if before == "incomplete" and after == "trialing":
        return "trial.started"
    if before == "canceled" and after in PAYING_STATUSES:
        return "subscription.reactivated"
    return None


def cancel_scheduled(sub: Json) -> bool:
    return bool(sub.get("cancel_at_period_end")) or sub.get("cancel_at") is not None


def cancel_schedule_change(sub: Json, prev: Json) -> str | None:
    """'scheduled' / 'unscheduled' when cancel_at_period_end or cancel_at changed, else None.
    A moved cancellation date counts as scheduled again (the new date matters for renewal rules)."""
    if "cancel_at_period_end" not in prev and "cancel_at" not in prev:
        return None
    now, before = cancel_scheduled(sub), cancel_scheduled({**sub, **prev})
    if now and (not before or prev.get("cancel_at", sub.get("cancel_at")) != sub.get("cancel_at")):
        return "scheduled"
    if before and not now:
        return "unscheduled"
    return None


def cancellation_reason(sub: Json) -> str | None:
    """cancellation_details: the customer's feedback code, their comment, else Stripe's reason."""
    details = _obj(sub.get("cancellation_details"))
    for value in (details.get("feedback"), details.get("comment"), details.get("reason")):
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())[:MAX_REASON_CHARS]
    return None


def cancel_fields(sub: Json) -> Out:
    at = sub.get("cancel_at")
    return {
        "cancel_at": timestamp(at, "cancel_at") if at is not None else period_end(sub),
        "reason": cancellation_reason(sub),
    }


def ended_during_trial(sub: Json) -> bool:
    """A deleted subscription that ended on or before its trial end never paid: trial expired."""
    trial_end = sub.get("trial_end")
    ended = sub.get("ended_at") or sub.get("canceled_at")
    return isinstance(trial_end, int) and isinstance(ended, int) and ended <= trial_end


# --- handlers: (subscription or invoice or charge, previous_attributes, event time) -> outputs ----------

Outputs = list[tuple[str, Out]]


def on_subscription_created(sub: Json, prev: Json, at: datetime) -> Outputs | Skipped:
    status = sub.get("status")
    outputs: Outputs
    if status == "trialing":
        outputs = [("trial.started", trial_fields(sub))]
    elif status in PAYING_STATUSES:
        outputs = [("subscription.started", subscription_terms(sub, at))]
    elif status in NOT_STARTED_STATUSES:
        return Skipped(SkipReason.NOT_STARTED, f"subscription created with status {status}: not started yet")
    else:
        return Skipped(SkipReason.NO_CHURN_SIGNAL, f"subscription created with status {status!r:.40}")
    if cancel_scheduled(sub):
        outputs.append(("subscription.cancel_scheduled", cancel_fields(sub)))
    return outputs


def trial_fields(sub: Json) -> Out:
    return {
        "plan": plan_name(primary_item(sub)),
        "trial_ends_at": timestamp(sub.get("trial_end"), "trial_end"),
    }


def on_subscription_updated(sub: Json, prev: Json, at: datetime) -> Outputs | Skipped:
    status = str(sub.get("status"))
    outputs: Outputs = []
    snapshot_sent = False
    if "status" in prev and prev["status"] != status:
        kind = status_change_type(str(prev["status"]), status)
        if kind in ("trial.converted", "subscription.started", "subscription.reactivated"):
            outputs.append((kind, subscription_terms(sub, at)))
            snapshot_sent = True
        elif kind == "trial.started":
            outputs.append((kind, trial_fields(sub)))
            snapshot_sent = True
        elif kind is not None:
            outputs.append((kind, {}))
    if not snapshot_sent and status in PAYING_STATUSES:
        terms_changed = bool(TERMS_FIELDS & prev.keys())
        period_changed = "current_period_end" in prev or terms_changed
        if terms_changed or period_changed:
            after = subscription_terms(sub, at)
            before = subscription_terms(previous_subscription(sub, prev), None)
            if any(after[k] != before[k] for k in ("plan", "seats", "mrr")):
                change = {
                    "previous_plan": before["plan"],
                    "previous_seats": before["seats"],
                    "previous_mrr": before["mrr"],
                }
                outputs.append(("subscription.changed", {**after, **change}))
            elif after["renews_at"] is not None and after["renews_at"] != before["renews_at"]:
                outputs.append(("subscription.renewed", after))
    schedule = cancel_schedule_change(sub, prev)
    if schedule == "scheduled":
        outputs.append(("subscription.cancel_scheduled", cancel_fields(sub)))
    elif schedule == "unscheduled":
        outputs.append(("subscription.cancel_unscheduled", {}))
    if "pause_collection" in prev:
        # Pausing payment collection (Stripe's customer-portal "pause") keeps status=active; only this
        # update reports it, so it is mapped here and never double counted with customer.subscription.paused.
        was, now = prev["pause_collection"] is not None, sub.get("pause_collection") is not None
        if now and not was:
            outputs.append(("subscription.paused", {}))
        elif was and not now:
            outputs.append(("subscription.resumed", {}))
    if outputs:
        return outputs
    changed = ", ".join(sorted(str(k) for k in prev)) or "nothing"
    return Skipped(
        SkipReason.NO_CHURN_SIGNAL, f"subscription update without churn signal (changed: {changed})"[:200]
    )


def on_subscription_deleted(sub: Json, prev: Json, at: datetime) -> Outputs | Skipped:
    if ended_during_trial(sub):
        return [("trial.expired", {})]
    return [("subscription.canceled", {"reason": cancellation_reason(sub)})]


def on_subscription_paused(sub: Json, prev: Json, at: datetime) -> Outputs | Skipped:
    return [("subscription.paused", {})]


def on_subscription_resumed(sub: Json, prev: Json, at: datetime) -> Outputs | Skipped:
    return [("subscription.resumed", {})]


def invoice_subscription_id(invoice: Json) -> str | None:
    """`invoice.subscription` (until 2025-03-31) or `invoice.parent.subscription_details.subscription`."""
    legacy = _id_of(invoice.get("subscription"))
    if legacy is not None:
        return legacy
    return _id_of(_obj(_obj(invoice.get("parent")).get("subscription_details")).get("subscription"))


def on_invoice_paid(invoice: Json, prev: Json, at: datetime) -> Outputs | Skipped:
    amount = invoice.get("amount_paid")
    if amount == 0:
        return Skipped(SkipReason.ZERO_AMOUNT, "invoice paid with amount 0 (trial or fully discounted)")
    return [
        (
            "invoice.paid",
            {
                "amount": amount,
                "currency": currency_code(invoice.get("currency")),
                "invoice_id": _id_of(invoice.get("id")),
                "subscription_id": invoice_subscription_id(invoice),
            },
        )
    ]


def on_invoice_payment_failed(invoice: Json, prev: Json, at: datetime) -> Outputs | Skipped:
    amount = invoice.get("amount_remaining", invoice.get("amount_due"))
    attempts = invoice.get("attempt_count")
    attempt = (
        min(max(attempts, 1), 100) if isinstance(attempts, int) and not isinstance(attempts, bool) else 1
    )
    return [
        (
            "payment.failed",
            {
                "amount": amount,
                "currency": currency_code(invoice.get("currency")),
                "attempt": attempt,
                "invoice_id": _id_of(invoice.get("id")),
                "subscription_id": invoice_subscription_id(invoice),
                "next_attempt_at": timestamp(invoice.get("next_payment_attempt"), "next_payment_attempt"),
            },
        )
    ]


def refunded_amount(charge: Json, prev: Json) -> Any:
    """This event's refund: amount_refunded is cumulative, so subtract the previous value when reported."""
    total = charge.get("amount_refunded")
    before = prev.get("amount_refunded")
    if isinstance(total, int) and isinstance(before, int):
        return total - before
    return total


def on_charge_refunded(charge: Json, prev: Json, at: datetime) -> Outputs | Skipped:
    amount = refunded_amount(charge, prev)
    if amount == 0:
        return Skipped(SkipReason.ZERO_AMOUNT, "charge.refunded without a new refunded amount")
    return [("refund.issued", {"amount": amount, "currency": currency_code(charge.get("currency"))})]


def on_charge_failed(charge: Json, prev: Json, at: datetime) -> Outputs | Skipped:
    if charge.get("invoice"):
        return Skipped(
            SkipReason.COVERED_ELSEWHERE, "charge.failed on an invoice: invoice.payment_failed counts it"
        )
    return Skipped(SkipReason.NO_CHURN_SIGNAL, "charge.failed outside an invoice (one-off payment)")


Handler = Callable[[Json, Json, datetime], Outputs | Skipped]

HANDLERS: dict[str, Handler] = {
    "customer.subscription.created": on_subscription_created,
    "customer.subscription.updated": on_subscription_updated,
    "customer.subscription.deleted": on_subscription_deleted,
    "customer.subscription.paused": on_subscription_paused,
    "customer.subscription.resumed": on_subscription_resumed,
    "invoice.paid": on_invoice_paid,
    # Stripe sends both for one payment; both map to one event id per invoice (see event_id_for).
    "invoice.payment_succeeded": on_invoice_paid,
    "invoice.payment_failed": on_invoice_payment_failed,
    "charge.refunded": on_charge_refunded,
    "charge.failed": on_charge_failed,
}

# Types subscribed to by typical billing webhooks that deliberately yield nothing, with the reason.
SKIPPED_TYPES: dict[str, tuple[SkipReason, str]] = {
    "customer.created": (SkipReason.NO_CHURN_SIGNAL, "customer.created: a customer without a subscription"),
    "customer.updated": (SkipReason.NO_CHURN_SIGNAL, "customer.updated: contact details only"),
    "customer.deleted": (
        SkipReason.COVERED_ELSEWHERE,
        "customer.deleted: its subscriptions' customer.subscription.deleted events count the churn",
    ),
    "customer.subscription.trial_will_end": (
        SkipReason.NO_CHURN_SIGNAL,
        "trial_will_end: a 3-day reminder; the trial end is already known from trial.started",
    ),
    "customer.subscription.pending_update_applied": (
        SkipReason.COVERED_ELSEWHERE,
        "pending_update_applied: the accompanying customer.subscription.updated carries the change",
    ),
    "customer.subscription.pending_update_expired": (
        SkipReason.NO_CHURN_SIGNAL,
        "pending_update_expired: the subscription did not change",
    ),
    "charge.succeeded": (SkipReason.COVERED_ELSEWHERE, "charge.succeeded: invoice.paid counts the payment"),
    "refund.created": (SkipReason.COVERED_ELSEWHERE, "refund.created: charge.refunded counts the refund"),
    "refund.updated": (SkipReason.NO_CHURN_SIGNAL, "refund.updated: status change of a counted refund"),
}

# Event types whose object must name a customer (Stripe always sets one) -> missing means broken input.
CUSTOMER_REQUIRED_PREFIXES = ("customer.subscription.", "invoice.")


def event_id_for(event_id: str, canonical_type: str, index: int, obj: Json) -> str:
    """Deterministic ids, so webhook retries de-duplicate downstream.

    The first output keeps the Stripe event id; further outputs of the same webhook append their type.
    invoice.paid uses `<invoice id>:paid`, so invoice.paid and invoice.payment_succeeded for one invoice
    collapse into a single event.
    """
    if canonical_type == "invoice.paid":
        invoice_id = _id_of(obj.get("id"))
        if invoice_id is not None:
            return f"{invoice_id}:paid"
    return event_id if index == 0 else f"{event_id}:{canonical_type}"


def account_for(obj: Json, event_id: str, account_for_customer: AccountMapper | None) -> str | None:
    """The account id: the Stripe customer id, optionally mapped by a hook (None from the hook = unmapped)."""
    customer = _id_of(obj.get("customer"))
    if customer is None:
        return None
    if account_for_customer is None:
        return customer
    mapped = account_for_customer(customer)
    if mapped is None:
        raise AdapterError(
            DeadLetterReason.MISSING_ACCOUNT,
            f"customer: no account mapped for Stripe customer {customer}",
            event_id=event_id,
        )
    return mapped


def to_canonical(envelope: Json, *, account_for_customer: AccountMapper | None = None) -> list[Out] | Skipped:
    """Canonical billing event dicts for one Stripe webhook envelope, or a deliberate Skipped.

    Raises AdapterError for inputs that are not Stripe event envelopes or cannot be mapped.
    """
    event_id, event_type, created = envelope.get("id"), envelope.get("type"), envelope.get("created")
    data = _obj(envelope.get("data"))
    obj = data.get("object")
    if not isinstance(event_type, str) or not isinstance(event_id, str) or not isinstance(obj, Mapping):
        thin = envelope.get("object") == "v2.core.event"
        raise AdapterError(
            DeadLetterReason.UNSUPPORTED_ENVELOPE,
            "not a Stripe event envelope: needs string id and type and an object at data.object"
            + (" (a thin event: fetch the full event first)" if thin else ""),
            event_id=event_id if isinstance(event_id, str) else None,
        )
    skipped = SKIPPED_TYPES.get(event_type)
    if skipped is not None:
        return Skipped(*skipped)
    handler = HANDLERS.get(event_type)
    if handler is None:
        return Skipped(SkipReason.UNHANDLED_TYPE, f"stripe event type {event_type[:80]} is not consumed")
    occurred_at = timestamp(created, "created")
    if occurred_at is None:
        raise AdapterError(DeadLetterReason.INVALID_EVENT, "created: missing", event_id=event_id)
    prev = _obj(data.get("previous_attributes"))
    account_id = account_for(obj, event_id, account_for_customer)
    if account_id is None:
        if event_type.startswith(CUSTOMER_REQUIRED_PREFIXES):
            raise AdapterError(
                DeadLetterReason.MISSING_ACCOUNT, "data.object.customer: missing", event_id=event_id
            )
        if event_type != "charge.failed":
            return Skipped(SkipReason.NOT_ATTRIBUTABLE, f"{event_type}: no customer (guest payment)")
    try:
        result = handler(obj, prev, occurred_at)
    except AdapterError as exc:
        exc.event_id = exc.event_id or event_id
        exc.account_id = exc.account_id or account_id
        raise
    if isinstance(result, Skipped):
        return result
    return [
        {
            **{k: v for k, v in fields.items() if v is not None},
            "type": canonical_type,
            "event_id": event_id_for(event_id, canonical_type, index, obj),
            "account_id": account_id,
            "occurred_at": occurred_at,
            "source": SOURCE,
        }
        for index, (canonical_type, fields) in enumerate(result)
    ]
