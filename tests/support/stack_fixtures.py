"""Fixtures that start (or reuse) the real Kafka broker and redis-server, and real worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from streams import stack
from streams.admin import ensure_topics
from streams.settings import Settings
from streams.tools.processes import free_port, stop_process
from streams.tools.processes import wait_http as wait_for_http

# Test stack ports differ from the defaults so a developer's own stack (9092 / 6379) is left alone.
TEST_KAFKA_PORT = int(os.environ.get("CHURNWATCH_TEST_KAFKA_PORT", "19092"))
TEST_CONTROLLER_PORT = int(os.environ.get("CHURNWATCH_TEST_CONTROLLER_PORT", "19093"))
TEST_REDIS_PORT = int(os.environ.get("CHURNWATCH_TEST_REDIS_PORT", "16379"))


@pytest.fixture(scope="session")
def local_stack() -> Iterator[stack.StackConfig]:
    """The real broker and Redis on test ports; started here unless already running, stopped if we started it."""
    base = stack.StackConfig.from_env()
    cfg = stack.StackConfig(
        home=base.home, kafka_port=TEST_KAFKA_PORT, controller_port=TEST_CONTROLLER_PORT,
        redis_port=TEST_REDIS_PORT,
    )
    before = stack.status(cfg)
    started_here = not before["kafka"].startswith("running") or not before["redis"].startswith("running")
    stack.up(cfg)
    print(f"[tests] kafka {cfg.bootstrap} and redis {cfg.redis_url} ({'started' if started_here else 'reused'})")
    yield cfg
    if started_here and not os.environ.get("CHURNWATCH_TEST_KEEP_STACK"):
        stack.down(cfg)


@dataclass
class RunEnv:
    """One isolated pipeline deployment on the shared stack: its own topic prefix and consumer group."""

    stack: stack.StackConfig
    run_id: str
    tmp: Path
    env: dict[str, str] = field(default_factory=dict)

    def settings(self, **overrides: object) -> Settings:
        return Settings(**{**_env_to_fields(self.env), **overrides})  # type: ignore[arg-type]


def _env_to_fields(env: dict[str, str]) -> dict[str, str]:
    return {k[len("CHURNWATCH_"):].lower(): v for k, v in env.items() if k.startswith("CHURNWATCH_")}


@pytest.fixture
def run_env(local_stack: stack.StackConfig, tmp_path: Path) -> Iterator[RunEnv]:
    run_id = f"t{uuid.uuid4().hex[:10]}"
    env = {
        "CHURNWATCH_KAFKA_BOOTSTRAP": local_stack.bootstrap,
        "CHURNWATCH_REDIS_URL": local_stack.redis_url,
        "CHURNWATCH_APP_ID": f"churnwatch-{run_id}",
        "CHURNWATCH_TOPIC_PREFIX": f"{run_id}.",
        "CHURNWATCH_REDIS_KEY_PREFIX": f"{run_id}:",
        "CHURNWATCH_TOPIC_PARTITIONS": "4",
        "CHURNWATCH_BATCH_TIMEOUT_S": "0.1",
    }
    r = RunEnv(local_stack, run_id, tmp_path, env)
    ensure_topics(r.settings())
    yield r
    _delete_run_topics(r)


def _delete_run_topics(run: RunEnv) -> None:
    """Delete the run's topics (its own and Faust's changelogs): a reused stack home otherwise piles up tens of
    thousands of partitions, and a broker restart then takes minutes to load them."""
    from kafka import KafkaAdminClient

    from streams.admin import kafka_client_config

    try:
        admin = KafkaAdminClient(client_id=f"{run.run_id}-cleanup", **kafka_client_config(run.settings()))
    except Exception as exc:  # the broker is down (a test stopped it): the next clean stack home is clean anyway
        print(f"[tests] topics of {run.run_id} not deleted: {type(exc).__name__}")
        return
    try:
        mine = [t for t in admin.list_topics() if run.run_id in t]
        if mine:
            admin.delete_topics(mine, timeout_ms=30_000)
    except Exception as exc:
        print(f"[tests] topics of {run.run_id} not deleted: {type(exc).__name__}: {exc}")
    finally:
        admin.close()


@dataclass
class WorkerProc:
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = 15, timeout: float = 30) -> None:
        stop_process(self.proc, timeout, sig)


def start_worker(run: RunEnv, name: str = "w1", extra_env: dict[str, str] | None = None,
                 wait_ready: bool = True) -> WorkerProc:
    port = free_port()
    data = run.tmp / f"data-{name}"
    env = {**os.environ, **run.env, "CHURNWATCH_WEB_PORT": str(port), "CHURNWATCH_DATA_DIR": str(data),
           **(extra_env or {})}
    log_path = run.tmp / f"worker-{name}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker"], env=env,
        stdout=open(log_path, "ab"),  # noqa: SIM115 - the child owns the log file for its lifetime
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    w = WorkerProc(proc, f"http://127.0.0.1:{port}", log_path)
    if wait_ready and not wait_for_http(f"{w.base_url}/ready", 90, proc):
        w.stop(9)
        pytest.fail(f"worker {name} not ready in 90 s; log tail:\n{w.log()[-3000:]}")
    return w


@pytest.fixture
def worker_factory(run_env: RunEnv) -> Iterator[object]:
    started: list[WorkerProc] = []

    def factory(name: str = "w1", **kw: object) -> WorkerProc:
        w = start_worker(run_env, name, **kw)  # type: ignore[arg-type]
        started.append(w)
        return w

    yield factory
    for w in started:
        w.stop()
