"""Twilio HTTP webhooks: the voice webhook (answers TwiML) and the call status callback.

Both are signed by Twilio (`X-Twilio-Signature`, protocols.md §1.5); a bad or missing signature
is a 403 with a log line and nothing else happens.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import structlog
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from twilio.twiml.voice_response import VoiceResponse

from gateway.config import Settings
from gateway.runtime import Gateway
from media_streams.endpoint import media_socket
from media_streams.security import twilio_signature_ok

log = structlog.get_logger("switchboard.twilio")

MEDIA_PATH = "/twilio/media"
# Call variables handed to the media socket as <Parameter>s: Twilio drops query strings from the
# <Stream> url (protocols.md §0), so routing must travel this way.
_FORWARDED_FIELDS = ("CallSid", "From", "To", "Direction", "AccountSid")


async def _verified_form(request: Request) -> list[tuple[str, str]] | None:
    """The webhook's form fields, or None if Twilio's signature does not match them."""
    gateway: Gateway = request.app.state.gateway
    form = await request.form()
    items = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    return items if twilio_signature_ok(request, gateway.settings, items, websocket=False) else None


def media_url(request: Request) -> str:
    """The public wss:// URL of the media socket, as Twilio must reach it."""
    s: Settings = request.app.state.gateway.settings
    if s.public_url:
        base = urlsplit(s.public_url)
        scheme = "wss" if base.scheme == "https" else "ws"
        return urlunsplit((scheme, base.netloc, base.path.rstrip("/") + MEDIA_PATH, "", ""))
    proto = request.url.scheme
    host = request.headers.get("host", request.url.netloc)
    if s.trust_forwarded:
        proto = request.headers.get("x-forwarded-proto", proto).split(",")[0].strip()
        host = request.headers.get("x-forwarded-host", host).split(",")[0].strip()
    return urlunsplit(("wss" if proto == "https" else "ws", host, MEDIA_PATH, "", ""))


async def voice_webhook(request: Request) -> Response:
    """`POST /twilio/voice`: answer with `<Connect><Stream>` to our media socket."""
    form = await _verified_form(request)
    if form is None:
        return PlainTextResponse("forbidden", status_code=403)
    fields = dict(form)
    response = VoiceResponse()
    stream = response.connect().stream(url=media_url(request))
    for name in _FORWARDED_FIELDS:
        if fields.get(name):
            stream.parameter(name=name, value=fields[name])
    # Routing hints on the webhook URL (e.g. ?agent=front_desk) travel on as parameters too.
    for name, value in parse_qsl(request.url.query):
        stream.parameter(name=name, value=value)
    log.info(
        "twilio_voice_webhook", call_sid=fields.get("CallSid", ""), direction=fields.get("Direction", "")
    )
    return Response(str(response), media_type="application/xml")


async def status_webhook(request: Request) -> Response:
    """`POST /twilio/status`: record Twilio's call status callbacks."""
    form = await _verified_form(request)
    if form is None:
        return PlainTextResponse("forbidden", status_code=403)
    fields = dict(form)
    gateway: Gateway = request.app.state.gateway
    gateway.record_carrier_status(fields.get("CallSid", ""), fields.get("CallStatus", ""), fields)
    log.info(
        "twilio_call_status",
        call_sid=fields.get("CallSid", ""),
        status=fields.get("CallStatus", ""),
        duration=fields.get("CallDuration", ""),
    )
    return Response(status_code=204)


class TwilioPlugin:
    name = "twilio"

    def routes(self) -> Sequence[BaseRoute]:
        return [
            Route("/twilio/voice", voice_webhook, methods=["POST"]),
            Route("/twilio/status", status_webhook, methods=["POST"]),
            WebSocketRoute(MEDIA_PATH, media_socket),
        ]

    def demo(self, settings: Settings, *, wav: str | None, seconds: float) -> int:
        from media_streams.demo import run_demo

        return run_demo(settings, wav, seconds)


plugin = TwilioPlugin()
