"""Compact bytes for AccountState (the table value) and the JSON read model served over Redis / HTTP."""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from datetime import date, datetime
from typing import Any

import orjson

from streams.domain.account import (
    INTERVALS,
    STAGES,
    STATUSES,
    AccountState,
    derive_billing,
    lifecycle_stage,
    seen_key,
    seen_second,
)
from streams.domain.config import DomainConfig, HealthWeights
from streams.domain.engagement import (
    BITMAP_DAYS,
    BITMAP_MASK,
    DAY_S,
    DETAIL_DAYS,
    Engagement,
    WindowFigures,
    day_date,
    day_index,
    engagement_summary,
    utc_from_s,
)
from streams.domain.health import health_score

# Byte 0 of every encoded state. Bump it on any layout change and keep a decoder for the old one.
FORMAT_VERSION = 1
_FLAG_ZLIB = 1  # byte 1: the payload after the two header bytes is zlib-compressed
# Try zlib only on large payloads: it costs ~15-40 µs and pays only on regular data (users active every day);
# a realistic busy account is mostly random fingerprints and counts, which do not compress.
_ZLIB_FROM = 1200
_ZLIB_LEVEL = 6
_STATUS_CODE = {s: i for i, s in enumerate(STATUSES)}
_STAGE_CODE = {s: i for i, s in enumerate(STAGES)}
_INTERVAL_CODE: dict[str | None, int] = {None: 0, **{s: i + 1 for i, s in enumerate(INTERVALS)}}
_SIZE = {"B": 1, "H": 2, "I": 4, "i": 4, "Q": 8, "q": 8}
# Fixed scalars after the 2 header bytes: length of the strings JSON, base = newest event (epoch s, 0 = none),
# clock day - base day, base day - first seen day + 1 (0 = none), codes (base status | stage << 3 |
# interval << 6), cancel scheduled, seats, plan MRR (minor units), failed attempt, presence mask of times.
_FIXED = struct.Struct("<HIhHBBIQBI")
_TIME_FIELDS = (
    "renews_at_s", "cancel_at_s", "trial_started_at_s", "trial_ends_at_s", "first_paid_at_s", "started_at_s",
    "snapshot_s", "status_s", "cancel_s", "paid_s", "failed_s", "mrr_rose_s", "churned_s", "restarted_s",
    "traits_s", "last_activity_s", "first_value_s", "last_billing_s", "last_event_s", "key_user_removed_s",
)
_ENG_TIMES = frozenset({"last_activity_s", "first_value_s"})
_WIDE_TIMES = 1 << 31  # mask flag: the times are int64 (a renewal or cancel date beyond ±68 years)
_FLAGS = _WIDE_TIMES
_DEFAULT_CONFIG = DomainConfig()
# Columns go through array's C loop where its item sizes and byte order are the format's (little-endian, _SIZE):
# struct with a format string built per column parsed that format on every call (~0.3 us a column, ~15 a state).
_ARRAY = sys.byteorder == "little" and all(array(code).itemsize == size for code, size in _SIZE.items())
_U16 = struct.Struct("<H")


def _pack(code: str, values: list[int]) -> bytes:
    """The values as little-endian `code` items (struct's format characters, sizes in _SIZE)."""
    if _ARRAY:
        return array(code, values).tobytes()
    return struct.pack(f"<{len(values)}{code}", *values)


def _unpack(buf: bytes, pos: int, code: str, n: int) -> list[int]:
    """`n` little-endian `code` items of `buf` from `pos` (ValueError when the bytes are not all there)."""
    end = pos + n * _SIZE[code]
    if end > len(buf):
        raise ValueError(f"encoded state truncated: {n} items of {code!r} at byte {pos}")
    if _ARRAY:
        items = array(code)
        items.frombytes(buf[pos:end])
        return items.tolist()
    return list(struct.unpack_from(f"<{n}{code}", buf, pos))


