"""Shared pieces of the reliability tests: a generated input stream, its replay, and live-vs-replay checks."""

from __future__ import annotations

import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.domain.codec import to_read_model
from streams.domain.config import DomainConfig
from streams.replay import ReplayResult, replay_lines
from streams.settings import Settings
from streams.tools.produce import produce_lines
from streams.tools.simulate import generate
from streams.topics import changelog_topic_name
from tests.reliability import verifier
from tests.support.kafka_io import records_in_topic
from tests.support.live_stream import metric_samples, wait_until
from tests.support.stack_fixtures import RunEnv

# Worker settings for these tests: quick cohort refresh, and a short group session so a SIGKILLed member is
# evicted in seconds instead of Faust's 60 s default (a restarted worker waits for that eviction).
WORKER_ENV = {
    "CHURNWATCH_COHORT_REFRESH_S": "1",
    "CHURNWATCH_SESSION_TIMEOUT_S": "6",  # heartbeats every second
    # Once the input stops, billing dated after the last usage is applied after 3 s of idleness (ADR 0006), as the
    # replay does at the end of its input.
    "CHURNWATCH_IDLE_PARTITION_S": "3",
    # Health records coalesced for 5 s (the default is 30 s): the audit waits a few intervals for the topic.
    "CHURNWATCH_PUBLISH_INTERVAL_S": "5",
    # States written back every second (the default is 10 s): a worker of these tests lives seconds between kills,
    # and with 10 s every kill landed before the first write (0 changelog records at each of 5 kills, 2026-12-07), so
    # no restart recovered a state: each re-read everything. A deployed worker lives across many flushes; its kills
    # land after one, and during one.
    "CHURNWATCH_STATE_FLUSH_INTERVAL_S": "1",
}
KEEP_TYPES = {"subscription.started", "subscription.cancel_scheduled", "subscription.canceled", "invoice.paid",
              "nps.responded", "user.added"}


def make_stream(seed: int, accounts: int, usage_events: int, days: int = 60,
                retry_share: float = 0.03) -> list[bytes]:
    """Every billing / NPS / user event of a simulated world, a seeded sample of its usage, plus webhook retries."""
    events, _truth = generate(accounts, days, seed=seed)
    rng = random.Random(seed)
    usage = [e for e in events if e["type"] not in KEEP_TYPES]
    keep_usage = {id(e) for e in rng.sample(usage, min(usage_events, len(usage)))}
    kept = [e for e in events if e["type"] in KEEP_TYPES or id(e) in keep_usage]
    lines = [orjson.dumps(e) for e in kept]
    out: list[bytes] = []
    pending: list[tuple[int, bytes]] = []
    for i, line in enumerate(lines):
        out.append(line)
        if rng.random() < retry_share:
            pending.append((i + rng.randrange(1, 40), line))  # the same event again a little later
        for due in [p for p in pending if p[0] <= i]:
            out.append(due[1])
            pending.remove(due)
    out.extend(p[1] for p in pending)
    return out


@dataclass
class Expected:
    replay: ReplayResult
    accounts: dict[str, Any]
    company: Any

    @classmethod
    def of(cls, lines: list[bytes]) -> Expected:
        r = replay_lines(lines)
        config = DomainConfig()
        try:  # the record the worker serves: state view + open alerts + ledger cohort (since the alerts work)
            from streams.domain.aggregate import read_model
        except ImportError:  # pragma: no cover - before alerts: the state view alone
            read_model = None
        accounts = {a: orjson.loads(orjson.dumps(
            read_model(s, config) if read_model is not None else to_read_model(s.state, config=config)))
            for a, s in r.states.items()}
        assert r.portfolio is not None
        return cls(r, accounts, orjson.loads(orjson.dumps(r.portfolio.months_json())))


def fetch(url: str, timeout: float = 5) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return orjson.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def differing_accounts(base_url: str, expected: Expected) -> list[str]:
    return [a for a, body in expected.accounts.items() if fetch(f"{base_url}/accounts/{a}") != body]


def wait_equal(base_url: str, expected: Expected, timeout_s: float) -> tuple[list[str], bool, float]:
    """Poll until every account and the company months equal the replay; (differing, company_ok, seconds)."""
    started = time.monotonic()
    deadline = started + timeout_s
    diff: list[str] = list(expected.accounts)
    company_ok = False
    while time.monotonic() < deadline:
        diff = differing_accounts(base_url, expected) if diff else diff
        if not diff:
            company_ok = fetch(f"{base_url}/portfolio/company") == expected.company
            if company_ok:
                break
            diff = []
        time.sleep(1)
    return diff, company_ok, time.monotonic() - started


