"""Still failing (tests/reliability/pending/README.md, ADR 0007): a failed-over group vs the replay."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.reliability.streams_under_test import (
    WORKER_ENV,
    Expected,
    Producer,
    assert_equal_to_replay,
    audit_outputs,
    make_stream,
    wait_group_committed,
)
from tests.support.stack_fixtures import RunEnv, start_worker, wait_for_http

pytestmark = pytest.mark.reliability


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
        wait_group_committed(settings)  # past the never-committed window (ADR 0007)
        w2.stop(9)
        killed = time.monotonic()
        summary["failovers"] += 1
        summary["kills"] += 1
        Producer(settings, lines[half:], rate=0).start().join()
        assert wait_for_http(f"{w1.base_url}/ready", 90, w1.proc), w1.log()[-3000:]
        converge = assert_equal_to_replay(w1.base_url, expected, 90, w1.log(), settings, lines, w1.proc.pid)
        failover_s = time.monotonic() - killed
        outputs = audit_outputs(run_env, expected, summary)
    finally:
        w1.stop()
        w2.stop()
    summary["events_verified"] += expected.replay.inputs
    summary["recovery_s"].append(failover_s)
    print(f"[failover] {len(lines)} events, w2 SIGKILLed after half; w1 served every account equal to replay "
          f"{failover_s:.1f}s after the kill (converged {converge:.1f}s); {outputs}")
