"""The newcomer's first run: local stack, topics, a worker, a generated event stream, and a readable report."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from streams import stack
from streams.admin import ensure_topics
from streams.settings import load_settings
from streams.tools.processes import stop_process, wait_http
from streams.tools.produce import produce_lines
from streams.tools.simulate import generate


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child process, which keeps it open
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )


def run_demo(accounts: int, days: int, seed: int) -> int:
    console = Console()
    cfg = stack.StackConfig.from_env()
    console.rule("[bold]churnwatch demo")
    stack.up(cfg)
    env = {
        **os.environ,
        "CHURNWATCH_KAFKA_BOOTSTRAP": cfg.bootstrap,
        "CHURNWATCH_REDIS_URL": cfg.redis_url,
        "CHURNWATCH_APP_ID": os.environ.get("CHURNWATCH_APP_ID", f"churnwatch-demo-{int(time.time())}"),
        "CHURNWATCH_TOPIC_PREFIX": os.environ.get("CHURNWATCH_TOPIC_PREFIX", f"demo{int(time.time())}."),
        "CHURNWATCH_DATA_DIR": str(cfg.run_dir / "worker-data"),
        "CHURNWATCH_COHORT_REFRESH_S": "2",
        "CHURNWATCH_ALERT_TICK_S": "1",
        "CHURNWATCH_IDLE_PARTITION_S": "5",
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("CHURNWATCH_")})
    settings = load_settings()
    for name, state in ensure_topics(settings).items():
        console.print(f"topic {name}: {state}")
    log_path = cfg.run_dir / "demo-worker.log"
    worker = start_worker(env, log_path)
    base = f"http://{settings.web_host}:{settings.web_port}"
    try:
        if not wait_http(f"{base}/ready", 90, worker):
            console.print(f"[red]worker did not become ready; see {log_path}")
            return 1
        console.print(f"worker ready (pid {worker.pid}); HTTP {base}/accounts/<id>, metrics {base}/metrics")
        events, truth = generate(accounts, days, seed)
        console.print(f"producing {len(events)} events for {accounts} accounts over {days} days; "
                      "alert transitions as the worker publishes them:")
        feed = AlertFeed(settings, console, limit=20)
        feed.start()
        produce_lines(settings, (orjson.dumps(e) for e in events))
        newest: dict[str, str] = {}
        for e in events:  # the day each account's last event falls on: the worker is done when it is there
            newest[e["account_id"]] = max(newest.get(e["account_id"], ""), e["occurred_at"][:10])
        records = _wait_for_accounts(base, newest, 180)
        table = Table(title=f"Account health after {len(events)} events (lowest first)")
        for col in ("account", "score", "stage", "status", "plan", "MRR $", "active days 30d", "truth"):
            table.add_column(col, no_wrap=True)
        churners = {t.account_id for t in truth if t.churns_on}
        for rec in sorted(records.values(), key=lambda r: r.get("score", 0))[:15]:
            eng = rec.get("engagement", {})
            table.add_row(
                rec["account_id"], str(rec.get("score")), str(rec.get("stage")), str(rec.get("status")),
                str(rec.get("plan")), f"{(rec.get('mrr') or 0) / 100:.2f}",
                str(eng.get("last30", {}).get("active_days", "")), "churns" if rec["account_id"] in churners else "",
            )
        console.print(table)
        feed.stop()
        console.print(feed.summary())
        _print_portfolio(console, base)
        console.print(f"{len(records)}/{len(newest)} accounts with events served by the worker's HTTP API; "
                      f"stack left running (stop it with: churnwatch stack down)")
        return 0 if len(records) == len(newest) else 1
    finally:
        stop_process(worker)


class AlertFeed:
    """Prints the first `limit` distinct alert transitions from churn-alerts while the demo runs."""

    def __init__(self, settings: Any, console: Console, limit: int) -> None:
        self.settings, self.console, self.limit = settings, console, limit
        self.seen: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        time.sleep(2)  # let the last transitions arrive
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        from kafka import KafkaConsumer

        from streams.admin import kafka_client_config
        from streams.tools.alerts_cli import SEVERITY_STYLE, describe

        consumer = KafkaConsumer(self.settings.topic(self.settings.alerts_topic), auto_offset_reset="earliest",
                                 consumer_timeout_ms=300, **kafka_client_config(self.settings))
        try:
            while not self._stop.is_set():
                for msg in consumer:
                    rec = orjson.loads(msg.value)
                    if rec["record_id"] in self.seen:
                        continue
                    self.seen[rec["record_id"]] = rec
                    if len(self.seen) <= self.limit:
                        self.console.print("  " + describe(rec), style=SEVERITY_STYLE.get(rec.get("severity"), ""),
                                           highlight=False)
        finally:
            consumer.close()

    def summary(self) -> Table:
        from collections import Counter

        counts = Counter((r["trigger"], r["transition"]) for r in self.seen.values())
        t = Table(title=f"Alert transitions published: {len(self.seen)} (first {self.limit} shown above)")
        for col in ("trigger", "opened", "escalated", "resolved"):
            t.add_column(col)
        for trigger in sorted({tr for tr, _ in counts}):
            t.add_row(trigger, *(str(counts.get((trigger, x), "")) for x in ("opened", "escalated", "resolved")))
        return t


def _print_portfolio(console: Console, base: str) -> None:
    """Company months and the cohort grid, as the worker that aggregates cohorts serves them."""
    from types import SimpleNamespace

    from streams.report import cohort_grid, company_table

    deadline = time.monotonic() + 30
    months = cells = None
    while time.monotonic() < deadline and not months:
        try:
            with urllib.request.urlopen(f"{base}/portfolio/company", timeout=5) as resp:
                months = orjson.loads(resp.read())
            with urllib.request.urlopen(f"{base}/portfolio/cohorts", timeout=5) as resp:
                cells = orjson.loads(resp.read())
        except OSError:
            time.sleep(1)
    if not months:
        console.print("portfolio not computed yet; see /portfolio/company later")
        return
    console.print(company_table([SimpleNamespace(**m) for m in months]))  # type: ignore[misc]
    console.print(cohort_grid([SimpleNamespace(**c) for c in cells or []]))  # type: ignore[misc]


def _wait_for_accounts(base: str, newest: dict[str, str], timeout_s: float) -> dict[str, dict]:
    """Poll the HTTP API until every account's record has reached the day of its newest event."""
    found: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(found) < len(newest):
        for account, day in newest.items():
            if account in found:
                continue
            try:
                with urllib.request.urlopen(f"{base}/accounts/{account}", timeout=2) as resp:
                    rec = orjson.loads(resp.read())
            except OSError:
                continue
            if rec.get("as_of", "") >= day:
                found[account] = rec
        time.sleep(0.5)
    return found
