"""Company and cohort metrics from per-account cohort snapshots: the one computation live and replay share."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.domain.cohorts import (
    UNKNOWN_SEGMENT,
    AggregateKey,
    CohortCell,
    CompanyMonth,
    Counters,
    account_contributions,
    apply_delta,
    build_metrics,
    by_segment,
    empty_months,
    highest_churn_age,
    keyed_nps_contributions,
    ledger_bounds,
    month_range,
    second_month_retention,
    tally_nps_rows,
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
    is called after each account's share of the work."""
    return PortfolioBuilder(gross_margin=gross_margin, through_month=through_month).refresh(snapshots, pace)


class _Decoded:
    """One cohort snapshot, decoded: what its account adds to the totals depends on nothing else (but the months
    covered and, for a ledger kept under another account's id, that account's segment)."""

    __slots__ = ("account_id", "ledger", "nps_rows", "segment")

    def __init__(self, account_id: str, raw: bytes) -> None:
        snap = orjson.loads(raw)
        self.account_id = account_id
        self.ledger: MrrLedger = decode_ledger(snap["ledger"])
        self.segment: str = snap["segment"]
        self.nps_rows: list[list[Any]] = snap["nps"]  # [at_s, event_id, user_id, score]: `tally_nps_rows`


class _Summed:
    """What the totals hold of one account: its snapshot (the cohort table's bytes, not a copy) and what its
    contributions were computed with, so they can be computed again to be taken out."""

    __slots__ = ("bounds", "ledger_account_id", "ledger_segment", "raw", "segment")

    def __init__(self, raw: bytes, decoded: _Decoded) -> None:
        ledger = decoded.ledger
        self.raw = raw
        self.segment = decoded.segment
        self.ledger_account_id = ledger.account_id
        # The segment its ledger's months were summed under: set by `PortfolioBuilder._add`, which every entry
        # goes through before `_take_out` reads it.
        self.ledger_segment = UNKNOWN_SEGMENT
        self.bounds = ledger_bounds(ledger) if ledger.first_month is not None else None


