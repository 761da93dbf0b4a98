"""Faust's changelog recovery loop, taking what its queue holds a chunk at a time instead of a timed wait each (ADR 0027).

A worker with `memory://` tables rebuilds them from their changelog topics at every start and after every
rebalance, and a standby replica reads them all the time. Faust's `Recovery._slurp_changelogs` takes each
changelog record from its queue through `asyncio.wait_for` (a task and a timer per record) and then asks whether
recovery is done (a `Counter` over every changelog partition per record): about half of the worker's CPU while it
recovered. This copy awaits the first record as Faust does, takes the rest the queue already holds without
waiting, applies each record as Faust does (one difference, for a partition neither active nor standby: `_apply`),
and asks whether recovery is done once per chunk. Nothing awaits between the records of a chunk, so the answer is
the same as Faust's would be after the chunk's last.

Faust's table manager also sleeps a second when it starts, before it registers the tables' changelog channels
(tables added later are refused); every start waits for it. The worker's tables are all declared before it starts,
so `_start_tables` registers them at once (ADR 0030).
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic
from types import MethodType
from typing import Any

from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.tables.recovery import logger as faust_logger
from faust.utils.tracing import finish_span
from mode.services import ServiceTask

from streams.adapters.batch_input import refuse_unless_pinned, source_hash

# sha256 of the source of faust-streaming 0.15.3's `Recovery._slurp_changelogs`, the loop `_slurp_changelogs` copies.
FAUST_SLURP_SHA256 = "7825c7e50f766d5ab0fd246b63420ea0dfcd732d005f1057cc9da656ff5d3967"

# Changelog records taken from the queue without waiting, after the awaited first, before recovery's end is checked
# and other tasks run: ~1,000 records is a few ms here (a 20,000-record recovery is a few hundred chunks).
SLURP_CHUNK = 1000


# sha256 of the source of faust-streaming 0.15.3's `TableManager.on_start`, which `_start_tables` replaces.
FAUST_TABLES_ON_START_SHA256 = "365dd25fbc0e068499c89e526516c638693a2d143b6ac249f84a60f5267fec9d"


def faust_tables_on_start_matches() -> bool:
    """Whether the installed Faust's `TableManager.on_start` is the one `_start_tables` replaces."""
    return source_hash(TableManager.on_start) == FAUST_TABLES_ON_START_SHA256


def faust_slurp_matches() -> bool:
    """Whether the installed Faust's recovery loop is the one `_slurp_changelogs` copies."""
    return source_hash(Recovery._slurp_changelogs.fun) == FAUST_SLURP_SHA256


def install(app: Any) -> None:
    """Run the app's table recovery with `_slurp_changelogs`, and start its table manager with `_start_tables`.
    Call before the worker starts (Faust starts the recovery service's tasks when it starts); a Faust whose loop
    or table start is not the one copied or replaced is refused in one line."""
    here = "streams/adapters/changelog_recovery.py"
    refuse_unless_pinned(faust_slurp_matches(), "Recovery._slurp_changelogs", f"{here} copies", "ADR 0027",
                         "FAUST_SLURP_SHA256")
    refuse_unless_pinned(faust_tables_on_start_matches(), "TableManager.on_start", f"{here} replaces", "ADR 0030",
                         "FAUST_TABLES_ON_START_SHA256")
    # mode starts a service's tasks by attribute name, so the instance's attribute is the one started; and it
    # calls `self.on_start()`, so the instance's method is the one run.
    app.tables.recovery._slurp_changelogs = ServiceTask(_slurp_changelogs)
    app.tables.on_start = MethodType(_start_tables, app.tables)


async def _start_tables(self: Any) -> None:
    """faust-streaming 0.15.3's `TableManager.on_start` without its first `await self.sleep(1.0)`: the tables'
    changelog channels are registered (and later tables refused) and recovery started at once. Measured: a worker
    on the bench's stack answered /ready in 1.98-2.87 s instead of 3.16-3.81 s (ADR 0030)."""
    if not self.should_stop:
        await self._update_channels()
        await self.recovery.start()


