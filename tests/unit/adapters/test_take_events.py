"""The take_events copy (ADR 0029) gives the batches and acknowledgements Faust's gives, and an idle stream sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from streams.adapters import take_events as take_events_module
from streams.adapters.batch_input import FaustVersionError
from streams.adapters.take_events import faust_take_events_matches, refuse_unpinned_faust, take_events
from tests.support.offline_app import offline_app

Take = Callable[[Any, int, float], AsyncIterator[list[Any]]]


def fausts(stream: Any, max_: int, within: float) -> AsyncIterator[list[Any]]:
    return stream.take_events(max_, within=within)  # type: ignore[no-any-return]


def ours(stream: Any, max_: int, within: float) -> AsyncIterator[list[Any]]:
    return take_events(stream, max_, within)


class Taking:
    """A started Faust stream on an in-memory channel, taken in batches by `take` in a task; what it saw."""

    def __init__(self, take: Take, max_: int, within: float) -> None:
        self.take, self.max_, self.within = take, max_, within
        self.batches: list[list[int]] = []
        self.acked: list[int] = []
        self.waits = 0
        self.batch_arrived = asyncio.Event()

    async def __aenter__(self) -> Taking:
        app = offline_app("take")
        app.flow_control.resume()  # a started worker's flow; a channel's put waits for it
        self.channel = app.channel()
        stream: Any = self.channel.stream()
        self.stream = stream
        await stream.start()
        ack, wait_for_stopped = stream.ack, stream.wait_for_stopped

        async def counted_wait(*args: Any, **kwargs: Any) -> bool:
            self.waits += 1
            return await wait_for_stopped(*args, **kwargs)  # type: ignore[no-any-return]

        async def recorded_ack(event: Any) -> bool:
            self.acked.append(event.value)
            return await ack(event)  # type: ignore[no-any-return]

        stream.wait_for_stopped, stream.ack = counted_wait, recorded_ack
        self.task = asyncio.ensure_future(self._consume())
        await asyncio.sleep(0.01)  # the generator subscribes to the channel when it first runs
        return self

    async def _consume(self) -> None:
        async for batch in self.take(self.stream, self.max_, self.within):
            self.batches.append([event.value for event in batch])
            self.batch_arrived.set()

    async def send(self, *values: int) -> None:
        for value in values:
            await self.channel.send(key=b"account", value=value)

    async def next_batch(self) -> None:
        await asyncio.wait_for(self.batch_arrived.wait(), 5)
        self.batch_arrived.clear()

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.stream.stop()


async def _take_in_turns(take: Take) -> tuple[list[list[int]], list[int]]:
    async with Taking(take, max_=3, within=0.02) as taking:
        await taking.send(0, 1, 2, 3, 4, 5, 6)  # two full batches and one left for the timeout
        for _ in range(3):
            await taking.next_batch()
        await taking.send(7)  # after a pause: a batch of its own
        await taking.next_batch()
        await asyncio.sleep(0.01)  # the last batch is acknowledged as the next is awaited
        return taking.batches, taking.acked


def test_batches_and_acknowledgements_are_the_ones_fausts_take_events_gives() -> None:
    faust_batches, faust_acked = asyncio.run(_take_in_turns(fausts))
    batches, acked = asyncio.run(_take_in_turns(ours))
    assert batches == faust_batches == [[0, 1, 2], [3, 4, 5], [6], [7]]
    assert acked == faust_acked == list(range(8))


async def _idle_then_one(take: Take) -> tuple[int, list[list[int]]]:
    """Waits while idle for 0.1 s with `within` = 5 ms, and the batches after one event came."""
    async with Taking(take, max_=3, within=0.005) as taking:
        await asyncio.sleep(0.1)
        idle_waits = taking.waits
        await taking.send(1)
        await taking.next_batch()
        return idle_waits, taking.batches


def test_an_idle_stream_waits_once_for_its_first_event_instead_of_waking_every_within() -> None:
    faust_idle_waits, faust_batches = asyncio.run(_idle_then_one(fausts))
    idle_waits, batches = asyncio.run(_idle_then_one(ours))
    assert faust_idle_waits > 5  # Faust's polls: ~20 in 0.1 s
    assert idle_waits == 1  # the wait for the first event
    assert batches == faust_batches == [[1]]  # then up to `within` for more


async def _full_batch(take: Take) -> list[list[int]]:
    async with Taking(take, max_=3, within=3600) as taking:
        await taking.send(1, 2, 3)
        await taking.next_batch()  # within 5 s, not 3600
        return taking.batches


def test_a_full_buffer_is_yielded_without_waiting_out_within() -> None:
    assert asyncio.run(_full_batch(ours)) == [[1, 2, 3]]


def test_the_installed_faust_take_events_is_the_copied_one() -> None:
    assert faust_take_events_matches()
    refuse_unpinned_faust()


def test_another_faust_take_events_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(take_events_module, "FAUST_TAKE_EVENTS_SHA256", "0" * 64)
    with pytest.raises(FaustVersionError) as refused:
        refuse_unpinned_faust()
    message = str(refused.value)
    assert "\n" not in message
    assert "Stream.take_events" in message and "ADR 0029" in message and "FAUST_TAKE_EVENTS_SHA256" in message
