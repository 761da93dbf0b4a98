"""On the real broker: the batched output sender puts every record where Kafka's partitioner would, in order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer

from streams.adapters.topic_sender import TopicSender
from streams.admin import kafka_client_config
from streams.partitioning import expected_partition

pytestmark = pytest.mark.integration


def read_all(settings: Any, topic: str, expected: int) -> list[Any]:
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=10_000, **kafka_client_config(settings))
    try:
        records = []
        for record in consumer:
            records.append(record)
            if len(records) >= expected:
                break
        return records
    finally:
        consumer.close()


async def send_all(settings: Any, topic: str, records: list[tuple[bytes, bytes]], **producer_options: Any
                   ) -> list[int]:
    """Put every record without awaiting, as the worker does under its lock; returns what `on_failed` counted."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", **producer_options)
    await producer.start()
    failed: list[int] = []
    try:
        sender = TopicSender(lambda: producer, topic, failed.append)
        for key, value in records:
            sender.put(key, value)
        await sender.flush()
        await producer.flush()
        assert sender.pending == 0
    finally:
        await producer.stop()
    return failed


def test_every_record_lands_on_its_keys_partition_in_the_order_it_was_put(run_env) -> None:
    settings = run_env.settings()
    topic = settings.topic(settings.health_topic)
    records = [(f"acct-{n % 37}".encode(), f"{n}".encode()) for n in range(1_000)]
    assert asyncio.run(send_all(settings, topic, records)) == []
    got = read_all(settings, topic, len(records))
    assert len(got) == len(records)
    for record in got:
        assert record.partition == expected_partition(record.key, settings.topic_partitions)
    by_key: dict[bytes, list[int]] = {}
    for record in got:
        by_key.setdefault(record.key, []).append(int(record.value))
    assert by_key == {key: sorted(values) for key, values in by_key.items()}  # each key's records in put order
    assert sorted(n for values in by_key.values() for n in values) == list(range(1_000))


def test_a_record_the_broker_refuses_is_counted_as_failed_and_the_next_burst_still_goes(run_env) -> None:
    settings = run_env.settings()
    topic = settings.topic(settings.health_topic)

    async def two_bursts() -> list[int]:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        failed: list[int] = []
        try:
            sender = TopicSender(lambda: producer, topic, failed.append)
            sender.put(b"acct-1", b"x" * 2_000_000)  # above the broker's message.max.bytes (1 MiB)
            await sender.flush()
            await producer.flush()
            sender.put(b"acct-2", b"fine")
            await sender.flush()
            await producer.flush()
        finally:
            await producer.stop()
        return failed

    assert asyncio.run(two_bursts()) == [1]
    got = read_all(settings, topic, 1)
    assert [(r.key, r.value) for r in got] == [(b"acct-2", b"fine")]
