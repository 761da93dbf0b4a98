"""`churnwatch simulate`: write (or produce to Kafka) a generated SaaS world, as canonical, Stripe or Segment events.

Stripe / Segment output: billing events become Stripe webhook envelopes (`customer.subscription.created` /
`updated` / `deleted`, `invoice.paid`, `invoice.payment_failed`) and usage events Segment calls (`Signed In`,
`Feature Used`, `NPS Survey Submitted`, tickets, users, limits, API calls as `track`; traits as `group`). The
ingest adapters turn them back into the same canonical facts (tests/unit/tools/test_simulate.py checks it).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from schemas.events import BILLING_TYPES
from streams.tools.simulate import PLANS, GroundTruth, generate

FORMATS = ("canonical", "stripe", "segment")


def _unix(iso: str | None) -> int | None:
    if iso is None:
        return None
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


class StripeShaper:
    """Canonical billing events -> Stripe webhook envelopes; keeps each subscription's current object."""

    def __init__(self) -> None:
        self.subs: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _items(plan: str, seats: int, interval: str, period_end: int | None) -> dict[str, Any]:
        month, year = PLANS.get(plan, (0, 0))
        unit = month if interval == "month" else year
        return {"object": "list", "data": [{
            "id": f"si_{plan}_{interval}", "quantity": seats, "current_period_end": period_end,
            "price": {"id": f"price_{plan}_{interval}", "lookup_key": plan, "unit_amount": unit, "currency": "usd",
                      "recurring": {"interval": interval, "interval_count": 1}},
        }]}

    def _sub(self, ev: dict[str, Any]) -> dict[str, Any]:
        account = ev["account_id"]
        sub = self.subs.get(account)
        if sub is None:
            sub = self.subs[account] = {"id": ev.get("subscription_id") or f"sub_{account}", "object": "subscription",
                                        "customer": account, "status": "active", "currency": "usd",
                                        "cancel_at_period_end": False, "cancel_at": None}
        return sub

    def _set_terms(self, sub: dict[str, Any], ev: dict[str, Any]) -> None:
        end = _unix(ev.get("renews_at"))
        sub["items"] = self._items(ev["plan"], ev.get("seats", 1), ev.get("billing_interval", "month"), end)
        sub["current_period_end"] = end

    @staticmethod
    def _envelope(ev: dict[str, Any], etype: str, obj: dict[str, Any], prev: dict[str, Any] | None = None) -> bytes:
        data: dict[str, Any] = {"object": obj}
        if prev is not None:
            data["previous_attributes"] = prev
        return orjson.dumps({"id": f"evt_{ev['event_id']}", "object": "event", "type": etype,
                             "created": _unix(ev["occurred_at"]), "livemode": False, "data": data})

    def shape(self, ev: dict[str, Any]) -> bytes | None:
        t = ev["type"]
        sub = self._sub(ev)
        if t == "trial.started":
            sub.update(status="trialing", trial_end=_unix(ev.get("trial_ends_at")))
            sub["items"] = self._items(ev["plan"], 1, "month", sub["trial_end"])
            return self._envelope(ev, "customer.subscription.created", dict(sub))
        if t == "subscription.started":
            sub["status"] = "active"
            self._set_terms(sub, ev)
            return self._envelope(ev, "customer.subscription.created", dict(sub))
        if t == "trial.converted":
            sub["status"] = "active"
            self._set_terms(sub, ev)
            return self._envelope(ev, "customer.subscription.updated", dict(sub), {"status": "trialing"})
        if t == "trial.expired":
            sub.update(status="canceled", ended_at=sub.get("trial_end"), canceled_at=sub.get("trial_end"))
            return self._envelope(ev, "customer.subscription.deleted", dict(sub))
        if t in ("subscription.changed", "subscription.renewed"):
            prev = {"items": sub.get("items"), "current_period_end": sub.get("current_period_end")}
            self._set_terms(sub, ev)
            return self._envelope(ev, "customer.subscription.updated", dict(sub), prev)
        if t == "subscription.cancel_scheduled":
            sub.update(cancel_at_period_end=True, cancel_at=_unix(ev.get("cancel_at")),
                       cancellation_details={"feedback": ev.get("reason"), "comment": None, "reason": None})
            return self._envelope(ev, "customer.subscription.updated", dict(sub),
                                  {"cancel_at_period_end": False, "cancel_at": None})
        if t == "subscription.canceled":
            sub.update(status="canceled", ended_at=_unix(ev["occurred_at"]), canceled_at=_unix(ev["occurred_at"]))
            details = dict(sub.get("cancellation_details") or {})
            if ev.get("reason"):
                details["comment"] = ev["reason"]
            sub["cancellation_details"] = details
            return self._envelope(ev, "customer.subscription.deleted", dict(sub))
        if t in ("invoice.paid", "payment.failed"):
            invoice: dict[str, Any] = {"id": ev.get("invoice_id") or f"in_{ev['event_id']}", "object": "invoice",
                                       "customer": ev["account_id"], "currency": ev.get("currency", "USD").lower(),
                                       "subscription": ev.get("subscription_id")}
            if t == "invoice.paid":
                invoice.update(amount_paid=ev["amount"], status="paid")
                return self._envelope(ev, "invoice.paid", invoice)
            invoice.update(amount_due=ev["amount"], amount_remaining=ev["amount"], attempt_count=ev.get("attempt", 1),
                           next_payment_attempt=_unix(ev.get("next_attempt_at")), status="open")
            return self._envelope(ev, "invoice.payment_failed", invoice)
        return None  # no Stripe shape (not generated by simulate)


