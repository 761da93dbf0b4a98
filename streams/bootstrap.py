"""The one place that wires settings, Faust app, topics, tables, agents, web views, metrics and Redis."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from streams.adapters import rocksdb_store
from streams.adapters.metrics import Metrics
from streams.adapters.offset_probe import OffsetProbe
from streams.adapters.redis_sink import RedisSink
from streams.admin import kafka_client_config
from streams.compiled import build_mode, stale_message, stale_modules
from streams.domain.aggregate import Rules
from streams.domain.config import DomainConfig
from streams.domain.portfolio import Portfolio
from streams.settings import Settings
from streams.topics import topic_names

log = logging.getLogger(__name__)


@dataclass
class Context:
    """Everything agents and views need, built once per app (no module-level globals)."""

    settings: Settings
    app: faust.App
    metrics: Metrics
    domain: DomainConfig
    rules: Rules
    sink: RedisSink | None
    offset_probe: OffsetProbe
    topics: dict[str, Any]
    account_to_state: Any  # faust Table[bytes, bytes]: account id -> encoded AccountAggregate
    account_to_cohort_inputs: Any  # faust Table[bytes, bytes]: account id -> cohort snapshot (1 partition)
    ready: bool = False
    cohort_dirty: bool = True
    # The account agent's state, decoded and possibly newer than the table (ADR 0010): key -> aggregate or None.
    load_account: Callable[[bytes], Any] = lambda key: None
    portfolio: Portfolio | None = None
    batch_input: Any = None  # streams.adapters.batch_input.BatchInput of the account agent (ADR 0011)


def _broker_credentials(settings: Settings) -> Any:
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    ssl_context = None
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        ssl_context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
    if settings.kafka_sasl_mechanism:
        password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username or "",
            password=password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl_context,
        )
    return faust.SSLCredentials(ssl_context) if ssl_context else None


def _raw_topic(app: faust.App, *names: str) -> Any:
    # Raw bytes in and out: we decode with orjson/pydantic ourselves (much faster than faust.Record).
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def _store_options(settings: Settings) -> dict[str, Any]:
    if not settings.store.startswith("rocksdb"):
        return {}
    # Cap RocksDB memory on small machines: 32 MiB block cache, 2 x 16 MiB write buffers per partition.
    return {"options": {"block_cache_size": 32 * 2**20, "write_buffer_size": 16 * 2**20,
                        "max_write_buffer_number": 2, "max_open_files": 256}}


def create_app(settings: Settings, *, registry: CollectorRegistry | None = None) -> faust.App:
    """Build the Faust app for these settings. Nothing connects until the worker starts."""
    from streams import agents, web  # local import: they need the Context type defined above

    stale = stale_modules()
    if stale:
        log.warning(stale_message(stale))
    log.info("domain core: %s (ADR 0018)", build_mode())
    rocksdb_store.register()
    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        broker_credentials=_broker_credentials(settings),
        store=rocksdb_store.store_url(settings.store),
        datadir=str(settings.data_dir),
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        table_standby_replicas=settings.standby_replicas,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        # Our own source topics are created by `churnwatch topics`; only changelogs are Faust's.
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=settings.producer_linger_s,
        producer_max_batch_size=settings.producer_max_batch_bytes,
        processing_guarantee="at_least_once",
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_advertised_host or settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
    )
    names = topic_names(settings)
    topics = {
        # One serial stream for everything that changes an account: events and people's alert actions.
        "canonical": _raw_topic(app, names["billing_topic"], names["usage_topic"], names["alert_actions_topic"]),
        "billing": _raw_topic(app, names["billing_topic"]),
        "usage": _raw_topic(app, names["usage_topic"]),
        "raw": _raw_topic(app, names["stripe_topic"], names["segment_topic"]),
        "alerts": _raw_topic(app, names["alerts_topic"]),
        "alert_actions": _raw_topic(app, names["alert_actions_topic"]),
        "dead_letters": _raw_topic(app, names["dead_letter_topic"]),
        "cohort_inputs": _raw_topic(app, names["cohort_inputs_topic"]),
    }
    # Both changelogs are read whole when a memory:// worker starts: segments this size bound the uncompacted part.
    changelog_configs = {"segment.bytes": str(settings.changelog_segment_bytes)}  # ADR 0028
    # use_partitioner: with batched processing the "current event" is the batch's last one, so the
    # changelog partition must come from the key, not the event (see docs/adr/0003-batching-and-tables.md).
    account_to_state = app.Table(
        "account_to_state",
        default=None,
        # bytes key and value types make Faust use the "raw" codec: we encode state ourselves.
        key_type=bytes,
        value_type=bytes,
        partitions=settings.topic_partitions,
        use_partitioner=True,
        extra_topic_configs=changelog_configs,
        **_store_options(settings),
    )
    account_to_cohort_inputs = app.Table(
        "account_to_cohort_inputs",
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=1,  # co-partitioned with the 1-partition cohort-inputs topic
        use_partitioner=True,
        extra_topic_configs=changelog_configs,
    )
    metrics = Metrics(registry)
    sink = (
        RedisSink(settings.redis_url.get_secret_value(), metrics, ttl_s=settings.redis_ttl_s)
        if settings.redis_enabled
        else None
    )
    domain = DomainConfig()
    ctx = Context(
        settings=settings, app=app, metrics=metrics, domain=domain, rules=Rules.load(settings.thresholds_file, domain),
        sink=sink, offset_probe=OffsetProbe(settings.app_id, kafka_client_config(settings)),
        topics=topics, account_to_state=account_to_state, account_to_cohort_inputs=account_to_cohort_inputs,
    )
    agents.register(ctx)
    web.register(ctx)
    app.churnwatch = ctx  # type: ignore[attr-defined]
    return app
