"""Placing calls through the SIP trunk (for campaigns and the REST API in later issues)."""

from __future__ import annotations

from gateway.runtime import Gateway
from sip.plugin import running_service
from sip.service import OutboundResult, disposition_for

__all__ = ["OutboundResult", "disposition_for", "place_call"]


async def place_call(
    gateway: Gateway, to: str, *, from_: str | None = None, timeout_s: float = 30
) -> OutboundResult:
    """INVITE `to` (a number or a sip: URI) through the configured trunk, with digest auth when
    challenged (401/407, MD5/SHA-256), and wait up to `timeout_s` for an answer (then CANCEL).

    Answered: the call runs through `gateway.open_call`/`gateway.run_call` like an inbound one,
    in a task the SIP service owns; the result carries `call_id`, the SIP Call-ID and the leg.
    Otherwise `disposition` is busy (486/600), no_answer (408/480/487 or our ringing timeout),
    rejected (403/404/603/…) or failed (everything else), with the SIP status.
    """
    service = running_service(gateway)
    if service is None:
        return OutboundResult("failed", 503, "SIP is not running (SWITCHBOARD_SIP_ENABLED)")
    return await service.place_call(to, from_=from_, timeout_s=timeout_s)
