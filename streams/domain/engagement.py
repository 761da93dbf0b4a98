"""Rolling product engagement of one account in event time: daily buckets, user/feature bitmaps, NPS, tickets."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from streams.domain.config import DEFAULT_KEY_ROLES

if TYPE_CHECKING:
    from streams.domain.account import AccountState
    from streams.domain.config import DomainConfig

DAY_S = 86_400
EPOCH_DATE = date(1970, 1, 1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Full per-day detail covers this many days: the 30-day window and its 30-day baseline. Per-user and
# per-feature activity bitmaps are this long, and older day buckets drop their volume counters (feature uses,
# API calls) down to a 0/1 "used" flag, keeping sessions, limit hits and tickets (see docs/state.md).
BITMAP_DAYS = 60
BITMAP_MASK = (1 << BITMAP_DAYS) - 1
DETAIL_DAYS = BITMAP_DAYS
# Slots of a daily counter bucket.
SESSIONS, FEATURE_USES, API_CALLS, LIMIT_HITS, TICKETS_OPENED = range(5)
# Roles as stored: code = index + 1; code 0 = removed from the account.
ROLES = ("owner", "admin", "champion", "member", "viewer", "billing")
ROLE_CODE = {name: i + 1 for i, name in enumerate(ROLES)}
# Tombstones (removed or non-key users, closed tickets) are kept only within the lateness bound, at most this
# many per table: enough to keep arrival order irrelevant for ordinary traffic, bounded for bursts.
MAX_TOMBSTONES = 16


def fingerprint(text: str) -> int:
    """Stable 32-bit fingerprint of an id (CRC-32 of its UTF-8 bytes): same in every process and release."""
    return zlib.crc32(text.encode())


def day_index(at: datetime | date | int) -> int:
    """Days since 1970-01-01 of the UTC calendar day containing `at` (a date is a UTC day; an int is a day)."""
    if isinstance(at, int):
        return at
    if isinstance(at, datetime):
        return epoch_of(at) // DAY_S
    return (at - EPOCH_DATE).days


def day_date(day: int) -> date:
    return date.fromordinal(EPOCH_DATE.toordinal() + day)


# The last conversion each way, as one (datetime, epoch seconds) tuple replaced whole (a reader in another thread
# sees a consistent pair). One evaluation hands the same as_of datetime to the assessment, a dozen rules and the
# alert book, and each needs its seconds: converting each time (datetime.timestamp, fromtimestamp: 0.3-0.5 us
# each, ~15 per evaluation) was a tenth of an evaluation-heavy replay. `epoch_of` matches by identity: the cached
# object is held, so its id cannot be reused by another one.
_last_epoch: tuple[datetime, int] = (EPOCH, 0)
_last_utc: tuple[datetime, int] = (EPOCH, 0)


def epoch_of(at: datetime) -> int:
    """Whole epoch seconds of an aware datetime (int(at.timestamp())); a naive one is a ValueError."""
    global _last_epoch
    last = _last_epoch
    if last[0] is at:
        return last[1]
    if at.tzinfo is None:
        raise ValueError("datetimes must carry a timezone")
    seconds = int(at.timestamp())
    _last_epoch = (at, seconds)
    return seconds


def utc_of(seconds: int) -> datetime:
    """The UTC datetime of whole epoch seconds (the same object for the same seconds as the last call)."""
    global _last_utc, _last_epoch
    last = _last_utc
    if last[1] == seconds:
        return last[0]
    at = datetime.fromtimestamp(seconds, UTC)
    _last_utc = _last_epoch = (at, seconds)  # its seconds are known: epoch_of(at) need not convert back
    return at


def utc_from_s(seconds: int | None) -> datetime | None:
    return None if seconds is None else utc_of(seconds)


@dataclass(slots=True)
class Engagement:
    """Usage facts kept per account. Days are day indexes (days since 1970-01-01, UTC); times epoch seconds.

    Every field is a join of its inputs (sums, bit-ors, max/min, latest-by-(time, value)), so events applied in
    any order within the lateness bound give the same value (while the per-table caps are not exceeded).
    """

    # Newest day covered; bit i of a bitmap is day clock_day - i. 0 until the first event.
    clock_day: int = 0
    # day -> [sessions, feature uses, api calls, usage-limit hits, tickets opened]; days > clock - horizon.
    days: dict[int, list[int]] = field(default_factory=dict)
    # user fingerprint -> [60-day activity bitmap, last active day]; dropped after the bucket horizon.
    users: dict[int, list[int]] = field(default_factory=dict)
    # feature fingerprint -> [60-day use bitmap, last used day]
    features: dict[int, list[int]] = field(default_factory=dict)
    # user fingerprint -> (answered at, score 0..10): each user's latest NPS answer.
    nps: dict[int, tuple[int, int]] = field(default_factory=dict)
    # user fingerprint -> (changed at, role code): latest user.added / user.removed per user (see ROLES).
    roles: dict[int, tuple[int, int]] = field(default_factory=dict)
    # ticket fingerprint -> [opened day or -1, closed day or -1]
    tickets: dict[int, list[int]] = field(default_factory=dict)
    last_activity_s: int | None = None  # newest session / feature use / api call
    first_value_s: int | None = None  # first key action (DomainConfig.key_action_features)

    @property
    def last_activity_at(self) -> datetime | None:
        return utc_from_s(self.last_activity_s)

    @property
    def open_tickets(self) -> int:
        return sum(1 for opened, closed in self.tickets.values() if opened >= 0 and closed < 0)

    def key_users(self, key_roles: frozenset[str]) -> dict[int, str]:
        """user fingerprint -> role, for current users whose role is one of key_roles."""
        return {fp: ROLES[code - 1] for fp, (_, code) in self.roles.items() if code and ROLES[code - 1] in key_roles}


# --- state progress (called by account.apply_event / advance) ----------------------------------------------


def roll(eng: Engagement, day: int, bound_day: int, config: DomainConfig) -> None:
    """Move the clock forward to `day`: shift bitmaps and drop what fell out of every retention bound.

    bound_day is the first day a still-accepted late event can have; tombstones older than it can never be
    contradicted again and are dropped.
    """
    shift = day - eng.clock_day
    if shift <= 0:
        return
    eng.clock_day = day
    oldest = day - config.bucket_horizon_days  # this day and older are out of the horizon
    for table in (eng.users, eng.features):
        stale = []
        for key, rec in table.items():
            rec[0] = (rec[0] << shift) & BITMAP_MASK if shift < BITMAP_DAYS else 0
            if rec[1] <= oldest:
                stale.append(key)
        for key in stale:
            del table[key]
    days = eng.days
    detail_from = day - DETAIL_DAYS + 1
    for d in [d for d in days if d < detail_from]:
        if d <= oldest:
            del days[d]
        else:
            fold_volumes(days[d])
    nps_oldest_s = (day - config.nps_max_age_days + 1) * DAY_S
    for key in [k for k, (at, _) in eng.nps.items() if at < nps_oldest_s]:
        del eng.nps[key]
    gc_tombstones(eng, bound_day, config)


def fold_volumes(b: list[int]) -> None:
    """A day past the detail range keeps only whether features or the API were used (idempotent)."""
    b[FEATURE_USES] = 1 if b[FEATURE_USES] or b[API_CALLS] else 0
    b[API_CALLS] = 0


def gc_tombstones(eng: Engagement, bound_day: int, config: DomainConfig) -> None:
    """Forget removed / non-key users and closed tickets older than the lateness bound, and stale open tickets."""
    bound_s = bound_day * DAY_S
    key_roles = config.key_roles
    roles = eng.roles
    for key in [k for k, (at, code) in roles.items() if at < bound_s and not _is_key(code, key_roles)]:
        del roles[key]
    oldest = eng.clock_day - config.bucket_horizon_days
    tickets = eng.tickets
    for key in [k for k, (o, c) in tickets.items() if (c >= 0 and c < bound_day) or (c < 0 and o <= oldest)]:
        del tickets[key]


def _is_key(code: int, key_roles: frozenset[str]) -> bool:
    return code > 0 and ROLES[code - 1] in key_roles


def bucket(eng: Engagement, day: int, horizon: int) -> list[int] | None:
    """The day's counter bucket, created on demand; None when the day is outside the horizon."""
    b = eng.days.get(day)
    if b is None:
        if day <= eng.clock_day - horizon:
            return None
        b = eng.days[day] = [0, 0, 0, 0, 0]
    return b


