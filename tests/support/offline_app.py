"""A Faust app that never connects: for unit tests of the Faust adapters (consumers, streams, tables) offline."""

from __future__ import annotations

import itertools
import tempfile

import faust

_apps = itertools.count()


def offline_app(name: str) -> faust.App:
    """A new Faust app named `name-N`, with a memory store, no web server, its own temporary data directory and a
    broker address nothing listens on (port 1): building it or its consumer, channels and tables never connects."""
    return faust.App(f"test-{name}-{next(_apps)}", broker="kafka://127.0.0.1:1", store="memory://",
                     web_enabled=False, datadir=tempfile.mkdtemp(prefix=f"{name}-"))
