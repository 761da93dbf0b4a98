"""Secrets set through the environment never appear in a worker's log or HTTP answers (DESIGN §7)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest

from tests.reliability.streams_under_test import WORKER_ENV
from tests.support.stack_fixtures import RunEnv, start_worker, wait_for_http

pytestmark = pytest.mark.reliability


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode(errors="replace"))
    except OSError:
        return ""


def test_kafka_sasl_password_and_redis_password_are_never_printed(run_env: RunEnv,
                                                                  summary: dict[str, Any]) -> None:
    sasl_secret = f"sasl-{uuid.uuid4().hex}"
    redis_secret = f"redis-{uuid.uuid4().hex}"
    host_port = run_env.stack.redis_url.split("//", 1)[1].split("/", 1)[0]
    env = {
        **WORKER_ENV,
        # PLAINTEXT broker: the SASL password is unused, but it is configured and must never be printed.
        "CHURNWATCH_KAFKA_SASL_USERNAME": "churnwatch",
        "CHURNWATCH_KAFKA_SASL_PASSWORD": sasl_secret,
        # The local redis has no password: AUTH fails, so the error path (the likeliest leak) is exercised.
        "CHURNWATCH_REDIS_URL": f"redis://default:{redis_secret}@{host_port}/0",
        "CHURNWATCH_LOG_LEVEL": "DEBUG",
    }
    w = start_worker(run_env, "w1", extra_env=env, wait_ready=False)
    try:
        assert wait_for_http(f"{w.base_url}/ready", 90, w.proc) or w.proc.poll() is not None
        answers = [_get(f"{w.base_url}{p}") for p in ("/ready", "/health", "/metrics", "/accounts/nobody")]
        time.sleep(3)  # let sink retries log their errors
    finally:
        w.stop()
    log = w.log()
    assert log, "the worker wrote no log at all"
    for secret in (sasl_secret, redis_secret):
        leaks = [ln for ln in log.splitlines() if secret in ln]
        assert not leaks, f"secret printed in the worker log ({len(leaks)} lines), e.g.: {leaks[0][:300]}"
        assert not any(secret in a for a in answers), "secret in an HTTP answer"
    print(f"[secrets] {len(log.splitlines())} log lines and 4 HTTP answers checked: no SASL or Redis password")
