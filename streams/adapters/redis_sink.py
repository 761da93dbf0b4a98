"""Redis read model sink: latest record per key, flushed in pipelines, tolerant of Redis being down."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError, NoScriptError, RedisError, ResponseError

from streams.adapters.metrics import Metrics

log = logging.getLogger(__name__)

# Key layout (documented in docs/read-model.md):
#   {prefix}account:{account_id}        JSON health record, TTL = settings.redis_ttl_s
#   {prefix}alerts:{account_id}         JSON list of open alerts (same TTL)
#   {prefix}accounts:by_score           sorted set account_id -> health score (no TTL; ZREM on expiry is lazy)
#   {prefix}cohort:{YYYY-MM}            JSON list of cohort cells
#   {prefix}company:{YYYY-MM}           JSON company month

# Sets a chunk of records with one TTL: KEYS are the records' keys, ARGV[1] the TTL in seconds, ARGV[i + 1] the
# value of KEYS[i]. One command a chunk instead of one SET a record: 3-6 instead of 15-28 CPU-us a record in the
# worker (ADR 0033). Redis runs no other command while a call runs: ~2 us a record, ~0.5 ms a chunk.
SET_WITH_TTL_SCRIPT = """
local ttl = ARGV[1]
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ttl)
end
return #KEYS
"""
# Records per script call (above ~200 the worker's cost a record no longer falls; Redis's pause grows).
SCRIPT_CHUNK = 250


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
        # The script's SHA1 once Redis has it; None before the first write and after Redis lost its script cache.
        self._script_sha: str | None = None
        # False once Redis refused scripting (an ACL without @scripting, EVAL disabled): one SET a record since.
        self.scripting = True

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
            await self._write(batch, scores)
        except BaseException:
            # Keep values that arrived while we were writing: they are newer.
            for key, value in batch.items():
                self._pending.setdefault(key, value)
            for member, score in scores.items():
                self._scores.setdefault(member, score)
            raise
        self._metrics.redis_writes.inc(len(batch))
        return len(batch)

    async def _write(self, batch: dict[str, bytes], scores: dict[str, float]) -> None:
        """The records by script chunks (one SET each without scripting), then the scores, in one pipeline.

        Every command is an idempotent overwrite, so running the whole pipeline again after a partial failure is
        safe. A Redis that restarted has lost the script: it is loaded again and the pipeline run again, once. A
        Redis that refuses the script (NOPERM) gets the same records as SETs at once."""
        reloaded = False
        while True:
            if self.scripting and self._script_sha is None:
                await self._load_script()
            try:
                await self._pipeline(self._script_sha, batch, scores)
                return
            except NoScriptError:
                if reloaded:
                    raise
                self._script_sha, reloaded = None, True
            except NoPermissionError as exc:
                if self._script_sha is None:
                    raise  # the SETs themselves were refused: an ordinary write failure
                self._no_scripting(exc)

    async def _pipeline(self, sha: str | None, batch: dict[str, bytes], scores: dict[str, float]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            if sha is not None:
                items = list(batch.items())
                for start in range(0, len(items), SCRIPT_CHUNK):
                    chunk = items[start:start + SCRIPT_CHUNK]
                    pipe.evalsha(sha, len(chunk), *[k for k, _ in chunk], self._ttl_s, *[v for _, v in chunk])
            else:
                for key, value in batch.items():
                    pipe.set(key, value, ex=self._ttl_s)
            if scores and self._zset_key:
                pipe.zadd(self._zset_key, scores)
            await pipe.execute()

    async def _load_script(self) -> None:
        try:
            self._script_sha = await self._client.script_load(SET_WITH_TTL_SCRIPT)
        except ResponseError as exc:
            # NOPERM (an ACL without @scripting) or an unknown command (scripting renamed away) will not pass;
            # any other error is an ordinary failed write, retried with the script.
            if not isinstance(exc, NoPermissionError) and "unknown command" not in str(exc).lower():
                raise
            self._no_scripting(exc)

    def _no_scripting(self, exc: Exception) -> None:
        self.scripting, self._script_sha = False, None
        log.warning("redis sink: Redis refused scripting (%s); writing one SET a record from now on (ADR 0033)",
                    str(exc).split("\n")[0][:200])

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
