"""Which churnwatch modules run compiled (mypyc, ADR 0018), and which compiled ones are older than their source.

A compiled module (`account.cpython-311-x86_64-linux-gnu.so`) sits beside its source and Python imports it
instead of the `.py`. Edit the source without rebuilding (`make install` rebuilds) and the old code keeps
running: the test session refuses to start then, and the worker and the benchmark log it.
"""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def _compiled_files(root: Path = PACKAGE) -> dict[Path, Path]:
    """source .py -> its compiled extension, for every extension under the package."""
    out: dict[Path, Path] = {}
    for suffix in EXTENSION_SUFFIXES:
        for ext in root.rglob(f"*{suffix}"):
            source = ext.with_name(ext.name[: -len(suffix)] + ".py")
            if source.exists():
                out[source] = ext
    return out


def _module_name(source: Path, root: Path) -> str:
    return ".".join((root.name, *source.relative_to(root).with_suffix("").parts))


def compiled_modules(root: Path = PACKAGE) -> list[str]:
    """Dotted names of the modules that have a compiled extension, sorted (empty: pure Python)."""
    return sorted(_module_name(src, root) for src in _compiled_files(root))


def stale_modules(root: Path = PACKAGE) -> list[str]:
    """Compiled modules whose source was modified after the extension was built, sorted.

    Only in a source checkout (the package beside `setup.py`, an editable install): an installed wheel unpacks
    its sources after its extensions, and nobody edits them there."""
    if not (root.parent / "setup.py").exists():
        return []
    return sorted(
        _module_name(src, root)
        for src, ext in _compiled_files(root).items()
        if src.stat().st_mtime > ext.stat().st_mtime
    )


def build_mode(root: Path = PACKAGE) -> str:
    """`mypyc` when the domain core runs compiled, `pure` when it does not (what a benchmark measured)."""
    return "mypyc" if compiled_modules(root) else "pure"


def stale_message(stale: list[str]) -> str:
    return (
        f"compiled modules older than their source: {', '.join(stale)}; the old code would run. "
        "Rebuild with `make install` (or `make pure` to run without compiling)"
    )
