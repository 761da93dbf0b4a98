"""Alert thresholds: one validated YAML file (rules, playbooks, per-plan/segment overrides, portfolio rules).

`load_thresholds(path)` reads a file deep-merged over streams/thresholds.default.yaml (the documented defaults,
docs/thresholds.md); errors are one line naming the key. `thresholds_for(thresholds, plan, traits)` gives the
RuleSet of one account: the defaults with every matching override merged over them, in file order.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from schemas.alerts import SEVERITIES, Severity

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "thresholds.default.yaml"
RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
PlaybookId = str
Days = int


class ThresholdsError(ValueError):
    """A thresholds file that cannot be used; the message is one line: `<file>: <key path>: <problem>`."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- rules --------------------------------------------------------------------------------------------------


class RuleConfig(_Frozen):
    """Settings every rule has."""

    enabled: bool
    severity: Severity  # severity when the alert opens
    cooldown_days: int = Field(ge=0, le=365)  # after a resolution, the trigger cannot re-open for this long
    max_open_days: int = Field(ge=1, le=3650)  # an alert not active and unchanged this long expires
    playbook: str = Field(min_length=1, max_length=64)


class LadderRule(RuleConfig):
    """A rule whose severity rises with its measure: `escalate: {severity: level}`.

    HIGHER_IS_WORSE says which way the measure goes; each rung must be above `severity` and stricter than the
    rungs below it. A rung set to null in an override removes it.
    """

    HIGHER_IS_WORSE: ClassVar[bool] = True
    escalate: dict[Severity, float | None] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ladder(self) -> LadderRule:
        rungs = sorted(((RANK[s], s, v) for s, v in self.escalate.items() if v is not None))
        previous: float | None = None
        for rank, name, level in rungs:
            if rank <= RANK[self.severity]:
                raise ValueError(
                    f"escalate.{name}: must be a higher severity than severity ({self.severity})"
                )
            if previous is not None and (level < previous if self.HIGHER_IS_WORSE else level > previous):
                way = "at least" if self.HIGHER_IS_WORSE else "at most"
                raise ValueError(f"escalate.{name}: must be {way} the level of the severity below it")
            previous = level
        return self

    # The severity a measure reaches on this ladder is rules.severity_at (compiled; a method here would run in the
    # interpreter, ~1 us, up to eight times an evaluation).


class UsageFrequencyDropRule(LadderRule):
    """Active days in the last window vs the window before; ladder in % drop."""

    window_days: Literal[7, 30]
    open_drop_pct: float = Field(gt=0, le=100)
    clear_drop_pct: float = Field(ge=0, lt=100)
    min_baseline_days: int = Field(ge=1, le=30)

    @model_validator(mode="after")
    def _levels(self) -> UsageFrequencyDropRule:
        _below(self.clear_drop_pct, self.open_drop_pct, "clear_drop_pct", "open_drop_pct")
        if self.min_baseline_days > self.window_days:
            raise ValueError("min_baseline_days: must be at most window_days")
        return self


class UsageBreadthDropRule(LadderRule):
    """Distinct features used in the last window vs the window before; ladder in % drop."""

    window_days: Literal[7, 30]
    open_drop_pct: float = Field(gt=0, le=100)
    clear_drop_pct: float = Field(ge=0, lt=100)
    min_baseline_features: int = Field(ge=1, le=10_000)

    @model_validator(mode="after")
    def _levels(self) -> UsageBreadthDropRule:
        _below(self.clear_drop_pct, self.open_drop_pct, "clear_drop_pct", "open_drop_pct")
        return self


class InactivityRule(LadderRule):
    """Days since the last session / feature use / API call; ladder in days."""

    open_days: int = Field(gt=0, le=365)
    clear_active_days: int = Field(ge=1, le=7)  # active days in the last 7 that end the alert


