"""The HTTP views answer 503, not a traceback and 500, when the worker that owns a key is unreachable."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from streams.web import owner_unreachable_is_503


class RecordingView:
    """Stands in for a Faust View: keeps what `bytes` was asked to answer."""

    def bytes(self, body: bytes, *, content_type: str, status: int) -> tuple[int, str, Any]:
        return status, content_type, orjson.loads(body)


def test_an_unreachable_owner_gives_503_with_a_reason() -> None:
    @owner_unreachable_is_503
    async def get(view: Any, request: Any, account_id: str) -> Any:
        raise aiohttp.ClientConnectionError("Cannot connect to host 127.0.0.1:34323")

    status, content_type, body = asyncio.run(get(RecordingView(), None, account_id="acct_1"))
    assert (status, content_type) == (503, "application/json")
    assert "unreachable" in body["error"] and body["detail"] == "ClientConnectionError"


def test_a_served_request_passes_through_unchanged() -> None:
    @owner_unreachable_is_503
    async def get(view: Any, request: Any, account_id: str) -> Any:
        return ("served", account_id)

    assert asyncio.run(get(RecordingView(), None, account_id="acct_1")) == ("served", "acct_1")
