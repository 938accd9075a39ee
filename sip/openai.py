"""OpenAI Realtime over SIP: the incoming-call webhook, call control, and the call's two legs.

OpenAI answers the SIP trunk itself and the audio flows caller ⇄ OpenAI over SRTP; we never see
it (protocols.md §2). What reaches us is:

1. `POST /openai/webhook` (Standard Webhooks, signed): `realtime.call.incoming` with the call id
   and the INVITE's headers. We verify the signature, drop repeated deliveries by `webhook-id`,
   answer 200 at once, and in a background task accept the call with the routed agent's session
   (`POST /v1/realtime/calls/{id}/accept`), or reject it with 486 when we are full.
2. The sideband WebSocket (`/v1/realtime?call_id=…`): a normal Realtime socket minus the audio.
   Tools, handoffs, transcripts, usage and DTMF arrive there, so the call runs through the same
   call owner (`gateway.call.Call`) as a Twilio call: `Gateway.prepare_call` routes it,
   `Gateway.run_call` runs it, with `RealtimeBackend(call_id=…)` as the model leg and
   `OpenAISipLeg` as a phone leg that carries no media.
3. Hang-up and transfer go through the calls endpoints (`…/hangup`, `…/refer`).

Everything peer-facing is parsed at the edge into frozen dataclasses by pure functions
(`verify_webhook`, `parse_event`, `accept_body`, `refer_target`), covered by table tests; the
rest is thin I/O. Every buffer, set and wait here is bounded.

The sip package's plugin mounts `openai_routes()` and enters `openai_sip_lifespan(gateway)`.
Without `OPENAI_WEBHOOK_SECRET` the route answers 503 and start-up logs why: a plain SIP trunk
deployment must not need an OpenAI secret. A secret that is set but malformed, or a secret
without `OPENAI_API_KEY`, fails start-up instead (a typo must not silently drop calls).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import hashlib
import hmac
import json
import re
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import structlog
from openai import APIStatusError, AsyncOpenAI, OpenAIError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.backends import realtime_codec
from gateway.backends.base import Capabilities, SessionConfig
from gateway.backends.realtime import RealtimeBackend
from gateway.commands import (
    CarrierCommand,
    ClearPlayback,
    HangUp,
    ModelCommand,
    PlayAudio,
    SendMark,
)
from gateway.config import ConfigError
from gateway.events import (
    CallerDtmf,
    CallerHungUp,
    CallStarted,
    CarrierEvent,
    MarkPlayed,
    ModelClosed,
    ModelEvent,
)
from gateway.runtime import Gateway

__all__ = [
    "CARRIER",
    "WEBHOOK_PATH",
    "BadEvent",
    "CallControl",
    "ControlError",
    "IncomingCall",
    "OpenAISip",
    "OpenAISipLeg",
    "OtherEvent",
    "SidebandLeg",
    "WebhookDedupe",
    "WebhookVerificationError",
    "accept_body",
    "openai_routes",
    "openai_sip_lifespan",
    "parse_event",
    "refer_target",
    "sign_webhook",
    "verify_webhook",
    "webhook_key",
]

log = structlog.get_logger("switchboard.openai_sip")

CARRIER: Final = "openai_sip"
WEBHOOK_PATH: Final = "/openai/webhook"
INCOMING_TYPE: Final = "realtime.call.incoming"

# Standard Webhooks (protocols.md §2 "Signature"): deliveries older or newer than this are replays.
SIGNATURE_TOLERANCE_S: Final = 300
# Bounds on what an unauthenticated request can make us parse or hash.
MAX_BODY_BYTES: Final = 256 * 1024  # an INVITE's headers are a few kB; UDP caps SIP at 64 kB
MAX_WEBHOOK_ID_CHARS: Final = 256
MAX_SIGNATURE_HEADER_CHARS: Final = 4096
MAX_SIGNATURES: Final = 16
# Deduplication of deliveries (protocols.md §2: "Deduplicate deliveries on webhook-id").
DEDUPE_MAX_IDS: Final = 10_000
DEDUPE_TTL_S: Final = 3600.0
# SIP headers kept from the INVITE; they are untrusted caller metadata (protocols.md §2).
MAX_SIP_HEADERS: Final = 128
MAX_SIP_HEADER_NAME: Final = 128
MAX_SIP_HEADER_VALUE: Final = 2048
MAX_ROUTING_HEADERS: Final = 16  # X-… headers handed on as call parameters (e.g. X-Agent)
MAX_ROUTING_VALUE: Final = 256
# Call control.
CONTROL_TIMEOUT_S: Final = 10.0
CONTROL_RETRIES: Final = 1
MAX_PENDING_REJECTS: Final = 64
CLOSE_GRACE_S: Final = 5.0
REMOTE_END_HANDOFF_S: Final = 1.0
MAX_QUEUED_CARRIER_EVENTS: Final = 1024

# A call id goes into URL paths and a query string; real ones look like `rtc_u1_<hex>`.
_CALL_ID = re.compile(r"[A-Za-z0-9_.:-]{1,256}")
_ROUTING_HEADER = re.compile(r"X-[A-Za-z0-9-]{1,64}", re.IGNORECASE)
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_TEL_URI = re.compile(r"tel:\+?[0-9][0-9().-]{0,31}(;[A-Za-z0-9=._+-]{1,64}){0,4}", re.IGNORECASE)
# No `?` (URI headers) nor `&`: a Refer-To carrying e.g. `?Replaces=` would do more than transfer.
_SIP_URI = re.compile(r"sips?:[A-Za-z0-9!$'()*+,./:;=@_~%\[\]-]{1,250}", re.IGNORECASE)


# --------------------------------------------------------------------------- signatures


class WebhookVerificationError(Exception):
    """A delivery failed Standard Webhooks verification. `reason` is a stable code for logs:
    `missing_header`, `bad_header`, `bad_timestamp`, `timestamp_too_old`, `timestamp_too_new`,
    `no_match`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a webhook secret: base64 after `whsec_`, else the raw bytes (protocols.md §2,
    as openai-python `lib/_webhooks.py` does). A malformed `whsec_` secret is a config error."""
    if not secret.startswith("whsec_"):
        return secret.encode()
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise ConfigError(
            "OPENAI_WEBHOOK_SECRET",
            "is not valid base64 after whsec_",
            "copy the secret exactly as the OpenAI dashboard shows it (whsec_…)",
        )
    return key


def _digest(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> bytes:
    # Signed content is `{id}.{timestamp}.{raw body}`; the raw bytes, never a re-serialization.
    return hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def sign_webhook(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One `webhook-signature` entry (`v1,<base64>`), as OpenAI computes it. For tests and fakes."""
    return "v1," + base64.b64encode(_digest(key, webhook_id, str(timestamp), body)).decode()


