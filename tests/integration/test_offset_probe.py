"""On the real broker: the input-order guard's lookups (where the group resumes, which offsets hold records)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from streams.adapters.offset_probe import OffsetProbe
from streams.admin import kafka_client_config

pytestmark = pytest.mark.integration


def produce_to_partition_0(settings, topic: str, n: int) -> None:
    producer = KafkaProducer(acks="all", **kafka_client_config(settings))
    for _ in range(n):
        producer.send(topic, key=b"k", value=b"{}", partition=0)
    producer.flush(30)
    producer.close(5)


def test_a_group_without_commits_resumes_at_the_log_start_and_one_with_commits_at_its_offset(run_env) -> None:
    settings = run_env.settings()
    usage = settings.topic(settings.usage_topic)
    produce_to_partition_0(settings, usage, 5)
    tp = TopicPartition(usage, 0)
    probe = OffsetProbe(settings.app_id, kafka_client_config(settings))
    try:
        assert asyncio.run(probe.start_offsets([(usage, 0)])) == {(usage, 0): 0}
        committer = KafkaConsumer(group_id=settings.app_id, enable_auto_commit=False,
                                  **kafka_client_config(settings))
        committer.assign([tp])
        committer.commit({tp: OffsetAndMetadata(3, "", -1)})
        committer.close(autocommit=False)
        assert asyncio.run(probe.start_offsets([(usage, 0)])) == {(usage, 0): 3}
    finally:
        probe.close()


def test_a_transaction_marker_holds_no_record_and_the_probe_names_the_next_offset(run_env) -> None:
    settings = run_env.settings()
    usage = settings.topic(settings.usage_topic)
    producer = KafkaProducer(transactional_id=f"probe-test-{uuid.uuid4().hex[:8]}", acks="all",
                             **kafka_client_config(settings))
    producer.init_transactions()
    producer.begin_transaction()
    for _ in range(3):  # offsets 0, 1, 2 on partition 0; the commit marker takes offset 3
        producer.send(usage, key=b"k", value=b"{}", partition=0)
    producer.commit_transaction()
    producer.close(5)
    produce_to_partition_0(settings, usage, 1)  # the first record after the marker
    probe = OffsetProbe(settings.app_id, kafka_client_config(settings))
    try:
        present = asyncio.run(probe.first_present((usage, 0), 1))
        after_marker = asyncio.run(probe.first_present((usage, 0), 3))
    finally:
        probe.close()
    assert present == 1
    assert after_marker == 4
