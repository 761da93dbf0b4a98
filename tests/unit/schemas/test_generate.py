"""JSON Schema generation: checked-in files match the models, output is deterministic, drift is reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas import generate
from schemas.deadletter import DeadLetter


def test_the_checked_in_json_schemas_match_the_models() -> None:
    assert list(generate.drift(generate.rendered_files())) == []


def test_the_registry_holds_the_event_unions_and_the_dead_letter() -> None:
    assert {"billing-event", "usage-event", "canonical-event", "dead-letter"} <= set(generate.discover())
    assert generate.discover()["dead-letter"] is DeadLetter


def test_rendering_is_deterministic_sorted_indented_and_ends_with_a_newline() -> None:
    first, second = generate.rendered_files(), generate.rendered_files()
    assert first == second
    text = first["dead-letter.schema.json"]
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_the_canonical_schema_lists_every_event_type() -> None:
    schema = json.loads(generate.rendered_files()["canonical-event.schema.json"])
    assert set(schema["discriminator"]["mapping"]) >= {
        "feature.used",
        "nps.responded",
        "subscription.changed",
    }


def test_check_reports_one_line_per_drifting_missing_or_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(generate, "JSON_DIR", tmp_path)
    assert generate.main([]) == 0
    assert generate.main(["--check"]) == 0
    (tmp_path / "dead-letter.schema.json").write_text("{}\n")
    (tmp_path / "usage-event.schema.json").unlink()
    (tmp_path / "old.schema.json").write_text("{}\n")
    capsys.readouterr()
    assert generate.main(["--check"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    assert lines[0].endswith("dead-letter.schema.json: out of date (run `python -m schemas.generate`)")
    assert lines[1].endswith("usage-event.schema.json: missing (run `python -m schemas.generate`)")
    assert lines[2].endswith("old.schema.json: stale, no model registers it (delete it or register it)")


def test_writing_repairs_drift_and_removes_stale_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(generate, "JSON_DIR", tmp_path)
    (tmp_path / "old.schema.json").write_text("{}\n")
    assert generate.main([]) == 0
    assert not (tmp_path / "old.schema.json").exists()
    assert list(generate.drift(generate.rendered_files(), tmp_path)) == []


def test_a_name_registered_twice_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(generate.CORE_SCHEMAS, "dead-letter", DeadLetter)
    with pytest.raises(ValueError, match="registered twice"):
        generate.discover()


def test_a_registry_entry_that_is_not_a_model_is_refused() -> None:
    with pytest.raises(TypeError, match="expected a pydantic model"):
        generate.rendered_files({"bad": object()})
