"""The `churnwatch` command: worker, local stack, topic setup, producing files, demo, convert."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

if TYPE_CHECKING:
    import faust
    from faust.worker import Worker


class CliError(Exception):
    """A user-facing problem, printed as one line without a traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, naming the command: no usage dump, no traceback.
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _settings(**overrides: object):  # type: ignore[no-untyped-def]
    from streams.settings import load_settings

    try:
        return load_settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise CliError(f"invalid setting CHURNWATCH_{field.upper()}: {first['msg']}") from None


class FaustBackpressureAtDebug(logging.Filter):
    """Faust's "producer buffer full size N" WARNING, logged at DEBUG.

    Faust logs it each time the records sent with `send_soon` exceed its buffer's limit and the stream waits for
    them to leave: dozens of lines in the seconds a worker catches up after a start or a rebalance (65 in one
    bench worker's catch-up, none once caught up). That is Faust's normal backpressure, nothing an operator can
    act on, and a WARNING on every restart teaches people to ignore warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and str(record.msg).startswith("producer buffer full size"):
            if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def make_worker(app: faust.App, log_level: str) -> Worker:
    """Faust's worker for `app`, logging at `log_level` and nothing below it."""
    from faust.worker import Worker

    worker = Worker(app, loglevel=log_level.lower(), quiet=True, redirect_stdouts=False)
    # Faust's start-up spinner, kept at WARNING and ERROR, sets the root logger to DEBUG so that it turns on every
    # record, and leaves it there: every debug call of aiokafka and Faust then builds a record no handler prints
    # (~2 per produced message; 9 % of a bench worker's profile at WARNING). Without it the root logger keeps
    # `log_level`. Faust drops the spinner itself below WARNING.
    worker.spinner = None
    logging.getLogger("faust.transport.producer").addFilter(FaustBackpressureAtDebug())
    return worker


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.adapters.batch_input import FaustVersionError
    from streams.admin import missing_topics
    from streams.bootstrap import create_app
    from streams.gc_tuning import tune_gc

    overrides = {}
    if args.web_port:
        overrides["web_port"] = args.web_port
    settings = _settings(**overrides)
    try:
        missing = missing_topics(settings)
    except RuntimeError:
        missing = []  # the broker is unreachable or refuses the login: Faust reports that itself, as before
    if missing:
        raise CliError(f"topics missing on {settings.kafka_bootstrap}: {', '.join(missing)} "
                       "(create them with `churnwatch topics`)")
    try:
        app = create_app(settings)
    except FaustVersionError as exc:
        raise CliError(str(exc)) from None
    worker = make_worker(app, settings.log_level)
    tune_gc(settings.gc_gen0_threshold)  # after imports and app set-up: those objects are frozen (ADR 0013)
    worker.execute_from_commandline()
    return 0


def cmd_stack(args: argparse.Namespace) -> int:
    from streams import stack

    cfg = stack.StackConfig.from_env()
    try:
        if args.action == "up":
            stack.up(cfg)
            print(f"kafka: {cfg.bootstrap}   redis: {cfg.redis_url}   logs and pids: {cfg.run_dir}")
        elif args.action == "down":
            stack.down(cfg)
        elif args.action == "status":
            for name, state in stack.status(cfg).items():
                print(f"{name}: {state}")
        elif args.action == "reset":
            stack.reset_data(cfg)
    except stack.StackError as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from streams.admin import ensure_topics

    settings = _settings()
    try:
        result = ensure_topics(settings)
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    from streams.topics import TOPICS, topic_names

    names = topic_names(settings)
    partitions = {names[spec.setting]: spec.partitions or settings.topic_partitions for spec in TOPICS}
    for name, state in result.items():
        print(f"{state:8} {name} ({partitions.get(name, settings.topic_partitions)} partitions, "
              f"rf {settings.topic_replication_factor})")
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from streams.tools.produce import produce_files

    settings = _settings()
    for path in args.files:
        if not Path(path).is_file():
            raise CliError(f"no such file: {path}")
    try:
        n = produce_files(settings, [Path(p) for p in args.files], topic_kind=args.to, rate=args.rate)
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    print(f"produced {n} records")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.tools.demo import run_demo

    return run_demo(accounts=args.accounts, days=args.days, seed=args.seed)


def cmd_replay(args: argparse.Namespace) -> int:
    from streams import replay

    try:
        return replay.run(args)
    except replay.ReplayError as exc:
        raise CliError(str(exc)) from None


def cmd_alerts(args: argparse.Namespace) -> int:
    from streams.tools import alerts_cli

    if args.alerts_command == "forward" and not args.url.startswith(("http://", "https://")):
        raise CliError(f"not an http(s) URL: {args.url}")
    return alerts_cli.run(_settings(), args)


def cmd_backtest(args: argparse.Namespace) -> int:
    from streams.tools import backtest

    try:
        return backtest.run(args)
    except backtest.BacktestError as exc:
        raise CliError(str(exc)) from None


def cmd_convert(args: argparse.Namespace) -> int:
    from streams.ingest import convert

    return convert.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="churnwatch", description="Live churn-risk alerts from SaaS event streams.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("worker", help="run a Faust worker (settings from CHURNWATCH_* env vars)")
    p.add_argument("--web-port", type=int, default=None, help="HTTP port (default CHURNWATCH_WEB_PORT / 6066)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("stack", help="local Kafka (KRaft, from Maven Central) and redis-server, no Docker")
    p.add_argument("action", choices=["up", "down", "status", "reset"])
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("topics", help="create every topic with explicit partitions and replication (idempotent)")
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("produce", help="produce canonical / Stripe / Segment JSONL files to their topic")
    p.add_argument("files", nargs="+")
    p.add_argument("--to", choices=["canonical", "stripe", "segment"], default="canonical")
    p.add_argument("--rate", type=float, default=0.0, help="events per second (0 = as fast as possible)")
    p.set_defaults(func=cmd_produce)

    p = sub.add_parser("demo", help="stack up, topics, worker, a generated event stream, and a report")
    p.add_argument("--accounts", type=int, default=40)
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("replay", help="run the domain core over event files in-process (no Kafka) and report")
    from streams import replay

    replay.add_arguments(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("bench", help="measure throughput, latency, state size and recovery against real Kafka")
    from streams.tools import bench
    bench.add_arguments(p)
    p.set_defaults(func=bench.run)
    p = sub.add_parser("simulate", help="write (or produce to Kafka) a generated SaaS world with known churners")
    from streams.tools import simulate_cli

    simulate_cli.add_arguments(p)
    p.set_defaults(func=simulate_cli.run)

    p = sub.add_parser("backtest", help="replay an event file and score its alerts against known churn")
    from streams.tools import backtest

    backtest.add_arguments(p)
    p.set_defaults(func=cmd_backtest)

    p = sub.add_parser("alerts", help="alerts tail (readable live feed) | alerts forward URL (webhook)")
    from streams.tools import alerts_cli

    alerts_cli.add_arguments(p)
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser("convert", help="convert Stripe / Segment / CloudEvents files to canonical JSONL")
    try:
        from streams.ingest import convert

        convert.add_arguments(p)
        p.set_defaults(func=cmd_convert)
    except ImportError:  # pragma: no cover - ingest package incomplete
        p.set_defaults(func=lambda a: 1)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"churnwatch {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
