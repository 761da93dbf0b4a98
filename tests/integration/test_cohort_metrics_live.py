"""Through the real broker and workers: every monthly company figure and cohort cell equals a batch computation, and
with two workers no month's portfolio alerts go out before every usage partition has passed it (ADR 0025)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from schemas.events import BILLING_TYPES
from streams.partitioning import expected_partition
from streams.replay import replay_lines
from streams.tools.produce import produce_lines
from tests.support.batch_metrics import compute_batch
from tests.support.live_stream import metric_samples, processed_count, read_alerts
from tests.support.stack_fixtures import WorkerProc
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


def assignment(workers: list[WorkerProc]) -> dict[str, dict[str, list[int]]] | None:
    """Faust's own routing view (/router/): worker URL -> table changelog -> its active partitions, once every
    worker is ready and all of them agree on it."""
    views = []
    for w in workers:
        ready = fetch(f"{w.base_url}/ready")
        view = fetch(f"{w.base_url}/router/")
        if not ready or not ready.get("ready") or not view:
            return None
        views.append({url: {t.rsplit("-", 2)[-2]: sorted(ps) for t, ps in tables.items()}
                      for url, tables in view.items()})
    if any(v != views[0] for v in views) or set(views[0]) != {w.base_url for w in workers}:
        return None
    return views[0]


def settled_count(workers: list[WorkerProc], quiet_s: float = 3.0, timeout_s: float = 90) -> float:
    """Events the workers processed, once that stopped growing for `quiet_s` (held billing is counted later)."""
    deadline = time.monotonic() + timeout_s
    last, since = -1.0, time.monotonic()
    while time.monotonic() < deadline:
        n = sum(processed_count(w.base_url) for w in workers)
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        time.sleep(0.5)
    return last


def without_send_time(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in {"emitted_at", "produced_at"}}


def portfolio_records(settings: Any) -> dict[str, list[dict[str, Any]]]:
    """Portfolio alert records on the alerts topic by record id, without the time they were sent."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in read_alerts(settings, idle_ms=1000):
        if r["account_id"] == "portfolio":
            body = without_send_time(r)
            if body not in out.setdefault(r["record_id"], []):
                out[r["record_id"]].append(body)
    return out


def test_with_two_workers_no_month_is_final_before_every_usage_partition_has_passed_it(run_env,
                                                                                       worker_factory) -> None:
    """ADR 0025. The worker owning the cohort partition runs through the year on its own usage partitions while one
    of the other worker's partitions is two months into it: the owner publishes portfolio alerts only for months
    every partition has passed, so each record equals the replay's of the whole input, then and later."""
    world = generate_world(seed=20240601, accounts=150, months=13)
    arrival = deliver_within_lateness(world.events, timedelta(days=5), seed=2)
    lines = [e.model_dump_json().encode() for e in arrival]
    replayed = replay_lines(lines)
    assert replayed.portfolio is not None
    expected = {r.record_id: without_send_time(orjson.loads(r.model_dump_json()))
                for r in replayed.alerts if r.account_id == "portfolio"}
    assert len(expected) >= 10, "the world must cross portfolio thresholds in many months"

    settings = run_env.settings()
    # Partitions never count as idle here (600 s): an idle partition follows the worker's highest watermark (ADR
    # 0004), and so does its front; the partition behind must stay behind until the rest of it is produced.
    env = {"CHURNWATCH_COHORT_REFRESH_S": "1", "CHURNWATCH_ALERT_TICK_S": "0.5", "CHURNWATCH_IDLE_PARTITION_S": "600"}
    workers = [worker_factory("w1", extra_env=env), worker_factory("w2", extra_env=env)]
    deadline = time.monotonic() + 90
    while (routes := assignment(workers)) is None and time.monotonic() < deadline:
        time.sleep(1)
    assert routes is not None, "the two workers never agreed on an assignment"
    owner = next(url for url, t in routes.items() if t["account_to_cohort_inputs"] == [0])
    other = next(url for url in routes if url != owner)
    behind = routes[other]["account_to_state"][0]  # a usage partition of the worker that does not own the cohorts

    def partition(line: bytes) -> int:
        return expected_partition(orjson.loads(line)["account_id"].encode(), settings.topic_partitions)

    def billing_then_usage(part: list[bytes]) -> None:
        """A year of events produced in a second: billing first, so usage never passes billing that is merely
        not produced yet (ADR 0009 lets usage through once its billing partition is read to its end)."""
        produce_lines(settings, [ln for ln in part if orjson.loads(ln)["type"] in BILLING_TYPES])
        produce_lines(settings, [ln for ln in part if orjson.loads(ln)["type"] not in BILLING_TYPES])

    # The partition behind gets its lines (in arrival order) up to the first one dated two months into the world.
    cut_at = (min(e.occurred_at for e in arrival) + timedelta(days=60)).isoformat()
    behind_lines = [ln for ln in lines if partition(ln) == behind]
    cut = next(i for i, ln in enumerate(behind_lines) if orjson.loads(ln)["occurred_at"] >= cut_at[:19])
    first = [ln for ln in lines if partition(ln) != behind] + behind_lines[:cut]
    rest = behind_lines[cut:]
    assert any(orjson.loads(ln)["type"] not in BILLING_TYPES for ln in behind_lines[:cut]), "no usage before the cut"
    billing_then_usage(first)
    settled_count(workers)
    time.sleep(3)  # several ticks (0.5 s) and portfolio refreshes (1 s) after the owner read its partitions
    early = portfolio_records(settings)
    # What an operator sees on the owner: the partition behind holds the portfolio front, two months into the year.
    fronts = metric_samples(owner, "churnwatch_usage_front_timestamp_seconds")  # Faust's route URL is the base URL
    held_at = metric_samples(owner, "churnwatch_portfolio_front_timestamp_seconds")[""]
    assert min(fronts, key=lambda p: fronts[p]) == f'partition="{behind}"', fronts
    assert 0 < held_at == fronts[f'partition="{behind}"'] < datetime.fromisoformat(cut_at).timestamp()

    billing_then_usage(rest)
    settled_count(workers)
    deadline = time.monotonic() + 60
    published = portfolio_records(settings)
    while time.monotonic() < deadline:  # months become final as the partition behind passes them
        time.sleep(3)
        latest = portfolio_records(settings)
        if latest == published and len(published) > len(early):
            break
        published = latest

    def differing(records: dict[str, list[dict[str, Any]]]) -> list[Any]:
        return [(rid, [b["evidence"]["detail"] for b in bodies], (expected.get(rid) or {}).get("evidence"))
                for rid, bodies in records.items() if bodies != [expected.get(rid)]]

    assert not differing(early), (f"published while usage partition {behind} was two months into the year, "
                                  f"{len(differing(early))} of {len(early)} differ from replay: {differing(early)}")
    assert len(published) > len(early), "no further month became final once every usage partition was read"
    if differing(published):  # published too early, or figures that differ even at the end?
        company = fetch(f"{workers[0].base_url}/portfolio/company")
        final = "equal" if company == replayed.portfolio.months_json() else "differ"
        pytest.fail(f"{len(differing(published))} of {len(published)} portfolio records differ from replay (the "
                    f"final company figures {final}): {differing(published)}")
    print(f"[two workers] {len(first)} events ({cut} of usage partition {behind}, to {cut_at[:10]}): "
          f"{len(early)} portfolio records; then its other {len(rest)}: {len(published)} records, each equal to "
          f"the replay's ({len(expected)} in all)")
