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

from gateway.api import api_routes, approval_webhook
from gateway.backends.base import BackendLeg, SessionConfig
from gateway.backends.factory import backend_name, build_backend_factory
from gateway.carriers import CarrierPlugin
from gateway.config import ConfigError, Settings
from gateway.runtime import Gateway
from gateway.store import CallStore, MemoryCallStore, SQLiteCallStore

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
            store: CallStore = (
                SQLiteCallStore(settings.store_path) if settings.store_path else MemoryCallStore()
            )
            stack.push_async_callback(store.close)
            gateway = Gateway(settings, factory, store=store)
            if settings.approval_webhook_url:
                gateway.on_approval = approval_webhook(settings.approval_webhook_url)
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
            if backend_factory is None and backend_name(settings) == "offline":
                # Say it plainly: callers get the local demo brain, not a model (offline-backend.md).
                why = "OPENAI_API_KEY is not set"
                if settings.backend == "offline":
                    why = "SWITCHBOARD_BACKEND=offline"
                log.warning("offline_backend_in_use", reason=why, hint="set OPENAI_API_KEY to use OpenAI")
            if not settings.verify_signatures:
                log.warning("twilio_signature_check_disabled_for_all_requests")
            if not settings.api_token:
                log.warning("api_loopback_only", reason="SWITCHBOARD_API_TOKEN is not set")
            try:
                yield {}
            finally:
                for call_id in list(gateway.registry.live):
                    gateway.hang_up(call_id, "shutdown")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SHUTDOWN_GRACE_S):
                        await gateway.registry.idle.wait()
                log.info("gateway_stopped")

    routes: list[BaseRoute] = [Route("/healthz", healthz), *api_routes()]
    for plugin in plugins:
        routes.extend(plugin.routes())
    return Starlette(routes=routes, lifespan=lifespan)