def _header(headers: Mapping[str, str], name: str, limit: int) -> str:
    value = headers.get(name)
    if not value:
        raise WebhookVerificationError("missing_header")
    if len(value) > limit:
        raise WebhookVerificationError("bad_header")
    return value


def verify_webhook(
    key: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_s: int = SIGNATURE_TOLERANCE_S,
) -> str:
    """Check a delivery's Standard Webhooks signature; return its `webhook-id`.

    `headers` is looked up by lower-case name (Starlette's `Headers` matches any case). The
    timestamp must be within `tolerance_s` of `now` either way; the signature header holds
    space-separated `v1,<base64>` entries and any one matching is enough (key rotation).
    Entries of other versions are ignored, never compared. Raises `WebhookVerificationError`.
    """
    webhook_id = _header(headers, "webhook-id", MAX_WEBHOOK_ID_CHARS)
    timestamp = _header(headers, "webhook-timestamp", 20)
    signature = _header(headers, "webhook-signature", MAX_SIGNATURE_HEADER_CHARS)
    if not webhook_id.isascii() or not webhook_id.isprintable():
        raise WebhookVerificationError("bad_header")
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise WebhookVerificationError("bad_timestamp")
    age = now - int(timestamp)
    if age > tolerance_s:
        raise WebhookVerificationError("timestamp_too_old")
    if age < -tolerance_s:
        raise WebhookVerificationError("timestamp_too_new")
    expected = _digest(key, webhook_id, timestamp, body)
    for entry in signature.split()[:MAX_SIGNATURES]:
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        # Compare digests as bytes, in constant time (header text may not even be ASCII).
        if hmac.compare_digest(candidate, expected):
            return webhook_id
    raise WebhookVerificationError("no_match")


