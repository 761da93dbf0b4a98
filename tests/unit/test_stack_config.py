"""The local stack refuses ports owned by someone else and keeps its files in one known folder."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from streams import stack


def test_run_folder_is_per_port_pair(tmp_path: Path) -> None:
    a = stack.StackConfig(home=tmp_path, kafka_port=1, redis_port=2)
    b = stack.StackConfig(home=tmp_path, kafka_port=3, redis_port=4)
    assert a.run_dir != b.run_dir
    assert a.run_dir.parent == tmp_path / "run"


def test_a_redis_port_in_use_by_another_process_gives_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = stack.StackConfig(home=tmp_path, redis_port=port)
        with pytest.raises(stack.StackError) as err:
            stack.start_redis(cfg)
    assert f"port {port} is in use by another process" in str(err.value)
    assert "\n" not in str(err.value)


def test_status_of_a_stack_that_never_ran_is_stopped(tmp_path: Path) -> None:
    cfg = stack.StackConfig(home=tmp_path, kafka_port=1, controller_port=2, redis_port=3)
    assert stack.status(cfg) == {"kafka": "stopped", "redis": "stopped"}


def test_a_pidfile_pointing_at_a_foreign_process_is_not_ours(tmp_path: Path) -> None:
    pidfile = tmp_path / "kafka.pid"
    pidfile.write_text("1")  # pid 1 is alive but is not a Kafka broker we started
    assert stack._our_pid(pidfile, "kafka.Kafka") is None
