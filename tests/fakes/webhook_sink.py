"""A loopback HTTP endpoint that records JSON POSTs (approval webhooks and the like)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.server import serve_in_process


class WebhookSink:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.url = ""
        self._changed = asyncio.Event()

    async def _hook(self, request: Request) -> Response:
        self.received.append(await request.json())
        self._changed.set()
        return Response(status_code=204)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[WebhookSink]:
        app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])
        async with serve_in_process(app) as port:
            self.url = f"http://127.0.0.1:{port}/hook"
            yield self

    async def wait(self, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.received
