"""`churnwatch backtest`: replay an event file, then score the alerts it raised against known churn (docs/backtest.md).

Scoring, for a group of triggers (one trigger, or every predictive account trigger together); an account's *first
alert* is the earliest `opened` record of the group:

- precision = alerted accounts that churned within `horizon_days` after their first alert / alerted accounts;
- recall    = churned accounts whose first alert came before the churn and at most `horizon_days` before it
              / churned accounts (the same true positives as precision's numerator);
- lead time = churn time - first alert, in days, over the true positives (median reported);
- alerts per 100 accounts per month = opened episodes / accounts * 100 / months.

`cancellation_scheduled` is not a prediction (the customer already said so) and portfolio alerts (account
`portfolio`) are not about one account: both are reported separately and left out of the overall score.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

from schemas.alerts import ACCOUNT_TRIGGERS, PORTFOLIO_ACCOUNT

NOT_PREDICTIVE = frozenset({"cancellation_scheduled"})
DAYS_PER_MONTH = 30.4375
OVERALL = "overall_predictive"


class BacktestError(Exception):
    """A one-line user-facing problem with backtest's inputs."""


def _when(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _field(alert: Any, name: str) -> Any:
    return alert.get(name) if isinstance(alert, Mapping) else getattr(alert, name)


def normalise_truth(truth: Any) -> dict[str, datetime | None]:
    """account id -> churn time (None: did not churn). Accepts a mapping, GroundTruth objects or truth-file dicts."""
    if isinstance(truth, Mapping):
        return {str(k): _when(v) for k, v in truth.items()}
    out: dict[str, datetime | None] = {}
    for row in truth:
        if isinstance(row, Mapping):
            out[str(row["account_id"])] = _when(row.get("churned_at")) if row.get("churned", True) else None
        else:
            out[row.account_id] = row.churns_on
    return out


def _score_group(first: dict[str, datetime], opened: int, churn: dict[str, datetime | None], horizon_days: float,
                 accounts: int, months: float) -> dict[str, Any]:
    churned = [a for a, t in churn.items() if t is not None]
    leads = []
    for account, at in first.items():
        ends = churn.get(account)
        if ends is None:
            continue
        lead = (ends - at).total_seconds() / 86400
        if 0 <= lead <= horizon_days:
            leads.append(lead)
    tp = len(leads)
    return {
        "alerted_accounts": len(first),
        "true_positives": tp,
        "churned_accounts": len(churned),
        "precision": tp / len(first) if first else None,
        "recall": tp / len(churned) if churned else None,
        "median_lead_days": statistics.median(leads) if leads else None,
        "opened_alerts": opened,
        "alerts_per_100_accounts_month": opened / accounts * 100 / months if accounts and months else None,
    }


def score(alerts: Iterable[Any], truth: Any, horizon_days: float, accounts: int, months: float) -> dict[str, Any]:
    """Score alert records (AlertRecord objects or dicts) against truth; pure. See the module docstring.

    Returns {"overall_predictive": {...}, "triggers": {trigger: {...}}, "portfolio": {trigger: count},
    "base_rate": churned / accounts, "horizon_days", "accounts", "months"}.
    """
    churn = normalise_truth(truth)
    first: dict[str, dict[str, datetime]] = defaultdict(dict)
    opened: Counter[str] = Counter()
    overall_first: dict[str, datetime] = {}
    portfolio: Counter[str] = Counter()
    for alert in alerts:
        if _field(alert, "transition") != "opened":
            continue
        trigger = str(_field(alert, "trigger"))
        account = str(_field(alert, "account_id"))
        if account == PORTFOLIO_ACCOUNT:
            portfolio[trigger] += 1
            continue
        at = _when(_field(alert, "occurred_at"))
        assert at is not None
        opened[trigger] += 1
        seen = first[trigger].get(account)
        if seen is None or at < seen:
            first[trigger][account] = at
        if trigger not in NOT_PREDICTIVE:
            seen = overall_first.get(account)
            if seen is None or at < seen:
                overall_first[account] = at
    triggers = {
        t: _score_group(first.get(t, {}), opened[t], churn, horizon_days, accounts, months)
        for t in sorted(set(first) | set(opened), key=lambda t: (ACCOUNT_TRIGGERS.index(t)
                                                                  if t in ACCOUNT_TRIGGERS else 99, t))
    }
    predictive_opened = sum(n for t, n in opened.items() if t not in NOT_PREDICTIVE)
    churned = sum(1 for t in churn.values() if t is not None)
    return {
        OVERALL: _score_group(overall_first, predictive_opened, churn, horizon_days, accounts, months),
        "triggers": triggers,
        "portfolio": dict(sorted(portfolio.items())),
        "base_rate": churned / accounts if accounts else None,
        "horizon_days": horizon_days,
        "accounts": accounts,
        "months": months,
    }


# --- running ------------------------------------------------------------------------------------------------


def read_truth(path: Path) -> dict[str, datetime | None]:
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return normalise_truth(rows)


def _event_span(lines: list[bytes]) -> tuple[datetime | None, datetime | None]:
    lo = hi = None
    for line in lines:
        try:
            at = orjson.loads(line).get("occurred_at")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if isinstance(at, str):
            lo = at if lo is None or at < lo else lo
            hi = at if hi is None or at > hi else hi
    return _when(lo), _when(hi)


def parse_grid(spec: str) -> tuple[list[str], list[Any]]:
    """'rules.inactivity.open_days=7,14,21' -> (['rules', 'inactivity', 'open_days'], [7, 14, 21])."""
    key, sep, values = spec.partition("=")
    path = [p for p in key.strip().split(".") if p]
    if not sep or not path or not values.strip():
        raise BacktestError(f"--grid {spec!r}: expected KEY.PATH=V1,V2,... (e.g. rules.inactivity.open_days=7,14)")
    if path[0] in ACCOUNT_TRIGGERS:  # "inactivity.open_days" means "rules.inactivity.open_days"
        path = ["rules", *path]
    return path, [yaml.safe_load(v.strip()) for v in values.split(",")]


def thresholds_override(base: Path | None, path: list[str], value: Any, directory: Path) -> Path:
    """A thresholds file = `base` (or nothing: the defaults) with one key set; load_thresholds merges it."""
    from streams.domain.thresholds import deep_merge

    data: dict[str, Any] = {}
    if base is not None:
        data = yaml.safe_load(base.read_text(encoding="utf-8")) or {}
    over: dict[str, Any] = {}
    node = over
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    merged = deep_merge(data, over)
    merged.setdefault("version", 1)
    out = directory / f"thresholds-{'.'.join(path)}-{value}.yaml"
    out.write_text(yaml.safe_dump(merged, sort_keys=True), encoding="utf-8")
    return out


def backtest_lines(lines: list[bytes], truth: dict[str, datetime | None], thresholds: Path | None,
                   horizon_days: float, jobs: int = 1) -> tuple[dict[str, Any], Any]:
    from streams.domain.aggregate import Rules
    from streams.domain.config import DomainConfig
    from streams.replay import replay_lines

    config = DomainConfig()
    try:
        rules = Rules.load(thresholds, config)
    except ValueError as exc:
        raise BacktestError(str(exc)) from None
    result = replay_lines(lines, config, rules=rules, jobs=jobs)  # alert order does not matter to score()
    lo, hi = _event_span(lines)
    days = (hi - lo).total_seconds() / 86400 if lo and hi else 0.0
    accounts = len(set(truth) | set(result.states))
    report = score(result.alerts, truth, horizon_days, accounts, max(days, 1.0) / DAYS_PER_MONTH)
    report["events"] = result.inputs
    report["replay_seconds"] = round(result.seconds, 3)
    report["replay_events_per_s"] = round(result.inputs / result.seconds) if result.seconds else None
    return report, result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("events", type=Path, help="canonical events JSONL (e.g. from `churnwatch simulate`)")
    p.add_argument("--truth", type=Path, required=True, help="truth JSONL: {account_id, churned, churned_at}")
    p.add_argument("--thresholds", type=Path, default=None, help="thresholds YAML (default: shipped defaults)")
    p.add_argument("--horizon-days", type=float, default=60.0, help="an alert counts if churn follows within this")
    p.add_argument("--grid", default=None, metavar="KEY=V1,V2",
                   help="re-run with one threshold varied, e.g. rules.inactivity.open_days=7,14,21")
    p.add_argument("--out", type=Path, default=None, help="write the scores as JSON to this file")
    from streams.replay import add_jobs_argument

    add_jobs_argument(p)


def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{value * 100:.1f}%"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _row(name: str, s: dict[str, Any]) -> list[str]:
    return [name, _fmt(s["precision"], "pct"), _fmt(s["recall"], "pct"), _fmt(s["median_lead_days"]),
            _fmt(s["alerts_per_100_accounts_month"]), str(s["alerted_accounts"]), str(s["true_positives"])]


COLUMNS = ("trigger", "precision", "recall", "median lead (d)", "alerts/100 acct/mo", "alerted", "TP")


def print_report(report: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    table = Table(title=(f"Backtest: {report['accounts']} accounts, {report['months']:.1f} months, horizon "
                         f"{report['horizon_days']:g} d, churn base rate {_fmt(report['base_rate'], 'pct')}"))
    for col in COLUMNS:
        table.add_column(col, no_wrap=True, justify="left" if col == "trigger" else "right")
    table.add_row(*_row(OVERALL, report[OVERALL]), style="bold")
    table.add_section()
    for trigger, s in report["triggers"].items():
        if trigger not in NOT_PREDICTIVE:
            table.add_row(*_row(trigger, s))
    table.add_section()
    for trigger, s in report["triggers"].items():
        if trigger in NOT_PREDICTIVE:
            table.add_row(*_row(f"{trigger} (not predictive)", s), style="dim")
    console.print(table)
    if report["portfolio"]:
        console.print("portfolio alerts (not scored): "
                      + ", ".join(f"{t} {n}" for t, n in report["portfolio"].items()))
    if report.get("replay_events_per_s"):
        console.print(f"replay: {report['events']} events in {report['replay_seconds']} s "
                      f"({report['replay_events_per_s']} events/s)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for path in (args.events, args.truth, args.thresholds):
        if path is not None and not path.is_file():
            raise BacktestError(f"{path}: file not found")
    truth = read_truth(args.truth)
    lines = [line for line in args.events.read_bytes().splitlines() if line.strip()]
    if args.grid is None:
        report, _ = backtest_lines(lines, truth, args.thresholds, args.horizon_days, args.jobs)
        print_report(report, console)
    else:
        path, values = parse_grid(args.grid)
        key = ".".join(path)
        rows = []
        with tempfile.TemporaryDirectory(prefix="churnwatch-backtest-") as tmp:
            for value in values:
                file = thresholds_override(args.thresholds, path, value, Path(tmp))
                one, _ = backtest_lines(lines, truth, file, args.horizon_days, args.jobs)
                rows.append({"value": value, **one})
        table = Table(title=f"Backtest grid over {key} (overall predictive; horizon {args.horizon_days:g} d)")
        for col in (key, *COLUMNS[1:]):
            table.add_column(col, justify="right", no_wrap=True)
        for row in rows:
            table.add_row(str(row["value"]), *_row("", row[OVERALL])[1:])
        console.print(table)
        report = {"grid": key, "rows": rows}
    if args.out:
        args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
        console.print(f"wrote {args.out}")
    return 0
