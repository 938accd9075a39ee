"""Seeded fuzzing of the SIP core: thousands of mutated messages, never an exception, never a 2xx
to broken input, and the core still answers OPTIONS afterwards (sip-rules.md, "On the wire")."""

from __future__ import annotations

import random
import re

import pytest

from sip import sdp
from sip.core import CoreConfig, SipCore
from sip.errors import RemoteProtocolError
from sip.message import Response, parse_message
from sip.rtp import JitterBuffer, RtpPacket
from tests.unit.test_sip_message import (
    ASTERISK_INVITE,
    CISCO_INVITE,
    COMPACT_INVITE,
    FREESWITCH_INVITE,
    SIPFRAG_NOTIFY,
    TELNYX_INVITE,
    TWILIO_407,
    TWILIO_INVITE,
)

PEER = ("192.0.2.10", 5080)
OPTIONS = (
    b"OPTIONS sip:bot@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5080;branch=z9hG4bKopt;rport\r\n"
    b"From: <sip:ka@192.0.2.10>;tag=k\r\nTo: <sip:bot@198.51.100.7>\r\nCall-ID: ka@peer\r\n"
    b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)
BYE = (
    b"BYE sip:switchboard@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5080;branch=z9hG4bKbye\r\n"
    b"From: <sip:a@192.0.2.10>;tag=a\r\nTo: <sip:bot@198.51.100.7>;tag=b\r\nCall-ID: bye@peer\r\n"
    b"CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
)
SEEDS = [
    TWILIO_INVITE,
    TELNYX_INVITE,
    ASTERISK_INVITE,
    FREESWITCH_INVITE,
    CISCO_INVITE,
    COMPACT_INVITE,
    SIPFRAG_NOTIFY,
    TWILIO_407,
    OPTIONS,
    BYE,
]
TOKENS = [
    b"\x00",
    b"\r\n",
    b"\n",
    b":",
    b";",
    b",",
    b"<",
    b">",
    b'"',
    b" ",
    b"\t",
    b"\xff",
    b"=",
    b"@",
    b"SIP/2.0",
    b"z9hG4bK",
]


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(10)
        pos = rng.randrange(len(buf) + 1) if buf else 0
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = rng.choice(TOKENS)
        elif op == 2 and buf:
            del buf[pos : pos + rng.randint(1, 40)]
        elif op == 3:
            buf = buf[: rng.randrange(len(buf) + 1)]
        elif op == 4:
            lines = bytes(buf).split(b"\r\n")
            i = rng.randrange(len(lines))
            lines.insert(i, lines[rng.randrange(len(lines))])
            buf = bytearray(b"\r\n".join(lines))
        elif op == 5:
            lines = bytes(buf).split(b"\r\n")
            if len(lines) > 1:
                del lines[rng.randrange(len(lines))]
            buf = bytearray(b"\r\n".join(lines))
        elif op == 6:
            buf[pos:pos] = b"X-Long: " + b"a" * rng.choice([100, 9000, 70000]) + b"\r\n"
        elif op == 7:
            buf = bytearray(
                re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % rng.randint(0, 99999), bytes(buf))
            )
        elif op == 8:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        else:
            buf = bytearray(bytes(buf).replace(b"\r\n", b"\n", rng.randint(1, 3)))
    return bytes(buf)


# Damage that must make any request "broken" (sip-rules.md), whatever else is mutated.
BREAKERS = [
    lambda d: re.sub(rb"(?im)^(Call-ID|i):[^\r\n]*\r\n", b"", d),
    lambda d: re.sub(rb"(?im)^CSeq:[^\r\n]*\r\n", b"", d),
    lambda d: re.sub(rb"(?im)^(Via|v):[^\r\n]*\r\n", b"", d),
    lambda d: re.sub(
        rb"(?im)^(Content-Length|l): (\d+)", lambda m: m.group(1) + b": %d" % (int(m.group(2)) + 3), d
    ),
    lambda d: re.sub(rb"(?im)^(Call-ID|i): ", lambda m: m.group(0) + b"\x00", d),
    lambda d: re.sub(rb"(?im)^(CSeq: \d+) \w+", rb"\1 REGISTER", d),
]


