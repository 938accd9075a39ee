"""REST API over calls: list, inspect, and act (hang up, transfer, say, approve).

One shape for every carrier and backend (shared/reference/api-rules.md). Requests carry
`Authorization: Bearer <SWITCHBOARD_API_TOKEN>`; a missing or wrong token is a 401 with a JSON
error, and the token is never logged. Without a configured token the API answers only clients
on loopback (and the app says so at start-up). Actions are delivered to the call's owner as
events and answered 202 with an action id; their outcome shows in the call's events.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from gateway.call import Call
from gateway.commands import RequestApproval
from gateway.events import ApprovalDecision, Event, HangUpRequested, SayRequested, TransferRequested
from gateway.runtime import Gateway

MAX_PAGE = 200
log = structlog.get_logger("switchboard.api")


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def authorized(request: Request) -> JSONResponse | None:
    """None if the request may use the API, else the 401 to send."""
    token = request.app.state.gateway.settings.api_token
    if token is None:
        if _is_loopback(request.client.host if request.client else None):
            return None
        return error(
            401, "unauthorized", "the API answers only on loopback until SWITCHBOARD_API_TOKEN is set"
        )
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return None
    return error(401, "unauthorized", "send Authorization: Bearer <token>")


def summary(view: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "id",
        "carrier",
        "direction",
        "from",
        "to",
        "agent",
        "state",
        "started_at",
        "ended_at",
        "end_reason",
    )
    out = {k: view.get(k) for k in keep}
    out["cost_usd"] = (view.get("cost") or {}).get("total")
    return out


async def find_view(gateway: Gateway, key: str) -> dict[str, Any] | None:
    call = gateway.registry.get(key)
    if call is not None:
        return gateway.call_view(call)
    if gateway.store is not None:
        return await gateway.store.get(key)
    return None


async def list_calls(request: Request) -> JSONResponse:
    if (denied := authorized(request)) is not None:
        return denied
    gateway: Gateway = request.app.state.gateway
    state = request.query_params.get("state")
    since = request.query_params.get("since")
    try:
        limit = max(1, min(MAX_PAGE, int(request.query_params.get("limit", "50"))))
    except ValueError:
        return error(400, "bad_limit", "limit must be a whole number")
    cursor = request.query_params.get("cursor")

    def wanted(c: dict[str, Any]) -> bool:
        return (state is None or c["state"] == state) and (since is None or (c["started_at"] or "") >= since)

    # Live calls lead the first page; later pages come from the store's cursor.
    live = [] if cursor else [summary(gateway.call_view(e.call)) for e in gateway.registry.live.values()]
    live = [c for c in live if wanted(c)]
    next_cursor: str | None = None
    if gateway.store is not None:
        try:
            stored, next_cursor = await gateway.store.list(
                state=state, since=since, limit=limit, cursor=cursor
            )
        except ValueError:
            return error(400, "bad_query", "cursor or since is not valid (since is an ISO 8601 time)")
    else:
        stored = [c for c in (summary(gateway.call_view(c)) for c in gateway.registry.recent) if wanted(c)]
        stored = stored[:limit]
    seen = {c["id"] for c in live}
    calls = live + [c for c in stored if c["id"] not in seen]
    calls.sort(key=lambda c: c.get("started_at") or "", reverse=True)
    return JSONResponse({"calls": calls, "next": next_cursor})


async def get_call(request: Request) -> JSONResponse:
    if (denied := authorized(request)) is not None:
        return denied
    view = await find_view(request.app.state.gateway, request.path_params["call_id"])
    if view is None:
        return error(404, "call_not_found", "no call with that id")
    return JSONResponse(view)


async def _act(request: Request, build: Any) -> JSONResponse:
    if (denied := authorized(request)) is not None:
        return denied
    gateway: Gateway = request.app.state.gateway
    key = request.path_params["call_id"]
    call = gateway.registry.get(key)
    if call is None or call.call_id not in gateway.registry.live:
        if await find_view(gateway, key) is not None:
            return error(409, "call_not_live", "the call has ended")
        return error(404, "call_not_found", "no call with that id")
    try:
        body = await request.json() if await request.body() else {}
    except ValueError:
        return error(400, "bad_json", "the body must be a JSON object")
    if not isinstance(body, dict):
        return error(400, "bad_json", "the body must be a JSON object")
    event = build(body, request)
    if isinstance(event, JSONResponse):
        return event
    gateway.post(call.call_id, event)
    return JSONResponse(
        {"action_id": "act_" + secrets.token_hex(8), "call_id": call.call_id}, status_code=202
    )


def _hangup(body: dict[str, Any], request: Request) -> Event:
    return HangUpRequested("operator")


def _transfer(body: dict[str, Any], request: Request) -> Event | JSONResponse:
    to, mode = body.get("to"), body.get("mode", "cold")
    if not isinstance(to, str) or not to.strip():
        return error(400, "bad_request", 'give "to": an E.164 number or a sip: URI')
    if mode not in ("cold", "warm"):
        return error(400, "bad_request", 'mode must be "cold" or "warm"')
    return TransferRequested(to.strip(), mode)


def _say(body: dict[str, Any], request: Request) -> Event | JSONResponse:
    text = body.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > 2000:
        return error(400, "bad_request", 'give "text": what the bot should say (at most 2000 characters)')
    return SayRequested(text.strip())


def _approval(body: dict[str, Any], request: Request) -> Event | JSONResponse:
    approve = body.get("approve")
    if not isinstance(approve, bool):
        return error(400, "bad_request", 'give "approve": true or false')
    reason = body.get("reason", "")
    return ApprovalDecision(request.path_params["tool_call_id"], approve, str(reason)[:500])


async def hangup(request: Request) -> JSONResponse:
    return await _act(request, _hangup)


async def transfer(request: Request) -> JSONResponse:
    return await _act(request, _transfer)


async def say(request: Request) -> JSONResponse:
    return await _act(request, _say)


async def approval(request: Request) -> JSONResponse:
    return await _act(request, _approval)


def approval_webhook(url: str) -> Callable[[Call, RequestApproval], Awaitable[None]]:
    """POST each approval request as JSON to `url`; the receiver answers through the REST API
    (`POST /calls/{id}/approvals/{tool_call_id}`). Best effort: the approval times out into a
    rejection if nobody answers, so a failed webhook never blocks a call."""

    async def notify(call: Call, request: RequestApproval) -> None:
        body = {
            "type": "approval.requested",
            "call_id": call.call_id,
            "tool_call_id": request.tool_call_id,
            "tool": request.name,
            "arguments": request.arguments,
            "agent": call.record.agent,
            "approve_path": f"/calls/{call.call_id}/approvals/{request.tool_call_id}",
        }
        async with httpx.AsyncClient(timeout=5.0) as client:
            resp = await client.post(url, json=body)
        log.info("approval_webhook_sent", status=resp.status_code, tool_call_id=request.tool_call_id)

    return notify


def api_routes() -> list[BaseRoute]:
    return [
        Route("/calls", list_calls, methods=["GET"]),
        Route("/calls/{call_id}", get_call, methods=["GET"]),
        Route("/calls/{call_id}/hangup", hangup, methods=["POST"]),
        Route("/calls/{call_id}/transfer", transfer, methods=["POST"]),
        Route("/calls/{call_id}/say", say, methods=["POST"]),
        Route("/calls/{call_id}/approvals/{tool_call_id}", approval, methods=["POST"]),
    ]