def mark(table: dict[int, list[int]], key: int, day: int, clock_day: int, horizon: int) -> None:
    """Record that user/feature `key` was active on `day` (bitmap bit and last day)."""
    offset = clock_day - day
    rec = table.get(key)
    if rec is None:
        if offset >= horizon:
            return
        table[key] = [1 << offset if offset < BITMAP_DAYS else 0, day]
        return
    if offset < BITMAP_DAYS:
        rec[0] |= 1 << offset
    if day > rec[1]:
        rec[1] = day


def record_nps(eng: Engagement, user_fp: int, at_s: int, score: int, max_users: int) -> None:
    """Keep each user's latest answer (ties: higher score), for the max_users users who answered last."""
    nps = eng.nps
    old = nps.get(user_fp)
    if old is not None:
        if (at_s, score) > old:
            nps[user_fp] = (at_s, score)
        return
    if max_users <= 0:
        return
    nps[user_fp] = (at_s, score)
    if len(nps) > max_users:
        # Evict the oldest answer; (time, score, user) is a total order, so the kept set is order-free.
        del nps[min(nps, key=lambda k: (*nps[k], k))]


def record_role(eng: Engagement, user_fp: int, at_s: int, code: int, config: DomainConfig) -> None:
    """Latest user.added / user.removed per user wins (ties: higher code); only key roles are kept for long."""
    roles = eng.roles
    old = roles.get(user_fp)
    if old is not None:
        if (at_s, code) > old:
            roles[user_fp] = (at_s, code)
        return
    roles[user_fp] = (at_s, code)
    key_roles = config.key_roles
    keys = [k for k, (_, c) in roles.items() if _is_key(c, key_roles)]
    if len(roles) - len(keys) > MAX_TOMBSTONES:
        kept = set(keys)
        del roles[min((k for k in roles if k not in kept), key=lambda k: (*roles[k], k))]
    if len(keys) > config.max_key_users:
        del roles[min(keys, key=lambda k: (*roles[k], k))]


