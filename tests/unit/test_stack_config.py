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


def test_the_default_broker_has_no_sasl_listener(tmp_path: Path) -> None:
    props = stack._server_properties(stack.StackConfig(home=tmp_path), tmp_path / "data")
    assert "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n" in props
    assert "sasl" not in props.lower()


def test_a_sasl_port_adds_a_scram_listener_and_no_password_reaches_the_properties_or_repr(tmp_path: Path) -> None:
    cfg = stack.StackConfig(home=tmp_path, kafka_port=1, controller_port=2, sasl_port=3,
                            scram_users=(("worker", "scram-secret"),), redis_password="redis-secret")
    props = stack._server_properties(cfg, tmp_path / "data")
    assert "advertised.listeners=PLAINTEXT://127.0.0.1:1,SASL_PLAINTEXT://127.0.0.1:3\n" in props
    assert "listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-256" in props
    assert cfg.sasl_bootstrap == "127.0.0.1:3" and cfg.sasl_protocol == "SASL_PLAINTEXT"
    for secret in ("scram-secret", "redis-secret"):
        assert secret not in props and secret not in repr(cfg) and secret not in cfg.redis_url


def test_a_scram_password_the_format_tool_cannot_parse_is_refused(tmp_path: Path) -> None:
    cfg = stack.StackConfig(home=tmp_path, sasl_port=3, scram_users=(("worker", "a,b"),))
    with pytest.raises(stack.StackError, match="must not contain"):
        stack._server_properties(cfg, tmp_path / "data")
