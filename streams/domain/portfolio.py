"""Company and cohort metrics from per-account cohort snapshots: the one computation live and replay share."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.domain.aggregate import NpsResponse
from streams.domain.cohorts import (
    CohortCell,
    CompanyMonth,
    by_segment,
    compute_metrics,
    highest_churn_age,
    second_month_retention,
    tally_nps,
    twelfth_month_retention,
)
from streams.domain.mrr import MrrLedger, decode_ledger


@dataclass
class Portfolio:
    """Every cohort and company figure, ready for Redis, HTTP, files and reports."""

    months: list[CompanyMonth] = field(default_factory=list)
    cells: list[CohortCell] = field(default_factory=list)
    segments: dict[str, tuple[list[CompanyMonth], list[CohortCell]]] = field(default_factory=dict)
    accounts: int = 0

    def months_json(self) -> list[dict[str, Any]]:
        return [m.as_dict() for m in self.months]

    def cells_json(self) -> list[dict[str, Any]]:
        return [c.as_dict() for c in self.cells]

    def summary_json(self) -> dict[str, Any]:
        return {
            "accounts": self.accounts,
            "highest_churn_age": highest_churn_age(self.cells),
            "second_month_retention": second_month_retention(self.cells),
            "twelfth_month_retention": twelfth_month_retention(self.cells),
            "segments": {
                seg: [m.as_dict() for m in months] for seg, (months, _cells) in sorted(self.segments.items())
            },
        }


def portfolio_alert_records(
    portfolio: Portfolio, thresholds: Any, *, final_until_s: float | None = None, lateness_days: int = 7
) -> list[Any]:
    """Portfolio alerts (company churn above benchmark, a cohort retaining worse than earlier cohorts, low
    company NPS) for every FINAL month, each stamped at the end of its month. A month is final once the
    event-time front `final_until_s` is past its end plus the lateness allowance (no event can change it any
    more); None means the input is complete (every month is final). Only final figures are published, so the
    worker (which recomputes periodically, and again after a restart) and replay publish the same records;
    consumers dedupe by record_id."""
    from streams.domain.alerts import portfolio_alerts

    out: list[Any] = []
    for month in sorted({m.month for m in portfolio.months if m.segment is None}):
        year, mon = int(month[:4]), int(month[5:7])
        next_month = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=UTC)
        if final_until_s is not None and next_month.timestamp() + lateness_days * 86400 > final_until_s:
            break  # this month and every later one can still change
        end = datetime.fromtimestamp(next_month.timestamp() - 1, tz=UTC)
        out.extend(portfolio_alerts(portfolio.months, portfolio.cells, thresholds, end, month=month))
    return out


def compute_portfolio(
    snapshots: Iterable[tuple[str, bytes]], *, gross_margin: float | None = None, through_month: str | None = None,
    pace: Callable[[], None] | None = None,
) -> Portfolio:
    """Decode (account id, cohort snapshot) pairs and compute all metrics in one batch pass. `pace`, when given,
    is called after each account's share of the work (see `compute_metrics`)."""
    ledgers: list[MrrLedger] = []
    responses: list[NpsResponse] = []
    segments: dict[str, str] = {}
    for account_id, raw in snapshots:
        snap = orjson.loads(raw)
        ledgers.append(decode_ledger(snap["ledger"]))
        segments[account_id] = snap["segment"]
        for at_s, event_id, user_id, score in snap["nps"]:
            when = datetime.fromtimestamp(at_s, tz=UTC)
            responses.append(NpsResponse(when, event_id, account_id, user_id, score))
        if pace is not None:
            pace()
    nps = tally_nps(responses)  # type: ignore[arg-type]
    # One pass for the company and every segment: with segments, compute_metrics sums each account-month into
    # the overall rows (segment None) and its segment's rows at once; a second pass without segments computed
    # the same overall rows again (about 40 % of this function's time).
    all_months, all_cells = compute_metrics(
        ledgers, nps, segments, gross_margin=gross_margin, through_month=through_month, pace=pace
    )
    months = [m for m in all_months if m.segment is None]
    cells = [c for c in all_cells if c.segment is None]
    return Portfolio(months, cells, by_segment(all_months, all_cells), len(ledgers))
