"""On the real broker and Redis: a restarted worker re-publishes the Redis read model from its tables."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import redis

from streams.tools.produce import produce_lines

pytestmark = pytest.mark.integration

T0 = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)


def events_for(accounts: list[str], start: int, count: int) -> list[bytes]:
    out = []
    for n in range(start, start + count):
        for i, a in enumerate(accounts):
            etype = "feature.used" if n % 2 else "session.started"
            body = {"event_id": f"{a}-{n}", "account_id": a, "type": etype, "user_id": f"{a}-u{n % 5}",
                    "occurred_at": (T0 + timedelta(hours=n, minutes=i % 60)).isoformat()}
            if etype == "feature.used":
                body["feature"] = f"f{n % 7}"
            out.append(orjson.dumps(body))
    return out


def test_a_restarted_worker_republishes_the_read_model_from_its_tables(run_env, worker_factory) -> None:
    """Health records coalesced in memory die with a SIGKILLed worker; a restart re-publishes every account."""
    settings = run_env.settings()
    accounts = [f"acct-{i:03d}" for i in range(50)]
    # A short group session: the restarted worker need not wait a minute for its dead predecessor's eviction.
    fast = {"CHURNWATCH_SESSION_TIMEOUT_S": "6"}
    first = worker_factory("w1", extra_env=fast)
    produce_lines(settings, events_for(accounts, 0, 3))
    r = redis.Redis.from_url(settings.redis_url.get_secret_value())
    prefix = settings.redis_key_prefix
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(r.exists(f"{prefix}account:{a}") for a in accounts) < len(accounts):
        time.sleep(0.5)
    first.stop(signal.SIGKILL)
    r.delete(*[f"{prefix}account:{a}" for a in accounts])  # as if those records had never been written

    worker_factory("w2", extra_env=fast)  # same app id: restores the tables from the changelog, then re-publishes
    deadline = time.monotonic() + 90
    missing = accounts
    while time.monotonic() < deadline and missing:
        missing = [a for a in accounts if not r.exists(f"{prefix}account:{a}")]
        time.sleep(0.5)
    assert missing == [], f"{len(missing)} accounts not re-published, e.g. {missing[:3]}"
