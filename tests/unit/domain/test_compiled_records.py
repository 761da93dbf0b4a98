"""The records whose `__init__` is written out for mypyc (ADR 0018) set every field, and default as declared."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from streams.domain.alerts import AlertContext
from streams.domain.engagement import EngagementSummary, WindowFigures
from streams.domain.health import Health
from streams.domain.mrr import MonthFacts, Movements
from streams.domain.rules import Assessment, Signal


def a_window(n: int = 0) -> WindowFigures:
    return WindowFigures(n, n + 6, n + 1, n + 2, n + 3, n + 4, n + 5, n + 7, 0.5 + n, n + 8, n + 9)


def a_summary() -> EngagementSummary:
    return EngagementSummary(100, 30, a_window(1), a_window(2), a_window(3), a_window(4), a_window(5), 99, 1, 20.0,
                             3, 2, 1.5)


def a_health() -> Health:
    return Health(61, {"billing": 60.0}, -5.0)


def a_signal() -> Signal:
    return Signal("inactivity", "high", 12.0, 3.0, 10.0, 30, True, False, "no sessions", 1_700_000_000)


# One of each, every field but the booleans with a value no other field of it has: a field set from the wrong
# argument shows.
EXAMPLES: list[Any] = [
    a_signal(),
    Assessment(a_summary(), a_health(), "retention", [a_signal()]),
    a_health(),
    AlertContext(a_health(), datetime(2026, 6, 1, tzinfo=UTC), "onboarding"),
    a_window(),
    a_summary(),
    MonthFacts("acct-1", "2026-06", "2026-01", 5, 100, 200, 11, 12, 13, 14, 15, True, False, True, False, True, 300,
               False, True),
    Movements(1, 2, 3, 4, 5),
]


def fields_of(record: Any) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: type(e).__name__)
def test_a_written_out_init_sets_every_field_from_its_own_argument(example: Any) -> None:
    values = fields_of(example)
    told_apart = [repr(v) for v in values.values() if type(v) is not bool]
    assert len(set(told_apart)) == len(told_apart)
    assert fields_of(type(example)(**values)) == values


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: type(e).__name__)
def test_a_written_out_init_defaults_as_the_fields_declare(example: Any) -> None:
    fields = dataclasses.fields(example)
    required = {f.name: getattr(example, f.name) for f in fields if f.default is dataclasses.MISSING}
    built = type(example)(**required)
    assert all(getattr(built, f.name) == f.default for f in fields if f.default is not dataclasses.MISSING)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: type(e).__name__)
def test_the_records_stay_frozen_and_compare_by_value(example: Any) -> None:
    first = dataclasses.fields(example)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(example, first, getattr(example, first))
    assert type(example)(**fields_of(example)) == example
