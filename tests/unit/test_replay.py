"""In-process replay split over processes (`--jobs`, ADR 0022) decides exactly what one process decides."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import cache

import orjson
import pytest

from schemas.events import BILLING_TYPES
from streams import replay
from streams.replay import PackedLines, ReplayResult, replay_lines
from streams.tools.simulate import generate

# Lines no decoder accepts: each must be dead-lettered exactly once, whichever process reads it.
BROKEN = [b"not json", b'{"type": "session.started"}', b'{"type": "feature.used", "account_id": " "}']


@cache
def world_lines() -> tuple[bytes, ...]:
    """A simulated world with churn, alerts and billing held behind usage, plus records a replay process cannot
    route without decoding them: the broken lines, a CloudEvents envelope and an id with spaces to strip, both of
    an account of the world, and a broken line that does name an account."""
    events, _truth = generate(60, 120, seed=11)
    lines = [orjson.dumps(e) for e in events]
    for n, broken in enumerate(BROKEN):
        lines.insert(1000 * (n + 1), broken)
    usage = next(e for e in events[5000:] if e["type"] == "feature.used")
    account, at = usage["account_id"], usage["occurred_at"]
    envelope = {"specversion": "1.0", "id": "ce-split-1", "source": "https://app.example.com/usage",
                "type": "com.churnwatch.feature.used", "subject": account, "time": at,
                "datacontenttype": "application/json", "data": {"feature": "exports", "user_id": "u-ce", "count": 2}}
    padded = {**usage, "event_id": "evt-split-padded", "account_id": f"  {account} "}
    lines[5001:5001] = [orjson.dumps(envelope), orjson.dumps(padded),
                        orjson.dumps({"type": "feature.used", "account_id": account})]
    return tuple(lines)


DEAD = len(BROKEN) + 1  # and the one naming an account

def replayed(jobs: int, **kw: object) -> ReplayResult:
    return replay_lines(list(world_lines()), jobs=jobs, batch_size=700, **kw)  # type: ignore[arg-type]


def alerts_by_account(result: ReplayResult) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for record in result.alerts:
        out.setdefault(record.account_id, []).append(record.model_dump_json())
    return out


@pytest.mark.parametrize("jobs", [2, 3])
def test_a_replay_split_over_processes_gives_the_same_states_counts_and_portfolio(jobs: int) -> None:
    one, split = replayed(1), replayed(jobs)
    assert split.encoded_states() == one.encoded_states()
    assert split.tally == one.tally
    assert split.dead_letter_reasons == one.dead_letter_reasons
    assert sum(split.dead_letter_reasons.values()) == DEAD
    assert split.inputs == one.inputs == len(world_lines())
    assert split.portfolio is not None and one.portfolio is not None
    assert split.portfolio.summary_json() == one.portfolio.summary_json()
    assert split.portfolio.cells_json() == one.portfolio.cells_json()


def test_states_sent_back_in_many_chunks_merge_into_the_same_states(monkeypatch: pytest.MonkeyPatch) -> None:
    # A forked process sends its ~30 states of the world 7 at a time (the forked process inherits the patch).
    monkeypatch.setattr(replay, "MERGE_CHUNK_STATES", 7)
    one, split = replayed(1), replayed(2)
    assert len(split.states) == len(one.states) > 2 * 7
    assert split.encoded_states() == one.encoded_states()


def test_a_split_replay_publishes_the_same_alerts_each_account_in_its_own_order() -> None:
    one, split = replayed(1), replayed(2)
    assert len(one.alerts) > 50  # the world churns: the comparison is about something
    assert alerts_by_account(split) == alerts_by_account(one)


def test_a_split_replay_without_the_final_tick_matches_too() -> None:
    one, split = replayed(1, final_tick=False), replayed(2, final_tick=False)
    assert split.encoded_states() == one.encoded_states()
    assert alerts_by_account(split) == alerts_by_account(one)


def test_progress_is_reported_once_for_every_input_line() -> None:
    counted: list[int] = []
    replayed(2, progress=counted.append)
    assert sum(counted) == len(world_lines())


def test_a_forked_process_that_fails_fails_the_replay_with_its_error() -> None:
    parent = os.getpid()

    def lines() -> Iterator[bytes]:
        yield from world_lines()[:100]
        if os.getpid() != parent:
            raise OSError("disk went away")

    with pytest.raises(RuntimeError, match=r"replay process 1 of 2 failed: OSError: disk went away"):
        replay_lines(lines(), jobs=2)


def test_an_input_error_in_the_replay_itself_is_raised_as_it_is() -> None:
    def lines() -> Iterator[bytes]:
        yield from world_lines()[:100]
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        replay_lines(lines(), jobs=2)


def test_every_process_ends_at_the_watermark_of_the_whole_input() -> None:
    # One account's usage goes on for a day after every other account's: the whole input's last watermark passes
    # a day end that the other accounts' process never reaches on its own. A single process evaluates that day
    # end for every account at its final tick; so must every process of a split replay.
    lines = list(world_lines())
    last = orjson.loads(next(line for line in reversed(lines) if b"session.started" in line))
    later = datetime.fromisoformat(last["occurred_at"]) + timedelta(days=1, hours=3)
    lines.append(orjson.dumps({**last, "event_id": "evt-a-day-later", "occurred_at": later.isoformat()}))
    one = replay_lines(list(lines), batch_size=700)
    split = replay_lines(list(lines), batch_size=700, jobs=2)
    assert split.encoded_states() == one.encoded_states()
    assert alerts_by_account(split) == alerts_by_account(one)


def test_lines_held_in_memory_are_packed_for_the_processes_without_changing_a_byte() -> None:
    lines = [b'{"a": 1}', b"", b"two\nlines", b"\x00\xff", b"x" * 70_000]
    assert list(PackedLines(lines)) == lines
    assert list(PackedLines(())) == []


def test_jobs_auto_is_one_process_per_usable_core_even_without_cpu_affinity(monkeypatch) -> None:
    from streams import replay

    assert replay._jobs("auto") == min(replay.MAX_JOBS, len(os.sched_getaffinity(0)))
    monkeypatch.delattr(os, "sched_getaffinity")  # as on macOS
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert replay.usable_cores() == 3
    assert replay._jobs("auto") == 3


def billing_moved_behind_usage(lines: tuple[bytes, ...], n: int) -> list[bytes]:
    """`n` billing lines of the last 5 % that have later usage of their account after them, moved to the end: each
    is then applied after that usage, and within the lateness bound (the end is three event-time days later)."""
    window = range(len(lines) - len(lines) // 20, len(lines))
    events = {i: orjson.loads(lines[i]) for i in window}

    def usage_after(i: int) -> bool:
        e = events[i]
        return any(f.get("account_id") == e["account_id"] and f.get("type") not in BILLING_TYPES
                   and f["occurred_at"] > e["occurred_at"] for j, f in events.items() if j > i)

    moved = [i for i, e in events.items() if e.get("type") in BILLING_TYPES and usage_after(i)][:n]
    assert len(moved) == n
    skip = set(moved)
    return [line for i, line in enumerate(lines) if i not in skip] + [lines[i] for i in moved]


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_replay_counts_events_applied_out_of_time_order_across_the_streams(jobs: int) -> None:
    assert replayed(jobs).out_of_order == {}  # the simulated world is in time order
    late = replay_lines(billing_moved_behind_usage(world_lines(), 3), jobs=jobs, batch_size=700)
    assert late.out_of_order["billing"] == 3 and late.out_of_order["usage"] == 0
    assert late.dead_letter_reasons == replayed(1).dead_letter_reasons  # applied, none too late
