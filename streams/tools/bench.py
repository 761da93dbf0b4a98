"""`churnwatch bench`: the speed numbers of DESIGN.md §8, measured against the real broker in one run.

Everything is a ratio within one run on one machine (see docs/benchmarks/README.md for the method):
a raw aiokafka consumer is the ceiling, real worker processes are measured from their /metrics endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from streams import stack
from streams.compiled import build_mode
from streams.domain.engagement import DAY_S
from streams.settings import Settings
from streams.tools.processes import free_port

if TYPE_CHECKING:
    from streams.domain.aggregate import AccountAggregate
    from streams.replay import ReplayResult

# The bench's own stack ports (overridable with CHURNWATCH_STACK_*), so it never collides with `make demo`.
DEFAULT_STACK_PORTS = {
    "CHURNWATCH_STACK_KAFKA_PORT": "27092",
    "CHURNWATCH_STACK_CONTROLLER_PORT": "27093",
    "CHURNWATCH_STACK_REDIS_PORT": "27379",
}
REQUIRED_KEYS = (
    "ceiling_eps", "worker_eps", "worker_rocksdb_eps", "ratio_to_ceiling", "latency_p50_ms", "latency_p99_ms",
    "latency_max_ms", "state_bytes_median", "state_bytes_p99", "recovery_s_per_100k_accounts", "replay_eps",
    "two_workers_eps", "events", "accounts", "machine",
)
WARMUP_SHARE = 0.10  # throughput ignores the first 10% of the topic (joins, rebalances, JIT-less warm-up)
# Live traffic before the latency probes start, seconds (see _latency): the catch-up from yesterday's history,
# including the first tick at the new watermark (CHURNWATCH_ALERT_TICK_S, 30 s by default).
LATENCY_WARMUP_S = 35.0
QUICK_LATENCY_WARMUP_S = 3.0  # --quick: a smoke run, the number is not meant to be read
QUICK_PUBLISH_INTERVAL_S = 2.0  # --quick: the workers' CHURNWATCH_PUBLISH_INTERVAL_S (default 30), seconds
PARTITIONS = 4
LATENCY_LOAD = 0.7  # the latency phase's rate as a share of worker_eps (issue 9: 70 %); --latency-only may set another


class BenchError(RuntimeError):
    """A one-line, user-facing problem running the benchmark."""


def _say(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


# --------------------------------------------------------------------------------------------- events


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def generate_events(events: int, accounts: int, seed: int = 7, *, end_s: float | None = None,
                    days: int = 60) -> list[tuple[bytes, bytes, bool]]:
    """`events` canonical events for `accounts` accounts over `days` ending at `end_s` (default: yesterday).

    Returns (key, value, is_billing) sorted by event time. Each account starts a subscription within the first
    half of the span (at most its first 5 days) and adds 2-5 users; the rest are sessions and feature uses after
    that, up to `end_s`, spread over accounts with a skewed (log-normal) activity, so state sizes vary as they do
    in real portfolios. Deterministic for a seed. (Before 2026-12-05 most accounts of a short span joined after
    its end: docs/benchmarks/README.md, Load.)
    """
    rng = random.Random(seed)
    end = end_s if end_s is not None else time.time() - 86400
    start = end - days * 86400
    join_span = min(5 * 86400, days * 86400 / 2)
    rows: list[tuple[float, int, str, dict[str, Any]]] = []
    joined: list[float] = []
    users: list[int] = []
    seq = 0
    for i in range(accounts):
        account = f"acct-{i:06d}"
        t0 = start + rng.random() * join_span
        n_users = rng.randrange(2, 6)
        joined.append(t0)
        users.append(n_users)
        seq += 1
        rows.append((t0, seq, account, {"type": "subscription.started", "plan": "team", "seats": n_users * 2,
                                        "mrr": 19900, "currency": "USD"}))
        for u in range(n_users):
            seq += 1
            rows.append((t0 + 60 + u, seq, account, {"type": "user.added", "user_id": f"{account}-u{u}",
                                                     "role": "admin" if u == 0 else "member"}))
    remaining = max(0, events - len(rows))
    weights = [rng.lognormvariate(0, 1) for _ in range(accounts)]
    for i in rng.choices(range(accounts), weights=weights, k=remaining):
        account = f"acct-{i:06d}"
        t = joined[i] + 120 + rng.random() * (end - joined[i] - 120)
        user = f"{account}-u{rng.randrange(users[i])}"
        seq += 1
        if rng.random() < 0.3:
            rows.append((t, seq, account, {"type": "session.started", "user_id": user}))
        else:
            rows.append((t, seq, account, {"type": "feature.used", "user_id": user,
                                           "feature": f"feature-{rng.randrange(12):02d}",
                                           "count": rng.randrange(1, 5)}))
    rows.sort(key=lambda r: (r[0], r[1]))
    out = []
    for ts, n, account, fields in rows[:events] if events < len(rows) else rows:
        body = {"event_id": f"bench-{seed}-{n}", "account_id": account, "occurred_at": _iso(ts),
                "source": "bench", **fields}
        out.append((account.encode(), orjson.dumps(body), fields["type"] == "subscription.started"))
    return out


def live_event(account: str, n: int, run_id: str) -> bytes:
    return orjson.dumps({"event_id": f"{run_id}-live-{n}", "account_id": account,
                         "occurred_at": _iso(time.time()), "type": "session.started",
                         "user_id": f"{account}-u0", "source": "bench"})


# --------------------------------------------------------------------------------------------- kafka


def settings_for(bootstrap: str, prefix: str, app_id: str) -> Settings:
    return Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, app_id=app_id,  # type: ignore[call-arg]
                    topic_partitions=PARTITIONS)


async def _send_all(bootstrap: str, records: Iterable[tuple[str, bytes, bytes, int | None]]) -> None:
    """Produce (topic, key, value, partition or None for the key's) records in bulk, all acknowledged."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                max_batch_size=512 * 1024)
    await producer.start()
    try:
        pending = []
        for topic, key, value, partition in records:
            pending.append(await producer.send(topic, value=value, key=key, partition=partition))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _produce(bootstrap: str, s: Settings, events: Sequence[tuple[bytes, bytes, bool]]) -> None:
    billing, usage = s.topic(s.billing_topic), s.topic(s.usage_topic)
    await _send_all(bootstrap, ((billing if is_billing else usage, key, value, None)
                                for key, value, is_billing in events))


def load_topics(bootstrap: str, s: Settings, events: Sequence[tuple[bytes, bytes, bool]]) -> float:
    """Create the prefixed topics and preload them; returns the producer's events/s."""
    from streams.admin import ensure_topics

    ensure_topics(s)
    started = time.perf_counter()
    asyncio.run(_produce(bootstrap, s, events))
    return len(events) / (time.perf_counter() - started)


def write_changelog(bootstrap: str, app_id: str, states: Sequence[bytes], accounts: int) -> str:
    """The account table's changelog as a worker that owned `accounts` accounts would have left it: `states` (encoded
    account states) repeated under new ids, each on its key's murmur2 partition (the table's partitioner). The
    recovery phase restores it. Returns the topic's name."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    from streams.partitioning import expected_partition
    from streams.topics import changelog_topic_name

    topic = changelog_topic_name(app_id, "account_to_state")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="churnwatch-bench")
    try:
        admin.create_topics([NewTopic(topic, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"})],
                            timeout_ms=30_000)
    finally:
        admin.close()
    keys = [f"acct-rec-{n:06d}".encode() for n in range(accounts)]
    asyncio.run(_send_all(bootstrap, ((topic, key, states[n % len(states)], expected_partition(key, PARTITIONS))
                                      for n, key in enumerate(keys))))
    return topic


def sustained_rate(samples: Sequence[tuple[float, float]], total: float) -> float:
    """Events/s between the sample that passed WARMUP_SHARE of `total` and the first that reached `total`."""
    start = next((s for s in samples if s[1] >= WARMUP_SHARE * total), None)
    end = next((s for s in samples if s[1] >= total), samples[-1] if samples else None)
    if start is None or end is None or end[0] <= start[0]:
        # Too few samples past warm-up (tiny quick runs): fall back to first non-zero sample -> end.
        nonzero = [s for s in samples if s[1] > 0]
        if len(nonzero) < 2 or end is None:
            return 0.0
        start = nonzero[0]
        if end[0] <= start[0]:
            return 0.0
    return (end[1] - start[1]) / (end[0] - start[0])


async def _ceiling(bootstrap: str, topics: list[str], total: int, timeout_s: float) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=f"bench-ceiling-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    loads = orjson.loads
    n = 0
    samples: list[tuple[float, float]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while n < total and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for record in records:
                    loads(record.value)
                n += len(records)
            if batches:
                samples.append((time.perf_counter(), n))
    finally:
        await consumer.stop()
    if n < total:
        raise BenchError(f"ceiling consumer read {n} of {total} records in {timeout_s:.0f}s")
    return sustained_rate(samples, total)


def faust_floor(bootstrap: str, topics: list[str], total: int, group: str, work: Path,
                timeout_s: float, mode: str = "stream") -> dict[str, float]:
    """A do-nothing Faust agent (streams.tools.faust_floor) over the same topics: what an input path costs per
    record, Faust's stream (`mode="stream"`) or the account agent's batch input (`mode="batch"`, ADR 0011)."""
    out = work / f"faust-floor-{mode}.json"
    cmd = [sys.executable, "-m", "streams.tools.faust_floor", mode, str(out), bootstrap, group, str(total),
           str(int(total * WARMUP_SHARE)), *topics]
    with open(work / f"faust-floor-{mode}.log", "wb") as log_file:
        try:
            done = subprocess.run(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise BenchError(f"the Faust floor did not read {total} records within {timeout_s:.0f}s") from None
    if done.returncode != 0 or not out.exists():
        tail = (work / f"faust-floor-{mode}.log").read_bytes()[-400:].decode(errors="replace").replace("\n", " ")
        raise BenchError(f"the Faust floor failed (exit {done.returncode}): {tail}")
    return dict(orjson.loads(out.read_bytes()))


def delete_topics(bootstrap: str, prefix: str) -> int:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="churnwatch-bench")
    try:
        names = [t for t in admin.list_topics() if t.startswith(prefix)]
        if names:
            admin.delete_topics(names, timeout_ms=30_000)
        return len(names)
    finally:
        admin.close()


# --------------------------------------------------------------------------------------------- workers


def _http(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except OSError:
        return 0, b""


@dataclass
class WorkerProc:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    started: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@dataclass
class Workers:
    """Every worker process the bench starts; all are stopped by pid at the end, also on errors and Ctrl-C."""

    bootstrap: str
    redis_url: str
    work: Path
    run_id: str
    procs: list[WorkerProc] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # settings every worker of this run gets (CHURNWATCH_*)

    def start(self, name: str, *, prefix: str, app_id: str, store: str = "memory://",
              data_dir: Path | None = None) -> WorkerProc:
        port = free_port()
        env = {
            **os.environ,
            "CHURNWATCH_KAFKA_BOOTSTRAP": self.bootstrap, "CHURNWATCH_REDIS_URL": self.redis_url,
            "CHURNWATCH_APP_ID": app_id, "CHURNWATCH_TOPIC_PREFIX": prefix,
            "CHURNWATCH_REDIS_KEY_PREFIX": f"{self.run_id}:", "CHURNWATCH_REDIS_TTL_S": "600",
            "CHURNWATCH_TOPIC_PARTITIONS": str(PARTITIONS), "CHURNWATCH_STORE": store,
            "CHURNWATCH_DATA_DIR": str(data_dir or self.work / f"data-{name}"),
            "CHURNWATCH_WEB_PORT": str(port), "CHURNWATCH_LOG_LEVEL": "WARNING",
            **self.env,
        }
        log = self.work / f"worker-{name}.log"
        started = time.monotonic()
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,  # Ctrl-C reaches us; we stop it by pid
            )
        w = WorkerProc(name, proc, port, log, started)
        self.procs.append(w)
        return w

    def wait_ready(self, w: WorkerProc, timeout_s: float = 120) -> float:
        """Seconds from process start until /ready answered 200."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not w.alive():
                raise BenchError(f"worker {w.name} exited with {w.proc.returncode}; log tail:\n{w.log_tail()}")
            if _http(f"{w.url}/ready", 1.0)[0] == 200:
                return time.monotonic() - w.started
            time.sleep(0.1)
        raise BenchError(f"worker {w.name} not ready in {timeout_s:.0f}s; log tail:\n{w.log_tail()}")

    def stop(self, w: WorkerProc, timeout_s: float = 30) -> None:
        if w.alive():
            w.proc.send_signal(signal.SIGTERM)
            try:
                w.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait(10)
        if w in self.procs:
            self.procs.remove(w)

    def stop_all(self) -> None:
        for w in list(self.procs):
            self.stop(w)


def batch_events(w: WorkerProc) -> float | None:
    """churnwatch_batch_events_total for track_engagement from the worker's /metrics, or None."""
    status, body = _http(f"{w.url}/metrics", 2.0)
    if status != 200:
        return None
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("churnwatch_batch_events_total{") and 'agent="track_engagement"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def crashed_agent(w: WorkerProc) -> str | None:
    """The first 'Crashed' line of track_engagement in the worker's log (Faust keeps the process up)."""
    text = w.log_tail(200_000)
    at = text.find("track_engagement]: Crashed reason=")  # the measured agent; others are reported apart
    if at < 0:
        return None
    line_start = text.rfind("\n", 0, at) + 1
    line = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]|[\x00-\x08]", "", text[line_start:text.find("\n", at)]).strip()
    frames = [ln.strip() for ln in text[at:].splitlines() if ln.strip().startswith("File ")][-1:]
    return f"{line[-160:]} at {frames[0] if frames else '?'}"


