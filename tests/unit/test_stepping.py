"""Steps: work over many items a bounded step at a time."""

from __future__ import annotations

import pytest

from streams.stepping import (
    SLACK_BUSY_SHARE,
    SLACK_STEP_MIN_S,
    SLACK_STEP_SHARE,
    SPREAD_TARGET,
    BusyShare,
    Pacer,
    Steps,
    background_step_s,
    pause_after_step,
)


class FakeClock:
    """Advances by `per_call` seconds every time it is read: each item's work 'takes' one read."""

    def __init__(self, per_call: float) -> None:
        self.now = 0.0
        self.per_call = per_call

    def __call__(self) -> float:
        self.now += self.per_call
        return self.now


def test_every_item_is_handed_out_once_in_order_across_steps() -> None:
    steps = Steps(list(range(10)), step_s=lambda: 0.003, clock=FakeClock(0.001))
    seen = []
    while steps.left:
        seen.append(list(steps.step()))
    assert [x for step in seen for x in step] == list(range(10))
    assert all(step for step in seen) and len(seen) > 1


def test_a_step_ends_once_its_work_took_step_s() -> None:
    steps = Steps(list(range(10)), step_s=lambda: 0.003, clock=FakeClock(0.001))
    assert list(steps.step()) == [0, 1, 2]


def test_each_step_asks_for_its_own_length() -> None:
    lengths = iter([0.0025, 0.010])
    steps = Steps(list(range(100)), step_s=lambda: next(lengths), clock=FakeClock(0.001))
    assert len(list(steps.step())) == 3
    assert len(list(steps.step())) == 10


def test_a_step_hands_out_at_least_one_item_however_slow_the_work() -> None:
    steps = Steps(["a", "b"], step_s=lambda: 0.001, clock=FakeClock(10.0))
    assert list(steps.step()) == ["a"]
    assert list(steps.step()) == ["b"]
    assert not steps.left


def test_an_empty_sequence_has_no_steps() -> None:
    steps: Steps[int] = Steps([], step_s=lambda: 1.0)
    assert not steps.left
    assert list(steps.step()) == []


def test_a_step_abandoned_midway_resumes_after_the_last_item_handed_out() -> None:
    steps = Steps(list(range(5)), step_s=lambda: 100.0, clock=FakeClock(0.001))
    for item in steps.step():
        if item == 1:
            break
    assert list(steps.step()) == [2, 3, 4]


def test_a_step_is_followed_by_a_pause_that_leaves_batches_the_rest_of_the_loop() -> None:
    # 20 ms of work at a quarter of the loop: 60 ms for batches before the next step.
    assert pause_after_step(0.020, duty=0.25, elapsed_s=1.0, budget_s=5.0) == pytest.approx(0.060)


def test_steps_run_back_to_back_once_the_work_has_used_its_time_budget() -> None:
    assert pause_after_step(0.020, duty=0.25, elapsed_s=5.0, budget_s=5.0) == 0.0


def test_work_that_fits_its_duty_keeps_the_duty_s_pause() -> None:
    # 100 items took 20 ms; 100 left need ~20 ms more, far below a quarter of the 4 s left before the target.
    assert pause_after_step(0.020, duty=0.25, elapsed_s=0.0, budget_s=5.0, work_s=0.020, done=100,
                            left=100) == pytest.approx(0.060)


def test_work_that_needs_more_than_its_duty_is_spread_to_end_by_the_target_share_of_its_budget() -> None:
    # A flush of 5,000 states at ~0.17 ms each (0.85 s of work), 20-ms steps: at a duty of 0.1 it would not end
    # within its 5-s budget and would run its last steps back to back. After the first step (118 states), the
    # 4,882 left need ~0.83 s within the 4 s before the target: a duty of ~0.21, so ~76 ms between steps.
    pause = pause_after_step(0.020, duty=0.1, elapsed_s=0.0, budget_s=5.0, work_s=0.020, done=118, left=4882)
    duty = 0.020 / (0.020 + pause)
    assert duty == pytest.approx(0.020 * 4882 / 118 / (SPREAD_TARGET * 5.0))
    assert 0.1 < duty < 0.25