class PortfolioBuilder:
    """`compute_portfolio` kept up to date across refreshes: an account whose snapshot is unchanged is neither
    decoded nor summed again. Until 2026-12-06 the worker recomputed everything at every refresh: ~5 s of CPU at
    50,000 accounts with six months of history, paced to ~10 % of the interpreter (ADR 0020), so a refresh took
    about 50 s of wall time and figures trailed the stream by a minute or more.

    The totals are sums of integer counters, so taking an account's old contributions out and adding its new ones
    gives exactly what a batch pass gives (the property test compares them). When the months covered change (the
    newest event enters a new month, an older history arrives), every account is summed again, from its bytes.
    Memory: a reference to each snapshot plus a few fields per account; contributions are not kept, they are
    computed again from the old bytes when an account changes."""

    def __init__(self, *, gross_margin: float | None = None, through_month: str | None = None) -> None:
        self.gross_margin = gross_margin
        self.through_month = through_month
        self._summed: dict[str, _Summed] = {}
        self._totals: dict[AggregateKey, Counters] = {}
        self._range: tuple[str, str] | None = None

    def refresh(self, snapshots: Iterable[tuple[str, bytes]], pace: Callable[[], None] | None = None) -> Portfolio:
        """The portfolio of exactly these snapshots (accounts missing from them are taken out)."""
        try:
            return self._refresh(snapshots, pace)
        except BaseException:
            # Half-applied changes would leave totals that no batch pass gives: the next refresh starts over.
            self._summed, self._totals, self._range = {}, {}, None
            raise

    def _refresh(self, snapshots: Iterable[tuple[str, bytes]], pace: Callable[[], None] | None) -> Portfolio:
        summed = self._summed
        changed: dict[str, tuple[_Summed | None, _Decoded]] = {}
        present: set[str] = set()
        for account_id, raw in snapshots:
            present.add(account_id)
            old = summed.get(account_id)
            if old is None or old.raw != raw:
                decoded = _Decoded(account_id, raw)
                changed[account_id] = (old, decoded)
                summed[account_id] = _Summed(raw, decoded)
                if pace is not None:
                    pace()
        gone = {account_id: entry for account_id, entry in summed.items() if account_id not in present}
        for account_id in gone:
            del summed[account_id]
        segments = {account_id: entry.segment for account_id, entry in summed.items()}
        bounds = [entry.bounds for entry in summed.values() if entry.bounds is not None]
        if not bounds:
            self._totals, self._range = {}, None
            return Portfolio([], [], by_segment([], []), len(summed))
        month_span = month_range(bounds, through_month=self.through_month)
        if month_span != self._range:
            self._sum_all(segments, month_span, pace, changed)
        else:
            for account_id, entry in summed.items():
                # A ledger kept under another account's id is summed under that account's segment, which may
                # have changed: such accounts (none in practice) are summed again at every refresh.
                if account_id not in changed and entry.ledger_account_id != account_id:
                    changed[account_id] = (entry, _Decoded(account_id, entry.raw))
            for account_id, (old, decoded) in changed.items():
                self._take_out(account_id, old, month_span)
                self._add(account_id, summed[account_id], decoded, segments, month_span)
                if pace is not None:
                    pace()
            for account_id, entry in gone.items():
                self._take_out(account_id, entry, month_span)
        segment_values = sorted({segments.get(entry.ledger_account_id, UNKNOWN_SEGMENT) for entry in summed.values()})
        totals = empty_months(*month_span, segment_values)
        totals.update(self._totals)
        all_months, all_cells = build_metrics(totals, gross_margin=self.gross_margin)
        months = [m for m in all_months if m.segment is None]
        cells = [c for c in all_cells if c.segment is None]
        return Portfolio(months, cells, by_segment(all_months, all_cells), len(summed))

    def _sum_all(self, segments: dict[str, str], month_span: tuple[str, str], pace: Callable[[], None] | None,
                 changed: dict[str, tuple[_Summed | None, _Decoded]]) -> None:
        """Every account summed again from nothing; those this refresh decoded already (all of them after a start)
        are not decoded a second time: decoding them again was ~25 % of a refresh from nothing (ADR 0003,
        addendum)."""
        self._totals, self._range = {}, month_span
        for account_id, entry in self._summed.items():
            fresh = changed.get(account_id)
            decoded = fresh[1] if fresh is not None else _Decoded(account_id, entry.raw)
            self._add(account_id, entry, decoded, segments, month_span)
            if pace is not None:
                pace()

    def _add(self, account_id: str, entry: _Summed, decoded: _Decoded, segments: dict[str, str],
             month_span: tuple[str, str]) -> None:
        entry.ledger_segment = segments.get(entry.ledger_account_id, UNKNOWN_SEGMENT)
        totals = self._totals
        for key, counters in _contributions(decoded, entry.ledger_segment, month_span):
            target = totals.setdefault(key, {})  # in place: a full pass adds every account-month
            for name, value in counters.items():
                target[name] = target.get(name, 0) + value

    def _take_out(self, account_id: str, entry: _Summed | None, month_span: tuple[str, str]) -> None:
        if entry is None:
            return
        totals = self._totals
        for key, counters in _contributions(_Decoded(account_id, entry.raw), entry.ledger_segment, month_span):
            left = apply_delta(totals.get(key, {}), counters, None)
            if left:
                totals[key] = left
            else:
                totals.pop(key, None)


def _contributions(decoded: _Decoded, ledger_segment: str, month_span: tuple[str, str]
                   ) -> list[tuple[AggregateKey, Counters]]:
    """Everything one account adds to the totals over `month_span`: its ledger's months (under the segment of the
    ledger's account) and its NPS tallies (under its own segment), as `compute_metrics` sums them."""
    from_month, through_month = month_span
    out: list[tuple[AggregateKey, Counters]] = []
    if decoded.ledger.first_month is not None:
        out.extend(account_contributions(decoded.ledger, ledger_segment, from_month, through_month))
    for month, per_account in tally_nps_rows(decoded.account_id, decoded.nps_rows).items():
        if from_month <= month <= through_month:
            for tally in per_account.values():
                out.extend(keyed_nps_contributions(month, tally, decoded.segment))
    return out
