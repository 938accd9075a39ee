"""SIP message parsing and serialization: vendor round trips, compact forms, limits, exact errors."""

from __future__ import annotations

import pytest

from sip.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from sip.message import (
    CSeq,
    Limits,
    NameAddr,
    Request,
    Response,
    SipUri,
    StreamParser,
    Via,
    canonical,
    make_response,
    parse_message,
    split_list,
)


def msg(head: str, body: str = "") -> bytes:
    """A message from readable text: LF → CRLF, `Content-Length: N` filled in."""
    raw_body = body.replace("\n", "\r\n").encode()
    text = head.strip("\n").replace("\n", "\r\n")
    text = text.replace("Content-Length: N", f"Content-Length: {len(raw_body)}")
    text = text.replace("l: N", f"l: {len(raw_body)}")
    return text.encode() + b"\r\n\r\n" + raw_body


TWILIO_SDP = """v=0
o=root 1212128845 1212128845 IN IP4 54.172.60.0
s=Twilio Media Gateway
c=IN IP4 54.172.60.0
t=0 0
m=audio 10232 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
"""

TWILIO_INVITE = msg(
    """
INVITE sip:+14155550100@gw.example.com:5060;transport=udp SIP/2.0
Record-Route: <sip:54.172.60.0:5060;lr;twnat=sip:192.0.2.10:5060>
Via: SIP/2.0/UDP 54.172.60.0:5060;branch=z9hG4bK7cd1.a49f3b2c4a3e1f0b1d2f6b3e9e8d7c6b.0
Via: SIP/2.0/UDP 172.18.20.36:5060;rport=5060;branch=z9hG4bK2pFmN9tQv8Xy
Max-Forwards: 68
From: "+14155550199" <sip:+14155550199@twilio.pstn.twilio.com>;tag=80125764_c3356d0b_5a3b8e2f
To: <sip:+14155550100@gw.example.com>
Call-ID: 5f2a1c2e8b9d4e6f7a8b9c0d1e2f3a4b@0.0.0.0
CSeq: 1 INVITE
Contact: <sip:+14155550199@172.18.20.36:5060;transport=udp>
Allow: INVITE,ACK,CANCEL,OPTIONS,BYE,REFER,NOTIFY
Content-Type: application/sdp
User-Agent: Twilio Gateway
X-Twilio-AccountSid: AC00000000000000000000000000000000
X-Twilio-CallSid: CA00000000000000000000000000000000
Content-Length: N
""",
    TWILIO_SDP,
)

TELNYX_SDP = """v=0
o=FreeSWITCH 1712345678 1712345679 IN IP4 192.76.120.31
s=FreeSWITCH
c=IN IP4 192.76.120.31
t=0 0
m=audio 22418 RTP/AVP 0 8 101 13
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=rtpmap:13 CN/8000
a=ptime:20
"""

TELNYX_INVITE = msg(
    """
INVITE sip:+13125550100@203.0.113.10:5060 SIP/2.0
Record-Route: <sip:192.76.120.10;r2=on;lr=on;ftag=gH2KjK8pX0UeD>
Record-Route: <sip:10.13.2.10;r2=on;lr=on;ftag=gH2KjK8pX0UeD>
Via: SIP/2.0/UDP 192.76.120.10;branch=z9hG4bK1a2b.5d0f3c8e1c4e6d7a1b2c3d4e5f6a7b8c.0
Via: SIP/2.0/UDP 192.76.120.31:5070;rport=5070;branch=z9hG4bKr1pQeS8cH0a5m
Max-Forwards: 67
From: "TELNYX" <sip:+13125550199@192.76.120.10>;tag=gH2KjK8pX0UeD
To: <sip:+13125550100@203.0.113.10:5060>
Call-ID: 1b2c3d4e-5f6a-4b8c-9d0e-1f2a3b4c5d6e
CSeq: 103274781 INVITE
Contact: <sip:+13125550199@192.76.120.31:5070>
User-Agent: Telnyx SIP Proxy
Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO, UPDATE, REFER, NOTIFY
Supported: timer, path, replaces
Allow-Events: talk, hold, conference, refer
Privacy: none
P-Asserted-Identity: <sip:+13125550199@192.76.120.10>
Content-Type: application/sdp
Content-Disposition: session
Content-Length: N
""",
    TELNYX_SDP,
)

