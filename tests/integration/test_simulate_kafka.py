"""`churnwatch simulate --kafka` on the real broker: every generated event lands on its topic, keyed by account,
byte for byte what `--out` would write, at the requested rate."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest

from schemas.events import BILLING_TYPES
from streams.tools.simulate import generate
from streams.tools.simulate_cli import shaped
from tests.support.kafka_io import read_topic

pytestmark = pytest.mark.integration

ARGS = ["--accounts", "20", "--days", "45", "--seed", "3", "--start", "2026-01-01"]
RATE = 4000


def simulate_to_kafka(run_env, *extra: str) -> tuple[int, float]:
    """Run the CLI as a user would; returns (events it reports, seconds it reports producing for)."""
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "simulate", *ARGS, "--kafka", "--rate", str(RATE), *extra],
        env={**os.environ, **run_env.env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r"produced (\d+) events .* in ([\d.]+) s", proc.stderr)
    assert m, proc.stderr
    return int(m.group(1)), float(m.group(2))


def records(settings, topic: str, expect: int) -> Counter[tuple[bytes | None, bytes]]:
    return Counter(read_topic(settings, settings.topic(topic), expect=expect, timeout_s=30, idle_ms=1000))


def test_simulate_kafka_produces_every_event_to_its_topic_at_the_rate(run_env) -> None:
    events, _ = generate(20, 45, seed=3, start=datetime(2026, 1, 1, tzinfo=UTC))
    settings = run_env.settings()

    sent, took = simulate_to_kafka(run_env)
    billing = Counter((e["account_id"].encode(), orjson.dumps(e)) for e in events if e["type"] in BILLING_TYPES)
    usage = Counter((e["account_id"].encode(), orjson.dumps(e)) for e in events if e["type"] not in BILLING_TYPES)
    assert sent == len(events) == billing.total() + usage.total()
    assert records(settings, settings.billing_topic, billing.total()) == billing
    assert records(settings, settings.usage_topic, usage.total()) == usage
    # Paced: at most RATE events per second (it sleeps every 100 events), and not far below it.
    assert (sent - 100) / RATE <= took <= sent / RATE * 3 + 2, (sent, took)

    sent_shaped, _ = simulate_to_kafka(run_env, "--format", "stripe")
    lines = list(shaped(events, "stripe"))
    def key(kind: str, value: bytes) -> bytes:  # the customer (Stripe) or the group (Segment) is the account
        obj = orjson.loads(value)
        return (obj["data"]["object"]["customer"] if kind == "stripe"
                else obj.get("groupId") or obj["context"]["groupId"]).encode()

    stripe = Counter((key(k, v), v) for k, v in lines if k == "stripe")
    segment = Counter((key(k, v), v) for k, v in lines if k == "segment")
    assert sent_shaped == len(lines) == stripe.total() + segment.total()
    assert records(settings, settings.stripe_topic, stripe.total()) == stripe
    assert records(settings, settings.segment_topic, segment.total()) == segment
    print(f"[simulate --kafka] {sent} canonical events in {took:.2f} s ({sent / took:,.0f}/s, target {RATE:,}/s); "
          f"{stripe.total()} Stripe webhooks + {segment.total()} Segment calls")
