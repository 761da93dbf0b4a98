"""Properties: within the lateness bound, arrival order and redelivery never change the encoded state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import CanonicalEvent
from streams.domain.account import apply_event, new_account
from streams.domain.codec import decode_state, encode_state
from streams.domain.config import DomainConfig
from tests.unit.domain.factories import event

CONFIG = DomainConfig()
# The last day of generated events is D; everything falls in [D - 7 00:00, D 23:59:59], i.e. inside the bound.
WINDOW_START = datetime(2024, 5, 3, tzinfo=UTC)
WINDOW_S = 8 * 86_400 - 1
# History applied first, 40-80 days earlier: the permuted events roll the clock over it (expiry, folding).
HISTORY = [
    event("subscription.started", "2024-03-01T08:00:00Z", event_id="h1", plan="pro", seats=5, mrr=5_000),
    event("session.started", "2024-03-01T09:00:00Z", event_id="h2", user_id="u1"),
    event("feature.used", "2024-03-02T09:00:00Z", event_id="h3", user_id="u2", feature="f1", count=3),
    event("api.called", "2024-03-20T09:00:00Z", event_id="h4", count=70),
    event("user.added", "2024-03-20T09:00:00Z", event_id="h5", user_id="u1", role="admin"),
    event("ticket.opened", "2024-03-21T09:00:00Z", event_id="h6", ticket_id="t1"),
]

USERS = st.sampled_from(["u1", "u2", "u3", "u4"])
PLANS = st.sampled_from(["pro", "team"])


def _fields(kind: str, draw: Any) -> dict[str, Any]:
    money = st.sampled_from([0, 1_000, 5_000, 9_000])
    snapshot = {"plan": draw(PLANS), "seats": draw(st.integers(1, 3)), "mrr": draw(money)}
    return {
        "subscription.started": snapshot,
        "subscription.changed": {**snapshot, "previous_mrr": draw(st.none() | money)},
        "subscription.renewed": snapshot,
        "subscription.reactivated": snapshot,
        "trial.converted": snapshot,
        "subscription.cancel_scheduled": {"cancel_at": draw(st.none() | st.just(datetime(2024, 6, 1, tzinfo=UTC)))},
        "subscription.cancel_unscheduled": {},
        "subscription.canceled": {},
        "subscription.paused": {},
        "subscription.resumed": {},
        "trial.started": {"plan": draw(PLANS)},
        "trial.expired": {},
        "invoice.paid": {"amount": draw(money)},
        "payment.failed": {"amount": 1_000, "attempt": draw(st.integers(1, 4))},
        "refund.issued": {"amount": 100},
        "session.started": {"user_id": draw(USERS)},
        "feature.used": {"user_id": draw(st.none() | USERS), "feature": draw(st.sampled_from(["f1", "f2", "f3"])),
                         "count": draw(st.integers(1, 5))},
        "user.added": {"user_id": draw(USERS), "role": draw(st.sampled_from(["admin", "champion", "member"]))},
        "user.removed": {"user_id": draw(USERS), "role": draw(st.sampled_from(["admin", "member"]))},
        "usage_limit.reached": {"limit": "api", "used": 10, "quota": 10},
        "nps.responded": {"user_id": draw(USERS), "score": draw(st.integers(0, 10))},
        "ticket.opened": {"ticket_id": draw(st.sampled_from(["t1", "t2", "t3"]))},
        "ticket.closed": {"ticket_id": draw(st.sampled_from(["t1", "t2", "t3"]))},
        "api.called": {"count": draw(st.integers(1, 100))},
        "account.traits": {"traits": draw(st.dictionaries(st.sampled_from(["a", "b", "c"]),
                                                           st.sampled_from(["x", "y"]), max_size=3))},
    }[kind]


@st.composite
def canonical_events(draw: Any) -> CanonicalEvent:
    kind = draw(st.sampled_from([
        "subscription.started", "subscription.changed", "subscription.renewed", "subscription.reactivated",
        "trial.converted", "subscription.cancel_scheduled", "subscription.cancel_unscheduled",
        "subscription.canceled", "subscription.paused", "subscription.resumed", "trial.started", "trial.expired",
        "invoice.paid", "payment.failed", "refund.issued", "session.started", "feature.used", "feature.used",
        "session.started", "user.added", "user.removed", "usage_limit.reached", "nps.responded", "ticket.opened",
        "ticket.closed", "api.called", "account.traits",
    ]))
    # Coarse times (whole hours, sometimes the same second) exercise the same-second tie-breaks.
    offset = draw(st.integers(0, WINDOW_S // 3600)) * 3600 + draw(st.sampled_from([0, 0, 59]))
    return event(kind, WINDOW_START + timedelta(seconds=offset), **_fields(kind, draw))


@st.composite
def deliveries(draw: Any) -> tuple[list[CanonicalEvent], list[CanonicalEvent]]:
    """A list of events (some delivered twice, as webhook retries) and one permutation of it."""
    events = draw(st.lists(canonical_events(), min_size=1, max_size=40))
    retries = draw(st.lists(st.sampled_from(events), max_size=5))
    delivered = events + retries
    return delivered, draw(st.permutations(delivered))


def apply_all(events: list[CanonicalEvent], history: bool = True) -> bytes:
    state = new_account("acct_0042")
    for ev in (HISTORY if history else []) + list(events):
        state = apply_event(state, ev, CONFIG).state
    return encode_state(state)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries())
def test_any_arrival_order_within_the_bound_gives_the_identical_encoded_state(pair) -> None:
    delivered, permuted = pair
    assert apply_all(permuted) == apply_all(delivered)
    assert apply_all(permuted, history=False) == apply_all(delivered, history=False)


@settings(max_examples=100, deadline=None)
@given(deliveries())
def test_redelivering_every_event_changes_nothing(pair) -> None:
    delivered, _ = pair
    assert apply_all(delivered + delivered) == apply_all(delivered)


@settings(max_examples=100, deadline=None)
@given(deliveries())
def test_any_generated_state_round_trips_exactly(pair) -> None:
    delivered, _ = pair
    data = apply_all(delivered)
    assert encode_state(decode_state(data)) == data


@settings(max_examples=50, deadline=None)
@given(deliveries(), st.integers(0, 40))
def test_a_state_saved_and_restored_mid_stream_ends_the_same(pair, cut) -> None:
    delivered, _ = pair
    state = new_account("acct_0042")
    for i, ev in enumerate(delivered):
        if i == cut:
            state = decode_state(encode_state(state))
        apply_event(state, ev, CONFIG)
    assert encode_state(state) == apply_all(delivered, history=False)
