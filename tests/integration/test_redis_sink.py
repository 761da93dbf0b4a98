"""On the real Redis: the read-model sink writes every record, with its TTL and score, by script or by SETs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import redis

from streams import stack
from streams.adapters.metrics import Metrics
from streams.adapters.redis_sink import SCRIPT_CHUNK, RedisSink

pytestmark = pytest.mark.integration

TTL_S = 3_600


@pytest.fixture
def prefix(local_stack: stack.StackConfig) -> Iterator[str]:
    """A key prefix of the test's own, deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}:"
    yield name
    client = redis.Redis.from_url(local_stack.redis_url)
    keys = list(client.scan_iter(f"{name}*", count=1_000))
    if keys:
        client.delete(*keys)


def records(prefix: str, n: int, version: int = 1) -> dict[str, bytes]:
    return {f"{prefix}account:acct-{i:04d}": f'{{"v":{version},"i":{i}}}'.encode() for i in range(n)}


async def write(url: str, prefix: str, batch: dict[str, bytes], metrics: Metrics | None = None) -> RedisSink:
    """Put `batch` and one score per record into a new sink and flush it once."""
    sink = RedisSink(url, metrics or Metrics(), ttl_s=TTL_S)
    try:
        for n, (key, value) in enumerate(batch.items()):
            sink.put(key, value)
            sink.put_score(f"{prefix}accounts:by_score", key.rsplit(":", 1)[1], float(n))
        await sink.flush_once()
    finally:
        await sink.stop()
    return sink


def assert_in_redis(client: redis.Redis, prefix: str, batch: dict[str, bytes]) -> None:
    keys = list(batch)
    assert client.mget(keys) == list(batch.values())
    ttls = {client.ttl(k) for k in keys[:: max(1, len(keys) // 20)]}
    assert all(TTL_S - 60 < t <= TTL_S for t in ttls), ttls
    assert client.zcard(f"{prefix}accounts:by_score") == len(batch)
    last = keys[-1].rsplit(":", 1)[1]
    assert client.zscore(f"{prefix}accounts:by_score", last) == float(len(batch) - 1)


def test_every_record_lands_with_its_ttl_and_score_through_the_script(local_stack, prefix) -> None:
    batch = records(prefix, 2 * SCRIPT_CHUNK + 100)  # three script calls, the last one short
    metrics = Metrics()
    sink = asyncio.run(write(local_stack.redis_url, prefix, batch, metrics))
    client = redis.Redis.from_url(local_stack.redis_url)
    assert sink.scripting
    assert_in_redis(client, prefix, batch)
    assert metrics.registry.get_sample_value("churnwatch_redis_sink_writes_total") == len(batch)


def test_a_redis_that_lost_its_scripts_still_gets_every_record(local_stack, prefix) -> None:
    client = redis.Redis.from_url(local_stack.redis_url)

    async def twice() -> RedisSink:
        sink = RedisSink(local_stack.redis_url, Metrics(), ttl_s=TTL_S)
        try:
            for key, value in records(prefix, 10).items():
                sink.put(key, value)
            await sink.flush_once()
            client.script_flush()  # as a restarted Redis: the sink's script is gone
            for key, value in records(prefix, 300, version=2).items():
                sink.put(key, value)
                sink.put_score(f"{prefix}accounts:by_score", key.rsplit(":", 1)[1], 1.0)
            await sink.flush_once()
        finally:
            await sink.stop()
        return sink

    sink = asyncio.run(twice())
    assert sink.scripting
    assert client.mget(list(records(prefix, 300, version=2))) == list(records(prefix, 300, version=2).values())
    assert client.zcard(f"{prefix}accounts:by_score") == 300


def test_a_redis_user_not_allowed_scripts_gets_every_record_as_sets(local_stack, prefix, caplog) -> None:
    admin = redis.Redis.from_url(local_stack.redis_url)
    user, password = f"cw-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                      commands=["+@all", "-@scripting"])
    try:
        url = f"redis://{user}:{password}@127.0.0.1:{local_stack.redis_port}/0"
        batch = records(prefix, SCRIPT_CHUNK + 1)
        sink = asyncio.run(write(url, prefix, batch))
        assert not sink.scripting
        assert_in_redis(admin, prefix, batch)
        assert "refused scripting" in caplog.text
    finally:
        admin.acl_deluser(user)
