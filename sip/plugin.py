"""The SIP carrier plugin: routes (OpenAI SIP webhooks, when that module is present) and a
lifespan that runs the SIP trunk endpoint while the app runs.

The app factory imports `sip` by name (`SWITCHBOARD_CARRIERS=media_streams,sip`) and enters
`plugin.lifespan(gateway)` after the gateway exists; on exit (after the gateway asked its calls
to hang up) the SIP service drains: new INVITEs get 503, what is left is hung up, every task is
cancelled and awaited, and the sockets close.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from gateway.runtime import Gateway
from sip.config import sip_config
from sip.service import SipService

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

# The running SIP service of each gateway (`sip.outbound.place_call` finds it here).
_SERVICES: weakref.WeakKeyDictionary[Gateway, SipService] = weakref.WeakKeyDictionary()


def running_service(gateway: Gateway) -> SipService | None:
    return _SERVICES.get(gateway)


class SipPlugin:
    name = "sip"

    def routes(self) -> Sequence[BaseRoute]:
        try:
            from sip.openai import openai_routes
        except ImportError:
            return []
        return openai_routes()

    @contextlib.asynccontextmanager
    async def lifespan(self, gateway: Gateway) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            openai_lifespan: Any = None
            with contextlib.suppress(ImportError):
                from sip.openai import openai_sip_lifespan as openai_lifespan
            if openai_lifespan is not None:
                await stack.enter_async_context(openai_lifespan(gateway))
            if gateway.settings.sip_enabled:
                service = SipService(gateway, sip_config(gateway.settings))
                await service.start()
                _SERVICES[gateway] = service

                async def stop() -> None:
                    try:
                        await service.stop()
                    finally:
                        _SERVICES.pop(gateway, None)

                stack.push_async_callback(stop)
            yield


plugin = SipPlugin()

# `sip.plugin` names two things: this module, and (through the lazy `sip.__getattr__`, as in
# media_streams) the plugin object. Once this module has been imported, Python binds the
# package attribute `sip.plugin` to the *module*, whichever was asked for first; so the module
# also behaves as the plugin, and `SWITCHBOARD_CARRIERS=sip` works in either import order.
name = plugin.name


def routes() -> Sequence[BaseRoute]:
    return plugin.routes()


def lifespan(gateway: Gateway) -> contextlib.AbstractAsyncContextManager[None]:
    return plugin.lifespan(gateway)