def _times_of(state: AccountState) -> tuple[int | None, ...]:
    """The _TIME_FIELDS of the state, in their order, read directly (by name, each was a dictionary lookup)."""
    eng = state.engagement
    return (
        state.renews_at_s, state.cancel_at_s, state.trial_started_at_s, state.trial_ends_at_s,
        state.first_paid_at_s, state.started_at_s, state.snapshot_s, state.status_s, state.cancel_s, state.paid_s,
        state.failed_s, state.mrr_rose_s, state.churned_s, state.restarted_s, state.traits_s,
        eng.last_activity_s, eng.first_value_s, state.last_billing_s, state.last_event_s,
        state.key_user_removed_s,
    )


def _width(values: list[int]) -> str:
    """Smallest unsigned struct code holding every value of a column."""
    top = 0
    for value in values:  # a native loop: `max(values, default=0)` is a generic call with a keyword argument
        if value > top:
            top = value
    return "B" if top < 0x100 else "H" if top < 0x10000 else "I" if top < 0x100000000 else "Q"


def _col(out: bytearray, values: list[int]) -> None:
    """A width byte, then the values packed at that width (the count is written or known by the caller)."""
    code = _width(values)
    out.append(ord(code))
    if values:
        out += _pack(code, values)


def _small(out: bytearray, values: list[int]) -> None:
    """Mostly-small values: one byte each, 255 = escape to a uint32 in a trailing column."""
    big = [v for v in values if v >= 255]
    out += bytes(v if v < 255 else 255 for v in values)
    _raw(out, "I", big)


def _raw(out: bytearray, code: str, values: list[int]) -> None:
    if values:
        out += _pack(code, values)


