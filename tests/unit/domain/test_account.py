"""The account state machine: billing registers, lifecycle stage, lateness bound and both kinds of dedupe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streams.domain.account import (
    ApplyResult,
    advance,
    already_applied,
    apply_event,
    lifecycle_stage,
    new_account,
    seen_second,
)
from streams.domain.codec import decode_state, encode_state
from streams.domain.config import DomainConfig
from tests.unit.domain.factories import event, feature, session, state_of

CONFIG = DomainConfig()


def d(month: int, day: int, hour: int = 9, year: int = 2024) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def started(when: datetime, mrr: int = 10_000, **kw) -> object:
    return event("subscription.started", when, plan=kw.pop("plan", "pro"), mrr=mrr, **kw)


# --- subscription and billing ------------------------------------------------------------------------------


def test_a_started_subscription_is_active_with_its_terms_and_cohort() -> None:
    state = state_of([started(d(3, 31, 23), mrr=12_000, seats=4, currency="EUR", renews_at=d(4, 30))])
    assert (state.status, state.plan, state.seats, state.mrr, state.currency) == ("active", "pro", 4, 12_000, "EUR")
    assert state.renews_at == d(4, 30)
    assert state.cohort == "2024-03"


def test_a_trial_is_not_paid_the_cohort_is_the_month_of_conversion() -> None:
    state = state_of([event("trial.started", d(3, 20), plan="pro", trial_ends_at=d(4, 3))])
    assert (state.status, state.stage, state.mrr, state.cohort, state.plan) == ("trialing", "trial", 0, None, "pro")
    assert state.trial_ends_at == d(4, 3)
    apply_event(state, event("trial.converted", d(4, 3), plan="pro", mrr=9_900), CONFIG)
    assert (state.status, state.mrr, state.cohort) == ("active", 9_900, "2024-04")
    assert state.first_paid_at == d(4, 3)


def test_an_expired_trial_is_canceled_and_churned_without_a_cohort() -> None:
    state = state_of([event("trial.started", d(3, 20), plan="pro"), event("trial.expired", d(4, 3))])
    assert (state.status, state.stage, state.cohort) == ("canceled", "churned", None)


def test_failed_payments_make_an_active_subscription_past_due_until_an_invoice_is_paid() -> None:
    state = state_of([started(d(1, 1)), event("payment.failed", d(2, 1), amount=10_000, attempt=1),
                      event("payment.failed", d(2, 4), amount=10_000, attempt=2)])
    assert (state.status, state.failed_payment_attempts, state.mrr) == ("past_due", 2, 10_000)
    apply_event(state, event("invoice.paid", d(2, 5), amount=10_000), CONFIG)
    assert (state.status, state.failed_payment_attempts) == ("active", 0)


def test_a_late_failure_older_than_the_last_paid_invoice_does_not_reopen_dunning() -> None:
    state = state_of([started(d(1, 1)), event("invoice.paid", d(2, 5), amount=10_000),
                      event("payment.failed", d(2, 4), amount=10_000, attempt=2)])
    assert (state.status, state.failed_payment_attempts) == ("active", 0)


def test_cancel_scheduled_then_unscheduled_then_canceled() -> None:
    state = state_of([started(d(1, 1), renews_at=d(2, 1)), event("subscription.cancel_scheduled", d(1, 10))])
    assert state.cancel_scheduled and state.cancel_at == d(2, 1)  # no date given: the period end
    apply_event(state, event("subscription.cancel_unscheduled", d(1, 12)), CONFIG)
    assert not state.cancel_scheduled and state.cancel_at is None
    apply_event(state, event("subscription.cancel_scheduled", d(1, 14), cancel_at=d(1, 31)), CONFIG)
    assert state.cancel_at == d(1, 31)
    apply_event(state, event("subscription.canceled", d(1, 31)), CONFIG)
    assert (state.status, state.mrr, state.stage, state.cancel_scheduled) == ("canceled", 0, "churned", False)


def test_paused_subscriptions_have_no_mrr_and_resume_to_active() -> None:
    state = state_of([started(d(1, 1)), event("subscription.paused", d(1, 5))])
    assert (state.status, state.mrr, state.plan_mrr) == ("paused", 0, 10_000)
    apply_event(state, event("subscription.resumed", d(1, 6)), CONFIG)
    assert (state.status, state.mrr) == ("active", 10_000)


def test_the_latest_snapshot_by_event_time_wins_whatever_the_arrival_order() -> None:
    up = event("subscription.changed", d(1, 20), plan="team", seats=10, mrr=30_000, previous_mrr=10_000)
    state = state_of([started(d(1, 1)), up, event("subscription.renewed", d(1, 10), plan="pro", mrr=10_000)])
    assert (state.plan, state.seats, state.mrr) == ("team", 10, 30_000)


def test_same_second_snapshots_break_ties_by_their_content_deterministically() -> None:
    a = event("subscription.changed", d(1, 20), plan="team", mrr=30_000)
    b = event("subscription.changed", d(1, 20), plan="pro", mrr=20_000)
    assert state_of([started(d(1, 1)), a, b]).mrr == state_of([started(d(1, 1)), b, a]).mrr == 30_000


# --- lifecycle stage -----------------------------------------------------------------------------------------


def test_stage_is_onboarding_for_the_first_30_days_of_paying_then_adoption_then_retention() -> None:
    state = state_of([started(d(1, 1)), feature(d(1, 2))])
    assert lifecycle_stage(state, d(1, 30), CONFIG) == "onboarding"  # day 29
    assert lifecycle_stage(state, d(1, 31), CONFIG) == "adoption"  # day 30
    assert lifecycle_stage(state, d(3, 30), CONFIG) == "adoption"  # day 89
    assert lifecycle_stage(state, d(3, 31), CONFIG) == "retention"  # day 90


def test_stage_stays_onboarding_without_first_value() -> None:
    state = state_of([started(d(1, 1)), session(d(5, 1))])
    assert state.stage == "onboarding"
    apply_event(state, feature(d(5, 2)), CONFIG)
    assert state.stage == "retention"


def test_stage_is_expansion_for_30_days_after_mrr_rose() -> None:
    state = state_of([started(d(1, 1)), feature(d(1, 2)),
                      event("subscription.changed", d(6, 1), plan="team", mrr=20_000, previous_mrr=10_000)])
    assert state.stage == "expansion"
    assert lifecycle_stage(state, d(6, 30), CONFIG) == "expansion"
    assert lifecycle_stage(state, d(7, 1), CONFIG) == "retention"


def test_a_rise_is_found_between_neighbouring_snapshots_without_previous_mrr_in_any_order() -> None:
    evs = [started(d(1, 1), mrr=10_000), feature(d(1, 2)), event("subscription.renewed", d(6, 1), plan="pro",
                                                                 mrr=10_000),
           event("subscription.changed", d(6, 3), plan="team", mrr=15_000)]
    for order in (evs, [evs[0], evs[1], evs[3], evs[2]]):  # the June events swapped (within the bound)
        state = state_of(order)
        assert (state.stage, state.last_mrr_rise_s) == ("expansion", int(d(6, 3).timestamp()))


def test_snapshots_older_than_the_lateness_bound_are_folded_to_one_anchor() -> None:
    state = state_of([started(d(1, 1), mrr=10_000), event("subscription.changed", d(2, 1), plan="team", mrr=20_000),
                      event("subscription.renewed", d(3, 1), plan="team", mrr=20_000),
                      event("invoice.paid", d(3, 20), amount=20_000)])
    # Only billing progress moves the billing lateness bound (usage is a separate stream).
    assert state.snapshots == [(int(d(3, 1).timestamp()), 20_000)]
    assert state.mrr_rose_s == int(d(2, 1).timestamp())


def test_a_downgrade_is_not_expansion() -> None:
    state = state_of([started(d(1, 1), mrr=20_000), feature(d(1, 2)),
                      event("subscription.changed", d(6, 1), plan="pro", mrr=10_000, previous_mrr=20_000)])
    assert state.stage == "retention" and state.last_mrr_rise_s is None


def test_stage_is_reactivated_for_30_days_after_returning_from_a_cancellation() -> None:
    state = state_of([started(d(1, 1)), feature(d(1, 2)), event("subscription.canceled", d(4, 1)),
                      event("subscription.reactivated", d(5, 1), plan="pro", mrr=10_000)])
    assert (state.status, state.stage) == ("active", "reactivated")
    assert lifecycle_stage(state, d(5, 31), CONFIG) == "retention"


def test_advance_refreshes_the_stage_without_an_event() -> None:
    state = state_of([started(d(1, 1)), feature(d(1, 2))])
    assert state.stage == "onboarding"
    advance(state, d(2, 15), CONFIG)
    assert state.stage == "adoption"


# --- lateness --------------------------------------------------------------------------------------------------


def test_an_event_exactly_at_the_lateness_bound_is_accepted() -> None:
    state = state_of([session("2024-05-10T18:00:00Z")])
    # newest event day May 10, 7 days allowed: the bound is May 3 00:00:00 UTC
    assert apply_event(state, session("2024-05-03T00:00:00Z"), CONFIG).outcome == "processed"


def test_an_event_one_second_older_than_the_bound_is_too_late_and_changes_nothing() -> None:
    state = state_of([session("2024-05-10T18:00:00Z")])
    before = encode_state(state)
    result = apply_event(state, session("2024-05-02T23:59:59Z"), CONFIG, source="usage-events", offset=7)
    assert result.outcome == "too_late"
    assert encode_state(result.state) == before


def test_the_lateness_bound_is_configurable() -> None:
    config = DomainConfig(allowed_lateness_days=0)
    state = state_of([session("2024-05-10T18:00:00Z")], config)
    assert apply_event(state, session("2024-05-10T00:00:00Z"), config).outcome == "processed"
    assert apply_event(state, session("2024-05-09T23:59:59Z"), config).outcome == "too_late"


# --- dedupe ------------------------------------------------------------------------------------------------------


def test_a_redelivered_offset_is_a_duplicate_and_changes_nothing() -> None:
    state = new_account("acct_0042")
    apply_event(state, session(d(5, 1)), CONFIG, source="usage-events", offset=41)
    assert already_applied(state, "usage-events", 41) and not already_applied(state, "usage-events", 42)
    assert not already_applied(state, "billing-events", 0)
    before = encode_state(state)
    again = apply_event(state, session(d(5, 1, 10)), CONFIG, source="usage-events", offset=41)
    assert again.outcome == "duplicate"
    assert encode_state(state) == before
    assert apply_event(state, session(d(5, 1, 11)), CONFIG, source="usage-events", offset=42).outcome == "processed"
    assert state.offsets == {"usage-events": 42}


def test_offsets_are_tracked_per_source() -> None:
    state = new_account("acct_0042")
    apply_event(state, session(d(5, 1)), CONFIG, source="usage-events", offset=9)
    result = apply_event(state, started(d(5, 1)), CONFIG, source="billing-events", offset=3)
    assert result.outcome == "processed"
    assert state.offsets == {"usage-events": 9, "billing-events": 3}


def test_a_repeated_event_id_is_a_duplicate_and_changes_nothing() -> None:
    original = session(d(5, 1), event_id="evt_retry")
    state = state_of([original])
    before = encode_state(state)
    retry = session(d(5, 1), event_id="evt_retry")
    assert apply_event(state, retry, CONFIG, source="usage-events", offset=5).outcome == "duplicate"
    assert encode_state(state) == before


def test_a_duplicate_is_caught_while_the_original_is_among_the_newest_n_events() -> None:
    config = DomainConfig(dedupe_ring_size=4)
    original = session(d(5, 1, 0), event_id="evt_x")
    newer = [session(d(5, 1, h)) for h in range(1, 4)]
    assert apply_event(state_of([original, *newer], config), original, config).outcome == "duplicate"
    # a fifth, newer event pushes the original out of the ring: its retry is applied again (documented bound)
    state = state_of([original, *newer, session(d(5, 1, 5))], config)
    assert len(state.seen) == 4
    assert apply_event(state, original, config).outcome == "processed"


def test_the_ring_keeps_the_newest_ids_by_event_time_not_by_arrival() -> None:
    config = DomainConfig(dedupe_ring_size=2)
    late = session(d(5, 1, 1), event_id="evt_late")
    state = state_of([session(d(5, 1, 5)), session(d(5, 1, 6)), late], config)
    assert apply_event(state, late, config).outcome == "processed"  # older than both kept ids


@pytest.mark.parametrize("year", [2000, 2026, 2099])
def test_the_ring_dedupes_and_round_trips_across_the_schemas_whole_time_range(year: int) -> None:
    # Ring keys count seconds from 2050 so that they stay small integers for 2016..2084; outside that range they
    # are ordinary big integers and must behave the same.
    config = DomainConfig(dedupe_ring_size=3)
    when = [datetime(year, 6, 1, h, tzinfo=UTC) for h in (3, 1, 2, 4)]  # one out of time order
    events = [session(w, event_id=f"evt_{n}") for n, w in enumerate(when)]
    state = state_of(events, config)
    assert [seen_second(k) for k in state.seen] == [int(w.timestamp()) for w in sorted(when)[1:]]
    assert decode_state(encode_state(state)) == state
    assert apply_event(state, events[0], config).outcome == "duplicate"  # 03:00, still among the newest three
    assert apply_event(state, events[1], config).outcome == "processed"  # 01:00, older than every kept id


def test_a_zero_ring_disables_event_id_dedupe() -> None:
    config = DomainConfig(dedupe_ring_size=0)
    ev = session(d(5, 1), event_id="evt_1")
    state = state_of([ev], config)
    assert apply_event(state, ev, config).outcome == "processed"


# --- contract ---------------------------------------------------------------------------------------------------


def test_apply_event_mutates_and_returns_the_same_state_object() -> None:
    state = new_account("acct_0042")
    result = apply_event(state, session(d(5, 1)), CONFIG)
    assert isinstance(result, ApplyResult)
    assert result.state is state and result.outcome == "processed" and result.outputs == []


def test_a_new_account_is_empty_and_in_trial_stage() -> None:
    state = new_account("acct_1")
    assert (state.account_id, state.status, state.stage, state.mrr, state.cohort) == ("acct_1", "none", "trial", 0,
                                                                                     None)
    assert state.last_event_at is None


def test_traits_are_bounded_and_the_latest_by_event_time_win() -> None:
    config = DomainConfig(max_traits=2, max_trait_chars=4)
    state = state_of([event("account.traits", d(5, 2), traits={"region": "emea", "industry": "logistics",
                                                               "size": "200"}),
                      event("account.traits", d(5, 1), traits={"region": "apac"})], config)
    assert state.traits == {"industry": "logi", "region": "emea"}


def test_config_rejects_out_of_range_bounds() -> None:
    for bad in ({"allowed_lateness_days": -1}, {"allowed_lateness_days": 31}, {"nps_max_age_days": 30},
                {"dedupe_ring_size": -1}, {"unknown_setting": 1}):
        with pytest.raises(ValueError):
            DomainConfig(**bad)


def test_the_horizon_covers_at_least_ninety_days() -> None:
    with pytest.raises(ValueError):
        DomainConfig(bucket_horizon_days=60)


def test_stage_is_refreshed_when_the_day_changes() -> None:
    state = state_of([started(d(1, 1)), feature(d(1, 2))])
    apply_event(state, session(d(1, 1) + timedelta(days=45)), CONFIG)
    assert state.stage == "adoption"
