"""`account_of` reads a record's account without decoding it, and never names another account than the decoder."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.ingest.decode import account_of, decode_canonical

from .helpers import canonical

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_a_plain_record_names_its_account() -> None:
    assert account_of(orjson.dumps(canonical(account_id="acct_42"))) == "acct_42"


def test_a_plain_account_is_named_even_when_the_rest_of_the_record_is_invalid() -> None:
    raw = orjson.dumps({"type": "feature.used", "account_id": "acct_42"})
    assert decode_canonical(raw, topic="usage-events").dead_letter is not None
    assert account_of(raw) == "acct_42"  # its account's replay process dead-letters it


@pytest.mark.parametrize("raw", [
    b"not json",
    b"[1, 2]",
    orjson.dumps(canonical(account_id=" acct_42")),  # pydantic strips it: only decoding tells
    orjson.dumps(canonical(account_id=42)),
    orjson.dumps(canonical(account_id="")),
    orjson.dumps(canonical(account_id=...)),
    orjson.dumps({"specversion": "1.0", "subject": "acct_42", "type": "com.churnwatch.feature.used"}),
    orjson.dumps(canonical(account_id="acct_42", properties={"specversion": "1.0"})),  # the decoder's byte test
], ids=["not-json", "array", "spaces", "number", "empty", "missing", "cloudevents", "specversion-inside"])
def test_records_whose_account_only_decoding_can_tell_are_not_named(raw: bytes) -> None:
    assert account_of(raw) is None


ACCOUNT_IDS = st.one_of(
    st.text(max_size=140),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=130),
    st.integers(-(2**63), 2**63 - 1), st.none(), st.booleans(), st.just("  acct_1"), st.just("acct_1\t"),
)


@SETTINGS
@given(account=ACCOUNT_IDS, etype=st.sampled_from(["feature.used", "session.started", "user.added"]))
def test_a_named_account_is_the_one_the_decoder_gives(account: Any, etype: str) -> None:
    fields: dict[str, Any] = {"type": etype, "account_id": account}
    if etype != "feature.used":
        fields.update(feature=..., count=...)
    if etype == "user.added":
        fields.update(role="admin")
    raw = orjson.dumps(canonical(**fields))
    named = account_of(raw)
    event = decode_canonical(raw, topic="usage-events").event
    if named is not None and event is not None:
        assert event.account_id == named
