"""Company-month and activation-cohort metrics summed from per-account MonthFacts (see docs/metrics.md)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, NamedTuple

from schemas.events import NpsResponded
from streams.domain.engagement import DAY_S
from streams.domain.mrr import (
    MonthFacts,
    MrrLedger,
    account_month_facts,
    add_months,
    ledger_months,
    month_of,
    month_of_day,
    months_between,
    months_since_activation,
)

Counters = dict[str, int]

# Accounts missing from a segment mapping are grouped here.
UNKNOWN_SEGMENT = "unknown"

# Additive counters of a company month (money in minor units, everything else counts of accounts/responses).
MONTH_COUNTERS: tuple[str, ...] = (
    "customers_start",
    "customers_end",
    "retained_customers",
    "new_customers",
    "churned_customers",
    "reactivated_customers",
    "mrr_start",
    "mrr_end",
    "new_mrr",
    "expansion_mrr",
    "contraction_mrr",
    "churned_mrr",
    "reactivation_mrr",
    "trials_started",
    "trials_converted",
    "nps_promoters",
    "nps_passives",
    "nps_detractors",
)
# Additive counters of a cohort cell: each account adds 1 to cohort_customers and its activation MRR to
# cohort_mrr in EVERY month of its cohort, so a cell carries its own denominators.
CELL_COUNTERS: tuple[str, ...] = (
    "cohort_customers",
    "cohort_mrr",
    "capped_mrr_end",
    "customers_start",
    "customers_end",
    "retained_customers",
    "new_customers",
    "churned_customers",
    "reactivated_customers",
    "mrr_start",
    "mrr_end",
    "new_mrr",
    "expansion_mrr",
    "contraction_mrr",
    "churned_mrr",
    "reactivation_mrr",
)
_MONTH_SET = frozenset(MONTH_COUNTERS)
_CELL_SET = frozenset(CELL_COUNTERS)
# What a month with no change looks like, derived from the previous month's totals: target <- source.
_STEADY_CARRY: tuple[tuple[str, str], ...] = (
    ("customers_start", "customers_end"),
    ("customers_end", "customers_end"),
    ("retained_customers", "customers_end"),
    ("mrr_start", "mrr_end"),
    ("mrr_end", "mrr_end"),
    ("cohort_customers", "cohort_customers"),
    ("cohort_mrr", "cohort_mrr"),
    ("capped_mrr_end", "capped_mrr_end"),
)


class AggregateKey(NamedTuple):
    """Where a contribution is summed: a company month (cohort None) or a cohort cell, per segment."""

    segment: str | None  # None = all accounts
    month: str  # calendar month "YYYY-MM"
    cohort: str | None  # None = the company month; else the cell (cohort, age = month - cohort)


# --- business rules (rates are fractions; None when the denominator is 0) ------------------------


def customer_churn_rate(customers_start: int, churned_customers: int) -> float | None:
    """Customers lost in the month / customers at the start of the month."""
    return churned_customers / customers_start if customers_start else None


def customer_retention_rate(
    customers_start: int, customers_end: int, new_customers: int, reactivated_customers: int
) -> float | None:
    """(customers at end - new in period) / customers at start; new = new + reactivated (= retained/start)."""
    if not customers_start:
        return None
    return (customers_end - new_customers - reactivated_customers) / customers_start


def gross_revenue_retention(mrr_start: int, contraction_mrr: int, churned_mrr: int) -> float | None:
    """(MRR_start - contraction - churned MRR) / MRR_start."""
    return (mrr_start - contraction_mrr - churned_mrr) / mrr_start if mrr_start else None


def net_revenue_retention(
    mrr_start: int, expansion_mrr: int, contraction_mrr: int, churned_mrr: int
) -> float | None:
    """(MRR_start + expansion - contraction - churned MRR) / MRR_start; new and reactivation excluded."""
    return (mrr_start + expansion_mrr - contraction_mrr - churned_mrr) / mrr_start if mrr_start else None


def revenue_churn(mrr_start: int, contraction_mrr: int, churned_mrr: int) -> float | None:
    """(contraction + churned MRR) / MRR_start."""
    return (contraction_mrr + churned_mrr) / mrr_start if mrr_start else None


def round_half_up(value: Fraction) -> int:
    """Money ratios are rounded to the minor unit, halves away from zero (values here are >= 0)."""
    return math.floor(value + Fraction(1, 2))


def arpu(mrr_end: int, customers_end: int) -> int | None:
    """MRR / paying customers at the month end, minor units (rounded half up)."""
    return round_half_up(Fraction(mrr_end, customers_end)) if customers_end else None


def ltv(
    mrr_end: int,
    customers_end: int,
    customers_start: int,
    churned_customers: int,
    gross_margin: float | None = None,
) -> int | None:
    """ARPU / monthly customer churn rate (x gross margin), minor units; exact ARPU, rounded once at the end.

    None when nobody churned (LTV unbounded) or there are no customers.
    """
    if not customers_end or not customers_start or not churned_customers:
        return None
    value = Fraction(mrr_end * customers_start, customers_end * churned_customers)
    if gross_margin is not None:
        value *= Fraction(gross_margin)
    return round_half_up(value)


def nps_category(score: int) -> str:
    """9-10 promoter, 7-8 passive, 0-6 detractor."""
    if score >= 9:
        return "promoter"
    if score >= 7:
        return "passive"
    return "detractor"


def nps_score(promoters: int, passives: int, detractors: int) -> float | None:
    """% promoters - % detractors, -100..100 (not a fraction, by convention); None without responses."""
    total = promoters + passives + detractors
    return (promoters - detractors) * 100 / total if total else None


def highest_churn_age(cells: Iterable[CohortCell], segment: str | None = None) -> int | None:
    """The cohort age with the highest customer churn rate (churned / customers at start, over cohorts).

    Pass one calendar month's cells for that month's answer, or all cells for the overall one. Ties go to the
    youngest age; None when no age lost anyone.
    """
    churned: dict[int, int] = {}
    started: dict[int, int] = {}
    for cell in cells:
        if cell.segment != segment:
            continue
        churned[cell.age] = churned.get(cell.age, 0) + cell.churned
        started[cell.age] = started.get(cell.age, 0) + cell.customers_start
    best: int | None = None
    best_rate = 0.0
    for age in sorted(started):
        if started[age] and churned[age]:
            rate = churned[age] / started[age]
            if rate > best_rate:
                best, best_rate = age, rate
    return best


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NpsTally:
    """Latest response per user, counted by category (one account-month, or any sum of them)."""

    promoters: int = 0
    passives: int = 0
    detractors: int = 0

    @property
    def responses(self) -> int:
        return self.promoters + self.passives + self.detractors

    @property
    def nps(self) -> float | None:
        return nps_score(self.promoters, self.passives, self.detractors)


@dataclass(frozen=True, slots=True)
class CohortCell:
    """One activation cohort at one age (months since activation; 0 = the activation month)."""

    segment: str | None
    cohort: str
    age: int
    month: str
    cohort_customers: int  # accounts whose activation month is `cohort`
    cohort_mrr: int  # their MRR at the end of the activation month, minor units
    customers_start: int
    retained: int
    churned: int
    reactivated: int
    new: int
    customers_end: int
    mrr_start: int
    mrr_end: int
    new_mrr: int
    expansion_mrr: int
    contraction_mrr: int
    churned_mrr: int
    reactivation_mrr: int
    capped_mrr_end: int  # sum over accounts of min(MRR at month end, activation MRR)
    customer_retention: float | None  # customers_end / cohort_customers
    customer_churn_rate: float | None  # churned / customers_start (this month)
    gross_revenue_retention_mom: float | None  # month over month, as the company figure
    net_revenue_retention_mom: float | None
    gross_revenue_retention_cumulative: float | None  # capped_mrr_end / cohort_mrr
    net_revenue_retention_cumulative: float | None  # mrr_end / cohort_mrr

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in CohortCell.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class CompanyMonth:
    """Company-level (or one segment's) figures for one calendar month."""

    segment: str | None
    month: str
    customers_start: int
    customers_end: int
    new_customers: int
    churned_customers: int
    reactivated_customers: int
    retained_customers: int
    customer_churn_rate: float | None
    customer_retention_rate: float | None
    mrr_start: int
    mrr_end: int
    new_mrr: int
    expansion_mrr: int
    contraction_mrr: int
    churned_mrr: int
    reactivation_mrr: int
    gross_revenue_retention: float | None
    net_revenue_retention: float | None
    revenue_churn: float | None
    arpu: int | None  # minor units
    arr: int  # mrr_end x 12, minor units
    ltv: int | None  # minor units
    nps: float | None  # -100..100
    nps_responses: int
    trials_started: int  # counted trials that started in this month
    trials_converted: int  # ... of which became paying customers (at any later month end)
    trial_conversion_rate: float | None
    highest_churn_age: int | None  # among this month's cohort cells
    cohort_mrr_share: dict[str, float]  # cohort -> share of mrr_end

    @property
    def paying_customers(self) -> int:
        return self.customers_end

    def as_dict(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "customers_start": self.customers_start,
            "customers_end": self.customers_end,
            "new_customers": self.new_customers,
            "churned_customers": self.churned_customers,
            "reactivated_customers": self.reactivated_customers,
            "customer_churn_rate": self.customer_churn_rate,
            "customer_retention_rate": self.customer_retention_rate,
            "mrr_start": self.mrr_start,
            "mrr_end": self.mrr_end,
            "new_mrr": self.new_mrr,
            "expansion_mrr": self.expansion_mrr,
            "contraction_mrr": self.contraction_mrr,
            "churned_mrr": self.churned_mrr,
            "reactivation_mrr": self.reactivation_mrr,
            "gross_revenue_retention": self.gross_revenue_retention,
            "net_revenue_retention": self.net_revenue_retention,
            "arpu": self.arpu,
            "nps": self.nps,
            # extras
            "arr": self.arr,
            "ltv": self.ltv,
            "revenue_churn": self.revenue_churn,
            "paying_customers": self.paying_customers,
            "cohort_mrr_share": dict(self.cohort_mrr_share),
            "segment": self.segment,
            "retained_customers": self.retained_customers,
            "nps_responses": self.nps_responses,
            "trials_started": self.trials_started,
            "trials_converted": self.trials_converted,
            "trial_conversion_rate": self.trial_conversion_rate,
            "highest_churn_age": self.highest_churn_age,
        }


# --- the incremental-aggregation contract ------------------------------------------------------


def contribution(facts: MonthFacts) -> Counters:
    """One account-month as additive counters (zeros omitted): the union of month and cell counters."""
    raw = {
        "customers_start": int(facts.paying_at_start),
        "customers_end": int(facts.paying_at_end),
        "retained_customers": int(facts.paying_at_start and facts.paying_at_end),
        "new_customers": int(facts.new),
        "churned_customers": int(facts.churned),
        "reactivated_customers": int(facts.reactivated),
        "mrr_start": facts.mrr_start,
        "mrr_end": facts.mrr_end,
        "new_mrr": facts.new_mrr,
        "expansion_mrr": facts.expansion_mrr,
        "contraction_mrr": facts.contraction_mrr,
        "churned_mrr": facts.churned_mrr,
        "reactivation_mrr": facts.reactivation_mrr,
        "trials_started": int(facts.trial_started),
        "trials_converted": int(facts.trial_converted),
    }
    if facts.cohort is not None:
        raw["cohort_customers"] = 1
        raw["cohort_mrr"] = facts.activation_mrr
        raw["capped_mrr_end"] = min(facts.mrr_end, facts.activation_mrr)
    return {name: value for name, value in raw.items() if value}


def keyed_contributions(facts: MonthFacts, segment: str | None = None) -> list[tuple[AggregateKey, Counters]]:
    """Where one account-month is summed: the company month and its cohort cell, overall and for `segment`."""
    counters = contribution(facts)
    month_part = {k: v for k, v in counters.items() if k in _MONTH_SET}
    cell_part = {k: v for k, v in counters.items() if k in _CELL_SET} if facts.cohort is not None else None
    out: list[tuple[AggregateKey, Counters]] = []
    for seg in (None, segment) if segment is not None else (None,):
        if month_part:
            out.append((AggregateKey(seg, facts.month, None), month_part))
        if cell_part:
            out.append((AggregateKey(seg, facts.month, facts.cohort), cell_part))
    return out


def nps_contribution(tally: NpsTally) -> Counters:
    """One account-month's NPS tally as company-month counters (zeros omitted)."""
    raw = {
        "nps_promoters": tally.promoters,
        "nps_passives": tally.passives,
        "nps_detractors": tally.detractors,
    }
    return {name: value for name, value in raw.items() if value}


def keyed_nps_contributions(
    month: str, tally: NpsTally, segment: str | None = None
) -> list[tuple[AggregateKey, Counters]]:
    """Where one account-month's NPS tally is summed: the company month, overall and for `segment`."""
    counters = nps_contribution(tally)
    return [(AggregateKey(seg, month, None), counters) for seg in ((None, segment) if segment is not None else (None,))]


def apply_delta(
    cell: Mapping[str, int],
    old_contribution: Mapping[str, int] | None,
    new_contribution: Mapping[str, int] | None,
) -> Counters:
    """cell - old + new, as a new dict without zero entries (the caller assigns it back to its table)."""
    out = dict(cell)
    if old_contribution:
        for name, value in old_contribution.items():
            out[name] = out.get(name, 0) - value
    if new_contribution:
        for name, value in new_contribution.items():
            out[name] = out.get(name, 0) + value
    return {name: value for name, value in out.items() if value}


def roll_forward(key: AggregateKey, counters: Mapping[str, int]) -> tuple[AggregateKey, Counters]:
    """The next month's totals if no account in this aggregate had any change: the seed of a new month.

    Every account keeps its month-end MRR; a cohort cell moves to age + 1 with the same denominators.
    """
    out = {target: counters.get(source, 0) for target, source in _STEADY_CARRY}
    return key._replace(month=add_months(key.month, 1)), {k: v for k, v in out.items() if v}


# --- from totals to rows -----------------------------------------------------------------------


def cohort_cell(key: AggregateKey, counters: Mapping[str, int]) -> CohortCell:
    if key.cohort is None:
        raise ValueError("a company-month key is not a cohort cell")
    c = counters.get
    cohort_customers, cohort_mrr = c("cohort_customers", 0), c("cohort_mrr", 0)
    mrr_start, mrr_end = c("mrr_start", 0), c("mrr_end", 0)
    expansion, contraction, churned_mrr = c("expansion_mrr", 0), c("contraction_mrr", 0), c("churned_mrr", 0)
    return CohortCell(
        segment=key.segment,
        cohort=key.cohort,
        age=months_since_activation(key.cohort, key.month),
        month=key.month,
        cohort_customers=cohort_customers,
        cohort_mrr=cohort_mrr,
        customers_start=c("customers_start", 0),
        retained=c("retained_customers", 0),
        churned=c("churned_customers", 0),
        reactivated=c("reactivated_customers", 0),
        new=c("new_customers", 0),
        customers_end=c("customers_end", 0),
        mrr_start=mrr_start,
        mrr_end=mrr_end,
        new_mrr=c("new_mrr", 0),
        expansion_mrr=expansion,
        contraction_mrr=contraction,
        churned_mrr=churned_mrr,
        reactivation_mrr=c("reactivation_mrr", 0),
        capped_mrr_end=c("capped_mrr_end", 0),
        customer_retention=c("customers_end", 0) / cohort_customers if cohort_customers else None,
        customer_churn_rate=customer_churn_rate(c("customers_start", 0), c("churned_customers", 0)),
        gross_revenue_retention_mom=gross_revenue_retention(mrr_start, contraction, churned_mrr),
        net_revenue_retention_mom=net_revenue_retention(mrr_start, expansion, contraction, churned_mrr),
        gross_revenue_retention_cumulative=c("capped_mrr_end", 0) / cohort_mrr if cohort_mrr else None,
        net_revenue_retention_cumulative=mrr_end / cohort_mrr if cohort_mrr else None,
    )


def company_month(
    key: AggregateKey,
    counters: Mapping[str, int],
    cells: Iterable[CohortCell] = (),
    *,
    gross_margin: float | None = None,
) -> CompanyMonth:
    """Finalise one company month; `cells` are the same month's and segment's cohort cells."""
    if key.cohort is not None:
        raise ValueError("a cohort-cell key is not a company month")
    c = counters.get
    start, end = c("customers_start", 0), c("customers_end", 0)
    new, churned, reactivated = (
        c("new_customers", 0),
        c("churned_customers", 0),
        c("reactivated_customers", 0),
    )
    mrr_start, mrr_end = c("mrr_start", 0), c("mrr_end", 0)
    expansion, contraction, churned_mrr = c("expansion_mrr", 0), c("contraction_mrr", 0), c("churned_mrr", 0)
    promoters, passives, detractors = c("nps_promoters", 0), c("nps_passives", 0), c("nps_detractors", 0)
    trials, converted = c("trials_started", 0), c("trials_converted", 0)
    month_cells = [cell for cell in cells if cell.month == key.month and cell.segment == key.segment]
    share = {cell.cohort: cell.mrr_end / mrr_end for cell in month_cells if cell.mrr_end and mrr_end}
    return CompanyMonth(
        segment=key.segment,
        month=key.month,
        customers_start=start,
        customers_end=end,
        new_customers=new,
        churned_customers=churned,
        reactivated_customers=reactivated,
        retained_customers=c("retained_customers", 0),
        customer_churn_rate=customer_churn_rate(start, churned),
        customer_retention_rate=customer_retention_rate(start, end, new, reactivated),
        mrr_start=mrr_start,
        mrr_end=mrr_end,
        new_mrr=c("new_mrr", 0),
        expansion_mrr=expansion,
        contraction_mrr=contraction,
        churned_mrr=churned_mrr,
        reactivation_mrr=c("reactivation_mrr", 0),
        gross_revenue_retention=gross_revenue_retention(mrr_start, contraction, churned_mrr),
        net_revenue_retention=net_revenue_retention(mrr_start, expansion, contraction, churned_mrr),
        revenue_churn=revenue_churn(mrr_start, contraction, churned_mrr),
        arpu=arpu(mrr_end, end),
        arr=mrr_end * 12,
        ltv=ltv(mrr_end, end, start, churned, gross_margin),
        nps=nps_score(promoters, passives, detractors),
        nps_responses=promoters + passives + detractors,
        trials_started=trials,
        trials_converted=converted,
        trial_conversion_rate=converted / trials if trials else None,
        highest_churn_age=highest_churn_age(month_cells, key.segment),
        cohort_mrr_share=dict(sorted(share.items())),
    )


def _segment_order(segment: str | None) -> tuple[bool, str]:
    return (segment is not None, segment or "")


def build_metrics(
    totals: Mapping[AggregateKey, Mapping[str, int]], *, gross_margin: float | None = None
) -> tuple[list[CompanyMonth], list[CohortCell]]:
    """Rows from aggregate totals (batch or incrementally maintained); empty cells are skipped."""
    cells = [
        cohort_cell(key, counters) for key, counters in totals.items() if key.cohort is not None and counters
    ]
    cells.sort(key=lambda cell: (_segment_order(cell.segment), cell.cohort, cell.age))
    by_month: dict[tuple[str | None, str], list[CohortCell]] = {}
    for cell in cells:
        by_month.setdefault((cell.segment, cell.month), []).append(cell)
    months = [
        company_month(key, counters, by_month.get((key.segment, key.month), ()), gross_margin=gross_margin)
        for key, counters in totals.items()
        if key.cohort is None
    ]
    months.sort(key=lambda m: (_segment_order(m.segment), m.month))
    return months, cells


def _add_into(totals: dict[AggregateKey, Counters], key: AggregateKey, counters: Mapping[str, int]) -> None:
    # Batch-only fast path of apply_delta(totals[key], None, counters): same sums, no copies.
    target = totals.setdefault(key, {})
    for name, value in counters.items():
        target[name] = target.get(name, 0) + value


class LedgerBounds(NamedTuple):
    """What `month_range` needs of a ledger with history: its first and newest month, and whether its history
    was truncated (it can report only from its first retained month)."""

    first_month: str
    last_month: str
    truncated: bool


def ledger_bounds(ledger: MrrLedger) -> LedgerBounds:
    assert ledger.first_month is not None
    return LedgerBounds(ledger.first_month, ledger_months(ledger)[-1], ledger.history_truncated)


def month_range(
    bounds: Iterable[LedgerBounds], from_month: str | None = None, through_month: str | None = None
) -> tuple[str, str]:
    """The months the figures cover, unless given: from the earliest month every ledger (with history) can still
    report (a ledger whose history was truncated starts there) through the newest event's month."""
    if from_month is not None and through_month is not None:
        return from_month, through_month
    bounds = list(bounds)
    if through_month is None:
        through_month = max(b.last_month for b in bounds)
    if from_month is None:
        from_month = min(b.first_month for b in bounds)
        truncated = [b.first_month for b in bounds if b.truncated]
        if truncated:
            from_month = max(from_month, *truncated)
    return from_month, through_month


def empty_months(from_month: str, through_month: str, segment_values: Iterable[str]) -> dict[AggregateKey, Counters]:
    """Totals with an empty company month for every month and segment: a month without figures is still a row."""
    totals: dict[AggregateKey, Counters] = {}
    for month in months_between(from_month, through_month):
        for seg in (None, *segment_values):
            totals[AggregateKey(seg, month, None)] = {}
    return totals


def account_contributions(
    ledger: MrrLedger, segment: str | None, from_month: str, through_month: str
) -> list[tuple[AggregateKey, Counters]]:
    """Where one account's months from `from_month` through `through_month` are summed (`keyed_contributions`)."""
    assert ledger.first_month is not None
    out: list[tuple[AggregateKey, Counters]] = []
    for month in months_between(max(from_month, ledger.first_month), through_month):
        out.extend(keyed_contributions(account_month_facts(ledger, month), segment))
    return out


def compute_metrics(
    ledgers: Iterable[MrrLedger],
    nps_by_month: Mapping[str, Mapping[str, NpsTally]] | None = None,
    segments: Mapping[str, str] | None = None,
    *,
    gross_margin: float | None = None,
    from_month: str | None = None,
    through_month: str | None = None,
    pace: Callable[[], None] | None = None,
) -> tuple[list[CompanyMonth], list[CohortCell]]:
    """Batch entry point (replay): every account's facts for every month, summed and finalised.

    `nps_by_month` is month -> account id -> tally (see `tally_nps`). With `segments` (account id -> value;
    missing accounts go to UNKNOWN_SEGMENT) the rows of every segment follow the overall rows (segment None).
    Months default to the earliest month every ledger can still report through the newest event's month.
    `pace`, when given, is called after each account (the worker's refresh thread lets the event loop run).
    """
    ledgers = list(ledgers)
    known = [ledger for ledger in ledgers if ledger.first_month is not None]
    if not known:
        return [], []
    from_month, through_month = month_range(map(ledger_bounds, known), from_month, through_month)
    segment_values = (
        sorted({segments.get(ledger.account_id, UNKNOWN_SEGMENT) for ledger in ledgers}) if segments else []
    )
    totals = empty_months(from_month, through_month, segment_values)
    for ledger in known:
        segment = segments.get(ledger.account_id, UNKNOWN_SEGMENT) if segments else None
        for key, counters in account_contributions(ledger, segment, from_month, through_month):
            _add_into(totals, key, counters)
        if pace is not None:
            pace()
    for month, per_account in (nps_by_month or {}).items():
        if not from_month <= month <= through_month:
            continue
        for account_id, tally in per_account.items():
            segment = segments.get(account_id, UNKNOWN_SEGMENT) if segments else None
            for key, counters in keyed_nps_contributions(month, tally, segment):
                _add_into(totals, key, counters)
    return build_metrics(totals, gross_margin=gross_margin)


def segment_breakdown(
    ledgers: Iterable[MrrLedger],
    segments: Mapping[str, str],
    *,
    nps_by_month: Mapping[str, Mapping[str, NpsTally]] | None = None,
    gross_margin: float | None = None,
    from_month: str | None = None,
    through_month: str | None = None,
) -> dict[str, tuple[list[CompanyMonth], list[CohortCell]]]:
    """The same company-month and cohort figures (retention, churn, LTV, ...) per segment value."""
    months, cells = compute_metrics(
        ledgers,
        nps_by_month,
        segments,
        gross_margin=gross_margin,
        from_month=from_month,
        through_month=through_month,
    )
    return by_segment(months, cells)


def by_segment(
    months: Iterable[CompanyMonth], cells: Iterable[CohortCell]
) -> dict[str, tuple[list[CompanyMonth], list[CohortCell]]]:
    """compute_metrics' rows with a segment, per segment value (the overall rows, segment None, left out)."""
    out: dict[str, tuple[list[CompanyMonth], list[CohortCell]]] = {}
    for m in months:
        if m.segment is not None:
            out.setdefault(m.segment, ([], []))[0].append(m)
    for cell in cells:
        if cell.segment is not None:
            out.setdefault(cell.segment, ([], []))[1].append(cell)
    return out


# --- derived views -----------------------------------------------------------------------------


def cohort_retention_at(
    cells: Iterable[CohortCell], age: int, segment: str | None = None
) -> dict[str, float | None]:
    """cohort -> customer retention (customers paying at the end of `age` / cohort customers)."""
    return {
        cell.cohort: cell.customer_retention for cell in cells if cell.age == age and cell.segment == segment
    }


def second_month_retention(
    cells: Iterable[CohortCell], segment: str | None = None
) -> dict[str, float | None]:
    """Retention at the end of the second subscription month (age 1; the activation month is month 1)."""
    return cohort_retention_at(cells, 1, segment)


def twelfth_month_retention(
    cells: Iterable[CohortCell], segment: str | None = None
) -> dict[str, float | None]:
    """Retention at the end of the twelfth subscription month (age 11)."""
    return cohort_retention_at(cells, 11, segment)


def trial_conversion_by_month(
    months: Iterable[CompanyMonth], segment: str | None = None
) -> dict[str, float | None]:
    """trial start month -> share of its counted trials that became paying customers (months with trials)."""
    return {m.month: m.trial_conversion_rate for m in months if m.segment == segment and m.trials_started}


def tally_nps(responses: Iterable[NpsResponded]) -> dict[str, dict[str, NpsTally]]:
    """month -> account id -> tally, counting each (account, user)'s latest response in that month."""
    return _tally_latest(
        (month_of(r.occurred_at), r.account_id, r.user_id, r.occurred_at, r.event_id, r.score) for r in responses
    )


def tally_nps_rows(account_id: str, rows: Iterable[list[Any] | tuple[int, str, str, int]]
                   ) -> dict[str, dict[str, NpsTally]]:
    """`tally_nps` of one account's kept NPS answers as its cohort snapshot lists them: [at_s (whole epoch
    seconds), event_id, user_id, score]. No datetime or response object is built per answer: building them was
    ~7 % of a portfolio refresh from nothing (ADR 0003, addendum)."""
    return _tally_latest(
        (month_of_day(int(at_s) // DAY_S), account_id, user_id, at_s, event_id, score)
        for at_s, event_id, user_id, score in rows
    )


def _tally_latest(answers: Iterable[tuple[str, str, str, Any, str, int]]) -> dict[str, dict[str, NpsTally]]:
    """(month, account id, user id, when, event id, score) answers -> month -> account id -> tally, counting each
    (account, user)'s latest answer in a month, latest by (when, event id)."""
    latest: dict[tuple[str, str, str], tuple[Any, str, int]] = {}
    for month, account_id, user_id, at, event_id, score in answers:
        key = (month, account_id, user_id)
        seen = latest.get(key)
        candidate = (at, event_id, score)
        if seen is None or candidate[:2] > seen[:2]:
            latest[key] = candidate
    counts: dict[str, dict[str, list[int]]] = {}
    for (month, account_id, _user), (_at, _id, score) in latest.items():
        slot = counts.setdefault(month, {}).setdefault(account_id, [0, 0, 0])
        slot[("promoter", "passive", "detractor").index(nps_category(score))] += 1
    return {
        month: {account: NpsTally(*slot) for account, slot in sorted(per.items())}
        for month, per in sorted(counts.items())
    }
