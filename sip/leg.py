"""`SipLeg`: the phone side of one SIP call, as the gateway's call runner sees it (CarrierLeg).

It turns RTP into carrier events and carrier commands into RTP, on our own 20 ms clock:

- in: RTP from the call's socket → symmetric-RTP latching on the first packet's source
  (protocols.md §4.2) → audio into the jitter buffer (A-law transcoded to μ-law first, so the
  call owner always sees μ-law 8 kHz), RFC 4733 events into `CallerDtmf`. Every 20 ms one
  frame leaves the jitter buffer as `CallerAudio` (silence when nothing arrived, as Twilio
  sends media continuously).
- out: `PlayAudio` is queued and sent as 20 ms RTP packets paced by the media clock;
  `SendMark` is queued behind it and comes back as `MarkPlayed` once everything before it
  was transmitted; `ClearPlayback` drops the queue and returns every outstanding mark at once
  (Twilio's semantics, which the playback ledger relies on). With nothing queued we send
  comfort silence (0xFF μ-law / 0xD5 A-law) at 50 packets/s, so the trunk's media timeout
  never fires (sip-rules.md, "steady 50 packets/s").
- `HangUp` sends BYE (and waits briefly for its 200); RTP stops at once. A BYE or CANCEL
  from the far end ends `events()` with `CallerHungUp`.
- `transfer(target)`: REFER (RFC 3515), then NOTIFY sipfrag progress until a final status.

Queues are bounded: caller events (the reader is the call runner), queued playback (far more
than the ledger's lead ever holds), DTMF to send, NOTIFYs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import structlog

from gateway.audio import alaw_to_pcm16, pcm16_to_alaw, pcm16_to_ulaw, ulaw_to_pcm16
from gateway.commands import CarrierCommand, ClearPlayback, HangUp, PlayAudio, SendDtmf, SendMark
from gateway.events import CallerAudio, CallerDtmf, CallerHungUp, CallStarted, CarrierEvent, MarkPlayed
from sip.core import Session
from sip.dtmf import DtmfReceiver, event_packets
from sip.endpoint import MediaClock, RtpSocket
from sip.message import Request, Response
from sip.rtp import FRAME_SAMPLES, JitterBuffer, Pacer, RtpPacket, RtpSender
from sip.sdp import MediaParams

log = structlog.get_logger("switchboard.sip")

# G.711 A-law ⇄ μ-law through linear PCM, as 256-entry tables built once from gateway.audio.
_ALL = bytes(range(256))
ULAW_TO_ALAW = pcm16_to_alaw(ulaw_to_pcm16(_ALL))
ALAW_TO_ULAW = pcm16_to_ulaw(alaw_to_pcm16(_ALL))
SILENCE = {"PCMU": 0xFF, "PCMA": 0xD5}
ULAW_SILENCE_FRAME = b"\xff" * FRAME_SAMPLES
COMFORT_NOISE_PT = 13  # RFC 3389: dropped (the gap is filled with silence)


class Signalling(Protocol):
    """What a leg needs from the SIP service (which owns the core and its sockets)."""

    async def hang_up(self, session: Session) -> int | None:
        """End the dialog; the BYE's final status (None when no BYE was needed)."""
        ...

    def hang_up_nowait(self, session: Session) -> None: ...

    async def refer(self, session: Session, refer_to: str) -> Response | None:
        """Send REFER; its final response (None on timeout)."""
        ...

    def leg_closed(self, leg: SipLeg) -> None: ...


class TransferResult(NamedTuple):
    """How a transfer ended: `ok` when the transfer target answered (final sipfrag 2xx).

    A (ok, detail) pair, as `gateway.carriers.CarrierLeg.transfer` returns; `detail` is the
    final status line ("200 OK", or the REFER's own failure such as "403 Forbidden")."""

    ok: bool
    detail: str

    @property
    def status(self) -> int:
        head = self.detail.split(" ", 1)[0]
        return int(head) if head.isdigit() else 0

    @property
    def reason(self) -> str:
        return self.detail.split(" ", 1)[1] if " " in self.detail else ""


def _result(ok: bool, status: int, reason: str) -> TransferResult:
    return TransferResult(ok, f"{status} {reason}".strip())


@dataclass
class LegStats:
    rtp_in: int = 0
    rtp_out: int = 0
    malformed: int = 0
    foreign_source: int = 0
    unknown_pt: int = 0
    audio_events_dropped: int = 0
    playback_dropped_bytes: int = 0
    dtmf_in: list[str] = field(default_factory=list)
    marks_echoed: int = 0