def measure_consumption(workers: Sequence[WorkerProc], total: int, timeout_s: float,
                        interval_s: float = 0.25, stall_s: float = 45.0) -> float:
    """Sample the workers' batch counters until `total` events are processed; sustained events/s."""
    last = {w.name: 0.0 for w in workers}
    samples: list[tuple[float, float]] = []
    deadline = time.monotonic() + timeout_s
    progress_at, best = time.monotonic(), -1.0
    while time.monotonic() < deadline:
        for w in workers:
            if not w.alive():
                raise BenchError(f"worker {w.name} exited with {w.proc.returncode}; log tail:\n{w.log_tail()}")
            crash = crashed_agent(w)
            if crash:
                raise BenchError(f"worker {w.name}: agent crashed: {crash}")
            value = batch_events(w)
            if value is not None:
                last[w.name] = value
        now = sum(last.values())
        samples.append((time.perf_counter(), now))
        if now > best:
            progress_at, best = time.monotonic(), now
        elif time.monotonic() - progress_at > stall_s:
            raise BenchError(f"workers stalled at {now:.0f} of {total} events for {stall_s:.0f}s")
        if now >= total:
            return sustained_rate(samples, total)
        time.sleep(interval_s)
    raise BenchError(f"workers processed {sum(last.values()):.0f} of {total} events in {timeout_s:.0f}s")


