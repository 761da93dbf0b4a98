"""Stripe webhook envelopes -> canonical billing events: every shared fixture plus variants built in code."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import orjson
import pytest

from schemas.deadletter import DeadLetterReason
from streams.ingest import stripe
from streams.ingest.decode import IngestConfig
from streams.ingest.outcome import Skipped, SkipReason

from .helpers import (
    DAY,
    STRIPE_FIXTURES,
    T0,
    decode_stripe,
    envelope,
    item,
    only_dead_letter,
    openapi_object,
    single_stripe_event,
    stripe_events,
    stripe_fixture,
    subscription,
)


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def mrr_of(*items: dict, **fields: object) -> int:
    event = single_stripe_event(envelope("customer.subscription.created", subscription(*items, **fields)))
    assert event.type == "subscription.started"
    return int(event.mrr)


# --- every shared fixture ------------------------------------------------------------------------------

EXPECTED_FIXTURE_OUTCOMES = {
    "charge.failed.json": ("skip", SkipReason.NO_CHURN_SIGNAL),
    "charge.refunded.json": ("skip", SkipReason.NOT_ATTRIBUTABLE),
    "customer.created.json": ("skip", SkipReason.NO_CHURN_SIGNAL),
    "customer.deleted.json": ("skip", SkipReason.COVERED_ELSEWHERE),
    "customer.subscription.created.json": ("events", ["subscription.started"]),
    "customer.subscription.deleted.json": ("events", ["subscription.canceled"]),
    "customer.subscription.trial_will_end.json": ("skip", SkipReason.NO_CHURN_SIGNAL),
    "customer.subscription.updated.json": ("skip", SkipReason.NO_CHURN_SIGNAL),
    "invoice.paid.json": ("events", ["invoice.paid"]),
    "invoice.payment_failed.json": ("events", ["payment.failed"]),
    "invoice.payment_succeeded.json": ("events", ["invoice.paid"]),
}


def test_the_expected_outcomes_cover_every_webhook_fixture_in_the_shared_folder() -> None:
    webhook_files = {p.name for p in STRIPE_FIXTURES.glob("*.json")} - {"openapi_fixtures3.json"}
    assert webhook_files == set(EXPECTED_FIXTURE_OUTCOMES)


@pytest.mark.parametrize("name", sorted(EXPECTED_FIXTURE_OUTCOMES))
def test_each_stripe_fixture_becomes_its_expected_events_or_a_counted_skip(name: str) -> None:
    kind, expected = EXPECTED_FIXTURE_OUTCOMES[name]
    result = decode_for_fixture(name)
    if kind == "skip":
        assert isinstance(result, Skipped) and result.reason == expected, result
    else:
        assert [e.type for e in stripe_events(stripe_fixture(name))] == expected


def decode_for_fixture(name: str) -> object:
    return decode_stripe(stripe_fixture(name))


def test_the_subscription_created_fixture_is_a_15_dollar_monthly_start_for_its_customer() -> None:
    event = single_stripe_event(stripe_fixture("customer.subscription.created.json"))
    assert event.event_id == "evt_000000000000000000000000"
    assert event.account_id == "cus_00000000000000"
    assert event.source == "stripe"
    assert event.occurred_at == utc(1648320110)
    assert (event.plan, event.seats, event.mrr, event.currency) == (
        "price_000000000000000000000000",
        1,
        1500,
        "USD",
    )
    assert event.billing_interval == "month"
    assert event.subscription_id == "sub_000000000000000000000000"
    assert event.renews_at == utc(1650998510)


def test_the_subscription_deleted_fixture_is_a_cancellation_not_a_trial_expiry() -> None:
    event = single_stripe_event(stripe_fixture("customer.subscription.deleted.json"))
    assert event.type == "subscription.canceled"
    assert event.occurred_at == utc(1648320097)


def test_the_invoice_payment_failed_fixture_is_attempt_one_for_twenty_dollars() -> None:
    event = single_stripe_event(stripe_fixture("invoice.payment_failed.json"))
    assert (event.amount, event.currency, event.attempt) == (2000, "USD", 1)
    assert event.invoice_id == "in_000000000000000000000000"
    assert event.subscription_id is None  # a one-off invoice
    assert event.next_attempt_at is None


def test_invoice_paid_and_invoice_payment_succeeded_for_one_invoice_share_one_event_id() -> None:
    paid = single_stripe_event(stripe_fixture("invoice.paid.json"))
    succeeded = single_stripe_event(stripe_fixture("invoice.payment_succeeded.json"))
    assert paid.event_id == succeeded.event_id == "in_000000000000000000000000:paid"
    assert (paid.amount, paid.currency) == (2000, "USD")


def test_the_updated_fixture_that_only_attached_a_schedule_is_skipped_and_says_what_changed() -> None:
    result = decode_for_fixture("customer.subscription.updated.json")
    assert isinstance(result, Skipped)
    assert "schedule" in result.detail


def test_a_webhook_delivered_twice_yields_identical_events() -> None:
    raw = (STRIPE_FIXTURES / "customer.subscription.created.json").read_bytes()
    first, second = (decode_stripe(orjson.loads(raw)) for _ in range(2))
    assert first == second


# --- MRR -----------------------------------------------------------------------------------------------


def test_a_single_monthly_item_contributes_its_unit_amount() -> None:
    assert mrr_of(item(2900)) == 2900


def test_a_multi_quantity_item_multiplies_unit_amount_by_quantity() -> None:
    assert mrr_of(item(1500, quantity=7)) == 10500


def test_an_item_without_quantity_counts_as_one() -> None:
    assert mrr_of(item(4900, quantity=None)) == 4900


def test_a_subscription_with_two_items_sums_their_mrr() -> None:
    base = item(1500, quantity=2, price_id="price_base")
    seats = item(500, quantity=10, price_id="price_seat")
    event = single_stripe_event(envelope("customer.subscription.created", subscription(base, seats)))
    assert event.mrr == 1500 * 2 + 500 * 10
    # The plan is named by the item worth most per month (5000 vs 3000); seats are that item's quantity.
    assert (event.plan, event.seats) == ("price_seat", 10)


def test_an_annual_price_is_divided_by_twelve() -> None:
    event = single_stripe_event(
        envelope("customer.subscription.created", subscription(item(120_000, interval="year")))
    )
    assert (event.mrr, event.billing_interval) == (10_000, "year")


def test_a_two_year_price_is_divided_by_twenty_four() -> None:
    assert mrr_of(item(240_000, interval="year", interval_count=2)) == 10_000


def test_a_quarterly_price_is_divided_by_three() -> None:
    assert mrr_of(item(29_700, interval="month", interval_count=3)) == 9_900


def test_a_daily_price_uses_thirty_point_four_three_seven_five_days_a_month() -> None:
    assert mrr_of(item(100, interval="day")) == 3044  # 100 x 30.4375 = 3043.75


def test_a_weekly_price_and_the_same_seven_day_price_give_the_same_mrr() -> None:
    weekly = mrr_of(item(700, interval="week"))
    seven_days = mrr_of(item(700, interval="day", interval_count=7))
    assert weekly == seven_days == 3044  # 700 x 30.4375 / 7 = 3043.75


@pytest.mark.parametrize(("yearly_cents", "expected"), [(6, 0), (18, 2), (30, 2), (42, 4)])
def test_mrr_rounds_half_to_even_once_at_the_end(yearly_cents: int, expected: int) -> None:
    # 6/12 = 0.5 -> 0, 18/12 = 1.5 -> 2, 30/12 = 2.5 -> 2, 42/12 = 3.5 -> 4
    assert mrr_of(item(yearly_cents, interval="year")) == expected


def test_fractions_of_a_cent_are_summed_before_rounding_not_per_item() -> None:
    # Three annual items of 6 cents: 3 x 0.5 = 1.5 -> 2 (rounding each item first would give 0).
    items = [item(6, interval="year", price_id=f"price_{n}") for n in range(3)]
    assert mrr_of(*items) == 2


def test_a_decimal_unit_amount_is_used_exactly() -> None:
    assert mrr_of(item(1500, quantity=2, unit_amount_decimal="1500.25")) == 3000  # 3000.5 -> 3000 (half even)


def test_a_metered_item_adds_nothing_to_mrr() -> None:
    assert mrr_of(item(2000), item(3, usage_type="metered", price_id="price_api")) == 2000


def test_package_pricing_bills_whole_packages_rounded_up() -> None:
    packaged = item(1000, quantity=15)
    packaged["price"]["transform_quantity"] = {"divide_by": 10, "round": "up"}
    assert mrr_of(packaged) == 2000


def coupon(**fields: object) -> dict:
    return {
        "id": "co_1",
        "object": "coupon",
        "duration": "forever",
        "percent_off": None,
        "amount_off": None,
    } | fields


def discount(
    coupon_fields: dict, *, discount_id: str = "di_1", end: int | None = None, new_shape: bool = False
) -> dict:
    body: dict = {"id": discount_id, "object": "discount", "end": end, "start": T0 - DAY}
    if new_shape:
        body["source"] = {"type": "coupon", "coupon": coupon(**coupon_fields)}
    else:
        body["coupon"] = coupon(**coupon_fields)
    return body


def test_a_percent_off_coupon_reduces_mrr_by_that_percentage() -> None:
    assert mrr_of(item(10_000), discounts=[discount({"percent_off": 25.5})]) == 7450


def test_an_amount_off_coupon_comes_off_each_monthly_invoice() -> None:
    assert mrr_of(item(1500), discounts=[discount({"amount_off": 500, "currency": "usd"})]) == 1000


def test_an_amount_off_coupon_on_an_annual_plan_is_spread_over_twelve_months() -> None:
    annual = item(120_000, interval="year")
    assert mrr_of(annual, discounts=[discount({"amount_off": 1200, "currency": "usd"})]) == 9900


def test_the_legacy_single_discount_field_is_honoured() -> None:
    sub = subscription(item(2000), new_shape=False)
    sub["discount"] = discount({"percent_off": 50})
    assert single_stripe_event(envelope("customer.subscription.created", sub)).mrr == 1000


def test_a_discount_listed_in_both_discount_and_discounts_applies_once() -> None:
    both = discount({"percent_off": 50})
    assert mrr_of(item(2000), discount=both, discounts=[copy.deepcopy(both)]) == 1000


def test_the_newest_discount_shape_with_source_coupon_is_honoured() -> None:
    assert mrr_of(item(2000), discounts=[discount({"percent_off": 10}, new_shape=True)]) == 1800


def test_a_once_coupon_does_not_change_the_recurring_rate() -> None:
    assert mrr_of(item(2000), discounts=[discount({"percent_off": 50, "duration": "once"})]) == 2000


def test_a_discount_that_ended_before_the_event_is_ignored() -> None:
    assert mrr_of(item(2000), discounts=[discount({"percent_off": 50}, end=T0 - 1)]) == 2000


def test_an_unexpanded_discount_id_cannot_be_priced_and_is_ignored() -> None:
    assert mrr_of(item(2000), discounts=["di_not_expanded"]) == 2000


def test_an_amount_off_coupon_in_another_currency_is_ignored() -> None:
    assert mrr_of(item(2000), discounts=[discount({"amount_off": 500, "currency": "eur"})]) == 2000


def test_an_item_level_discount_applies_to_that_item_only() -> None:
    discounted = item(2000, price_id="price_a")
    discounted["discounts"] = [discount({"percent_off": 50})]
    assert mrr_of(discounted, item(1000, price_id="price_b")) == 2000


def test_discounts_never_take_mrr_below_zero() -> None:
    assert mrr_of(item(500), discounts=[discount({"amount_off": 5000, "currency": "usd"})]) == 0


def test_the_legacy_shape_without_items_uses_the_top_level_plan_and_quantity() -> None:
    sub = subscription(new_shape=False)
    sub["items"] = {"object": "list", "data": []}
    sub["plan"] = {"id": "gold", "amount": 3000, "currency": "usd", "interval": "month", "interval_count": 1}
    sub["quantity"] = 3
    event = single_stripe_event(envelope("customer.subscription.created", sub))
    assert (event.plan, event.seats, event.mrr) == ("gold", 3, 9000)


def test_a_nickname_or_lookup_key_names_the_plan_before_the_price_id() -> None:
    named = item(1000, nickname="Team")
    assert single_stripe_event(envelope("customer.subscription.created", subscription(named))).plan == "Team"


def test_currencies_are_upper_cased() -> None:
    event = single_stripe_event(
        envelope("customer.subscription.created", subscription(item(1000, currency="eur")))
    )
    assert event.currency == "EUR"


def test_items_in_two_currencies_are_dead_lettered_as_an_adapter_error() -> None:
    sub = subscription(item(1000, price_id="p1"), item(1000, currency="eur", price_id="p2"))
    letter = only_dead_letter(decode_stripe(envelope("customer.subscription.created", sub)))
    assert letter.reason == DeadLetterReason.ADAPTER_ERROR
    assert "EUR, USD" in letter.message


# --- both payload generations --------------------------------------------------------------------------


def test_renews_at_comes_from_the_items_in_the_new_api_shape() -> None:
    sub = subscription(item(1000), new_shape=True)
    sub["items"]["data"][0]["current_period_end"] = T0 + 31 * DAY
    assert "current_period_end" not in sub
    assert single_stripe_event(envelope("customer.subscription.created", sub)).renews_at == utc(T0 + 31 * DAY)


def test_renews_at_comes_from_the_subscription_in_the_old_api_shape() -> None:
    sub = subscription(item(1000), new_shape=False)
    assert single_stripe_event(envelope("customer.subscription.created", sub)).renews_at == utc(T0 + 30 * DAY)


def test_a_subscription_in_the_stripe_openapi_example_shape_maps_to_a_start() -> None:
    sub = openapi_object("subscription")
    # Shape from Stripe's example; its numbers are generator output, so set realistic ones.
    sub.update(cancel_at=None, cancel_at_period_end=False, pause_collection=None, trial_end=None)
    entry = sub["items"]["data"][0]
    entry["price"]["transform_quantity"] = None
    entry.update(current_period_start=T0, current_period_end=T0 + 30 * DAY, quantity=4)
    event = single_stripe_event(envelope("customer.subscription.created", sub))
    assert (event.mrr, event.seats, event.currency) == (8000, 4, "USD")
    assert event.renews_at == utc(T0 + 30 * DAY)
    assert event.account_id == "cus_QXg1o8vcGmoR32"


def test_an_invoice_in_the_new_shape_names_its_subscription_through_parent_details() -> None:
    invoice = openapi_object("invoice")
    invoice.update(attempt_count=2, next_payment_attempt=T0 + 3 * DAY)
    invoice["parent"]["subscription_details"]["subscription"] = "sub_new_shape"
    event = single_stripe_event(envelope("invoice.payment_failed", invoice))
    assert (event.subscription_id, event.attempt, event.amount) == ("sub_new_shape", 2, 1000)
    assert event.next_attempt_at == utc(T0 + 3 * DAY)


def test_an_invoice_in_the_old_shape_names_its_subscription_directly() -> None:
    invoice = stripe_fixture("invoice.paid.json")
    invoice["data"]["object"]["subscription"] = "sub_legacy"
    assert single_stripe_event(invoice).subscription_id == "sub_legacy"


def test_the_payment_attempt_number_is_stripe_attempt_count() -> None:
    payload = stripe_fixture("invoice.payment_failed.json")
    payload["data"]["object"]["attempt_count"] = 4
    assert single_stripe_event(payload).attempt == 4


def test_a_zero_amount_paid_invoice_is_skipped() -> None:
    payload = stripe_fixture("invoice.paid.json")
    payload["data"]["object"]["amount_paid"] = 0
    result = decode_stripe(payload)
    assert isinstance(result, Skipped) and result.reason == SkipReason.ZERO_AMOUNT


# --- subscription lifecycle ----------------------------------------------------------------------------


def test_a_trialing_subscription_starts_a_trial_not_a_paid_subscription() -> None:
    sub = subscription(item(5000), status="trialing", trial_end=T0 + 14 * DAY)
    event = single_stripe_event(envelope("customer.subscription.created", sub))
    assert event.type == "trial.started"
    assert (event.plan, event.trial_ends_at) == ("price_basic", utc(T0 + 14 * DAY))


def test_an_incomplete_subscription_is_skipped_until_its_first_payment() -> None:
    result = decode_stripe(envelope("customer.subscription.created", subscription(status="incomplete")))
    assert isinstance(result, Skipped) and result.reason == SkipReason.NOT_STARTED


def test_an_incomplete_subscription_becoming_active_is_a_start() -> None:
    payload = envelope("customer.subscription.updated", subscription(item(1000)), {"status": "incomplete"})
    assert single_stripe_event(payload).type == "subscription.started"


def test_a_trial_that_becomes_active_is_a_conversion_with_its_mrr() -> None:
    payload = envelope("customer.subscription.updated", subscription(item(4900)), {"status": "trialing"})
    event = single_stripe_event(payload)
    assert (event.type, event.mrr) == ("trial.converted", 4900)


def test_a_trial_that_ends_paused_for_lack_of_a_payment_method_has_expired() -> None:
    payload = envelope("customer.subscription.updated", subscription(status="paused"), {"status": "trialing"})
    assert single_stripe_event(payload).type == "trial.expired"


def test_an_upgrade_is_a_change_that_carries_the_previous_plan_and_mrr() -> None:
    old = item(1500, price_id="price_basic")
    new = item(4900, price_id="price_pro")
    payload = envelope(
        "customer.subscription.updated", subscription(new), {"items": {"object": "list", "data": [old]}}
    )
    event = single_stripe_event(payload)
    assert event.type == "subscription.changed"
    assert (event.plan, event.mrr, event.previous_plan, event.previous_mrr) == (
        "price_pro",
        4900,
        "price_basic",
        1500,
    )


def test_a_seat_reduction_is_a_change_with_previous_seats() -> None:
    payload = envelope(
        "customer.subscription.updated",
        subscription(item(1000, quantity=3)),
        {"items": {"object": "list", "data": [item(1000, quantity=5)]}},
    )
    event = single_stripe_event(payload)
    assert (event.seats, event.previous_seats, event.mrr, event.previous_mrr) == (3, 5, 3000, 5000)


def test_a_legacy_quantity_change_reported_without_items_is_still_a_change() -> None:
    sub = subscription(item(1000, quantity=3), new_shape=False)
    event = single_stripe_event(envelope("customer.subscription.updated", sub, {"quantity": 5}))
    assert (event.type, event.previous_seats, event.previous_mrr) == ("subscription.changed", 5, 5000)


def test_removing_a_discount_is_an_mrr_change() -> None:
    previous = {"discounts": [discount({"percent_off": 50})]}
    event = single_stripe_event(envelope("customer.subscription.updated", subscription(item(2000)), previous))
    assert (event.type, event.mrr, event.previous_mrr) == ("subscription.changed", 2000, 1000)


def test_a_discount_that_just_ended_is_an_mrr_change() -> None:
    previous = {"discounts": [discount({"percent_off": 50}, end=T0)]}
    event = single_stripe_event(envelope("customer.subscription.updated", subscription(item(2000)), previous))
    assert (event.mrr, event.previous_mrr) == (2000, 1000)


def test_a_new_period_in_the_old_shape_is_a_renewal() -> None:
    payload = envelope(
        "customer.subscription.updated",
        subscription(item(1000), new_shape=False),
        {"current_period_end": T0, "current_period_start": T0 - 30 * DAY, "latest_invoice": "in_old"},
    )
    event = single_stripe_event(payload)
    assert (event.type, event.renews_at, event.mrr) == ("subscription.renewed", utc(T0 + 30 * DAY), 1000)


def test_a_new_period_on_the_items_in_the_new_shape_is_a_renewal() -> None:
    sub = subscription(item(1000))
    old_item = copy.deepcopy(sub["items"]["data"][0])
    old_item.update(current_period_start=T0 - 30 * DAY, current_period_end=T0)
    payload = envelope(
        "customer.subscription.updated", sub, {"items": {"object": "list", "data": [old_item]}}
    )
    assert single_stripe_event(payload).type == "subscription.renewed"


def test_setting_cancel_at_period_end_schedules_a_cancellation_at_the_period_end() -> None:
    sub = subscription(item(1000), cancel_at_period_end=True, cancel_at=T0 + 30 * DAY)
    sub["cancellation_details"] = {
        "feedback": "too_expensive",
        "comment": None,
        "reason": "cancellation_requested",
    }
    previous = {"cancel_at_period_end": False, "cancel_at": None, "canceled_at": None}
    event = single_stripe_event(envelope("customer.subscription.updated", sub, previous))
    assert (event.type, event.cancel_at, event.reason) == (
        "subscription.cancel_scheduled",
        utc(T0 + 30 * DAY),
        "too_expensive",
    )


def test_clearing_cancel_at_period_end_unschedules_the_cancellation() -> None:
    sub = subscription(item(1000), cancel_at_period_end=False, cancel_at=None)
    previous = {"cancel_at_period_end": True, "cancel_at": T0 + 30 * DAY}
    assert single_stripe_event(envelope("customer.subscription.updated", sub, previous)).type == (
        "subscription.cancel_unscheduled"
    )


def test_pausing_payment_collection_pauses_and_clearing_it_resumes() -> None:
    paused = subscription(item(1000), pause_collection={"behavior": "void", "resumes_at": None})
    event = single_stripe_event(envelope("customer.subscription.updated", paused, {"pause_collection": None}))
    assert event.type == "subscription.paused"
    resumed = subscription(item(1000), pause_collection=None)
    previous = {"pause_collection": {"behavior": "void", "resumes_at": None}}
    assert single_stripe_event(envelope("customer.subscription.updated", resumed, previous)).type == (
        "subscription.resumed"
    )


def test_the_dedicated_paused_and_resumed_events_map_to_pause_and_resume() -> None:
    paused = single_stripe_event(envelope("customer.subscription.paused", subscription(status="paused")))
    resumed = single_stripe_event(envelope("customer.subscription.resumed", subscription()))
    assert (paused.type, resumed.type) == ("subscription.paused", "subscription.resumed")


def test_a_status_change_to_paused_in_an_update_is_left_to_the_dedicated_paused_event() -> None:
    payload = envelope("customer.subscription.updated", subscription(status="paused"), {"status": "active"})
    assert isinstance(decode_stripe(payload), Skipped)


def test_falling_past_due_alone_is_skipped_because_the_failed_invoice_reports_it() -> None:
    payload = envelope("customer.subscription.updated", subscription(status="past_due"), {"status": "active"})
    result = decode_stripe(payload)
    assert isinstance(result, Skipped) and result.reason == SkipReason.NO_CHURN_SIGNAL


def test_a_conversion_that_also_schedules_cancellation_yields_two_events_with_distinct_ids() -> None:
    sub = subscription(item(1000), cancel_at_period_end=True, cancel_at=T0 + 30 * DAY)
    previous = {"status": "trialing", "cancel_at_period_end": False, "cancel_at": None}
    events = stripe_events(envelope("customer.subscription.updated", sub, previous, event_id="evt_9"))
    assert [e.type for e in events] == ["trial.converted", "subscription.cancel_scheduled"]
    assert [e.event_id for e in events] == ["evt_9", "evt_9:subscription.cancel_scheduled"]


def test_a_subscription_deleted_during_its_trial_is_an_expired_trial() -> None:
    sub = subscription(status="canceled", trial_end=T0 + DAY, ended_at=T0, canceled_at=T0)
    assert single_stripe_event(envelope("customer.subscription.deleted", sub)).type == "trial.expired"


def test_a_cancellation_carries_the_customer_feedback_as_its_reason() -> None:
    sub = subscription(status="canceled", ended_at=T0, canceled_at=T0, trial_end=None)
    sub["cancellation_details"] = {
        "feedback": "switched_service",
        "comment": "moving to a competitor",
        "reason": None,
    }
    assert single_stripe_event(envelope("customer.subscription.deleted", sub)).reason == "switched_service"


# --- charges -------------------------------------------------------------------------------------------


def test_a_refund_of_a_customer_charge_is_a_refund_for_the_newly_refunded_amount() -> None:
    payload = stripe_fixture("charge.refunded.json")
    payload["data"]["object"]["customer"] = "cus_refund"
    event = single_stripe_event(payload)
    assert (event.type, event.account_id, event.amount, event.currency) == (
        "refund.issued",
        "cus_refund",
        100,
        "USD",
    )


def test_a_second_partial_refund_counts_only_its_own_amount() -> None:
    payload = stripe_fixture("charge.refunded.json")
    charge = payload["data"]["object"]
    charge.update(customer="cus_refund", amount=1000, amount_refunded=700)
    payload["data"]["previous_attributes"] = {"amount_refunded": 300}
    assert single_stripe_event(payload).amount == 400


def test_a_failed_charge_on_an_invoice_is_left_to_invoice_payment_failed() -> None:
    payload = stripe_fixture("charge.failed.json")
    payload["data"]["object"].update(invoice="in_1", customer="cus_1")
    result = decode_stripe(payload)
    assert isinstance(result, Skipped) and result.reason == SkipReason.COVERED_ELSEWHERE


# --- accounts, envelopes, unhandled types --------------------------------------------------------------


def test_the_account_is_the_stripe_customer_unless_a_mapping_hook_says_otherwise() -> None:
    config = IngestConfig(stripe_account_for_customer=lambda customer: f"acct-for-{customer}")
    event = single_stripe_event(stripe_fixture("customer.subscription.created.json"), config)
    assert event.account_id == "acct-for-cus_00000000000000"


def test_a_customer_the_mapping_hook_does_not_know_is_dead_lettered_as_missing_account() -> None:
    config = IngestConfig(stripe_account_for_customer=lambda customer: None)
    letter = only_dead_letter(decode_stripe(stripe_fixture("customer.subscription.created.json"), config))
    assert letter.reason == DeadLetterReason.MISSING_ACCOUNT
    assert "cus_00000000000000" in letter.message


def test_an_expanded_customer_object_is_read_by_its_id() -> None:
    payload = stripe_fixture("customer.subscription.created.json")
    payload["data"]["object"]["customer"] = {"id": "cus_expanded", "object": "customer"}
    assert single_stripe_event(payload).account_id == "cus_expanded"


def test_a_subscription_event_without_a_customer_is_dead_lettered_as_missing_account() -> None:
    payload = stripe_fixture("customer.subscription.created.json")
    payload["data"]["object"]["customer"] = None
    letter = only_dead_letter(decode_stripe(payload))
    assert (letter.reason, letter.event_id) == (
        DeadLetterReason.MISSING_ACCOUNT,
        "evt_000000000000000000000000",
    )


def test_an_unhandled_stripe_event_type_is_skipped_as_unhandled() -> None:
    result = decode_stripe(envelope("payment_intent.created", {"id": "pi_1", "customer": "cus_1"}))
    assert isinstance(result, Skipped) and result.reason == SkipReason.UNHANDLED_TYPE


def test_a_json_object_that_is_not_a_stripe_event_is_an_unsupported_envelope() -> None:
    letter = only_dead_letter(decode_stripe({"id": "sub_1", "object": "subscription"}))
    assert letter.reason == DeadLetterReason.UNSUPPORTED_ENVELOPE


def test_a_thin_event_is_rejected_with_a_hint_to_fetch_the_full_event() -> None:
    letter = only_dead_letter(decode_stripe({"id": "evt_1", "object": "v2.core.event", "type": "x"}))
    assert "thin event" in letter.message


def test_an_unknown_billing_interval_is_an_adapter_error() -> None:
    bad = item(1000, interval="fortnight")
    letter = only_dead_letter(decode_stripe(envelope("customer.subscription.created", subscription(bad))))
    assert letter.reason == DeadLetterReason.ADAPTER_ERROR
    assert "fortnight" in letter.message


def test_a_negative_invoice_amount_is_dead_lettered_by_the_schema_bound() -> None:
    payload = stripe_fixture("invoice.payment_failed.json")
    payload["data"]["object"]["amount_remaining"] = -5
    letter = only_dead_letter(decode_stripe(payload))
    assert letter.reason == DeadLetterReason.INVALID_EVENT
    assert letter.message.startswith("amount: Input should be greater than or equal to 0")


def test_month_lengths_are_exact_fractions() -> None:
    assert stripe.DAYS_PER_MONTH == 30.4375
    assert stripe.months_per_interval("year", 1) == 12
    assert stripe.months_per_interval("month", 3) == 3


def test_the_worked_example_in_the_stripe_docs_holds() -> None:
    team = item(4900, quantity=5, price_id="price_team", nickname="Team")
    storage = item(12_000, interval="year", price_id="price_storage", nickname="Storage")
    sub = subscription(team, storage, discounts=[discount({"percent_off": 10})])
    event = single_stripe_event(envelope("customer.subscription.created", sub))
    assert (event.mrr, event.plan, event.seats) == (22_950, "Team", 5)
