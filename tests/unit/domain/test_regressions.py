"""Regressions found by running the whole pipeline: each once crashed or mis-stamped something."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.events import canonical_event_adapter
from streams.domain.account import apply_event, new_account
from streams.domain.config import DomainConfig
from streams.domain.rules import assess, rule_downgrade
from streams.domain.thresholds import load_thresholds, thresholds_for
from streams.processing import InputRecord, process_batch

CONFIG = DomainConfig()


def ev(etype: str, when: str, n: int, **fields: object):  # type: ignore[no-untyped-def]
    return canonical_event_adapter.validate_python(
        {"event_id": f"e{n}", "account_id": "acct", "type": etype, "occurred_at": when, **fields}
    )


def test_an_upgrade_without_seat_history_is_not_a_downgrade_and_does_not_crash() -> None:
    state = new_account("acct")
    apply_event(state, ev("subscription.started", "2026-03-01T00:00:00Z", 1, plan="a", mrr=10_000), CONFIG)
    apply_event(state, ev("subscription.changed", "2026-03-10T00:00:00Z", 2, plan="b", mrr=20_000), CONFIG)
    rs = thresholds_for(load_thresholds(), state.plan, state.traits)
    as_of = datetime(2026, 3, 12, tzinfo=UTC)
    a = assess(state, as_of, rs, CONFIG)
    sig = rule_downgrade(state, a.summary, a.health, rs, as_of)
    assert sig is None or not sig.active


def test_a_domain_failure_dead_letters_that_event_and_the_batch_goes_on(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The bug is planted in the handler table, a dict the (possibly compiled, ADR 0018) domain looks up per event:
    # patching a module function would not reach code compiled with mypyc. (feature.used and session.started are
    # called directly, not through the table: user.added is.)
    from streams.domain import account

    real = account._HANDLERS["user.added"]

    def flaky(state, event, *args):  # type: ignore[no-untyped-def]
        if event.event_id == "boom":
            raise RuntimeError("simulated bug")
        return real(state, event, *args)

    monkeypatch.setitem(account._HANDLERS, "user.added", flaky)
    good = b'{"event_id":"ok","account_id":"a","type":"user.added","user_id":"u","occurred_at":"2026-03-01T00:00:00Z"}'
    bad = good.replace(b'"ok"', b'"boom"')
    out = process_batch([InputRecord(bad, "t", 0, 1), InputRecord(good, "t", 0, 2)], lambda a: None, CONFIG,
                        max_event_bytes=65536)
    assert [d.reason for d in out.dead_letters] == ["processing_error"]
    assert "simulated bug" in out.dead_letters[0].message
    assert out.tally[("t", "user.added", "processed")] == 1