def record_ticket(eng: Engagement, ticket_fp: int, day: int, opened: bool, config: DomainConfig) -> None:
    """Open/close a ticket by id; the tickets-opened counter counts each ticket once, on its earliest open day."""
    horizon = config.bucket_horizon_days
    t = eng.tickets.get(ticket_fp)
    if not opened:
        if t is None:
            eng.tickets[ticket_fp] = [-1, day]
        elif day > t[1]:
            t[1] = day
        return
    if t is None:
        t = eng.tickets[ticket_fp] = [day, -1]
    elif t[0] < 0 or day < t[0]:
        if t[0] >= 0:  # an earlier open of a ticket already counted: move the count to the earlier day
            b = eng.days.get(t[0])
            if b is not None:
                b[TICKETS_OPENED] -= 1
                if not any(b):
                    del eng.days[t[0]]  # a bucket exists only while it counts something (order-insensitive)
        t[0] = day
    else:
        return
    b = bucket(eng, day, horizon)
    if b is not None:
        b[TICKETS_OPENED] += 1
    if len(eng.tickets) > config.max_open_tickets + MAX_TOMBSTONES:
        tickets = eng.tickets
        del tickets[min(tickets, key=lambda k: (tickets[k][0], k))]


# --- aggregates ----------------------------------------------------------------------------------------------


