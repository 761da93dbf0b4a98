"""Small real-Kafka helpers for tests: produce raw records, read a whole topic."""

from __future__ import annotations

import time
from collections.abc import Iterable

from kafka import KafkaConsumer, KafkaProducer

from streams.admin import kafka_client_config
from streams.settings import Settings


def produce_raw(settings: Settings, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    producer = KafkaProducer(acks="all", linger_ms=5, max_request_size=2 * 1024 * 1024,
                             **kafka_client_config(settings))
    n = 0
    for key, value in records:
        producer.send(topic, key=key, value=value)
        n += 1
    producer.flush(30)
    producer.close(5)
    return n


def read_topic(settings: Settings, topic: str, *, expect: int | None = None, timeout_s: float = 60,
               idle_ms: int = 3000) -> list[tuple[bytes | None, bytes]]:
    """All records of a topic from the beginning; waits until `expect` records arrived (or timeout)."""
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=idle_ms, **kafka_client_config(settings))
    out: list[tuple[bytes | None, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for msg in consumer:
                out.append((msg.key, msg.value))
            if expect is None or len(out) >= expect:
                break
    finally:
        consumer.close()
    return out


def records_in_topic(settings: Settings, topic: str) -> int:
    """Sum of the topic's end offsets: how many records it has ever held (0 for a topic not created yet)."""
    from kafka import TopicPartition

    consumer = KafkaConsumer(enable_auto_commit=False, **kafka_client_config(settings))
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions]) if partitions else {}
        return sum(ends.values())
    finally:
        consumer.close()
