"""Shared pytest fixtures: paths, and the real local stack and worker processes for integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"

pytest_plugins = ["tests.support.stack_fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test compiled modules older than their source: the tests would pass or fail on the old code."""
    from streams.compiled import stale_message, stale_modules

    stale = stale_modules()
    if stale:
        raise pytest.UsageError(stale_message(stale))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.fail(f"shared fixtures not found at {SHARED_FIXTURES}: clone the project with shared/ beside it")
    return SHARED_FIXTURES
