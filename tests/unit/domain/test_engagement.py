"""Engagement windows in event time: UTC day boundaries, documented stickiness/breadth, expiry, NPS, tickets."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain.account import advance, apply_event
from streams.domain.config import DomainConfig
from streams.domain.engagement import (
    SESSIONS,
    TICKETS_OPENED,
    Engagement,
    day_index,
    engagement_summary,
    epoch_of,
    fingerprint,
    summary_windows,
    tickets_opened,
    utc_of,
    window_figures,
)
from tests.unit.domain.factories import at, event, feature, session, state_of


def d(month: int, day: int, hour: int = 9, year: int = 2024) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def docs_state_example() -> list:
    """docs/state.md, "Worked example: stickiness and breadth" (as of 2024-05-31)."""
    evs = []
    for day in range(12, 32):  # ana: every day May 12-31, reports
        evs += [session(d(5, day), "ana"), feature(d(5, day, 10), "reports", "ana")]
    for day in range(3, 31, 3):  # ben: May 3, 6, ..., 30, dashboards
        evs += [session(d(5, day), "ben"), feature(d(5, day, 10), "dashboards", "ben")]
    for day in (29, 30, 31):  # cy: May 29-31, reports, and export on the 31st
        evs += [session(d(5, day), "cy"), feature(d(5, day, 11), "export" if day == 31 else "reports", "cy")]
    for month, day in ((4, 10), (4, 20)):  # dee: April 10 and 20, alerts and reports
        evs += [session(d(month, day), "dee"), feature(d(month, day, 10), "alerts", "dee"),
                feature(d(month, day, 11), "reports", "dee")]
    return sorted(evs, key=lambda e: e.occurred_at)


# --- UTC days --------------------------------------------------------------------------------------------------


def test_the_last_second_of_a_day_and_the_first_second_of_the_next_land_in_different_buckets() -> None:
    state = state_of([session("2024-05-01T23:59:59Z"), session("2024-05-02T00:00:00Z")])
    d1, d2 = day_index(date(2024, 5, 1)), day_index(date(2024, 5, 2))
    assert state.engagement.days[d1][SESSIONS] == 1
    assert state.engagement.days[d2][SESSIONS] == 1


def test_an_event_with_a_non_utc_offset_lands_on_its_utc_day() -> None:
    # 01:30 in UTC+2 is 23:30 UTC the day before; 22:30 in UTC-5 is 03:30 UTC the day after.
    state = state_of([session("2024-05-01T01:30:00+02:00"), session("2024-05-01T22:30:00-05:00")])
    assert sorted(state.engagement.days) == [day_index(date(2024, 4, 30)), day_index(date(2024, 5, 2))]


def test_day_index_counts_days_since_1970_and_rejects_naive_datetimes() -> None:
    assert day_index(date(1970, 1, 2)) == 1
    assert day_index(at("2024-05-01T23:59:59Z")) == day_index(date(2024, 5, 1)) == 19844
    with pytest.raises(ValueError):
        day_index(datetime(2024, 5, 1))


def test_epoch_and_utc_conversions_give_each_datetime_its_own_seconds_whatever_was_converted_before() -> None:
    # epoch_of and utc_of remember their last conversion; equal-looking or alternating inputs must not mix up.
    berlin = timezone(timedelta(hours=1))
    noon_utc = datetime(2024, 5, 1, 12, tzinfo=UTC)
    noon_berlin = datetime(2024, 5, 1, 12, tzinfo=berlin)
    for _ in range(2):
        assert epoch_of(noon_utc) == 1_714_564_800
        assert epoch_of(noon_berlin) == 1_714_564_800 - 3600
        assert epoch_of(datetime(2024, 5, 1, 12, 0, 0, 999_999, tzinfo=UTC)) == 1_714_564_800
    assert utc_of(1_714_564_800) == noon_utc and utc_of(1_714_564_800).tzinfo is UTC
    assert epoch_of(utc_of(1_714_564_801)) == 1_714_564_801
    assert utc_of(0) == datetime(1970, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        epoch_of(datetime(2024, 5, 1))


def test_fingerprints_are_stable_crc32_values_not_pythons_salted_hash() -> None:
    assert fingerprint("123456789") == 0xCBF43926  # the CRC-32 check value
    assert fingerprint("") == 0


# --- the documented worked example ------------------------------------------------------------------------------


def test_stickiness_and_breadth_match_the_worked_example_in_docs_state() -> None:
    s = engagement_summary(state_of(docs_state_example()), date(2024, 5, 31))
    assert (s.last7.active_users, s.last7.breadth, s.last7.sessions) == (3, 3, 12)
    assert s.last7.stickiness == pytest.approx(12 / 7 / 3)  # 0.5714
    assert (s.prev7.active_users, s.prev7.breadth, s.prev7.sessions) == (2, 2, 10)
    assert s.prev7.stickiness == pytest.approx(10 / 7 / 2)  # 0.7143
    assert (s.last30.active_days, s.last30.active_users, s.last30.breadth, s.last30.sessions) == (23, 3, 3, 33)
    assert s.last30.stickiness == pytest.approx(33 / 30 / 3)  # 0.3667
    assert (s.prev30.active_days, s.prev30.active_users, s.prev30.breadth, s.prev30.feature_uses) == (2, 1, 2, 4)
    assert s.prev30.stickiness == pytest.approx(2 / 30 / 1)  # 0.0667
    assert (s.last90.active_days, s.last90.active_users, s.last90.breadth, s.last90.sessions) == (25, 4, 4, 35)
    assert s.last90.stickiness is None  # per-day users are kept for 60 days only


def test_windows_are_inclusive_and_end_on_the_as_of_day() -> None:
    s = engagement_summary(state_of(docs_state_example()), date(2024, 5, 31))
    assert (s.last7.first_day, s.last7.last_day) == (day_index(date(2024, 5, 25)), day_index(date(2024, 5, 31)))
    assert (s.prev7.first_day, s.prev7.last_day) == (day_index(date(2024, 5, 18)), day_index(date(2024, 5, 24)))
    assert (s.prev30.first_day, s.prev30.last_day) == (day_index(date(2024, 4, 2)), day_index(date(2024, 5, 1)))
    assert s.last90.days == 90


def test_a_window_after_the_last_event_counts_only_what_is_inside_it() -> None:
    state = state_of([session(d(5, 1), "ana"), session(d(5, 10), "ben")])
    s = engagement_summary(state, date(2024, 5, 14))  # 4 days after the clock
    assert (s.last7.active_users, s.last7.active_days) == (1, 1)
    assert (s.last30.active_users, s.last30.active_days) == (2, 2)


# --- retention -----------------------------------------------------------------------------------------------


def test_buckets_expire_after_the_ninety_day_horizon() -> None:
    first = session(d(1, 1), "ana")
    kept = state_of([first, session(d(1, 1) + timedelta(days=89), "ben")])
    assert day_index(date(2024, 1, 1)) in kept.engagement.days
    gone = state_of([first, session(d(1, 1) + timedelta(days=90), "ben")])
    assert day_index(date(2024, 1, 1)) not in gone.engagement.days
    assert fingerprint("ana") not in gone.engagement.users  # users go with their last active day
    assert fingerprint("ana") in kept.engagement.users


def test_advance_expires_buckets_without_an_event_and_never_moves_the_clock_back() -> None:
    config = DomainConfig()
    state = state_of([session(d(1, 1), "ana")])
    advance(state, d(4, 1), config)
    assert state.engagement.days == {} and state.engagement.users == {}
    assert state.clock_day == day_index(date(2024, 4, 1))
    advance(state, d(2, 1), config)
    assert state.clock_day == day_index(date(2024, 4, 1))


def test_days_past_sixty_keep_activity_but_not_volumes() -> None:
    evs = [feature(d(1, 1), "reports", "ana", count=40), event("api.called", d(1, 1, 12), count=900),
           session(d(1, 1), "ana"), session(d(3, 10), "ben")]  # Jan 1 is 69 days before Mar 10
    state = state_of(evs)
    assert state.engagement.days[day_index(date(2024, 1, 1))] == [1, 1, 0, 0, 0]
    s = engagement_summary(state, date(2024, 3, 10))
    assert (s.last90.active_days, s.last90.sessions, s.last90.active_users) == (2, 2, 2)
    assert s.last90.feature_uses is None and s.last90.api_calls is None
    assert s.last30.feature_uses == 0


# --- users, features, NPS, tickets, first value ----------------------------------------------------------------


def test_latest_nps_per_user_wins_by_event_time_not_arrival() -> None:
    late_first = [event("nps.responded", d(5, 3), user_id="ana", score=3),
                  event("nps.responded", d(5, 1), user_id="ana", score=10),
                  event("nps.responded", d(5, 2), user_id="ben", score=9)]
    s = engagement_summary(state_of(late_first), date(2024, 5, 3))
    # ana's latest answer is the detractor 3; ben is a promoter: NPS = 50% - 50% = 0
    assert (s.nps, s.nps_responses) == (0.0, 2)


def test_account_without_nps_answers_has_no_nps() -> None:
    s = engagement_summary(state_of([session(d(5, 1))]), date(2024, 5, 1))
    assert (s.nps, s.nps_responses) == (None, 0)


def test_tickets_count_once_per_ticket_and_close_in_any_order() -> None:
    evs = [event("ticket.closed", d(5, 3), ticket_id="T1"), event("ticket.opened", d(5, 1), ticket_id="T1"),
           event("ticket.opened", d(5, 2), ticket_id="T2"), event("ticket.opened", d(5, 2, 10), ticket_id="T2")]
    state = state_of(evs)
    assert state.engagement.open_tickets == 1
    s = engagement_summary(state, date(2024, 5, 3))
    assert s.last7.tickets == 2
    assert state.engagement.days[day_index(date(2024, 5, 1))][TICKETS_OPENED] == 1


def test_key_users_follow_the_latest_add_or_remove() -> None:
    evs = [event("user.added", d(5, 1), user_id="ana", role="admin"),
           event("user.added", d(5, 1), user_id="ben", role="champion"),
           event("user.removed", d(5, 4), user_id="ben", role="champion"),
           event("user.added", d(5, 2), user_id="ben", role="champion"),  # late, older than the removal
           event("user.added", d(5, 2), user_id="cy", role="member")]
    state = state_of(evs)
    assert state.engagement.key_users(DomainConfig().key_roles) == {fingerprint("ana"): "admin"}


def test_time_to_first_value_runs_from_the_trial_start_to_the_first_key_action() -> None:
    config = DomainConfig(key_action_features=frozenset({"invite_sent"}))
    evs = [event("trial.started", d(5, 1, 0), plan="pro"), feature(d(5, 2), "reports"),
           feature(d(5, 4, 12), "invite_sent")]
    state = state_of(evs, config)
    s = engagement_summary(state, date(2024, 5, 4))
    assert s.time_to_first_value_days == 3.5


def test_without_key_action_features_any_feature_use_is_first_value() -> None:
    state = state_of([event("trial.started", d(5, 1, 0), plan="pro"), feature(d(5, 2, 0), "reports")])
    assert engagement_summary(state, date(2024, 5, 2)).time_to_first_value_days == 1.0


def test_api_calls_and_limit_hits_make_days_active_or_not_as_documented() -> None:
    evs = [event("api.called", d(5, 1), count=500),
           event("usage_limit.reached", d(5, 2), limit="api", used=1000, quota=1000)]
    s = engagement_summary(state_of(evs), date(2024, 5, 2))
    assert (s.last7.active_days, s.last7.api_calls, s.last7.limit_hits) == (1, 500, 1)


def test_apply_event_keeps_last_activity_as_the_newest_usage_time() -> None:
    config = DomainConfig()
    state = state_of([session(d(5, 2), "ana")])
    apply_event(state, session(d(5, 1), "ben"), config)
    apply_event(state, event("nps.responded", d(5, 3), user_id="ana", score=9), config)
    assert state.engagement.last_activity_at == d(5, 2)


@settings(max_examples=300, deadline=None)
@given(
    clock=st.integers(20_000, 20_200),
    back=st.one_of(st.just(0), st.integers(-3, 120)),
    days=st.dictionaries(st.integers(0, 130), st.lists(st.integers(0, 5), min_size=5, max_size=5), max_size=40),
    users=st.lists(st.tuples(st.integers(0, 2**60 - 1), st.integers(0, 100)), max_size=12),
    features=st.lists(st.tuples(st.integers(0, 2**60 - 1), st.integers(0, 100)), max_size=12),
)
def test_the_one_pass_summary_windows_equal_five_window_figures_calls(
    clock: int, back: int, days: dict[int, list[int]], users: list[tuple[int, int]],
    features: list[tuple[int, int]],
) -> None:
    eng = Engagement(
        clock_day=clock,
        days={clock - d: b for d, b in days.items()},
        users={i: [bits, clock - ago] for i, (bits, ago) in enumerate(users)},
        features={i: [bits, clock - ago] for i, (bits, ago) in enumerate(features)},
    )
    a = clock - back
    expected = tuple(window_figures(eng, first, last) for first, last in (
        (a - 6, a), (a - 13, a - 7), (a - 29, a), (a - 59, a - 30), (a - 89, a)))
    assert summary_windows(eng, a) == expected


@settings(max_examples=200, deadline=None)
@given(
    days=st.dictionaries(st.integers(0, 130), st.lists(st.integers(0, 5), min_size=5, max_size=5), max_size=40),
    first=st.integers(-10, 140),
    length=st.integers(1, 60),
)
def test_tickets_opened_over_a_window_are_the_tickets_window_figures_counts(
    days: dict[int, list[int]], first: int, length: int
) -> None:
    eng = Engagement(clock_day=130, days=dict(days))
    assert tickets_opened(eng, first, first + length - 1) == window_figures(eng, first, first + length - 1).tickets