# Written-out __init__: compiled, unlike a generated one or a NamedTuple's (ADR 0018).
@dataclass(frozen=True, slots=True, init=False)
class WindowFigures:
    """Usage over the `days` days ending on `last_day` (inclusive, UTC day indexes)."""

    first_day: int
    last_day: int
    active_days: int  # days with a session, a feature use or an API call
    sessions: int
    feature_uses: int | None  # None when the window reaches past the 60-day detail range
    api_calls: int | None
    active_users: int  # distinct users with a session or a feature use
    breadth: int  # distinct features used
    # mean daily active users / distinct active users in the window; None when not kept (90-day window)
    stickiness: float | None
    limit_hits: int
    tickets: int  # tickets opened

    def __init__(
        self, first_day: int, last_day: int, active_days: int, sessions: int, feature_uses: int | None,
        api_calls: int | None, active_users: int, breadth: int, stickiness: float | None, limit_hits: int,
        tickets: int,
    ) -> None:
        object.__setattr__(self, "first_day", first_day)
        object.__setattr__(self, "last_day", last_day)
        object.__setattr__(self, "active_days", active_days)
        object.__setattr__(self, "sessions", sessions)
        object.__setattr__(self, "feature_uses", feature_uses)
        object.__setattr__(self, "api_calls", api_calls)
        object.__setattr__(self, "active_users", active_users)
        object.__setattr__(self, "breadth", breadth)
        object.__setattr__(self, "stickiness", stickiness)
        object.__setattr__(self, "limit_hits", limit_hits)
        object.__setattr__(self, "tickets", tickets)

    @property
    def days(self) -> int:
        return self.last_day - self.first_day + 1


# Written-out __init__: compiled, unlike a generated one or a NamedTuple's (ADR 0018).
@dataclass(frozen=True, slots=True, init=False)
class EngagementSummary:
    """Engagement as of a UTC day: 7 and 30-day windows with the preceding equal period, and 90-day figures.

    There is no 90-day baseline (it would need 180 days of buckets). `tracked_days` says how much history the
    state has: a baseline window that starts before the account was first seen is incomplete.
    """

    as_of_day: int
    tracked_days: int
    last7: WindowFigures
    prev7: WindowFigures
    last30: WindowFigures
    prev30: WindowFigures
    last90: WindowFigures
    last_activity_day: int | None
    open_tickets: int
    nps: float | None  # account NPS (-100..100) over each user's latest answer; None without answers
    nps_responses: int
    key_users: int
    time_to_first_value_days: float | None

    def __init__(
        self, as_of_day: int, tracked_days: int, last7: WindowFigures, prev7: WindowFigures, last30: WindowFigures,
        prev30: WindowFigures, last90: WindowFigures, last_activity_day: int | None, open_tickets: int,
        nps: float | None, nps_responses: int, key_users: int, time_to_first_value_days: float | None,
    ) -> None:
        # Frozen: set as the dataclass's own __init__ sets them. Compiled, ~0.5 us a summary (generated: ~3.7).
        object.__setattr__(self, "as_of_day", as_of_day)
        object.__setattr__(self, "tracked_days", tracked_days)
        object.__setattr__(self, "last7", last7)
        object.__setattr__(self, "prev7", prev7)
        object.__setattr__(self, "last30", last30)
        object.__setattr__(self, "prev30", prev30)
        object.__setattr__(self, "last90", last90)
        object.__setattr__(self, "last_activity_day", last_activity_day)
        object.__setattr__(self, "open_tickets", open_tickets)
        object.__setattr__(self, "nps", nps)
        object.__setattr__(self, "nps_responses", nps_responses)
        object.__setattr__(self, "key_users", key_users)
        object.__setattr__(self, "time_to_first_value_days", time_to_first_value_days)

    def baseline_complete(self, window: int) -> bool:
        """True when the baseline of the 7 or 30-day window lies entirely within tracked history."""
        return self.tracked_days >= 2 * window


