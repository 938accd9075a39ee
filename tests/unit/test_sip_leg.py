"""`SipLeg` with fake sockets and a hand-driven media clock: pacing, marks, clear, transcoding,
latching, DTMF both ways, hang-up and REFER transfer."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from gateway.commands import ClearPlayback, HangUp, PlayAudio, SendDtmf, SendMark
from gateway.events import CallerAudio, CallerDtmf, CallerHungUp, CallStarted, MarkPlayed
from sip.dtmf import TelephoneEvent
from sip.leg import ALAW_TO_ULAW, ULAW_TO_ALAW, SipLeg, TransferResult, parse_sipfrag
from sip.message import Request, Response
from sip.rtp import RtpPacket
from sip.sdp import MediaParams
from tests.unit.test_sip_rtp import DTMF_1

PEER = ("192.0.2.10", 16000)
PCMU = MediaParams("PCMU", 0, 101, PEER[0], PEER[1], "sendrecv")
START = CallStarted(carrier="sip", call_sid="c1@peer", stream_sid="")


class FakeRtp:
    def __init__(self) -> None:
        self.port = 40000
        self.sent: list[tuple[RtpPacket, tuple[str, int]]] = []
        self.closed = False
        self.on_packet: Any = None

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((RtpPacket.parse(data), addr))

    def close(self) -> None:
        self.closed = True


class FakeClock:
    def __init__(self) -> None:
        self.members: list[object] = []

    def add(self, member: object) -> None:
        self.members.append(member)

    def remove(self, member: object) -> None:
        if member in self.members:
            self.members.remove(member)


class FakeSignalling:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.refer_response: Response | None = Response(202, "Accepted")
        self.closed: list[SipLeg] = []

    async def hang_up(self, session: object) -> int | None:
        self.calls.append("bye")
        return 200

    def hang_up_nowait(self, session: object) -> None:
        self.calls.append("bye_nowait")

    async def refer(self, session: object, refer_to: str) -> Response | None:
        self.calls.append(f"refer {refer_to}")
        return self.refer_response

    def leg_closed(self, leg: SipLeg) -> None:
        self.closed.append(leg)


def make_leg(media: MediaParams = PCMU) -> tuple[SipLeg, FakeRtp, FakeClock, FakeSignalling]:
    rtp, clock, sig = FakeRtp(), FakeClock(), FakeSignalling()
    leg = SipLeg(object(), rtp, clock, sig)  # type: ignore[arg-type]
    leg.begin(START, media, 0.0)
    return leg, rtp, clock, sig


def drain(leg: SipLeg) -> list[object]:
    out = []
    while leg._events:
        out.append(leg._events.popleft())
    leg._audio_events = 0
    return out


def ticks(leg: SipLeg, start: float, n: int) -> float:
    t = start
    for _ in range(n):
        leg.tick(t)
        t = round(t + 0.02, 6)
    return t


async def test_audio_is_paced_and_marks_come_back_after_transmission() -> None:
    leg, rtp, clock, _ = make_leg()
    assert clock.members == [leg]
    await leg.send(PlayAudio(b"\x01" * 480))
    await leg.send(SendMark("m1"))
    await leg.send(PlayAudio(b"\x02" * 160))
    await leg.send(SendMark("m2"))
    marks_at = []
    for k in range(6):
        leg.tick(k * 0.02)
        marks_at += [(k, e.name) for e in drain(leg) if isinstance(e, MarkPlayed)]
    assert marks_at == [(2, "m1"), (3, "m2")]  # after the 3rd and 4th packets went out
    packets = [p for p, _ in rtp.sent]
    assert [p.payload[0] for p in packets] == [1, 1, 1, 2, 0xFF, 0xFF]  # then comfort silence
    assert [p.marker for p in packets] == [True, False, False, False, False, False]  # talkspurt
    assert all(len(p.payload) == 160 and p.payload_type == 0 for p in packets)
    seqs = [p.sequence_number for p in packets]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(6)]
    assert [(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in itertools.pairwise(packets)] == [160] * 5
    assert {addr for _, addr in rtp.sent} == {PEER}


async def test_fifty_packets_a_second_even_when_idle() -> None:
    leg, rtp, _, _ = make_leg()
    t = 0.0
    while t < 1.0 - 1e-9:  # a clock ticking a bit irregularly still gives 50 packets
        leg.tick(t)
        t += 0.013
    assert len(rtp.sent) == 50
    assert all(p.payload == b"\xff" * 160 for p, _ in rtp.sent)


async def test_clear_drops_the_queue_and_returns_every_mark_at_once() -> None:
    leg, rtp, _, _ = make_leg()
    for k in range(5):
        await leg.send(PlayAudio(bytes([k + 1]) * 160))
        await leg.send(SendMark(f"m{k}"))
    ticks(leg, 0.0, 2)
    assert [e.name for e in drain(leg) if isinstance(e, MarkPlayed)] == ["m0", "m1"]
    await leg.send(ClearPlayback())
    assert [e.name for e in drain(leg) if isinstance(e, MarkPlayed)] == ["m2", "m3", "m4"]
    ticks(leg, 0.04, 2)
    assert [p.payload[0] for p, _ in rtp.sent][2:] == [0xFF, 0xFF]
    await leg.send(SendMark("idle"))  # nothing queued: echoed at once
    assert [e.name for e in drain(leg) if isinstance(e, MarkPlayed)] == ["idle"]


async def test_caller_audio_every_20ms_and_latching() -> None:
    leg, rtp, _, _ = make_leg()
    source = ("192.0.2.99", 30000)  # behind NAT: not the SDP address
    for k in range(4):
        leg.on_rtp(RtpPacket(0, 10 + k, 160 * k, 5, bytes([k + 1]) * 160).serialize(), source)
    leg.on_rtp(RtpPacket(0, 99, 0, 5, b"\x55" * 160).serialize(), ("203.0.113.66", 1))  # stranger
    ticks(leg, 0.0, 5)
    frames = [e.payload for e in drain(leg) if isinstance(e, CallerAudio)]
    assert [f[0] for f in frames] == [1, 2, 3, 4, 0xFF]
    assert all(len(f) == 160 for f in frames)
    assert {addr for _, addr in rtp.sent} == {source}  # symmetric RTP
    assert leg.stats.foreign_source == 1


async def test_pcma_is_transcoded_both_ways() -> None:
    leg, rtp, _, _ = make_leg(MediaParams("PCMA", 8, None, PEER[0], PEER[1], "sendrecv"))
    ulaw = bytes(range(256))[:160]
    await leg.send(PlayAudio(ulaw))
    alaw_in = bytes(range(96, 256))
    leg.on_rtp(RtpPacket(8, 1, 0, 5, alaw_in).serialize(), PEER)
    leg.on_rtp(RtpPacket(8, 2, 160, 5, alaw_in).serialize(), PEER)
    ticks(leg, 0.0, 2)
    sent = [p for p, _ in rtp.sent]
    assert sent[0].payload == ulaw.translate(ULAW_TO_ALAW)
    assert sent[0].payload_type == 8
    assert sent[1].payload == b"\xd5" * 160  # A-law silence
    frames = [e.payload for e in drain(leg) if isinstance(e, CallerAudio)]
    assert frames[0] == alaw_in.translate(ALAW_TO_ULAW)


async def test_rfc4733_in_is_one_digit_and_out_pauses_audio() -> None:
    leg, rtp, _, _ = make_leg()
    for data in DTMF_1:
        leg.on_rtp(data, PEER)
    assert [e.digit for e in drain(leg) if isinstance(e, CallerDtmf)] == ["1"]
    await leg.send(PlayAudio(b"\x07" * 1600))
    await leg.send(SendDtmf("5"))
    ticks(leg, 0.0, 9)
    sent = [p for p, _ in rtp.sent]
    events = [p for p in sent if p.payload_type == 101]
    assert len(events) == 7
    assert {p.timestamp for p in events} == {events[0].timestamp}
    assert [TelephoneEvent.parse(p.payload).event for p in events] == [5] * 7
    assert [TelephoneEvent.parse(p.payload).end for p in events] == [False] * 4 + [True] * 3
    assert [p.payload_type for p in sent[7:]] == [0, 0]  # the audio resumes after the event
    stamps = [p.timestamp for p in sent]
    assert (stamps[7] - events[0].timestamp) & 0xFFFFFFFF == 7 * 160  # the clock kept running


async def test_hold_sends_nothing_but_playback_still_drains() -> None:
    leg, rtp, _, _ = make_leg()
    leg.set_media(MediaParams("PCMU", 0, 101, PEER[0], PEER[1], "recvonly"))
    await leg.send(PlayAudio(b"\x01" * 320))
    await leg.send(SendMark("m"))
    ticks(leg, 0.0, 3)
    assert rtp.sent == []
    assert [e.name for e in drain(leg) if isinstance(e, MarkPlayed)] == ["m"]


async def test_hang_up_sends_bye_and_stops_rtp_at_once() -> None:
    leg, rtp, clock, sig = make_leg()
    ticks(leg, 0.0, 2)
    await leg.send(HangUp("bot_hangup"))
    assert sig.calls == ["bye"]
    assert clock.members == []
    before = len(rtp.sent)
    ticks(leg, 0.04, 10)
    assert len(rtp.sent) == before
    await leg.close()
    assert sig.calls == ["bye"]  # no second BYE
    assert rtp.closed
    assert sig.closed == [leg]


async def test_remote_hangup_ends_events_and_close_without_bye() -> None:
    leg, _, _, sig = make_leg()

    async def read() -> list[object]:
        return [e async for e in leg.events()]

    reader = asyncio.create_task(read())
    ticks(leg, 0.0, 2)
    await asyncio.sleep(0)
    leg.remote_hangup("caller_hangup")
    got = await asyncio.wait_for(reader, 1)
    assert isinstance(got[-1], CallerHungUp)
    assert got[-1].reason == "caller_hangup"
    assert sum(isinstance(e, CallerAudio) for e in got) == 2
    await leg.close()
    assert sig.calls == []


async def test_close_before_the_end_sends_bye_and_releases_marks() -> None:
    leg, _, _, sig = make_leg()
    await leg.send(PlayAudio(b"\x01" * 1600))
    await leg.send(SendMark("never"))
    await leg.close()
    assert sig.calls == ["bye_nowait"]
    assert [e.name for e in drain(leg) if isinstance(e, MarkPlayed)] == ["never"]


def _notify(frag: str, state: str = "active") -> Request:
    return Request(
        "NOTIFY",
        "sip:gw",
        (("Event", "refer"), ("Subscription-State", state), ("Content-Type", "message/sipfrag")),
        frag.encode(),
    )


async def test_transfer_follows_notify_to_the_final_status() -> None:
    leg, _, _, sig = make_leg()
    task = asyncio.create_task(leg.transfer("+15551230000"))
    await asyncio.sleep(0)
    leg.on_notify(_notify("SIP/2.0 100 Trying\r\n"))
    leg.on_notify(_notify("SIP/2.0 180 Ringing\r\n"))
    leg.on_notify(_notify("SIP/2.0 200 OK\r\n", "terminated;reason=noresource"))
    result = await asyncio.wait_for(task, 1)
    assert result == TransferResult(True, "200 OK")
    assert result.status == 200
    assert sig.calls == ["refer <tel:+15551230000>"]  # the call owner ends the call; close() BYEs


@pytest.mark.parametrize(
    ("refer", "notify", "expected"),
    [
        (Response(403, "Forbidden"), None, TransferResult(False, "403 Forbidden")),
        (None, None, TransferResult(False, "408 Request Timeout")),
        (
            Response(202, "Accepted"),
            "SIP/2.0 503 Service Unavailable\r\n",
            TransferResult(False, "503 Service Unavailable"),
        ),
        (Response(202, "Accepted", (("Refer-Sub", "false"),)), None, TransferResult(True, "202 Accepted")),
    ],
)
async def test_transfer_failures(
    refer: Response | None, notify: str | None, expected: TransferResult
) -> None:
    leg, _, _, sig = make_leg()
    sig.refer_response = refer
    task = asyncio.create_task(leg.transfer("sip:agent@pbx"))
    await asyncio.sleep(0)
    if notify is not None:
        leg.on_notify(_notify(notify, "terminated"))
    assert await asyncio.wait_for(task, 1) == expected


async def test_transfer_times_out_without_a_final_notify() -> None:
    leg, _, _, _ = make_leg()
    result = await leg.transfer("sip:agent@pbx", timeout_s=0.05)
    assert result == TransferResult(False, "408 Request Timeout")


def test_sipfrag() -> None:
    assert parse_sipfrag(b"SIP/2.0 486 Busy Here\r\nVia: x\r\n") == (486, "Busy Here")
    assert parse_sipfrag(b"garbage") is None
