"""Reliability suite options and the run summary (docs/reliability/latest.json when CHURNWATCH_RELIABILITY_OUT)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

SUMMARY_KEYS = (
    "kills", "broker_restarts", "failovers", "redis_outages", "events_produced", "events_verified",
    "alerts_expected", "alerts_seen", "alerts_lost", "alert_duplicates_raw", "alert_duplicates_after_dedupe",
    "hostile_inputs", "hostile_unaccounted", "health_records_raw", "health_duplicates_raw",
    # ADR 0009, as counted by the last worker process of each check (a SIGKILLed process's counts are lost)
    "usage_waited", "usage_wait_forced",
    # Events the last worker process of each check applied out of event-time order across the streams (a
    # time-ordered replay applies none): the first thing to read when its alert ids differ from the replay's
    "billing_behind_usage", "usage_behind_billing",
)
SUMMARY: dict[str, Any] = {k: 0 for k in SUMMARY_KEYS} | {"max_recovery_s": 0.0, "recovery_s": [], "tests": {}}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False,
                     help="reliability: longer streams and more kills (minutes instead of seconds)")


@pytest.fixture(scope="session")
def soak(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--soak", default=False))


@pytest.fixture(scope="session")
def summary() -> dict[str, Any]:
    """Counters the reliability tests add to; written out when the session finishes."""
    return SUMMARY


@pytest.fixture(autouse=True)
def _record_outcome(request: pytest.FixtureRequest) -> Any:
    yield
    rep = getattr(request.node, "rep_call", None)
    SUMMARY["tests"][request.node.name] = rep.outcome if rep is not None else "error"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not SUMMARY["tests"]:
        return  # no reliability test ran in this session
    out = os.environ.get("CHURNWATCH_RELIABILITY_OUT")
    path = Path(out) if out else Path(tempfile.gettempdir()) / "churnwatch-reliability-latest.json"
    body = dict(SUMMARY)
    body["max_recovery_s"] = round(max(SUMMARY["recovery_s"], default=0.0), 2)
    body["recovery_s"] = [round(x, 2) for x in SUMMARY["recovery_s"]]
    body["soak"] = bool(session.config.getoption("--soak", default=False))
    body["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body["passed"] = all(v == "passed" for v in SUMMARY["tests"].values())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    print(f"\n[reliability] summary written to {path}")
