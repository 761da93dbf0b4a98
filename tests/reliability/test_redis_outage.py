"""On the real broker and Redis: Redis stops mid-stream; the read model converges to the tables once it is back."""

from __future__ import annotations

import time
import urllib.request
from typing import Any

import orjson
import pytest
import redis

from streams import stack
from streams.tools.produce import produce_lines
from tests.integration.test_read_model import events_for
from tests.support.live_stream import metric_samples

pytestmark = pytest.mark.reliability


def test_the_read_model_converges_to_the_tables_after_a_redis_outage(run_env, worker_factory, local_stack,
                                                                    summary: dict[str, Any]) -> None:
    settings = run_env.settings()
    accounts = [f"acct-{i:03d}" for i in range(300)]
    worker = worker_factory("w1", extra_env={"CHURNWATCH_PUBLISH_INTERVAL_S": "5"})  # the sink meets the outage soon
    produce_lines(settings, events_for(accounts, 0, 4))
    summary["events_produced"] += len(accounts) * 12  # 4 events per account before the outage, 8 during it

    # Redis goes away mid-stream; the worker keeps consuming and counts its retries. Health records are
    # coalesced (CHURNWATCH_PUBLISH_INTERVAL_S), so wait for the sink's next write to meet the dead Redis.
    stack._stop(local_stack.run_dir / "redis.pid", "redis-server", "redis", 10)
    summary["redis_outages"] += 1
    try:
        produce_lines(settings, events_for(accounts, 4, 8))
        retries = 0.0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            retries = metric_samples(worker.base_url, "churnwatch_redis_sink_retries_total").get("", 0.0)
            if retries > 0:
                break
            time.sleep(0.5)
        assert retries > 0, "the sink did not notice the outage"
    finally:
        stack.start_redis(local_stack)  # never leave the shared test stack without Redis

    r = redis.Redis.from_url(settings.redis_url.get_secret_value())
    prefix = settings.redis_key_prefix
    deadline = time.monotonic() + 90
    mismatched: list[str] = accounts
    while time.monotonic() < deadline and mismatched:
        mismatched = []
        for a in accounts:
            cached = r.get(f"{prefix}account:{a}")
            if cached is None:
                mismatched.append(a)
                continue
            with urllib.request.urlopen(f"{worker.base_url}/accounts/{a}", timeout=5) as resp:
                live = orjson.loads(resp.read())
            if orjson.loads(cached) != live or live["engagement"]["last7"]["sessions"] == 0:
                mismatched.append(a)
        if mismatched:
            time.sleep(1)
    assert mismatched == [], f"{len(mismatched)} accounts differ, e.g. {mismatched[:3]}"
    assert r.zcard(f"{prefix}accounts:by_score") == len(accounts)
    print(f"[read-model] {len(accounts)} accounts equal in Redis and the table after the outage; "
          f"{retries:.0f} Redis flush retries")
