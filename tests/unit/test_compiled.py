"""The compiled-module check (ADR 0018): which modules run compiled, and which are older than their source."""

from __future__ import annotations

import os
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from streams.compiled import build_mode, compiled_modules, stale_message, stale_modules

SUFFIX = EXTENSION_SUFFIXES[0]


def package(tmp_path: Path, *modules: str, checkout: bool = True) -> Path:
    """A package `pkg` with these modules as sources (`domain/account` -> pkg/domain/account.py), in a source
    checkout (beside setup.py) unless `checkout` is False (an installed wheel)."""
    root = tmp_path / "pkg"
    if checkout:
        (tmp_path / "setup.py").write_text("")
    for name in modules:
        source = root / f"{name}.py"
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text("")
    return root


def compile_(root: Path, name: str, *, age_s: float = 0.0) -> Path:
    """Stand-in for a mypyc build of one module: an extension file beside its source, `age_s` older than it."""
    ext = root / f"{name}{SUFFIX}"
    ext.write_bytes(b"")
    source_mtime = (root / f"{name}.py").stat().st_mtime
    os.utime(ext, (source_mtime - age_s, source_mtime - age_s))
    return ext


def test_a_package_without_extensions_runs_pure_python(tmp_path: Path) -> None:
    root = package(tmp_path, "domain/account", "processing")
    assert compiled_modules(root) == []
    assert stale_modules(root) == []
    assert build_mode(root) == "pure"


def test_modules_with_an_extension_beside_their_source_run_compiled(tmp_path: Path) -> None:
    root = package(tmp_path, "domain/account", "domain/rules", "processing")
    compile_(root, "domain/account")
    compile_(root, "processing")
    assert compiled_modules(root) == ["pkg.domain.account", "pkg.processing"]
    assert build_mode(root) == "mypyc"


def test_a_source_edited_after_its_build_is_stale(tmp_path: Path) -> None:
    root = package(tmp_path, "domain/account", "processing")
    compile_(root, "domain/account", age_s=10)  # built, then the source was edited 10 s later
    compile_(root, "processing")
    assert stale_modules(root) == ["pkg.domain.account"]
    assert "pkg.domain.account" in stale_message(["pkg.domain.account"])
    assert "make install" in stale_message(["pkg.domain.account"])


def test_an_extension_without_a_source_is_not_a_churnwatch_module(tmp_path: Path) -> None:
    root = package(tmp_path, "processing")
    (root / f"orphan{SUFFIX}").write_bytes(b"")
    assert compiled_modules(root) == []


def test_an_installed_package_is_never_stale_because_its_wheel_unpacks_sources_after_extensions(
    tmp_path: Path,
) -> None:
    root = package(tmp_path, "processing", checkout=False)
    compile_(root, "processing", age_s=10)
    assert build_mode(root) == "mypyc"
    assert stale_modules(root) == []
