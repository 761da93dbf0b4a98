"""Backtest scoring on a hand-made example, and the CLI end to end on a small generated world."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

import pytest

from streams.tools import backtest, simulate_cli


def _alert(account: str, trigger: str, day: int, transition: str = "opened") -> dict:
    return {"account_id": account, "trigger": trigger, "transition": transition,
            "occurred_at": datetime(2026, 1, day, tzinfo=UTC).isoformat()}


def test_score_worked_example() -> None:
    # 4 accounts over 1 month; a and b churn on Jan 31, c and d do not.
    truth = {"a": datetime(2026, 1, 31, tzinfo=UTC), "b": datetime(2026, 1, 31, tzinfo=UTC), "c": None, "d": None}
    alerts = [
        _alert("a", "inactivity", 1),            # a: first predictive alert Jan 1, churn 30 days later: TP
        _alert("a", "nps_detractor", 11),
        _alert("a", "inactivity", 11, "resolved"),  # not an opening: ignored
        _alert("c", "inactivity", 5),            # c: never churns: FP
        _alert("b", "cancellation_scheduled", 21),  # not predictive: b is missed overall
        _alert("portfolio", "customer_churn_rate", 31),
    ]
    s = backtest.score(alerts, truth, horizon_days=60, accounts=4, months=1.0)
    overall = s["overall_predictive"]
    assert overall["alerted_accounts"] == 2 and overall["true_positives"] == 1
    assert overall["precision"] == 0.5 and overall["recall"] == 0.5
    assert overall["median_lead_days"] == 30.0
    assert overall["alerts_per_100_accounts_month"] == 75.0  # 3 predictive openings / 4 accounts
    assert s["triggers"]["inactivity"]["precision"] == 0.5
    assert s["triggers"]["nps_detractor"] == {**s["triggers"]["nps_detractor"], "precision": 1.0, "recall": 0.5,
                                              "median_lead_days": 20.0}
    assert s["triggers"]["cancellation_scheduled"]["recall"] == 0.5
    assert s["portfolio"] == {"customer_churn_rate": 1}
    assert s["base_rate"] == 0.5
    # With a 20-day horizon, a's alert 30 days ahead no longer counts.
    assert backtest.score(alerts, truth, 20, 4, 1.0)["overall_predictive"]["true_positives"] == 0


def test_parse_grid() -> None:
    assert backtest.parse_grid("inactivity.open_days=7,14") == (["rules", "inactivity", "open_days"], [7, 14])
    with pytest.raises(backtest.BacktestError):
        backtest.parse_grid("rules.inactivity.open_days")


def test_cli_on_a_small_world(tmp_path) -> None:
    events, truth, out = tmp_path / "w.jsonl", tmp_path / "t.jsonl", tmp_path / "r.json"
    p = argparse.ArgumentParser()
    simulate_cli.add_arguments(p)
    assert simulate_cli.run(p.parse_args(["--accounts", "60", "--days", "120", "--seed", "5", "--out", str(events),
                                          "--truth", str(truth)])) == 0
    rows = [json.loads(line) for line in truth.read_text().splitlines()]
    assert len(rows) == 60 and set(rows[0]) >= {"account_id", "churned", "churned_at"}
    p = argparse.ArgumentParser()
    backtest.add_arguments(p)
    assert backtest.run(p.parse_args([str(events), "--truth", str(truth), "--out", str(out)])) == 0
    overall = json.loads(out.read_text())["overall_predictive"]
    assert overall["precision"] > 0 and overall["recall"] > 0 and overall["median_lead_days"] > 0


def test_a_backtest_split_over_processes_scores_the_same(tmp_path) -> None:
    events, truth = tmp_path / "w.jsonl", tmp_path / "t.jsonl"
    p = argparse.ArgumentParser()
    simulate_cli.add_arguments(p)
    simulate_cli.run(p.parse_args(["--accounts", "40", "--days", "90", "--seed", "3", "--out", str(events),
                                   "--truth", str(truth)]))
    lines = [line for line in events.read_bytes().splitlines() if line.strip()]
    truth_map = backtest.read_truth(truth)
    one, _ = backtest.backtest_lines(lines, truth_map, None, 60.0)
    split, _ = backtest.backtest_lines(lines, truth_map, None, 60.0, jobs=2)
    timing = ("replay_seconds", "replay_events_per_s")
    assert {k: v for k, v in split.items() if k not in timing} == {k: v for k, v in one.items() if k not in timing}
    assert one[backtest.OVERALL]["precision"] is not None
