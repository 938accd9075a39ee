"""The Twilio media WebSocket: one `TwilioLeg` per call, plus the upgrade handler.

The leg only moves bytes: it parses frames with `codec.parse` into events for the call owner
and writes commands with `codec.encode`. A malformed frame is counted, logged and dropped; it
never ends the call (bridge-rules.md, "Failures").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from twilio.twiml.voice_response import VoiceResponse

from gateway.commands import CarrierCommand, ClearPlayback, HangUp, PlayAudio, SendMark
from gateway.events import CallerHungUp, CallStarted, CarrierEvent
from gateway.runtime import Gateway
from media_streams import codec
from media_streams.control import ControlError, TwilioControl
from media_streams.security import twilio_signature_ok

log = structlog.get_logger("switchboard.twilio")

# RFC 6455 §7.4.1 close codes.
WS_NORMAL = 1000
WS_POLICY_VIOLATION = 1008
WS_TRY_AGAIN_LATER = 1013
START_TIMEOUT_S = 10.0
WARM_RING_S = 20  # how long the human's phone rings on a warm transfer
WARM_POLL_S = 1.0


class TwilioLeg:
    """The phone side of one Twilio call."""

    name = "twilio"

    def __init__(
        self, ws: WebSocket, start: CallStarted, control: TwilioControl | None, gateway: Gateway
    ) -> None:
        self.ws = ws
        self.stream_sid = start.stream_sid
        self.call_sid = start.call_sid
        self.parameters = dict(start.parameters)
        self.control = control
        self.gateway = gateway
        self._closed = False
        self.malformed = 0

    async def events(self) -> AsyncIterator[CarrierEvent]:
        while not self._closed:
            try:
                message = await self.ws.receive()
            except (RuntimeError, OSError):
                break
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("text") or message.get("bytes") or b""
            event = codec.parse(data)
            if isinstance(event, codec.Malformed):
                self.malformed += 1
                self.gateway.malformed_messages += 1
                log.warning("twilio_malformed", reason=event.reason, detail=event.detail)
                continue
            if isinstance(event, codec.Connected | CallStarted):
                continue  # a repeated handshake frame changes nothing
            yield event
            if isinstance(event, CallerHungUp):
                return
        yield CallerHungUp("socket_closed")

    async def send(self, command: CarrierCommand) -> None:
        if isinstance(command, HangUp):
            await self._hang_up(command.reason)
            return
        if self._closed:
            return
        assert isinstance(command, PlayAudio | SendMark | ClearPlayback)
        try:
            await self.ws.send_text(codec.encode(command, self.stream_sid))
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._closed = True

    async def transfer(self, target: str, mode: str, summary: str) -> tuple[bool, str]:
        """Cold: replace the call's TwiML with `<Dial>`. Warm: call the human first with a spoken
        summary into a conference, and move the caller there only once the human answered."""
        if self.control is None:
            return False, "no Twilio credentials to transfer with"
        if mode != "warm":
            response = VoiceResponse()
            response.dial(target)
            error = await self.control.redirect(self.call_sid, str(response))
            return (True, "dialing") if error is None else (False, f"Twilio refused ({error.status})")
        room = f"sb-{self.call_sid}"
        to_human = VoiceResponse()
        to_human.say(summary or "Transferring a caller.")
        to_human.dial().conference(room, end_conference_on_exit=True)
        our_number = self.parameters.get("To", "")
        human = await self.control.create_call(target, our_number, str(to_human), timeout_s=WARM_RING_S)
        if isinstance(human, ControlError):
            return False, f"could not call {target} ({human.status})"
        deadline = asyncio.get_running_loop().time() + WARM_RING_S + 10
        while asyncio.get_running_loop().time() < deadline:
            status = await self.control.call_status(human)
            if status == "in-progress":
                to_caller = VoiceResponse()
                to_caller.dial().conference(room, end_conference_on_exit=True)
                error = await self.control.redirect(self.call_sid, str(to_caller))
                return (True, "bridged") if error is None else (False, "could not move the caller")
            if status in ("busy", "no-answer", "failed", "canceled", "completed"):
                return False, f"the human did not answer ({status})"
            await asyncio.sleep(WARM_POLL_S)
        return False, "the human did not answer in time"

    async def _hang_up(self, reason: str) -> None:
        """REST `Status=completed`, and close the socket too, so the call ends even when REST fails
        (offline-backend.md, "What callers and operators expect")."""
        if self.control is not None:
            error = await self.control.hang_up(self.call_sid)
            log.info("twilio_hangup", reason=reason, ok=error is None)
        else:
            log.warning("twilio_hangup_no_credentials", reason=reason)
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.ws.application_state is WebSocketState.CONNECTED:
            # The peer may already be gone; closed is closed.
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.ws.close(WS_NORMAL)


def _control(gateway: Gateway) -> TwilioControl | None:
    s = gateway.settings
    if s.twilio_account_sid and s.twilio_auth_token:
        return TwilioControl(s.twilio_account_sid, s.twilio_auth_token, s.twilio_api_base)
    return None


async def _read_start(ws: WebSocket, gateway: Gateway) -> CallStarted | None:
    """Read until Twilio's `start` (after `connected`); None if the socket goes first."""
    async with asyncio.timeout(START_TIMEOUT_S):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return None
            event = codec.parse(message.get("text") or message.get("bytes") or b"")
            if isinstance(event, CallStarted):
                return event
            if isinstance(event, codec.Malformed):
                gateway.malformed_messages += 1
                log.warning("twilio_malformed", reason=event.reason, detail=event.detail)


async def media_socket(ws: WebSocket) -> None:
    """`/twilio/media`: check the signature, wait for `start`, then run the call to its end."""
    gateway: Gateway = ws.app.state.gateway
    remote = ws.client.host if ws.client else "?"
    await ws.accept()
    if not twilio_signature_ok(ws, gateway.settings, None, websocket=True):
        # No call, no model session: only the security log line (bridge-rules.md, "Signatures").
        await ws.close(WS_POLICY_VIOLATION)
        return
    try:
        start = await _read_start(ws, gateway)
    except TimeoutError:
        log.warning("twilio_no_start", remote=remote)
        await ws.close(WS_POLICY_VIOLATION)
        return
    if start is None:
        return
    if not gateway.registry.has_room():
        gateway.registry.rejected += 1
        log.warning("call_rejected_capacity", call_sid=start.call_sid, live=len(gateway.registry.live))
        await ws.close(WS_TRY_AGAIN_LATER)
        return
    call, backend = gateway.open_call("twilio", start.parameters)
    leg = TwilioLeg(ws, start, _control(gateway), gateway)
    await gateway.run_call(call, leg, backend, first_events=[start])
