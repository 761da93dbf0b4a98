"""The health timer's schedule: which coalesced health records are due, in what order, and what it forgets."""

from __future__ import annotations

import random

from streams.health_schedule import HealthSchedule, publishes_health_now

INTERVAL_S = 30.0


def schedule_with(published_at: dict[str, float], pending: list[str]) -> HealthSchedule[str]:
    """Accounts published at the given monotonic seconds, then the `pending` ones changed again."""
    schedule: HealthSchedule[str] = HealthSchedule()
    for account_id, at in published_at.items():
        schedule.published(account_id, at)
    for account_id in pending:
        schedule.defer(account_id, f"state of {account_id}")
    return schedule


def test_a_record_is_due_once_its_last_publish_is_an_interval_old() -> None:
    schedule = schedule_with({"acct-old": 0.0, "acct-recent": 20.0}, ["acct-old", "acct-recent"])
    assert schedule.take_due(now=30.0, interval_s=INTERVAL_S, quota=10) == ["acct-old"]


def test_an_account_never_published_is_due_as_if_published_at_time_zero() -> None:
    # Monotonic seconds count from boot, so in practice at once (batches publish new accounts at once anyway).
    schedule = schedule_with({}, ["acct-new"])
    assert schedule.take_due(now=10.0, interval_s=INTERVAL_S, quota=10) == []
    assert schedule.take_due(now=1_000.0, interval_s=INTERVAL_S, quota=10) == ["acct-new"]


def test_the_longest_waiting_go_first_and_the_quota_holds_the_rest() -> None:
    published_at = {"acct-c": 3.0, "acct-a": 1.0, "acct-b": 2.0}
    schedule = schedule_with(published_at, ["acct-c", "acct-a", "acct-b"])
    assert schedule.take_due(now=100.0, interval_s=INTERVAL_S, quota=2) == ["acct-a", "acct-b"]
    schedule.published("acct-a", 100.0)
    schedule.published("acct-b", 100.0)
    assert schedule.take_due(now=101.0, interval_s=INTERVAL_S, quota=2) == ["acct-c"]


def test_a_newer_state_replaces_the_waiting_one_without_a_second_turn() -> None:
    schedule = schedule_with({"acct-1": 0.0}, ["acct-1", "acct-1"])
    schedule.defer("acct-1", "newest state")
    assert schedule.take_due(now=50.0, interval_s=INTERVAL_S, quota=10) == ["acct-1"]
    assert schedule.pending["acct-1"] == "newest state"


def test_an_account_a_batch_published_meanwhile_is_not_due_at_its_old_time() -> None:
    schedule = schedule_with({"acct-1": 0.0}, ["acct-1"])
    schedule.published("acct-1", 40.0)  # an alert transition published it at once
    schedule.defer("acct-1", "changed again")
    assert schedule.take_due(now=50.0, interval_s=INTERVAL_S, quota=10) == []
    assert schedule.take_due(now=70.0, interval_s=INTERVAL_S, quota=10) == ["acct-1"]


def test_accounts_taken_but_not_published_are_due_again_next_tick() -> None:
    schedule = schedule_with({"acct-1": 0.0, "acct-2": 1.0}, ["acct-1", "acct-2"])
    taken = schedule.take_due(now=50.0, interval_s=INTERVAL_S, quota=10)
    schedule.put_back(taken)  # the tick stopped at a rebalance before publishing them
    assert schedule.take_due(now=51.0, interval_s=INTERVAL_S, quota=10) == ["acct-1", "acct-2"]


def test_an_account_put_back_and_changed_again_is_taken_once() -> None:
    schedule = schedule_with({"acct-1": 0.0}, ["acct-1"])
    taken = schedule.take_due(now=50.0, interval_s=INTERVAL_S, quota=10)
    schedule.published("acct-1", 50.0)
    schedule.defer("acct-1", "changed after its publish")
    schedule.put_back(taken)
    assert schedule.take_due(now=90.0, interval_s=INTERVAL_S, quota=10) == ["acct-1"]


def test_clearing_pending_records_keeps_last_publish_times() -> None:
    schedule = schedule_with({"acct-1": 0.0}, ["acct-1"])
    schedule.clear_pending()
    assert len(schedule) == 0
    assert schedule.take_due(now=50.0, interval_s=INTERVAL_S, quota=10) == []
    assert schedule.ever_published("acct-1")


