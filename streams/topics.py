"""Every Kafka topic churnwatch reads or writes, with its key and value contract, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from streams.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    """A topic the pipeline uses: setting name, key, value contract and whether churnwatch writes it."""

    setting: str  # name of the Settings field holding the topic name
    key: str
    value: str
    produced_by_churnwatch: bool
    compacted: bool = False
    partitions: int | None = None  # None: settings.topic_partitions


# Keys are always the UTF-8 account id (bytes) so every topic is co-partitioned with the account table.
TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("billing_topic", "account_id", "schemas.events.BillingEvent (JSON) or a CloudEvent", False),
    TopicSpec("usage_topic", "account_id", "schemas.events.UsageEvent (JSON) or a CloudEvent", False),
    TopicSpec("stripe_topic", "any (re-keyed by customer)", "raw Stripe webhook event (JSON)", False),
    TopicSpec("segment_topic", "any (re-keyed by groupId)", "Segment / RudderStack call (JSON)", False),
    TopicSpec("alert_actions_topic", "account_id", "alert action (acknowledge / snooze / resolve)", False),
    TopicSpec("alerts_topic", "account_id", "schemas.alerts.AlertRecord v1 (JSON)", True),
    TopicSpec("health_topic", "account_id", "account health read model (JSON)", True, compacted=True),
    TopicSpec("dead_letter_topic", "source key or none", "schemas.deadletter.DeadLetter (JSON)", True),
    TopicSpec(
        "cohort_inputs_topic", "account_id (or agents.USAGE_FRONTS_KEY, ADR 0025)",
        "streams.domain.aggregate.cohort_snapshot (JSON); usage fronts (JSON) under USAGE_FRONTS_KEY", True,
        compacted=True, partitions=1,
    ),
)


def topic_names(settings: Settings) -> dict[str, str]:
    """Setting name -> full topic name (with the configured prefix)."""
    return {spec.setting: settings.topic(getattr(settings, spec.setting)) for spec in TOPICS}


def changelog_topic_name(app_id: str, table: str) -> str:
    """Faust's name for a table's changelog topic (`<app id>-<table>-changelog`): operators alter it, the
    benchmark writes one, tests read them."""
    return f"{app_id}-{table}-changelog"
