"""Kafka SASL/SCRAM (plain and over TLS) and Redis AUTH on a real broker: right credentials work, wrong are refused."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import redis

from streams import stack
from tests.reliability.streams_under_test import WORKER_ENV
from tests.support.kafka_io import read_topic
from tests.support.stack_fixtures import RunEnv, WorkerProc, start_worker

pytestmark = pytest.mark.reliability

# Own ports and own stack home: the demo, test and bench stacks use 9092 / 19092 / 27092 (bench). Below Linux's
# ephemeral range (32768-60999): 38092 once failed to bind on a fresh machine because an outgoing client
# connection of the same test session had been given that local port.
KAFKA_PORT, CONTROLLER_PORT, SASL_PORT, REDIS_PORT = 17092, 17093, 17094, 17379
USER = "churnwatch-worker"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ACCOUNTS = [f"sec-{i}" for i in range(4)]


@dataclass(frozen=True)
class SecureStack:
    cfg: stack.StackConfig
    sasl_password: str
    redis_password: str


# The Kafka protocol of the broker's extra listener; tests choose it with indirect parametrization.
PLAIN = pytest.mark.parametrize("secure_stack", ["SASL_PLAINTEXT"], indirect=True)
BOTH = pytest.mark.parametrize("secure_stack", ["SASL_PLAINTEXT", "SASL_SSL"], indirect=True)
TLS = pytest.mark.parametrize("secure_stack", ["SASL_SSL"], indirect=True)


@pytest.fixture(scope="module")
def secure_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    """A broker with a SCRAM-SHA-256 listener (SASL_PLAINTEXT or SASL_SSL) and a redis-server with requirepass."""
    home = tmp_path_factory.mktemp("secure-stack")
    # A fresh home means freshly formatted storage (SCRAM users are added at format time); the jars already
    # resolved into the shared cache are linked in, read-only, so no Maven run is needed.
    shared_kafka = stack.StackConfig.from_env().jars_dir.parent
    if shared_kafka.is_dir():
        (home / shared_kafka.name).symlink_to(shared_kafka)
    sasl_password = f"scram-{secrets.token_hex(12)}"
    redis_password = f"redis-{secrets.token_hex(12)}"
    cfg = stack.StackConfig(
        home=home, kafka_port=KAFKA_PORT, controller_port=CONTROLLER_PORT, redis_port=REDIS_PORT,
        sasl_port=SASL_PORT, scram_users=((USER, sasl_password),), redis_password=redis_password,
        sasl_tls=request.param == "SASL_SSL",
    )
    try:
        stack.up(cfg)
        yield SecureStack(cfg, sasl_password, redis_password)
    finally:
        stack.down(cfg)  # only the pids this config started (its own run dir)


def secure_run(sec: SecureStack, tmp: Path, *, sasl_password: str | None = None) -> RunEnv:
    """Settings of one deployment that reaches Kafka only through the SASL listener and Redis with AUTH."""
    run_id = f"s{uuid.uuid4().hex[:10]}"
    env = {
        **WORKER_ENV,
        "CHURNWATCH_KAFKA_BOOTSTRAP": sec.cfg.sasl_bootstrap,
        "CHURNWATCH_KAFKA_SECURITY_PROTOCOL": sec.cfg.sasl_protocol,
        "CHURNWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "CHURNWATCH_KAFKA_SASL_USERNAME": USER,
        "CHURNWATCH_KAFKA_SASL_PASSWORD": sasl_password or sec.sasl_password,
        "CHURNWATCH_REDIS_URL": f"redis://:{sec.redis_password}@127.0.0.1:{sec.cfg.redis_port}/0",
        "CHURNWATCH_APP_ID": f"churnwatch-{run_id}",
        "CHURNWATCH_TOPIC_PREFIX": f"{run_id}.",
        "CHURNWATCH_REDIS_KEY_PREFIX": f"{run_id}:",
        "CHURNWATCH_TOPIC_PARTITIONS": "4",
        "CHURNWATCH_BATCH_TIMEOUT_S": "0.1",
        "CHURNWATCH_PUBLISH_INTERVAL_S": "0.2",
    }
    if sec.cfg.sasl_tls:
        env["CHURNWATCH_KAFKA_SSL_CAFILE"] = str(sec.cfg.tls_cafile)
    return RunEnv(sec.cfg, run_id, tmp, env)


def cli(run: RunEnv, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`churnwatch ARGS` with the run's settings in the environment, as an operator would call it."""
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env={**os.environ, **run.env},
                          capture_output=True, text=True, timeout=timeout)


