"""`churnwatch alerts tail|forward`: the reference downstream consumers of the churn-alerts topic."""

from __future__ import annotations

import argparse
import functools
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import orjson
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from rich.console import Console

from streams.admin import kafka_client_config
from streams.settings import Settings

SEVERITY_STYLE = {"low": "cyan", "medium": "yellow", "high": "red", "critical": "bold red"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="alerts_command", required=True)
    t = sub.add_parser("tail", help="a readable live feed of alert transitions")
    t.add_argument("--from-beginning", action="store_true", help="start at the oldest record, not the newest")
    t.add_argument("--max", type=int, default=0, help="stop after this many distinct records (0 = run forever)")
    t.add_argument("--idle-exit-s", type=float, default=0.0, help="exit after this long without records (0 = never)")
    f = sub.add_parser("forward", help="POST each alert transition to a webhook, idempotently, with retries")
    f.add_argument("url", help="webhook URL (http or https)")
    f.add_argument("--group", default=None, help="consumer group (default: <app id>-forwarder)")
    f.add_argument("--max-attempts", type=int, default=8, help="attempts per record before giving up (exit 1)")
    f.add_argument("--timeout-s", type=float, default=10.0, help="HTTP timeout per attempt, seconds")
    f.add_argument("--idle-exit-s", type=float, default=0.0, help="exit after this long without records (0 = never)")


def describe(record: dict[str, Any]) -> str:
    """One line a customer-success lead can read."""
    ev = record.get("evidence") or {}
    plan = record.get("action_plan") or {}
    when = str(record.get("occurred_at", ""))[:16].replace("T", " ")
    reason = f" ({record['resolution_reason']})" if record.get("resolution_reason") else ""
    detail = ev.get("detail") or ""
    mrr = record.get("mrr_at_risk")
    money = f" MRR at risk {mrr / 100:,.2f} {record.get('currency') or ''}".rstrip() if mrr else ""
    action = f" -> {plan.get('title')}" if plan.get("title") and record.get("transition") == "opened" else ""
    return (f"{when} {record.get('account_id')} {record.get('trigger')} {record.get('transition')}{reason} "
            f"[{record.get('severity')}] {detail}{money}{action}")


def _consumer(settings: Settings, group: str | None, from_beginning: bool) -> KafkaConsumer:
    return KafkaConsumer(
        settings.topic(settings.alerts_topic), group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning or group else "latest", consumer_timeout_ms=500,
        client_id=f"{settings.app_id}-alerts-cli", **kafka_client_config(settings),
    )


def tail(settings: Settings, args: argparse.Namespace, console: Console | None = None) -> int:
    console = console or Console()
    consumer = _consumer(settings, None, args.from_beginning)
    seen: set[str] = set()
    last = time.monotonic()
    try:
        while True:
            for msg in consumer:
                last = time.monotonic()
                record = orjson.loads(msg.value)
                rid = record.get("record_id")
                if rid in seen:
                    continue  # at-least-once delivery: a transition can arrive twice; show it once
                seen.add(rid)
                console.print(describe(record), style=SEVERITY_STYLE.get(record.get("severity"), ""), highlight=False)
                if args.max and len(seen) >= args.max:
                    return 0
            if args.idle_exit_s and time.monotonic() - last >= args.idle_exit_s:
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        consumer.close()


def post(url: str, body: bytes, key: str, timeout_s: float) -> int:
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Idempotency-Key": key, "User-Agent": "churnwatch-forwarder",
    })
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def deliver(send: Callable[[], int], max_attempts: int, sleep: Callable[[float], None] = time.sleep) -> tuple[bool, int]:
    """Try `send` until a 2xx; retry 5xx, 408, 429 and network errors with exponential backoff (0.5 s doubling,
    capped at 30 s). Other 4xx are permanent: the receiver rejects the record. Returns (delivered, attempts)."""
    delay = 0.5
    for attempt in range(1, max_attempts + 1):
        try:
            status = send()
        except OSError:
            status = 0
        if 200 <= status < 300:
            return True, attempt
        if 400 <= status < 500 and status not in (408, 429):
            return False, attempt
        if attempt < max_attempts:
            sleep(delay)
            delay = min(30.0, delay * 2)
    return False, max_attempts


def forward(settings: Settings, args: argparse.Namespace, console: Console | None = None) -> int:
    """At-least-once to the webhook: a record's offset is committed only after the webhook accepted it; the
    record_id goes as the Idempotency-Key so the receiver can drop repeats."""
    console = console or Console(stderr=True)
    group = args.group or f"{settings.app_id}-forwarder"
    consumer = _consumer(settings, group, True)
    delivered = 0
    last = time.monotonic()
    try:
        while True:
            for msg in consumer:
                last = time.monotonic()
                record = orjson.loads(msg.value)
                key = str(record.get("record_id") or f"{msg.partition}:{msg.offset}")
                send = functools.partial(post, args.url, msg.value, key, args.timeout_s)
                ok, attempts = deliver(send, args.max_attempts)
                if not ok:
                    console.print(f"churnwatch alerts forward: {key} not accepted after {attempts} attempts; "
                                  "stopping without committing it", style="red")
                    return 1
                delivered += 1
                consumer.commit({TopicPartition(msg.topic, msg.partition): OffsetAndMetadata(msg.offset + 1, None, -1)})
            if args.idle_exit_s and time.monotonic() - last >= args.idle_exit_s:
                console.print(f"forwarded {delivered} alert records")
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        consumer.close()


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.alerts_command == "tail":
        return tail(settings, args)
    return forward(settings, args)
