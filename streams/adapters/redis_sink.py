"""Redis read model sink: latest record per key, flushed in pipelines, tolerant of Redis being down."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from streams.adapters.metrics import Metrics

log = logging.getLogger(__name__)

# Key layout (documented in docs/read-model.md):
#   {prefix}account:{account_id}        JSON health record, TTL = settings.redis_ttl_s
#   {prefix}alerts:{account_id}         JSON list of open alerts (same TTL)
#   {prefix}accounts:by_score           sorted set account_id -> health score (no TTL; ZREM on expiry is lazy)
#   {prefix}cohort:{YYYY-MM}            JSON list of cohort cells
#   {prefix}company:{YYYY-MM}           JSON company month


class RedisSink:
    """Holds the newest value per key and writes it; a newer value replaces a pending older one.

    Writes are SETs of whole records (idempotent), so retrying after an outage converges to the
    tables' state without ordering worries. Pending size is bounded by the number of distinct keys.
    """

    def __init__(
        self, url: str, metrics: Metrics, *, ttl_s: int, flush_interval_s: float = 0.25,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._client = aioredis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._metrics = metrics
        self._ttl_s = ttl_s
        self._flush_interval_s = flush_interval_s
        self._max_backoff_s = max_backoff_s
        self._pending: dict[str, bytes] = {}
        self._scores: dict[str, float] = {}
        self._zset_key: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.connected = False

    def put(self, key: str, value: bytes) -> None:
        self._pending[key] = value

    def put_score(self, zset_key: str, member: str, score: float) -> None:
        self._zset_key = zset_key
        self._scores[member] = score

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._scores)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="redis-sink")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=5)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        await self._client.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    async def flush_once(self) -> int:
        """Write everything pending; on failure put it back (newer values win) and re-raise."""
        if not self._pending and not self._scores:
            return 0
        batch, self._pending = self._pending, {}
        scores, self._scores = self._scores, {}
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, value in batch.items():
                    pipe.set(key, value, ex=self._ttl_s)
                if scores and self._zset_key:
                    pipe.zadd(self._zset_key, scores)
                await pipe.execute()
        except BaseException:
            # Keep values that arrived while we were writing: they are newer.
            for key, value in batch.items():
                self._pending.setdefault(key, value)
            for member, score in scores.items():
                self._scores.setdefault(member, score)
            raise
        self._metrics.redis_writes.inc(len(batch))
        return len(batch)

    async def _run(self) -> None:
        backoff = self._flush_interval_s
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush_once()
                self.connected = True
                backoff = self._flush_interval_s
            except (RedisError, OSError) as exc:
                if self.connected:
                    log.warning("redis sink: write failed (%s); will retry", type(exc).__name__)
                self.connected = False
                self._metrics.redis_retries.inc()
                self._metrics.redis_failures.labels(type(exc).__name__).inc()
                backoff = min(self._max_backoff_s, backoff * 2)
            self._metrics.redis_pending.set(self.pending)
            if self._stopping and (not self.pending or not self.connected):
                return
