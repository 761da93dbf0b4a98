"""`churnwatch replay`: the worker's domain core run in-process over files, with no Kafka (backfills, tuning)."""

from __future__ import annotations

import argparse
import contextlib
import gc
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

from schemas.alerts import AlertRecord
from streams.domain.aggregate import (
    AccountAggregate,
    Rules,
    cohort_snapshot,
    decode_aggregate,
    encode_aggregate,
    read_model,
    tick,
)
from streams.domain.config import DomainConfig
from streams.domain.portfolio import Portfolio, compute_portfolio, portfolio_alert_records
from streams.gc_tuning import GEN0_THRESHOLD, tuned_gc
from streams.ingest.convert import FORMATS, Converted, Record, convert_records, read_records, unreadable
from streams.ingest.decode import IngestConfig
from streams.partitioning import PartitionCache
from streams.processing import InputRecord, apply_decoded, decode_records, decode_shard

REPLAY_TOPIC = "replay"


@dataclass
class ReplayResult:
    """Everything a replay produced; `states` are the same table values the worker would hold."""

    states: dict[str, AccountAggregate] = field(default_factory=dict)
    tally: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    rejected_before_decode: int = 0
    skipped: int = 0
    inputs: int = 0
    seconds: float = 0.0
    portfolio: Portfolio | None = None
    alerts: list[AlertRecord] = field(default_factory=list)
    # Events applied after the other stream had passed them for their account ("billing": billing dated before
    # usage the account already had; "usage": the reverse): a file not in time order across the streams, whose
    # alerts can differ from a time-ordered run's (the worker's churnwatch_applied_out_of_order_total).
    out_of_order: Counter[str] = field(default_factory=Counter)

    @property
    def processed(self) -> int:
        return sum(n for (_t, _e, outcome), n in self.tally.items() if outcome == "processed")

    def encoded_states(self) -> dict[str, bytes]:
        return {a: encode_aggregate(s) for a, s in sorted(self.states.items())}


def canonical_lines(paths: Iterable[str], fmt: str, result: ReplayResult) -> Iterator[bytes]:
    """Raw canonical event bytes from files of any supported format (adapters run in-process)."""
    config = IngestConfig()
    for path in paths:
        with open(path, "rb") as stream:
            records = read_records(path, stream)
            if fmt == "canonical":
                for rec in records:
                    if isinstance(rec, Record):
                        yield rec.raw
                    else:
                        result.rejected_before_decode += 1
                continue
            for out in convert_records(records, fmt, config):  # type: ignore[arg-type]
                if isinstance(out, Converted) and out.kind == "event":
                    yield out.text.encode()
                elif out.kind == "skip":
                    result.skipped += 1
                else:
                    result.rejected_before_decode += 1


# The usage front at the end of a replay's input: every held billing event is released.
END_OF_INPUT = datetime(9999, 12, 31, tzinfo=UTC)


def replay_lines(
    lines: Iterable[bytes], config: DomainConfig | None = None, *, batch_size: int = 5000,
    max_event_bytes: int = 64 * 1024, progress: Any = None, result: ReplayResult | None = None,
    cohort_dimension: str = "plan", rules: Rules | None = None, final_tick: bool = True,
    watermark_delay_s: float = 3600.0, jobs: int = 1,
) -> ReplayResult:
    """Apply every line through the worker's `decode_records` + `apply_decoded`, then compute the portfolio.

    With `final_tick`, time-driven rules are evaluated after every batch at the newest event time seen so far
    (the worker's timer does the same at each partition's watermark every CHURNWATCH_ALERT_TICK_S).

    With `jobs` > 1 the accounts are split over this process and jobs - 1 forked ones (ADR 0022): each reads every
    line and applies only its own accounts' events; the others' states, tallies and alerts are merged here. The
    states and the set of alerts are the same as with one process; the alerts are listed process by process (each
    account's in its own order).
    """
    config = config or DomainConfig()
    rules = rules or Rules.load(None, config)
    result = result or ReplayResult()
    options = _Options(config, rules, batch_size, max_event_bytes, final_tick, watermark_delay_s)
    started = time.perf_counter()
    if jobs > 1:
        watermark_s = _replay_sharded(lines, options, jobs, result, progress)
    else:
        watermark_s = _replay_shard(lines, options, result, progress, None)
        _final_tick(result, options, watermark_s)
    result.seconds = time.perf_counter() - started
    result.portfolio = compute_portfolio(
        (a, cohort_snapshot(s, cohort_dimension)) for a, s in sorted(result.states.items())
    )
    # Months are final at the end of a complete input (as live, once idle); otherwise up to the usage front.
    final_until = None if final_tick else (watermark_s + watermark_delay_s if watermark_s else 0.0)
    result.alerts.extend(portfolio_alert_records(
        result.portfolio, rules.thresholds, final_until_s=final_until, lateness_days=config.allowed_lateness_days))
    return result


