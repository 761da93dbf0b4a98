"""Live equals replay on the generator's world: the same `churnwatch simulate` input through the real broker and a
real worker, and through in-process replay (`churnwatch replay`'s defaults), gives the same tables, read models
and alerts.

How live and replay are made comparable (ADR 0004, ADR 0006). Time-driven rules are evaluated at day ends: an
account's day end is evaluated when its next usage event moves its clock to a later day, or when its partition's
event-time watermark (newest usage - CHURNWATCH_WATERMARK_DELAY_S, 1 h) passes it, and billing dated after the
account's usage front waits for usage to pass it. Replay applies the events in event-time order and ticks after
each batch of 5,000. The worker reads two topics (billing, usage) whose interleaving is up to the consumer, and
ticks on a timer (0.2 s here; an idle partition follows the worker's highest watermark after 1 s). Fed as one
backlog, the worker's watermarks would run weeks ahead within a batch and how far a tick got would depend on
fetch sizes. So the input is streamed like live traffic, one event-time day at a time, each day applied (the
worker's `processed` counter) before the next is sent, as tests/integration/test_alerts_live.py does
(tests/support/live_stream.py). What is left free is exactly what the design claims not to matter: the order
of billing and usage records within a day, how records are batched, and when the timer runs.

Asserted, for every account of the world:
- the table value (`account_to_state`, the newest changelog record per key) equals replay's state in every field
  but stream positions (Kafka offsets; the usage front a tick leaves: see `comparable`), alert book included;
- the read model served by the worker (`/accounts/{id}`) equals replay's `read_model`;
- the alert records on `churn-alerts` are exactly replay's: the same (record id, alert id, account, trigger,
  transition) set, and every field of every account alert record equal. Portfolio records are compared by that
  identity only (the worker publishes a month's record from the first periodic computation that crosses the
  threshold, replay from its final one); their other differences are printed;
- every event is processed and nothing is dead-lettered.
"""

from __future__ import annotations

import dataclasses
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from schemas.alerts import AlertRecord
from streams.domain.aggregate import AccountAggregate, decode_aggregate, encode_aggregate, read_model
from streams.domain.config import DomainConfig
from streams.replay import replay_lines
from streams.tools.simulate import generate
from streams.topics import changelog_topic_name
from tests.support.kafka_io import read_topic
from tests.support.live_stream import (
    metric_samples,
    processed_count,
    read_alerts,
    stream_day_by_day,
    wait_for_alerts,
)

pytestmark = pytest.mark.integration

ACCOUNTS = 60
DAYS = 120
SEED = 11
START = datetime(2026, 1, 5, tzinfo=UTC)

# What identifies an alert transition (redeliveries of a record collapse onto it).
KEY = ("record_id", "alert_id", "account_id", "trigger", "transition")