def test_forgetting_publish_times_keeps_those_of_accounts_still_owned() -> None:
    # An owned account without a time would count as never published and be published by its next batch at once.
    schedule = schedule_with({"acct-kept": 10.0, "acct-moved": 20.0, "acct-also-kept": 30.0}, [])
    assert schedule.forget_unowned(lambda account_id: account_id != "acct-moved") == 1
    assert schedule.last_published == {"acct-kept": 10.0, "acct-also-kept": 30.0}


def test_a_forgotten_account_changed_again_is_due_as_never_published() -> None:
    schedule = schedule_with({"acct-moved": 20.0}, ["acct-moved"])
    schedule.forget_unowned(lambda account_id: False)
    assert len(schedule) == 0
    schedule.defer("acct-moved", "moved back")
    assert schedule.take_due(now=1_000.0, interval_s=INTERVAL_S, quota=10) == ["acct-moved"]


def test_due_accounts_are_those_a_full_scan_would_pick_in_the_same_order() -> None:
    # The rule this schedule replaced (ADR 0017): every pending account whose last publish is an interval old,
    # the `quota` longest-waiting of them. Random publishes, changes and ticks must pick the same accounts.
    rng = random.Random(6)
    schedule: HealthSchedule[int] = HealthSchedule()
    now = 0.0
    for step in range(3_000):
        now += rng.uniform(0.0, 0.5)
        account_id = f"acct-{rng.randrange(200)}"
        if rng.random() < 0.2:
            schedule.published(account_id, now)
        else:
            schedule.defer(account_id, step)
        if step % 25 == 0:
            quota = rng.randrange(1, 30)
            last = schedule.last_published
            scan = sorted((a for a in schedule.pending if now - last.get(a, 0.0) >= INTERVAL_S),
                          key=lambda a: (last.get(a, 0.0), a))[:quota]
            taken = schedule.take_due(now, INTERVAL_S, quota)
            assert taken == scan
            for a in taken:
                schedule.published(a, now)


def test_a_new_alert_transition_publishes_the_health_record_at_once() -> None:
    assert publishes_health_now(alert_transition=True, cohort_changed=False, ever_published=True)


def test_a_cohort_change_publishes_the_health_record_at_once() -> None:
    assert publishes_health_now(alert_transition=False, cohort_changed=True, ever_published=True)


def test_an_account_never_published_publishes_at_once() -> None:
    assert publishes_health_now(alert_transition=False, cohort_changed=False, ever_published=False)


def test_any_other_change_waits_for_the_paced_health_timer_even_when_due() -> None:
    # Due or not, the timer publishes it: accounts that come due together are spread by its quota (ADR 0017).
    assert not publishes_health_now(alert_transition=False, cohort_changed=False, ever_published=True)


def test_a_batch_routes_alerted_cohort_changed_and_new_accounts_now_and_defers_the_rest() -> None:
    schedule = schedule_with({"acct-alerted": 1.0, "acct-cohort": 1.0, "acct-quiet": 1.0}, [])
    changed = {name: f"state of {name}" for name in ("acct-quiet", "acct-new", "acct-alerted", "acct-cohort")}
    now = schedule.route(changed, alerted={"acct-alerted"}, cohort_changed=frozenset({"acct-cohort"}))
    assert now == ["acct-new", "acct-alerted", "acct-cohort"]  # the batch's order
    assert schedule.pending == {"acct-quiet": "state of acct-quiet"}
    assert schedule.take_due(now=100.0, interval_s=INTERVAL_S, quota=10) == ["acct-quiet"]


def test_a_deferred_account_changed_again_keeps_only_its_newest_value() -> None:
    schedule = schedule_with({"acct-1": 1.0}, [])
    schedule.route({"acct-1": "first"}, alerted=set(), cohort_changed=frozenset())
    schedule.route({"acct-1": "second"}, alerted=set(), cohort_changed=frozenset())
    assert schedule.pending == {"acct-1": "second"}
    assert schedule.take_due(now=100.0, interval_s=INTERVAL_S, quota=10) == ["acct-1"]