@dataclass(frozen=True)
class _Options:
    config: DomainConfig
    rules: Rules
    batch_size: int
    max_event_bytes: int
    final_tick: bool
    watermark_delay_s: float


def _replay_shard(
    lines: Iterable[bytes], o: _Options, result: ReplayResult, progress: Any, shard: tuple[int, int] | None
) -> float:
    """Apply the lines (only `shard` = (index, jobs)'s accounts when given) into `result`; returns the last
    watermark it ticked at. The final tick is the caller's (`_final_tick`)."""
    states = result.states
    batch: list[InputRecord] = []
    watermark_s = 0.0
    # Accounts go to processes as keys go to Kafka partitions (ADR 0002), memoised per account.
    index, partition_of = (shard[0], PartitionCache(shard[1])) if shard is not None else (0, None)

    def flush() -> None:
        nonlocal watermark_s
        if partition_of is None:
            items = decode_records(batch, o.max_event_bytes)
        else:
            items = decode_shard(batch, index, partition_of, o.max_event_bytes)
        out = apply_decoded(items, states.get, o.config, max_event_bytes=o.max_event_bytes, rules=o.rules)
        states.update(out.states)
        result.alerts.extend(out.alerts)
        result.tally.update(out.tally)
        result.dead_letter_reasons.update(out.dead_letter_reasons)
        result.out_of_order.update(out.out_of_order())
        if progress is not None:
            progress(len(batch))
        batch.clear()
        # Like the worker's timer: time-driven rules at the event-time watermark after each batch. A replay
        # process of a split replay ticks at its own accounts' newest usage, as a live worker at its partition's.
        mark = out.newest_usage_s - o.watermark_delay_s
        if o.final_tick and out.newest_usage_s and mark > watermark_s:
            watermark_s = mark
            _tick_all(result, o, watermark_s)

    for line in lines:
        result.inputs += 1
        batch.append(InputRecord(line, REPLAY_TOPIC))
        if len(batch) >= o.batch_size:
            flush()
    if batch:
        flush()
    return watermark_s


def _tick_all(result: ReplayResult, o: _Options, at_s: float, front: datetime | None = None) -> None:
    mark = datetime.fromtimestamp(at_s, tz=UTC)
    front = front or datetime.fromtimestamp(at_s + o.watermark_delay_s, tz=UTC)  # the newest usage event seen
    states = result.states
    for account_id in sorted(states):
        result.alerts.extend(tick(states[account_id], mark, o.rules, front).alerts)


def _final_tick(result: ReplayResult, o: _Options, watermark_s: float) -> None:
    """The input is complete: billing still held for usage that will not come is applied, as a live worker does
    once its input has been idle for CHURNWATCH_IDLE_PARTITION_S (ADR 0006). No day ends past the watermark of
    the whole input (in a split replay, the newest of its processes')."""
    if o.final_tick:
        _tick_all(result, o, watermark_s, END_OF_INPUT)