def events_file(path: Path) -> Path:
    lines = []
    for a in ACCOUNTS:
        lines.append({"event_id": f"{a}-0", "account_id": a, "type": "subscription.started",
                      "occurred_at": T0.isoformat(), "plan": "team", "seats": 5, "mrr": 19900, "currency": "USD"})
        for n in range(1, 6):
            lines.append({"event_id": f"{a}-{n}", "account_id": a, "type": "session.started",
                          "occurred_at": (T0 + timedelta(hours=n)).isoformat(), "user_id": f"{a}-u{n % 2}"})
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in lines))
    return path


@BOTH
def test_a_worker_with_scram_credentials_and_redis_auth_processes_events_and_never_logs_the_secrets(
        secure_stack: SecureStack, tmp_path: Path) -> None:
    started = time.monotonic()
    run = secure_run(secure_stack, tmp_path)
    settings = run.settings()
    topics = cli(run, "topics")
    assert topics.returncode == 0, topics.stderr
    assert "created" in topics.stdout
    w = start_worker(run, "w1", extra_env={"CHURNWATCH_LOG_LEVEL": "DEBUG"})
    try:
        produced = cli(run, "produce", str(events_file(tmp_path / "events.jsonl")), "--to", "canonical")
        assert produced.returncode == 0, produced.stderr
        assert f"produced {len(ACCOUNTS) * 6} records" in produced.stdout

        r = redis.Redis.from_url(settings.redis_url.get_secret_value())
        records: dict[str, dict[str, object]] = {}
        deadline = time.monotonic() + 60
        # Until each account's record shows its subscription: billing waits for the usage stream to pass it
        # (ADR 0006) and health records are coalesced, so an earlier record may come first.
        while time.monotonic() < deadline and not (
                len(records) == len(ACCOUNTS) and all(rec.get("mrr") == 19900 for rec in records.values())):
            for a in ACCOUNTS:
                raw = r.get(f"{settings.redis_key_prefix}account:{a}")
                if raw is not None:
                    records[a] = orjson.loads(raw)
            time.sleep(0.3)
        r.close()
        assert sorted(records) == ACCOUNTS, w.log()[-3000:]
        assert all(rec["mrr"] == 19900 and rec["plan"] == "team" for rec in records.values())

        with urllib.request.urlopen(f"{w.base_url}/accounts/{ACCOUNTS[1]}", timeout=5) as resp:
            body = orjson.loads(resp.read())
        assert body["account_id"] == ACCOUNTS[1] and body["mrr"] == 19900

        # The health topic read back through the SASL listener by kafka-python (the tools' client).
        health = read_topic(settings, settings.topic(settings.health_topic), expect=len(ACCOUNTS), timeout_s=30)
        assert {k.decode() for k, _v in health if k} == set(ACCOUNTS)
    finally:
        w.stop()
    log = w.log()
    assert "SaslAuthenticationFailed" not in log
    for name, secret in (("SASL", secure_stack.sasl_password), ("Redis", secure_stack.redis_password)):
        for where, text in (("worker log", log), ("topics output", topics.stdout + topics.stderr),
                            ("produce output", produced.stdout + produced.stderr)):
            leaks = [ln for ln in text.splitlines() if secret in ln]
            assert not leaks, f"{name} password printed in the {where}, e.g.: {leaks[0][:300]}"
    print(f"[security] SCRAM-SHA-256 over {secure_stack.cfg.sasl_protocol} {secure_stack.cfg.sasl_bootstrap} + Redis AUTH: "
          f"{len(ACCOUNTS)} accounts in Redis, HTTP and the health topic; {len(log.splitlines())} DEBUG log lines "
          f"without either password ({time.monotonic() - started:.1f} s)")