# --------------------------------------------------------------------------------------------- latency


def failed_payment(account: str, n: int, run_id: str, at: float) -> bytes:
    return orjson.dumps({"event_id": f"{run_id}-fail-{n}", "account_id": account, "occurred_at": _iso(at),
                         "type": "payment.failed", "amount": 1000, "attempt": 1, "source": "bench"})


@dataclass
class Latencies:
    health: list[float]  # produce -> the account's next health record, seconds
    health_unmatched: int
    alerts: list[float]  # produce of a failed payment -> its payment_failed alert record, seconds
    alerts_unmatched: int
    sent: int
    alert_sent: list[float] = field(default_factory=list)  # wall time each matched alert probe was produced
    # produce of the failed payment -> the alert record's timestamp (the worker's producer stamps it as it sends),
    # seconds: the part of `alerts` spent before the worker sent the alert
    alerts_to_send: list[float] = field(default_factory=list)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds a process (all its threads) has used so far, from Linux's /proc; None where that
    cannot be read (no such process, another OS)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, clock ticks


async def _latency(bootstrap: str, s: Settings, accounts: list[str], rate: float, duration_s: float,
                   run_id: str, probe_every: int = 10, warmup_s: float = 0.0,
                   on_window: Callable[[], None] | None = None) -> Latencies:
    """Produce live usage at `rate`/s against the caught-up worker, with two kinds of probes among it, after
    `warmup_s` of the same live usage without probes.

    The warm-up is there because the preloaded history ends a day before the live events: the first live event
    of each account closes its days in between (every rule evaluated), and the first tick at the new watermark
    scans every account. That one-off catch-up is not the steady state the latency is asked for.

    - Health probes (every `probe_every`-th event, accounts[::probe_every], one in flight per account): produce
      wall time -> arrival of that account's next record on the health topic.
    - Alert probes (as many, accounts[probe_every // 2::probe_every], each account once, evenly spread over the
      `duration_s` after the warm-up, part of the fixed rate): a `payment.failed`
      (attempt 1, which opens a `payment_failed` alert) followed at once by a `session.started` of the same
      account 1 ms later in event time (an active customer, so the billing event is not held for its usage to
      catch up, ADR 0006); produce wall time of the payment -> arrival of the account's alert record.

    `on_window`, when given, is called as the probes start and again as the production stops."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    health, usage = s.topic(s.health_topic), s.topic(s.usage_topic)
    alerts_topic, billing = s.topic(s.alerts_topic), s.topic(s.billing_topic)
    probes = deque(accounts[::probe_every])
    alert_probes = deque(accounts[probe_every // 2::probe_every])
    probe_set = set(probes) | set(alert_probes)
    background = [a for a in accounts if a not in probe_set] or accounts
    pending: dict[str, float] = {}
    alert_pending: dict[str, float] = {}
    out = Latencies([], 0, [], 0, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await consumer.start()
    await producer.start()
    # The live load goes out in one batch per partition at each pacing tick, through the worker's own batched
    # sender (ADR 0032): `producer.send` per record cost the generator ~31 us an event (Kafka's murmur2 partitioner
    # in Python, a future per record), ~0.5 of a core at the latency phase's rate on the cores the worker and the
    # broker share; batched, ~19 us (0.28 of a core alone at 15,000 events/s, measured 2026-12-07).
    from streams.adapters.topic_sender import TopicSender

    senders = {topic: TopicSender(lambda: producer, topic) for topic in (billing, usage)}
    stop = asyncio.Event()

    async def consume() -> None:
        while not stop.is_set() or pending or alert_pending:
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.time()
            for tp, records in batches.items():
                for record in records:
                    account = record.key.decode() if record.key else ""
                    if tp.topic == alerts_topic:
                        sent_at = alert_pending.pop(account, None)
                        if sent_at is not None:
                            out.alerts.append(now - sent_at)
                            out.alert_sent.append(sent_at)
                            out.alerts_to_send.append(record.timestamp / 1000 - sent_at)
                        continue
                    sent_at = pending.pop(account, None)
                    if sent_at is not None:
                        out.health.append(now - sent_at)
                        probes.append(account)

    try:
        tps = [TopicPartition(t, p) for t in (health, alerts_topic) for p in range(s.topic_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        reader = asyncio.create_task(consume())
        sent = 0
        # Alert probes evenly over the measured window (since 2026-12-04): sent one every 10th event they used up
        # their 500 accounts in its first 0.6 s at 9,000 events/s, a burst of ~900 alerts/s that loaded the worker
        # far past the fixed rate's background and sampled neither a flush nor a tick.
        alert_interval_s = duration_s / max(1, len(alert_probes))
        next_alert_s = warmup_s
        window_open = False
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < warmup_s + duration_s:
            due = int(rate * elapsed) - sent
            probing = elapsed >= warmup_s
            if probing and not window_open:
                window_open = True
                if on_window is not None:
                    on_window()
            for _ in range(due):
                if probing and elapsed >= next_alert_s and alert_probes:
                    next_alert_s += alert_interval_s
                    account = alert_probes.popleft()
                    at = time.time()
                    alert_pending[account] = at
                    senders[billing].put(account.encode(), failed_payment(account, sent, run_id, at))
                    senders[usage].put(account.encode(), orjson.dumps({
                        "event_id": f"{run_id}-live-{sent}", "account_id": account, "occurred_at": _iso(at + 0.001),
                        "type": "session.started", "user_id": f"{account}-u0", "source": "bench"}))
                    sent += 1
                    continue
                if probing and sent % probe_every == 0 and probes:
                    account = probes.popleft()
                    pending[account] = time.time()
                else:
                    account = background[sent % len(background)]
                senders[usage].put(account.encode(), live_event(account, sent, run_id))
                sent += 1
            await asyncio.sleep(0.005)  # the senders hand the tick's records to the producer meanwhile
        if on_window is not None:
            on_window()
        await asyncio.gather(*(sender.flush() for sender in senders.values()))
        await producer.flush()
        stop.set()
        try:
            await asyncio.wait_for(reader, 30)
        except TimeoutError:
            pass
        out.health_unmatched, out.alerts_unmatched, out.sent = len(pending), len(alert_pending), sent
        return out
    finally:
        await producer.stop()
        await consumer.stop()


def measure_latency(bootstrap: str, s: Settings, accounts: list[str], rate: float, duration_s: float, run_id: str,
                    warmup_s: float, pids: dict[str, int | None]) -> dict[str, Any]:
    """The latency phase's result keys (see `_latency`), with the CPU each process in `pids` used over the measured
    window, in cores (None where it cannot be read), and the worst alert probe of each second of that window, ms:
    where a tail sits, and whether the worker, the load generator or the broker had the machine's cores then."""
    marks: list[tuple[float, dict[str, float | None]]] = []

    def mark() -> None:
        marks.append((time.monotonic(), {name: cpu_seconds(pid) for name, pid in pids.items()}))

    lat = asyncio.run(_latency(bootstrap, s, accounts, rate, duration_s, run_id, warmup_s=warmup_s, on_window=mark))
    if not lat.alerts or not lat.health:
        raise BenchError(f"latency probes did not come back ({len(lat.alerts)} alerts on "
                         f"{s.topic(s.alerts_topic)}, {len(lat.health)} health records, {lat.sent} sent)")
    out: dict[str, Any] = {
        "latency_rate_eps": rate,
        "latency_warmup_s": warmup_s,
        "latency_samples": len(lat.alerts),
        "latency_unmatched": lat.alerts_unmatched,
        "latency_p50_ms": 1000 * statistics.median(lat.alerts),
        "latency_p90_ms": 1000 * _pct(lat.alerts, 0.90),
        "latency_p99_ms": 1000 * _pct(lat.alerts, 0.99),
        "latency_max_ms": 1000 * max(lat.alerts),
        "latency_to_send_p50_ms": 1000 * statistics.median(lat.alerts_to_send),
        "latency_to_send_p99_ms": 1000 * _pct(lat.alerts_to_send, 0.99),
        "health_latency_samples": len(lat.health),
        "health_latency_unmatched": lat.health_unmatched,
        "health_latency_p50_ms": 1000 * statistics.median(lat.health),
        "health_latency_p99_ms": 1000 * _pct(lat.health, 0.99),
        "health_latency_max_ms": 1000 * max(lat.health),
    }
    if len(marks) == 2:
        (t0, before), (t1, after) = marks
        for name in pids:
            b, a = before[name], after[name]
            out[f"latency_cpu_{name}_cores"] = (a - b) / (t1 - t0) if a is not None and b is not None else None
    first = min(lat.alert_sent)
    worst: dict[int, float] = {}
    for sent_at, seconds in zip(lat.alert_sent, lat.alerts, strict=True):
        second = int(sent_at - first)
        worst[second] = max(worst.get(second, 0.0), seconds)
    out["latency_worst_ms_by_second"] = [round(1000 * worst.get(i, 0.0)) for i in range(max(worst) + 1)]
    return out


