"""`churnwatch convert`: Stripe / Segment / CloudEvents / canonical files to canonical event JSON lines."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Literal, NamedTuple

import orjson

from streams.ingest.decode import DEFAULT_MAX_BYTES, IngestConfig, TopicKind, decode_for_topic
from streams.ingest.outcome import Skipped

FORMATS: tuple[TopicKind, ...] = ("stripe", "segment", "cloudevents", "canonical")
STDIN = "-"
PROG = "churnwatch convert"


class Record(NamedTuple):
    """One input: `line` is set for JSON Lines (1-based), `element` for items of a JSON array (0-based)."""

    file: str
    line: int | None
    element: int | None
    raw: bytes


class Converted(NamedTuple):
    """One output line: an event (canonical JSON), a reject or a skip (JSON objects with the location)."""

    kind: Literal["event", "reject", "skip"]
    text: str


def _reject(
    file: str, line: int | None, index: int | None, reason: str, message: str, **ids: str | None
) -> str:
    body: dict[str, object] = {
        "reason": reason,
        "message": message,
        "file": file,
        "line": line,
        "index": index,
    }
    body.update({k: v for k, v in ids.items() if v is not None})
    return orjson.dumps(body).decode()


def read_records(name: str, stream: IO[bytes]) -> Iterator[Record | Converted]:
    """Records of one input: a single JSON object, a JSON array of objects, or JSON Lines.

    JSON Lines is recognised when the first non-blank line parses on its own; it is then streamed line by line
    (blank lines ignored). Anything else is read whole: an object is one record, an array gives one record per
    element, and unparseable content is one reject for the file.
    """
    lines = enumerate(stream, start=1)
    first_no, first = next(((n, line) for n, line in lines if line.strip()), (0, b""))
    if not first:
        return
    try:
        orjson.loads(first)
        jsonl = True
    except orjson.JSONDecodeError:
        jsonl = False
    if jsonl and not first.lstrip().startswith(b"["):
        yield Record(name, first_no, None, first.strip())
        for number, line in lines:
            if line.strip():
                yield Record(name, number, None, line.strip())
        return
    whole = first + stream.read()
    try:
        value = orjson.loads(whole)
    except orjson.JSONDecodeError as exc:
        yield Converted("reject", _reject(name, None, None, "invalid_json", f"invalid JSON: {exc}"))
        return
    if isinstance(value, list):
        for index, element in enumerate(value):
            yield Record(name, None, index, orjson.dumps(element))
    else:
        yield Record(name, first_no, None, whole)


def convert_records(
    records: Iterable[Record | Converted], fmt: TopicKind, config: IngestConfig
) -> Iterator[Converted]:
    """Decode each record as a message of a topic of kind `fmt`."""
    for record in records:
        if isinstance(record, Converted):
            yield record
            continue
        result = decode_for_topic(record.raw, fmt, topic=f"convert:{fmt}", config=config)
        if isinstance(result, Skipped):
            body: dict[str, object] = {"skipped": result.reason.value, "detail": result.detail}
            body["file"] = record.file
            body.update({"line": record.line, "index": record.element})
            yield Converted("skip", orjson.dumps(body).decode())
            continue
        for decoded in result:
            if decoded.event is not None:
                yield Converted("event", decoded.event.model_dump_json())
            elif decoded.dead_letter is not None:
                letter = decoded.dead_letter
                text = _reject(
                    record.file,
                    record.line,
                    record.element,
                    letter.reason.value,
                    letter.message,
                    event_id=letter.event_id,
                    account_id=letter.account_id,
                )
                yield Converted("reject", text)


def convert(
    paths: Iterable[str], fmt: TopicKind, config: IngestConfig | None = None, stdin: IO[bytes] | None = None
) -> Iterator[Converted]:
    """Convert files (`-` = standard input) of the given format; see `read_records` for accepted layouts."""
    config = config or IngestConfig()
    for path in paths:
        if path == STDIN:
            yield from convert_records(read_records("<stdin>", stdin or sys.stdin.buffer), fmt, config)
            continue
        with open(path, "rb") as stream:
            yield from convert_records(read_records(path, stream), fmt, config)


def unreadable(paths: Iterable[str]) -> list[str]:
    """One error line per path that cannot be read as a file (checked before converting anything)."""
    problems = []
    for path in paths:
        if path == STDIN:
            continue
        target = Path(path)
        if not target.exists():
            problems.append(f"{PROG}: error: {path}: no such file")
        elif not target.is_file():
            problems.append(f"{PROG}: error: {path}: not a regular file")
        else:
            try:
                with target.open("rb"):
                    pass
            except OSError as exc:
                problems.append(f"{PROG}: error: {path}: {exc.strerror or exc}")
    return problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `convert` options, for a standalone parser or an argparse subparser."""
    parser.add_argument(
        "--from",
        dest="fmt",
        required=True,
        choices=FORMATS,
        help="input format: Stripe webhooks, Segment/RudderStack calls, CloudEvents or canonical events",
    )
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="JSON object, JSON array or JSON Lines; - = stdin"
    )
    parser.add_argument(
        "-o", "--output", metavar="PATH", help="write canonical events here (default: stdout)"
    )
    parser.add_argument("--rejects", metavar="PATH", help="write reject lines here (default: stderr)")
    parser.add_argument("--show-skipped", action="store_true", help="also write skip lines where rejects go")
    parser.add_argument(
        "--max-bytes", type=int, default=DEFAULT_MAX_BYTES, metavar="N", help="per-input size limit in bytes"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary line on stderr")


def run(args: argparse.Namespace) -> int:
    """Exit 0 when every input converted or was deliberately skipped, 1 if any was rejected, 2 when a file
    cannot be read (nothing is converted then)."""
    problems = unreadable(args.files)
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        return 2
    if args.max_bytes < 1:
        print(f"{PROG}: error: --max-bytes must be at least 1", file=sys.stderr)
        return 2
    config = IngestConfig(max_bytes=args.max_bytes)
    counts = {"event": 0, "reject": 0, "skip": 0}
    with ExitStack() as stack:
        out: IO[str] = (
            stack.enter_context(open(args.output, "w", encoding="utf-8")) if args.output else sys.stdout
        )
        rejects: IO[str] = (
            stack.enter_context(open(args.rejects, "w", encoding="utf-8")) if args.rejects else sys.stderr
        )
        try:
            for item in convert(args.files, args.fmt, config):
                counts[item.kind] += 1
                if item.kind == "event":
                    out.write(item.text + "\n")
                elif item.kind == "reject" or args.show_skipped:
                    rejects.write(item.text + "\n")
        except OSError as exc:
            print(f"{PROG}: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    if not args.quiet:
        print(
            f"{PROG}: {counts['event']} events, {counts['skip']} skipped, {counts['reject']} rejected",
            file=sys.stderr,
        )
    return 1 if counts["reject"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors and 0 for --help
        return exc.code if isinstance(exc.code, int) else 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
