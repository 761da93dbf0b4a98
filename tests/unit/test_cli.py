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


def test_a_replay_with_zero_jobs_is_refused_in_one_line() -> None:
    out = run_cli("replay", "--jobs", "0", "events.jsonl")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "churnwatch replay: error: argument --jobs: must be 'auto' or a whole number from 1 to 64, got '0' "
        "(see --help)"]


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


def run_with_worker_logging(level: str, *lines: str) -> subprocess.CompletedProcess[str]:
    """`lines` run in a fresh process after a worker's logging is set up at `level` (setting it up replaces the
    root logger's handlers, so not in this one)."""
    code = "\n".join([
        "import logging",
        "from streams.bootstrap import create_app",
        "from streams.cli import make_worker",
        "from streams.settings import Settings",
        f"worker = make_worker(create_app(Settings()), {level!r})",
        "worker._setup_logging()",
        *lines,
    ])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out


def test_a_worker_logging_at_warning_leaves_debug_records_unbuilt() -> None:
    # Faust's start-up spinner used to set the root logger to DEBUG at WARNING and ERROR: every debug call of
    # aiokafka and Faust then built a record that no handler printed.
    out = run_with_worker_logging(
        "WARNING",
        "print(logging.getLevelName(logging.root.level),"
        " logging.getLogger('aiokafka.producer.producer').isEnabledFor(logging.DEBUG))",
    )
    assert out.stdout.split() == ["WARNING", "False"]


def test_a_worker_logs_faust_producer_backpressure_at_debug_not_as_a_warning() -> None:
    # Faust's producer logger logs its "producer buffer full" warning and an unrelated one, the worker at INFO.
    out = run_with_worker_logging(
        "INFO",
        "log = logging.getLogger('faust.transport.producer')",
        "log.warning(f'producer buffer full size {1234}')",
        "log.warning('something else is wrong')",
    )
    printed = out.stdout + out.stderr
    assert "something else is wrong" in printed
    assert "producer buffer full" not in printed
