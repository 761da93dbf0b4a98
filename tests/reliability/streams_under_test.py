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

# Worker settings for these tests: quick cohort refresh, and a short group session so a SIGKILLed member is
# evicted in seconds instead of Faust's 60 s default (a restarted worker waits for that eviction).
WORKER_ENV = {
    "CHURNWATCH_COHORT_REFRESH_S": "1",
    "BROKER_SESSION_TIMEOUT": "6",
    "BROKER_HEARTBEAT_INTERVAL": "1",
    # Once the input stops, billing dated after the last usage is applied after 3 s of idleness (ADR 0006), as the
    # replay does at the end of its input.
    "CHURNWATCH_IDLE_PARTITION_S": "3",
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
    sent: int = 0
    error: BaseException | None = None
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.sent = produce_lines(self.settings, self.lines, rate=self.rate)
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