def latency_line(result: dict[str, Any]) -> str:
    """The latency phase in one log line."""
    cores = ", ".join(f"{name} {result[f'latency_cpu_{name}_cores']:.2f}" for name in ("worker", "bench", "broker")
                      if result.get(f"latency_cpu_{name}_cores") is not None)
    return (f"event -> alert at {result['latency_rate_eps']:,.0f}/s ({result['latency_samples']} probes): "
            f"p50 {result['latency_p50_ms']:.0f} ms, p90 {result['latency_p90_ms']:.0f} ms, "
            f"p99 {result['latency_p99_ms']:.0f} ms, max {result['latency_max_ms']:.0f} ms; event -> health record "
            f"({result['health_latency_samples']} probes): p50 {result['health_latency_p50_ms']:.0f} ms, "
            f"p99 {result['health_latency_p99_ms']:.0f} ms; CPU cores in the window: {cores or 'not measured'}")


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --------------------------------------------------------------------------------------------- profiling


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        _say("py-spy not found (pip install py-spy): no profile")
        return None
    # --gil: only the thread holding the GIL is sampled, so the profile is where the worker's Python time goes
    # (the consumer thread and the event loop's waits are not counted twice).
    # --nonblocking: the worker is never paused. A compiled domain core (ADR 0018) has no Python frames, so its time
    # shows as the self time of its Python caller (`_apply_batch_locked`). Not --native: py-spy takes native stacks
    # only by pausing the process for each sample, and that skews the profile towards system calls (one such
    # profile put 18 % of the worker in getpid).
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--format", "raw", "--rate", "100", "--gil",
                             "--nonblocking", "-o", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _frame_name(frame: str) -> str:
    # py-spy raw frames: "function (path/to/file.py:123)"; group by function and file, not line.
    name, _, where = frame.rpartition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if name else frame


def summarize_profile(folded: Path, top: int = 25) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(self %, inclusive %) per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in folded.read_text(errors="replace").splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack_text.split(";") if f and not f.startswith("process ")
                  and not f.startswith("thread ")]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for name in set(frames):
            incl[name] += n
    if not total:
        return [], []
    return ([(k, 100 * v / total) for k, v in own.most_common(top)],
            [(k, 100 * v / total) for k, v in incl.most_common(top)])


def write_profile_md(folded: Path, out: Path) -> list[tuple[str, float]]:
    own, incl = summarize_profile(folded)
    lines = ["# Worker profile (py-spy, collapsed stacks in worker-profile.folded)", "",
             "## Self time", "", "| % | function |", "|---:|---|"]
    lines += [f"| {p:.1f} | `{k}` |" for k, p in own]
    lines += ["", "## Inclusive time", "", "| % | function |", "|---:|---|"]
    lines += [f"| {p:.1f} | `{k}` |" for k, p in incl]
    out.write_text("\n".join(lines) + "\n")
    return own