def window_figures(eng: Engagement, first_day: int, last_day: int) -> WindowFigures:
    """Sum buckets and count distinct users/features over [first_day, last_day] (needs first_day <= last_day)."""
    active = sessions = uses = api = limits = tickets = 0
    for day, b in eng.days.items():
        if first_day <= day <= last_day:
            s, f, a = b[SESSIONS], b[FEATURE_USES], b[API_CALLS]
            if s or f or a:
                active += 1
            sessions += s
            uses += f
            api += a
            limits += b[LIMIT_HITS]
            tickets += b[TICKETS_OPENED]
    clock = eng.clock_day
    lo, hi = clock - last_day, clock - first_day  # bit offsets of the window
    stickiness: float | None
    if hi < BITMAP_DAYS:
        mask = _bits(lo, hi)
        active_users = user_days = 0
        for bits, _ in eng.users.values():
            n = (bits & mask).bit_count()
            if n:
                active_users += 1
                user_days += n
        breadth = sum(1 for bits, _ in eng.features.values() if bits & mask)
        days = last_day - first_day + 1
        stickiness = user_days / days / active_users if active_users else 0.0
    else:
        # Beyond the bitmaps: distinct counts from last-active days, exact for windows ending at or after the
        # clock; no stickiness (no per-day users kept).
        active_users = sum(1 for _, last in eng.users.values() if first_day <= last <= last_day)
        breadth = sum(1 for _, last in eng.features.values() if first_day <= last <= last_day)
        stickiness = None
    if first_day <= clock - DETAIL_DAYS:
        return WindowFigures(
            first_day, last_day, active, sessions, None, None, active_users, breadth, stickiness, limits, tickets
        )
    return WindowFigures(
        first_day, last_day, active, sessions, uses, api, active_users, breadth, stickiness, limits, tickets
    )


def tickets_opened(eng: Engagement, first_day: int, last_day: int) -> int:
    """Tickets opened over [first_day, last_day]: window_figures(...).tickets without the users and features."""
    return sum(b[TICKETS_OPENED] for day, b in eng.days.items() if first_day <= day <= last_day)


def _bits(lo: int, hi: int) -> int:
    lo = max(lo, 0)
    hi = min(hi, BITMAP_DAYS - 1)
    if hi < lo:
        return 0
    return ((1 << (hi - lo + 1)) - 1) << lo


# Bitmasks of the summary's windows when they end on the clock day (bit i = day clock - i).
_LAST7, _PREV7 = (1 << 7) - 1, ((1 << 7) - 1) << 7
_LAST30, _PREV30 = (1 << 30) - 1, ((1 << 30) - 1) << 30


