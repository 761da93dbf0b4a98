"""The garbage-collector settings of the hot loops (ADR 0013)."""

from __future__ import annotations

import gc

import pytest

from streams.gc_tuning import GEN0_THRESHOLD, tuned_gc
from streams.settings import Settings


def test_tuned_gc_raises_the_young_threshold_and_freezes_startup_objects_for_the_block() -> None:
    before = gc.get_threshold()
    with tuned_gc(50_000):
        assert gc.get_threshold() == (50_000, before[1], before[2])
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_zero_threshold_leaves_the_collector_as_it_is() -> None:
    before = gc.get_threshold()
    with tuned_gc(0):
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_the_worker_setting_defaults_to_the_replay_threshold_and_reads_its_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().gc_gen0_threshold == GEN0_THRESHOLD
    monkeypatch.setenv("CHURNWATCH_GC_GEN0_THRESHOLD", "0")
    assert Settings().gc_gen0_threshold == 0
