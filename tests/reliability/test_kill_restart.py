"""On the real broker: a worker SIGKILLed at random points, or one of two workers killed, ends equal to the replay.

Kills start as soon as records flow, before the group's first commit: the window ADR 0007 closed.
Equality is on what readers see: every account's health record (HTTP GET /accounts/{id}) equals
`to_read_model` of the in-process replay's state for the same input, and /portfolio/company equals the
replay's portfolio. The account-health and churn-alerts topics are audited by the independent verifier.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from tests.reliability.streams_under_test import (
    WORKER_ENV,
    Expected,
    Producer,
    assert_equal_to_replay,
    audit_outputs,
    gate_counts,
    make_stream,
    states_written,
    wait_for_states_written,
)
from tests.support.live_stream import metric_samples, wait_until
from tests.support.stack_fixtures import RunEnv, WorkerProc, start_worker, wait_for_http

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_sigkilled_worker_restarts_and_ends_equal_to_replay(run_env: RunEnv, soak: bool, store: str,
                                                          summary: dict[str, Any]) -> None:
    # rocksdb://: each restart opens the same data directory the killed process wrote, with whatever it held at
    # the kill (puts whose changelog records never left, and persisted changelog offsets), and reads only the
    # changelog past those offsets; states ahead of the group's committed offsets skip re-read records by offset.
    seed = 1010
    rng = random.Random(seed)
    kills_wanted = 12 if soak else 5
    lines = make_stream(seed, accounts=100, usage_events=20_000 if soak else 3_500)
    expected = Expected.of(lines)
    summary["events_produced"] += len(lines)
    settings = run_env.settings()
    env = {**WORKER_ENV, "CHURNWATCH_STORE": store}
    workers: list[WorkerProc] = []
    recoveries: list[float] = []
    written_at_kill: list[int] = []  # account-state changelog records when each kill landed
    kills = 0
    try:
        w = start_worker(run_env, "w1", extra_env=env)
        workers.append(w)
        producer = Producer(settings, lines, rate=len(lines) / (90 if soak else 25)).start()
        time.sleep(1)  # every input partition has records by now, and none of them a committed offset yet
        while kills < kills_wanted or producer.running:
            time.sleep(rng.uniform(0.3, 3.0))
            if kills == kills_wanted // 2:  # at least this kill lands after the process wrote states back
                wait_for_states_written(run_env, written_at_kill[-1], 60)
            written_at_kill.append(states_written(run_env))
            w.stop(9)  # SIGKILL: no commit, no flush, no changelog write-back
            kills += 1
            summary["kills"] += 1
            started = time.monotonic()
            w = start_worker(run_env, "w1", extra_env=env, wait_ready=False)
            workers.append(w)
            if rng.random() < 0.25 and kills < kills_wanted:
                time.sleep(rng.uniform(0.5, 2.0))
                continue  # the next kill lands during startup / changelog recovery
            assert wait_for_http(f"{w.base_url}/ready", 90, w.proc), f"not ready after kill {kills}:\n" \
                f"{w.log()[-3000:]}"
            recoveries.append(time.monotonic() - started)
            summary["recovery_s"].append(recoveries[-1])
        producer.join()
        assert wait_for_http(f"{w.base_url}/ready", 90, w.proc)
        converge = assert_equal_to_replay(w.base_url, expected, 90, w.log(), settings, lines)
        gate = gate_counts(w.base_url, summary)
        outputs = audit_outputs(run_env, expected, summary, gate)
    finally:
        for p in workers:
            p.stop()
    summary["events_verified"] += expected.replay.inputs
    print(f"[kill {store}] {len(lines)} events, {len(expected.accounts)} accounts, {kills} SIGKILLs (state "
          f"changelog records at each: {written_at_kill}), recovery "
          f"(restart -> /ready) {[round(r, 1) for r in recoveries]} s, converged {converge:.1f}s after the "
          f"last restart; {outputs}; usage gate of the last process {gate}")


def test_one_of_two_workers_sigkilled_the_other_takes_over(run_env: RunEnv, soak: bool,
                                                          summary: dict[str, Any]) -> None:
    seed = 3030
    lines = make_stream(seed, accounts=100, usage_events=8_000 if soak else 2_500)
    expected = Expected.of(lines)
    summary["events_produced"] += len(lines)
    settings = run_env.settings()
    env = {**WORKER_ENV, "CHURNWATCH_STANDBY_REPLICAS": "1"}
    w1 = start_worker(run_env, "w1", extra_env=env)
    w2 = start_worker(run_env, "w2", extra_env=env)
    try:
        assert wait_for_http(f"{w1.base_url}/ready", 90, w1.proc) and wait_for_http(f"{w2.base_url}/ready", 90)
        half = len(lines) // 2
        Producer(settings, lines[:half], rate=0).start().join()
        # w2 has written states back before it dies, so w1 takes over partitions with states in the changelog (its
        # standby's copy) and records past the committed offsets, not only records to re-read from the start.
        assert wait_until(lambda: metric_samples(w2.base_url, "churnwatch_state_flush_accounts_total").get("", 0.0) > 0,
                          60), "w2 wrote no state back in 60 s"
        w2.stop(9)
        killed = time.monotonic()
        summary["failovers"] += 1
        summary["kills"] += 1
        Producer(settings, lines[half:], rate=0).start().join()
        assert wait_for_http(f"{w1.base_url}/ready", 90, w1.proc), w1.log()[-3000:]
        converge = assert_equal_to_replay(w1.base_url, expected, 90, w1.log(), settings, lines, w1.proc.pid)
        failover_s = time.monotonic() - killed
        gate = gate_counts(w1.base_url, summary)
        outputs = audit_outputs(run_env, expected, summary, gate)
    finally:
        w1.stop()
        w2.stop()
    summary["events_verified"] += expected.replay.inputs
    summary["recovery_s"].append(failover_s)
    print(f"[failover] {len(lines)} events, w2 SIGKILLed after half; w1 served every account equal to replay "
          f"{failover_s:.1f}s after the kill (converged {converge:.1f}s); {outputs}; usage gate of w1 {gate}")
