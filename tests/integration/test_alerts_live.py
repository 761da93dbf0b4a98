"""Through the real broker and worker: a scripted population yields exactly the expected alerts."""

from __future__ import annotations

import uuid

import orjson
import pytest

from streams.admin import ensure_topics
from streams.replay import replay_lines
from tests.support.live_stream import stream_day_by_day, wait_for_alerts
from tests.support.scenarios import T0, scenario
from tests.support.stack_fixtures import start_worker

pytestmark = pytest.mark.integration


def transitions(records: list[dict]) -> dict[str, list[tuple[str, str, int]]]:
    out: dict[str, list[tuple[str, str, int]]] = {}
    for r in records:
        day = (int(__import__("datetime").datetime.fromisoformat(r["occurred_at"]).timestamp()) - int(T0.timestamp())) // 86400
        out.setdefault(r["account_id"], []).append((r["trigger"], r["transition"], day))
    return out


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
