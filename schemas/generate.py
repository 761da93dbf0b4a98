"""Write (or `--check`) the JSON Schema files in schemas/json/ from the pydantic contracts."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

import schemas
from schemas import events

JSON_DIR = Path(__file__).resolve().parent / "json"
SUFFIX = ".schema.json"

# events.py is the canonical contract and predates the registry convention, so its unions are listed here;
# every other module in schemas/ registers its own models through a module-level `JSON_SCHEMAS` dict
# (file stem -> pydantic model class or TypeAdapter).
CORE_SCHEMAS: dict[str, Any] = {
    "billing-event": events.billing_event_adapter,
    "usage-event": events.usage_event_adapter,
    "canonical-event": events.canonical_event_adapter,
}
_SKIP_MODULES = frozenset({"generate", "events"})


def discover() -> dict[str, Any]:
    """All registered schemas: CORE_SCHEMAS plus every `schemas.<module>.JSON_SCHEMAS`, by file stem."""
    found: dict[str, Any] = dict(CORE_SCHEMAS)
    for info in sorted(pkgutil.iter_modules(schemas.__path__), key=lambda i: i.name):
        if info.name in _SKIP_MODULES or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"schemas.{info.name}")
        registry = getattr(module, "JSON_SCHEMAS", None)
        if not isinstance(registry, Mapping):
            continue
        for name, target in registry.items():
            if name in found:
                raise ValueError(
                    f"schema name {name!r} registered twice (second time in schemas.{info.name})"
                )
            found[name] = target
    return found


def schema_of(name: str, target: Any) -> dict[str, Any]:
    """The JSON Schema (validation mode: what producers may send) of a model class or TypeAdapter."""
    if isinstance(target, type) and issubclass(target, BaseModel):
        schema = target.model_json_schema()
    elif isinstance(target, TypeAdapter):
        schema = target.json_schema()
    else:
        raise TypeError(f"schema {name!r}: expected a pydantic model class or TypeAdapter, got {target!r}")
    schema.setdefault("title", name)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def render(schema: Mapping[str, Any]) -> str:
    """Deterministic text: sorted keys, indent 2, non-ASCII kept, trailing newline."""
    return json.dumps(schema, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def rendered_files(registry: Mapping[str, Any] | None = None) -> dict[str, str]:
    """File name -> expected content for every registered schema."""
    registry = discover() if registry is None else registry
    return {f"{name}{SUFFIX}": render(schema_of(name, target)) for name, target in sorted(registry.items())}


def drift(expected: Mapping[str, str], directory: Path | None = None) -> Iterator[str]:
    """One line per file that differs from what would be generated (missing, changed or stale)."""
    directory = JSON_DIR if directory is None else directory
    for file_name, text in expected.items():
        path = directory / file_name
        if not path.is_file():
            yield f"{_shown(path)}: missing (run `python -m schemas.generate`)"
        elif path.read_text(encoding="utf-8") != text:
            yield f"{_shown(path)}: out of date (run `python -m schemas.generate`)"
    if directory.is_dir():
        for path in sorted(directory.glob(f"*{SUFFIX}")):
            if path.name not in expected:
                yield f"{_shown(path)}: stale, no model registers it (delete it or register it)"


def write(expected: Mapping[str, str], directory: Path | None = None) -> list[Path]:
    """Write changed files and delete stale ones; returns the paths touched."""
    directory = JSON_DIR if directory is None else directory
    directory.mkdir(parents=True, exist_ok=True)
    touched: list[Path] = []
    for file_name, text in expected.items():
        path = directory / file_name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            touched.append(path)
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        if path.name not in expected:
            path.unlink()
            touched.append(path)
    return touched


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.generate", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if any file in schemas/json/ would change"
    )
    args = parser.parse_args(argv)
    expected = rendered_files()
    if args.check:
        problems = list(drift(expected))
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    for path in write(expected):
        print(f"wrote {_shown(path)}" if path.exists() else f"deleted {_shown(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
