"""The write-back state cache decodes an account once, writes it once per flush and acknowledges after the write."""

from __future__ import annotations

import pytest

from streams.state_cache import StateCache, changed_accounts


class Table:
    """A table stand-in that counts decodes (the cache's only contact with storage is the `load` callback)."""

    def __init__(self, values: dict[str, list[int]] | None = None) -> None:
        self.values = dict(values or {})
        self.loads = 0

    def load(self, key: str) -> list[int] | None:
        self.loads += 1
        value = self.values.get(key)
        return list(value) if value is not None else None


def cache_of(max_clean: int = 10) -> StateCache[str, list[int], str]:
    return StateCache(max_clean)


def test_a_value_is_loaded_once_and_then_served_from_memory() -> None:
    table = Table({"acct-1": [1]})
    cache = cache_of()
    first = cache.get("acct-1", table.load)
    second = cache.get("acct-1", table.load)
    assert first is second
    assert table.loads == 1


def test_an_unknown_account_is_not_cached_so_its_first_event_creates_it() -> None:
    table = Table()
    cache = cache_of()
    assert cache.get("acct-new", table.load) is None
    assert "acct-new" not in cache


def test_several_changes_to_one_account_are_written_once_per_flush() -> None:
    cache = cache_of()
    value = [1]
    cache.changed("acct-1", value, now=0.0)
    value.append(2)
    cache.changed("acct-1", value, now=0.5)
    flush = cache.take()
    assert flush.states == {"acct-1": [1, 2]}
    assert cache.dirty_count == 0
    assert cache.take().states == {}


def test_records_are_acknowledged_by_the_flush_that_writes_their_states() -> None:
    cache = cache_of()
    cache.changed("acct-1", [1], now=0.0)
    cache.applied(["billing[0]@7", "usage[0]@9"], now=0.0)
    assert cache.pending_acks == 2
    flush = cache.take()
    assert flush.acks == ["billing[0]@7", "usage[0]@9"]
    assert cache.pending_acks == 0


def test_a_flush_is_due_after_the_interval_since_the_oldest_unwritten_change() -> None:
    cache = cache_of()
    assert not cache.due(now=100.0, interval_s=2.0, max_dirty=1000)
    cache.changed("acct-1", [1], now=10.0)
    cache.changed("acct-2", [2], now=11.5)
    assert not cache.due(now=11.9, interval_s=2.0, max_dirty=1000)
    assert cache.due(now=12.0, interval_s=2.0, max_dirty=1000)


def test_a_flush_is_due_as_soon_as_enough_accounts_wait_to_be_written() -> None:
    cache = cache_of()
    for n in range(3):
        cache.changed(f"acct-{n}", [n], now=0.0)
    assert cache.due(now=0.0, interval_s=60.0, max_dirty=3)


def test_records_applied_without_a_state_change_still_get_flushed_and_acknowledged() -> None:
    cache = cache_of()
    cache.applied(["usage[1]@4"], now=5.0)  # a duplicate: no state changed, but the record must be committed
    assert cache.due(now=7.0, interval_s=2.0, max_dirty=1000)
    assert cache.take().acks == ["usage[1]@4"]


def test_clean_values_beyond_the_bound_are_evicted_least_recently_used_first() -> None:
    table = Table({f"acct-{n}": [n] for n in range(4)})
    cache = cache_of(max_clean=2)
    for n in range(3):
        cache.get(f"acct-{n}", table.load)
    cache.get("acct-1", table.load)  # acct-1 is now the most recently used
    cache.get("acct-3", table.load)
    assert "acct-0" not in cache and "acct-2" not in cache
    assert "acct-1" in cache and "acct-3" in cache


def test_unwritten_values_are_never_evicted() -> None:
    table = Table({f"acct-{n}": [n] for n in range(5)})
    cache = cache_of(max_clean=1)
    dirty = cache.get("acct-0", table.load)
    assert dirty is not None
    cache.changed("acct-0", dirty, now=0.0)
    for n in range(1, 5):
        cache.get(f"acct-{n}", table.load)
    assert "acct-0" in cache
    assert cache.take().states == {"acct-0": [0]}


def test_discarding_drops_unwritten_values_and_their_acknowledgements() -> None:
    cache = cache_of()
    cache.changed("acct-1", [1], now=0.0)
    cache.applied(["usage[0]@1"], now=0.0)
    assert cache.discard() == 1
    assert len(cache) == 0 and cache.pending_acks == 0 and cache.dirty_since is None
    assert cache.take().states == {}


def drain(cache: StateCache[str, list[int], str]) -> dict[str, list[int]]:
    written = {}
    while (item := cache.next_write()) is not None:
        written[item[0]] = list(item[1])
    return written