TRACK_NAMES = {
    "session.started": "Signed In", "feature.used": "Feature Used", "nps.responded": "NPS Survey Submitted",
    "user.added": "Account Added User", "user.removed": "Account Removed User", "ticket.opened": "Ticket Opened",
    "ticket.closed": "Ticket Closed", "usage_limit.reached": "Usage Limit Reached", "api.called": "API Called",
}
TRACK_PROPS = {
    "feature.used": ("feature", "count"), "nps.responded": ("score", "comment"), "user.added": ("role",),
    "user.removed": ("role",), "ticket.opened": ("ticket_id", "priority"), "ticket.closed": ("ticket_id", "priority"),
    "usage_limit.reached": ("limit", "used", "quota"), "api.called": ("count",),
}


def segment_shape(ev: dict[str, Any]) -> bytes | None:
    """A canonical usage event as a Segment track (or group, for traits) call."""
    t = ev["type"]
    common = {"messageId": ev["event_id"], "timestamp": ev["occurred_at"]}
    if t == "account.traits":
        return orjson.dumps({"type": "group", "groupId": ev["account_id"], "userId": f"{ev['account_id']}-u0",
                             "traits": ev["traits"], **common})
    name = TRACK_NAMES.get(t)
    if name is None:
        return None
    props = {k: ev[k] for k in TRACK_PROPS.get(t, ()) if ev.get(k) is not None}
    return orjson.dumps({"type": "track", "event": name, "userId": ev.get("user_id") or f"{ev['account_id']}-api",
                         "context": {"groupId": ev["account_id"]}, "properties": props, **common})


def shaped(events: list[dict[str, Any]], fmt: str) -> Iterator[tuple[str, bytes]]:
    """(topic kind, line) per event: canonical as is; else billing -> stripe, usage -> segment."""
    stripe = StripeShaper()
    for ev in events:
        if fmt == "canonical":
            yield "canonical", orjson.dumps(ev)
        elif ev["type"] in BILLING_TYPES:
            line = stripe.shape(ev)
            if line is not None:
                yield "stripe", line
        else:
            line = segment_shape(ev)
            if line is not None:
                yield "segment", line


