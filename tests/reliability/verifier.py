"""An independent verifier for the reliability tests: it shares no code with `streams/`.

It reads what was produced and what the pipeline wrote, straight from Kafka, and recomputes the expected
outcome of every input with its own small rule set (not the worker's decoder, not its domain):

- `expected_outcomes` classifies every input record (topic, partition, offset) as `processed`, `duplicate` or
  `dead` (with the reason family when it is unambiguous), from the bytes alone plus per-account, per-stream
  dedupe and lateness bookkeeping in arrival order (one account's records of one topic share a partition).
- `health_topic_report` counts raw and distinct records on the (at-least-once) account-health topic and returns
  the newest value per key.
- `alerts_report` summarises the churn-alerts topic: the set of alert ids, raw duplicates, and duplicates after
  de-duplicating by (alert_id, transition). An empty topic gives an empty, all-zero report.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition

MAX_BYTES = 64 * 1024
LATENESS_DAYS = 7
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
BILLING = {
    "subscription.started", "subscription.changed", "subscription.renewed", "subscription.cancel_scheduled",
    "subscription.canceled", "subscription.reactivated", "trial.started", "trial.converted", "trial.expired",
    "invoice.paid", "payment.failed", "refund.issued",
}
# The payload fields this verifier knows for the types the reliability generators emit: name -> python type.
FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "session.started": {"user_id": str},
    "feature.used": {"user_id": str, "feature": str, "count": int},
    "user.added": {"user_id": str, "role": str},
    "nps.responded": {"user_id": str, "score": int},
    "subscription.started": {"plan": str, "seats": int, "mrr": int, "currency": str},
    "subscription.cancel_scheduled": {},
    "subscription.canceled": {},
    "invoice.paid": {"amount": int, "currency": str},
}


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def read_all(bootstrap: str, topic: str, *, timeout_s: float = 60) -> list[Rec]:
    """Every record of `topic` up to the end offsets taken at call time (not an idle guess)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[Rec] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(tp) < end[tp] for tp in tps):
            for tp, msgs in consumer.poll(timeout_ms=500).items():
                out.extend(Rec(tp.topic, tp.partition, m.offset, m.key, m.value) for m in msgs)
        return out
    finally:
        consumer.close()


# --- expected outcome of every input ------------------------------------------------------------------------

@dataclass
class Expectation:
    outcome: str  # processed / duplicate / dead
    why: str


def _has_surrogate(obj: Any) -> bool:
    if isinstance(obj, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in obj)
    if isinstance(obj, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in obj.items())
    if isinstance(obj, list):
        return any(_has_surrogate(v) for v in obj)
    return False


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        return None
    return t.astimezone(UTC)