def test_a_flush_in_steps_acknowledges_its_records_only_after_its_last_state_is_written() -> None:
    cache = cache_of()
    cache.changed("acct-1", [1], now=0.0)
    cache.changed("acct-2", [2], now=0.0)
    cache.applied(["usage[0]@1", "usage[1]@1"], now=0.0)
    cache.begin_flush()
    first = cache.next_write()
    assert first is not None and cache.writes_left == 1
    second = cache.next_write()
    assert second is not None and cache.next_write() is None
    assert {first[0], second[0]} == {"acct-1", "acct-2"}
    assert cache.end_flush() == ["usage[0]@1", "usage[1]@1"]
    assert not cache.flushing


def test_a_flush_cannot_end_before_every_state_is_written() -> None:
    cache = cache_of()
    cache.changed("acct-1", [1], now=0.0)
    cache.begin_flush()
    with pytest.raises(RuntimeError, match="1 values"):
        cache.end_flush()


def test_a_batch_between_steps_writes_the_newest_value_and_leaves_the_account_dirty_for_the_next_flush() -> None:
    cache = cache_of()
    value = [1]
    cache.changed("acct-1", value, now=0.0)
    cache.applied(["usage[0]@1"], now=0.0)
    cache.begin_flush()
    # a batch applies another record to the same account before the step that writes it
    value.append(2)
    cache.changed("acct-1", value, now=1.0)
    cache.applied(["usage[0]@2"], now=1.0)
    assert drain(cache) == {"acct-1": [1, 2]}
    assert cache.end_flush() == ["usage[0]@1"]  # the later record waits for the next flush
    assert cache.dirty_count == 1 and cache.pending_acks == 1
    assert cache.take().acks == ["usage[0]@2"]


def test_states_waiting_in_a_flush_are_not_evicted_and_count_as_unwritten() -> None:
    table = Table({f"acct-{n}": [n] for n in range(5)})
    cache = cache_of(max_clean=1)
    waiting = cache.get("acct-0", table.load)
    assert waiting is not None
    cache.changed("acct-0", waiting, now=0.0)
    cache.begin_flush()
    for n in range(1, 5):
        cache.get(f"acct-{n}", table.load)
    assert "acct-0" in cache
    assert list(cache.dirty_keys()) == ["acct-0"]
    assert drain(cache) == {"acct-0": [0]}


def test_discarding_also_drops_the_flush_in_progress() -> None:
    cache = cache_of()
    cache.changed("acct-1", [1], now=0.0)
    cache.applied(["usage[0]@1"], now=0.0)
    cache.begin_flush()
    assert cache.discard() == 1
    assert not cache.flushing and cache.writes_left == 0
    cache.begin_flush()  # a new flush may start
    assert cache.end_flush() == []


def test_a_written_state_becomes_clean_and_evictable_as_the_most_recently_used() -> None:
    table = Table({f"acct-{n}": [n] for n in range(4)})
    cache = cache_of(max_clean=2)
    cache.get("acct-1", table.load)
    cache.changed("acct-0", [0], now=0.0)
    cache.begin_flush()
    cache.get("acct-2", table.load)
    assert drain(cache) == {"acct-0": [0]}
    cache.end_flush()  # clean now: acct-1, acct-2, then acct-0 (written last), one over the bound
    assert "acct-1" not in cache and "acct-2" in cache and "acct-0" in cache
    cache.get("acct-3", table.load)
    assert "acct-2" not in cache and "acct-0" in cache and "acct-3" in cache


def test_a_miss_during_a_large_flush_evicts_a_clean_value_and_never_one_waiting_to_be_written() -> None:
    """Eviction takes the least recently used clean value directly: the values waiting in the flush are not in the
    eviction order, however many there are (they were passed over, and counted, at every miss)."""
    table = Table({f"clean-{n}": [n] for n in range(1_002)})
    cache = cache_of(max_clean=1_000)
    for n in range(5_000):
        cache.changed(f"dirty-{n}", [n], now=0.0)
    cache.begin_flush()
    for n in range(1_002):
        cache.get(f"clean-{n}", table.load)
    assert len(cache) == 6_000 and "clean-0" not in cache and "clean-1" not in cache and "clean-2" in cache
    assert cache.writes_left == 5_000 and "dirty-0" in cache
    assert len(drain(cache)) == 5_000
    cache.end_flush()  # the 5,000 written join the clean values as the most recently used
    kept = [f"dirty-{n}" for n in range(5_000) if f"dirty-{n}" in cache]
    assert len(cache) == len(kept) == 1_000 and not any(f"clean-{n}" in cache for n in range(1_002))


def test_a_batch_of_changed_accounts_is_keyed_by_the_account_ids_utf8_bytes() -> None:
    cache: StateCache[bytes, list[int], str] = StateCache(10)
    changed_accounts(cache, {"acct-1": [1], "Zürich-2": [2]}, now=3.0)
    assert cache.dirty_count == 2
    assert cache.due(now=13.0, interval_s=10.0, max_dirty=100)
    assert cache.take().states == {b"acct-1": [1], "Zürich-2".encode(): [2]}
