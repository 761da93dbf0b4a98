"""Through the real broker and worker: a scripted population yields exactly the expected alerts."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from streams.admin import ensure_topics
from streams.replay import replay_lines
from tests.support.kafka_io import read_topic
from tests.support.scenarios import T0, scenario
from tests.support.stack_fixtures import start_worker

pytestmark = pytest.mark.integration


def transitions(records: list[dict]) -> dict[str, list[tuple[str, str, int]]]:
    out: dict[str, list[tuple[str, str, int]]] = {}
    for r in records:
        day = (int(__import__("datetime").datetime.fromisoformat(r["occurred_at"]).timestamp()) - int(T0.timestamp())) // 86400
        out.setdefault(r["account_id"], []).append((r["trigger"], r["transition"], day))
    return out


def processed_count(base_url: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("churnwatch_events_total{") and 'outcome="processed"' in line)


def stream_day_by_day(settings, base_url: str, events: list[dict]) -> None:
    """Produce one event-time day at a time and wait until the worker has applied it: live traffic, not a
    backlog. (A backlog lets the worker read the small billing topic weeks ahead of usage; see ADR 0004.)"""
    by_day: dict[str, list[bytes]] = {}
    for e in events:
        by_day.setdefault(e["occurred_at"][:10], []).append(orjson.dumps(e))
    from streams.tools.produce import _route, make_producer

    producer = make_producer(settings)
    sent = 0
    try:
        for day in sorted(by_day):
            for line in by_day[day]:
                topic, key = _route(settings, line, "canonical")
                producer.send(topic, key=key, value=line)
            producer.flush(30)
            sent += len(by_day[day])
            deadline = time.monotonic() + 30
            while processed_count(base_url) < sent and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        producer.close(5)


def wait_for_alerts(settings, expect: int) -> list[dict]:
    deadline = time.monotonic() + 90
    records: list[dict] = []
    while time.monotonic() < deadline:
        records = [orjson.loads(v) for _k, v in read_topic(settings, settings.topic(settings.alerts_topic), idle_ms=1500)]
        if len({r["record_id"] for r in records}) >= expect:
            break
        time.sleep(1)
    return records


def test_each_scripted_account_gets_its_alert_and_controls_get_none(run_env, worker_factory) -> None:
    events, expected = scenario()
    lines = [orjson.dumps(e) for e in events]
    replayed = replay_lines(lines)
    replay_ids = {(r.alert_id, r.transition) for r in replayed.alerts}
    settings = run_env.settings()
    worker = worker_factory("w1", extra_env={"CHURNWATCH_ALERT_TICK_S": "0.2", "CHURNWATCH_IDLE_PARTITION_S": "1"})
    stream_day_by_day(settings, worker.base_url, events)
    records = wait_for_alerts(settings, len(replay_ids))
    distinct = {r["record_id"]: r for r in records}
    got = transitions(list(distinct.values()))

    for account, wanted in expected.items():
        seen = got.get(account, [])
        if not wanted:
            assert seen == [], f"control {account} alerted: {seen}"
            continue
        for trigger, transition, day in wanted:
            days = [d for t, tr, d in seen if (t, tr) == (trigger, transition)]
            assert days, f"{account}: no {trigger} {transition} in {seen}"
            # Event-driven alerts land on their event's day; time-driven ones once the watermark passes.
            slack = 1 if trigger != "inactivity" else 7
            assert day <= days[0] <= day + slack, (account, trigger, days)
    assert distinct["".join(r["record_id"] for r in distinct.values() if r["account_id"] == "pay-1"
                            and r["transition"] == "resolved")]["resolution_reason"] == "recovered"
    assert {(r["alert_id"], r["transition"]) for r in distinct.values()} == replay_ids
    with __import__("urllib.request").request.urlopen(f"{worker.base_url}/accounts/cancel-1", timeout=5) as resp:
        open_alerts = orjson.loads(resp.read())["open_alerts"]
    assert [a["trigger"] for a in open_alerts] == ["cancellation_scheduled"]
    print(f"[alerts] {len(records)} raw records, {len(distinct)} distinct; ids equal replay's: {sorted(replay_ids)[:2]}...")

    # Re-processing the same input from offset 0 with fresh state gives the same alert ids (the input is
    # now a backlog: ids are decided by episode start days, not by when the worker got to them).
    worker.stop()
    fresh = {**run_env.env, "CHURNWATCH_APP_ID": f"churnwatch-again-{uuid.uuid4().hex[:6]}",
             "CHURNWATCH_TOPIC_PREFIX": run_env.env["CHURNWATCH_TOPIC_PREFIX"]}
    again_alerts = f"again-{uuid.uuid4().hex[:6]}-churn-alerts"
    fresh["CHURNWATCH_ALERTS_TOPIC"] = again_alerts
    run_env.env = fresh
    ensure_topics(run_env.settings())
    second = start_worker(run_env, "w2", extra_env={"CHURNWATCH_ALERT_TICK_S": "0.5", "CHURNWATCH_IDLE_PARTITION_S": "1"})
    try:
        again = wait_for_alerts(run_env.settings(), len(replay_ids))
    finally:
        second.stop()
    again_ids = {(r["alert_id"], r["transition"]) for r in again}
    info = {(r["alert_id"], r["transition"]): (r["account_id"], r["trigger"]) for r in again}
    info.update({(r.alert_id, r.transition): (r.account_id, r.trigger) for r in replayed.alerts})
    assert again_ids == replay_ids, (
        f"only live: {[info[k] + k[1:] for k in again_ids - replay_ids]}; "
        f"only replay: {[info[k] + k[1:] for k in replay_ids - again_ids]}"
    )