def replay_events(events: Sequence[tuple[bytes, bytes, bool]], jobs: int = 1) -> ReplayResult:
    """In-process replay of generated events (`churnwatch replay`'s core, no final tick), under the garbage-collector
    thresholds `churnwatch replay` and the worker run with (ADR 0013)."""
    from streams.gc_tuning import GEN0_THRESHOLD, tuned_gc
    from streams.replay import replay_lines

    with tuned_gc(GEN0_THRESHOLD):
        return replay_lines([value for _k, value, _b in events], final_tick=False, jobs=jobs)


# A sparse history for `replay_sparse`: 1,000 accounts over 60 days, 20,000 events (~0.35 per account-day).
SPARSE_ACCOUNTS, SPARSE_DAYS, SPARSE_EVENTS = 1_000, 60, 20_000


def replay_sparse(seed: int = 7, *, events: int = SPARSE_EVENTS, accounts: int = SPARSE_ACCOUNTS,
                  days: int = SPARSE_DAYS) -> dict[str, Any]:
    """In-process replay of a long history with few events per account-day, where closing day ends (every rule
    evaluated at each account's day end) costs more than the events: events/s, and account-days evaluated per
    second. A backfill takes about events / replay_eps + account-days / replay_account_days_per_s."""
    replayed = replay_events(generate_events(events, accounts, seed, days=days))
    account_days = sum(account_days_evaluated(agg) for agg in replayed.states.values())
    return {
        "replay_sparse_eps": replayed.inputs / replayed.seconds,
        "replay_sparse_events": replayed.inputs,
        "replay_sparse_account_days": account_days,
        "replay_account_days_per_s": account_days / replayed.seconds,
    }


# The book of `book_scale`: a 180-day `churnwatch simulate` history of 500 accounts (six months of cohorts), copied
# under new account ids up to the 50,000 accounts; 100 of them change between two portfolio refreshes.
SCALE_BASE_ACCOUNTS, SCALE_DAYS, SCALE_ACCOUNTS, SCALE_CHANGED = 500, 180, 50_000, 100
RECOVERY_ACCOUNTS = 50_000  # the book: the recovery phase restores a changelog of this many account states


def book_scale(seed: int = 7, *, accounts: int = SCALE_ACCOUNTS, base_accounts: int = SCALE_BASE_ACCOUNTS
               ) -> dict[str, Any]:
    """What the worker's periodic work costs at `accounts` accounts, in process, CPU seconds: a portfolio refresh
    from nothing (after a start, or when the months covered move), the usual one with SCALE_CHANGED changed
    snapshots (ADR 0003), and the health timer choosing one tick's due records with every account pending and
    each due once per interval (ADR 0017)."""
    import dataclasses
    import random

    from streams.agents import health_publish_quota
    from streams.domain.aggregate import cohort_snapshot
    from streams.domain.portfolio import PortfolioBuilder
    from streams.health_schedule import HealthSchedule
    from streams.tools.simulate import generate

    events, _truth = generate(base_accounts, SCALE_DAYS, seed)
    states = replay_events([(b"", orjson.dumps(e), False) for e in events]).states
    book = list(states.values())

    def snapshot(n: int, agg: AccountAggregate) -> tuple[str, bytes]:
        """The n-th account of the book: a copy of a simulated one under its own id (its ledger's too)."""
        account_id = f"acct-scale-{n}"
        ledger = dataclasses.replace(agg.ledger, account_id=account_id)
        return account_id, cohort_snapshot(dataclasses.replace(agg, ledger=ledger), "plan")

    snapshots = [snapshot(n, book[n % len(book)]) for n in range(accounts)]
    builder = PortfolioBuilder()
    began = time.process_time()
    builder.refresh(snapshots)
    full_s = time.process_time() - began
    rng = random.Random(seed)
    refreshes = []
    for _ in range(3):
        for _ in range(SCALE_CHANGED):
            n = rng.randrange(accounts)
            snapshots[n] = snapshot(n, rng.choice(book))
        began = time.process_time()
        builder.refresh(snapshots)
        refreshes.append(time.process_time() - began)
    # Health timer: every account pending, last published evenly over one interval (30 s), so a tick has an
    # interval's share of them due; the median of 20 ticks, each publishing what it took.
    interval_s, schedule = 30.0, HealthSchedule[None]()
    for n in range(accounts):
        schedule.published(str(n), 1_000.0 + interval_s * n / accounts)
        schedule.defer(str(n), None)
    quota, ticks = health_publish_quota(accounts, 1.0, interval_s), []
    for tick in range(20):
        now = 1_000.0 + interval_s + tick
        began = time.process_time()
        due = schedule.take_due(now, interval_s, quota)
        ticks.append(time.process_time() - began)
        for account_id in due:
            schedule.published(account_id, now)
            schedule.defer(account_id, None)
    return {
        "scale_accounts": accounts,
        "portfolio_full_refresh_s": full_s,
        "portfolio_refresh_ms": statistics.median(refreshes) * 1000,
        "health_due_ms_per_tick": statistics.median(ticks) * 1000,
    }