class WebhookDedupe:
    """Webhook ids seen recently: at most `max_ids`, each forgotten `ttl_s` after it was first seen.

    Senders retry a delivery they think failed (a timeout on their side, say); the second copy
    must not accept the call again. The TTL counts from the first delivery and is not renewed:
    insertion order is then time order, so expiry and eviction both pop the oldest.
    """

    def __init__(self, max_ids: int = DEDUPE_MAX_IDS, ttl_s: float = DEDUPE_TTL_S) -> None:
        self.max_ids = max_ids
        self.ttl_s = ttl_s
        self._ids: collections.OrderedDict[str, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def seen(self, webhook_id: str, now: float) -> bool:
        """Record `webhook_id` at `now`; True if it was already recorded (a duplicate)."""
        while self._ids:
            oldest, at = next(iter(self._ids.items()))
            if now - at < self.ttl_s:
                break
            del self._ids[oldest]
        if webhook_id in self._ids:
            return True
        self._ids[webhook_id] = now
        while len(self._ids) > self.max_ids:
            self._ids.popitem(last=False)
        return False


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """`realtime.call.incoming` (protocols.md §2). Everything but `call_id` is caller metadata
    from the INVITE and untrusted: it may route the call, never authorize anything."""

    event_id: str
    call_id: str
    sip_headers: tuple[tuple[str, str], ...]
    caller: str  # user part of From, e.g. "+14155550100"
    callee: str  # user part of To
    sip_call_id: str
    media_security: str = ""

    def header(self, name: str) -> str | None:
        """The first SIP header called `name` (any case)."""
        wanted = name.lower()
        return next((v for n, v in self.sip_headers if n.lower() == wanted), None)

    def parameters(self) -> dict[str, str]:
        """Call parameters for routing and instruction templates (`{from}`, `{to}`), shaped like
        Twilio's: From, To, the SIP Call-ID, and a bounded set of `X-` headers (e.g. X-Agent)."""
        params: dict[str, str] = {}
        for name, value in self.sip_headers:
            if len(params) >= MAX_ROUTING_HEADERS:
                break
            if _ROUTING_HEADER.fullmatch(name) and len(value) <= MAX_ROUTING_VALUE:
                params.setdefault(name, value)
        params.update(From=self.caller, To=self.callee, SipCallId=self.sip_call_id)
        return params


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """A well-formed event that is not ours to act on (e.g. `live.transport.incoming`: we
    subscribe to Realtime only, and the first accept wins, protocols.md §2)."""

    type: str


@dataclass(frozen=True, slots=True)
class BadEvent:
    """A signed body we cannot use; `reason` is a stable code, `detail` never holds the payload."""

    reason: str
    detail: str = ""


def sip_user(value: str) -> str:
    """The user part of a From/To value: `"Bob" <sip:+1425@host;user=phone>;tag=x` → `+1425`."""
    v = value.strip()
    start, end = v.find("<"), v.find(">")
    v = v[start + 1 : end] if 0 <= start < end else v.split(";", 1)[0]
    scheme, sep, rest = v.partition(":")
    if not sep or scheme.strip().lower() not in ("sip", "sips", "tel"):
        return ""
    if scheme.strip().lower() != "tel":
        rest = rest.split("@", 1)[0]
    return rest.split(";", 1)[0].strip()[:64]


def parse_event(body: bytes) -> IncomingCall | OtherEvent | BadEvent:
    """A verified webhook body → `IncomingCall`, `OtherEvent` or `BadEvent`. Never raises."""
    try:
        event = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return BadEvent("invalid_json", type(exc).__name__)
    if not isinstance(event, dict):
        return BadEvent("not_object", type(event).__name__)
    kind = event.get("type")
    if not isinstance(kind, str) or not kind:
        return BadEvent("missing_type")
    if kind != INCOMING_TYPE:
        return OtherEvent(kind[:100])
    data = event.get("data")
    if not isinstance(data, dict):
        return BadEvent("missing_field", "data")
    call_id = data.get("call_id")
    if not isinstance(call_id, str) or not _CALL_ID.fullmatch(call_id):
        return BadEvent("bad_field", "data.call_id")
    raw_headers = data.get("sip_headers")
    headers: list[tuple[str, str]] = []
    if isinstance(raw_headers, list):
        for item in raw_headers:
            if len(headers) >= MAX_SIP_HEADERS:
                break
            if not isinstance(item, dict):
                continue
            name, value = item.get("name"), item.get("value")
            if (
                isinstance(name, str)
                and isinstance(value, str)
                and 0 < len(name) <= MAX_SIP_HEADER_NAME
                and len(value) <= MAX_SIP_HEADER_VALUE
            ):
                headers.append((name, value))

    def first(name: str) -> str:
        return next((v for n, v in headers if n.lower() == name), "")

    event_id = event.get("id")
    security = data.get("sip_media_security")
    return IncomingCall(
        event_id=event_id[:100] if isinstance(event_id, str) else "",
        call_id=call_id,
        sip_headers=tuple(headers),
        caller=sip_user(first("from")),
        callee=sip_user(first("to")),
        sip_call_id=first("call-id")[:256],
        media_security=security[:16] if isinstance(security, str) else "",
    )


def accept_body(config: SessionConfig) -> dict[str, Any]:
    """The accept request's session (protocols.md §2 "Call control").

    Built from the very `session.update` the WebSocket backend sends (one serializer, so the
    two never drift), plus `model` (fixed at accept, protocols.md §2 "Sideband"), minus
    `audio.input.format`/`audio.output.format`: SIP negotiates the codec.
    """
    session: dict[str, Any] = json.loads(realtime_codec.session_update(config))["session"]
    for side in session.get("audio", {}).values():
        side.pop("format", None)
    return {"type": "realtime", "model": config.model, **session}


def refer_target(target: str) -> str | None:
    """A transfer target as a `Refer-To` URI: E.164 → `tel:`, `tel:`/`sip:`/`sips:` kept. None for
    anything else (no spaces, CR/LF or angle brackets can reach the SIP header)."""
    target = target.strip()
    if _E164.fullmatch(target):
        return "tel:" + target
    if _TEL_URI.fullmatch(target) or _SIP_URI.fullmatch(target):
        return target
    return None


# --------------------------------------------------------------------------- call control


@dataclass(frozen=True, slots=True)
class ControlError:
    """A calls-endpoint request failed. `status` is None when no HTTP answer came back; `code`
    is OpenAI's error code (e.g. `call_id_not_found`) or the exception's name."""

    action: str
    status: int | None
    code: str


class CallControl:
    """`POST /v1/realtime/calls/{call_id}/accept|reject|refer|hangup` through the SDK (auth,
    base URL, timeouts and retries on network errors and 5xx are the SDK's)."""

    def __init__(self, client: AsyncOpenAI) -> None:
        self.client = client

    async def _do(
        self, action: str, call_id: str, request: Callable[[], Awaitable[None]]
    ) -> ControlError | None:
        try:
            await request()
        except APIStatusError as exc:
            code = exc.code if isinstance(exc.code, str) else ""
            log.warning(
                "openai_call_control_rejected", action=action, call=call_id, status=exc.status_code, code=code
            )
            return ControlError(action, exc.status_code, code)
        except OpenAIError as exc:  # APIConnectionError/APITimeoutError: no HTTP answer
            log.warning("openai_call_control_failed", action=action, call=call_id, error=type(exc).__name__)
            return ControlError(action, None, type(exc).__name__)
        log.info("openai_call_control", action=action, call=call_id)
        return None

    async def accept(self, call_id: str, session: Mapping[str, Any]) -> ControlError | None:
        body = {k: v for k, v in session.items() if k != "type"}
        return await self._do(
            "accept",
            call_id,
            lambda: self.client.realtime.calls.accept(call_id, type="realtime", extra_body=body),
        )

    async def reject(self, call_id: str, status_code: int = 486) -> ControlError | None:
        return await self._do(
            "reject", call_id, lambda: self.client.realtime.calls.reject(call_id, status_code=status_code)
        )

    async def refer(self, call_id: str, target_uri: str) -> ControlError | None:
        return await self._do(
            "refer", call_id, lambda: self.client.realtime.calls.refer(call_id, target_uri=target_uri)
        )

    async def hangup(self, call_id: str) -> ControlError | None:
        return await self._do("hangup", call_id, lambda: self.client.realtime.calls.hangup(call_id))


# --------------------------------------------------------------------------- the two legs


class OpenAISipLeg:
    """The phone side of an OpenAI SIP call: no media flows through us.

    `events()` yields nothing of its own until the call is over, except what the call owner's
    bookkeeping needs: each `SendMark` is echoed at once as `MarkPlayed` (nothing is queued
    here, so nothing is left to play), and DTMF the sideband reports is handed over as a
    carrier event. Audio commands are no-ops: the caller hears the model over SRTP. Hang-up and
    transfer are calls-endpoint requests.
    """

    name = CARRIER

    def __init__(self, call_id: str, control: CallControl) -> None:
        self.call_id = call_id
        self.control = control
        self._pending: collections.deque[CarrierEvent] = collections.deque()
        self._wake = asyncio.Event()
        self._ended = False
        self._end_reason = "leg_closed"
        self._delivered = asyncio.Event()
        self.dropped = 0

    def _push(self, event: CarrierEvent) -> None:
        if self._ended:
            return
        if len(self._pending) >= MAX_QUEUED_CARRIER_EVENTS:
            self.dropped += 1
            log.warning("openai_sip_leg_queue_full", dropped=type(event).__name__)
            return
        self._pending.append(event)
        self._wake.set()

    def _finish(self, reason: str) -> None:
        if not self._ended:
            self._ended = True
            self._end_reason = reason
            self._wake.set()

    def dtmf(self, event: CallerDtmf) -> None:
        """A keypad digit from the sideband (`input_audio_buffer.dtmf_event_received`)."""
        self._push(event)

    async def remote_ended(self, reason: str) -> None:
        """OpenAI ended the call (the sideband closed cleanly). Returns once `CallerHungUp` is
        in the runner's inbox (bounded wait), so the call owner sees it before `ModelClosed`."""
        if self._ended:
            return
        self._finish(reason)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REMOTE_END_HANDOFF_S):
                await self._delivered.wait()

    async def events(self) -> AsyncIterator[CarrierEvent]:
        while True:
            while self._pending:
                yield self._pending.popleft()
            if self._ended:
                break
            self._wake.clear()
            await self._wake.wait()
        yield CallerHungUp(self._end_reason)
        # Resumed only after the runner queued the event above.
        self._delivered.set()

    async def send(self, command: CarrierCommand) -> None:
        match command:
            case HangUp(reason=reason):
                error = await self.control.hangup(self.call_id)
                log.info("openai_sip_hangup", reason=reason, ok=error is None)
                await self.close()
            case SendMark(name=name):
                self._push(MarkPlayed(name))
            case PlayAudio() | ClearPlayback():
                pass  # the audio is on SRTP between the caller and OpenAI (protocols.md §2)
            case _:
                # SendDtmf: the calls endpoints have no way to send digits (protocols.md §2).
                log.warning("openai_sip_command_unsupported", command=type(command).__name__)

    async def transfer(self, target: str, mode: str, summary: str) -> tuple[bool, str]:
        """SIP REFER through `…/refer` (protocols.md §2). A warm transfer cannot brief the human
        here (we have no audio path to them), so it goes cold and says so."""
        uri = refer_target(target)
        if uri is None:
            return False, "the transfer target is not a phone number or a sip:/tel: URI"
        if mode == "warm":
            log.warning("openai_sip_warm_transfer_as_cold")
        error = await self.control.refer(self.call_id, uri)
        if error is not None:
            return False, f"refer failed ({error.code or error.status or 'error'})"
        return True, "transferred (cold)" if mode == "warm" else "transferred"

    async def close(self) -> None:
        self._finish(self._end_reason)


