"""Readable terminal reports (rich): replay summary, monthly company metrics, the cohort retention grid."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from streams.domain.cohorts import CohortCell, CompanyMonth, highest_churn_age

if TYPE_CHECKING:
    from streams.replay import ReplayResult


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def _money(minor: int | None) -> str:
    return "" if minor is None else f"{minor / 100:,.0f}"


def company_table(months: list[CompanyMonth], last: int = 12) -> Table:
    t = Table(title="Company metrics by month (money in major units)")
    for col in ("month", "cust.", "new", "lost", "churn", "retent.", "MRR", "GRR", "NRR", "ARPU", "NPS"):
        t.add_column(col, justify="right")
    for m in [m for m in months if m.segment is None][-last:]:
        t.add_row(
            m.month, str(m.customers_end), str(m.new_customers + m.reactivated_customers),
            str(m.churned_customers), _pct(m.customer_churn_rate), _pct(m.customer_retention_rate),
            _money(m.mrr_end), _pct(m.gross_revenue_retention), _pct(m.net_revenue_retention),
            _money(m.arpu), "" if m.nps is None else f"{m.nps:.0f}",
        )
    return t


def cohort_grid(cells: list[CohortCell], max_age: int = 12) -> Table:
    """Customer retention by activation cohort (rows) and months since activation (columns)."""
    rows: dict[str, dict[int, CohortCell]] = {}
    for c in cells:
        if c.segment is None and c.age <= max_age:
            rows.setdefault(c.cohort, {})[c.age] = c
    ages = sorted({a for r in rows.values() for a in r})
    t = Table(title="Customer retention by activation cohort (months since first payment)")
    t.add_column("cohort")
    t.add_column("customers", justify="right")
    for a in ages:
        t.add_column(f"m{a}", justify="right")
    for cohort in sorted(rows):
        r = rows[cohort]
        first = r[min(r)]
        t.add_row(cohort, str(first.cohort_customers), *(_pct(r[a].customer_retention) if a in r else "" for a in ages))
    return t


def alerts_table(records: list) -> Table:
    """Alert transitions by trigger and severity (opened counts are episodes)."""
    from collections import Counter

    opened = Counter((r.trigger, r.severity) for r in records if r.transition == "opened")
    escalated = Counter(r.trigger for r in records if r.transition == "escalated")
    resolved = Counter((r.trigger, r.resolution_reason) for r in records if r.transition == "resolved")
    t = Table(title=f"Alerts: {sum(opened.values())} opened, {len(records)} transitions")
    for col in ("trigger", "low", "medium", "high", "critical", "escalated", "resolved (reasons)"):
        t.add_column(col, justify="right" if col not in ("trigger", "resolved (reasons)") else "left")
    for trigger in sorted({tr for tr, _ in opened} | {tr for tr, _ in resolved}):
        reasons = ", ".join(f"{reason} {n}" for (tr, reason), n in sorted(resolved.items()) if tr == trigger)
        t.add_row(trigger, *(str(opened.get((trigger, s), "")) for s in ("low", "medium", "high", "critical")),
                  str(escalated.get(trigger, "")), reasons)
    return t


def print_replay_report(result: ReplayResult, console: Console | None = None) -> None:
    console = console or Console()
    outcomes: dict[str, int] = {}
    for (_topic, _type, outcome), n in result.tally.items():
        outcomes[outcome] = outcomes.get(outcome, 0) + n
    rate = result.inputs / result.seconds if result.seconds else 0.0
    console.print(
        f"[bold]replay[/bold]: {result.inputs} inputs, {outcomes.get('processed', 0)} processed, "
        f"{outcomes.get('duplicate', 0)} duplicates, {outcomes.get('dead_lettered', 0)} dead letters, "
        f"{result.skipped} skipped, {result.rejected_before_decode} rejected by adapters; "
        f"{len(result.states)} accounts in {result.seconds:.2f}s ({rate:,.0f} events/s)"
    )
    if result.dead_letter_reasons:
        console.print("dead letters by reason: " + ", ".join(f"{r}={n}" for r, n in sorted(result.dead_letter_reasons.items())))
    if result.out_of_order:
        console.print(
            f"out of time order across the streams: {result.out_of_order['billing']} billing events after later usage "
            f"of their account, {result.out_of_order['usage']} usage events after later billing; alerts around them "
            "can differ from a time-ordered run (sort the input by occurred_at to compare)"
        )
    if result.alerts:
        console.print(alerts_table(result.alerts))
    p = result.portfolio
    if p is None or not p.months:
        return
    console.print(company_table(p.months))
    console.print(cohort_grid(p.cells))
    age = highest_churn_age(p.cells)
    if age is not None:
        console.print(f"cohort age with the highest churn rate: month {age} after activation")
