"""Through the real broker and worker: every monthly company figure and cohort cell equals a batch computation."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

import orjson
import pytest

from streams.replay import replay_lines
from streams.tools.produce import produce_lines
from tests.support.batch_metrics import compute_batch
from tests.support.worlds import deliver_within_lateness, generate_world

pytestmark = pytest.mark.integration


def same(ours: Any, theirs: Any) -> bool:
    if isinstance(ours, float) or isinstance(theirs, float):
        return ours is not None and theirs is not None and abs(ours - theirs) <= 1e-12
    if isinstance(ours, dict):
        return ours.keys() == theirs.keys() and all(same(ours[k], theirs[k]) for k in ours)
    return ours == theirs


def fetch(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return orjson.loads(resp.read())
    except urllib.error.HTTPError:
        return None


def test_live_company_and_cohort_metrics_equal_the_batch_computation_and_replay(run_env, worker_factory) -> None:
    world = generate_world(seed=20240601, accounts=150, months=13)
    arrival = deliver_within_lateness(world.events, timedelta(days=5), seed=2)
    lines = [e.model_dump_json().encode() for e in arrival]
    settings = run_env.settings()
    # Idle after 3 s: billing dated after the last usage is then applied (ADR 0006), as replay does at the end.
    worker = worker_factory("w1", extra_env={"CHURNWATCH_COHORT_REFRESH_S": "1", "CHURNWATCH_IDLE_PARTITION_S": "3"})
    produce_lines(settings, lines)

    replayed = replay_lines(lines)
    assert replayed.portfolio is not None
    expected_months = replayed.portfolio.months_json()
    expected_cells = replayed.portfolio.cells_json()

    deadline = time.monotonic() + 120
    live_months: Any = None
    while time.monotonic() < deadline:
        live_months = fetch(f"{worker.base_url}/portfolio/company")
        if live_months == expected_months:
            break
        time.sleep(1)
    if live_months != expected_months:
        diffs = [
            (e["month"], e.get("segment"), {k: (live.get(k), v) for k, v in e.items() if live.get(k) != v})
            for live, e in zip(live_months or [], expected_months, strict=False)
            if live != e
        ]
        with urllib.request.urlopen(f"{worker.base_url}/metrics", timeout=5) as resp:
            counters = [ln for ln in resp.read().decode().splitlines() if ln.startswith(("churnwatch_events_total", "churnwatch_dead"))]
        missing = []
        for acc in sorted(replayed.states):
            live_acc = fetch(f"{worker.base_url}/accounts/{acc}")
            if live_acc is None or live_acc.get("mrr") != replayed.states[acc].state.mrr:
                missing.append((acc, live_acc and live_acc.get("mrr"), replayed.states[acc].state.mrr))
        pytest.fail(f"live != replay in {len(diffs)} rows; first: {diffs[:1]}; counters {counters}; "
                    f"accounts differing {len(missing)}: {missing[:5]}")
    live_cells = fetch(f"{worker.base_url}/portfolio/cohorts")
    assert live_cells == expected_cells

    batch = compute_batch(world.events, first_month=world.first_month, last_month=world.last_month)
    overall = [m for m in live_months if m["segment"] is None]
    assert {m["month"] for m in overall} == {month for (seg, month) in batch.months if seg is None}
    for m in overall:
        exp = batch.months[(None, m["month"])]
        bad = {k: (v, exp.get(k)) for k, v in m.items() if k in exp and not same(v, exp[k])}
        assert not bad, f"{m['month']}: {bad}"
    cells = [c for c in live_cells if c["segment"] is None]
    assert {(c["cohort"], c["age"]) for c in cells} == {(co, age) for (seg, co, age) in batch.cells if seg is None}
    for c in cells:
        exp = batch.cells[(None, c["cohort"], c["age"])]
        bad = {k: (v, exp.get(k)) for k, v in c.items() if k in exp and not same(v, exp[k])}
        assert not bad, f"{c['cohort']}+{c['age']}: {bad}"
    print(f"[cohorts] {len(lines)} events through Kafka: {len(overall)} company months and {len(cells)} cohort "
          "cells equal the independent batch computation and the in-process replay")