def account_days_evaluated(agg: AccountAggregate) -> int:
    """Day ends evaluated for an account: from its first event's day through the day its book was evaluated to."""
    first = agg.state.first_seen_day
    if first is None or agg.book is None or not agg.book.as_of_s:
        return 0
    return max(0, agg.book.as_of_s // DAY_S - first + 1)


# --------------------------------------------------------------------------------------------- run


def machine_facts() -> dict[str, Any]:
    mem_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    return {
        "cores": os.cpu_count(), "python": platform.python_version(), "kafka": stack.KAFKA_VERSION,
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "memory_gib": mem_gib, "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        # `mypyc` or `pure`: whether the domain core ran compiled (ADR 0018): replay is ~1.3x faster compiled.
        "domain_build": build_mode(),
    }


def _stack_config() -> stack.StackConfig:
    for key, value in DEFAULT_STACK_PORTS.items():
        os.environ.setdefault(key, value)
    return stack.StackConfig.from_env()


@dataclass
class Plan:
    events: int
    accounts: int
    latency_s: float
    timeout_s: float


def run_bench(args: argparse.Namespace, log: Callable[[str], None] = _say) -> dict[str, Any]:
    plan = Plan(events=args.events, accounts=args.accounts, latency_s=args.latency_seconds,
                timeout_s=args.timeout)
    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    started_stack: stack.StackConfig | None = None
    broker_pid: int | None = None  # a broker of the local stack: its CPU in the latency phase
    if args.bootstrap:
        bootstrap, redis_url = args.bootstrap, args.redis_url or "redis://127.0.0.1:6379/0"
    else:
        cfg = _stack_config()
        st = stack.status(cfg)
        if not (st["kafka"].startswith("running") and st["redis"].startswith("running")):
            stack.up(cfg)
            started_stack = None if args.keep_stack else cfg
        bootstrap, redis_url = cfg.bootstrap, args.redis_url or cfg.redis_url
        broker_pid = stack.kafka_pid(cfg)
    work = Path(tempfile.mkdtemp(prefix=f"churnwatch-{run_id}-"))
    workers = Workers(bootstrap, redis_url, work, run_id)
    days = getattr(args, "days", 2)
    result: dict[str, Any] = {"events": plan.events, "accounts": plan.accounts, "days": days,
                              "events_per_account_day": round(plan.events / plan.accounts / days, 1),
                              "machine": machine_facts(), "run_id": run_id}
    if getattr(args, "quick", False):
        # The smoke run's health probes come back within seconds: at the default 30-s interval the latency phase
        # waited ~30 s for them after its 6 s of load (half of the smoke test's time).
        workers.env["CHURNWATCH_PUBLISH_INTERVAL_S"] = str(QUICK_PUBLISH_INTERVAL_S)
        result["publish_interval_s"] = QUICK_PUBLISH_INTERVAL_S
    part = 10 if getattr(args, "quick", False) else 1  # the smoke run: the scaled phases' figures from a tenth
    ok = False
    try:
        log(f"run {run_id}: {plan.events} events, {plan.accounts} accounts, kafka {bootstrap}, work dir {work}")
        t = time.perf_counter()
        events = generate_events(plan.events, plan.accounts, seed=args.seed, days=days)
        log(f"generated {len(events)} events in {time.perf_counter() - t:.1f}s")
        total = len(events)

        # 1. topic A, loaded once; the ceiling and both single-worker runs read it from the beginning.
        sa = settings_for(bootstrap, f"{run_id}.a.", f"{run_id}-a")
        rate = load_topics(bootstrap, sa, events)
        log(f"loaded topic A at {rate:,.0f} events/s")
        topics_a = [sa.topic(sa.billing_topic), sa.topic(sa.usage_topic)]
        only = getattr(args, "latency_only", False)  # --latency-only: phases 3 and 4 alone
        if not only:
            result["ceiling_eps"] = asyncio.run(_ceiling(bootstrap, topics_a, total, plan.timeout_s))
            log(f"ceiling (aiokafka + orjson.loads): {result['ceiling_eps']:,.0f} events/s")
            for mode, key, what in (("stream", "faust_floor", "do-nothing take_events agent"),
                                    ("batch", "input_floor", "do-nothing agent on the worker's batch input")):
                try:
                    floor = faust_floor(bootstrap, topics_a, total, f"{run_id}-{key}", work, plan.timeout_s, mode)
                    result[f"{key}_eps"] = floor["eps"]
                    result[f"{key}_cpu_us_per_event"] = floor["cpu_us_per_event"]
                    log(f"{key} ({what}): {floor['eps']:,.0f} events/s, {floor['cpu_us_per_event']:.0f} CPU-us per event")
                except BenchError as exc:
                    result[f"{key}_eps"] = None
                    result[f"{key}_error"] = str(exc)[:400]
                    log(f"{key} FAILED: {result[f'{key}_error']}")

            # 2. worker with RocksDB tables.
            w = workers.start("rocksdb", prefix=sa.topic_prefix, app_id=f"{run_id}-rocks", store="rocksdb://")
            try:
                workers.wait_ready(w)
                result["worker_rocksdb_eps"] = measure_consumption([w], total, plan.timeout_s)
                log(f"worker (rocksdb://): {result['worker_rocksdb_eps']:,.0f} events/s")
            except BenchError as exc:
                # Reported, not fatal: the other numbers are still worth having.
                result["worker_rocksdb_eps"] = None
                result["worker_rocksdb_error"] = str(exc).splitlines()[0][:400]
                log(f"worker (rocksdb://) FAILED: {result['worker_rocksdb_error']}")
            workers.stop(w)

        # 3. worker with in-memory tables (the headline), profiled afterwards in its own run when asked.
        app_mem = f"{run_id}-mem"
        w = workers.start("memory", prefix=sa.topic_prefix, app_id=app_mem)
        result["startup_s"] = workers.wait_ready(w)
        result["worker_eps"] = measure_consumption([w], total, plan.timeout_s)
        if not only:
            result["ratio_to_ceiling"] = result["worker_eps"] / result["ceiling_eps"] if result["ceiling_eps"] else 0.0
        for key in ("faust_floor", "input_floor"):
            if result.get(f"{key}_eps"):
                result[f"ratio_to_{key}"] = result["worker_eps"] / result[f"{key}_eps"]
        log(f"worker (memory://): {result['worker_eps']:,.0f} events/s"
            + (f" = {result['ratio_to_ceiling']:.2f} x ceiling" if "ratio_to_ceiling" in result else ""))

        # 4. latency at 70% of worker_eps (--load, or a fixed --rate), against the same (caught-up) worker.
        live_rate = getattr(args, "rate", None) or max(10.0, (getattr(args, "load", None) or LATENCY_LOAD)
                                                       * result["worker_eps"])
        accounts = [f"acct-{i:06d}" for i in range(plan.accounts)]
        # The full warm-up whatever --latency-seconds is (until 2026-12-04 it was capped at it, so the default run
        # warmed up 20 s and the first 30-s tick's scan of every account could fall into the measured window).
        warmup_s = QUICK_LATENCY_WARMUP_S if getattr(args, "quick", False) else LATENCY_WARMUP_S
        result.update(measure_latency(bootstrap, sa, accounts, live_rate, plan.latency_s, run_id, warmup_s,
                                      {"worker": w.proc.pid, "bench": os.getpid(), "broker": broker_pid}))
        log(latency_line(result))
        workers.stop(w)
        if only:
            ok = True
            return result

        # 5. recovery: a fresh worker (empty data dir) restores a changelog of RECOVERY_ACCOUNTS account states. Until
        # 2026-12-07 it restored topic A's 5,000 and scaled the time to 100,000: the worker's start-up was most of
        # those 1.5-2.6 s, so the per-100,000 figure came out 4-7 times what a large table takes.
        app_rec = f"{run_id}-rec"
        replayed = replay_events(events)  # also phase 8's replay figures: nothing else runs now either
        states = list(replayed.encoded_states().values())
        rec_accounts = result["recovery_accounts"] = RECOVERY_ACCOUNTS // part
        write_changelog(bootstrap, app_rec, states, rec_accounts)
        w = workers.start("recovery", prefix=sa.topic_prefix, app_id=app_rec)
        result["recovery_s"] = workers.wait_ready(w, timeout_s=plan.timeout_s)
        last = f"acct-rec-{rec_accounts - 1:06d}"  # written last: served only if the whole changelog was restored
        if _http(f"{w.url}/accounts/{last}", 5.0)[0] != 200:
            raise BenchError(f"the recovered worker does not serve {last}: the changelog was not restored")
        result["recovery_s_per_100k_accounts"] = result["recovery_s"] * 100_000 / rec_accounts
        result["recovery_net_s_per_100k_accounts"] = (
            max(0.0, result["recovery_s"] - result["startup_s"]) * 100_000 / rec_accounts
        )
        log(f"recovery: {rec_accounts:,} accounts' states restored, ready in {result['recovery_s']:.1f}s "
            f"(empty-table start {result['startup_s']:.1f}s)")
        workers.stop(w)

        # 6. two workers in one group on a fresh copy of the topic.
        sb = settings_for(bootstrap, f"{run_id}.b.", f"{run_id}-b")
        load_topics(bootstrap, sb, events)
        pair = [workers.start(f"pair{i}", prefix=sb.topic_prefix, app_id=f"{run_id}-pair") for i in (1, 2)]
        result["two_workers_eps"] = measure_consumption(pair, total, plan.timeout_s)
        log(f"two workers: {result['two_workers_eps']:,.0f} events/s combined")
        for p in pair:
            workers.stop(p)

        # 7. optional: profile a memory worker over topic B (own group, from the beginning) with py-spy.
        if args.profile:
            w = workers.start("profiled", prefix=sb.topic_prefix, app_id=f"{run_id}-prof")
            workers.wait_ready(w)
            folded = args.out / "worker-profile.folded"
            spy = start_profiler(w.proc.pid, folded)
            try:
                result["profiled_worker_eps"] = measure_consumption([w], total, plan.timeout_s)
            finally:
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        spy.wait(30)
                    if spy.poll() is None:
                        spy.kill()
            workers.stop(w)
            if folded.exists():
                top = write_profile_md(folded, args.out / "worker-profile.md")
                log("profile, self time (full table in worker-profile.md):")
                for name, pct in top[:10]:
                    log(f"  {pct:5.1f}%  {name}")

        # 8. in-process replay over the same events: throughput and state size per account.
        from streams.replay import usable_cores

        result["replay_eps"] = replayed.inputs / replayed.seconds
        sizes = sorted(len(v) for v in replayed.encoded_states().values())
        result["state_bytes_median"] = statistics.median(sizes)
        result["state_bytes_p99"] = _pct(sizes, 0.99)
        result["state_bytes_mean"] = statistics.fmean(sizes)
        result["accounts_per_gib"] = int(2**30 / result["state_bytes_mean"])
        log(f"replay: {result['replay_eps']:,.0f} events/s; state median {result['state_bytes_median']:.0f} B")
        # The same replay split by account over one process per core (`churnwatch replay --jobs`, ADR 0022).
        jobs = result["replay_jobs"] = max(2, usable_cores())  # `--jobs auto`, at least a split
        split = replay_events(events, jobs=jobs)
        result["replay_split_eps"] = split.inputs / split.seconds
        if split.encoded_states() != replayed.encoded_states():
            raise BenchError(f"replay over {jobs} processes gave other states than one process: a bug (ADR 0022)")
        log(f"replay over {jobs} processes: {result['replay_split_eps']:,.0f} events/s")
        # A long, sparse history: what a backfill of quiet accounts costs. Each account's day ends are evaluated
        # once (ADR 0004) whether or not it had events that day, so there the cost goes with account-days.
        sparse = replay_sparse(seed=args.seed, events=SPARSE_EVENTS // part, accounts=SPARSE_ACCOUNTS // part)
        result.update(sparse)
        log(f"replay of {SPARSE_DAYS} sparse days: {sparse['replay_sparse_eps']:,.0f} events/s, "
            f"{sparse['replay_account_days_per_s']:,.0f} account-days/s")
        # The worker's periodic work at the 50,000 accounts (a tenth in the smoke run).
        scale = book_scale(seed=args.seed, accounts=SCALE_ACCOUNTS // part, base_accounts=SCALE_BASE_ACCOUNTS // part)
        result.update(scale)
        log(f"at {scale['scale_accounts']:,} accounts: portfolio refresh {scale['portfolio_refresh_ms']:,.0f} ms CPU "
            f"({SCALE_CHANGED} changed; {scale['portfolio_full_refresh_s']:.1f} s from nothing), health timer "
            f"{scale['health_due_ms_per_tick']:.1f} ms a tick choosing its due records")
        ok = True
    finally:
        workers.stop_all()
        if not args.keep_topics:
            with contextlib.suppress(Exception):
                delete_topics(bootstrap, run_id)
        if started_stack is not None:
            stack.down(started_stack)
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"worker logs kept in {work}")
    return result


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


ROWS = (
    ("ceiling_eps", "raw aiokafka consumer + orjson.loads, events/s"),
    ("faust_floor_eps", "do-nothing Faust take_events agent on the same topics, events/s"),
    ("faust_floor_cpu_us_per_event", "its CPU time per event, µs: Faust's own per-record cost"),
    ("input_floor_eps", "do-nothing agent on the worker's batch input (ADR 0011), events/s"),
    ("input_floor_cpu_us_per_event", "its CPU time per event, µs"),
    ("worker_eps", "one worker, memory:// tables, events/s"),
    ("worker_rocksdb_eps", "one worker, rocksdb:// tables, events/s"),
    ("ratio_to_ceiling", "worker_eps / ceiling_eps"),
    ("ratio_to_faust_floor", "worker_eps / faust_floor_eps"),
    ("ratio_to_input_floor", "worker_eps / input_floor_eps"),
    ("two_workers_eps", "two workers in one group, events/s combined"),
    ("replay_eps", "in-process replay (no Kafka), events/s"),
    ("replay_split_eps", "the same replay split by account over `replay_jobs` processes (--jobs), events/s"),
    ("replay_sparse_eps", "replay of a sparse 60-day history (~0.35 events per account-day), events/s"),
    ("replay_account_days_per_s", "its account-day ends evaluated per second (every rule at each account's day end)"),
    ("scale_accounts", "accounts of the in-process book for the three rows below (copies of a 180-day simulation)"),
    ("portfolio_refresh_ms", "portfolio refresh with 100 changed snapshots, ms CPU (ADR 0003)"),
    ("portfolio_full_refresh_s", "portfolio refresh from nothing (after a start, a new month), s CPU"),
    ("health_due_ms_per_tick", "health timer choosing a tick's due records, every account pending, ms CPU (ADR 0017)"),
    ("latency_p50_ms", "event -> alert record, p50 ms (failed payment, at 70% of worker_eps)"),
    ("latency_p99_ms", "event -> alert record, p99 ms"),
    ("latency_max_ms", "event -> alert record, max ms"),
    ("latency_p90_ms", "event -> alert record, p90 ms"),
    ("latency_to_send_p50_ms", "event -> the worker's send of the alert (the record's timestamp), p50 ms"),
    ("latency_to_send_p99_ms", "the same, p99 ms (the rest of latency_p99_ms is the output: broker, probe consumer)"),
    ("latency_cpu_worker_cores", "worker CPU in the latency window, cores (near 1: the rate was above its live capacity)"),
    ("latency_cpu_bench_cores", "load generator and probe consumer CPU in the window, cores"),
    ("latency_cpu_broker_cores", "broker CPU in the window, cores (the bench's own stack only)"),
    ("health_latency_p50_ms", "event -> health record, p50 ms (coalesced: publish_interval_s)"),
    ("health_latency_p99_ms", "event -> health record, p99 ms"),
    ("state_bytes_median", "serialised state per account, median bytes"),
    ("state_bytes_p99", "serialised state per account, p99 bytes"),
    ("accounts_per_gib", "accounts per GiB of state (mean size)"),
    ("recovery_s", "fresh worker restoring recovery_accounts states from the changelog -> /ready, s"),
    ("recovery_s_per_100k_accounts", "the same, s per 100k accounts"),
    ("recovery_net_s_per_100k_accounts", "the same less an empty-table start, s per 100k accounts"),
    ("recovery_accounts", "account states in the restored changelog"),
    ("events", "events in the topic"),
    ("accounts", "accounts"),
    ("events_per_account_day", "generated density: events per account per event-time day"),
)


def to_markdown(result: dict[str, Any], command: str) -> str:
    m = result["machine"]
    lines = ["# churnwatch benchmark (latest)", "",
             f"Command: `{command}`  ", f"Machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}, "
             f"Python {m['python']} (domain core: {m.get('domain_build', 'pure')}), Kafka {m['kafka']} (KRaft, local), "
             f"load at start {m['loadavg_at_start']}", "",
             "| metric | value | meaning |", "|---|---:|---|"]
    lines += [f"| `{k}` | {_fmt(result.get(k))} | {desc} |" for k, desc in ROWS]
    lines += ["", "Ratios within one run are the comparable numbers; see README.md for the method.", ""]
    return "\n".join(lines)


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="churnwatch bench")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    for key, desc in ROWS:
        table.add_row(key, _fmt(result.get(key)), desc)
    Console().print(table)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=int, default=200_000, help="events to preload (default 200000)")
    p.add_argument("--accounts", type=int, default=5_000, help="accounts (default 5000)")
    p.add_argument("--days", type=int, default=2,
                   help="event-time span of the generated events (default 2: about 20 events per account per "
                        "day, a busy product; long sparse spans measure day-end evaluations, not events)")
    p.add_argument("--quick", action="store_true", help="a few-second smoke run (20000 events, 2000 accounts)")
    p.add_argument("--latency-seconds", type=float, default=20.0, help="duration of the fixed-rate phase")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks"), help="where latest.json/.md go")
    p.add_argument("--bootstrap", default=None, help="use this Kafka instead of the local stack")
    p.add_argument("--redis-url", default=None, help="Redis for the workers (default: the local stack's)")
    p.add_argument("--profile", action="store_true", help="also profile a worker with py-spy (into --out)")
    p.add_argument("--keep-stack", action="store_true", help="leave a stack the bench started running")
    p.add_argument("--keep-topics", action="store_true", help="do not delete the run's topics at the end")
    p.add_argument("--timeout", type=float, default=600.0, help="max seconds per phase")
    p.add_argument("--latency-only", action="store_true",
                   help="only the worker's catch-up and the latency phase, with the CPU of the worker, the bench "
                        "and the broker in it; prints the result and writes nothing (an A/B of a setting: run it "
                        "with and without the CHURNWATCH_* variable, alternating)")
    p.add_argument("--load", type=float, default=None,
                   help="with --latency-only: the latency phase's rate as a share of the worker's measured catch-up "
                        "(default 0.7, what the full bench always uses)")
    p.add_argument("--rate", type=float, default=None,
                   help="with --latency-only: the latency phase's rate in events/s, instead of --load (an A/B of a "
                        "setting at the same rate, whatever each run's catch-up was)")


