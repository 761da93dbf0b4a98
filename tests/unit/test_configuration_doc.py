"""docs/configuration.md documents every setting the worker reads."""

from __future__ import annotations

from pathlib import Path

from streams.settings import Settings


def test_every_setting_is_documented_in_the_configuration_reference(repo_root: Path) -> None:
    doc = (repo_root / "docs" / "configuration.md").read_text()
    missing = [name for name in Settings.model_fields if f"CHURNWATCH_{name.upper()}" not in doc]
    assert missing == []