class NpsDetractorRule(LadderRule):
    """Lowest latest answer among users who answered within window_days; ladder in score (lower is worse)."""

    HIGHER_IS_WORSE: ClassVar[bool] = False
    window_days: int = Field(gt=0, le=730)
    open_max_score: int = Field(ge=0, le=9)
    clear_min_score: int = Field(ge=1, le=10)

    @model_validator(mode="after")
    def _levels(self) -> NpsDetractorRule:
        if self.clear_min_score <= self.open_max_score:
            raise ValueError("clear_min_score: must be greater than open_max_score")
        return self


class NpsDropRule(LadderRule):
    """Account NPS now vs window_days ago, in points; ladder in points dropped."""

    window_days: int = Field(gt=0, le=365)
    open_drop_points: float = Field(gt=0, le=200)
    clear_drop_points: float = Field(ge=0, lt=200)
    min_responses: int = Field(ge=1, le=1000)

    @model_validator(mode="after")
    def _levels(self) -> NpsDropRule:
        _below(self.clear_drop_points, self.open_drop_points, "clear_drop_points", "open_drop_points")
        return self


class KeyUserRemovedRule(RuleConfig):
    """A key user (owner/admin/champion) removed within window_days and not replaced since."""

    window_days: int = Field(gt=0, le=365)