def encode_state(state: AccountState) -> bytes:
    """Compact, deterministic bytes: equal states give equal bytes whatever their insertion history.

    Layout (little-endian): version, flags, fixed scalars (_FIXED), present register times as int32 offsets
    from the newest event, a JSON array of strings (account id, plan, currency, traits, offsets), then binary
    columns: day buckets (presence bitmap; dense sessions, feature uses, API calls; sparse limit hits and
    tickets), users and features (32-bit fingerprints, 60-bit day bitmaps), NPS answers, roles, tickets and
    the dedupe ring. Derived fields (status, MRR, open failed attempts) are recomputed on decode.
    """
    eng = state.engagement
    # Base: the newest event of either stream, so every stored time is at or before it (the dedupe ring is
    # written as gaps backwards from it). Both streams' watermarks are stored as time fields.
    base = max(state.last_event_s or 0, state.last_billing_s or 0)
    base_day = base // DAY_S
    clock = eng.clock_day
    mask = 0
    times = []
    for i, t in enumerate(_times_of(state)):
        if t is not None:
            mask |= 1 << i
            times.append(t - base)
    wide = any(not -0x80000000 <= t < 0x80000000 for t in times)  # payload times far in the future
    if wide:
        mask |= _WIDE_TIMES
    fields: list[Any] = [state.account_id, state.plan, state.currency, state.traits, state.offsets]
    if state.key_user_removed_role:
        fields.append(state.key_user_removed_role)  # optional 6th element: role code of the last key-user removal
    strings = orjson.dumps(fields)
    codes = (
        _STATUS_CODE[state.base_status] | _STAGE_CODE[state.stage] << 3 | _INTERVAL_CODE[state.billing_interval] << 6
    )
    first_seen = 0 if state.first_seen_day is None else base_day - state.first_seen_day + 1
    out = bytearray(_FIXED.pack(
        len(strings), base, clock - base_day, first_seen, codes, state.cancel_scheduled, state.seats,
        state.plan_mrr, state.failed_attempt, mask,
    ))
    _raw(out, "q" if wide else "i", times)
    out += strings
    # Day buckets, newest first; bit `clock - day` of the presence bitmap marks a kept day. Days past the
    # detail range have no volumes, only a "features or API used" flag (engagement.fold_volumes).
    days = sorted(eng.days.items(), reverse=True)
    present = used = 0
    recent: list[list[int]] = []
    sparse: list[int] = []
    for day, b in days:
        off = clock - day
        present |= 1 << off
        if off < DETAIL_DAYS:
            recent.append(b)
        elif b[1]:
            used |= 1 << off
        if b[3] or b[4]:
            sparse += (off, b[3], b[4])
    for bitmap in (present, used):
        raw = bitmap.to_bytes((bitmap.bit_length() + 7) // 8, "little")
        out.append(len(raw))
        out += raw
    _col(out, [b[0] for _, b in days])
    _col(out, [b[1] for b in recent])
    _col(out, [b[2] for b in recent])
    out += _U16.pack(len(sparse) // 3)
    _col(out, sparse)
    for table in (eng.users, eng.features):
        keys = sorted(table)
        out += _U16.pack(len(keys))
        _raw(out, "I", keys)
        # 60-bit bitmaps packed back to back (7.5 bytes each).
        acc = 0
        for k in reversed(keys):
            acc = acc << BITMAP_DAYS | table[k][0]
        out += acc.to_bytes((BITMAP_DAYS * len(keys) + 7) // 8, "little")
        _col(out, [clock - table[k][1] for k in keys if not table[k][0]])  # last day where no bit tells it
    for pairs in (eng.nps, eng.roles):
        keys = sorted(pairs)
        out += _U16.pack(len(keys))
        _raw(out, "I", keys)
        _col(out, [base - pairs[k][0] for k in keys])
        _raw(out, "B", [pairs[k][1] for k in keys])
    keys = sorted(eng.tickets)
    out += _U16.pack(len(keys))
    _raw(out, "I", keys)
    _col(out, [clock - eng.tickets[k][0] + 1 if eng.tickets[k][0] >= 0 else 0 for k in keys])
    _col(out, [clock - eng.tickets[k][1] + 1 if eng.tickets[k][1] >= 0 else 0 for k in keys])
    snaps = state.snapshots
    out += _U16.pack(len(snaps))
    _col(out, [base - at for at, _ in snaps])
    _col(out, [mrr for _, mrr in snaps])
    seen = state.seen
    out += _U16.pack(len(seen))
    _raw(out, "I", [k & 0xFFFFFFFF for k in seen])
    # Event seconds, newest first, as gaps to the previous (seconds apart for busy accounts).
    prev = base
    gaps = []
    for k in reversed(seen):
        at = seen_second(k)
        gaps.append(prev - at)
        prev = at
    _small(out, gaps)
    if len(out) >= _ZLIB_FROM:
        packed = zlib.compress(out, _ZLIB_LEVEL)
        if len(packed) < len(out):
            return bytes((FORMAT_VERSION, _FLAG_ZLIB)) + packed
    return bytes((FORMAT_VERSION, 0)) + out


class _Reader:
    """Reads the columns of an encoded state in order. Every column read checks that its bytes are there (a
    truncated state raises), so columns read with the same count are zipped without `strict` (a keyword call,
    generic in the compiled build)."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos

    def count(self) -> int:
        (n,) = _U16.unpack_from(self.buf, self.pos)
        self.pos += 2
        return n

    def col(self, n: int) -> list[int]:
        code = chr(self.buf[self.pos])
        self.pos += 1
        return self.raw(code, n)

    def small(self, n: int) -> list[int]:
        values = list(self.buf[self.pos:self.pos + n])
        if len(values) != n:
            raise ValueError(f"encoded state truncated: {n} small values at byte {self.pos}")
        self.pos += n
        big = iter(self.raw("I", values.count(255)))
        return [v if v < 255 else next(big) for v in values]

    def raw(self, code: str, n: int) -> list[int]:
        if not n:
            return []
        values = _unpack(self.buf, self.pos, code, n)
        self.pos += n * _SIZE[code]
        return values


def decode_state(data: bytes) -> AccountState:
    """Inverse of encode_state (exact). Raises ValueError on an unknown format version."""
    if len(data) < 2 or data[0] != FORMAT_VERSION:
        raise ValueError(f"unknown account state format version {data[0] if data else None}")
    buf = zlib.decompress(memoryview(data)[2:]) if data[1] & _FLAG_ZLIB else data[2:]
    (n_strings, base, clock_delta, first_seen, codes, cancel_flag, seats, plan_mrr, failed_attempt,
     mask) = _FIXED.unpack_from(buf)
    r = _Reader(buf, _FIXED.size)
    n_times = (mask & ~_FLAGS).bit_count()
    times = r.raw("q", n_times) if mask & _WIDE_TIMES else r.raw("i", n_times)
    account_id, plan, currency, traits, offsets, *extra = orjson.loads(buf[r.pos:r.pos + n_strings])
    r.pos += n_strings
    base_day = base // DAY_S
    clock = base_day + clock_delta
    eng = Engagement(clock_day=clock)

    bitmaps = []
    for _ in range(2):
        n = buf[r.pos]
        bitmaps.append(int.from_bytes(buf[r.pos + 1:r.pos + 1 + n], "little"))
        r.pos += 1 + n
    present, used = bitmaps
    offs = [i for i, c in enumerate(reversed(bin(present)[2:])) if c == "1"] if present else []
    n_recent = sum(1 for off in offs if off < DETAIL_DAYS)
    sessions, uses, api = r.col(len(offs)), r.col(n_recent), r.col(n_recent)
    days = eng.days
    for i, off in enumerate(offs):
        if i < n_recent:
            days[clock - off] = [sessions[i], uses[i], api[i], 0, 0]
        else:
            days[clock - off] = [sessions[i], used >> off & 1, 0, 0, 0]
    sparse = r.col(3 * r.count())
    for i in range(0, len(sparse), 3):
        b = days[clock - sparse[i]]
        b[3] = sparse[i + 1]
        b[4] = sparse[i + 2]
    for table in (eng.users, eng.features):
        n = r.count()
        keys = r.raw("I", n)
        size = (BITMAP_DAYS * n + 7) // 8
        acc = int.from_bytes(buf[r.pos:r.pos + size], "little")
        r.pos += size
        bits = [acc >> (BITMAP_DAYS * i) & BITMAP_MASK for i in range(n)]
        gone = iter(r.col(bits.count(0)))
        for k, word in zip(keys, bits):  # noqa: B905 - equal lengths (see _Reader)
            # The last active day is the newest set bit (lowest offset), else stored.
            table[k] = [word, clock - (word & -word).bit_length() + 1 if word else clock - next(gone)]
    for pairs in (eng.nps, eng.roles):
        n = r.count()
        keys, ats, vals = r.raw("I", n), r.col(n), r.raw("B", n)
        pairs.update({k: (base - a, v) for k, a, v in zip(keys, ats, vals)})  # noqa: B905 - equal lengths (see _Reader)
    n = r.count()
    keys, opened, closed = r.raw("I", n), r.col(n), r.col(n)
    eng.tickets = {
        k: [clock - o + 1 if o else -1, clock - c + 1 if c else -1]
        for k, o, c in zip(keys, opened, closed)  # noqa: B905 - equal lengths (see _Reader)
    }
    n = r.count()
    snapshots = [(base - at, mrr) for at, mrr in zip(r.col(n), r.col(n))]  # noqa: B905 - equal lengths (see _Reader)
    n = r.count()
    fps = r.raw("I", n)
    seconds = []
    at = base
    for gap in r.small(n):
        at -= gap
        seconds.append(at)
    seconds.reverse()
    seen = [seen_key(at, fp) for at, fp in zip(seconds, fps)]  # noqa: B905 - equal lengths (see _Reader)

    state = AccountState(
        account_id,
        plan=plan,
        seats=seats,
        plan_mrr=plan_mrr,
        currency=currency,
        billing_interval=INTERVALS[(codes >> 6) - 1] if codes >> 6 else None,
        cancel_scheduled=bool(cancel_flag),
        failed_attempt=failed_attempt,
        stage=STAGES[codes >> 3 & 7],
        traits=traits,
        first_seen_day=base_day - first_seen + 1 if first_seen else None,

        engagement=eng,
        offsets=offsets,
        seen=seen,
        snapshots=snapshots,
        seen_fps={fp for fp in fps},
        base_status=STATUSES[codes & 7],
        key_user_removed_role=int(extra[0]) if extra else 0,
    )
    it = iter(times)
    for i, name in enumerate(_TIME_FIELDS):
        if mask >> i & 1:
            setattr(eng if name in _ENG_TIMES else state, name, next(it) + base)
    derive_billing(state)
    return state


# --- read model -----------------------------------------------------------------------------------------------


def _window(w: WindowFigures) -> dict[str, Any]:
    return {
        "from": day_date(w.first_day).isoformat(),
        "to": day_date(w.last_day).isoformat(),
        "active_days": w.active_days,
        "sessions": w.sessions,
        "feature_uses": w.feature_uses,
        "api_calls": w.api_calls,
        "active_users": w.active_users,
        "breadth": w.breadth,
        "stickiness": None if w.stickiness is None else round(w.stickiness, 4),
        "limit_hits": w.limit_hits,
        "tickets": w.tickets,
    }


def _iso(seconds: int | None) -> str | None:
    at = utc_from_s(seconds)
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def to_read_model(
    state: AccountState,
    as_of: date | datetime | None = None,
    weights: HealthWeights | None = None,
    *,
    config: DomainConfig | None = None,
) -> dict[str, Any]:
    """The account's health record for Redis / HTTP / the health topic (orjson-serialisable).

    as_of defaults to the state's clock day (its newest event, or advance()), so the record is a pure function
    of the state: replaying the same events gives the same record. Weights, targets, key roles and lifecycle
    thresholds come from `config` (defaults when None); `weights` overrides config.health_weights.
    `open_alerts` is left empty for the alert layer to fill.
    """
    cfg = config or _DEFAULT_CONFIG
    day = state.as_of_day if as_of is None else day_index(as_of)
    summary = engagement_summary(state, day, key_roles=cfg.key_roles)
    health = health_score(state, day, weights or cfg.health_weights, cfg.health_targets, summary)
    stage = state.stage if day == state.as_of_day else lifecycle_stage(state, day, cfg)
    return {
        "account_id": state.account_id,
        "as_of": day_date(day).isoformat(),
        "score": health.score,
        "components": {k: round(v, 2) for k, v in health.components.items()},
        "trend": round(health.trend, 2),
        "stage": stage,
        "status": state.status,
        "plan": state.plan,
        "seats": state.seats,
        "mrr": state.mrr,
        "currency": state.currency,
        "billing_interval": state.billing_interval,
        "renews_at": _iso(state.renews_at_s),
        "cancel_at": _iso(state.cancel_effective_s),
        "failed_payment_attempts": state.failed_payment_attempts,
        "cohort": state.cohort,
        "traits": state.traits,
        "last_activity": _iso(state.engagement.last_activity_s),
        "last_event_at": _iso(state.last_event_s),
        "engagement": {
            "last7": _window(summary.last7),
            "prev7": _window(summary.prev7),
            "last30": _window(summary.last30),
            "prev30": _window(summary.prev30),
            "last90": _window(summary.last90),
            "tracked_days": summary.tracked_days,
            "open_tickets": summary.open_tickets,
            "nps": None if summary.nps is None else round(summary.nps, 1),
            "nps_responses": summary.nps_responses,
            "key_users": summary.key_users,
            "time_to_first_value_days": (
                None if summary.time_to_first_value_days is None else round(summary.time_to_first_value_days, 2)
            ),
        },
        "open_alerts": [],
    }

