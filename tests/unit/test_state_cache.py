"""Decoded states are reused only while the table holds exactly the bytes written for them."""

from __future__ import annotations

from streams.state_cache import DecodedStates


def states(max_entries: int = 3) -> DecodedStates[dict[str, int]]:
    return DecodedStates(max_entries)


def test_the_state_written_is_returned_while_the_table_holds_its_bytes() -> None:
    cache = states()
    state = {"sessions": 3}
    cache.put(b"acct_1", b"v1", state)
    assert cache.get(b"acct_1", b"v1") is state


def test_other_bytes_in_the_table_are_a_miss() -> None:
    cache = states()
    cache.put(b"acct_1", b"v1", {"sessions": 3})
    # a tick or a changelog recovery wrote the key since: the caller decodes the table's bytes
    assert cache.get(b"acct_1", b"v2") is None
    assert (cache.hits, cache.misses) == (0, 1)


def test_the_least_recently_used_account_leaves_first() -> None:
    cache = states(max_entries=2)
    cache.put(b"a", b"1", {"n": 1})
    cache.put(b"b", b"1", {"n": 2})
    assert cache.get(b"a", b"1") is not None  # a is now the most recent
    cache.put(b"c", b"1", {"n": 3})
    assert cache.get(b"b", b"1") is None and cache.get(b"a", b"1") is not None and len(cache) == 2


def test_a_size_of_zero_keeps_nothing() -> None:
    cache = states(max_entries=0)
    cache.put(b"a", b"1", {"n": 1})
    assert cache.get(b"a", b"1") is None and len(cache) == 0
