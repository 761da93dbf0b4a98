"""`churnwatch convert`: Stripe / Segment / CloudEvents / canonical files to canonical JSON lines."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from streams.ingest import convert

from .helpers import REPO_ROOT, STRIPE_FIXTURES, canonical, segment_message


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], list[str]]:
    code = convert.main(argv)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


def write_jsonl(path: Path, objects: list[object]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(o) for o in objects) + b"\n")
    return path


def test_every_stripe_fixture_converts_or_is_deliberately_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in STRIPE_FIXTURES.glob("*.json") if p.name != "openapi_fixtures3.json")
    code, out, err = run_main(["--from", "stripe", *files], capsys)
    assert code == 0, err
    types = [orjson.loads(line)["type"] for line in out]
    assert sorted(types) == [
        "invoice.paid",
        "invoice.paid",
        "payment.failed",
        "subscription.canceled",
        "subscription.started",
    ]
    assert err == ["churnwatch convert: 5 events, 6 skipped, 0 rejected"]


def test_a_jsonl_file_with_a_bad_line_rejects_that_line_by_number_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = segment_message(event="Signed In"), segment_message(event="Feature Used", context={})
    path = write_jsonl(tmp_path / "calls.jsonl", [good, bad, segment_message(call="identify", event=None)])
    code, out, err = run_main(["--from", "segment", str(path)], capsys)
    assert code == 1
    assert [orjson.loads(line)["type"] for line in out] == ["session.started"]
    reject = orjson.loads(err[0])
    assert reject == {
        "reason": "missing_account",
        "message": "context.groupId: missing (the account id of a B2B event)",
        "file": str(path),
        "line": 2,
        "index": None,
        "event_id": "msg-1",
    }
    assert err[1] == "churnwatch convert: 1 events, 1 skipped, 1 rejected"


def test_a_json_array_file_reports_rejects_by_element_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.json"
    path.write_bytes(
        orjson.dumps([canonical(), canonical(event_id="evt-2", count=-1)], option=orjson.OPT_INDENT_2)
    )
    code, out, err = run_main(["--from", "canonical", "-q", str(path)], capsys)
    assert (code, len(out)) == (1, 1)
    reject = orjson.loads(err[0])
    assert (reject["index"], reject["line"], reject["reason"]) == (1, None, "invalid_event")
    assert len(err) == 1  # --quiet: no summary


def test_a_pretty_printed_single_object_is_one_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "one.json"
    path.write_bytes(orjson.dumps(canonical(), option=orjson.OPT_INDENT_2))
    code, out, _ = run_main(["--from", "canonical", str(path)], capsys)
    assert (code, len(out)) == (0, 1)


def test_an_unparseable_file_is_one_reject(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "type": "feature.used",\n  oops\n}\n')
    code, out, err = run_main(["--from", "canonical", "-q", str(path)], capsys)
    assert (code, out) == (1, [])
    assert orjson.loads(err[0])["reason"] == "invalid_json"


def test_cloudevents_input_requires_the_envelope(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ce = {
        "specversion": "1.0",
        "id": "c1",
        "source": "/app",
        "type": "feature.used",
        "subject": "a1",
        "time": "2024-05-01T00:00:00Z",
        "data": {"feature": "x"},
    }
    path = write_jsonl(tmp_path / "ce.jsonl", [ce, canonical()])
    code, out, err = run_main(["--from", "cloudevents", "-q", str(path)], capsys)
    assert (code, len(out)) == (1, 1)
    assert orjson.loads(err[0])["reason"] == "unsupported_envelope"


def test_skips_are_listed_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_jsonl(tmp_path / "id.jsonl", [segment_message(call="identify", event=None)])
    code, _, err = run_main(["--from", "segment", "-q", "--show-skipped", str(path)], capsys)
    assert code == 0
    assert orjson.loads(err[0])["skipped"] == "identify_call"


def test_output_and_rejects_can_go_to_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [canonical(), canonical(type="nope")])
    out_path, rej_path = tmp_path / "out.jsonl", tmp_path / "rejects.jsonl"
    code, out, _ = run_main(
        ["--from", "canonical", "-o", str(out_path), "--rejects", str(rej_path), str(src)], capsys
    )
    assert (code, out) == (1, [])
    assert len(out_path.read_text().splitlines()) == 1
    assert orjson.loads(rej_path.read_text())["reason"] == "unknown_type"


def test_standard_input_is_read_for_a_dash() -> None:
    stdin = io.BytesIO(orjson.dumps(canonical()) + b"\n")
    items = list(convert.convert(["-"], "canonical", stdin=stdin))
    assert [i.kind for i in items] == ["event"]


def test_a_missing_file_is_one_line_on_stderr_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.json"
    code, out, err = run_main(["--from", "stripe", str(missing)], capsys)
    assert (code, out) == (2, [])
    assert err == [f"churnwatch convert: error: {missing}: no such file"]


def test_a_directory_is_refused_before_anything_is_converted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_jsonl(tmp_path / "ok.jsonl", [canonical()])
    code, out, err = run_main(["--from", "canonical", str(good), str(tmp_path)], capsys)
    assert (code, out) == (2, [])
    assert err == [f"churnwatch convert: error: {tmp_path}: not a regular file"]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert convert.main(["--from", "paypal", "x.json"]) == 2
    assert convert.main(["x.json"]) == 2
    capsys.readouterr()


def test_the_command_run_as_a_process_prints_one_line_and_no_traceback_for_a_wrong_path(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "missing.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "streams.ingest.convert", "--from", "segment", str(missing)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"churnwatch convert: error: {missing}: no such file"]
    assert "Traceback" not in proc.stderr


def test_the_options_plug_into_an_argparse_subparser(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="churnwatch")
    sub = parser.add_subparsers(dest="command", required=True)
    convert.add_arguments(sub.add_parser("convert"))
    src = write_jsonl(tmp_path / "in.jsonl", [canonical()])
    args = parser.parse_args(["convert", "--from", "canonical", "-q", str(src)])
    assert convert.run(args) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