ASTERISK_SDP = """v=0
o=- 1234567890 1234567892 IN IP4 10.0.0.5
s=Asterisk
c=IN IP4 10.0.0.5
t=0 0
m=audio 14562 RTP/AVP 0 8 3 111 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:3 GSM/8000
a=rtpmap:111 G726-32/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
"""

ASTERISK_INVITE = msg(
    """
INVITE sip:bot@198.51.100.7:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bKPj3b1c6f0a-8c2e-4d1f-9a7b-0e5d4c3b2a19
From: "Alice" <sip:1001@10.0.0.5>;tag=5f0e2b7c-3d4a-4e9b-8c1d-2a3b4c5d6e7f
To: <sip:bot@198.51.100.7>
Contact: <sip:asterisk@10.0.0.5:5060>
Call-ID: 3e8a9b7c-1d2e-4f3a-8b9c-0d1e2f3a4b5c
CSeq: 12345 INVITE
Allow: OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, PUBLISH, INVITE, ACK, BYE, CANCEL, UPDATE, PRACK, MESSAGE, REFER
Supported: 100rel, timer, replaces, norefersub, histinfo
Session-Expires: 1800
Min-SE: 90
P-Asserted-Identity: "Alice" <sip:1001@10.0.0.5>
Max-Forwards: 70
User-Agent: Asterisk PBX 20.5.0
Content-Type: application/sdp
Content-Length: N
""",
    ASTERISK_SDP,
)

FREESWITCH_SDP = """v=0
o=FreeSWITCH 1712000000 1712000001 IN IP4 192.0.2.20
s=FreeSWITCH
c=IN IP4 192.0.2.20
t=0 0
m=audio 25362 RTP/AVP 102 0 8 101 13
a=rtpmap:102 opus/48000/2
a=fmtp:102 useinbandfec=1; maxaveragebitrate=30000; maxplaybackrate=48000; ptime=20; minptime=10; maxptime=40
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=rtpmap:13 CN/8000
a=ptime:20
"""

FREESWITCH_INVITE = msg(
    """
INVITE sip:bot@198.51.100.7:5060;transport=udp SIP/2.0
Via: SIP/2.0/UDP 192.0.2.20:5080;rport;branch=z9hG4bK0pXy1Z2a3B4c
Max-Forwards: 69
From: "Extension 1000" <sip:1000@192.0.2.20>;tag=QvN3cHm6B0F8g
To: <sip:bot@198.51.100.7:5060;transport=udp>
Call-ID: 0f6ad1c8-7a2e-123c-8c3e-0242ac110002
CSeq: 127884023 INVITE
Contact: <sip:mod_sofia@192.0.2.20:5080>
User-Agent: FreeSWITCH-mod_sofia/1.10.11-release~64bit
Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO, UPDATE, REGISTER, REFER, NOTIFY
Supported: timer, path, replaces
Allow-Events: talk, hold, conference, refer
Content-Type: application/sdp
Content-Disposition: session
Content-Length: N
X-FS-Support: update_display,send_info
Remote-Party-ID: "Extension 1000" <sip:1000@192.0.2.20>;party=calling;screen=yes;privacy=off
""",
    FREESWITCH_SDP,
)

CISCO_SDP = """v=0
o=CiscoSystemsSIP-GW-UserAgent 6466 2413 IN IP4 10.10.10.1
s=SIP Call
c=IN IP4 10.10.10.1
t=0 0
m=audio 16384 RTP/AVP 0 101
c=IN IP4 10.10.10.1
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
"""

