"""On the real broker: a snooze from alert-actions holds an escalation back; the webhook forwarder delivers."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import orjson
import pytest

from tests.support.kafka_io import produce_raw
from tests.support.live_stream import processed_count, wait_for_alerts
from tests.support.scenarios import T0, _ev, _healthy_account
from tests.support.stack_fixtures import free_port

pytestmark = pytest.mark.integration


def day_of(record: dict) -> int:
    return (int(datetime.fromisoformat(record["occurred_at"]).timestamp()) - int(T0.timestamp())) // 86400


def produce_until(settings, base_url: str, events: list[dict], sent_before: int) -> int:
    from streams.tools.produce import _route, make_producer

    producer = make_producer(settings)
    for e in events:
        line = orjson.dumps(e)
        topic, key = _route(settings, line, "canonical")
        producer.send(topic, key=key, value=line)
    producer.flush(30)
    producer.close(5)
    total = sent_before + len(events)
    deadline = time.monotonic() + 60
    while processed_count(base_url) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    return total


class Webhook(BaseHTTPRequestHandler):
    """Fails the first delivery of every record with 503, accepts the retry; remembers idempotency keys."""

    attempts: dict[str, int] = {}
    accepted: dict[str, dict] = {}

    def do_POST(self) -> None:
        key = self.headers["Idempotency-Key"]
        body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Webhook.attempts[key] = Webhook.attempts.get(key, 0) + 1
        status = 503 if Webhook.attempts[key] == 1 else 200
        if status == 200:
            Webhook.accepted.setdefault(key, body)
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_snooze_holds_back_escalation_until_it_ends_and_the_forwarder_delivers_each_record(
    run_env, worker_factory
) -> None:
    settings = run_env.settings()
    # The stream pauses right after a payment failure, so no usage passes it: billing waits for usage (ADR 0006)
    # until the worker has been idle for CHURNWATCH_IDLE_PARTITION_S, then follows the wall clock.
    worker = worker_factory("w1", extra_env={"CHURNWATCH_ALERT_TICK_S": "0.2", "CHURNWATCH_IDLE_PARTITION_S": "2"})
    events: list[dict] = []
    _healthy_account(events, "snooze-1")
    _ev(events, "snooze-1", 50.3, "payment.failed", amount=19900, attempt=1)
    # Usage right after each failure: billing is applied once the account's usage has passed it (ADR 0006);
    # without it the failure waits until the worker finds its input exhausted (wall-clock dependent).
    _ev(events, "snooze-1", 50.35, "session.started", user_id="snooze-1-u1")
    _ev(events, "snooze-1", 52.3, "payment.failed", amount=19900, attempt=3)  # held back: snoozed until day 60
    # day 59: the healthy account's monthly invoice.paid recovers the payment (a resolution is always published)
    _ev(events, "snooze-1", 61.3, "payment.failed", amount=19900, attempt=1)  # after the snooze: alerts again
    _ev(events, "snooze-1", 61.35, "session.started", user_id="snooze-1-u1")
    events.sort(key=lambda e: (e["occurred_at"], e["event_id"]))
    cut = (T0 + timedelta(days=50.4)).isoformat().replace("+00:00", "Z")
    first = [e for e in events if e["occurred_at"] < cut]
    rest = [e for e in events if e["occurred_at"] >= cut]

    sent = produce_until(settings, worker.base_url, first, 0)
    # A fresh broker (this is the first test of a `make test` session) can take long to deliver the first alert.
    opened = [r for r in wait_for_alerts(settings, 1, timeout_s=180) if r["transition"] == "opened"]
    assert [(r["trigger"], day_of(r)) for r in opened] == [("payment_failed", 50)]
    action = {"action_id": "act-1", "account_id": "snooze-1", "alert_id": opened[0]["alert_id"], "action": "snooze",
              "snooze_until": (T0 + timedelta(days=60)).isoformat(), "actor": "cs-lead@example.com",
              "reason": "customer is switching cards", "occurred_at": (T0 + timedelta(days=50.5)).isoformat()}
    produce_raw(settings, settings.topic(settings.alert_actions_topic), [(b"snooze-1", orjson.dumps(action))])
    produce_until(settings, worker.base_url, rest, sent)

    records = {r["record_id"]: r for r in wait_for_alerts(settings, 4)}
    timeline = sorted((day_of(r), r["transition"], r.get("resolution_reason")) for r in records.values())
    assert timeline == [(50, "opened", None), (50, "snoozed", None), (59, "resolved", "recovered"),
                        (61, "opened", None)], timeline

    # The reference consumer: every distinct record reaches the webhook once accepted, after a retry each.
    port = free_port()
    server = HTTPServer(("127.0.0.1", port), Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {**__import__("os").environ, **run_env.env}
    try:
        out = subprocess.run([sys.executable, "-m", "streams.cli", "alerts", "forward", f"http://127.0.0.1:{port}/hook",
                              "--idle-exit-s", "3"], env=env, capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    assert out.returncode == 0, out.stderr
    assert set(Webhook.accepted) == set(records)
    assert all(n == 2 for n in Webhook.attempts.values())
    tail = subprocess.run([sys.executable, "-m", "streams.cli", "alerts", "tail", "--from-beginning",
                           "--idle-exit-s", "2"], env=env, capture_output=True, text=True, timeout=60)
    assert "snooze-1 payment_failed opened" in tail.stdout
    print(f"[consumers] timeline {timeline}; forwarded {len(Webhook.accepted)} records with one retry each")
