"""kafka-python failures become one line; a refused SASL login is named as such, not as a bootstrap timeout."""

from __future__ import annotations

import logging

import pytest
from kafka.errors import KafkaTimeoutError, SaslAuthenticationFailedError

from streams.admin import kafka_errors
from streams.settings import Settings

SETTINGS = Settings(kafka_bootstrap="127.0.0.1:1")  # type: ignore[call-arg]


def test_a_refused_login_logged_before_the_timeout_is_the_reason_given() -> None:
    refused = SaslAuthenticationFailedError("Authentication failed due to invalid credentials")
    with pytest.raises(RuntimeError) as err, kafka_errors(SETTINGS, "topic setup"):
        # What kafka-python 3.0 does: log the refusal, retry, then time out.
        logging.getLogger("kafka.net.manager").warning("Bootstrap connection to %s failed: %s", "b-0", refused)
        raise KafkaTimeoutError("Unable to bootstrap")
    assert str(err.value) == ("topic setup against 127.0.0.1:1 failed: authentication refused: "
                              "Authentication failed due to invalid credentials")
    assert not [h for h in logging.getLogger("kafka").handlers if type(h).__name__ == "_SaslFailureSeen"]


def test_any_other_kafka_failure_keeps_its_own_message() -> None:
    with pytest.raises(RuntimeError) as err, kafka_errors(SETTINGS, "producing"):
        raise KafkaTimeoutError("Unable to bootstrap")
    assert str(err.value).startswith("producing against 127.0.0.1:1 failed: ")
    assert "Unable to bootstrap" in str(err.value) and "authentication" not in str(err.value)
