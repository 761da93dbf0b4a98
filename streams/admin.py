"""Topic setup with kafka-python's admin client: explicit partitions and replication, idempotent."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, SaslAuthenticationFailedError, TopicAlreadyExistsError

from streams.settings import Settings
from streams.topics import TOPICS, topic_names


def kafka_client_config(settings: Settings) -> dict[str, object]:
    """Connection options shared by every kafka-python client (admin, tool producers and consumers)."""
    cfg: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        cfg["sasl_mechanism"] = settings.kafka_sasl_mechanism
        cfg["sasl_plain_username"] = settings.kafka_sasl_username
        cfg["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
        )
    if settings.kafka_ssl_cafile:
        cfg["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    return cfg


class _SaslFailureSeen(logging.Handler):
    """Keeps the SASL refusal that kafka-python (3.0.x) only logs before retrying until its bootstrap timeout."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reason: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        for arg in record.args if isinstance(record.args, tuple) else ():
            if isinstance(arg, SaslAuthenticationFailedError):
                self.reason = str(arg.args[0]) if arg.args else type(arg).__name__


@contextmanager
def kafka_errors(settings: Settings, what: str) -> Iterator[None]:
    """Turn a kafka-python failure into one RuntimeError line; a refused login says so instead of 'timed out'."""
    seen = _SaslFailureSeen()
    logger = logging.getLogger("kafka")
    logger.addHandler(seen)
    try:
        yield
    except KafkaError as exc:
        cause = f"authentication refused: {seen.reason}" if seen.reason else str(exc)
        raise RuntimeError(f"{what} against {settings.kafka_bootstrap} failed: {cause}") from exc
    finally:
        logger.removeHandler(seen)


def ensure_topics(settings: Settings) -> dict[str, str]:
    """Create every topic the app uses (not Faust's own changelogs); returns name -> 'created'/'exists'."""
    names = topic_names(settings)
    with kafka_errors(settings, "topic setup"):
        admin = KafkaAdminClient(client_id=f"{settings.app_id}-admin", **kafka_client_config(settings))
        try:
            existing = set(admin.list_topics())
            result: dict[str, str] = {}
            wanted = []
            for spec in TOPICS:
                name = names[spec.setting]
                if name in existing:
                    result[name] = "exists"
                    continue
                configs = {"cleanup.policy": "compact"} if spec.compacted else {}
                wanted.append(
                    NewTopic(
                        name=name,
                        num_partitions=spec.partitions or settings.topic_partitions,
                        replication_factor=settings.topic_replication_factor,
                        topic_configs=configs,
                    )
                )
                result[name] = "created"
            if wanted:
                try:
                    admin.create_topics(wanted, timeout_ms=30_000)
                except TopicAlreadyExistsError:
                    pass  # a concurrent setup won the race: same outcome
                # CreateTopics answers before every broker's metadata lists the topics: return only once
                # they are visible, so a worker started right after does not join its group without them.
                missing = _await_visible(admin, [t.name for t in wanted], timeout_s=30.0)
                if missing:
                    raise RuntimeError(f"topics created but not visible after 30 s: {', '.join(missing)}")
            return result
        finally:
            admin.close()


def missing_topics(settings: Settings, *, timeout_s: float = 30.0) -> list[str]:
    """The app's topics still absent from the broker's metadata after waiting up to timeout_s (empty: all there).

    A Faust worker that joins its group while its source topics are missing from metadata is assigned nothing
    and sits idle until the next metadata refresh (5 min): seen on a freshly started broker, right after
    `churnwatch topics`. The worker checks this before it starts."""
    names = [topic_names(settings)[spec.setting] for spec in TOPICS]
    with kafka_errors(settings, "topic check"):
        admin = KafkaAdminClient(client_id=f"{settings.app_id}-admin", **kafka_client_config(settings))
        try:
            return _await_visible(admin, names, timeout_s=timeout_s)
        finally:
            admin.close()


def _await_visible(admin: KafkaAdminClient, names: list[str], *, timeout_s: float) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        missing = sorted(set(names) - set(admin.list_topics()))
        if not missing or time.monotonic() >= deadline:
            return missing
        time.sleep(0.2)
