"""Thresholds file: defaults, merging, per-plan / per-segment overrides, and one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.alerts import ACCOUNT_TRIGGERS, PORTFOLIO_TRIGGERS
from streams.domain.rules import severity_at
from streams.domain.thresholds import (
    DEFAULT_PATH,
    Rules,
    ThresholdsError,
    deep_merge,
    load_thresholds,
    thresholds_for,
)


def write(tmp_path: Path, text: str, name: str = "thresholds.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ThresholdsError) as info:
        load_thresholds(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    return message


# --- defaults -----------------------------------------------------------------------------------------------


def test_the_shipped_defaults_load_and_cover_every_trigger_with_an_existing_playbook() -> None:
    th = load_thresholds(None)
    assert set(Rules.model_fields) == set(ACCOUNT_TRIGGERS)
    assert set(type(th.portfolio).model_fields) == set(PORTFOLIO_TRIGGERS)
    for trigger in ACCOUNT_TRIGGERS:
        rule = getattr(th.rules, trigger)
        assert rule.enabled and rule.playbook in th.playbooks
    assert th.overrides == []
    assert th.portfolio.customer_churn_rate.open_above == 0.03
    assert th.portfolio.company_nps.open_below == 30


def test_loading_the_defaults_twice_gives_the_same_object() -> None:
    assert load_thresholds(None) is load_thresholds(None)


def test_a_file_holding_one_key_changes_that_key_and_keeps_every_other_default(tmp_path: Path) -> None:
    th = load_thresholds(write(tmp_path, "rules:\n  inactivity: {open_days: 21}\n"))
    defaults = load_thresholds(None)
    assert th.rules.inactivity.open_days == 21
    assert th.rules.inactivity.escalate == defaults.rules.inactivity.escalate
    assert th.rules.low_health == defaults.rules.low_health


def test_an_empty_or_comment_only_file_means_the_defaults(tmp_path: Path) -> None:
    th = load_thresholds(write(tmp_path, "# placeholder: built-in defaults apply\n"))
    assert th.rules == load_thresholds(None).rules


def test_a_ladder_rung_set_to_null_is_removed(tmp_path: Path) -> None:
    th = load_thresholds(write(tmp_path, "rules:\n  inactivity:\n    escalate: {critical: null}\n"))
    assert severity_at(th.rules.inactivity, 100) == "high"


def test_deep_merge_merges_mappings_and_replaces_lists_and_scalars() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert deep_merge(base, {"a": {"c": [3]}, "d": {"x": 1}}) == {"a": {"b": 1, "c": [3]}, "d": {"x": 1}}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


# --- errors: one line, naming the key -------------------------------------------------------------------------


def test_a_non_positive_day_count_is_rejected_naming_the_key(tmp_path: Path) -> None:
    assert error_of(tmp_path, "rules:\n  inactivity: {open_days: 0}\n") == (
        "thresholds.yaml: rules.inactivity.open_days: Input should be greater than 0"
    )


def test_an_unknown_key_is_rejected_naming_it(tmp_path: Path) -> None:
    assert error_of(tmp_path, "rules:\n  inactivity: {open_dayz: 3}\n") == (
        "thresholds.yaml: rules.inactivity.open_dayz: Extra inputs are not permitted"
    )


def test_a_wrong_type_is_rejected_naming_the_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, "rules:\n  payment_failed: {enabled: maybe}\n")
    assert message.startswith(
        "thresholds.yaml: rules.payment_failed.enabled: Input should be a valid boolean"
    )


def test_a_clear_level_beyond_the_open_level_is_rejected_as_missing_hysteresis(tmp_path: Path) -> None:
    assert error_of(tmp_path, "rules:\n  usage_frequency_drop: {clear_drop_pct: 60}\n") == (
        "thresholds.yaml: rules.usage_frequency_drop.clear_drop_pct: must be less than open_drop_pct (hysteresis)"
    )


def test_an_unknown_playbook_is_rejected_naming_the_rule(tmp_path: Path) -> None:
    assert error_of(tmp_path, "rules:\n  downgrade: {playbook: call-the-ceo}\n") == (
        "thresholds.yaml: rules.downgrade.playbook: unknown playbook 'call-the-ceo'"
    )


def test_a_severity_ladder_that_goes_the_wrong_way_is_rejected(tmp_path: Path) -> None:
    assert error_of(tmp_path, "rules:\n  inactivity:\n    escalate: {high: 30, critical: 20}\n") == (
        "thresholds.yaml: rules.inactivity.escalate.critical: must be at least the level of the severity below it"
    )
    assert error_of(tmp_path, "rules:\n  low_health:\n    escalate: {medium: 10}\n") == (
        "thresholds.yaml: rules.low_health.escalate.medium: must be a higher severity than severity (medium)"
    )


def test_an_unknown_severity_is_rejected(tmp_path: Path) -> None:
    message = error_of(tmp_path, "rules:\n  inactivity: {severity: urgent}\n")
    assert message.startswith("thresholds.yaml: rules.inactivity.severity: Input should be 'low', 'medium'")


def test_invalid_yaml_is_reported_with_its_position(tmp_path: Path) -> None:
    message = error_of(tmp_path, "rules:\n  inactivity: {open_days: 3\n")
    assert message.startswith("thresholds.yaml: invalid YAML at line 3, column 1: ")


def test_a_top_level_list_is_rejected(tmp_path: Path) -> None:
    assert error_of(tmp_path, "- 1\n- 2\n") == (
        "thresholds.yaml: the top level must be a mapping of sections (rules, playbooks, ...)"
    )


def test_a_missing_file_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ThresholdsError) as info:
        load_thresholds(tmp_path / "nope.yaml")
    assert str(info.value) == f"nope.yaml: file not found ({tmp_path / 'nope.yaml'})"


def test_further_errors_are_counted_not_listed(tmp_path: Path) -> None:
    message = error_of(tmp_path, "rules:\n  inactivity: {open_days: 0, cooldown_days: -1}\n")
    assert message.endswith("(and 1 more error)")


def test_an_override_with_a_bad_value_is_rejected_naming_its_position(tmp_path: Path) -> None:
    text = "overrides:\n  - match: {plan: enterprise}\n    rules:\n      inactivity: {open_days: -3}\n"
    assert error_of(tmp_path, text) == (
        "thresholds.yaml: overrides.0.rules.inactivity.open_days: Input should be greater than 0"
    )


def test_an_override_naming_an_unknown_rule_is_rejected(tmp_path: Path) -> None:
    text = "overrides:\n  - match: {plan: enterprise}\n    rules:\n      inactivty: {open_days: 3}\n"
    assert error_of(tmp_path, text) == (
        "thresholds.yaml: overrides.0.rules.inactivty: Extra inputs are not permitted"
    )


def test_an_override_without_a_match_is_rejected(tmp_path: Path) -> None:
    message = error_of(tmp_path, "overrides:\n  - match: {}\n    rules: {}\n")
    assert message.startswith("thresholds.yaml: overrides.0.match: ")


# --- overrides ------------------------------------------------------------------------------------------------

OVERRIDES = """
overrides:
  - match: {plan: enterprise}
    rules:
      inactivity: {open_days: 21}
      renewal_risk: {within_days: 90}
  - match: {segment: [smb, self-serve]}
    rules:
      inactivity: {open_days: 7, escalate: {critical: null}}
  - match: {plan: enterprise, region: emea}
    rules:
      inactivity: {open_days: 28}