class SidebandLeg:
    """The model side: `RealtimeBackend(call_id=…)` plus two SIP facts it reports.

    DTMF arrives on the sideband but is the phone's doing, so it goes to the phone leg as a
    carrier event. A clean close of the sideband (code 1000) by OpenAI means the session is
    over, the caller hung up or was transferred: that becomes `CallerHungUp` (no hang-up request
    for a call that is gone). Any other loss is `ModelClosed`: the call owner hangs up, since a
    call we can no longer supervise must not go on.
    """

    def __init__(self, backend: RealtimeBackend, phone: OpenAISipLeg) -> None:
        self.backend = backend
        self.phone = phone
        self.capabilities: Capabilities = backend.capabilities

    async def events(self) -> AsyncIterator[ModelEvent]:
        async for event in self.backend.events():
            if isinstance(event, CallerDtmf):
                self.phone.dtmf(event)
                continue
            if isinstance(event, ModelClosed) and event.reason == "disconnected" and event.code == 1000:
                await self.phone.remote_ended("caller_hangup")
            yield event

    async def send(self, command: ModelCommand) -> None:
        await self.backend.send(command)

    async def close(self) -> None:
        await self.backend.close()


# --------------------------------------------------------------------------- the webhook


def _error(status: int, code: str, message: str) -> JSONResponse:
    # api-rules.md "Access": errors are JSON {"error": {"code", "message"}}.
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