def _shape(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """The event object if the bytes are a well-formed event this verifier recognises, else (None, why)."""
    if len(raw) > MAX_BYTES:
        return None, "oversize"
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, "not json"
    if _has_surrogate(obj):
        return None, "lone surrogate (not valid Unicode)"
    if not isinstance(obj, dict):
        return None, "not an object"
    if not isinstance(obj.get("account_id"), str) or not obj["account_id"].strip():
        return None, "no account"
    if not isinstance(obj.get("event_id"), str) or not obj["event_id"]:
        return None, "no event id"
    etype = obj.get("type")
    if etype not in FIELDS:
        return None, "unknown type"
    t = _parse_time(obj.get("occurred_at"))
    if t is None or not EARLIEST <= t < LATEST:
        return None, "bad time"
    for name, kind in FIELDS[etype].items():
        v = obj.get(name)
        if not isinstance(v, kind) or isinstance(v, bool):
            return None, f"bad field {name}"
        if kind is int and v < 0:
            return None, f"negative {name}"
    if etype == "nps.responded" and not 0 <= obj["score"] <= 10:
        return None, "score out of range"
    obj["_t"] = t
    return obj, "ok"


def expected_outcomes(records: list[Rec]) -> dict[tuple[str, int, int], Expectation]:
    """(topic, partition, offset) -> expected outcome, replaying per-account rules in offset order."""
    seen: dict[tuple[str, bool], set[str]] = {}
    newest_day: dict[tuple[str, bool], int] = {}
    out: dict[tuple[str, int, int], Expectation] = {}
    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        where = (r.topic, r.partition, r.offset)
        obj, why = _shape(r.value)
        if obj is None:
            out[where] = Expectation("dead", why)
            continue
        stream = (obj["account_id"], obj["type"] in BILLING)
        ids = seen.setdefault(stream, set())
        day = int(obj["_t"].timestamp()) // 86400
        last = newest_day.get(stream)
        # Lateness first: a retry of an event dated behind the bound is rejected as too late (the contract
        # of docs/state.md: ids behind the lateness bound are forgotten), not counted as a duplicate.
        if last is not None and day < last - LATENESS_DAYS:
            out[where] = Expectation("dead", "too late")
            continue
        if obj["event_id"] in ids:
            out[where] = Expectation("duplicate", "event id seen")
            continue
        ids.add(obj["event_id"])
        newest_day[stream] = max(day, last if last is not None else day)
        out[where] = Expectation("processed", "ok")
    return out


@dataclass
class Accounting:
    produced: int
    expected: Counter[str]
    dead_letters_seen: int
    dead_letter_keys_unmatched: list[tuple[str, int | None, int | None]] = field(default_factory=list)
    expected_dead_not_seen: list[tuple[tuple[str, int, int], str]] = field(default_factory=list)
    dead_lettered_but_valid: list[tuple[tuple[str, int, int], str, str]] = field(default_factory=list)
    dead_letter_duplicates: int = 0

    @property
    def unaccounted(self) -> int:
        return (len(self.dead_letter_keys_unmatched) + len(self.expected_dead_not_seen)
                + len(self.dead_lettered_but_valid))


def account_for(inputs: list[Rec], dead_letters: list[Rec]) -> Accounting:
    """Match every dead letter to its input by source topic/partition/offset, and every input to an outcome."""
    expected = expected_outcomes(inputs)
    letters: dict[tuple[str, int | None, int | None], dict[str, Any]] = {}
    dups = 0
    for d in dead_letters:
        body = json.loads(d.value)
        k = (body["source_topic"], body.get("partition"), body.get("offset"))
        if k in letters:
            dups += 1
        letters[k] = body
    acc = Accounting(len(inputs), Counter(e.outcome for e in expected.values()), len(dead_letters),
                     dead_letter_duplicates=dups)
    for k, body in letters.items():
        exp = expected.get(k)  # type: ignore[arg-type]
        if exp is None:
            acc.dead_letter_keys_unmatched.append(k)
        elif exp.outcome != "dead":
            acc.dead_lettered_but_valid.append((k, body["reason"], body["message"][:200]))  # type: ignore[arg-type]
    for k, exp in expected.items():
        if exp.outcome == "dead" and k not in letters:
            acc.expected_dead_not_seen.append((k, exp.why))
    return acc


# --- output topics ------------------------------------------------------------------------------------------

@dataclass
class HealthReport:
    records: int
    distinct: int
    latest: dict[str, Any]

    @property
    def duplicates_raw(self) -> int:
        return self.records - self.distinct


def health_topic_report(records: list[Rec]) -> HealthReport:
    distinct = {(r.key, r.value) for r in records}
    latest: dict[str, Any] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        if r.key is not None:
            latest[r.key.decode()] = json.loads(r.value)
    return HealthReport(len(records), len(distinct), latest)


@dataclass
class AlertsReport:
    records: int = 0
    alert_ids: set[str] = field(default_factory=set)
    duplicates_raw: int = 0
    duplicates_after_dedupe: int = 0
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    conflicts: list[list[bytes]] = field(default_factory=list)  # distinct bodies of one record id, for messages

    def as_dict(self) -> dict[str, Any]:
        return {"records": self.records, "alerts": len(self.alert_ids), "duplicates_raw": self.duplicates_raw,
                "duplicates_after_dedupe": self.duplicates_after_dedupe}


def alerts_report(records: list[Rec]) -> AlertsReport:
    """Raw duplicates: identical records. After dedupe by record_id (alert id + transition sequence: the key the
    alert contract gives consumers) no two distinct bodies may remain. An alert can legitimately carry one
    transition twice (escalated medium -> high, then high -> critical): those are two records."""
    rep = AlertsReport(records=len(records))
    if not records:
        return rep
    raw = Counter(r.value for r in records)
    rep.duplicates_raw = sum(n - 1 for n in raw.values())
    by_key: dict[str, set[bytes]] = {}
    for r in records:
        body = json.loads(r.value)
        aid = str(body.get("alert_id"))
        transition = str(body.get("transition", body.get("state", "")))
        rep.alert_ids.add(aid)
        rep.transitions[(aid, transition)] += 1
        # One record id must always carry the same content (deterministic ids and bodies).
        by_key.setdefault(str(body.get("record_id")), set()).add(_without_volatile(body))
    rep.duplicates_after_dedupe = sum(len(v) - 1 for v in by_key.values())
    rep.conflicts = [sorted(v) for v in by_key.values() if len(v) > 1]
    return rep


def _without_volatile(body: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in body.items() if k not in {"emitted_at", "produced_at"}},
                      sort_keys=True).encode()
