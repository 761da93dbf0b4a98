"""On the real broker: a worker SIGKILLed at random points, again and again, ends equal to the replay.

Equality is on what readers see: every account's health record (HTTP GET /accounts/{id}) equals
`to_read_model` of the in-process replay's state for the same input, and /portfolio/company equals the
replay's portfolio. The account-health and churn-alerts topics are audited by the independent verifier.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from tests.reliability import verifier
from tests.reliability.streams_under_test import (
    WORKER_ENV,
    Expected,
    Producer,
    explain,
    fetch,
    make_stream,
    wait_equal,
)
from tests.support.stack_fixtures import RunEnv, WorkerProc, start_worker, wait_for_http

pytestmark = pytest.mark.reliability


def audit_outputs(run_env: RunEnv, expected: Expected, summary: dict[str, Any]) -> dict[str, Any]:
    """Health topic: newest value per account equals the replay; count raw duplicates. Alerts, if any."""
    s = run_env.settings()
    # Health records are coalesced per account (published at most every CHURNWATCH_PUBLISH_INTERVAL_S, 5 s):
    # give the topic that long several times over to catch up with the table before calling a record stale.
    deadline = time.monotonic() + 30
    while True:
        health = verifier.health_topic_report(
            verifier.read_all(s.kafka_bootstrap, s.topic(s.health_topic)))
        stale = [a for a, body in expected.accounts.items() if health.latest.get(a) != body]
        if not stale or time.monotonic() > deadline:
            break
        time.sleep(2)
    # Alerts the uninterrupted in-process run raised (by alert id) must all appear on the topic. Portfolio alerts
    # of the last months appear once the worker finds its input exhausted (a few idle seconds, ADR 0006).
    expected_ids = {a.alert_id for a in getattr(expected.replay, "alerts", [])}
    deadline = time.monotonic() + 60
    while True:
        alerts = verifier.alerts_report(verifier.read_all(s.kafka_bootstrap, s.topic(s.alerts_topic)))
        lost = sorted(expected_ids - alerts.alert_ids)
        if not lost or time.monotonic() > deadline:
            break
        time.sleep(2)
    summary["alerts_expected"] += len(expected_ids)
    summary["alerts_lost"] += len(lost)
    summary["health_records_raw"] += health.records
    summary["health_duplicates_raw"] += health.duplicates_raw
    summary["alerts_seen"] += len(alerts.alert_ids)
    summary["alert_duplicates_raw"] += alerts.duplicates_raw
    summary["alert_duplicates_after_dedupe"] += alerts.duplicates_after_dedupe
    report = {"health_records": health.records, "health_distinct": health.distinct,
              "health_duplicates_raw": health.duplicates_raw, "alerts": alerts.as_dict(),
              "alerts_expected": len(expected_ids), "alerts_lost": len(lost),
              "alerts_unexpected": len(alerts.alert_ids - expected_ids)}
    print(f"[outputs] {report}")
    detail = {a: {k: (health.latest.get(a, {}).get(k), v) for k, v in expected.accounts[a].items()
                  if health.latest.get(a, {}).get(k) != v} for a in stale[:3]}
    assert not stale, f"account-health topic: newest record differs from replay for {len(stale)} accounts " \
        f"{stale[:5]}; (topic, replay) per field: {str(detail)[:1500]}"
    assert alerts.duplicates_after_dedupe == 0, \
        f"one record_id with different bodies: {report}; first: {[b[:1500] for b in alerts.conflicts[0]]}"
    assert not lost, f"alerts of the uninterrupted replay missing from the topic: {lost[:10]} ({report})"
    return report


def input_audit(settings: Any, lines: list[bytes], accounts: list[str]) -> str:
    """What the input topics hold for these accounts against what was produced: tells a producer's duplicate,
    loss or reordering apart from the worker's."""
    import orjson

    got: dict[str, list[bytes]] = {}
    for topic in (settings.billing_topic, settings.usage_topic):
        for rec in verifier.read_all(settings.kafka_bootstrap, settings.topic(topic)):
            got.setdefault(rec.key.decode(), []).append(rec.value)
    sent: dict[str, list[bytes]] = {}
    for line in lines:
        sent.setdefault(orjson.loads(line)["account_id"], []).append(line)
    out = []
    for a in accounts:
        g, w = got.get(a, []), sent.get(a, [])
        same_multiset = sorted(g) == sorted(w)
        out.append(f"{a}: topic {len(g)} records, produced {len(w)}, same multiset {same_multiset}")
    return "; ".join(out)


