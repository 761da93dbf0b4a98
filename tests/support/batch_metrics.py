"""Independent batch metrics from raw canonical events (daily MRR timelines); shares no code with streams/."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

# Written from docs/metrics.md, deliberately by another route than streams/domain: every account's MRR is
# rebuilt day by day, and a month's figures come from the day values at the month's last day.

SNAPSHOT_TYPES = {
    "subscription.started",
    "subscription.changed",
    "subscription.renewed",
    "subscription.reactivated",
    "trial.converted",
}


def ym(d: date | datetime) -> str:
    return f"{d.year:04d}-{d.month:02d}"


def shift(month: str, n: int) -> str:
    y, m = int(month[:4]), int(month[5:7])
    total = y * 12 + (m - 1) + n
    return f"{total // 12:04d}-{total % 12 + 1:02d}"


def month_range(first: str, last: str) -> list[str]:
    out = []
    m = first
    while m <= last:
        out.append(m)
        m = shift(m, 1)
    return out


def last_day(month: str) -> date:
    nxt = shift(month, 1)
    return date(int(nxt[:4]), int(nxt[5:7]), 1) - timedelta(days=1)


@dataclass
class Sub:
    """The subscription as the docs describe it: effective MRR, contracted MRR, status."""

    mrr: int = 0
    contracted: int = 0
    status: str = "none"

    def feed(self, e: Any) -> None:
        t = e.type
        if t in SNAPSHOT_TYPES:
            self.mrr = self.contracted = e.mrr
            self.status = "active"
        elif t == "subscription.canceled":
            self.mrr = self.contracted = 0
            self.status = "canceled"
        elif t == "subscription.paused" and self.status == "active":
            self.mrr = 0
            self.status = "paused"
        elif t == "subscription.resumed" and self.status == "paused":
            self.mrr = self.contracted
            self.status = "active"
        elif t == "trial.started" and self.mrr == 0 and self.status != "paused":
            self.status = "trialing"
        elif t == "trial.expired" and self.status == "trialing":
            self.status = "trial_expired"


@dataclass
class Account:
    account_id: str
    month_end: dict[str, int] = field(default_factory=dict)  # every month of the range
    first_paid: str | None = None
    activation_mrr: int = 0
    trial_month: str | None = None

    def start(self, month: str) -> int:
        return self.month_end.get(shift(month, -1), 0)


def dedupe(events: Iterable[Any]) -> list[Any]:
    seen: set[str] = set()
    out = []
    for e in events:
        if e.event_id not in seen:
            seen.add(e.event_id)
            out.append(e)
    return out


def daily_mrr(events: list[Any], first: date, last: date) -> dict[date, int]:
    """MRR at the end of every UTC day from first to last (events applied in (time, id) order)."""
    ordered = sorted(events, key=lambda e: (e.occurred_at, e.event_id))
    sub = Sub()
    out: dict[date, int] = {}
    i = 0
    day = first
    while day <= last:
        midnight_after = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        while i < len(ordered) and ordered[i].occurred_at < midnight_after:
            sub.feed(ordered[i])
            i += 1
        out[day] = sub.mrr
        day += timedelta(days=1)
    return out


def build_accounts(billing: list[Any], first_month: str, last_month: str) -> dict[str, Account]:
    by_account: dict[str, list[Any]] = defaultdict(list)
    for e in billing:
        by_account[e.account_id].append(e)
    accounts = {}
    first_day = date(int(first_month[:4]), int(first_month[5:7]), 1)
    # Replay from the earliest event so months before the reported range still set the opening state.
    for account_id, evs in by_account.items():
        earliest = min(e.occurred_at for e in evs).date()
        timeline = daily_mrr(evs, min(earliest, first_day), last_day(last_month))
        acc = Account(account_id)
        span_first = min(ym(earliest), first_month)
        for m in month_range(span_first, last_month):
            acc.month_end[m] = timeline.get(last_day(m), 0)
        paying = [m for m in month_range(span_first, last_month) if acc.month_end[m] > 0]
        if paying:
            acc.first_paid = paying[0]
            acc.activation_mrr = acc.month_end[paying[0]]
        trials = [ym(e.occurred_at) for e in evs if e.type == "trial.started"]
        acc.trial_month = min(trials) if trials else None
        accounts[account_id] = acc
    return accounts


def movement(start: int, end: int, paid_before: bool) -> dict[str, int]:
    """Net classification of one account-month, by the sign of the change."""
    out = {"new": 0, "expansion": 0, "contraction": 0, "churn": 0, "reactivation": 0}
    delta = end - start
    if delta == 0:
        return out
    if start > 0 and end > 0:
        out["expansion" if delta > 0 else "contraction"] = abs(delta)
    elif start > 0:
        out["churn"] = start
    else:
        out["reactivation" if paid_before else "new"] = end
    return out


def money_half_up(numerator: Decimal) -> int:
    return int(numerator.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def months_between_count(a: str, b: str) -> int:
    return (int(b[:4]) - int(a[:4])) * 12 + int(b[5:7]) - int(a[5:7])


@dataclass
class BatchResult:
    months: dict[tuple[str | None, str], dict[str, Any]]
    cells: dict[tuple[str | None, str, int], dict[str, Any]]


def compute_batch(
    events: Iterable[Any],
    *,
    first_month: str,
    last_month: str,
    segments: Mapping[str, str] | None = None,
    gross_margin: float | None = None,
) -> BatchResult:
    """Company months and cohort cells for [first_month, last_month]: overall (segment None), per segment."""
    events = dedupe(events)
    billing = [e for e in events if _is_billing(e)]
    nps = [e for e in events if e.type == "nps.responded"]
    accounts = build_accounts(billing, first_month, last_month)
    months = month_range(first_month, last_month)

    def seg_of(account_id: str) -> str:
        return segments.get(account_id, "unknown") if segments else "unknown"

    groups: list[str | None] = [None]
    if segments:
        groups += sorted({seg_of(a) for a in accounts})

    month_rows: dict[tuple[str | None, str], dict[str, Any]] = {}
    cell_rows: dict[tuple[str | None, str, int], dict[str, Any]] = {}
    for group in groups:
        members = [a for a in accounts.values() if group is None or seg_of(a.account_id) == group]
        for m in months:
            sums: dict[str, int] = defaultdict(int)
            cells: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            for a in members:
                s, e = a.start(m), a.month_end[m]
                paid_before = a.first_paid is not None and a.first_paid < m
                mv = movement(s, e, paid_before)
                row = {
                    "customers_start": int(s > 0),
                    "customers_end": int(e > 0),
                    "retained": int(s > 0 and e > 0),
                    "new": int(mv["new"] > 0),
                    "churned": int(mv["churn"] > 0),
                    "reactivated": int(mv["reactivation"] > 0),
                    "mrr_start": s,
                    "mrr_end": e,
                    "new_mrr": mv["new"],
                    "expansion_mrr": mv["expansion"],
                    "contraction_mrr": mv["contraction"],
                    "churned_mrr": mv["churn"],
                    "reactivation_mrr": mv["reactivation"],
                }
                for k, v in row.items():
                    sums[k] += v
                if a.trial_month == m and (a.first_paid is None or a.first_paid >= a.trial_month):
                    sums["trials"] += 1
                    sums["converted"] += int(a.first_paid is not None)
                if a.first_paid is not None and a.first_paid <= m:
                    cell = cells[a.first_paid]
                    for k, v in row.items():
                        cell[k] += v
                    cell["cohort_customers"] += 1
                    cell["cohort_mrr"] += a.activation_mrr
                    cell["capped"] += min(e, a.activation_mrr)
            # NPS: latest response per (account, user) within the month
            latest: dict[tuple[str, str], Any] = {}
            for r in nps:
                if ym(r.occurred_at) != m or (group is not None and seg_of(r.account_id) != group):
                    continue
                k2 = (r.account_id, r.user_id)
                if k2 not in latest or (r.occurred_at, r.event_id) > (
                    latest[k2].occurred_at,
                    latest[k2].event_id,
                ):
                    latest[k2] = r
            scores = [r.score for r in latest.values()]
            promoters = sum(1 for x in scores if x >= 9)
            detractors = sum(1 for x in scores if x <= 6)

            cs, ce = sums["customers_start"], sums["customers_end"]
            ms, me = sums["mrr_start"], sums["mrr_end"]
            lost = sums["contraction_mrr"] + sums["churned_mrr"]
            cell_out = {}
            for cohort, c in cells.items():
                age = months_between_count(cohort, m)
                cell_out[cohort] = {
                    "segment": group,
                    "cohort": cohort,
                    "age": age,
                    "month": m,
                    "cohort_customers": c["cohort_customers"],
                    "cohort_mrr": c["cohort_mrr"],
                    "customers_start": c["customers_start"],
                    "retained": c["retained"],
                    "churned": c["churned"],
                    "reactivated": c["reactivated"],
                    "new": c["new"],
                    "customers_end": c["customers_end"],
                    "mrr_start": c["mrr_start"],
                    "mrr_end": c["mrr_end"],
                    "new_mrr": c["new_mrr"],
                    "expansion_mrr": c["expansion_mrr"],
                    "contraction_mrr": c["contraction_mrr"],
                    "churned_mrr": c["churned_mrr"],
                    "reactivation_mrr": c["reactivation_mrr"],
                    "capped_mrr_end": c["capped"],
                    "customer_retention": ratio(c["customers_end"], c["cohort_customers"]),
                    "customer_churn_rate": ratio(c["churned"], c["customers_start"]),
                    "gross_revenue_retention_mom": ratio(
                        c["mrr_start"] - c["contraction_mrr"] - c["churned_mrr"], c["mrr_start"]
                    ),
                    "net_revenue_retention_mom": ratio(
                        c["mrr_start"] + c["expansion_mrr"] - c["contraction_mrr"] - c["churned_mrr"],
                        c["mrr_start"],
                    ),
                    "gross_revenue_retention_cumulative": ratio(c["capped"], c["cohort_mrr"]),
                    "net_revenue_retention_cumulative": ratio(c["mrr_end"], c["cohort_mrr"]),
                }
                cell_rows[(group, cohort, age)] = cell_out[cohort]
            worst_age, worst_rate = None, 0.0
            for cohort in sorted(cell_out, reverse=True):  # youngest age first
                c2 = cell_out[cohort]
                if c2["customers_start"] and c2["churned"]:
                    rate = c2["churned"] / c2["customers_start"]
                    if rate > worst_rate:
                        worst_age, worst_rate = c2["age"], rate
            arpu = ltv = None
            if ce:
                arpu = money_half_up(Decimal(me) / Decimal(ce))
            if ce and cs and sums["churned"]:
                with localcontext() as ctx:
                    ctx.prec = 60
                    value = (Decimal(me) / Decimal(ce)) / (Decimal(sums["churned"]) / Decimal(cs))
                    if gross_margin is not None:
                        value *= Decimal(gross_margin)
                    ltv = money_half_up(value)
            month_rows[(group, m)] = {
                "month": m,
                "customers_start": cs,
                "customers_end": ce,
                "new_customers": sums["new"],
                "churned_customers": sums["churned"],
                "reactivated_customers": sums["reactivated"],
                "customer_churn_rate": ratio(sums["churned"], cs),
                # (end - new) / start with new = new + reactivated customers
                "customer_retention_rate": ratio(ce - sums["new"] - sums["reactivated"], cs),
                "mrr_start": ms,
                "mrr_end": me,
                "new_mrr": sums["new_mrr"],
                "expansion_mrr": sums["expansion_mrr"],
                "contraction_mrr": sums["contraction_mrr"],
                "churned_mrr": sums["churned_mrr"],
                "reactivation_mrr": sums["reactivation_mrr"],
                "gross_revenue_retention": ratio(ms - lost, ms),
                "net_revenue_retention": ratio(ms - lost + sums["expansion_mrr"], ms),
                "arpu": arpu,
                "nps": (promoters - detractors) * 100 / len(scores) if scores else None,
                "arr": me * 12,
                "ltv": ltv,
                "revenue_churn": ratio(lost, ms),
                "paying_customers": ce,
                "cohort_mrr_share": {
                    cohort: c3["mrr_end"] / me
                    for cohort, c3 in sorted(cell_out.items())
                    if c3["mrr_end"] and me
                },
                "segment": group,
                "retained_customers": sums["retained"],
                "nps_responses": len(scores),
                "trials_started": sums["trials"],
                "trials_converted": sums["converted"],
                "trial_conversion_rate": ratio(sums["converted"], sums["trials"]),
                "highest_churn_age": worst_age,
            }
    return BatchResult(month_rows, cell_rows)


def _is_billing(e: Any) -> bool:
    return e.type.split(".")[0] in {"subscription", "trial", "invoice", "payment", "refund"}
