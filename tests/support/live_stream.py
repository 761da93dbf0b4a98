"""Drive a real worker like live traffic and read back what it published (alerts, processed counters)."""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from streams.settings import Settings
from streams.tools.produce import _route, make_producer
from tests.support.kafka_io import read_topic


def wait_until(check: Callable[[], bool], timeout_s: float = 60) -> bool:
    """Polls `check` every 0.2 s until it is true (True) or `timeout_s` passed (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def metric_series(base_url: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample named `name` on a worker's /metrics (a counter's with its `_total`), with its labels, read by
    prometheus_client's own exposition parser."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return [(dict(sample.labels), sample.value) for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name]


def metric_samples(base_url: str, name: str) -> dict[str, float]:
    """One series' samples on a worker's /metrics, by label set as written there (`partition="0"`; "" without
    labels)."""
    return {",".join(f'{k}="{v}"' for k, v in labels.items()): value for labels, value in metric_series(base_url, name)}


def metric_totals_by(base_url: str, name: str, label: str) -> Counter[str]:
    """One series' samples summed by the value of one of its labels ("?" for samples without it)."""
    out: Counter[str] = Counter()
    for labels, value in metric_series(base_url, name):
        out[labels.get(label, "?")] += int(value)
    return out


def processed_count(base_url: str) -> float:
    """The worker's `processed` events so far (its /metrics counter, every topic and type)."""
    return metric_totals_by(base_url, "churnwatch_events_total", "outcome")["processed"]


def stream_day_by_day(settings: Settings, base_url: str, events: list[dict[str, Any]],
                      day_timeout_s: float = 30) -> None:
    """Produce one event-time day at a time and wait until the worker has applied it: live traffic, not a
    backlog. (A backlog lets the worker read the small billing topic weeks ahead of usage; see ADR 0004.)

    Every event must be one the worker will count as `processed` (no duplicates, none too late), or each day
    waits out `day_timeout_s`."""
    by_day: dict[str, list[bytes]] = {}
    for e in events:
        by_day.setdefault(e["occurred_at"][:10], []).append(orjson.dumps(e))
    producer = make_producer(settings)
    sent = 0
    try:
        for day in sorted(by_day):
            for line in by_day[day]:
                topic, key = _route(settings, line, "canonical")
                producer.send(topic, key=key, value=line)
            producer.flush(30)
            sent += len(by_day[day])
            deadline = time.monotonic() + day_timeout_s
            while processed_count(base_url) < sent and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        producer.close(5)


def read_alerts(settings: Settings, idle_ms: int = 1500) -> list[dict[str, Any]]:
    """Every record on the alerts topic so far (raw: redeliveries included)."""
    return [orjson.loads(v) for _k, v in read_topic(settings, settings.topic(settings.alerts_topic), idle_ms=idle_ms)]


def wait_for_alerts(settings: Settings, expect: int, timeout_s: float = 90) -> list[dict[str, Any]]:
    """Alert records once at least `expect` distinct record ids arrived (or what there is at the deadline)."""
    deadline = time.monotonic() + timeout_s
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = read_alerts(settings)
        if len({r["record_id"] for r in records}) >= expect:
            break
        time.sleep(1)
    return records
