"""On the real broker: billing that reaches the broker after later usage is applied, counted, and keeps its alert id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams.replay import replay_lines
from streams.tools.produce import produce_lines
from tests.support.live_stream import metric_samples, processed_count, read_alerts, wait_until
from tests.support.stack_fixtures import RunEnv
from tests.unit.domain.factories import event, session

pytestmark = pytest.mark.integration

START = datetime(2026, 1, 5, 9, tzinfo=UTC)
ACCOUNT = "late-billing-1"


def lines_of(events: list) -> list[bytes]:
    return [e.model_dump_json().encode() for e in events]


def a_paying_team_whose_payment_fails_on_day_2() -> tuple[list, list]:
    """(everything but the failed payment, the failed payment), each in event-time order."""
    started = event("subscription.started", START - timedelta(days=1), account=ACCOUNT, plan="team", seats=5,
                    mrr=19900)
    usage = [session(START + timedelta(days=d), account=ACCOUNT, user=f"u{d % 3}") for d in range(8)]
    failed = event("payment.failed", START + timedelta(days=2, hours=3), account=ACCOUNT, amount=19900, attempt=1)
    return [started, *usage], [failed]


def test_billing_produced_after_later_usage_is_applied_counted_and_opens_the_replays_alert_id(
        run_env: RunEnv, worker_factory: Any) -> None:
    before, late = a_paying_team_whose_payment_fails_on_day_2()
    in_time_order = sorted(before + late, key=lambda e: e.occurred_at)
    expected = {r.alert_id for r in replay_lines(lines_of(in_time_order)).alerts
                if r.trigger == "payment_failed" and r.transition == "opened"}
    assert len(expected) == 1
    settings = run_env.settings()
    worker = worker_factory("w1")

    # Usage of days 0-7 is on the broker and applied before the failed payment of day 2 is produced: no consumer
    # can wait for it, as for a Stripe webhook delayed at its source.
    produce_lines(settings, lines_of(before))
    assert wait_until(lambda: processed_count(worker.base_url) >= len(before)), "usage not applied"
    assert metric_samples(worker.base_url, "churnwatch_applied_out_of_order_total") == {}
    produce_lines(settings, lines_of(late))

    def counted() -> bool:
        return metric_samples(worker.base_url, "churnwatch_applied_out_of_order_total") == {'stream="billing"': 1.0}

    assert wait_until(counted), metric_samples(worker.base_url, "churnwatch_applied_out_of_order_total")
    # Decided at the account's day end 6, the alert still starts on the payment's day: the replay's id.
    assert wait_until(lambda: expected <= {r["alert_id"] for r in read_alerts(settings, idle_ms=500)}, 30), \
        [(r["trigger"], r["alert_id"]) for r in read_alerts(settings)]