# Cisco gateways pad some values with two spaces ("Min-SE:  1800"): we keep values trimmed,
# so this one round-trips by meaning, not byte for byte.
CISCO_INVITE = msg(
    """
INVITE sip:5551000@198.51.100.7:5060 SIP/2.0
Via: SIP/2.0/UDP 10.10.10.1:5060;branch=z9hG4bK1A2B3C4D5
Remote-Party-ID: "John Doe" <sip:2001@10.10.10.1>;party=calling;screen=yes;privacy=off
From: "John Doe" <sip:2001@10.10.10.1>;tag=8F3A2B1C-1E4D
To: <sip:5551000@198.51.100.7>
Date: Tue, 25 Nov 2026 14:00:00 GMT
Call-ID: 4A1B2C3D-7F1E11EF-8001A2B3-C4D5E6F7@10.10.10.1
Supported: 100rel,timer,resource-priority,replaces,sdp-anat
Min-SE:  1800
Cisco-Guid: 1234567890-2013462511-2147590323-3302434551
User-Agent: Cisco-SIPGateway/IOS-15.x
Allow: INVITE, OPTIONS, BYE, CANCEL, ACK, PRACK, UPDATE, REFER, SUBSCRIBE, NOTIFY, INFO, REGISTER
CSeq: 101 INVITE
Timestamp: 1732543200
Contact: <sip:2001@10.10.10.1:5060>
Expires: 180
Allow-Events: telephone-event
Max-Forwards: 69
Session-ID: 8d6bfa1c00105000a000abcdef012345;remote=00000000000000000000000000000000
Session-Expires:  1800
Content-Type: application/sdp
Content-Disposition: session;handling=required
Content-Length: N
""",
    CISCO_SDP,
)

COMPACT_INVITE = msg(
    """
INVITE sip:bot@198.51.100.7 SIP/2.0
v: SIP/2.0/UDP 192.0.2.30:5060;branch=z9hG4bKcompact1;rport
f: <sip:alice@example.com>;tag=1928301774
t: <sip:bot@198.51.100.7>
i: a84b4c76e66710@pc33.example.com
CSeq: 314159 INVITE
m: <sip:alice@192.0.2.30:5060>
k: timer
c: application/sdp
l: N
""",
    ASTERISK_SDP,
)

TWILIO_407 = msg(
    """
SIP/2.0 407 Proxy Authentication required
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds;rport=5060;received=198.51.100.7
From: <sip:+14155550100@example.pstn.twilio.com>;tag=1928301774
To: <sip:+14155550199@example.pstn.twilio.com>;tag=f6f8c9a3
Call-ID: a84b4c76e66710@198.51.100.7
CSeq: 2 INVITE
Proxy-Authenticate: Digest realm="sip.twilio.com",nonce="mRAu2Y8Fhh4FNdMlXAYmRnPEVqYmvzaMGOsK4tCi",qop="auth"
Server: Twilio
Content-Length: 0
"""
)

SIPFRAG_NOTIFY = msg(
    """
NOTIFY sip:switchboard@198.51.100.7:5060 SIP/2.0
Via: SIP/2.0/UDP 192.76.120.10;branch=z9hG4bKnotify42
Max-Forwards: 70
From: <sip:+13125550100@192.76.120.10>;tag=as6c1f2c3e
To: <sip:switchboard@198.51.100.7>;tag=7a6b5c4d
Call-ID: 1b2c3d4e-5f6a-4b8c-9d0e-1f2a3b4c5d6e
CSeq: 102 NOTIFY
Event: refer
Subscription-State: terminated;reason=noresource
Content-Type: message/sipfrag;version=2.0
Content-Length: N
""",
    "SIP/2.0 200 OK\n",
)

VENDOR_MESSAGES = {
    "twilio": TWILIO_INVITE,
    "telnyx": TELNYX_INVITE,
    "asterisk": ASTERISK_INVITE,
    "freeswitch": FREESWITCH_INVITE,
    "compact": COMPACT_INVITE,
    "twilio_407": TWILIO_407,
    "sipfrag_notify": SIPFRAG_NOTIFY,
}


@pytest.mark.parametrize("name", sorted(VENDOR_MESSAGES))
def test_vendor_messages_round_trip_byte_for_byte(name: str) -> None:
    """Headers are kept as written (names, compact forms, order), so serialize(parse(x)) == x."""
    raw = VENDOR_MESSAGES[name]
    message = parse_message(raw)
    assert message.serialize() == raw
    assert parse_message(message.serialize()) == message


def test_cisco_message_round_trips_by_meaning() -> None:
    """Padded values ("Min-SE:  1800") are trimmed; everything else survives."""
    message = parse_message(CISCO_INVITE)
    again = parse_message(message.serialize())
    assert again == message
    assert message.header("min-se") == "1800"
    assert message.header("cisco-guid") == "1234567890-2013462511-2147590323-3302434551"
    assert (
        message.header(
            "Remote-Party-ID",
        )
        is not None
    )
    assert split_list(message.header("supported") or "") == [
        "100rel",
        "timer",
        "resource-priority",
        "replaces",
        "sdp-anat",
    ]


