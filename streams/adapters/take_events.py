"""Faust's `Stream.take_events` without its poll: an idle stream waits for its first event, not a timer (ADR 0029).

Faust's loop wakes every `within` seconds whether or not an event came, and each wake is a `Service.wait` (three
tasks and a timer). The two agents on Faust streams (raw sources, cohort inputs) take batches with `within` =
`CHURNWATCH_BATCH_TIMEOUT_S`, 5 ms: ~300 wakes a second between them, ~0.06 of a core of an idle worker's event
loop, at every rate. This copy waits without a timeout while the buffer is empty. From its first event, the batch
waits up to `within` to fill, or yields at once when it holds `max_`, as there. Everything else (the buffering
processor, the acknowledgements after the batch is consumed, the clean-up) is Faust's, line for line.
"""

from __future__ import annotations

import asyncio
from asyncio import CancelledError
from collections.abc import AsyncGenerator
from typing import Any

from faust import Stream
from faust.streams import _tracks_buffer_agen
from mode import want_seconds
from mode.utils.aiter import aiter
from mode.utils.futures import notify

from streams.adapters.batch_input import refuse_unless_pinned, source_hash

# sha256 of the source of faust-streaming 0.15.3's `Stream.take_events`, the loop `take_events` copies.
FAUST_TAKE_EVENTS_SHA256 = "607d48aead118ba8ea868718a0df87de1c5fcecd10ec542c659b448796728e08"


def faust_take_events_matches() -> bool:
    """Whether the installed Faust's `Stream.take_events` is the one `take_events` copies."""
    return source_hash(Stream.take_events) == FAUST_TAKE_EVENTS_SHA256


def refuse_unpinned_faust() -> None:
    """FaustVersionError, one line for the worker command, unless Faust's `take_events` is the copied one."""
    refuse_unless_pinned(faust_take_events_matches(), "Stream.take_events",
                         "streams/adapters/take_events.py copies", "ADR 0029", "FAUST_TAKE_EVENTS_SHA256")


@_tracks_buffer_agen  # Faust's own: Stream.on_stop closes a generator left behind, as for its take_events
async def take_events(self: Any, max_: int, within: float | None) -> AsyncGenerator[list[Any], None]:
    """faust-streaming 0.15.3's `Stream.take_events(max_, within)` on the stream `self`, but an empty buffer waits
    for its first event instead of waking every `within` seconds to find nothing."""
    buffer: list[Any] = []
    events: list[Any] = []
    buffer_add = buffer.append
    event_add = events.append
    buffer_size = buffer.__len__
    buffer_full = asyncio.Event()
    buffer_consumed = asyncio.Event()
    buffer_started = asyncio.Event()  # not in Faust's: set as an event is buffered, cleared before the idle wait
    timeout = want_seconds(within) if within else None
    stream_enable_acks: bool = self.enable_acks

    buffer_consuming: asyncio.Future[Any] | None = None

    channel_it = aiter(self.channel)

    # Faust: this processor populates the buffer; the stream is consumed passively in the background.
    async def add_to_buffer(value: Any) -> Any:
        try:
            # buffer_consuming is set while the buffer is consumed.
            nonlocal buffer_consuming
            if buffer_consuming is not None:
                try:
                    await buffer_consuming
                finally:
                    buffer_consuming = None
            buffer_add(value)
            event = self.current_event
            if event is None:
                raise RuntimeError("Take buffer found current_event is None")
            event_add(event)
            buffer_started.set()
            if buffer_size() >= max_:
                # Faust: signal that the buffer is full, and wait for it to be consumed (at most max_ values).
                buffer_full.set()
                buffer_consumed.clear()
                await self.wait(buffer_consumed)
        except CancelledError:  # pragma: no cover
            raise
        except Exception as exc:
            self.log.exception("Error adding to take buffer: %r", exc)
            await self.crash(exc)
        return value

    # Faust: acknowledge manually, only after the events are consumed.
    self.enable_acks = False

    self.add_processor(add_to_buffer)
    self._enable_passive(channel_it)
    try:
        while not self.should_stop:
            if not buffer:
                # The one change: no timeout while there is nothing to take (the stream stopping ends the wait).
                buffer_started.clear()
                await self.wait_for_stopped(buffer_started)
                continue
            # Faust: wait until the buffer is full, or the timeout.
            await self.wait_for_stopped(buffer_full, timeout=timeout)
            if buffer:
                # Faust: no new items are added to the buffer while it is read.
                buffer_consuming = self.loop.create_future()
                try:
                    yield list(events)
                finally:
                    buffer.clear()
                    for event in events:
                        await self.ack(event)
                    events.clear()
                    # Faust: allow writing to the buffer again.
                    notify(buffer_consuming)
                    buffer_full.clear()
                    buffer_consumed.set()
    finally:
        # Faust: restore the stream's acknowledgements.
        self.enable_acks = stream_enable_acks
        self._processors.remove(add_to_buffer)
