"""Produce JSONL files of canonical, Stripe or Segment events to their topics, keyed by account id."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson
from kafka import KafkaProducer

from schemas.events import BILLING_TYPES
from streams.admin import kafka_client_config, kafka_errors
from streams.settings import Settings


def iter_jsonl(paths: Iterable[Path]) -> Iterator[bytes]:
    for path in paths:
        with open(path, "rb") as fh:
            for line in fh:
                line = line.strip()
                if line:
                    yield line


def _route(settings: Settings, line: bytes, topic_kind: str) -> tuple[str, bytes | None]:
    """Topic and key for one input line; undecodable lines still go out (the worker dead-letters them)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        obj = None
    if topic_kind == "stripe":
        cust = obj.get("data", {}).get("object", {}).get("customer") if isinstance(obj, dict) else None
        return settings.topic(settings.stripe_topic), cust.encode() if isinstance(cust, str) else None
    if topic_kind == "segment":
        gid = None
        if isinstance(obj, dict):
            gid = obj.get("groupId") or (obj.get("context") or {}).get("groupId")
        return settings.topic(settings.segment_topic), gid.encode() if isinstance(gid, str) else None
    account = obj.get("account_id") if isinstance(obj, dict) else None
    etype = obj.get("type") if isinstance(obj, dict) else None
    topic = settings.billing_topic if etype in BILLING_TYPES else settings.usage_topic
    return settings.topic(topic), account.encode() if isinstance(account, str) else None


def make_producer(settings: Settings) -> KafkaProducer:
    return KafkaProducer(
        client_id=f"{settings.app_id}-producer", acks="all", linger_ms=5, batch_size=256 * 1024,
        **kafka_client_config(settings),
    )


def produce_lines(settings: Settings, lines: Iterable[bytes], *, topic_kind: str = "canonical",
                  rate: float = 0.0, flush_timeout_s: float = 60.0) -> int:
    """Send every line; `rate` > 0 paces to that many events per second. Returns the count sent once the broker
    has acknowledged every line, waiting at most `flush_timeout_s` for it after the last send."""
    with kafka_errors(settings, "producing"):
        producer = make_producer(settings)
        n = 0
        started = time.monotonic()
        try:
            for line in lines:
                topic, key = _route(settings, line, topic_kind)
                producer.send(topic, key=key, value=line)
                n += 1
                if rate > 0 and n % 100 == 0:
                    ahead = n / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
            producer.flush(timeout=flush_timeout_s)
        finally:
            producer.close(timeout=10)
    return n


def produce_files(settings: Settings, paths: list[Path], *, topic_kind: str = "canonical",
                  rate: float = 0.0) -> int:
    return produce_lines(settings, iter_jsonl(paths), topic_kind=topic_kind, rate=rate)
