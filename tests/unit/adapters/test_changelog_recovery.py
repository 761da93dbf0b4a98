"""The changelog recovery loop (ADR 0027) leaves tables and offsets as Faust's own loop does, and replaces only it; the
table manager starts without Faust's second of sleep (ADR 0030)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import faust
import pytest
from faust.events import Event
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP
from faust.types.tuples import Message
from mode.services import ServiceTask

from streams.adapters import changelog_recovery
from streams.adapters.batch_input import FaustVersionError
from streams.adapters.changelog_recovery import (
    _slurp_changelogs,
    faust_slurp_matches,
    faust_tables_on_start_matches,
    install,
)
from tests.support.offline_app import offline_app

ACTIVE, STANDBY = 0, 1
Slurp = Callable[[Any], Any]


def _app() -> faust.App:
    return offline_app("recovery")


def changelog_event(app: faust.App, topic: str, partition: int, offset: int, key: str, value: Any) -> Event:
    message = Message(topic, partition, offset, timestamp=0.0, timestamp_type=0, headers=[], key=key.encode(),
                      value=value, checksum=None)
    return Event(app, key, value, [], message)


async def _recover(slurp: Slurp, records: list[tuple[int, int, str, Any]], highwater: int) -> dict[str, Any]:
    """Run `slurp` over changelog `records` (partition, offset, key, value) of one table whose partition ACTIVE
    recovers up to `highwater` and whose partition STANDBY is a standby; what it left behind."""
    app = _app()
    table = app.Table("account_to_state", default=None, partitions=2)
    table.recovery_buffer_size = 3  # batches applied during the run, not only at its end
    tables: Any = app.tables  # Faust's TableManager (its declared type has neither attribute used here)
    recovery = tables.recovery
    topic = table.changelog_topic.get_topic_name()
    active, standby = TP(topic, ACTIVE), TP(topic, STANDBY)
    recovery.tp_to_table.update({active: table, standby: table})
    recovery.active_tps.add(active)
    recovery.standby_tps.add(standby)
    recovery.active_highwaters[active] = highwater
    recovery.active_offsets[active] = -1
    recovery._set_recovery_started()
    queue = tables.changelog_queue
    for partition, offset, key, value in records:
        queue.put_nowait(changelog_event(app, topic, partition, offset, key, value))
    task = asyncio.ensure_future(slurp(recovery))
    try:
        await asyncio.wait_for(recovery.signal_recovery_end.wait(), 5)
    finally:
        # Stopped as the service stops it. A cancel alone can be lost: Python 3.11's wait_for returns the result
        # of a get that completed as the cancel came (both loops wait that way); the loop then ends at its check.
        recovery._stopped.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return {"table": dict(table.data),
            "active": {tp.partition: offset for tp, offset in recovery.active_offsets.items()},
            "standby": {tp.partition: offset for tp, offset in recovery.standby_offsets.items()},
            "in_recovery": recovery.in_recovery,
            "left_in_queue": queue.qsize()}


RECORDS = [
    (ACTIVE, 0, "acct-1", b"v0"),
    (STANDBY, 0, "acct-2", b"s0"),
    (ACTIVE, 1, "acct-3", b"v1"),
    (ACTIVE, 1, "acct-3", b"stale"),  # read twice (a seek back): the second is not applied
    (ACTIVE, 2, "acct-1", b"v2"),
    (STANDBY, 1, "acct-4", b"s1"),
    (ACTIVE, 3, "acct-5", b"v3"),
    (ACTIVE, 4, "acct-5", None),  # deleted
    (ACTIVE, 5, "acct-6", b"v5"),
    (STANDBY, 2, "acct-8", b"s2"),
    (ACTIVE, 6, "acct-7", b"v6"),  # the active partition's last: recovery ends (later standby records are
]                                   # applied when their buffer fills, in both loops, at times that differ)


@pytest.mark.parametrize("chunk", [1, 4, 1000])
def test_recovered_tables_and_offsets_are_the_ones_fausts_loop_leaves(monkeypatch: pytest.MonkeyPatch,
                                                                      chunk: int) -> None:
    monkeypatch.setattr(changelog_recovery, "SLURP_CHUNK", chunk)
    theirs = asyncio.run(_recover(Recovery._slurp_changelogs.fun, RECORDS, highwater=6))
    ours = asyncio.run(_recover(_slurp_changelogs, RECORDS, highwater=6))
    assert ours == theirs
    assert ours["table"] == {"acct-1": b"v2", "acct-2": b"s0", "acct-3": b"v1", "acct-4": b"s1", "acct-6": b"v5",
                             "acct-7": b"v6", "acct-8": b"s2"}
    assert (ours["active"], ours["standby"]) == ({ACTIVE: 6}, {STANDBY: 2})
    assert ours["in_recovery"] is False
    assert ours["left_in_queue"] == 0


def test_a_record_of_a_partition_neither_active_nor_standby_is_skipped_not_applied_to_another_table() -> None:
    # Faust's loop falls through to the previous record's table here (a bug its source notes); ours skips it.
    records = [(ACTIVE, 0, "acct-1", b"v0"), (7, 0, "acct-9", b"elsewhere"), (ACTIVE, 1, "acct-2", b"v1")]
    ours = asyncio.run(_recover(_slurp_changelogs, records, highwater=1))
    assert ours["table"] == {"acct-1": b"v0", "acct-2": b"v1"}
    assert ours["in_recovery"] is False


def test_the_installed_faust_recovery_loop_is_the_one_changelog_recovery_copies() -> None:
    # A Faust upgrade changes Recovery._slurp_changelogs: the copy must be re-checked (ADR 0027).
    assert faust_slurp_matches()


def test_installed_the_apps_recovery_runs_the_copy() -> None:
    app = _app()
    install(app)
    tables: Any = app.tables
    tasks = [task.fun for task in tables.recovery._get_tasks()]
    assert _slurp_changelogs in tasks
    assert Recovery._slurp_changelogs.fun not in tasks


def test_a_faust_whose_recovery_loop_changed_is_refused_before_the_worker_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def another_loop(self: Any) -> None:  # another Faust's recovery loop
        return None

    monkeypatch.setattr(Recovery, "_slurp_changelogs", ServiceTask(another_loop))
    with pytest.raises(FaustVersionError, match=r"Recovery\._slurp_changelogs .* FAUST_SLURP_SHA256"):
        install(_app())


async def _start_table_manager(app: faust.App) -> dict[str, Any]:
    """Run the app's table manager's on_start offline (its consumer built, assigned nothing; recovery not really
    started); what it did."""
    tables: Any = app.tables
    thread: Any = app.consumer._thread
    thread._consumer = thread._create_worker_consumer(app.transport)  # no connection until start()
    slept: list[float] = []
    recovery_started: list[bool] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def start_recovery() -> None:
        recovery_started.append(True)

    tables.sleep, tables.recovery.start = sleep, start_recovery
    try:
        await tables.on_start()
    finally:
        await thread._consumer.stop()
    return {"slept": slept, "recovery_started": recovery_started, "registered": tables._tables_registered.is_set()}


def test_the_installed_faust_table_start_is_the_one_changelog_recovery_replaces() -> None:
    # A Faust upgrade changes TableManager.on_start: the replacement must be re-checked (ADR 0030).
    assert faust_tables_on_start_matches()


def test_installed_the_table_manager_registers_the_tables_and_starts_recovery_without_faust_s_second_of_sleep() -> None:
    faust_s = asyncio.run(_start_table_manager(_app()))
    app = _app()
    install(app)
    ours = asyncio.run(_start_table_manager(app))
    assert faust_s == {"slept": [1.0], "recovery_started": [True], "registered": True}
    assert ours == {"slept": [], "recovery_started": [True], "registered": True}
    with pytest.raises(RuntimeError, match="Too late to add tables"):
        app.Table("declared-after-the-start")  # as with Faust's start: every table is declared before it


def test_a_faust_whose_table_start_changed_is_refused_before_the_worker_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    async def another_start(self: Any) -> None:  # another Faust's table manager start
        return None

    monkeypatch.setattr(TableManager, "on_start", another_start)
    with pytest.raises(FaustVersionError, match=r"TableManager\.on_start .* FAUST_TABLES_ON_START_SHA256"):
        install(_app())
