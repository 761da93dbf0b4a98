"""Topic setup with kafka-python's admin client: explicit partitions and replication, idempotent."""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

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


def ensure_topics(settings: Settings) -> dict[str, str]:
    """Create every topic the app uses (not Faust's own changelogs); returns name -> 'created'/'exists'."""
    names = topic_names(settings)
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
        return result
    except KafkaError as exc:
        raise RuntimeError(f"topic setup against {settings.kafka_bootstrap} failed: {exc}") from exc
    finally:
        admin.close()
