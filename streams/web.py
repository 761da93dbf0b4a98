"""HTTP views on the Faust web server: account health (routed to the owning worker), probes, metrics."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.domain.aggregate import read_model

if TYPE_CHECKING:
    from streams.bootstrap import Context


def owner_unreachable_is_503(get: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """Faust's table_route proxies a request to the worker that owns the key; when that worker is gone (killed,
    before the group moves its partitions) the proxy call raised, and aiohttp logged a traceback and answered 500
    for every such request. Answer 503 instead: the key is served again once the rebalance is done."""

    @functools.wraps(get)
    async def wrapper(view: View, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return await get(view, request, *args, **kwargs)
        except aiohttp.ClientError as exc:
            body = {"error": "the worker that owns this key is unreachable; retry after the rebalance",
                    "detail": type(exc).__name__}
            return view.bytes(orjson.dumps(body), content_type="application/json", status=503)

    return wrapper


def register(ctx: Context) -> None:
    app = ctx.app
    table = ctx.account_to_state

    def _json(view: View, body: Any, status: int = 200) -> Response:
        return view.bytes(orjson.dumps(body), content_type="application/json", status=status)

    @app.page("/health")
    class Health(View):
        """Liveness: the process is up and serving HTTP."""

        async def get(self, request: Request) -> Response:
            return _json(self, {"status": "ok"})

    @app.page("/ready")
    class Ready(View):
        """Readiness: partitions assigned and tables recovered at least once."""

        async def get(self, request: Request) -> Response:
            ready = ctx.ready and not app.rebalancing
            body = {"ready": ready, "redis": bool(ctx.sink.connected) if ctx.sink else None}
            return _json(self, body, 200 if ready else 503)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            # aiohttp refuses a charset inside content_type, so the exposition type goes in as a header.
            return self.bytes(generate_latest(ctx.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/accounts/{account_id}")
    class AccountHealth(View):
        """The account's live health record, served by the worker that owns the account's partition."""

        @owner_unreachable_is_503
        @app.table_route(table=table, match_info="account_id")  # type: ignore[arg-type]
        async def get(self, request: Request, account_id: str) -> Response:
            agg = ctx.load_account(account_id.encode())  # the agent's newest state, not yet flushed ones too
            if agg is None:
                return _json(self, {"error": f"unknown account '{account_id}'"}, 404)
            return _json(self, read_model(agg, ctx.domain))

    @app.page("/portfolio/{part}")
    class PortfolioView(View):
        """Company months, cohort cells or the summary, served by the worker that aggregates the portfolio."""

        @owner_unreachable_is_503
        @app.table_route(table=ctx.account_to_cohort_inputs, exact_key="portfolio")  # type: ignore[arg-type]
        async def get(self, request: Request, part: str) -> Response:
            p = ctx.portfolio
            if p is None:
                return _json(self, {"error": "portfolio not computed yet"}, 503)
            views = {"company": p.months_json, "cohorts": p.cells_json, "summary": p.summary_json}
            if part not in views:
                return _json(self, {"error": f"unknown part '{part}': company, cohorts or summary"}, 404)
            return _json(self, views[part]())
