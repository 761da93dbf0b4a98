"""A seeded, deterministic generator of a realistic SaaS world in canonical events, with known churners.

`generate(accounts, days, seed, start, churn_share) -> (events, truth)`: canonical event dicts sorted by event
time, and one `GroundTruth` per account. The world (docs/backtest.md):

- accounts arrive over the period with a growth rate: an installed base of existing customers seen from day 0
  (their renewal dates anywhere in the current period or year), then new sign-ups arriving ever faster;
- plans `starter` / `team` / `business` priced per seat, monthly or yearly (yearly = 10 months' price; `mrr` =
  yearly price / 12, `billing_interval` "year"), renewals with `subscription.renewed` + `invoice.paid`;
- trials (`trial.started` -> `trial.converted` or `trial.expired` after 14 days);
- users with roles (owner / admin / champion / member), each with their own login habit; feature usage with
  per-account habits (breadth, frequency), weekly seasonality and occasional quiet spells (holidays);
- NPS surveys, support tickets (opened / closed, with priority), usage limits, API calls, account traits;
- failed payments that recover (`payment.failed` attempts, then `invoice.paid`), upgrades and downgrades
  (`subscription.changed` with the previous terms), key users leaving (replaced, for healthy accounts);
- churners whose behaviour decays over their last 30-60 days (fewer sessions and features, detractor answers,
  more tickets, maybe a downgrade, the admin removed, a failed payment) before `subscription.cancel_scheduled` and
  `subscription.canceled` at the period end; a share churn involuntarily (payments fail until the subscription
  is canceled).

Same arguments, same output, byte for byte: every random draw comes from one `random.Random(seed)` (and per-account
generators seeded from it) in a fixed order.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction

DAY = 86400
TRIAL_DAYS = 14

# plan -> (monthly price per seat, yearly price per seat), cents. Yearly = 10 months (two months free).
PLANS: dict[str, tuple[int, int]] = {
    "starter": (1500, 15000),
    "team": (3500, 35000),
    "business": (7500, 75000),
}
PLAN_ORDER = ("starter", "team", "business")
PLAN_MIX = (0.5, 0.35, 0.15)
SEAT_RANGE = {"starter": (1, 5), "team": (3, 15), "business": (10, 60)}
ANNUAL_SHARE = {"starter": 0.15, "team": 0.3, "business": 0.5}
FEATURES = (
    "dashboards", "reports", "projects", "tasks", "comments", "search", "exports", "imports", "automations",
    "integrations", "calendar", "files", "templates", "forms", "goals", "timeline", "workload", "portfolios",
    "approvals", "custom_fields", "api_keys", "audit_log", "sso", "billing_portal",
)
LIMITS = {"starter": ("projects", 10), "team": ("automations", 250), "business": ("storage_gb", 1000)}
INDUSTRIES = ("software", "agency", "retail", "finance", "healthcare", "education", "manufacturing")
REGIONS = ("emea", "na", "apac", "latam")
CHANNELS = ("organic", "paid", "partner", "outbound")
CANCEL_REASONS = ("too_expensive", "missing_features", "switched_service", "unused", "low_quality", "other")
# weekday (Mon=0) -> share of a weekday's activity
DOW = (1.05, 1.0, 1.0, 0.95, 0.8, 0.15, 0.1)


_CLOCK = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z" for s in range(DAY)]


@dataclass(frozen=True)
class GroundTruth:
    account_id: str
    churns_on: datetime | None  # when the subscription (or the trial) ended; None: still a customer at the end
    kind: str = "healthy"  # healthy | voluntary | involuntary | trial_expired | trial_open
    joined_at: datetime | None = None
    plan: str | None = None
    billing_interval: str | None = None
    decay_starts_on: datetime | None = None  # churners: when their behaviour started to decay


def monthly_mrr(plan: str, seats: int, interval: str) -> int:
    """MRR in cents: the monthly price, or the yearly price / 12 (rounded half to even, as the Stripe adapter)."""
    month, year = PLANS[plan]
    return month * seats if interval == "month" else round(Fraction(year * seats, 12))


def period_price(plan: str, seats: int, interval: str) -> int:
    month, year = PLANS[plan]
    return (month if interval == "month" else year) * seats


def _add_months(dt: datetime, months: int) -> datetime:
    y, m = divmod(dt.month - 1 + months, 12)
    year, month = dt.year + y, m + 1
    mdays = (datetime(year + (month == 12), month % 12 + 1, 1) - datetime(year, month, 1)).days
    return dt.replace(year=year, month=month, day=min(dt.day, mdays))


@dataclass
class _Spec:
    index: int
    account_id: str
    join_s: int  # seconds since start
    base: bool  # installed base: an existing customer seen from day 0
    plan: str
    seats: int
    interval: str
    trial: bool
    converts: bool
    first_renewal_s: int
    renewals: list[int] = field(default_factory=list)
    kind: str = "healthy"
    churn_s: int | None = None
    decay_s: int | None = None


class _World:
    def __init__(self, seed: int, start: datetime, days: int) -> None:
        self.seed = seed
        self.start = start
        self.start_epoch = int(start.timestamp())
        self.end_s = days * DAY
        self.events: list[tuple[str, str, dict]] = []
        self._prefix: dict[int, str] = {}

    def stamp(self, t: int) -> str:
        epoch = self.start_epoch + t
        day, sec = divmod(epoch, DAY)
        prefix = self._prefix.get(day)
        if prefix is None:
            prefix = self._prefix[day] = datetime.fromtimestamp(day * DAY, UTC).strftime("%Y-%m-%dT")
        return prefix + _CLOCK[sec]

    iso = stamp

    def dt(self, t: int) -> datetime:
        return self.start + timedelta(seconds=t)


class _Account:
    """Emits one account's events; `t` values are seconds since the world's start."""

    def __init__(self, world: _World, spec: _Spec, rng: random.Random) -> None:
        self.w = world
        self.s = spec
        self.rng = rng
        self.n = 0
        self.stop_s = min(world.end_s, spec.churn_s if spec.churn_s is not None else world.end_s)
        self.prefix = f"sim-{world.seed}-{spec.index:05d}-"
        self.plan, self.seats, self.interval = spec.plan, spec.seats, spec.interval
        self.sub_id = f"sub_{spec.account_id}"

    def emit(self, t: int, etype: str, **fields: object) -> None:
        if t < 0 or t >= self.w.end_s:
            return
        self.n += 1
        stamp = self.w.stamp(t)
        event_id = f"{self.prefix}{self.n}"
        self.w.events.append((stamp, event_id, {
            "event_id": event_id, "account_id": self.s.account_id, "occurred_at": stamp, "type": etype,
            "source": "simulate", **fields,
        }))

    def terms(self, renews_s: int | None) -> dict:
        return {"plan": self.plan, "seats": self.seats, "mrr": monthly_mrr(self.plan, self.seats, self.interval),
                "currency": "USD", "billing_interval": self.interval, "subscription_id": self.sub_id,
                "renews_at": self.w.iso(renews_s) if renews_s is not None else None}


def _arrival_day(rng: random.Random, days: int, growth: float) -> float:
    """A sign-up day in [0, days) from a rate growing as exp(growth * t / days)."""
    u = rng.random()
    return math.log1p(u * math.expm1(growth)) / growth * days


def _renewals(world: _World, first_s: int, interval: str) -> list[int]:
    out: list[int] = []
    anchor = world.dt(first_s)
    step = 1 if interval == "month" else 12
    k = 0
    while True:
        t = int((_add_months(anchor, k * step) - world.start).total_seconds())
        if t >= world.end_s:
            return out
        out.append(t)
        k += 1


def _specs(world: _World, rng: random.Random, accounts: int, days: int, churn_share: float,
           growth: float, base_share: float, trial_share: float) -> list[_Spec]:
    specs: list[_Spec] = []
    for i in range(accounts):
        base = rng.random() < base_share
        day = rng.uniform(0, min(6, days)) if base else _arrival_day(rng, days, growth)
        join_s = int(day * DAY) + rng.randrange(7 * 3600, 19 * 3600)
        if base:
            join_s = int(rng.uniform(0, min(3, days)) * DAY) + rng.randrange(7 * 3600, 19 * 3600)
        plan = rng.choices(PLAN_ORDER, PLAN_MIX)[0]
        lo, hi = SEAT_RANGE[plan]
        seats = round(math.exp(rng.uniform(math.log(lo), math.log(hi + 0.99))))
        seats = max(lo, min(hi, seats))
        interval = "year" if rng.random() < ANNUAL_SHARE[plan] else "month"
        trial = not base and rng.random() < trial_share
        converts = rng.random() < 0.65
        if base:  # an existing customer: the current period ends anywhere in the next month / year
            span = 30 if interval == "month" else 365
            first = join_s + int(rng.uniform(1, span) * DAY)
        else:
            paid = join_s + TRIAL_DAYS * DAY if trial else join_s
            first = int((_add_months(world.dt(paid), 1 if interval == "month" else 12)
                         - world.start).total_seconds())
        spec = _Spec(i, f"acct-{i:05d}", join_s, base, plan, seats, interval, trial, converts, first)
        spec.renewals = _renewals(world, first, interval)
        specs.append(spec)
    # Churners: drawn among the accounts that can churn inside the window (a renewal at least 40 days after
    # they started paying, so that a decay is visible), so that about `churn_share` of paying accounts churn.
    paying = [s for s in specs if not (s.trial and not s.converts)]
    eligible = []
    for s in paying:
        paid_s = s.join_s + (TRIAL_DAYS * DAY if s.trial else 0)
        cands = [r for r in s.renewals if r >= paid_s + 40 * DAY and r < world.end_s - DAY]
        if cands:
            eligible.append((s, cands))
    k = min(len(eligible), round(churn_share * len(paying)))
    for s, cands in rng.sample(eligible, k):
        paid_s = s.join_s + (TRIAL_DAYS * DAY if s.trial else 0)
        r = rng.choice(cands)
        if rng.random() < 0.15 and r + 17 * DAY < world.end_s:
            s.kind = "involuntary"
            s.churn_s = r + 16 * DAY + rng.randrange(3600, 6 * 3600)
            decay_days = rng.uniform(20, 40)
        else:
            s.kind = "voluntary"
            s.churn_s = r
            decay_days = rng.uniform(30, 60)
        s.decay_s = max(paid_s + 7 * DAY, s.churn_s - int(decay_days * DAY))
    for s in specs:
        if s.trial and not s.converts:
            s.kind = "trial_expired" if s.join_s + TRIAL_DAYS * DAY < world.end_s else "trial_open"
    return specs


def _simulate(world: _World, spec: _Spec, rng: random.Random) -> None:
    a = _Account(world, spec, rng)
    w = world
    churner = spec.churn_s is not None
    expires = spec.trial and not spec.converts
    paid_s = spec.join_s + (TRIAL_DAYS * DAY if spec.trial else 0)
    stop_s = a.stop_s
    if expires:
        stop_s = min(stop_s, paid_s)
    decay_s = spec.decay_s if spec.decay_s is not None else w.end_s
    decay_len = max(1, (spec.churn_s or w.end_s) - decay_s)
    floor = rng.uniform(0.0, 0.3) if spec.kind == "voluntary" else rng.uniform(0.3, 0.7)
    shape = rng.uniform(0.6, 1.6)

    def vitality(t: int) -> float:
        if t < decay_s:
            return 1.0
        x = min(1.0, (t - decay_s) / decay_len)
        return 1.0 - (1.0 - floor) * x ** shape

    # --- traits and users ------------------------------------------------------------------------------
    a.emit(spec.join_s, "account.traits", traits={
        "industry": rng.choice(INDUSTRIES), "region": rng.choice(REGIONS), "channel": rng.choice(CHANNELS),
        "size": "smb" if spec.seats < 10 else ("mid" if spec.seats < 40 else "enterprise"),
        "plan_interval": spec.interval,
    })
    n_users = max(1, min(25, round(spec.seats * rng.uniform(0.5, 1.0))))
    if spec.trial:
        n_users = min(n_users, rng.randint(1, 3))
    habit = rng.uniform(0.2, 0.85) * (0.45 if expires else 1.0)  # share of weekdays a typical user logs in
    users: list[list] = []  # [user_id, role, frequency, added_s, removed_s]
    for n in range(n_users):
        role = "owner" if n == 0 else ("admin" if n == 1 else ("champion" if n == 2 else "member"))
        freq = min(1.0, habit * rng.uniform(0.4, 1.5) * (1.3 if role in ("owner", "champion") else 1.0))
        added = spec.join_s + (n * 60 if spec.base or n == 0 else int(rng.uniform(0, 10) * DAY))
        users.append([f"{spec.account_id}-u{n}", role, freq, added, None])
    next_user = n_users
    breadth = rng.randint(3, 14)
    feats = rng.sample(FEATURES, breadth)
    never_activates = expires and rng.random() < 0.5
    api = spec.plan != "starter" and rng.random() < 0.3
    limit_prone = rng.random() < (0.25 if spec.plan == "starter" else 0.12)
    dip_s = None
    if not churner and rng.random() < 0.2:
        dip_s = spec.join_s + int(rng.uniform(20, 170) * DAY)
    dip_end = dip_s + int(rng.uniform(7, 16) * DAY) if dip_s is not None else None

    # --- billing ---------------------------------------------------------------------------------------
    renewals = spec.renewals
    if spec.trial:
        a.emit(spec.join_s, "trial.started", plan=spec.plan, trial_ends_at=w.iso(paid_s))
        if spec.converts:
            a.emit(paid_s, "trial.converted", **a.terms(spec.first_renewal_s))
            a.emit(paid_s + 60, "invoice.paid", amount=period_price(a.plan, a.seats, a.interval),
                   currency="USD", invoice_id=f"in_{spec.account_id}_0", subscription_id=a.sub_id)
        else:
            a.emit(paid_s, "trial.expired")
    else:
        a.emit(spec.join_s, "subscription.started", **a.terms(spec.first_renewal_s))
        if not spec.base:
            a.emit(spec.join_s + 60, "invoice.paid", amount=period_price(a.plan, a.seats, a.interval),
                   currency="USD", invoice_id=f"in_{spec.account_id}_0", subscription_id=a.sub_id)

    # plan changes: (time, kind)
    changes: list[tuple[int, str]] = []
    if not expires:
        life_end = stop_s
        if rng.random() < (0.15 if not churner else 0.05) and life_end - paid_s > 20 * DAY:
            changes.append((paid_s + int(rng.uniform(10, (life_end - paid_s) / DAY) * DAY), "up"))
        if not churner and rng.random() < 0.04 and life_end - paid_s > 20 * DAY:
            changes.append((paid_s + int(rng.uniform(10, (life_end - paid_s) / DAY) * DAY), "down"))
        if churner and spec.kind == "voluntary" and rng.random() < 0.3:
            changes.append((decay_s + int(rng.uniform(0.2, 0.7) * decay_len), "down"))
    changes.sort()

    def apply_change(t: int, kind: str, renews_s: int) -> None:
        prev = {"previous_plan": a.plan, "previous_seats": a.seats,
                "previous_mrr": monthly_mrr(a.plan, a.seats, a.interval)}
        if kind == "up":
            idx = PLAN_ORDER.index(a.plan)
            if idx < 2 and rng.random() < 0.4:
                a.plan = PLAN_ORDER[idx + 1]
            else:
                a.seats += rng.randint(1, max(1, a.seats // 3))
        else:
            if a.seats >= 3 and rng.random() < 0.7:
                a.seats = max(1, int(a.seats * rng.uniform(0.4, 0.75)))
            elif PLAN_ORDER.index(a.plan) > 0:
                a.plan = PLAN_ORDER[PLAN_ORDER.index(a.plan) - 1]
            else:
                a.seats = max(1, a.seats - 1)
        if monthly_mrr(a.plan, a.seats, a.interval) != prev["previous_mrr"]:
            a.emit(t, "subscription.changed", **a.terms(renews_s), **prev)

    ci = 0
    for j, r in enumerate(renewals):
        if r < paid_s:
            continue
        nxt = renewals[j + 1] if j + 1 < len(renewals) else int(
            (_add_months(w.dt(r), 1 if a.interval == "month" else 12) - w.start).total_seconds())
        while ci < len(changes) and changes[ci][0] < r:
            if changes[ci][0] < stop_s:
                apply_change(changes[ci][0], changes[ci][1], r)
            ci += 1
        if expires or r >= stop_s:
            if spec.kind == "voluntary" and r == spec.churn_s:
                lead = rng.uniform(2, 25) if a.interval == "month" else rng.uniform(5, 60)
                # Never before the subscription exists (an installed-base account renewing soon after day 0):
                # a Stripe subscription created with the cancellation already set decodes to two events.
                scheduled = max(r - int(lead * DAY), paid_s + min(3600, (r - paid_s) // 2))
                a.emit(scheduled, "subscription.cancel_scheduled", cancel_at=w.iso(r),
                       reason=rng.choice(CANCEL_REASONS))
                a.emit(r, "subscription.canceled", reason="cancellation_requested")
            break
        amount = period_price(a.plan, a.seats, a.interval)
        invoice = f"in_{spec.account_id}_{j + 1}"
        if spec.kind == "involuntary" and r + 16 * DAY >= (spec.churn_s or 0) - 6 * 3600:
            for attempt, after in enumerate((0, 3, 8, 15), start=1):
                a.emit(r + after * DAY + 600, "payment.failed", amount=amount, currency="USD", attempt=attempt,
                       invoice_id=invoice, subscription_id=a.sub_id,
                       next_attempt_at=w.iso(r + (3, 8, 15, 22)[attempt - 1] * DAY) if attempt < 4 else None)
            a.emit(spec.churn_s or 0, "subscription.canceled", reason="payment_failed")
            break
        a.emit(r, "subscription.renewed", **a.terms(nxt))
        fail_p = 0.25 if churner and r >= decay_s else 0.04
        if rng.random() < fail_p:
            attempts = rng.choice((1, 1, 2))
            for attempt in range(1, attempts + 1):
                a.emit(r + (attempt - 1) * 3 * DAY + 600, "payment.failed", amount=amount, currency="USD",
                       attempt=attempt, invoice_id=invoice, subscription_id=a.sub_id,
                       next_attempt_at=w.iso(r + attempt * 3 * DAY))
            a.emit(r + int(rng.uniform(0.5, 3.0 * attempts) * DAY), "invoice.paid", amount=amount, currency="USD",
                   invoice_id=invoice, subscription_id=a.sub_id)
        else:
            a.emit(r + 60, "invoice.paid", amount=amount, currency="USD", invoice_id=invoice,
                   subscription_id=a.sub_id)
    while ci < len(changes):  # changes after the last renewal in the window
        if changes[ci][0] < stop_s:
            apply_change(changes[ci][0], changes[ci][1], renewals[-1] if renewals else spec.first_renewal_s)
        ci += 1

    # --- people: key users leaving, new users --------------------------------------------------------------
    if not expires:
        if churner and rng.random() < 0.35:
            key = [u for u in users[1:] if u[1] in ("admin", "champion")]
            if key:
                u = rng.choice(key)
                u[4] = decay_s + int(rng.uniform(0.1, 0.8) * decay_len)
        elif not churner and rng.random() < 0.06 and len(users) > 2:
            u = rng.choice([u for u in users[1:] if u[1] in ("admin", "champion")] or users[1:])
            u[4] = spec.join_s + int(rng.uniform(20, 160) * DAY)
            users.append([f"{spec.account_id}-u{next_user}", u[1], u[2], u[4] + int(rng.uniform(1, 10) * DAY),
                          None])
            next_user += 1
        if not churner and len(users) > 4 and rng.random() < 0.15:
            u = rng.choice([u for u in users if u[1] == "member" and u[4] is None] or [users[-1]])
            if u[4] is None:
                u[4] = spec.join_s + int(rng.uniform(15, 170) * DAY)
        for _ in range(rng.choice((0, 0, 1, 2, 3)) if not churner else 0):
            users.append([f"{spec.account_id}-u{next_user}", "member", habit * rng.uniform(0.4, 1.3),
                          spec.join_s + int(rng.uniform(5, 170) * DAY), None])
            next_user += 1
    for uid, role, _f, added, removed in users:
        if added < stop_s:
            a.emit(added, "user.added", user_id=uid, role=role)
        if removed is not None and added < removed < stop_s:
            a.emit(removed, "user.removed", user_id=uid, role=role)

    # --- daily usage, tickets, limits, NPS -------------------------------------------------------------------
    first_day = spec.join_s // DAY
    last_day = (stop_s - 1) // DAY
    start_wd = w.start.weekday()
    ticket_rate = (0.12 + 0.015 * len(users)) / 7  # tickets a day
    open_tickets: list[tuple[int, str, str]] = []
    tickets = 0
    limit, quota = LIMITS[spec.plan]
    survey_s = spec.join_s + int(rng.uniform(25, 40) * DAY)
    rand = rng.random

    def randrange(a: int, b: int = 0) -> int:
        return a + int(rand() * (b - a)) if b else int(rand() * a)
    for d in range(first_day, last_day + 1):
        day_s = d * DAY
        noon = day_s + 12 * 3600
        v = vitality(noon)
        if dip_s is not None and dip_s <= noon < dip_end:  # type: ignore[operator]
            v *= 0.25
        if never_activates and noon >= spec.join_s:
            v *= 0.3
        dow = DOW[(start_wd + d) % 7]
        k = max(1, math.ceil(breadth * (0.25 + 0.75 * v)))
        for uid, _role, freq, added, removed in users:
            if added > noon or (removed is not None and removed <= day_s):
                continue
            if rand() < freq * v * dow:
                t = day_s + randrange(6 * 3600, 21 * 3600)
                if t < spec.join_s or t >= stop_s:
                    continue
                a.emit(t, "session.started", user_id=uid)
                if never_activates:
                    continue
                for _ in range(1 + (rand() < 0.6 * v) + (rand() < 0.3 * v)):
                    f = feats[int(k * rand() ** 1.6)]
                    t += randrange(30, 1200)
                    if t < stop_s:
                        a.emit(t, "feature.used", user_id=uid, feature=f, count=1 + randrange(0, 6))
        if api and rand() < 0.9 * v * (dow if dow < 0.5 else 1.0):
            t = day_s + 23 * 3600 + randrange(0, 3000)
            if spec.join_s <= t < stop_s:
                a.emit(t, "api.called", count=int(200 * v * rng.uniform(0.5, 2.0)) + 1)
        rate = ticket_rate * (3.5 if churner and noon >= decay_s else 1.0) * (1.0 if dow > 0.5 else 0.2)
        if rand() < rate:
            tickets += 1
            t = day_s + randrange(7 * 3600, 20 * 3600)
            urgent = churner and noon >= decay_s
            prio = rng.choices(("low", "normal", "high", "urgent"), (0.1, 0.4, 0.35, 0.15) if urgent
                               else (0.3, 0.55, 0.12, 0.03))[0]
            tid = f"tk-{spec.account_id}-{tickets}"
            if spec.join_s <= t < stop_s:
                a.emit(t, "ticket.opened", ticket_id=tid, priority=prio)
                open_tickets.append((t + int(rng.uniform(0.1, 5) * DAY), tid, prio))
        if limit_prone and dow > 0.5 and rand() < 0.06 * v:
            t = day_s + randrange(8 * 3600, 18 * 3600)
            if spec.join_s <= t < stop_s:
                a.emit(t, "usage_limit.reached", limit=limit, used=quota, quota=quota)
        if survey_s < day_s + DAY and survey_s >= day_s:
            if spec.join_s <= survey_s < stop_s:
                detractor_p = 0.6 if churner and survey_s >= decay_s else (0.5 if expires else 0.12)
                active = [u for u in users if u[3] <= survey_s and (u[4] is None or u[4] > survey_s)]
                respondents = [u for u in active if rand() < 0.3][:4] or active[:1]
                for u in respondents:
                    x = rand()
                    score = (randrange(0, 7) if x < detractor_p else
                             (randrange(7, 9) if x < detractor_p + 0.3 else randrange(9, 11)))
                    a.emit(survey_s + randrange(0, 6 * 3600), "nps.responded", user_id=u[0], score=score)
            survey_s += int(rng.uniform(80, 100) * DAY)
    for t, tid, prio in open_tickets:
        if t < stop_s:
            a.emit(t, "ticket.closed", ticket_id=tid, priority=prio)


def generate(accounts: int, days: int, seed: int = 7,
             start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
             churn_share: float = 0.2, *, growth: float = 1.0, base_share: float = 0.35,
             trial_share: float = 0.4) -> tuple[list[dict], list[GroundTruth]]:
    """Events sorted by event time (then event id), and who churns when (see the module docstring).

    `churn_share`: share of paying accounts that churn inside the window (as far as their renewal dates allow);
    `growth`: sign-ups arrive at a rate growing by a factor e**growth over the window; `base_share`: share of
    accounts that are existing customers on day 0; `trial_share`: share of new sign-ups starting with a trial.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    start = start.astimezone(UTC)
    rng = random.Random(seed)
    world = _World(seed, start, days)
    specs = _specs(world, rng, accounts, days, churn_share, growth, base_share, trial_share)
    truth: list[GroundTruth] = []
    for spec in specs:
        _simulate(world, spec, random.Random(rng.getrandbits(64)))
        ends = spec.churn_s
        if spec.kind == "trial_expired":
            ends = spec.join_s + TRIAL_DAYS * DAY
        truth.append(GroundTruth(
            spec.account_id, world.dt(ends) if ends is not None and ends < world.end_s else None,
            spec.kind, world.dt(spec.join_s), spec.plan, spec.interval,
            world.dt(spec.decay_s) if spec.decay_s is not None else None,
        ))
    world.events.sort(key=lambda e: (e[0], e[1]))
    return [e[2] for e in world.events], truth


def churned_ids(truth: list[GroundTruth]) -> set[str]:
    return {t.account_id for t in truth if t.churns_on is not None}


__all__ = ["FEATURES", "PLANS", "GroundTruth", "churned_ids", "generate", "monthly_mrr", "period_price"]
