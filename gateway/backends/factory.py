"""Which brain a call gets: one place that turns settings into a per-call backend factory.

`SWITCHBOARD_BACKEND=auto` (the default) picks the OpenAI Realtime backend when
`OPENAI_API_KEY` is set. Shared clients are registered on the lifespan's exit stack so they
close when the app stops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from openai import AsyncOpenAI

from gateway.backends.base import BackendLeg, SessionConfig
from gateway.backends.realtime import RealtimeBackend
from gateway.config import ConfigError, Settings

BackendFactory = Callable[[SessionConfig], BackendLeg]


def backend_name(settings: Settings) -> str:
    """The backend `settings` select ('realtime', …), resolving 'auto'."""
    if settings.backend != "auto":
        return settings.backend
    return "realtime" if settings.openai_api_key else "offline"


async def build_backend_factory(settings: Settings, stack: contextlib.AsyncExitStack) -> BackendFactory:
    name = backend_name(settings)
    if name == "realtime":
        if not settings.openai_api_key:
            raise ConfigError(
                "OPENAI_API_KEY",
                "is not set; the realtime backend needs it",
                "export OPENAI_API_KEY=sk-…",
            )
        client = AsyncOpenAI(
            api_key=settings.openai_api_key,
            websocket_base_url=settings.realtime_url,
            max_retries=0,
        )
        stack.push_async_callback(client.close)

        def realtime(config: SessionConfig) -> BackendLeg:
            return RealtimeBackend(client, config)

        return realtime
    raise ConfigError(
        "SWITCHBOARD_BACKEND",
        f"the {name} backend is not available in this release",
        "set OPENAI_API_KEY to use the realtime backend",
    )
