"""Settings come from CHURNWATCH_* variables, validate early and never reveal secrets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.settings import Settings


def test_settings_read_the_churnwatch_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURNWATCH_KAFKA_BOOTSTRAP", "broker-1:9093,broker-2:9093")
    monkeypatch.setenv("CHURNWATCH_TOPIC_PARTITIONS", "12")
    s = Settings()
    assert s.kafka_bootstrap == "broker-1:9093,broker-2:9093"
    assert s.topic_partitions == 12
    assert s.broker_url == "kafka://broker-1:9093,kafka://broker-2:9093"


def test_secrets_do_not_appear_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURNWATCH_KAFKA_SASL_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("CHURNWATCH_REDIS_URL", "redis://:redis-pass-xyz@127.0.0.1:6379/0")
    s = Settings()
    text = repr(s) + str(s) + s.model_dump_json()
    assert "hunter2-secret" not in text
    assert "redis-pass-xyz" not in text
    assert s.kafka_sasl_password is not None
    assert s.kafka_sasl_password.get_secret_value() == "hunter2-secret"


def test_a_bootstrap_address_without_a_port_is_rejected() -> None:
    with pytest.raises(ValidationError, match="not host:port"):
        Settings(kafka_bootstrap="localhost")


def test_http_is_bound_to_localhost_by_default() -> None:
    assert Settings().web_host == "127.0.0.1"


def test_topic_names_carry_the_configured_prefix() -> None:
    s = Settings(topic_prefix="staging.")
    assert s.topic(s.alerts_topic) == "staging.churn-alerts"


def test_a_changelog_segment_smaller_than_kafkas_minimum_is_rejected() -> None:
    with pytest.raises(ValidationError, match="changelog_segment_bytes"):
        Settings(changelog_segment_bytes=1024)


def test_both_tables_ask_for_changelog_segments_of_the_configured_size() -> None:
    # A memory:// worker reads a table's whole changelog at a start; closed segments are compacted (ADR 0028).
    from streams.bootstrap import create_app

    app = create_app(Settings(changelog_segment_bytes=8 * 2**20))
    configs = {name: app.tables[name].changelog_topic.config for name in ("account_to_state", "account_to_cohort_inputs")}
    assert configs == {name: {"segment.bytes": str(8 * 2**20)} for name in configs}


def test_the_group_session_keeps_fausts_minute_unless_set_and_heartbeats_a_sixth_of_it() -> None:
    from streams.bootstrap import create_app

    default = create_app(Settings()).conf
    assert (default.broker_session_timeout, default.broker_heartbeat_interval) == (60.0, 3.0)
    short = create_app(Settings(session_timeout_s=6)).conf
    assert (short.broker_session_timeout, short.broker_heartbeat_interval) == (6.0, 1.0)


def test_a_session_timeout_below_the_brokers_minimum_is_rejected() -> None:
    with pytest.raises(ValidationError, match="session_timeout_s"):
        Settings(session_timeout_s=2)


def test_the_changelog_topic_name_is_the_one_faust_gives_each_table() -> None:
    from streams.bootstrap import create_app
    from streams.topics import changelog_topic_name

    app = create_app(Settings(app_id="churnwatch-prod"))
    for table in ("account_to_state", "account_to_cohort_inputs"):
        assert changelog_topic_name("churnwatch-prod", table) == app.tables[table].changelog_topic.get_topic_name()
