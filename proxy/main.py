"""The proxy's FastAPI app: settings, the Prefect connection, error handling and the routers of proxy.routes.

Run it with `python -m proxy --host 127.0.0.1 --port 8085` (see docs/proxy.md).
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager

from fastapi import FastAPI

from proxy.deployments import AdhocDeployments, FlowIds
from proxy.errors import CatchAllMiddleware, register_exception_handlers
from proxy.flow_runs import EndedFamilies
from proxy.hot_reads import HotReadsMiddleware
from proxy.prefect_api import PrefectConnection
from proxy.routes import ROUTERS
from proxy.settings import ProxySettings


class PrefectSettingsMiddleware:
    """Makes the app's own Prefect settings current for the whole request (see proxy.prefect_api)."""

    def __init__(self, app, connection: PrefectConnection):
        self.app = app
        self.connection = connection

    async def __call__(self, scope, receive, send):
        with self.connection.settings_context():
            await self.app(scope, receive, send)


def telemetry_config(environ=os.environ) -> dict[str, bool]:
    """FastAPI's OpenTelemetry instrumentation asks on every request whether a tracer, meter or logger provider
    is configured (about 5% of the proxy's CPU per call, for nothing when none is): it stays on only when the
    environment sets OpenTelemetry up (an OTEL_* variable, or FASTAPI_OTEL_AUTO_CONFIGURE=true)."""
    wanted = environ.get("FASTAPI_OTEL_AUTO_CONFIGURE", "").lower() == "true" or any(
        key.startswith("OTEL_") for key in environ
    )
    return {} if wanted else {"tracing": False, "metrics": False, "logs": False}


def create_app(settings: ProxySettings | None = None, *, hot_reads: bool = True) -> FastAPI:
    """The app; `hot_reads=False` leaves the three hot reads to their FastAPI routes too (proxy.hot_reads)."""
    settings = settings or ProxySettings.from_env()
    connection = PrefectConnection(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        with connection.settings_context():
            await connection.client()  # build it (TLS context, connection pool) before the first request
        yield
        await connection.close()

    app = FastAPI(
        title="ddpui Prefect proxy",
        description="The only service that talks to Prefect: blocks, deployments, flow runs and logs.",
        version="1.0.0",
        lifespan=lifespan,
        telemetry=telemetry_config(),
    )
    app.state.settings = settings
    app.state.prefect = connection
    app.state.adhoc = AdhocDeployments(settings)
    app.state.flow_ids = FlowIds()
    app.state.ended_families = EndedFamilies()
    register_exception_handlers(app)
    if hot_reads:
        app.add_middleware(HotReadsMiddleware)  # the innermost: inside the settings context and the catch-all
    app.add_middleware(PrefectSettingsMiddleware, connection=connection)
    app.add_middleware(CatchAllMiddleware)
    for router in ROUTERS:
        app.include_router(router)
    return app


def __getattr__(name: str):
    # `proxy.main:app` is built on first access, so importing this module needs no environment
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)
