"""The webhook forwarder retries what can succeed later and gives up on what never will."""

from __future__ import annotations

from streams.tools.alerts_cli import deliver, describe


def replies(*codes: int):  # type: ignore[no-untyped-def]
    it = iter(codes)
    return lambda: next(it)


def test_a_server_error_is_retried_until_the_webhook_accepts() -> None:
    waits: list[float] = []
    assert deliver(replies(500, 503, 200), 5, waits.append) == (True, 3)
    assert waits == [0.5, 1.0]  # exponential backoff, seconds


def test_rate_limiting_and_timeouts_are_retried() -> None:
    assert deliver(replies(429, 408, 204), 5, lambda s: None) == (True, 3)


def test_a_rejection_is_not_retried() -> None:
    assert deliver(replies(400, 200), 5, lambda s: None) == (False, 1)


def test_network_errors_count_as_retryable_and_attempts_are_bounded() -> None:
    def down() -> int:
        raise ConnectionRefusedError

    assert deliver(down, 3, lambda s: None) == (False, 3)


def test_backoff_is_capped_at_thirty_seconds() -> None:
    waits: list[float] = []
    deliver(replies(*([500] * 10)), 10, waits.append)
    assert max(waits) == 30.0


def test_a_transition_reads_as_one_line_with_the_action_plan() -> None:
    line = describe({
        "occurred_at": "2026-02-24T09:00:00Z", "account_id": "acct-7", "trigger": "payment_failed",
        "transition": "opened", "severity": "low", "evidence": {"detail": "payment attempt 1 failed"},
        "mrr_at_risk": 19900, "currency": "USD", "action_plan": {"title": "Recover the failed payment"},
    })
    assert line == ("2026-02-24 09:00 acct-7 payment_failed opened [low] payment attempt 1 failed "
                    "MRR at risk 199.00 USD -> Recover the failed payment")