async def _slurp_changelogs(self: Any) -> None:  # pragma: no cover - runs inside Faust's worker
    """faust-streaming 0.15.3's `Recovery._slurp_changelogs`, with the queue's records taken a chunk at a time
    (up to SLURP_CHUNK) and recovery's end checked once per chunk; each record is applied as there (`_apply`)."""
    changelog_queue = self.tables.changelog_queue
    tp_to_table = self.tp_to_table

    active_tps = self.active_tps
    standby_tps = self.standby_tps
    active_offsets = self.active_offsets
    standby_offsets = self.standby_offsets
    active_events_received_at = self._active_events_received_at
    standby_events_received_at = self._standby_events_received_at

    buffers = self.buffers
    buffer_sizes = self.buffer_sizes
    processing_times = self._processing_times
    logger = faust_logger

    async def _maybe_signal_recovery_end(timeout: bool = False, timeout_count: int = 0) -> None:
        # Faust: wait at least 2 consecutive cycles for the queue to be empty, to avoid races between the
        # aiokafka consumer position and draining the queue.
        if timeout and self.app.in_transaction and timeout_count > 1:
            await detect_aborted_tx()
        if self.in_recovery and not self.need_recovery():
            # apply anything stuck in the buffers
            self.flush_buffers()
            self._set_recovery_ended()
            if self._actives_span is not None:
                self._actives_span.set_tag("Actives-Ready", True)
            logger.debug("Setting recovery end")
            self.signal_recovery_end.set()

    async def detect_aborted_tx() -> None:
        highwaters = self.active_highwaters
        offsets = self.active_offsets
        for tp, highwater in highwaters.items():
            if (highwater is not None and offsets[tp] is not None and offsets[tp] < highwater
                    and await self.app.consumer.position(tp) >= highwater):
                logger.info(f"Aborted tx until highwater for {tp}")
                offsets[tp] = highwater

    async def _apply(event: Any) -> None:
        # Faust's body for one record, but for two things. The debug lines are formatted only when logged. A record
        # of a partition neither active nor standby (Faust warns) is then skipped: in Faust's loop it fell through
        # to the previous record's table, a bug its source notes and leaves.
        now = monotonic()
        message = event.message
        tp = message.tp
        offset = message.offset
        if debug:
            logger.debug(f"Recovery message topic {tp} offset {offset}")
        bufsize = buffer_sizes.get(tp)
        is_active = False
        if tp in active_tps:
            is_active = True
            table = tp_to_table[tp]
            offsets = active_offsets
            if bufsize is None:
                bufsize = buffer_sizes[tp] = table.recovery_buffer_size
            active_events_received_at[tp] = now
        elif tp in standby_tps:
            table = tp_to_table[tp]
            offsets = standby_offsets
            if bufsize is None:
                bufsize = buffer_sizes[tp] = table.standby_buffer_size
                standby_events_received_at[tp] = now
        else:
            logger.warning(f"recovery unknown topic {tp} offset {offset}")
            return

        seen_offset = offsets.get(tp, None)
        if debug:
            logger.debug(f"seen offset for {tp} is {seen_offset} message offset {offset}")
        if seen_offset is None or offset > seen_offset:
            offsets[tp] = offset
            buf = buffers[table]
            buf.append(event)
            await table.on_changelog_event(event)
            if len(buf) >= bufsize:
                table.apply_changelog_batch(buf)
                buf.clear()
                self._last_flush_at = now
            now_after = monotonic()

            if is_active:
                last_processed_at = self._last_active_event_processed_at
                if last_processed_at is not None:
                    processing_times.append(now_after - last_processed_at)
                    max_samples = self.num_samples_required_for_estimate
                    if len(processing_times) > max_samples:
                        processing_times.popleft()
                self._last_active_event_processed_at = now_after

    timeout_count = 0
    debug = False
    while not self.should_stop:
        try:
            self.signal_recovery_end.clear()
            try:
                event = await asyncio.wait_for(changelog_queue.get(), timeout=5.0)
            except TimeoutError:  # asyncio's, the builtin since Python 3.11
                timeout_count += 1
                if self.should_stop:
                    return
                await _maybe_signal_recovery_end(timeout=True, timeout_count=timeout_count)
                continue
            timeout_count = 0
            debug = logger.isEnabledFor(logging.DEBUG)
            events = [event]
            failure: Exception | None = None
            try:
                while len(events) < SLURP_CHUNK and not changelog_queue.empty():
                    events.append(changelog_queue.get_nowait())
            except Exception as ex:  # an error thrown into the queue: Faust's get would have raised it here
                failure = ex
            for event in events:
                try:
                    await _apply(event)
                except Exception as ex:  # as Faust's loop: logged, and the next record is applied
                    logger.warning(f"Error in recovery {ex}")
            if failure is not None:
                logger.warning(f"Error in recovery {failure}")

            await _maybe_signal_recovery_end()

            standby_ready = self._standbys_span is None and self.tables.standbys_ready
            if not standby_ready and not self.standby_remaining_total():
                logger.debug("Completed standby partition fetch")
                if self._standbys_span:
                    finish_span(self._standbys_span)
                    self._standbys_span = None
                self.tables.on_standbys_ready()
        except Exception as ex:
            logger.warning(f"Error in recovery {ex}")