def run(args: argparse.Namespace) -> int:
    if args.quick:
        args.events, args.accounts = min(args.events, 20_000), min(args.accounts, 2_000)
        args.latency_seconds = min(args.latency_seconds, 3.0)
        args.timeout = min(args.timeout, 180.0)
    if args.events < 100 or args.accounts < 10 or args.accounts * 8 > args.events:
        print("churnwatch bench: need --events >= 8 x --accounts (>= 100 events, >= 10 accounts)",
              file=sys.stderr)
        return 2
    if args.load is not None and not args.latency_only:
        print("churnwatch bench: --load goes with --latency-only; the full bench measures latency at 0.7 of the "
              "catch-up", file=sys.stderr)
        return 2
    if args.rate is not None:
        if not args.latency_only or args.load is not None:
            print("churnwatch bench: --rate goes with --latency-only and without --load", file=sys.stderr)
            return 2
        if args.rate < 10:
            print(f"churnwatch bench: --rate must be at least 10 events/s, not {args.rate:g}", file=sys.stderr)
            return 2
    if args.load is None:
        args.load = LATENCY_LOAD
    if not 0 < args.load <= 1:
        print(f"churnwatch bench: --load must be above 0 and at most 1 (a share of the catch-up rate), not {args.load}",
              file=sys.stderr)
        return 2
    if not args.latency_only:
        args.out.mkdir(parents=True, exist_ok=True)
    try:
        result = run_bench(args)
    except (BenchError, stack.StackError) as exc:
        print(f"churnwatch bench: {exc}", file=sys.stderr)
        return 1
    if args.latency_only:
        print(orjson.dumps(result, option=orjson.OPT_SORT_KEYS).decode())
        return 0
    command = "churnwatch bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "churnwatch bench"
    result["command"] = command
    (args.out / "latest.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    (args.out / "latest.md").write_text(to_markdown(result, command))
    print_table(result)
    print(f"wrote {args.out / 'latest.json'} and {args.out / 'latest.md'}")
    return 0


def missing_keys(result: dict[str, Any], keys: Iterable[str] = REQUIRED_KEYS) -> list[str]:
    return [k for k in keys if k not in result]
