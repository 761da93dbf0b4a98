"""Typed runtime settings for the worker and CLI, read from CHURNWATCH_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.gc_tuning import GEN0_THRESHOLD


class Settings(BaseSettings):
    """Everything the worker needs; env vars are `CHURNWATCH_<FIELD>` (e.g. CHURNWATCH_KAFKA_BOOTSTRAP)."""

    model_config = SettingsConfigDict(env_prefix="CHURNWATCH_", env_file=None, extra="ignore")

    app_id: str = Field("churnwatch", description="Faust app id: consumer group and changelog topic prefix.")

    # --- Kafka -------------------------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    # Partitions and replication are explicit: Faust's defaults silently differ per topic.
    topic_partitions: int = Field(4, ge=1, le=1024)
    topic_replication_factor: int = Field(1, ge=1, le=16)
    # Prefix for every topic name (tests use a unique one per run).
    topic_prefix: str = ""

    billing_topic: str = "billing-events"
    usage_topic: str = "usage-events"
    stripe_topic: str = "stripe-events"
    segment_topic: str = "segment-events"
    alerts_topic: str = "churn-alerts"
    alert_actions_topic: str = "alert-actions"
    dead_letter_topic: str = "churnwatch-dead-letters"
    health_topic: str = "account-health"
    # Internal: per-account cohort inputs, one partition so one worker aggregates the whole portfolio.
    cohort_inputs_topic: str = "churnwatch-cohort-inputs"

    # --- Processing --------------------------------------------------------------------------
    # 2000, not 500: fewer, larger batches and table writes; with the producer batching below, +65% events/s
    # in the benchmark (ADR 0008; the two changes were measured together).
    batch_size: int = Field(2000, ge=1, le=100_000, description="Events per stream.take batch.")
    # Max wait to fill a batch once its first record is in, seconds. Short (ADR 0012): under load batches fill on
    # their own while the previous one is applied; under light load this wait is pure event-to-alert latency.
    # 5 ms, not 10 (ADR 0020): event-to-alert p50 23-24 ms instead of 30 at 15,000 events/s, p99 the same.
    batch_timeout_s: float = Field(0.005, gt=0, le=60, description="Max wait to fill a batch, seconds.")
    # Longest the broker holds the worker's fetch request when the partitions in it have no new records,
    # milliseconds (Kafka's fetch.max.wait.ms; Faust fixes it at 1500). The client has one fetch in flight per
    # broker, and while records of some partitions wait to be taken it asks only for the others, often the idle
    # ones: the busy partitions then wait out this hold. 1500 put 0.4-1.5 s of input delay under a
    # 9,000 events/s live load (ADR 0015).
    fetch_max_wait_ms: int = Field(20, ge=1, le=30_000)
    # Fewest bytes the broker gathers for the worker's fetch answer before fetch_max_wait_ms is up (Kafka's
    # fetch.min.bytes). With 1, a lightly loaded worker fetches once per few records, and aiokafka encodes and
    # decodes each request in Python: ~0.25 of a core at 700 events/s. 65536 cut that to 0.07 of a core, and every
    # answer then waits up to fetch_max_wait_ms: event-to-alert p50 19 -> 31 ms there (ADR 0026).
    fetch_min_bytes: int = Field(1, ge=1, le=50 * 1024 * 1024)
    max_event_bytes: int = Field(64 * 1024, ge=256, le=10 * 1024 * 1024)
    # Producer batching for changelog, health, alert and cohort sends (ADR 0008): how long a send may wait for
    # others to share its request, seconds, and the most bytes per partition batch.
    producer_linger_s: float = Field(0.005, ge=0, le=1)
    producer_max_batch_bytes: int = Field(512 * 1024, ge=16 * 1024, le=900 * 1024)
    # Write-back of account states (ADR 0010): a changed state reaches the table (and its changelog) at most this
    # long after its first unwritten change, seconds, or as soon as this many accounts wait to be written; the
    # records applied to them are acknowledged (committed) after the write. Longer: fewer writes, more re-read
    # after a crash or rebalance. 10 s, not 2 s (ADR 0014): a busy account is encoded once per interval, and
    # encoding was a third of the worker's time at 2 s.
    state_flush_interval_s: float = Field(10.0, ge=0.01, le=60)
    state_flush_accounts: int = Field(20_000, ge=1, le=1_000_000)
    # A flush is written in steps of at most this long, seconds, with batches in between (ADR 0012): the longest
    # a flush holds up the account stream, and so a floor under the event-to-alert latency while one runs. A
    # quarter of it while the worker has slack (ADR 0034).
    state_flush_step_s: float = Field(0.02, ge=0.001, le=10)
    # The share of the event loop background work takes while it runs, 0-1 (ADR 0020): a flush's steps (writes,
    # then acknowledgements) and the portfolio refresh's computation (a thread, which otherwise takes the
    # interpreter from batches half the time). After t seconds of such work it waits t * (1 - duty) / duty, batches
    # running meanwhile; a flush stops waiting once it has run 0.9 of state_flush_interval_s, so it always ends (ADR 0031).
    # Back to back (1.0), a flush took ~0.8 s of every 10 s at 15,000 events/s and batches fell 0.1-0.3 s behind.
    # 0.1 since ADR 0023 (0.25 before): a worker at 70 % load has little of the loop to spare for it.
    background_duty: float = Field(0.1, gt=0, le=1)
    # Decoded account states kept in memory besides the unwritten ones (least recently used out): ~9 KB each,
    # so 20,000 is ~180 MB. An account in the cache costs no decode when its next event comes.
    state_cache_accounts: int = Field(20_000, ge=0, le=10_000_000)
    # Young-generation threshold of Python's garbage collector, net allocations (ADR 0013): start-up objects are
    # frozen and full collections, which traverse every cached account state, run ~70x less often. 0 keeps
    # CPython's default (700, no freeze).
    gc_gen0_threshold: int = Field(GEN0_THRESHOLD, ge=0, le=10_000_000)
    store: str = Field("memory://", description="Faust table store: memory:// or rocksdb://")
    data_dir: Path = Path("./.churnwatch-data")
    standby_replicas: int = Field(0, ge=0, le=8)
    # The consumer group's session timeout, seconds (Faust's broker_session_timeout, whose default, 60 s, this
    # keeps). A worker that dies without leaving the group (SIGKILL, OOM, node loss) holds its partitions this long,
    # and a lone worker restarted after a crash is not ready before it passes. Lower moves them sooner, but a worker
    # whose consumer thread stalls longer than this is evicted and its partitions move. Brokers refuse values outside
    # group.min.session.timeout.ms (6 s) .. group.max.session.timeout.ms (30 min) by default.
    session_timeout_s: float = Field(60.0, ge=6, le=1800)
    # Kafka's segment.bytes for the tables' changelog topics, set when the worker creates them (ADR 0028). A
    # memory:// worker restores a table by reading all of its changelog, and Kafka compacts only closed segments:
    # the open one, up to this size per partition, keeps every state version written since it opened. Kafka's
    # default, 1 GiB, is ~1.2 million states per partition to read at each start (~870 B each with key and record
    # overhead); 64 MiB is ~77,000. Bytes.
    changelog_segment_bytes: int = Field(64 * 2**20, ge=2**20, le=2**30)
    thresholds_file: Path | None = None
    # A changed health record is published (topic + Redis) at most this often per account unless the account
    # has a new alert transition or cohort change, which publish at once. Seconds. 30, not 5: a health record
    # costs ~0.3-0.7 ms to build and send, and with 5 s busy accounts published one per event or so; 30 s gave
    # +30% events/s in the benchmark (ADR 0010). Health moves on a scale of days; alerts are never delayed.
    publish_interval_s: float = Field(30.0, ge=0.05, le=3600)
    # Time-driven alert rules are evaluated at each partition's event-time watermark this often, seconds.
    alert_tick_s: float = Field(30.0, ge=0.2, le=3600)
    # The event-time watermark trails the newest usage event by this much (bounded out-of-orderness), seconds.
    watermark_delay_s: float = Field(3600.0, ge=0, le=7 * 86400)
    # Wall-clock fallback: a partition with no new usage for this long follows the worker's highest watermark.
    idle_partition_s: float = Field(300.0, ge=0.1, le=86400)
    # Usage waits for the billing partition of its number (ADR 0009) at most this long, seconds; past it, the
    # waiting usage is applied anyway and counted in churnwatch_usage_wait_forced_total.
    usage_wait_max_s: float = Field(120.0, ge=1, le=3600)
    # Cohort / company metrics are recomputed from all accounts' cohort inputs this often, seconds.
    cohort_refresh_s: float = Field(30.0, ge=0.5, le=3600)
    # Segment dimension for retention / LTV breakdowns: "plan" or any account trait (e.g. industry).
    segment_dimension: str = Field("plan", min_length=1, max_length=64)
    gross_margin: float | None = Field(None, gt=0, le=1, description="Optional gross margin for LTV.")

    # --- Redis read model --------------------------------------------------------------------
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    redis_key_prefix: str = "churnwatch:"
    # Health records expire if an account goes silent for this long (seconds): keeps Redis bounded.
    redis_ttl_s: int = Field(90 * 24 * 3600, ge=60)
    redis_enabled: bool = True

    # --- Web ---------------------------------------------------------------------------------
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)
    # Host other workers use to reach this one (requests for accounts it owns are forwarded here).
    # Defaults to web_host; set it to the pod / host name when binding 0.0.0.0.
    web_advertised_host: str | None = None

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def heartbeat_interval_s(self) -> float:
        """Seconds between group heartbeats: a sixth of the session timeout, at most Faust's default 3 s (Kafka asks
        for at most a third, so a session survives a couple of lost heartbeats)."""
        return min(3.0, self.session_timeout_s / 6)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_has_port(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"'{server}' is not host:port")
        return value

    def topic(self, name: str) -> str:
        """Full topic name with the configured prefix."""
        return f"{self.topic_prefix}{name}"

    @property
    def broker_url(self) -> str:
        return ",".join(f"kafka://{s.strip()}" for s in self.kafka_bootstrap.split(","))


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (used by the CLI and tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
