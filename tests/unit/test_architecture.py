"""The domain core stays framework-free: no Faust, Redis, Kafka or Prometheus imports."""

from __future__ import annotations

import ast
from pathlib import Path

import streams.domain

FORBIDDEN = {"faust", "mode", "redis", "prometheus_client", "aiokafka", "kafka"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_domain_package_imports_no_faust_redis_kafka_or_prometheus() -> None:
    files = sorted(Path(streams.domain.__file__).parent.rglob("*.py"))
    assert files, "the domain package has no modules"
    offenders = {str(f.name): sorted(imported_roots(f) & FORBIDDEN) for f in files}
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_the_domain_package_can_be_imported_without_loading_faust() -> None:
    import subprocess
    import sys

    code = (
        "import sys, importlib, pkgutil, streams.domain as d\n"
        "for m in pkgutil.iter_modules(d.__path__): importlib.import_module('streams.domain.' + m.name)\n"
        "bad = [m for m in ('faust', 'redis', 'prometheus_client', 'aiokafka') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
