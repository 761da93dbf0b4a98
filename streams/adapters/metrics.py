"""Prometheus metrics for the worker, built on an injected registry so tests get a fresh one each."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from streams import __version__

# Event-to-alert latency spans milliseconds (live) to days (late events): buckets in seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400)
BATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
# A flush is paced to CHURNWATCH_BACKGROUND_DUTY (ADR 0020): about its work / duty in wall time, seconds, up to half
# of CHURNWATCH_STATE_FLUSH_INTERVAL_S (at most 60 s) plus its work.
# One step of background work is about CHURNWATCH_STATE_FLUSH_STEP_S (0.02 s) by design, a quarter of it
# while the worker has slack (ADR 0034); the upper buckets show overruns.
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 1)
FLUSH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80)


class Metrics:
    """All churnwatch series; the worker updates them once per batch, not once per event."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "churnwatch_events", "Input events by topic, canonical type and outcome.",
            ["topic", "type", "outcome"], registry=r,
        )
        self.dead_letters = Counter(
            "churnwatch_dead_letters", "Inputs sent to the dead-letter topic, by reason.", ["reason"], registry=r
        )
        self.alerts = Counter(
            "churnwatch_alerts", "Alert records published, by trigger, severity and lifecycle transition.",
            ["trigger", "severity", "transition"], registry=r,
        )
        self.event_to_alert = Histogram(
            "churnwatch_event_to_alert_latency_seconds",
            "Event time of the triggering event to publication of the alert record, seconds.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.batch_duration = Histogram(
            "churnwatch_batch_duration_seconds", "Wall time to process one batch of events, seconds.",
            ["agent"], buckets=BATCH_BUCKETS, registry=r,
        )
        self.batch_events = Counter(
            "churnwatch_batch_events", "Events handled in batches, by agent (rate / batches = mean size).",
            ["agent"], registry=r,
        )
        self.consumer_lag = Gauge(
            "churnwatch_consumer_lag_messages", "Messages behind the partition's high watermark.",
            ["topic", "partition"], registry=r,
        )
        self.event_time_lag = Gauge(
            "churnwatch_event_time_lag_seconds",
            "Wall clock minus the newest event time processed, per input partition, seconds.",
            ["topic", "partition"], registry=r,
        )
        self.table_keys = Gauge(
            "churnwatch_table_keys", "Keys held by this worker's table partitions.", ["table"], registry=r
        )
        self.input_rewinds = Counter(
            "churnwatch_input_rewinds",
            "Input partitions sought back because a record arrived ahead of its predecessors (ADR 0007).",
            ["topic"], registry=r,
        )
        self.input_gaps = Counter(
            "churnwatch_input_gaps",
            "Input offsets found to hold no record (transaction markers, retention) and stepped over (ADR 0007).",
            ["topic"], registry=r,
        )
        self.usage_waiting = Gauge(
            "churnwatch_usage_waiting_records",
            "Usage records read but waiting for the billing partition of their number to be read (ADR 0009).",
            registry=r,
        )
        self.usage_waited = Counter(
            "churnwatch_usage_waited",
            "Usage records that waited for the billing partition of their number before being applied (ADR 0009).",
            registry=r,
        )
        self.usage_forced = Counter(
            "churnwatch_usage_wait_forced",
            "Usage records applied without their billing partition being read, a wait limit reached (ADR 0009).",
            registry=r,
        )
        self.out_of_order = Counter(
            "churnwatch_applied_out_of_order",
            "Events applied to an account after the other stream had passed them in event time: billing dated "
            "before usage the account already had (stream=billing), usage dated before applied billing "
            "(stream=usage). Alerts around them can differ from a time-ordered replay (ADR 0009).",
            ["stream"], registry=r,
        )
        self.state_bytes = Histogram(
            "churnwatch_account_state_bytes", "Serialised size of an account's state when written, bytes.",
            buckets=(128, 256, 512, 768, 1024, 1536, 2048, 4096, 8192), registry=r,
        )
        self.state_flushes = Counter(
            "churnwatch_state_flushes", "Write-backs of changed account states to the table (ADR 0010).", registry=r
        )
        self.state_flush_accounts = Counter(
            "churnwatch_state_flush_accounts",
            "Account states written by flushes (events / this = events per table write).", registry=r
        )
        self.state_flush_duration = Histogram(
            "churnwatch_state_flush_duration_seconds",
            "Wall time of one flush from its start to its acknowledgements, batches in between included, seconds.",
            buckets=FLUSH_BUCKETS, registry=r,
        )
        self.stream_held = Histogram(
            "churnwatch_stream_held_seconds",
            "Wall time one step of background work held up the account stream, by work (flush, acknowledge, health, "
            "tick), seconds.",
            ["work"], buckets=STEP_BUCKETS, registry=r,
        )
        self.state_cache_dropped = Counter(
            "churnwatch_state_cache_dropped_accounts",
            "Unwritten account states dropped at a rebalance; their records are read again (ADR 0010).",
            registry=r,
        )
        # A worker owning more accounts than CHURNWATCH_STATE_CACHE_ACCOUNTS decodes evicted ones again (~0.08 ms
        # each): in steady state this should stay near 0 (docs/operations.md, Scale).
        self.state_cache_loads = Counter(
            "churnwatch_state_cache_loads",
            "Account states decoded from the table because they were not in the state cache.",
            registry=r,
        )
        self.state_cache_accounts = Gauge(
            "churnwatch_state_cache_accounts",
            "Account states in the state cache, unwritten ones included (set after each flush).",
            registry=r,
        )
        self.output_records_failed = Counter(
            "churnwatch_output_records_failed",
            "Output records the Kafka client did not deliver where nothing awaits them (health records), by topic.",
            ["topic"], registry=r,
        )
        self.redis_writes = Counter(
            "churnwatch_redis_sink_writes", "Read-model records written to Redis.", registry=r
        )
        self.redis_retries = Counter(
            "churnwatch_redis_sink_retries", "Redis flushes that failed and will be retried.", registry=r
        )
        self.redis_failures = Counter(
            "churnwatch_redis_sink_failures", "Redis errors seen by the read-model sink, by kind.",
            ["kind"], registry=r,
        )
        self.redis_pending = Gauge(
            "churnwatch_redis_sink_pending_records", "Read-model records waiting for Redis.", registry=r
        )
        self.cohort_retention = Gauge(
            "churnwatch_cohort_customer_retention_ratio",
            "Share of an activation cohort's customers still paying, by months since activation (0-1).",
            ["cohort", "age"], registry=r,
        )
        self.company_mrr = Gauge(
            "churnwatch_company_mrr_minor_units", "Company MRR at the end of the latest month, minor units.",
            ["currency"], registry=r,
        )
        self.company_customers = Gauge(
            "churnwatch_company_paying_customers", "Paying customers at the end of the latest month.", registry=r
        )
        self.portfolio_front = Gauge(
            "churnwatch_portfolio_front_timestamp_seconds",
            "Event time every usage partition has reached, epoch seconds (ADR 0025): a month is final once this is "
            "past its end plus the lateness allowance. 0 while a usage partition has no front.", registry=r,
        )
        self.usage_front = Gauge(
            "churnwatch_usage_front_timestamp_seconds",
            "Per usage partition, the event-time front the portfolio counts, epoch seconds (ADR 0025); 0: none yet.",
            ["partition"], registry=r,
        )
        self.build = Info("churnwatch_build", "Build information.", registry=r)
        self.build.info({"version": __version__})

    def record_events(self, tally: Tally[tuple[str, str, str]]) -> None:
        """Add one batch's (topic, type, outcome) counts in a single pass."""
        events = self.events
        for (topic, etype, outcome), n in tally.items():
            events.labels(topic, etype, outcome).inc(n)

    def record_portfolio(self, portfolio: Any) -> None:
        """Export the latest cohort grid and company month (set on the worker that computes them)."""
        for cell in portfolio.cells:
            if cell.segment is None and cell.customer_retention is not None:
                self.cohort_retention.labels(cell.cohort, str(cell.age)).set(cell.customer_retention)
        company = [m for m in portfolio.months if m.segment is None]
        if company:
            last = company[-1]
            # Amounts are summed without currency conversion (docs/metrics.md): label the main currency.
            self.company_mrr.labels("all").set(last.mrr_end)
            self.company_customers.set(last.customers_end)

    def record_portfolio_front(self, front: float, fronts: Sequence[float | None]) -> None:
        """The portfolio front and each usage partition's front (None: none yet, exported as 0); set on the worker
        that owns the cohort-inputs partition, when its portfolio refresh takes the front."""
        self.portfolio_front.set(front)
        for partition, at in enumerate(fronts):
            self.usage_front.labels(str(partition)).set(at or 0.0)

    def record_dead_letters(self, tally: Tally[str]) -> None:
        for reason, n in tally.items():
            self.dead_letters.labels(reason).inc(n)