def fetch(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return {"http_error": exc.code}


def comparable(agg: AccountAggregate) -> AccountAggregate:
    """The table value minus stream positions, which are not expected to be equal: the Kafka offsets the worker
    records per topic (replay has none), and the usage front a tick leaves (ADR 0006: the newest usage of the
    account's partition live, of the whole file in replay)."""
    agg.state.offsets.clear()
    if hasattr(agg, "front_s"):  # ADR 0006 (billing held until usage passes it) adds the front
        agg.front_s = 0
    return agg


def field_diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two decoded table values differ, as `path: live != replay` lines (dataclasses, dicts)."""
    if dataclasses.is_dataclass(a) and type(a) is type(b):
        return [d for f in dataclasses.fields(a) if f.compare
                for d in field_diff(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")]
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(a.keys() | b.keys(), key=str)
                for d in field_diff(a.get(k), b.get(k), f"{path}[{k!r}]")]
    return [] if a == b else [f"{path}: {repr(a)[:160]} != {repr(b)[:160]}"]


def by_key(records: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Distinct alert records by identity, normalised through the schema (redeliveries collapse)."""
    out = {}
    for r in records:
        rec = AlertRecord.model_validate(r).model_dump(mode="json")
        out[tuple(rec[k] for k in KEY)] = rec
    return out


def described(records: dict[tuple[Any, ...], dict[str, Any]], keys: set[tuple[Any, ...]]) -> list[str]:
    return [f"{k[2:]} at {records[k]['occurred_at']} (event {records[k]['triggered_by_event_at']}, "
            f"health {records[k]['health_score']}): {records[k]['evidence']}" for k in sorted(keys)]


def test_generated_world_live_equals_replay(run_env, worker_factory) -> None:
    started = time.monotonic()
    events, truth = generate(ACCOUNTS, DAYS, seed=SEED, start=START)
    lines = [orjson.dumps(e) for e in events]
    config = DomainConfig()
    replayed = replay_lines(lines, config)  # `churnwatch replay`'s defaults
    assert replayed.processed == len(events), "the generated world has no duplicates or late events"
    accounts = sorted(replayed.states)
    assert accounts == sorted({e["account_id"] for e in events}) and len(accounts) >= ACCOUNTS * 0.9
    replay_alerts = by_key([orjson.loads(r.model_dump_json()) for r in replayed.alerts])
    assert len(replay_alerts) == len(replayed.alerts), "replay's record ids are unique"
    churners = sum(1 for t in truth if t.churns_on is not None)
    account_triggers = {k[3] for k in replay_alerts} - {"customer_churn_rate", "company_nps", "cohort_retention"}
    assert churners and len(account_triggers) >= 5, f"the world must exercise account alerts: {account_triggers}"

    settings = run_env.settings()
    # Steps of 1 ms: flushes, ticks and acknowledgements each run in many steps with batches applied in between
    # (ADR 0012, ADR 0016), and the result must still equal replay's. A cache of 5 clean states: most accounts are
    # evicted and decoded from the table again, during flushes too, as on a worker owning more accounts than it
    # caches (CHURNWATCH_STATE_CACHE_ACCOUNTS). A flush every second: only a written state is evicted, and with the
    # default 10 s a stream that took less than ~11 s ended before the first flush had written one.
    worker = worker_factory("w1", extra_env={"CHURNWATCH_ALERT_TICK_S": "0.2", "CHURNWATCH_IDLE_PARTITION_S": "1",
                                              "CHURNWATCH_COHORT_REFRESH_S": "1", "CHURNWATCH_STATE_FLUSH_STEP_S": "0.001",
                                              "CHURNWATCH_STATE_FLUSH_INTERVAL_S": "1",
                                              "CHURNWATCH_STATE_CACHE_ACCOUNTS": "5"})
    streaming = time.monotonic()
    stream_day_by_day(settings, worker.base_url, events)
    streamed_s = time.monotonic() - streaming
    assert processed_count(worker.base_url) == len(events)
    # The small cache did evict: accounts were decoded from the table again.
    assert metric_samples(worker.base_url, "churnwatch_state_cache_loads_total").get("", 0.0) > 0

    # The last day ends are evaluated by the timer once idle partitions follow the highest watermark (1 s).
    wait_for_alerts(settings, len(replay_alerts), timeout_s=45)
    wanted = {a: orjson.loads(orjson.dumps(read_model(replayed.states[a], config))) for a in accounts}
    live_models: dict[str, Any] = {}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        live_models = {a: fetch(f"{worker.base_url}/accounts/{a}") for a in accounts}
        if live_models == wanted:
            break
        time.sleep(1)
    raw_alerts = read_alerts(settings)
    live_alerts = by_key(raw_alerts)
    table: dict[str, bytes] = {}
    for key, value in read_topic(settings, changelog_topic_name(settings.app_id, "account_to_state"), idle_ms=1500):
        assert key is not None
        table[key.decode()] = value  # a changelog's newest record per key is the table value
    live_states = {a: comparable(decode_aggregate(v)) for a, v in table.items()}
    replay_states = {a: comparable(decode_aggregate(encode_aggregate(s))) for a, s in replayed.states.items()}
    dead = read_topic(settings, settings.topic(settings.dead_letter_topic), idle_ms=500)

    problems: list[str] = []
    only_live = described(live_alerts, live_alerts.keys() - replay_alerts.keys())
    only_replay = described(replay_alerts, replay_alerts.keys() - live_alerts.keys())
    if only_live or only_replay:
        problems.append("alert transitions differ:" + "".join(f"\n  only live: {d}" for d in only_live)
                        + "".join(f"\n  only replay: {d}" for d in only_replay))
    model_diff = {a: {k: (live_models.get(a, {}).get(k), v) for k, v in wanted[a].items()
                      if live_models.get(a, {}).get(k) != v} for a in accounts if live_models.get(a) != wanted[a]}
    if model_diff:
        shown = "\n  ".join(f"{a}: {d}" for a, d in sorted(model_diff.items())[:15])
        problems.append(f"{len(model_diff)} read models differ (live, replay):\n  {shown}")
    if set(live_states) != set(replay_states):
        problems.append(f"table keys: only live {sorted(set(live_states) - set(replay_states))}, "
                        f"only replay {sorted(set(replay_states) - set(live_states))}")
    state_diff = {a: field_diff(live_states[a], replay_states[a]) for a in sorted(replay_states)
                  if a in live_states and encode_aggregate(live_states[a]) != encode_aggregate(replay_states[a])}
    if state_diff:
        shown = "\n  ".join(f"{a}: {'; '.join(d[:4])}" for a, d in list(state_diff.items())[:30])
        problems.append(f"{len(state_diff)} table values differ (live != replay):\n  {shown}")
    if dead:
        problems.append(f"{len(dead)} dead letters: {[orjson.loads(v).get('reason') for _k, v in dead[:5]]}")
    # Account alert records must be equal in every field. Portfolio records (account "portfolio") only by
    # identity: the worker recomputes the portfolio every few seconds and publishes a month's record the first
    # time the month crosses a threshold, with that computation's evidence; replay computes once, at the end.
    contents = {k: ", ".join(f"{f} live {live_alerts[k][f]} replay {replay_alerts[k][f]}"
                             for f in replay_alerts[k] if live_alerts[k][f] != replay_alerts[k][f])
                for k in sorted(live_alerts.keys() & replay_alerts.keys()) if live_alerts[k] != replay_alerts[k]}
    account_contents = [f"{k[2:]}: {d}" for k, d in contents.items() if k[2] != "portfolio"]
    if account_contents:
        problems.append(f"{len(account_contents)} account alert records differ in content:\n  "
                        + "\n  ".join(account_contents[:15]))
    portfolio_contents = [f"{k[2:]}: {d}" for k, d in contents.items() if k[2] == "portfolio"]
    note = (f"portfolio records with other evidence (not asserted): {len(portfolio_contents)}"
            + "".join(f"\n  {c}" for c in portfolio_contents))
    assert not problems, (f"live != replay (streamed in {streamed_s:.1f} s)\n" + "\n".join(problems)
                          + "\n" + note)

    by_trigger = Counter(k[3] for k in live_alerts)
    print(f"[live=replay] {len(events)} events of {len(accounts)} accounts over {DAYS} days ({churners} churn) "
          f"streamed day by day in {streamed_s:.1f} s: {len(accounts)} table values, read models and "
          f"{len(live_alerts)} alert transitions ({len(raw_alerts)} raw records) equal replay's; "
          f"{dict(by_trigger)}; {note}; total {time.monotonic() - started:.1f} s")
