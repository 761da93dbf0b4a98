"""The CLI reports wrong flags, values and paths in one line, without a traceback."""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True, env=env)


def test_an_unknown_flag_is_reported_in_one_line() -> None:
    out = run_cli("stack", "up", "--frobnicate")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert "--frobnicate" in out.stderr


def test_an_unknown_stack_action_is_reported_in_one_line() -> None:
    out = run_cli("stack", "sideways")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert "sideways" in out.stderr


def test_producing_a_missing_file_says_which_file_in_one_line() -> None:
    out = run_cli("produce", "/no/such/events.jsonl")
    assert out.returncode == 1
    assert out.stderr.strip() == "churnwatch produce: no such file: /no/such/events.jsonl"
    assert "Traceback" not in out.stderr


def test_an_invalid_setting_is_named_in_one_line() -> None:
    import os

    env = {**os.environ, "CHURNWATCH_TOPIC_PARTITIONS": "zero"}
    out = run_cli("topics", env=env)
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1
    assert "CHURNWATCH_TOPIC_PARTITIONS" in out.stderr


def test_help_lists_every_command() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("worker", "stack", "topics", "produce", "demo", "convert"):
        assert command in out.stdout
