"""End to end on the real broker and Redis: events in, account state in the table, health out to topic and Redis."""

from __future__ import annotations

import time
import urllib.request
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import ConfigResource, ConfigResourceType

from streams.admin import kafka_client_config
from streams.tools.produce import produce_lines
from streams.topics import changelog_topic_name

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def event(account: str, n: int, etype: str, **fields: object) -> bytes:
    return orjson.dumps({
        "event_id": f"{account}-{n}", "account_id": account, "type": etype,
        "occurred_at": (T0 + timedelta(hours=n)).isoformat(), **fields,
    })


def slice_events(accounts: list[str]) -> list[bytes]:
    out = []
    for a in accounts:
        out.append(event(a, 0, "subscription.started", plan="team", seats=5, mrr=19900, currency="USD"))
        for n in range(1, 11):
            out.append(event(a, n, "session.started", user_id=f"{a}-u{n % 3}"))
            out.append(event(a, n, "feature.used", user_id=f"{a}-u{n % 3}", feature=f"f{n % 4}", count=2))
    return out


def test_a_worker_creates_its_changelog_topics_compacted_in_segments_of_the_configured_size(
    run_env, worker_factory
) -> None:
    # A memory:// worker reads a table's whole changelog at every start, and Kafka compacts only closed segments
    # (ADR 0028): the segment size bounds the uncompacted part. A size other than the default shows the setting
    # reaches the broker.
    settings = run_env.settings()
    worker_factory("w1", extra_env={"CHURNWATCH_CHANGELOG_SEGMENT_BYTES": str(8 * 2**20)})
    names = [changelog_topic_name(settings.app_id, table) for table in ("account_to_state", "account_to_cohort_inputs")]
    admin = KafkaAdminClient(client_id=f"{run_env.run_id}-describe", **kafka_client_config(settings))
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    finally:
        admin.close()
    topics = described["topic"]
    assert {name: (topics[name]["cleanup.policy"]["value"], topics[name]["segment.bytes"]["value"])
            for name in names} == {name: ("compact", str(8 * 2**20)) for name in names}


def test_a_canonical_event_stream_reaches_the_table_the_health_topic_and_redis(run_env, worker_factory) -> None:
    settings = run_env.settings()
    worker = worker_factory("w1")
    accounts = [f"acct-{i}" for i in range(6)]
    lines = slice_events(accounts)
    sent = produce_lines(settings, lines)
    assert sent == len(lines)
    print(f"[slice] produced {sent} records to {settings.topic(settings.usage_topic)} / billing via {settings.kafka_bootstrap}")

    r = redis.Redis.from_url(settings.redis_url.get_secret_value())
    deadline = time.monotonic() + 60
    records: dict[str, dict] = {}
    while time.monotonic() < deadline and len(records) < len(accounts):
        for a in accounts:
            raw = r.get(f"{settings.redis_key_prefix}account:{a}")
            if raw is not None:
                rec = orjson.loads(raw)
                if (rec.get("last_activity") or "") >= (T0 + timedelta(hours=10)).isoformat()[:10]:
                    records[a] = rec
        time.sleep(0.3)
    assert sorted(records) == accounts, worker.log()[-3000:]
    for a, rec in records.items():
        assert rec["account_id"] == a
        assert rec["plan"] == "team"
        assert rec["mrr"] == 19900
        assert 0 <= rec["score"] <= 100

    with urllib.request.urlopen(f"{worker.base_url}/accounts/acct-3", timeout=5) as resp:
        body = orjson.loads(resp.read())
    assert body["account_id"] == "acct-3"
    assert body["mrr"] == 19900

    consumer = KafkaConsumer(
        settings.topic(settings.health_topic), auto_offset_reset="earliest", consumer_timeout_ms=5000,
        **kafka_client_config(settings),
    )
    seen = {m.key.decode() for m in consumer}
    consumer.close()
    assert seen == set(accounts)
    print(f"[slice] health records for {len(seen)} accounts crossed the broker; Redis and HTTP agree")


def test_a_worker_on_the_rocksdb_store_files_every_account_and_serves_it_again_after_a_restart(
        run_env, worker_factory) -> None:
    # Faust's own RocksDB store filed keys under the current event's partition: with batches that is another
    # account's, and the agent crashed (streams/adapters/rocksdb_store.py).
    settings = run_env.settings()
    accounts = [f"rocks-{i}" for i in range(12)]
    produce_lines(settings, slice_events(accounts))

    def served(base_url: str) -> dict[str, int]:
        deadline, out = time.monotonic() + 60, {}
        while time.monotonic() < deadline and len(out) < len(accounts):
            for a in accounts:
                try:
                    with urllib.request.urlopen(f"{base_url}/accounts/{a}", timeout=5) as resp:
                        body = orjson.loads(resp.read())
                except OSError:
                    continue
                # null until the account's usage is applied (its billing may come a batch earlier): not yet
                if (body.get("last_activity") or "") >= (T0 + timedelta(hours=10)).isoformat()[:10]:
                    out[a] = body["mrr"]
            time.sleep(0.3)
        return out

    first = worker_factory("rocks", extra_env={"CHURNWATCH_STORE": "rocksdb://"})
    assert served(first.base_url) == dict.fromkeys(accounts, 19900), first.log()[-3000:]
    assert "Crashed" not in first.log()
    first.stop()
    again = worker_factory("rocks", extra_env={"CHURNWATCH_STORE": "rocksdb://"})
    assert served(again.base_url) == dict.fromkeys(accounts, 19900), again.log()[-3000:]
    print(f"[rocksdb] {len(accounts)} accounts served by a rocksdb:// worker, and again after its restart")