def summary_windows(eng: Engagement, a: int) -> tuple[WindowFigures, ...]:
    """last7, prev7, last30, prev30 and last90 ending on day `a`: the figures of five window_figures calls.

    Evaluation runs this at every checkpoint, nearly always as of the clock day: that case takes one pass over
    the day buckets, the users and the features instead of five (a sixth of an evaluation's cost)."""
    bounds = ((a - 6, a), (a - 13, a - 7), (a - 29, a), (a - 59, a - 30), (a - 89, a))
    if a != eng.clock_day:
        return tuple(window_figures(eng, first, last) for first, last in bounds)
    # Day buckets by segment of days before `a`: 0-6, 7-13, 14-29, 30-59, 60-89.
    seg = [[0, 0, 0, 0, 0, 0] for _ in range(5)]  # active days, sessions, uses, api calls, limit hits, tickets
    for day, b in eng.days.items():
        offset = a - day
        if offset < 0 or offset >= 90:
            continue
        row = seg[0 if offset < 7 else 1 if offset < 14 else 2 if offset < 30 else 3 if offset < 60 else 4]
        s, f, api = b[SESSIONS], b[FEATURE_USES], b[API_CALLS]
        if s or f or api:
            row[0] += 1
        row[1] += s
        row[2] += f
        row[3] += api
        row[4] += b[LIMIT_HITS]
        row[5] += b[TICKETS_OPENED]
    s0, s1, s2, s3, s4 = seg
    last30 = [x + y + z for x, y, z in zip(s0, s1, s2, strict=True)]
    last90 = [x + y + z for x, y, z in zip(last30, s3, s4, strict=True)]
    # Distinct users and features: the 7 and 30-day windows from the bitmaps, the 90-day one from last-seen days.
    u7 = d7 = up7 = dp7 = u30 = d30 = up30 = dp30 = u90 = 0
    first90 = a - 89
    for bits, seen in eng.users.values():
        if first90 <= seen <= a:
            u90 += 1
        n = (bits & _LAST30).bit_count()
        if n:
            u30 += 1
            d30 += n
            n = (bits & _LAST7).bit_count()
            if n:
                u7 += 1
                d7 += n
            n = (bits & _PREV7).bit_count()
            if n:
                up7 += 1
                dp7 += n
        n = (bits & _PREV30).bit_count()
        if n:
            up30 += 1
            dp30 += n
    f7 = fp7 = f30 = fp30 = f90 = 0
    for bits, seen in eng.features.values():
        if first90 <= seen <= a:
            f90 += 1
        if bits & _LAST30:
            f30 += 1
            if bits & _LAST7:
                f7 += 1
            if bits & _PREV7:
                fp7 += 1
        if bits & _PREV30:
            fp30 += 1
    return (
        _figures(bounds[0], s0, u7, d7, f7),
        _figures(bounds[1], s1, up7, dp7, fp7),
        _figures(bounds[2], last30, u30, d30, f30),
        _figures(bounds[3], s3, up30, dp30, fp30),
        WindowFigures(first90, a, last90[0], last90[1], None, None, u90, f90, None, last90[4], last90[5]),
    )


def _figures(bound: tuple[int, int], row: list[int], users: int, user_days: int, breadth: int) -> WindowFigures:
    first, last = bound
    stickiness = user_days / (last - first + 1) / users if users else 0.0
    return WindowFigures(first, last, row[0], row[1], row[2], row[3], users, breadth, stickiness, row[4], row[5])


def account_nps(scores: list[int]) -> float | None:
    """NPS = % promoters (9-10) - % detractors (0-6), -100..100; None without answers."""
    if not scores:
        return None
    promoters = sum(1 for s in scores if s >= 9)
    detractors = sum(1 for s in scores if s <= 6)
    return 100.0 * (promoters - detractors) / len(scores)


def engagement_summary(state: AccountState, as_of: date | datetime | int, *, key_roles: frozenset[str] | None = None
                       ) -> EngagementSummary:
    """Windows ending on as_of's UTC day. Exact for as_of on or after the state's clock day (the usual case)."""
    eng = state.engagement
    a = day_index(as_of)
    first_seen = state.first_seen_day
    as_of_end_s = (a + 1) * DAY_S
    scores = [score for at, score in eng.nps.values() if at < as_of_end_s]
    ttfv = None
    if eng.first_value_s is not None and state.started_at_s is not None:
        ttfv = max(0, eng.first_value_s - state.started_at_s) / DAY_S
    last_act = eng.last_activity_s
    last7, prev7, last30, prev30, last90 = summary_windows(eng, a)
    return EngagementSummary(
        as_of_day=a,
        tracked_days=0 if first_seen is None else max(0, a - first_seen + 1),
        last7=last7,
        prev7=prev7,
        last30=last30,
        prev30=prev30,
        last90=last90,
        last_activity_day=None if last_act is None else last_act // DAY_S,
        open_tickets=eng.open_tickets,
        nps=account_nps(scores),
        nps_responses=len(scores),
        key_users=len(eng.key_users(DEFAULT_KEY_ROLES if key_roles is None else key_roles)),
        time_to_first_value_days=ttfv,
    )
