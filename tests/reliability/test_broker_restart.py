"""On the real broker: the broker stopped and started again mid-stream loses nothing (equal to the replay)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from streams import stack
from tests.reliability.streams_under_test import (
    WORKER_ENV,
    Expected,
    Producer,
    assert_equal_to_replay,
    audit_outputs,
    gate_counts,
    make_stream,
)
from tests.support.stack_fixtures import RunEnv, start_worker, wait_for_http

pytestmark = pytest.mark.reliability


def test_broker_restart_mid_stream_loses_nothing(local_stack: stack.StackConfig, run_env: RunEnv,
                                                 soak: bool, summary: dict[str, Any]) -> None:
    seed = 2020
    lines = make_stream(seed, accounts=100, usage_events=8_000 if soak else 2_500)
    expected = Expected.of(lines)
    summary["events_produced"] += len(lines)
    settings = run_env.settings()
    # The input stops while the broker is down (20-40 s here); a worker must not take that for the end of its input
    # and apply held billing early (ADR 0006): the idle allowance is longer than the outage.
    w = start_worker(run_env, "w1", extra_env={**WORKER_ENV, "CHURNWATCH_IDLE_PARTITION_S": "60"})
    restarts = 0
    try:
        # The soak's three restarts keep the broker away for longer than the producer's default minute after its
        # last send: it waits as long as the join below does.
        producer = Producer(settings, lines, rate=len(lines) / 20, flush_timeout_s=170).start()
        for _ in range(3 if soak else 1):
            time.sleep(4)
            stack._stop(local_stack.run_dir / "kafka.pid", "kafka.Kafka", "kafka", 30)
            time.sleep(2)
            stack.start_kafka(local_stack)  # same data dir: the log survives the restart
            restarts += 1
            summary["broker_restarts"] += 1
        producer.join(180)
        assert w.proc.poll() is None, f"worker exited during the broker restart:\n{w.log()[-3000:]}"
        assert wait_for_http(f"{w.base_url}/ready", 120, w.proc), w.log()[-3000:]
        # 60 s of idleness, then a lag measurement (every 10 s), before billing dated after the last usage applies.
        converge = assert_equal_to_replay(w.base_url, expected, 150, w.log(), settings, lines)
        gate = gate_counts(w.base_url, summary)
        outputs = audit_outputs(run_env, expected, summary, gate)
    finally:
        w.stop()
    summary["events_verified"] += expected.replay.inputs
    print(f"[broker] {len(lines)} events, {restarts} broker restart(s) mid-stream; converged in {converge:.1f}s; "
          f"{outputs}; usage gate {gate}")