class OpenAISip:
    """Per-app state of OpenAI SIP: the key, the dedupe table, and the calls' background tasks."""

    def __init__(
        self,
        gateway: Gateway,
        client: AsyncOpenAI,
        key: bytes,
        *,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gateway = gateway
        self.client = client
        self.control = CallControl(client)
        self._key = key
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self.dedupe = WebhookDedupe()
        self._calls: dict[asyncio.Task[None], str] = {}  # task -> gateway call id, once known
        self._rejects: set[asyncio.Task[None]] = set()
        self._closing = False
        self.counts: collections.Counter[str] = collections.Counter()

    @property
    def active_tasks(self) -> int:
        return len(self._calls) + len(self._rejects)

    async def handle(self, request: Request) -> Response:
        if self._closing:
            return _error(503, "shutting_down", "the gateway is shutting down")
        body = await _read_body(request, MAX_BODY_BYTES)
        if body is None:
            self.counts["too_large"] += 1
            log.warning("openai_webhook_too_large")
            return _error(413, "too_large", "the body is too large")
        try:
            webhook_id = verify_webhook(self._key, request.headers, body, now=self._wall_clock())
        except WebhookVerificationError as exc:
            # 400, as Standard Webhooks receivers do: 401 would promise an auth challenge.
            self.counts["bad_signature"] += 1
            remote = request.client.host if request.client else "?"
            log.warning("openai_webhook_rejected", reason=exc.reason, remote=remote)
            return _error(400, "invalid_signature", "the webhook signature did not verify")
        event = parse_event(body)
        if isinstance(event, BadEvent):
            self.counts["malformed"] += 1
            log.warning("openai_webhook_malformed", reason=event.reason, detail=event.detail)
            return _error(400, "malformed_event", "the event could not be used")
        if self.dedupe.seen(webhook_id, self._monotonic()):
            self.counts["duplicate"] += 1
            log.info("openai_webhook_duplicate", webhook=webhook_id)
            return JSONResponse({"ok": True})
        if isinstance(event, OtherEvent):
            # E.g. live.transport.incoming for the same pending call: not ours (protocols.md §2).
            self.counts["ignored"] += 1
            log.info("openai_webhook_ignored", type=event.type)
            return JSONResponse({"ok": True})
        self._dispatch(event)
        return JSONResponse({"ok": True})

    def _has_room(self) -> bool:
        # Our own tasks count too: an accepted call is not in the registry until its sideband
        # task reaches run_call, and a burst of webhooks must not all slip through that window.
        return self.gateway.registry.has_room() and len(self._calls) < self.gateway.settings.max_calls

    def _dispatch(self, incoming: IncomingCall) -> None:
        log.info(
            "openai_sip_incoming",
            call=incoming.call_id,
            sip_call_id=incoming.sip_call_id,
            media_security=incoming.media_security,
        )
        if not self._has_room():
            self.gateway.registry.rejected += 1
            self.counts["rejected"] += 1
            if len(self._rejects) >= MAX_PENDING_REJECTS:
                # Flooded: let OpenAI's own timeout end this one rather than grow without bound.
                log.warning("openai_sip_reject_skipped", call=incoming.call_id)
                return
            log.warning("call_rejected_capacity", call=incoming.call_id, live=len(self.gateway.registry.live))
            reject = asyncio.create_task(self._reject(incoming.call_id), name="openai-sip-reject")
            self._rejects.add(reject)
            reject.add_done_callback(self._rejects.discard)
            return
        self.counts["accepted"] += 1
        call_task = asyncio.create_task(self._run(incoming), name=f"openai-sip-{incoming.call_id}")
        self._calls[call_task] = ""
        call_task.add_done_callback(self._call_done)

    async def _reject(self, call_id: str) -> None:
        # 486 Busy Here: the caller's phone says busy, and a trunk may try another route.
        await self.control.reject(call_id, 486)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._calls.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("openai_sip_call_task_failed", exc_info=task.exception())

    async def _run(self, incoming: IncomingCall) -> None:
        """Accept with the routed agent's session, then run the call over the sideband."""
        gateway = self.gateway
        params = incoming.parameters()
        try:
            # native_dtmf: `send_dtmf` must not become in-band tones we cannot play; the leg
            # logs that the calls endpoints cannot send digits.
            # Audio runs between the trunk and OpenAI: the gateway has no way to send keypad
            # tones, so send_dtmf says so to the model instead of pretending.
            call, session = gateway.prepare_call(CARRIER, params, can_send_dtmf=False)
            body = accept_body(session)
        except Exception:
            # A routing or agent bug: answer the caller (503, try elsewhere) instead of letting
            # the INVITE ring until OpenAI gives up.
            log.exception("openai_sip_prepare_failed", call=incoming.call_id)
            await self.control.reject(incoming.call_id, 503)
            return
        error = await self.control.accept(incoming.call_id, body)
        if error is not None:
            # call_id_not_found: the caller left, or another handler (Live?) accepted first.
            return
        task = asyncio.current_task()
        if task is not None and task in self._calls:
            self._calls[task] = call.call_id
        phone = OpenAISipLeg(incoming.call_id, self.control)
        backend = RealtimeBackend(self.client, session, call_id=incoming.call_id)
        call.caps = backend.capabilities
        started = CallStarted(carrier=CARRIER, call_sid=incoming.call_id, stream_sid="", parameters=params)
        await gateway.run_call(call, phone, SidebandLeg(backend, phone), first_events=[started])

    async def aclose(self) -> None:
        """Stop taking calls; hang up ours (the app has usually done so), wait, cancel the rest."""
        self._closing = True
        for call_id in list(self._calls.values()):
            if call_id:
                self.gateway.hang_up(call_id, "shutdown")
        tasks = [*self._calls, *self._rejects]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=CLOSE_GRACE_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


_RUNNING: weakref.WeakKeyDictionary[Gateway, OpenAISip] = weakref.WeakKeyDictionary()


async def webhook(request: Request) -> Response:
    """`POST /openai/webhook`: OpenAI's webhook events (protocols.md §2)."""
    gateway: Gateway = request.app.state.gateway
    sip = _RUNNING.get(gateway)
    if sip is None:
        return _error(503, "openai_sip_disabled", "OpenAI SIP is not configured (OPENAI_WEBHOOK_SECRET)")
    return await sip.handle(request)


def openai_routes() -> list[BaseRoute]:
    """Routes the sip plugin mounts; the handler finds the `Gateway` at `app.state.gateway`."""
    return [Route(WEBHOOK_PATH, webhook, methods=["POST"])]


@contextlib.asynccontextmanager
async def openai_sip_lifespan(gateway: Gateway) -> AsyncIterator[OpenAISip | None]:
    """Run OpenAI SIP for `gateway` while the block runs; yields the state, or None when off.

    On exit it stops answering webhooks (503, so OpenAI may retry elsewhere), hangs up its
    calls, waits `CLOSE_GRACE_S` for them, cancels what is left and closes the client.
    """
    s = gateway.settings
    if not s.openai_webhook_secret:
        log.warning(
            "openai_sip_disabled",
            reason=f"OPENAI_WEBHOOK_SECRET is not set; POST {WEBHOOK_PATH} answers 503",
        )
        yield None
        return
    key = webhook_key(s.openai_webhook_secret)
    if not s.openai_api_key:
        raise ConfigError(
            "OPENAI_API_KEY",
            "is not set; OpenAI SIP needs it to accept calls and open their sideband",
            "export OPENAI_API_KEY=sk-…, or unset OPENAI_WEBHOOK_SECRET to turn OpenAI SIP off",
        )
    base = urlsplit(s.openai_api_base)
    if base.scheme not in ("http", "https") or not base.netloc:
        raise ConfigError(
            "SWITCHBOARD_OPENAI_API_BASE",
            f"{s.openai_api_base!r} is not an http(s) URL",
            "use e.g. https://api.openai.com/v1",
        )
    client = AsyncOpenAI(
        api_key=s.openai_api_key,
        base_url=s.openai_api_base,
        websocket_base_url=s.realtime_url,
        timeout=CONTROL_TIMEOUT_S,
        max_retries=CONTROL_RETRIES,
    )
    sip = OpenAISip(gateway, client, key)
    _RUNNING[gateway] = sip
    log.info("openai_sip_ready", path=WEBHOOK_PATH, api_base=s.openai_api_base)
    try:
        yield sip
    finally:
        try:
            await sip.aclose()
        finally:
            _RUNNING.pop(gateway, None)
            await client.close()