def _replay_sharded(lines: Iterable[bytes], o: _Options, jobs: int, result: ReplayResult, progress: Any) -> float:
    """Replay share 0 of the accounts here and shares 1..jobs-1 in forked processes, and merge theirs into
    `result` (ADR 0022). Every process makes the final tick at the watermark of the whole input."""
    context = multiprocessing.get_context("fork")  # the children share the parent's input and loaded modules
    if isinstance(lines, list | tuple):
        lines = PackedLines(lines)
    children: list[tuple[int, Any, Connection]] = []
    try:
        for index in range(1, jobs):
            here, there = context.Pipe()
            child = context.Process(target=_shard_main, args=(there, lines, o, (index, jobs)),
                                    name=f"churnwatch-replay-{index}", daemon=True)
            child.start()
            there.close()
            children.append((index, child, here))
        # Forked before this process reads any line: each child reads the input from its start.
        watermark_s = _replay_shard(lines, o, result, progress, (0, jobs))
        for index, _child, conn in children:
            watermark_s = max(watermark_s, _receive(conn, index, jobs, "watermark")[1])
        for _index, _child, conn in children:
            conn.send(watermark_s)
        _final_tick(result, o, watermark_s)
        # Every process read every line: the input counts are this one's; the rest is merged. States come in
        # chunks, so that decoding one overlaps the forked process's encoding of the next.
        for index, _child, conn in children:
            kind, part = _receive(conn, index, jobs, "states", "done")
            while kind == "states":
                result.states.update((a, decode_aggregate(v)) for a, v in part.items())
                kind, part = _receive(conn, index, jobs, "states", "done")
            result.alerts.extend(part["alerts"])
            result.tally.update(part["tally"])
            result.dead_letter_reasons.update(part["dead_letter_reasons"])
            result.out_of_order.update(part["out_of_order"])
    finally:
        for _index, child, conn in children:
            conn.close()
            child.join(5)
            if child.is_alive():
                child.terminate()
                child.join()
    return watermark_s


class PackedLines:
    """Lines held in memory, packed into one bytes object for forked replay processes to read (ADR 0022).

    A list of bytes objects shared with a forked process is copied page by page as both processes read it: reading
    a line writes its reference count, and the write copies the page it sits on (copy-on-write). Lines built one
    by one sit among other objects, one page each: measured, that copying cost each process more than a third of
    its replay. Packed, the shared pages are only read; each process slices its own line objects out of them."""

    def __init__(self, lines: list[bytes] | tuple[bytes, ...]) -> None:
        self._blob = b"".join(lines)
        self._ends = list(accumulate(map(len, lines)))

    def __iter__(self) -> Iterator[bytes]:
        blob, start = self._blob, 0
        for end in self._ends:
            yield blob[start:end]
            start = end


# States a forked replay process encodes per message (~1 KB each): the parent decodes one chunk while the process
# encodes the next. Sent at the end, all at once, the encoding (~40 us a state) and the decoding (~50 us) took
# turns: 0.24 s of a 1.8-s two-process replay of the bench's 5,000 accounts.
MERGE_CHUNK_STATES = 200


def _receive(conn: Connection, index: int, jobs: int, *expected: str) -> tuple[str, Any]:
    """Replay process `index`'s next message as (kind, value); its kind must be one of `expected`. Its error, or
    its end without a message, as RuntimeError."""
    try:
        kind, value = conn.recv()
    except EOFError:
        raise RuntimeError(f"replay process {index} of {jobs} exited without a result") from None
    if kind == "error":
        raise RuntimeError(f"replay process {index} of {jobs} failed: {value}")
    if kind not in expected:
        raise RuntimeError(f"replay process {index} of {jobs} sent {kind!r} where {' or '.join(expected)} was "
                           "expected")
    return kind, value