class UsageLimitHitsRule(LadderRule):
    """Usage-limit hits in the last window; ladder in hits."""

    window_days: Literal[7, 30]
    open_hits: int = Field(ge=1, le=1_000_000)
    clear_hits: int = Field(ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _levels(self) -> UsageLimitHitsRule:
        _below(self.clear_hits, self.open_hits, "clear_hits", "open_hits")
        return self


class PaymentFailedRule(LadderRule):
    """Open failed payment attempt number; ladder in attempts. Clears when an invoice is paid."""

    open_attempts: int = Field(ge=1, le=100)


class DowngradeRule(LadderRule):
    """MRR (or seats) now vs the peak within window_days, in % contraction; ladder in %."""

    window_days: int = Field(gt=0, le=365)
    open_contraction_pct: float = Field(gt=0, le=100)
    clear_contraction_pct: float = Field(ge=0, lt=100)

    @model_validator(mode="after")
    def _levels(self) -> DowngradeRule:
        _below(
            self.clear_contraction_pct,
            self.open_contraction_pct,
            "clear_contraction_pct",
            "open_contraction_pct",
        )
        return self


class CancellationScheduledRule(LadderRule):
    """A cancellation is scheduled; ladder in days until it takes effect (lower is worse)."""

    HIGHER_IS_WORSE: ClassVar[bool] = False


class RenewalRiskRule(LadderRule):
    """Renewal within within_days and health below open_below_score; ladder in days to renewal (lower is worse)."""

    HIGHER_IS_WORSE: ClassVar[bool] = False
    billing_intervals: list[Literal["month", "year"]] = Field(min_length=1)  # judge these subscriptions only
    within_days: int = Field(gt=0, le=400)
    open_below_score: int = Field(gt=0, le=100)
    clear_at_score: int = Field(gt=0, le=101)

    @model_validator(mode="after")
    def _levels(self) -> RenewalRiskRule:
        if self.clear_at_score < self.open_below_score:
            raise ValueError("clear_at_score: must be at least open_below_score")
        return self


class TicketSpikeRule(LadderRule):
    """Tickets opened in the last 7 days vs the weekly average of the baseline_weeks before; ladder in tickets."""

    open_tickets: int = Field(ge=1, le=1_000_000)
    ratio: float = Field(ge=1, le=1000)
    baseline_weeks: int = Field(ge=1, le=11)
    clear_tickets: int = Field(ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _levels(self) -> TicketSpikeRule:
        _below(self.clear_tickets, self.open_tickets, "clear_tickets", "open_tickets")
        return self


class ActivationStalledRule(LadderRule):
    """No first value (key action) open_days after the account started; ladder in days since start."""

    open_days: int = Field(gt=0, le=365)


class LowHealthRule(LadderRule):
    """Health score below open_below_score; ladder in score (lower is worse)."""

    HIGHER_IS_WORSE: ClassVar[bool] = False
    open_below_score: int = Field(gt=0, le=100)
    clear_at_score: int = Field(gt=0, le=101)
    min_tracked_days: int = Field(ge=0, le=365)

    @model_validator(mode="after")
    def _levels(self) -> LowHealthRule:
        if self.clear_at_score < self.open_below_score:
            raise ValueError("clear_at_score: must be at least open_below_score")
        return self


def _below(clear: float, open_: float, clear_name: str, open_name: str) -> None:
    if clear >= open_:
        raise ValueError(f"{clear_name}: must be less than {open_name} (hysteresis)")


class Rules(_Frozen):
    """One section per trigger (field name = trigger name)."""

    usage_frequency_drop: UsageFrequencyDropRule
    usage_breadth_drop: UsageBreadthDropRule
    inactivity: InactivityRule
    nps_detractor: NpsDetractorRule
    nps_drop: NpsDropRule
    key_user_removed: KeyUserRemovedRule
    usage_limit_hits: UsageLimitHitsRule
    payment_failed: PaymentFailedRule
    downgrade: DowngradeRule
    cancellation_scheduled: CancellationScheduledRule
    renewal_risk: RenewalRiskRule
    ticket_spike: TicketSpikeRule
    activation_stalled: ActivationStalledRule
    low_health: LowHealthRule


# --- portfolio rules ----------------------------------------------------------------------------------------


class PortfolioRule(_Frozen):
    enabled: bool
    severity: Severity
    playbook: str = Field(min_length=1, max_length=64)


class CustomerChurnRule(PortfolioRule):
    """Monthly customer churn rate (fraction) above the benchmark."""

    open_above: float = Field(ge=0, le=1)
    min_customers: int = Field(ge=1, le=10**9)  # customers at the start of the month


class CohortRetentionRule(PortfolioRule):
    """A cohort's customer retention below the mean of earlier cohorts at the same age by more than tolerance."""

    tolerance: float = Field(ge=0, le=1)  # fraction, e.g. 0.05 = 5 percentage points
    min_earlier_cohorts: int = Field(ge=1, le=120)
    min_cohort_customers: int = Field(ge=1, le=10**9)


class CompanyNpsRule(PortfolioRule):
    """Company NPS of the month below open_below."""

    open_below: float = Field(ge=-100, le=100)
    min_responses: int = Field(ge=1, le=10**9)


class PortfolioRules(_Frozen):
    customer_churn_rate: CustomerChurnRule
    cohort_retention: CohortRetentionRule
    company_nps: CompanyNpsRule


# --- file ---------------------------------------------------------------------------------------------------


class Playbook(_Frozen):
    title: str = Field(min_length=1, max_length=200)
    steps: list[str] = Field(min_length=1, max_length=50)


class Override(_Frozen):
    """Rule settings for the accounts whose plan / traits match every entry of `match` (a value or a list)."""

    match: dict[str, str | list[str]] = Field(min_length=1)
    rules: dict[str, Any]

    def matches(self, plan: str | None, traits: Mapping[str, str]) -> bool:
        for key, wanted in self.match.items():
            value = plan if key == "plan" else traits.get(key)
            if value is None:
                return False
            if value != wanted if isinstance(wanted, str) else value not in wanted:
                return False
        return True


_PLAYBOOK_ID = r"^[a-z0-9][a-z0-9_\-]*$"


class Thresholds(_Frozen):
    version: Literal[1]
    rules: Rules
    playbooks: dict[str, Playbook] = Field(min_length=1)
    overrides: list[Override] = Field(default_factory=list)
    portfolio: PortfolioRules
    _cache: dict[tuple[int, ...], RuleSet] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _cross_checks(self) -> Thresholds:
        for pid in self.playbooks:
            if not re.match(_PLAYBOOK_ID, pid):
                raise ValueError(f"playbooks.{pid}: id must be lowercase letters, digits, '-' or '_'")
        for section, rules in (("rules", self.rules), ("portfolio", self.portfolio)):
            for name in type(rules).model_fields:
                pid = getattr(rules, name).playbook
                if pid not in self.playbooks:
                    raise ValueError(f"{section}.{name}.playbook: unknown playbook {pid!r}")
        base = self.rules.model_dump()
        for i, override in enumerate(self.overrides):
            try:
                merged = Rules.model_validate(deep_merge(base, override.rules))
            except ValidationError as exc:
                raise ValueError(f"overrides.{i}.rules.{_first_error(exc)}") from None
            for name in Rules.model_fields:
                pid = getattr(merged, name).playbook
                if pid not in self.playbooks:
                    raise ValueError(f"overrides.{i}.rules.{name}.playbook: unknown playbook {pid!r}")
        return self


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rules of one account (defaults + matching overrides) with the playbooks they name."""

    rules: Rules
    playbooks: Mapping[str, Playbook]
    overrides: tuple[int, ...] = ()  # indexes of the overrides applied, in file order

    def rule(self, trigger: str) -> RuleConfig:
        return getattr(self.rules, trigger)

    def playbook_of(self, trigger: str) -> tuple[str, Playbook]:
        pid = self.rule(trigger).playbook
        return pid, self.playbooks[pid]


def thresholds_for(
    thresholds: Thresholds, plan: str | None, traits: Mapping[str, str] | None = None
) -> RuleSet:
    """The RuleSet for an account on `plan` with `traits`: every matching override, in file order, deep-merged
    over the default rules. Cached per combination of matching overrides."""
    traits = traits or {}
    key = tuple(i for i, o in enumerate(thresholds.overrides) if o.matches(plan, traits))
    found = thresholds._cache.get(key)
    if found is None:
        rules = thresholds.rules
        if key:
            merged = thresholds.rules.model_dump()
            for i in key:
                merged = deep_merge(merged, thresholds.overrides[i].rules)
            rules = Rules.model_validate(merged)
        found = thresholds._cache[key] = RuleSet(rules, thresholds.playbooks, key)
    return found


# --- loading ------------------------------------------------------------------------------------------------


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`: mappings merge key by key, anything else (lists too) replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ThresholdsError(f"{name}: file not found ({path})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ThresholdsError(f"{name}: cannot read file ({_one_line(str(exc))})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ThresholdsError(f"{name}: invalid YAML{where}: {_one_line(str(problem))}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ThresholdsError(f"{name}: the top level must be a mapping of sections (rules, playbooks, ...)")
    return data


@cache
def _default_data() -> dict[str, Any]:
    return _read_yaml(DEFAULT_PATH)


@cache
def _default_thresholds() -> Thresholds:
    return _validate(_default_data(), DEFAULT_PATH.name)


def load_thresholds(path: Path | None = None) -> Thresholds:
    """The thresholds in `path` deep-merged over the shipped defaults; the defaults alone when path is None.

    Raises ThresholdsError with one line: `<file name>: <key path>: <problem>`.
    """
    if path is None:
        return _default_thresholds()
    data = _read_yaml(Path(path))
    return _validate(deep_merge(_default_data(), data), Path(path).name)


def _validate(data: dict[str, Any], name: str) -> Thresholds:
    try:
        return Thresholds.model_validate(data)
    except ValidationError as exc:
        more = exc.error_count() - 1
        suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more > 0 else ""
        raise ThresholdsError(f"{name}: {_first_error(exc)}{suffix}") from None


_KEYED = re.compile(r"^([A-Za-z0-9_.\-]+): (.+)$")


def _first_error(exc: ValidationError) -> str:
    """`key.path: message` of the first error; a validator message starting with `sub.key: ` extends the path."""
    err = exc.errors(include_url=False)[0]
    parts = [str(p) for p in err["loc"] if p != "[key]"]
    msg = _one_line(str(err["msg"]))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
        keyed = _KEYED.match(msg)
        if keyed:
            parts.append(keyed.group(1))
            msg = keyed.group(2)
    path = ".".join(parts)
    return f"{path}: {msg}" if path else msg


def _one_line(text: str) -> str:
    return " ".join(text.split())
