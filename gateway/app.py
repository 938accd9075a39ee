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
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from gateway.backends.base import BackendLeg, SessionConfig
from gateway.backends.factory import backend_name, build_backend_factory
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
        async with contextlib.AsyncExitStack() as stack:
            factory = backend_factory or await build_backend_factory(settings, stack)
            gateway = Gateway(settings, factory)
            app.state.gateway = gateway
            # Carriers with their own listeners (SIP) start here and stop after the calls.
            for plugin in plugins:
                plugin_lifespan = getattr(plugin, "lifespan", None)
                if plugin_lifespan is not None:
                    await stack.enter_async_context(plugin_lifespan(gateway))
            log.info(
                "gateway_started",
                carriers=[p.name for p in plugins],
                backend=backend_name(settings) if backend_factory is None else "custom",
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
                log.info("gateway_stopped")

    routes: list[BaseRoute] = [Route("/healthz", healthz)]
    for plugin in plugins:
        routes.extend(plugin.routes())
    return Starlette(routes=routes, lifespan=lifespan)