def _shard_main(conn: Connection, lines: Iterable[bytes], o: _Options, shard: tuple[int, int]) -> None:
    """A forked replay process: its accounts' share of the input. It sends its watermark, makes the final tick at
    the one it receives (the whole input's), and sends back its states encoded (MERGE_CHUNK_STATES a message),
    then its alerts and its counters."""
    # The parent's objects, inherited at the fork, are never collected here: frozen, the collector does not walk
    # them, and its walk does not write to (copy) their pages. Measured on the bench's replay: the forked process's
    # two young collections took 0.13-0.15 s instead of the parent's 0.03-0.04; frozen, 0.02-0.03 (ADR 0022).
    gc.freeze()
    try:
        result = ReplayResult()
        conn.send(("watermark", _replay_shard(lines, o, result, None, shard)))
        _final_tick(result, o, conn.recv())
        states = list(result.states.items())
        for start in range(0, len(states), MERGE_CHUNK_STATES):
            conn.send(("states", {a: encode_aggregate(s) for a, s in states[start:start + MERGE_CHUNK_STATES]}))
        conn.send(("done", {
            "alerts": result.alerts,
            "tally": result.tally,
            "dead_letter_reasons": result.dead_letter_reasons,
            "out_of_order": result.out_of_order,
        }))
    except EOFError:
        pass  # the parent failed and closed the pipe: nothing to report to
    except BaseException as exc:  # reported to the parent, which raises it
        with contextlib.suppress(OSError):  # unless it is gone (it failed itself)
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def write_outputs(result: ReplayResult, out_dir: Path, config: DomainConfig) -> None:
    """The stable file contract (docs/metrics.md): metrics.json, cohorts.json, accounts.jsonl, summary.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    portfolio = result.portfolio or Portfolio()
    opts = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    (out_dir / "metrics.json").write_bytes(orjson.dumps(portfolio.months_json(), option=opts))
    (out_dir / "cohorts.json").write_bytes(orjson.dumps(portfolio.cells_json(), option=opts))
    (out_dir / "summary.json").write_bytes(orjson.dumps(portfolio.summary_json(), option=opts))
    with open(out_dir / "accounts.jsonl", "wb") as fh:
        for account_id in sorted(result.states):
            fh.write(orjson.dumps(read_model(result.states[account_id], config)) + b"\n")
    with open(out_dir / "alerts.jsonl", "wb") as fh:
        for record in result.alerts:
            fh.write(record.model_dump_json().encode() + b"\n")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", help="event files: JSON Lines, a JSON array, or one JSON object")
    p.add_argument("--from", dest="fmt", choices=FORMATS, default="canonical", help="input format")
    p.add_argument("--out", type=Path, default=None, help="write metrics.json, cohorts.json, ... into DIR")
    p.add_argument("--segment", default="plan", help="segment dimension: plan or an account trait name")
    p.add_argument("--thresholds", type=Path, default=None, help="thresholds YAML (default: shipped defaults)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_jobs_argument(p)


def add_jobs_argument(p: argparse.ArgumentParser) -> None:
    """`--jobs N|auto` (replay, backtest): split the accounts over N processes (ADR 0022)."""
    p.add_argument("--jobs", type=_jobs, default=1, metavar="N",
                   help="split the accounts over N processes (ADR 0022; default 1); 'auto': one per usable core")


# More processes than this is a typo, not a machine: each one reads and decodes the whole input.
MAX_JOBS = 64


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one, else every core): `--jobs auto`."""
    affinity = getattr(os, "sched_getaffinity", None)  # Linux; not on macOS
    return max(1, len(affinity(0)) if affinity is not None else os.cpu_count() or 1)


def _jobs(value: str) -> int:
    if value == "auto":
        return min(MAX_JOBS, usable_cores())
    try:
        jobs = int(value)
    except ValueError:
        jobs = 0
    if not 1 <= jobs <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a whole number from 1 to {MAX_JOBS}, got {value!r}")
    return jobs


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from streams.report import print_replay_report

    problems = unreadable(args.files)
    if problems:
        raise ReplayError(problems[0].split(": error: ", 1)[-1])
    console = Console(stderr=True)
    config = DomainConfig()
    try:
        rules = Rules.load(args.thresholds, config)
    except ValueError as exc:  # ThresholdsError: already one line naming the file and key
        raise ReplayError(str(exc)) from None
    result = ReplayResult()
    lines = canonical_lines(args.files, args.fmt, result)
    # Refreshed by each batch's progress call, not by rich's refresh thread: `--jobs` forks, and a process should
    # not fork while another of its threads may hold a lock (Python 3.12+ warns about it).
    with Progress(
        TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TextColumn("events"), TimeElapsedColumn(),
        console=console, disable=args.no_progress, transient=True, auto_refresh=False,
    ) as bar:
        task = bar.add_task("replay", total=None)

        def progress(n: int) -> None:
            bar.advance(task, n)
            bar.refresh()

        with tuned_gc(GEN0_THRESHOLD):  # as the worker (ADR 0013)
            replay_lines(lines, config, progress=progress, result=result, cohort_dimension=args.segment,
                         rules=rules, jobs=args.jobs)
    print_replay_report(result)
    if args.out:
        write_outputs(result, args.out, config)
        Console().print(f"wrote {args.out}/metrics.json, cohorts.json, summary.json, accounts.jsonl, alerts.jsonl")
    return 0


class ReplayError(Exception):
    """A one-line user-facing problem with replay's inputs."""