def two_hundreds(core: SipCore) -> list[Response]:
    out = []
    for item in core.datagrams_to_send():
        message = parse_message(item.data)  # everything we send parses
        if isinstance(message, Response) and 200 <= message.status < 300:
            out.append(message)
    return out


def fresh() -> SipCore:
    return SipCore(CoreConfig(host="198.51.100.7", port=5060, max_sessions=200), rng=random.Random(0))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mutated_messages_never_raise_and_broken_ones_never_get_2xx(seed: int) -> None:
    rng = random.Random(seed)
    core = fresh()
    now = 0.0
    answered_2xx_to_broken = []
    for i in range(2000):
        if i % 400 == 0:
            core = fresh()
        data = mutate(rng.choice(SEEDS), rng)
        try:
            parse_message(data)
            broken = False
        except RemoteProtocolError:
            broken = True
        now += rng.random() * 0.2
        core.receive_datagram(data, PEER, now)
        if rng.random() < 0.1:
            core.handle_timer(now + rng.random() * 40)
        oks = two_hundreds(core)
        if broken and oks:
            answered_2xx_to_broken.append(data)
        while core.next_event() is not None:
            pass
    assert answered_2xx_to_broken == []
    core.receive_datagram(OPTIONS, PEER, now + 1)
    assert [r.status for r in two_hundreds(core)] == [200]  # still answering


def test_broken_requests_never_get_2xx_even_when_otherwise_valid() -> None:
    """The required cases: no Call-ID, CSeq or Via; a Content-Length that disagrees; NUL; a CSeq
    method that does not match. Each on every seed request, alone and with extra damage."""
    rng = random.Random(99)
    requests = [s for s in SEEDS if not s.startswith(b"SIP/")]
    count = 0
    for seed_message in requests:
        for breaker in BREAKERS:
            for extra in range(10):
                core = fresh()
                data = breaker(seed_message)
                if extra:
                    data = breaker(mutate(data, rng))
                    try:
                        parse_message(data)
                        continue  # the extra damage removed what broke it (e.g. the Content-Length line)
                    except RemoteProtocolError:
                        pass
                else:
                    with pytest.raises(RemoteProtocolError):
                        parse_message(data)
                core.receive_datagram(data, PEER, 0.0)
                assert two_hundreds(core) == [], data
                assert core.next_event() is None
                count += 1
    assert count > len(requests) * len(BREAKERS) * 8


def test_the_tcp_path_survives_garbage_in_any_chunking() -> None:
    rng = random.Random(5)
    core = fresh()
    for conn in range(300):
        stream = b"".join(
            mutate(rng.choice(SEEDS), rng) if rng.random() < 0.5 else rng.choice(SEEDS) for _ in range(3)
        )
        pos = 0
        while pos < len(stream):
            step = rng.randint(1, 700)
            core.receive_stream(conn, stream[pos : pos + step], PEER, 0.0)
            pos += step
        for item in core.datagrams_to_send():
            if item.data != b"\r\n":
                parse_message(item.data)
        core.connections_to_close()
        core.connection_lost(conn)
        while core.next_event() is not None:
            pass


def test_sdp_and_rtp_parsers_fail_only_with_their_errors() -> None:
    rng = random.Random(11)
    sdp_seed = TWILIO_INVITE.split(b"\r\n\r\n", 1)[1]
    local = sdp.LocalMedia("198.51.100.7", 40000, 1)
    for _ in range(3000):
        data = mutate(sdp_seed, rng)
        try:
            offer = sdp.SessionDescription.parse(data)
            sdp.answer(offer, local)
        except RemoteProtocolError:
            pass
    jb = JitterBuffer()
    packet = RtpPacket(0, 1, 160, 7, b"\xff" * 160).serialize()
    for _ in range(3000):
        data = mutate(packet, rng)
        try:
            p = RtpPacket.parse(data)
        except ValueError:
            continue
        jb.put(p.ssrc, p.timestamp, p.payload, marker=p.marker)
        jb.get()