def explain(base_url: str, expected: Expected, diff: list[str]) -> str:
    lines = []
    for a in diff[:3]:
        live = fetch(f"{base_url}/accounts/{a}")
        exp = expected.accounts[a]
        if live is None:
            lines.append(f"{a}: live missing")
            continue
        fields = {k: (live.get(k), v) for k, v in exp.items() if live.get(k) != v}
        lines.append(f"{a}: {str(fields)[:600]}")
    return "; ".join(lines)


@dataclass
class Producer:
    """Produces lines in a background thread at a fixed rate (so kills land mid-stream)."""

    settings: Settings
    lines: list[bytes]
    rate: float
    flush_timeout_s: float = 60.0  # after the last send, for the broker to acknowledge every line
    sent: int = 0
    error: BaseException | None = None
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.sent = produce_lines(self.settings, self.lines, rate=self.rate, flush_timeout_s=self.flush_timeout_s)
        except BaseException as exc:
            self.error = exc

    def start(self) -> Producer:
        self.thread.start()
        return self

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float = 120) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "producer did not finish"
        assert self.error is None, f"producer failed: {self.error!r}"
        assert self.sent == len(self.lines)


def audit_outputs(run_env: RunEnv, expected: Expected, summary: dict[str, Any],
                  worker_counts: dict[str, float] | None = None) -> dict[str, Any]:
    """Health topic: newest value per account equals the replay; count raw duplicates. Alerts, if any.
    `worker_counts` (`gate_counts`) go into a failure message: events applied out of event-time order explain
    alert ids that differ from the replay's."""
    s = run_env.settings()
    # Health records are coalesced per account (published at most every CHURNWATCH_PUBLISH_INTERVAL_S, 5 s here):
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
    assert not lost, f"alerts of the uninterrupted replay missing from the topic: {describe_alerts(expected, lost)} " \
        f"({report}); the worker's ordering counters: {worker_counts}"
    return report


def describe_alerts(expected: Expected, alert_ids: list[str], limit: int = 10) -> list[str]:
    """`id trigger account opened-day` of each of these alert ids, as the replay opened them: which rules and
    accounts a difference from the replay is about (billing triggers point at billing read out of order)."""
    opened = {a.alert_id: a for a in getattr(expected.replay, "alerts", []) if a.transition == "opened"}
    out = []
    for aid in alert_ids[:limit]:
        a = opened.get(aid)
        out.append(f"{aid} {a.trigger} {a.account_id} {a.opened_at.date().isoformat()}" if a is not None else aid)
    return out


def states_written(run_env: RunEnv) -> int:
    """Records in the account-state changelog so far: each is one account's state written back by a flush."""
    settings = run_env.settings()
    return records_in_topic(settings, changelog_topic_name(settings.app_id, "account_to_state"))


def wait_for_states_written(run_env: RunEnv, more_than: int, timeout_s: float) -> None:
    """Waits until a flush wrote states past `more_than` changelog records; fails the test if none came."""
    assert wait_until(lambda: states_written(run_env) > more_than, timeout_s), \
        f"no state written back in {timeout_s} s (changelog at {states_written(run_env)} records)"


def gate_counts(base_url: str, summary: dict[str, Any]) -> dict[str, float]:
    """The worker's usage-gate counters (ADR 0009), added to the run summary: how often usage waited for its
    billing partition, whether a wait limit ever forced it through (it must not, in these checks), and how many
    events it applied out of event-time order across the two streams."""
    counts = {name: metric_samples(base_url, f"churnwatch_{name}_total").get("", 0.0)
              for name in ("usage_waited", "usage_wait_forced")}
    out_of_order = metric_samples(base_url, "churnwatch_applied_out_of_order_total")
    for stream, key in (("billing", "billing_behind_usage"), ("usage", "usage_behind_billing")):
        counts[key] = out_of_order.get(f'stream="{stream}"', 0.0)
    for k, v in counts.items():
        summary[k] += int(v)
    assert counts["usage_wait_forced"] == 0, f"usage applied without its billing partition: {counts}"
    return counts


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
        lag = metric_samples(base_url, "churnwatch_consumer_lag_messages")
        raise AssertionError(f"/portfolio/company differs from the replay's portfolio.months_json(): "
                             f"{len(live)} vs {len(expected.company)} rows; (live, replay): {str(rows[:2])[:1500]}; "
                             f"live months {[r.get('month') for r in live]}, replay months "
                             f"{[r.get('month') for r in expected.company]}; lag: {lag}")
    return seconds
