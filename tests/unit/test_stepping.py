"""Steps: work over many items a bounded step at a time."""

from __future__ import annotations

import pytest

from streams.stepping import Pacer, Steps, pause_after_step


class FakeClock:
    """Advances by `per_call` seconds every time it is read: each item's work 'takes' one read."""

    def __init__(self, per_call: float) -> None:
        self.now = 0.0
        self.per_call = per_call

    def __call__(self) -> float:
        self.now += self.per_call
        return self.now


def test_every_item_is_handed_out_once_in_order_across_steps() -> None:
    steps = Steps(list(range(10)), step_s=0.003, clock=FakeClock(0.001))
    seen = []
    while steps.left:
        seen.append(list(steps.step()))
    assert [x for step in seen for x in step] == list(range(10))
    assert all(step for step in seen) and len(seen) > 1


def test_a_step_ends_once_its_work_took_step_s() -> None:
    steps = Steps(list(range(10)), step_s=0.003, clock=FakeClock(0.001))
    assert list(steps.step()) == [0, 1, 2]


def test_a_step_hands_out_at_least_one_item_however_slow_the_work() -> None:
    steps = Steps(["a", "b"], step_s=0.001, clock=FakeClock(10.0))
    assert list(steps.step()) == ["a"]
    assert list(steps.step()) == ["b"]
    assert not steps.left


def test_an_empty_sequence_has_no_steps() -> None:
    steps: Steps[int] = Steps([], step_s=1.0)
    assert not steps.left
    assert list(steps.step()) == []


def test_a_step_abandoned_midway_resumes_after_the_last_item_handed_out() -> None:
    steps = Steps(list(range(5)), step_s=100.0, clock=FakeClock(0.001))
    for item in steps.step():
        if item == 1:
            break
    assert list(steps.step()) == [2, 3, 4]


def test_a_step_is_followed_by_a_pause_that_leaves_batches_the_rest_of_the_loop() -> None:
    # 20 ms of work at a quarter of the loop: 60 ms for batches before the next step.
    assert pause_after_step(0.020, duty=0.25, elapsed_s=1.0, budget_s=5.0) == pytest.approx(0.060)


def test_steps_run_back_to_back_once_the_work_has_used_its_time_budget() -> None:
    assert pause_after_step(0.020, duty=0.25, elapsed_s=5.0, budget_s=5.0) == 0.0


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