"""


def test_overrides_apply_by_plan(tmp_path: Path) -> None:
    th = load_thresholds(write(tmp_path, OVERRIDES))
    enterprise = thresholds_for(th, "enterprise", {})
    assert enterprise.rules.inactivity.open_days == 21
    assert enterprise.rules.renewal_risk.within_days == 90
    assert enterprise.rules.inactivity.escalate == th.rules.inactivity.escalate  # the rest stays default
    assert enterprise.overrides == (0,)
    team = thresholds_for(th, "team", {})
    assert team.rules.inactivity.open_days == 14 and team.overrides == ()
    assert thresholds_for(th, None, {}).rules == th.rules


def test_overrides_apply_by_segment_trait_with_a_list_of_values(tmp_path: Path) -> None:
    th = load_thresholds(write(tmp_path, OVERRIDES))
    smb = thresholds_for(th, "team", {"segment": "self-serve"})
    assert smb.rules.inactivity.open_days == 7
    assert severity_at(smb.rules.inactivity, 90) == "high"
    assert thresholds_for(th, "team", {"segment": "mid-market"}).rules.inactivity.open_days == 14


def test_later_overrides_win_and_every_match_key_must_match(tmp_path: Path) -> None:
    th = load_thresholds(write(tmp_path, OVERRIDES))
    assert thresholds_for(th, "enterprise", {"region": "emea"}).rules.inactivity.open_days == 28
    assert thresholds_for(th, "enterprise", {"region": "emea"}).rules.renewal_risk.within_days == 90
    assert thresholds_for(th, "team", {"region": "emea"}).rules.inactivity.open_days == 14


def test_rule_sets_are_cached_per_combination_of_matching_overrides(tmp_path: Path) -> None:
    th = load_thresholds(write(tmp_path, OVERRIDES))
    assert thresholds_for(th, "enterprise", {"x": "1"}) is thresholds_for(th, "enterprise", {"y": "2"})


# --- docs ------------------------------------------------------------------------------------------------------


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def test_docs_thresholds_md_lists_every_key_with_its_default(repo_root: Path) -> None:
    doc = (repo_root / "docs" / "thresholds.md").read_text()
    data = yaml.safe_load(DEFAULT_PATH.read_text())
    playbooks = data.pop("playbooks")
    rows = {line.split("|")[1].strip(): line for line in doc.splitlines() if line.startswith("| `")}
    problems = []
    for key, value in _flatten(data).items():
        row = rows.get(f"`{key}`")
        if row is None:
            problems.append(f"{key}: missing")
        elif f"| {_shown(value)} |" not in row:
            problems.append(f"{key}: default {_shown(value)} not in its row")
    problems += [f"playbook {pid}: missing" for pid in playbooks if f"`{pid}`" not in doc]
    assert problems == []
