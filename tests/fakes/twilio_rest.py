"""A local fake of Twilio's REST Calls resource (protocols.md §1.6), served by a real HTTP server.

Records every `POST /2010-04-01/Accounts/{AC}/Calls/{CA}.json` with its form and basic-auth user,
answers 200 with a call JSON like Twilio's (or a scripted status), and lets tests await requests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.server import serve_in_process


@dataclass(frozen=True)
class RestRequest:
    account_sid: str
    call_sid: str
    form: dict[str, str]
    auth_user: str
    auth_password: str
    at: float


class FakeTwilioRest:
    def __init__(self, *, status_code: int = 200) -> None:
        self.status_code = status_code
        self.requests: list[RestRequest] = []
        self.created: list[RestRequest] = []
        # Status answered for created calls, in order per GET (the last one repeats).
        self.outbound_statuses: list[str] = ["ringing", "in-progress"]
        self._polls: dict[str, int] = {}
        self._changed = asyncio.Event()
        self.base_url = ""

    async def _update(self, request: Request) -> JSONResponse:
        auth = request.headers.get("authorization", "")
        user, password = "", ""
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        form = {k: str(v) for k, v in (await request.form()).items()}
        sid = request.path_params["call_sid"].removesuffix(".json")
        self.requests.append(
            RestRequest(request.path_params["account_sid"], sid, form, user, password, time.monotonic())
        )
        self._changed.set()
        if not user:
            return JSONResponse({"code": 20003, "message": "Authenticate"}, status_code=401)
        body = {"sid": sid, "status": form.get("Status", "in-progress")}
        return JSONResponse(body, status_code=self.status_code)

    async def _create(self, request: Request) -> JSONResponse:
        form = {k: str(v) for k, v in (await request.form()).items()}
        sid = f"CA{len(self.created) + 1:032x}"
        self.created.append(
            RestRequest(request.path_params["account_sid"], sid, form, "", "", time.monotonic())
        )
        self._changed.set()
        return JSONResponse({"sid": sid, "status": "queued"}, status_code=201)

    async def _status(self, request: Request) -> JSONResponse:
        sid = request.path_params["call_sid"].removesuffix(".json")
        n = self._polls.get(sid, 0)
        self._polls[sid] = n + 1
        status = self.outbound_statuses[min(n, len(self.outbound_statuses) - 1)]
        return JSONResponse({"sid": sid, "status": status})

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakeTwilioRest]:
        app = Starlette(
            routes=[
                Route("/2010-04-01/Accounts/{account_sid}/Calls.json", self._create, methods=["POST"]),
                Route(
                    "/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}",
                    self._update,
                    methods=["POST"],
                ),
                Route("/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}", self._status, methods=["GET"]),
            ]
        )
        async with serve_in_process(app) as port:
            self.base_url = f"http://127.0.0.1:{port}"
            yield self

    async def wait_for_request(self, timeout: float = 5.0) -> RestRequest:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not self.requests:
                self._changed.clear()
                await self._changed.wait()
        return self.requests[0]