def stacks_of(pid: int | None) -> str:
    """The worker's Python stacks (py-spy dump), to tell a stuck worker from a slow one in a failure message."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if pid is None or not Path(spy).exists():
        return ""
    out = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30)
    return out.stdout[-4000:]


def assert_equal_to_replay(base_url: str, expected: Expected, timeout_s: float, log: str,
                           settings: Any = None, lines: list[bytes] | None = None, pid: int | None = None) -> float:
    diff, company_ok, seconds = wait_equal(base_url, expected, timeout_s)
    audit = input_audit(settings, lines, sorted(diff)[:5]) if diff and settings is not None and lines else ""
    if diff:
        print(f"[stacks of the worker]\n{stacks_of(pid)}")
    assert not diff, (f"{len(diff)} of {len(expected.accounts)} accounts differ from replay after "
                      f"{timeout_s:.0f}s: {explain(base_url, expected, diff)}\ninput audit: {audit}\n"
                      f"worker log tail:\n{log[-2000:]}")
    if not company_ok:
        live = fetch(f"{base_url}/portfolio/company") or []
        rows = [(e.get("month"), e.get("segment"), {k: (row.get(k), v) for k, v in e.items() if row.get(k) != v})
                for row, e in zip(live, expected.company, strict=False) if row != e]
        import urllib.request

        with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as resp:
            lag = [ln for ln in resp.read().decode().splitlines() if ln.startswith("churnwatch_consumer_lag")]
        raise AssertionError(f"/portfolio/company differs from the replay's portfolio.months_json(): "
                             f"{len(live)} vs {len(expected.company)} rows; (live, replay): {str(rows[:2])[:1500]}; "
                             f"live months {[r.get('month') for r in live]}, replay months "
                             f"{[r.get('month') for r in expected.company]}; lag: {lag}")
    return seconds


def test_sigkilled_worker_restarts_and_ends_equal_to_replay(run_env: RunEnv, soak: bool,
                                                          summary: dict[str, Any]) -> None:
    seed = 1010
    rng = random.Random(seed)
    kills_wanted = 12 if soak else 5
    lines = make_stream(seed, accounts=100, usage_events=20_000 if soak else 3_500)
    expected = Expected.of(lines)
    summary["events_produced"] += len(lines)
    settings = run_env.settings()
    workers: list[WorkerProc] = []
    recoveries: list[float] = []
    kills = 0
    try:
        w = start_worker(run_env, "w1", extra_env=WORKER_ENV)
        workers.append(w)
        producer = Producer(settings, lines, rate=len(lines) / (90 if soak else 25)).start()
        while kills < kills_wanted or producer.running:
            time.sleep(rng.uniform(0.3, 3.0))
            w.stop(9)  # SIGKILL: no commit, no flush, no changelog write-back
            kills += 1
            summary["kills"] += 1
            started = time.monotonic()
            w = start_worker(run_env, "w1", extra_env=WORKER_ENV, wait_ready=False)
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
        outputs = audit_outputs(run_env, expected, summary)
    finally:
        for p in workers:
            p.stop()
    summary["events_verified"] += expected.replay.inputs
    print(f"[kill] {len(lines)} events, {len(expected.accounts)} accounts, {kills} SIGKILLs, recovery "
          f"(restart -> /ready) {[round(r, 1) for r in recoveries]} s, converged {converge:.1f}s after the "
          f"last restart; {outputs}")
