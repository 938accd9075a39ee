"""The Starlette app factory. Settings are read before this is called; nothing happens at import.

The lifespan owns what is shared across calls (the OpenAI client, the `Gateway` with its call
registry) and, on shutdown, asks live calls to hang up and waits briefly for them. Carriers are
mounted by package name (`SWITCHBOARD_CARRIERS`), so `gateway` never imports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from openai import AsyncOpenAI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from gateway.backends.base import BackendLeg, SessionConfig
from gateway.backends.realtime import RealtimeBackend
from gateway.carriers import CarrierPlugin
from gateway.config import ConfigError, Settings
from gateway.runtime import Gateway

log = structlog.get_logger("switchboard")

SHUTDOWN_GRACE_S = 5.0


def load_carriers(names: str) -> list[CarrierPlugin]:
    plugins: list[CarrierPlugin] = []
    for name in (n.strip() for n in names.split(",")):
        if not name:
            continue
        try:
            module = importlib.import_module(name)
            plugins.append(module.plugin)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                "SWITCHBOARD_CARRIERS",
                f"cannot load carrier package {name!r} ({type(exc).__name__})",
                "use a comma-separated list of carrier packages, e.g. media_streams",
            ) from None
    return plugins


async def healthz(request: Request) -> JSONResponse:
    gateway: Gateway = request.app.state.gateway
    return JSONResponse({"ok": True, "live_calls": len(gateway.registry.live)})


def create_app(
    settings: Settings,
    *,
    backend_factory: Callable[[SessionConfig], BackendLeg] | None = None,
) -> Starlette:
    """Build the ASGI app. `backend_factory` replaces the Realtime backend (tests, other brains)."""
    plugins = load_carriers(settings.carriers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        client: AsyncOpenAI | None = None
        factory = backend_factory
        if factory is None:
            client = AsyncOpenAI(
                api_key=settings.openai_api_key or "missing",
                websocket_base_url=settings.realtime_url,
                max_retries=0,
            )
            openai_client = client

            def factory(config: SessionConfig) -> BackendLeg:
                return RealtimeBackend(openai_client, config)

        gateway = Gateway(settings, factory)
        app.state.gateway = gateway
        log.info(
            "gateway_started",
            carriers=[p.name for p in plugins],
            realtime_url=settings.realtime_url,
            audio_format=settings.audio_format,
            verify_signatures=settings.verify_signatures,
        )
        if not settings.verify_signatures:
            log.warning("twilio_signature_check_disabled_for_all_requests")
        try:
            yield {}
        finally:
            for call_id in list(gateway.registry.live):
                gateway.hang_up(call_id, "shutdown")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_GRACE_S):
                    await gateway.registry.idle.wait()
            if client is not None:
                await client.close()
            log.info("gateway_stopped")

    routes: list[BaseRoute] = [Route("/healthz", healthz)]
    for plugin in plugins:
        routes.extend(plugin.routes())
    return Starlette(routes=routes, lifespan=lifespan)
