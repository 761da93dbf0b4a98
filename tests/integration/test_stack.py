"""`churnwatch stack up` is idempotent and `down` leaves no process of ours behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams import stack
from tests.support.stack_fixtures import free_port

pytestmark = pytest.mark.integration


def churnwatch(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_stack_up_twice_then_down_leaves_no_broker_or_redis_of_ours(tmp_path: Path) -> None:
    base = stack.StackConfig.from_env()
    ports = {"CHURNWATCH_STACK_KAFKA_PORT": free_port(), "CHURNWATCH_STACK_CONTROLLER_PORT": free_port(),
             "CHURNWATCH_STACK_REDIS_PORT": free_port()}
    env = {**os.environ, "CHURNWATCH_STACK_HOME": str(base.home), **{k: str(v) for k, v in ports.items()}}
    cfg = stack.StackConfig(home=base.home, kafka_port=ports["CHURNWATCH_STACK_KAFKA_PORT"],
                            controller_port=ports["CHURNWATCH_STACK_CONTROLLER_PORT"],
                            redis_port=ports["CHURNWATCH_STACK_REDIS_PORT"])
    try:
        first = churnwatch("stack", "up", env=env)
        assert first.returncode == 0, first.stderr
        print(first.stdout)
        kafka_pid = int((cfg.run_dir / "kafka.pid").read_text())
        redis_pid = int((cfg.run_dir / "redis.pid").read_text())
        second = churnwatch("stack", "up", env=env)
        assert second.returncode == 0, second.stderr
        assert "reusing it" in second.stdout
        assert int((cfg.run_dir / "kafka.pid").read_text()) == kafka_pid
        status = churnwatch("stack", "status", env=env)
        assert f"running (pid {kafka_pid})" in status.stdout
    finally:
        down = churnwatch("stack", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert not stack._pid_alive(kafka_pid)
    assert not stack._pid_alive(redis_pid)
    assert not stack.port_open(cfg.kafka_port)
    assert not stack.port_open(cfg.redis_port)
    assert stack.status(cfg) == {"kafka": "stopped", "redis": "stopped"}
