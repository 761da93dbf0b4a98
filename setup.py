"""Build hook: compiles the pure domain core to C with mypyc (docs/adr/0018-compiled-domain-core.md).

CHURNWATCH_COMPILE=1 compiles and fails the build if it cannot (the Makefile and the Dockerfile set it);
CHURNWATCH_COMPILE=0 builds pure Python; unset, it compiles when it can and says so when it cannot.
Compiling needs mypy, the project's dependencies and a C compiler in the build environment: the Makefile installs
the dependencies first, then builds with `pip install --no-build-isolation --no-deps -e .`.
"""

import os
import sys

from setuptools import setup

# Every event passes through these: the canonical decoder, the domain core, the batch loop around it and the
# worker's per-record bookkeeping (input order, the usage gate, the state cache, the health schedule). Not
# compiled: domain/config.py and domain/thresholds.py (pydantic models, loaded once), the Stripe and Segment
# adapters, the Faust adapters, the CLI and the tests.
COMPILED = [
    "streams/domain/account.py",
    "streams/domain/aggregate.py",
    "streams/domain/alerts.py",
    "streams/domain/codec.py",
    "streams/domain/cohorts.py",
    "streams/domain/engagement.py",
    "streams/domain/health.py",
    "streams/domain/hot_events.py",
    "streams/domain/mrr.py",
    "streams/domain/portfolio.py",
    "streams/domain/rules.py",
    "streams/ingest/decode.py",
    "streams/ingest/outcome.py",
    "streams/processing.py",
    "streams/alignment.py",
    "streams/health_schedule.py",
    "streams/offset_order.py",
    "streams/state_cache.py",
]


def _ext_modules() -> list:
    mode = os.environ.get("CHURNWATCH_COMPILE", "")
    if mode == "0":
        return []
    try:
        from mypyc.build import mypycify

        # One shared library (churnwatch_native__mypyc) so calls between the compiled modules stay native.
        return mypycify(COMPILED, opt_level="3", group_name="churnwatch_native")
    except (Exception, SystemExit) as exc:
        if mode == "1":
            raise
        print(f"churnwatch: building pure Python, mypyc could not compile ({exc!r})", file=sys.stderr)
        return []


setup(ext_modules=_ext_modules())