def test_twilio_invite_fields() -> None:
    m = parse_message(TWILIO_INVITE)
    assert isinstance(m, Request)
    assert m.method == "INVITE"
    assert SipUri.parse(m.uri).user == "+14155550100"
    assert [v.branch for v in m.vias] == [
        "z9hG4bK7cd1.a49f3b2c4a3e1f0b1d2f6b3e9e8d7c6b.0",
        "z9hG4bK2pFmN9tQv8Xy",
    ]
    assert m.top_via.sent_by == ("54.172.60.0", 5060)
    assert m.from_.tag == "80125764_c3356d0b_5a3b8e2f"
    assert m.from_.display == '"+14155550199"'
    assert m.to.tag is None
    assert m.cseq == CSeq(1, "INVITE")
    assert m.header_values("record-route") == ["<sip:54.172.60.0:5060;lr;twnat=sip:192.0.2.10:5060>"]
    assert m.header("x-twilio-callsid") == "CA00000000000000000000000000000000"
    assert m.content_type == "application/sdp"


def test_compact_forms_are_found_by_their_full_names() -> None:
    """RFC 3261 §7.3.3: v, f, t, i, m, k, c, l mean Via, From, To, Call-ID, Contact, Supported,
    Content-Type, Content-Length."""
    m = parse_message(COMPACT_INVITE)
    assert m.call_id == "a84b4c76e66710@pc33.example.com"
    assert m.top_via.branch == "z9hG4bKcompact1"
    assert m.from_.tag == "1928301774"
    assert m.to.uri == "sip:bot@198.51.100.7"
    assert m.contacts()[0].uri == "sip:alice@192.0.2.30:5060"
    assert m.header("supported") == "timer"
    assert m.content_type == "application/sdp"
    assert canonical("l") == "content-length"
    assert canonical("Call-Id") == "call-id"


def test_several_vias_on_one_line_and_folded_lines() -> None:
    raw = msg(
        """
OPTIONS sip:bot@198.51.100.7 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa, SIP/2.0/TCP 192.0.2.2;branch=z9hG4bKb
Subject: a subject
  folded onto two lines
From: <sip:a@example.com>;tag=1
To: <sip:bot@198.51.100.7>
Call-ID: fold@example.com
CSeq: 7 OPTIONS
Content-Length: 0
"""
    )
    m = parse_message(raw)
    assert [v.transport for v in m.vias] == ["UDP", "TCP"]
    assert m.vias[1].sent_by == ("192.0.2.2", 5060)
    assert m.header("subject") == "a subject folded onto two lines"


def test_response_fields() -> None:
    m = parse_message(TWILIO_407)
    assert isinstance(m, Response)
    assert (m.status, m.reason) == (407, "Proxy Authentication required")
    assert m.top_via.param("received") == "198.51.100.7"
    assert m.to.tag == "f6f8c9a3"


def test_addresses_and_uris() -> None:
    a = NameAddr.parse('"Bob, Jr." <sip:bob@example.com;transport=tcp>;tag=xyz;expires=60')
    assert (a.display, a.uri, a.tag) == ('"Bob, Jr."', "sip:bob@example.com;transport=tcp", "xyz")
    assert str(a) == '"Bob, Jr." <sip:bob@example.com;transport=tcp>;tag=xyz;expires=60'
    b = NameAddr.parse("sip:carol@example.com;tag=1")  # addr-spec: params belong to the header
    assert (b.uri, b.tag) == ("sip:carol@example.com", "1")
    assert str(b.with_tag("2")) == "<sip:carol@example.com>;tag=2"
    u = SipUri.parse("sips:+1555@[2001:db8::1]:5061;transport=tls;lr?X=1")
    assert (u.scheme, u.user, u.host, u.port, u.transport, u.param("lr")) == (
        "sips",
        "+1555",
        "2001:db8::1",
        5061,
        "tls",
        "",
    )
    assert str(u) == "sips:+1555@[2001:db8::1]:5061;transport=tls;lr?X=1"
    assert split_list('<sip:a@x>;q=0.5, "Smith, J" <sip:b@y>') == ["<sip:a@x>;q=0.5", '"Smith, J" <sip:b@y>']
    assert (
        str(Via.parse("SIP/2.0/udp host.example.com;branch=z9hG4bK1"))
        == "SIP/2.0/UDP host.example.com;branch=z9hG4bK1"
    )


