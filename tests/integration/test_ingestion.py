"""On the real broker: valid events interleaved with many kinds of bad input, retries and late events."""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from tests.support.kafka_io import produce_raw, read_topic

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)


def canonical(account: str, n: int, etype: str = "session.started", at: datetime | None = None, **f: object) -> bytes:
    body = {"event_id": f"{account}-e{n}", "account_id": account, "type": etype,
            "occurred_at": (at or T0 + timedelta(minutes=n)).isoformat(), **f}
    if etype == "session.started":
        body.setdefault("user_id", f"{account}-u{n % 4}")
    return orjson.dumps(body)


def bad_inputs(account: str) -> list[tuple[str, bytes]]:
    """(expected dead-letter reason, raw bytes): at least ten kinds of bad input."""
    ok = orjson.loads(canonical(account, 999))
    return [
        ("invalid_json", b'{"event_id": "x", "account_id": '),
        ("not_an_object", b"[1, 2, 3]"),
        ("invalid_json", b"\xff\xfe\x00 not utf-8"),
        ("invalid_event", orjson.dumps({**ok, "event_id": "b1", "type": "nps.responded", "user_id": "u", "score": 11})),
        ("invalid_event", orjson.dumps({**ok, "event_id": "b2", "type": "invoice.paid", "amount": -100})),
        ("invalid_event", orjson.dumps({**ok, "event_id": "b3", "type": "nps.responded", "user_id": "u", "score": "nine"})),
        ("unknown_type", orjson.dumps({**ok, "event_id": "b4", "type": "telepathy.used"})),
        ("missing_account", orjson.dumps({k: v for k, v in {**ok, "event_id": "b5"}.items() if k != "account_id"})),
        ("oversize", orjson.dumps({**ok, "event_id": "b6", "padding": "x" * 70_000})),
        ("invalid_event", orjson.dumps({**ok, "event_id": "b7", "occurred_at": "2026-05-20T12:00:00"})),
        ("invalid_event", orjson.dumps({**ok, "event_id": "b8", "occurred_at": "1900-01-01T00:00:00Z"})),
        ("invalid_event", orjson.dumps({"specversion": "1.0", "id": "b9", "type": "session.started", "data": {}})),
        ("too_late", canonical(account, 9001, at=T0 - timedelta(days=30))),
    ]


def test_valid_events_count_once_bad_ones_are_dead_lettered_and_the_worker_keeps_consuming(
    run_env, worker_factory
) -> None:
    settings = run_env.settings()
    usage = settings.topic(settings.usage_topic)
    accounts = [f"acct-{i}" for i in range(10)]
    per_account = 30
    records: list[tuple[bytes | None, bytes]] = []
    expected_reasons: Counter[str] = Counter()
    for i in range(per_account):
        for a in accounts:
            records.append((a.encode(), canonical(a, i)))
            if i % 10 == 3:  # a webhook retry: the same event id again
                records.append((a.encode(), canonical(a, i)))
        if i == per_account // 2:
            for reason, raw in bad_inputs(accounts[0]):
                records.append((accounts[0].encode(), raw))
                expected_reasons[reason] += 1
    worker = worker_factory("w1")
    produce_raw(settings, usage, records)
    dead = read_topic(settings, settings.topic(settings.dead_letter_topic), expect=sum(expected_reasons.values()))
    letters = [orjson.loads(v) for _k, v in dead]
    assert Counter(d["reason"] for d in letters) == expected_reasons
    assert all(d["source_topic"] == usage and d["offset"] is not None and d["message"] for d in letters)

    # The worker is still consuming: one more valid event after all the bad ones is applied.
    produce_raw(settings, usage, [(b"acct-9", canonical("acct-9", 500))])
    deadline = time.monotonic() + 60
    sessions: dict[str, int] = {}
    while time.monotonic() < deadline:
        sessions = {}
        for a in accounts:
            with urllib.request.urlopen(f"{worker.base_url}/accounts/{a}", timeout=5) as resp:
                sessions[a] = orjson.loads(resp.read())["engagement"]["last7"]["sessions"]
        if sessions["acct-9"] == per_account + 1:
            break
        time.sleep(0.5)
    expected = {a: per_account for a in accounts} | {"acct-9": per_account + 1}
    assert sessions == expected, worker.log()[-2000:]
    print(f"[ingest] {len(records)} inputs: {len(accounts) * per_account} valid counted once, "
          f"{len(letters)} dead letters by reason {dict(expected_reasons)}")