def test_spread_work_ends_by_its_target_when_its_pace_holds() -> None:
    # Simulated: every 20-ms step writes the same number of items, and each pause lasts as asked.
    work_per_item, items, budget = 0.00017, 5000, 5.0
    per_step = int(0.020 / work_per_item)
    elapsed, done = 0.0, 0
    while done < items:
        step = min(per_step, items - done)
        done += step
        elapsed += step * work_per_item
        if done < items:
            elapsed += pause_after_step(step * work_per_item, duty=0.1, elapsed_s=elapsed, budget_s=budget,
                                        work_s=done * work_per_item, done=done, left=items - done)
    assert SPREAD_TARGET * budget * 0.9 < elapsed <= SPREAD_TARGET * budget + 0.020  # plus about its last step


def test_spread_work_past_its_target_takes_what_is_left_of_the_budget() -> None:
    # At 4.5 s of a 5-s budget, 0.1 s of work left: a duty of 0.2 (0.5 s left), not back to back.
    pause = pause_after_step(0.020, duty=0.1, elapsed_s=4.5, budget_s=5.0, work_s=0.9, done=900, left=100)
    assert pause == pytest.approx(0.080)


def test_a_duty_of_one_never_pauses() -> None:
    assert pause_after_step(0.020, duty=1.0, elapsed_s=0.0, budget_s=5.0) == 0.0


def test_a_pacer_sleeps_once_the_work_since_its_last_sleep_took_a_step() -> None:
    slept: list[float] = []
    pace = Pacer(duty=0.25, step_s=0.005, clock=FakeClock(0.003), sleep=slept.append)
    pace()  # 3 ms of work since the pacer began: not yet a step
    assert slept == []
    pace()  # 6 ms: a step, then three times as long for the event loop
    assert slept == [pytest.approx(0.018)]


def test_a_pacer_at_a_duty_of_one_never_sleeps() -> None:
    slept: list[float] = []
    pace = Pacer(duty=1.0, step_s=0.001, clock=FakeClock(0.01), sleep=slept.append)
    for _ in range(5):
        pace()
    assert slept == []


def busy_share_after(batches: list[tuple[float, float]], now: float) -> float:
    """BusyShare of batches given as (seconds, ending at monotonic second), read at `now`."""
    busy = BusyShare(window_s=1.0)
    for seconds, at in batches:
        busy.add(seconds, at)
    return busy.share(now)


def test_a_worker_that_spent_most_of_the_last_second_in_batches_is_busy() -> None:
    share = busy_share_after([(0.01, 100.0 + i / 100) for i in range(60)], now=100.99)
    assert share == pytest.approx(0.6 / 1.99)  # the previous window was empty: 0.6 s over ~2 s
    share = busy_share_after([(0.01, 100.0 + i / 100) for i in range(200)], now=101.99)
    assert share == 1.0  # 2 s of batches over 1.99 s of windows, capped


def test_busy_time_stops_counting_once_two_windows_passed_without_batches() -> None:
    batches = [(0.05, 100.0 + i / 10) for i in range(10)]
    assert busy_share_after(batches, now=100.95) > 0.2
    assert busy_share_after(batches, now=101.5) == pytest.approx(0.5 / 1.5)  # last window, half a window on
    assert busy_share_after(batches, now=102.1) == 0.0  # a window went by with nothing


def test_a_busy_worker_works_in_background_in_full_steps_and_one_with_slack_in_short_ones() -> None:
    assert background_step_s(0.02, SLACK_BUSY_SHARE) == 0.02
    assert background_step_s(0.02, 0.9) == 0.02
    assert background_step_s(0.02, SLACK_BUSY_SHARE - 0.01) == pytest.approx(0.02 * SLACK_STEP_SHARE)
    assert background_step_s(0.02, 0.0) == pytest.approx(0.005)


def test_a_short_step_is_never_below_a_millisecond_nor_above_the_setting() -> None:
    assert background_step_s(0.002, 0.0) == SLACK_STEP_MIN_S == 0.001  # not 0.5 ms: a round trip per step
    assert background_step_s(0.0005, 0.0) == 0.0005  # a setting below the floor is kept
