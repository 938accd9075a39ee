"""Checking `X-Twilio-Signature` on a live request or WebSocket upgrade (Starlette side).

The pure parts (which URL was signed, the HMAC) are in `media_streams.signature`; this module
only reads them off the connection. A rejection is logged with the remote address and nothing
else happens (bridge-rules.md, "Signatures").
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from starlette.requests import HTTPConnection

from gateway.config import Settings
from media_streams.signature import SIGNATURE_HEADER, expected_url, is_valid

log = structlog.get_logger("switchboard.twilio")


def twilio_signature_ok(
    conn: HTTPConnection, settings: Settings, params: Iterable[tuple[str, str]] | None, *, websocket: bool
) -> bool:
    """True if the request carries Twilio's signature for the URL Twilio used (or checks are off)."""
    if not settings.verify_signatures:
        log.warning("twilio_signature_check_disabled", path=conn.url.path)
        return True
    url = expected_url(
        path=conn.scope.get("raw_path", b"").decode("latin-1") or conn.url.path,
        query="" if websocket else conn.url.query,
        scheme=conn.url.scheme,
        host=conn.headers.get("host", ""),
        headers=conn.headers,
        public_url=settings.public_url,
        trust_forwarded=settings.trust_forwarded,
        websocket=websocket,
    )
    if is_valid(settings.twilio_auth_token or "", url, params, conn.headers.get(SIGNATURE_HEADER)):
        return True
    remote = conn.client.host if conn.client else "?"
    log.warning("twilio_signature_rejected", remote=remote, path=conn.url.path)
    return False