def truth_line(t: GroundTruth) -> bytes:
    at = t.churns_on.astimezone(UTC).isoformat().replace("+00:00", "Z") if t.churns_on else None
    return orjson.dumps({"account_id": t.account_id, "churned": t.churns_on is not None, "churned_at": at,
                         "kind": t.kind, "plan": t.plan, "billing_interval": t.billing_interval})


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accounts", type=int, default=1000, help="number of accounts (default 1000)")
    p.add_argument("--days", type=int, default=180, help="days of history (default 180)")
    p.add_argument("--seed", type=int, default=7, help="random seed: same seed, byte-identical output")
    p.add_argument("--start", default="2026-01-01", help="first day, ISO date (UTC)")
    p.add_argument("--churn-share", type=float, default=0.2, help="share of paying accounts that churn")
    p.add_argument("--format", dest="fmt", choices=FORMATS, default="canonical",
                   help="canonical events, or Stripe webhooks (billing) + Segment calls (usage)")
    p.add_argument("--out", type=Path, default=None,
                   help="events JSONL (stripe/segment: billing goes to OUT with .stripe, usage with .segment)")
    p.add_argument("--truth", type=Path, default=None, help="truth JSONL: {account_id, churned, churned_at}")
    p.add_argument("--kafka", action="store_true", help="produce to the configured topics instead of a file")
    p.add_argument("--rate", type=float, default=0.0, help="with --kafka: events per second (0 = as fast as possible)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    if not args.kafka and args.out is None:
        raise SystemExit("churnwatch simulate: error: give --out FILE.jsonl or --kafka (see --help)")
    start = datetime.fromisoformat(args.start)
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start
    events, truth = generate(args.accounts, args.days, seed=args.seed, start=start, churn_share=args.churn_share)
    if args.truth:
        args.truth.write_bytes(b"".join(truth_line(t) + b"\n" for t in truth))
    churned = sum(1 for t in truth if t.churns_on)
    if args.kafka:
        from streams.settings import load_settings
        from streams.tools.produce import produce_lines

        settings = load_settings()
        lines = list(shaped(events, args.fmt))
        sent = 0
        began = time.monotonic()
        if args.fmt == "canonical":
            sent = produce_lines(settings, (line for _k, line in lines), rate=args.rate)
        else:  # one producer per topic kind, in event order within each
            for kind in ("stripe", "segment"):
                sent += produce_lines(settings, (line for k, line in lines if k == kind), topic_kind=kind,
                                      rate=args.rate)
        took = time.monotonic() - began
        target = f", target {args.rate:,.0f}/s" if args.rate > 0 else ""
        console.print(f"produced {sent} events ({args.accounts} accounts, {churned} churn) to Kafka in {took:.1f} s "
                      f"({sent / max(took, 1e-9):,.0f} events/s{target})")
        return 0
    if args.fmt == "canonical":
        with open(args.out, "wb") as fh:
            for _kind, line in shaped(events, "canonical"):
                fh.write(line + b"\n")
        console.print(f"wrote {len(events)} events to {args.out} ({args.accounts} accounts, {churned} churn)")
    else:
        paths = {k: args.out.with_suffix(f".{k}.jsonl") for k in ("stripe", "segment")}
        handles = {k: open(p, "wb") for k, p in paths.items()}  # noqa: SIM115
        counts = dict.fromkeys(paths, 0)
        try:
            for kind, line in shaped(events, args.fmt):
                handles[kind].write(line + b"\n")
                counts[kind] += 1
        finally:
            for fh in handles.values():
                fh.close()
        console.print(f"wrote {counts['stripe']} Stripe webhooks to {paths['stripe']} and {counts['segment']} Segment "
                      f"calls to {paths['segment']} ({args.accounts} accounts, {churned} churn)")
    if args.truth:
        console.print(f"wrote truth for {len(truth)} accounts to {args.truth}")
    return 0