@PLAIN
def test_a_wrong_scram_password_is_refused_with_a_clear_error(secure_stack: SecureStack, tmp_path: Path) -> None:
    good = secure_run(secure_stack, tmp_path)
    assert cli(good, "topics").returncode == 0
    wrong_password = f"wrong-{secrets.token_hex(8)}"
    bad = secure_run(secure_stack, tmp_path, sasl_password=wrong_password)
    bad.env.update({k: good.env[k] for k in ("CHURNWATCH_APP_ID", "CHURNWATCH_TOPIC_PREFIX")})
    broker_log = secure_stack.cfg.run_dir / "kafka.log"
    refusals_before = broker_log.read_text(errors="replace").count("Failed authentication")
    started = time.monotonic()
    # kafka-python (the CLI's client) retries a refused login until its 30 s bootstrap timeout: run it alongside.
    topics = subprocess.Popen([sys.executable, "-m", "streams.cli", "topics"], env={**os.environ, **bad.env},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    w = worker_that_should_exit(bad, "wrong")
    worker_s = time.monotonic() - started
    out, err = topics.communicate(timeout=90)
    cli_s = time.monotonic() - started

    log = w.log()
    assert w.proc.returncode not in (0, None), "the worker kept running with a wrong SASL password"
    assert "SaslAuthenticationFailed" in log and "invalid credentials" in log, log[-3000:]
    assert topics.returncode == 1
    assert err.startswith("churnwatch topics: "), err
    # kafka-python logs the broker's refusal while it retries; on a loaded machine its 30 s bootstrap timeout can
    # end the retries before one is logged, and the line then says it could not bootstrap. Both are one line;
    # the broker's log (below) proves the refusal either way.
    if "authentication refused" in err:
        assert "invalid credentials with SASL mechanism SCRAM-SHA-256" in err
    else:
        assert "Unable to bootstrap" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert wrong_password not in log + out + err
    assert broker_log.read_text(errors="replace").count("Failed authentication") > refusals_before
    print(f"[security] wrong SCRAM password: worker exited {w.proc.returncode} after {worker_s:.1f} s, "
          f"`churnwatch topics` after {cli_s:.1f} s with: {err.strip()[:160]}")


def worker_that_should_exit(run: RunEnv, name: str, timeout_s: float = 90) -> WorkerProc:
    """Start a worker expected to fail on its own; give it timeout_s to exit, then stop it (asserted by callers).
    The worker first checks its topics (up to 30 s when it cannot log in), then Faust reports the failure."""
    w = start_worker(run, name, wait_ready=False)
    try:
        w.proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        pass
    finally:
        w.stop()
    return w


@PLAIN
def test_redis_refuses_clients_without_the_password(secure_stack: SecureStack) -> None:
    port = secure_stack.cfg.redis_port
    for url in (f"redis://127.0.0.1:{port}/0", f"redis://:not-{secure_stack.redis_password}@127.0.0.1:{port}/0"):
        client = redis.Redis.from_url(url)
        with pytest.raises(redis.AuthenticationError):
            client.set("churnwatch:probe", b"x")
        client.close()
    client = redis.Redis.from_url(f"redis://:{secure_stack.redis_password}@127.0.0.1:{port}/0")
    assert client.ping()
    client.close()
    print(f"[security] redis on {port}: no password and a wrong password refused, the right one accepted")


@TLS
def test_a_worker_that_does_not_trust_the_brokers_certificate_does_not_connect(secure_stack: SecureStack,
                                                                            tmp_path: Path) -> None:
    run = secure_run(secure_stack, tmp_path)
    assert cli(run, "topics").returncode == 0
    del run.env["CHURNWATCH_KAFKA_SSL_CAFILE"]  # the system trust store does not know the self-signed certificate
    w = worker_that_should_exit(run, "untrusting")
    log = w.log()
    assert w.proc.returncode not in (0, None), "the worker ran against a broker certificate it cannot verify"
    assert "CERTIFICATE_VERIFY_FAILED" in log, log[-3000:]
    assert secure_stack.sasl_password not in log
    print(f"[security] without the CA file the worker exits {w.proc.returncode}: certificate verify failed")