class SipLeg:
    """One dialog's media and signalling for the call runner (gateway.carriers.CarrierLeg)."""

    name = "sip"
    MAX_EVENTS = 256  # ~5 s of caller audio; older audio is dropped rather than grow
    MAX_PLAYBACK_BYTES = 60 * 8000  # 60 s of queued assistant audio
    BYE_TIMEOUT_S = 2.0
    MAX_DTMF_QUEUE = 64

    def __init__(
        self,
        session: Session,
        rtp: RtpSocket,
        clock: MediaClock,
        signalling: Signalling,
        *,
        announce_start: bool = False,
    ) -> None:
        self.session = session
        self.rtp = rtp
        self.clock = clock
        self.signalling = signalling
        self.announce_start = announce_start  # yield CallStarted first (when not given to run_call)
        self.call_started: CallStarted | None = None
        self.media: MediaParams | None = None
        self.stats = LegStats()
        self._events: deque[CarrierEvent] = deque()
        self._audio_events = 0
        self._wake = asyncio.Event()
        self._jb = JitterBuffer()
        self._dtmf_rx = DtmfReceiver()
        self._sender: RtpSender | None = None
        self._pacer: Pacer | None = None
        self._remote: tuple[str, int] | None = None
        self._latched = False
        self._silence_frame = ULAW_SILENCE_FRAME
        self._out = bytearray()
        self._queued_total = 0
        self._sent_total = 0
        self._marks: deque[tuple[int, str]] = deque()
        self._talking = False
        self._dtmf_out: deque[tuple[bytes, bool, bool]] = deque()
        self._dtmf_ts = 0
        self._notifies: asyncio.Queue[Request] | None = None
        self._active = False  # media flowing (answered, not ended)
        self._ended = False  # the dialog is over (either side)
        self._closed = False
        self._done = asyncio.Event()
        rtp.on_packet = self.on_rtp

    # ------------------------------------------------------------------ set-up

    def set_media(self, media: MediaParams) -> None:
        """(Re)apply negotiated media: initial answer, early media, re-INVITE/UPDATE (hold)."""
        previous = self.media
        self.media = media
        silence = SILENCE[media.codec]
        self._silence_frame = bytes([silence]) * FRAME_SAMPLES
        if self._sender is None:
            self._sender = RtpSender(media.pt)
        else:
            self._sender.pt = media.pt
        if previous is not None and previous.codec != media.codec and self._out:
            table = ULAW_TO_ALAW if media.codec == "PCMA" else ALAW_TO_ULAW
            self._out = bytearray(bytes(self._out).translate(table))
        reachable = media.remote_port != 0 and media.remote_address not in ("0.0.0.0", "::")
        moved = previous is not None and previous.remote_address != media.remote_address
        if reachable and (not self._latched or moved):
            # The SDP address until the first packet shows where media really comes from.
            self._remote = (media.remote_address, media.remote_port)
            self._latched = False

    def begin(self, start: CallStarted, media: MediaParams | None, now: float) -> None:
        """The call is answered: start the 20 ms media clock."""
        self.call_started = start
        if media is not None:
            self.set_media(media)
        self._pacer = Pacer(now)
        self._active = True
        if self.announce_start:
            self._push(start)
        self.clock.add(self)

    # ------------------------------------------------------------------ RTP in

    def on_rtp(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._ended:
            return
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            self.stats.malformed += 1
            return
        if not self._latched:
            # Symmetric RTP: send where the peer's media really comes from (NAT), once.
            self._remote = addr
            self._latched = True
        elif addr != self._remote:
            self.stats.foreign_source += 1
            return
        self.stats.rtp_in += 1
        media = self.media
        if media is None or not self._active:
            return  # early media before the answer: nobody listens yet
        pt = packet.payload_type
        if pt == media.pt:
            payload = packet.payload
            if media.codec == "PCMA":
                payload = payload.translate(ALAW_TO_ULAW)
            self._jb.put(packet.ssrc, packet.timestamp, payload, marker=packet.marker)
        elif media.dtmf_pt is not None and pt == media.dtmf_pt:
            digit = self._dtmf_rx.receive(packet.ssrc, packet.timestamp, packet.payload, marker=packet.marker)
            if digit is not None:
                self.push_dtmf(digit)
        elif pt != COMFORT_NOISE_PT:
            self.stats.unknown_pt += 1

    def push_dtmf(self, digit: str) -> None:
        """A digit from RFC 4733 or SIP INFO."""
        if not self._ended:
            self.stats.dtmf_in.append(digit)
            self._push(CallerDtmf(digit))

    # ------------------------------------------------------------------ the 20 ms tick

    def tick(self, now: float) -> None:
        if not self._active or self._pacer is None:
            return
        due, skipped = self._pacer.due(now)
        sender = self._sender
        if skipped and sender is not None:
            sender.skip(skipped * FRAME_SAMPLES)
        for _ in range(due):
            frame = self._jb.get()
            self._push(CallerAudio(frame if frame is not None else ULAW_SILENCE_FRAME))
            if sender is not None:
                self._send_frame(sender)
        self._echo_marks()

    def _send_frame(self, sender: RtpSender) -> None:
        media = self.media
        sending = media is not None and media.sends and self._remote is not None
        if self._dtmf_out:
            payload, marker, new_seq = self._dtmf_out.popleft()
            assert media is not None
            assert media.dtmf_pt is not None
            if marker:
                self._dtmf_ts = sender.ts  # an event's timestamp is the RTP clock at its start
            data = sender.event(
                media.dtmf_pt, payload, timestamp=self._dtmf_ts, marker=marker, new_seq=new_seq
            )
            sender.skip(FRAME_SAMPLES)
        elif self._out:
            chunk = bytes(self._out[:FRAME_SAMPLES])
            del self._out[:FRAME_SAMPLES]
            self._sent_total += len(chunk)
            if len(chunk) < FRAME_SAMPLES:
                chunk += self._silence_frame[len(chunk) :]
            data = sender.audio(chunk, marker=not self._talking)
            self._talking = True
        else:
            data = sender.audio(self._silence_frame)
            self._talking = False
        if sending and self._remote is not None:
            self.rtp.sendto(data, self._remote)
            self.stats.rtp_out += 1

    def _echo_marks(self) -> None:
        while self._marks and self._marks[0][0] <= self._sent_total:
            self._push(MarkPlayed(self._marks.popleft()[1]))
            self.stats.marks_echoed += 1

    # ------------------------------------------------------------------ events to the runner

    def _push(self, event: CarrierEvent) -> None:
        if isinstance(event, CallerAudio):
            if self._audio_events >= self.MAX_EVENTS:
                self.stats.audio_events_dropped += 1
                return
            self._audio_events += 1
        elif isinstance(event, CallerDtmf) and len(self._events) >= 4 * self.MAX_EVENTS:
            return  # a flood of key presses nobody reads: drop rather than grow
        self._events.append(event)
        self._wake.set()

    async def events(self) -> AsyncIterator[CarrierEvent]:
        while True:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, CallerAudio):
                    self._audio_events -= 1
                yield event
                if isinstance(event, CallerHungUp):
                    return
            if self._closed:
                yield CallerHungUp("socket_closed")
                return
            self._wake.clear()
            await self._wake.wait()

    # ------------------------------------------------------------------ commands

    async def send(self, command: CarrierCommand) -> None:
        if isinstance(command, HangUp):
            await self._hang_up(command.reason)
            return
        if isinstance(command, SendDtmf):
            await self.send_dtmf(command.digits)
            return
        if self._ended:
            if isinstance(command, SendMark):
                self._push(MarkPlayed(command.name))  # nothing will play: release the ledger
            return
        if isinstance(command, PlayAudio):
            payload = command.payload
            if self.media is not None and self.media.codec == "PCMA":
                payload = payload.translate(ULAW_TO_ALAW)
            room = self.MAX_PLAYBACK_BYTES - len(self._out)
            if len(payload) > room:
                self.stats.playback_dropped_bytes += len(payload) - max(room, 0)
                payload = payload[: max(room, 0)]
            self._out += payload
            self._queued_total += len(payload)
        elif isinstance(command, SendMark):
            if self._queued_total <= self._sent_total:
                self._push(MarkPlayed(command.name))
                self.stats.marks_echoed += 1
            else:
                self._marks.append((self._queued_total, command.name))
        elif isinstance(command, ClearPlayback):
            self._out.clear()
            self._sent_total = self._queued_total
            self._talking = False
            self._echo_marks()

    async def send_dtmf(self, digits: str, *, duration_ms: int = 100) -> None:
        """Send RFC 4733 events (when the peer offered telephone-event), one key after another."""
        media, sender = self.media, self._sender
        if media is None or media.dtmf_pt is None or sender is None or self._ended:
            return
        for digit in digits:
            packets = event_packets(digit, duration_ms=duration_ms)
            if len(self._dtmf_out) + len(packets) > self.MAX_DTMF_QUEUE:
                return
            for p in packets:
                self._dtmf_out.append((p.payload, p.marker, p.new_seq))

    async def _hang_up(self, reason: str) -> None:
        if self._ended:
            return
        self._stop_media()
        self._ended = True
        try:
            async with asyncio.timeout(self.BYE_TIMEOUT_S):
                status = await self.signalling.hang_up(self.session)
        except TimeoutError:
            status = None
        log.info("sip_hangup", reason=reason, bye_status=status)

    # ------------------------------------------------------------------ from the SIP service

    def remote_hangup(self, reason: str) -> None:
        """BYE or CANCEL from the far end (or the dialog failed)."""
        if self._ended:
            return
        self._ended = True
        self._stop_media()
        self._push(CallerHungUp(reason))

    def on_notify(self, request: Request) -> None:
        if self._notifies is not None:
            with contextlib.suppress(asyncio.QueueFull):
                self._notifies.put_nowait(request)

    async def transfer(
        self,
        target: str,
        mode: str = "cold",
        summary: str = "",
        *,
        timeout_s: float = 30.0,
        hang_up_on_success: bool = False,
    ) -> TransferResult:
        """Blind transfer by REFER (RFC 3515): 202, then NOTIFYs with a sipfrag body until a
        final status (§2.4.5); `ok` when it is 2xx. The call owner then ends the call, and
        `close()` sends our BYE (`hang_up_on_success=True` does that here, for callers without
        a call owner). A warm transfer (reach the human first, play `summary`) needs an
        attended transfer (REFER with Replaces, RFC 3891) that we do not do: it falls back to a
        blind one, and the summary is not played."""
        if mode == "warm":
            log.warning("sip_warm_transfer_as_blind", summary_chars=len(summary))
        if self._ended:
            return _result(False, 481, "Call/Transaction Does Not Exist")
        self._notifies = asyncio.Queue(maxsize=16)
        refer_to = target if target.startswith("<") else f"<{_as_uri(target)}>"
        try:
            async with asyncio.timeout(timeout_s):
                response = await self.signalling.refer(self.session, refer_to)
                if response is None:
                    return _result(False, 408, "Request Timeout")
                if not 200 <= response.status < 300:
                    return _result(False, response.status, response.reason)
                if (response.header("refer-sub") or "").strip().lower() == "false":
                    result = _result(True, response.status, response.reason)  # RFC 4488: no NOTIFYs
                else:
                    result = await self._await_final_notify()
        except TimeoutError:
            return _result(False, 408, "Request Timeout")
        finally:
            self._notifies = None
        log.info("sip_transfer", ok=result.ok, detail=result.detail)
        if result.ok and hang_up_on_success:
            await self._hang_up("transferred")
            self._push(CallerHungUp("transferred"))
        return result

    async def _await_final_notify(self) -> TransferResult:
        assert self._notifies is not None
        last = _result(False, 100, "Trying")
        while True:
            request = await self._notifies.get()
            if (request.header("event") or "").split(";")[0].strip().lower() != "refer":
                continue
            frag = parse_sipfrag(request.body)
            if frag is not None:
                last = _result(200 <= frag[0] < 300, frag[0], frag[1])
                if frag[0] >= 200:
                    return last
            state = (request.header("subscription-state") or "").split(";")[0].strip().lower()
            if state == "terminated":
                return last

    # ------------------------------------------------------------------ teardown

    async def shutdown(self) -> None:
        """The service stops: BYE (bounded wait) and end the call as `CallerHungUp("shutdown")`."""
        if not self._ended:
            await self._hang_up("shutdown")
            self._push(CallerHungUp("shutdown"))

    def _stop_media(self) -> None:
        self._active = False
        self.clock.remove(self)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_media()
        if not self._ended:
            self._ended = True
            self.signalling.hang_up_nowait(self.session)
        # Marks still waiting would never come back: hand them over so nothing waits on them.
        while self._marks:
            self._push(MarkPlayed(self._marks.popleft()[1]))
        self.rtp.close()
        self._wake.set()
        self._done.set()
        self.signalling.leg_closed(self)

    async def wait_closed(self) -> None:
        await self._done.wait()

    @property
    def jitter(self) -> JitterBuffer:
        return self._jb

    @property
    def ended(self) -> bool:
        return self._ended


def parse_sipfrag(body: bytes) -> tuple[int, str] | None:
    """`SIP/2.0 200 OK` (RFC 3420 message/sipfrag, first line) → (200, "OK")."""
    first = body.split(b"\n", 1)[0].strip().decode("utf-8", "replace")
    parts = first.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("SIP/") or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2] if len(parts) > 2 else ""


def _as_uri(target: str) -> str:
    """An E.164 number becomes a tel: URI (RFC 3966); sip:/sips:/tel: URIs pass unchanged."""
    if ":" in target:
        return target
    return f"tel:{target}"
