"""A local fake of OpenAI's Realtime call-control endpoints (protocols.md §2 "Call control").

A real HTTP server on 127.0.0.1, so the gateway reaches it through the official SDK with
`base_url = fake.base_url` exactly as it reaches api.openai.com::

    async with FakeOpenAICalls().running() as calls:
        ...  # SWITCHBOARD_OPENAI_API_BASE=calls.base_url
        accept = await calls.wait_for("accept")

It serves `POST /v1/realtime/calls/{call_id}/accept|reject|refer|hangup`, records every request
(body and Authorization), and answers like the real API: `200` with an empty body; `401` without
a bearer key; `404 call_id_not_found` for a call it does not know or that is already over
(rejected, hung up, referred); `400 invalid_request_error` for a body the endpoint refuses
(accept without `type: "realtime"`, refer without `target_uri`). Which calls exist is up to the
test: `known=None` (the default) lets any well-formed id ring once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.server import serve_in_process

__all__ = ["CallsRequest", "FakeOpenAICalls"]

ACTIONS = frozenset({"accept", "reject", "refer", "hangup"})


@dataclass(frozen=True, slots=True)
class CallsRequest:
    """One request as the fake received it."""

    call_id: str
    action: str
    body: Any
    """Parsed JSON body, or None when there was none."""
    authorization: str
    at: float


def _error(status: int, message: str, code: str | None, type_: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "code": code}}, status_code=status)


class FakeOpenAICalls:
    def __init__(self, *, known: Iterable[str] | None = None, delay_s: float = 0.0) -> None:
        self.known: set[str] | None = set(known) if known is not None else None
        self.delay_s = delay_s
        """Wait this long before answering (the real 404 reportedly takes about 5 s)."""
        self.requests: list[CallsRequest] = []
        self.ended: set[str] = set()
        self.base_url = ""
        self._changed = asyncio.Condition()

    def of(self, action: str, call_id: str | None = None) -> list[CallsRequest]:
        return [r for r in self.requests if r.action == action and call_id in (None, r.call_id)]

    async def wait_for(
        self,
        action: str,
        *,
        call_id: str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - every wait is bounded and says what it missed
    ) -> CallsRequest:
        """The first recorded request of `action` (for `call_id`, if given)."""

        def found() -> bool:
            return bool(self.of(action, call_id))

        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(found)
        except TimeoutError:
            seen = [(r.action, r.call_id) for r in self.requests][-10:]
            raise TimeoutError(f"no {action!r} within {timeout}s; seen: {seen}") from None
        return self.of(action, call_id)[0]

    async def _handle(self, request: Request) -> Response:
        call_id, action = request.path_params["call_id"], request.path_params["action"]
        raw = await request.body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"_invalid_json": raw.decode("utf-8", "replace")}
        auth = request.headers.get("authorization", "")
        self.requests.append(CallsRequest(call_id, action, body, auth, time.monotonic()))
        async with self._changed:
            self._changed.notify_all()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if action not in ACTIONS:
            return _error(404, f"Invalid URL (POST /v1/realtime/calls/{call_id}/{action})", None)
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return _error(401, "You didn't provide an API key.", None)
        if call_id in self.ended or (self.known is not None and call_id not in self.known):
            return _error(404, "No session found for the provided call_id", "call_id_not_found")
        check: Callable[[Any], str | None] = _CHECKS[action]
        problem = check(body)
        if problem is not None:
            return _error(400, problem, "invalid_value")
        if action in ("reject", "hangup", "refer"):
            self.ended.add(call_id)
        return Response(status_code=200)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakeOpenAICalls]:
        app = Starlette(
            routes=[Route("/v1/realtime/calls/{call_id}/{action}", self._handle, methods=["POST"])]
        )
        async with serve_in_process(app) as port:
            self.base_url = f"http://127.0.0.1:{port}/v1"
            yield self


def _check_accept(body: Any) -> str | None:
    if not isinstance(body, dict) or body.get("type") != "realtime":
        return "Missing required parameter: 'type'."
    return None


def _check_reject(body: Any) -> str | None:
    if body is None:
        return None  # 603 Decline when omitted (protocols.md §2)
    status = body.get("status_code") if isinstance(body, dict) else None
    if status is not None and not (isinstance(status, int) and 400 <= status <= 699):
        return "Invalid 'status_code'."
    return None


def _check_refer(body: Any) -> str | None:
    target = body.get("target_uri") if isinstance(body, dict) else None
    if not isinstance(target, str) or not target.startswith(("tel:", "sip:", "sips:")):
        return "Invalid 'target_uri'."
    return None


def _check_hangup(body: Any) -> str | None:
    return None


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "accept": _check_accept,
    "reject": _check_reject,
    "refer": _check_refer,
    "hangup": _check_hangup,
}