# --------------------------------------------------------------------------- errors

BASE = """
INVITE sip:bot@198.51.100.7 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbase
From: <sip:a@example.com>;tag=1
To: <sip:bot@198.51.100.7>
Call-ID: err@example.com
CSeq: 1 INVITE
Contact: <sip:a@192.0.2.1>
Content-Length: 0
"""


def _without(name: str) -> bytes:
    lines = [ln for ln in BASE.strip("\n").split("\n") if not ln.startswith(name + ":")]
    return msg("\n".join(lines))


@pytest.mark.parametrize(
    ("raw", "message", "status", "answerable"),
    [
        (_without("Call-ID"), "missing Call-ID header", 400, False),
        (_without("CSeq"), "missing CSeq header", 400, False),
        (_without("Via"), "missing Via header", 400, False),
        (_without("From"), "missing From header", 400, False),
        (
            msg(BASE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE")),
            "CSeq method BYE does not match INVITE",
            400,
            True,
        ),
        (msg(BASE.replace("CSeq: 1 INVITE", "CSeq: one INVITE")), "bad CSeq 'one INVITE'", 400, False),
        (msg(BASE) + b"x", "Content-Length 0 does not match the body (1 bytes)", 400, True),
        (
            msg(BASE.replace("Content-Length: 0", "Content-Length: 5")),
            "Content-Length 5 does not match the body (0 bytes)",
            400,
            True,
        ),
        (
            msg(BASE.replace("Content-Length: 0", "Content-Length: abc")),
            "bad Content-Length 'abc'",
            400,
            True,
        ),
        (
            msg(BASE.replace("Content-Length: 0", "Content-Length: 100000")),
            "Content-Length 100000 exceeds the 65535-byte limit",
            413,
            True,
        ),
        (msg(BASE + "Content-Length: 0\n"), "more than one Content-Length header", 400, True),
        (
            msg(BASE.replace("Call-ID: err@example.com", "Call-ID: err\x00@example.com")),
            "NUL byte in the message head",
            400,
            True,
        ),
        (msg(BASE.replace("SIP/2.0\n", "SIP/3.0\n", 1)), "unsupported SIP version 'SIP/3.0'", 505, True),
        (
            msg(BASE.replace("sip:bot@198.51.100.7 SIP", "http://x SIP", 1)),
            "bad Request-URI 'http://x'",
            416,
            True,
        ),
        (
            msg(BASE.replace("INVITE sip", "INVITE  sip", 1)),
            "bad request line 'INVITE  sip:bot@198.51.100.7 SIP/2.0'",
            400,
            False,
        ),
        (
            msg(BASE.replace("To: <sip:bot@198.51.100.7>", "To bot")),
            "malformed header line 'To bot'",
            400,
            False,
        ),
        (
            msg(BASE.replace("Via: SIP/2.0/UDP", "Via: SIP/9/UDP")),
            "bad address header (bad Via protocol 'SIP/9/UDP')",
            400,
            False,
        ),
        (
            b"INVITE sip:bot@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n",
            "no blank line after the header fields",
            400,
            False,
        ),
        (msg("SIP/2.0 2000 OK\nVia: SIP/2.0/UDP h\n"), "bad status line 'SIP/2.0 2000 OK'", 400, False),
    ],
)
def test_broken_messages_raise_with_exact_messages(
    raw: bytes, message: str, status: int, answerable: bool
) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(raw)
    assert str(info.value) == message
    assert info.value.error_status_hint == status
    if answerable:
        assert info.value.partial is not None
        assert info.value.partial.call_id.startswith("err")


def test_body_rules() -> None:
    with pytest.raises(RemoteProtocolError, match=r"^body without Content-Type$"):
        parse_message(msg(BASE.replace("Content-Length: 0", "Content-Length: N"), "v=0\n"))
    sdp_with_nul = msg(
        BASE.replace("Content-Length: 0", "Content-Type: application/sdp\nContent-Length: N"), "v=0\x00\n"
    )
    with pytest.raises(RemoteProtocolError, match=r"^NUL byte in a text body$"):
        parse_message(sdp_with_nul)


def test_limits() -> None:
    """A 65,535-byte datagram is accepted (RFC 3261 §18.3); header count and line length are bounded."""
    filler = "X-Pad: " + "a" * 8000 + "\n"
    head = BASE.replace("Content-Length: 0\n", filler * 7 + "Content-Type: text/plain\nContent-Length: N\n")
    size = 65535 - len(msg(head, ""))
    while len(msg(head, "b" * size)) > 65535:  # the Content-Length digits count too
        size -= 1
    big = msg(head, "b" * size)
    assert len(big) == 65535
    assert parse_message(big).body.startswith(b"bbb")
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(big + b"b")
    assert info.value.error_status_hint == 513
    many = msg(BASE + "".join(f"X-H{i}: {i}\n" for i in range(130)))
    with pytest.raises(RemoteProtocolError, match=r"^more than 128 header fields$"):
        parse_message(many)
    long_line = msg(BASE + "X-Long: " + "z" * 9000 + "\n")
    with pytest.raises(RemoteProtocolError, match=r"^header line longer than 8192 bytes$") as info2:
        parse_message(long_line)
    assert info2.value.partial is not None  # still answerable: the other lines were fine
    with pytest.raises(RemoteProtocolError, match="more than 4 header fields"):
        parse_message(msg(BASE), Limits(max_headers=4))


def test_protocol_error_cannot_be_instantiated_directly() -> None:
    with pytest.raises(TypeError):
        ProtocolError("x")
    assert LocalProtocolError("x").error_status_hint == 400


# --------------------------------------------------------------------------- TCP framing


def test_stream_parser_frames_by_content_length() -> None:
    parser = StreamParser()
    stream = TWILIO_INVITE + SIPFRAG_NOTIFY
    out = []
    for i in range(0, len(stream), 37):  # arbitrary chunking
        out += parser.feed(stream[i : i + 37])
    assert [type(m).__name__ for m in out] == ["Request", "Request"]
    assert out[0] == parse_message(TWILIO_INVITE)
    assert out[1] == parse_message(SIPFRAG_NOTIFY)


def test_stream_parser_keepalives_and_failures() -> None:
    parser = StreamParser()
    assert parser.feed(b"\r\n\r\n") == [b"\r\n\r\n"]  # RFC 5626 ping: the caller answers CRLF
    no_length = msg(BASE).replace(b"Content-Length: 0\r\n", b"")
    [error] = parser.feed(no_length)
    assert isinstance(error, RemoteProtocolError)
    assert str(error) == "missing or bad Content-Length on a stream transport"
    assert error.partial is not None
    assert parser.failed  # framing is lost: the connection must close
    assert parser.feed(msg(BASE)) == []
    huge = StreamParser()
    [too_big] = huge.feed(msg(BASE.replace("Content-Length: 0", "Content-Length: 70000")))
    assert isinstance(too_big, RemoteProtocolError)
    assert too_big.error_status_hint == 513


# --------------------------------------------------------------------------- responses


def test_make_response_copies_what_rfc3261_says() -> None:
    """§8.2.6.2: all Vias in order, From, Call-ID, CSeq; To with our tag (not on 100);
    Record-Route copied into dialog-creating responses (§12.1.1)."""
    request = parse_message(TWILIO_INVITE)
    assert isinstance(request, Request)
    trying = make_response(request, 100)
    assert trying.to.tag is None
    ok = make_response(request, 200, to_tag="abc", body=b"v=0\r\n")
    assert [v.branch for v in ok.vias] == [v.branch for v in request.vias]
    assert ok.header("from") == request.header("from")
    assert ok.to.tag == "abc"
    assert ok.call_id == request.call_id
    assert ok.cseq == request.cseq
    assert ok.header_values("record-route") == request.header_values("record-route")
    assert ok.content_type == "application/sdp"
    assert ok.header("content-length") == "5"
    assert parse_message(ok.serialize()) == ok
    busy = make_response(request, 486, to_tag="abc")
    assert busy.reason == "Busy Here"
    assert busy.header_values("record-route") == []
