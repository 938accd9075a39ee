"""SDP parse/serialize and RFC 3264 offer/answer for our G.711 + telephone-event stream."""

from __future__ import annotations

import pytest

from sip import sdp
from sip.errors import RemoteProtocolError
from tests.unit.test_sip_message import ASTERISK_SDP, CISCO_SDP, FREESWITCH_SDP, TELNYX_SDP, TWILIO_SDP

LOCAL = sdp.LocalMedia("198.51.100.7", 40000, 99)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def offer(m_line: str, *attrs: str, c: str = "203.0.113.5", extra: str = "") -> sdp.SessionDescription:
    lines = ["v=0", "o=- 1234 1 IN IP4 203.0.113.5", "s=-", f"c=IN IP4 {c}", "t=0 0", m_line, *attrs]
    return sdp.SessionDescription.parse("\n".join(lines) + "\n" + extra)


@pytest.mark.parametrize("text", [TWILIO_SDP, TELNYX_SDP, ASTERISK_SDP, FREESWITCH_SDP, CISCO_SDP])
def test_vendor_sdp_round_trips(text: str) -> None:
    parsed = sdp.SessionDescription.parse(crlf(text))
    assert parsed.serialize() == crlf(text)
    assert sdp.SessionDescription.parse(text) == parsed  # LF-only input reads the same


def test_protocols_md_example_answer() -> None:
    """protocols.md §4.2: same m= count, PCMU first with the offer's numbers, 101 kept."""
    o = offer(
        "m=audio 30000 RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    )
    answer, media = sdp.answer(o, LOCAL)
    assert answer.serialize() == crlf(
        "v=0\n"
        "o=switchboard 99 1 IN IP4 198.51.100.7\n"
        "s=switchboard\n"
        "c=IN IP4 198.51.100.7\n"
        "t=0 0\n"
        "m=audio 40000 RTP/AVP 0 101\n"
        "a=rtpmap:0 PCMU/8000\n"
        "a=rtpmap:101 telephone-event/8000\n"
        "a=fmtp:101 0-16\n"
        "a=ptime:20\n"
        "a=sendrecv\n"
    )
    assert media == sdp.MediaParams("PCMU", 0, 101, "203.0.113.5", 30000, "sendrecv", 20, 0)


@pytest.mark.parametrize(
    ("m_line", "attrs", "formats", "codec"),
    [
        ("m=audio 1 RTP/AVP 8 0 101", ("a=rtpmap:101 telephone-event/8000",), ("0", "101"), "PCMU"),
        ("m=audio 1 RTP/AVP 8 96", ("a=rtpmap:96 telephone-event/8000",), ("8", "96"), "PCMA"),
        ("m=audio 1 RTP/AVP 18 8", ("a=rtpmap:18 G729/8000",), ("8",), "PCMA"),
        (
            "m=audio 1 RTP/AVP 98 100",
            ("a=rtpmap:98 pcmu/8000", "a=rtpmap:100 telephone-event/8000"),
            ("98", "100"),
            "PCMU",
        ),
        ("m=audio 1 RTP/AVP 0 101", ("a=rtpmap:101 telephone-event/48000",), ("0",), "PCMU"),
        ("m=audio 1 RTP/AVPF 0", (), ("0",), "PCMU"),
    ],
)
def test_codec_choice_keeps_offer_numbers(
    m_line: str, attrs: tuple[str, ...], formats: tuple[str, ...], codec: str
) -> None:
    """PCMU preferred (passthrough to the model), else PCMA; payload type numbers as offered
    (dynamic ones too); telephone-event kept only at 8000 Hz."""
    answer, media = sdp.answer(offer(m_line, *attrs), LOCAL)
    assert answer.media[0].formats == formats
    assert media.codec == codec
    assert media.pt == int(formats[0])


@pytest.mark.parametrize(
    ("direction", "c", "ours", "sends"),
    [
        ("a=sendrecv", "203.0.113.5", "sendrecv", True),
        ("a=sendonly", "203.0.113.5", "recvonly", False),  # they hold us
        ("a=recvonly", "203.0.113.5", "sendonly", True),
        ("a=inactive", "203.0.113.5", "inactive", False),
        ("", "0.0.0.0", "recvonly", False),  # RFC 2543-style hold, RFC 3264 §8.4
    ],
)
def test_hold_directions(direction: str, c: str, ours: str, sends: bool) -> None:
    attrs = (direction,) if direction else ()
    answer, media = sdp.answer(offer("m=audio 30000 RTP/AVP 0", *attrs, c=c), LOCAL)
    assert media.direction == ours
    assert answer.media[0].own_direction() == ours
    assert media.sends is sends
    assert media.on_hold is (ours in ("recvonly", "inactive"))


def test_session_level_direction_applies_to_media() -> None:
    o = offer("m=audio 30000 RTP/AVP 0", extra="")
    held = sdp.SessionDescription((*o.lines, ("a", "sendonly")), o.media)
    assert sdp.answer(held, LOCAL)[1].direction == "recvonly"


@pytest.mark.parametrize(
    "m_line",
    [
        "m=audio 30000 RTP/AVP 18 9",  # G.729 and G.722 only
        "m=audio 30000 RTP/SAVP 0",  # SRTP only
        "m=audio 0 RTP/AVP 0",  # a rejected stream
        "m=video 30000 RTP/AVP 0",
    ],
)
def test_no_common_codec_is_488(m_line: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        sdp.answer(offer(m_line), LOCAL)
    assert str(info.value) == "no common codec in the SDP offer"
    assert info.value.error_status_hint == 488


def test_other_streams_are_rejected_with_port_zero() -> None:
    """RFC 3264 §6: one answer m= line per offered one, in order; port 0 rejects."""
    o = sdp.SessionDescription.parse(
        "v=0\no=- 1 1 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\n"
        "m=video 5000 RTP/AVP 96\na=rtpmap:96 H264/90000\n"
        "m=audio 5002 RTP/AVP 0\n"
        "m=audio 5004 RTP/AVP 8\n"
    )
    answer, media = sdp.answer(o, LOCAL)
    assert [(m.kind, m.port, m.formats) for m in answer.media] == [
        ("video", 0, ("96",)),
        ("audio", 40000, ("0",)),
        ("audio", 0, ("8",)),
    ]
    assert (media.index, media.remote_port) == (1, 5002)


def test_media_level_connection_wins() -> None:
    o = offer("m=audio 30000 RTP/AVP 0", "c=IN IP4 192.0.2.99")
    assert sdp.answer(o, LOCAL)[1].remote_address == "192.0.2.99"


def test_version_bumps_only_on_change() -> None:
    """RFC 3264 §8: a re-answer that changes nothing keeps the o= version; a change adds one."""
    o = offer("m=audio 30000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000")
    first, _ = sdp.answer(o, LOCAL)
    again, _ = sdp.answer(o, LOCAL)
    assert sdp.bump_if_changed(again, first).origin.version == 1
    held, _ = sdp.answer(
        offer("m=audio 30000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000", "a=sendonly"), LOCAL
    )
    bumped = sdp.bump_if_changed(held, first)
    assert bumped.origin.version == 2
    assert bumped.origin.session_id == "99"


def test_our_offer_and_reading_the_answer() -> None:
    ours = sdp.offer(LOCAL)
    assert ours.media[0].formats == ("0", "8", "101")
    assert ours.media[0].attributes("rtpmap") == ["0 PCMU/8000", "8 PCMA/8000", "101 telephone-event/8000"]
    their = sdp.SessionDescription.parse(
        "v=0\no=uas 1 1 IN IP4 192.0.2.8\ns=-\nc=IN IP4 192.0.2.8\nt=0 0\n"
        "m=audio 6000 RTP/AVP 8 101\na=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\n"
    )
    media = sdp.accept_answer(their, ours)
    assert (media.codec, media.pt, media.dtmf_pt, media.remote_address, media.remote_port) == (
        "PCMA",
        8,
        101,
        "192.0.2.8",
        6000,
    )
    g729 = sdp.SessionDescription.parse(
        "v=0\no=uas 1 1 IN IP4 h\ns=-\nc=IN IP4 h\nt=0 0\nm=audio 6000 RTP/AVP 18\n"
    )
    with pytest.raises(RemoteProtocolError, match=r"^SDP answer takes no codec we offered$"):
        sdp.accept_answer(g729, ours)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("o=- 1 1 IN IP4 h\n", "SDP does not start with v=0"),
        ("v=0\ns=-\n", "bad or missing SDP o= line"),
        ("v=0\no=- 1 1 IN IP4 h\nbroken line\n", "bad SDP line 'broken line'"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio x RTP/AVP 0\n", "bad SDP m= port 'x'"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio 5\n", "bad SDP m= line 'audio 5'"),
        ("v=0\x00\n", "NUL byte in SDP"),
    ],
)
def test_bad_sdp(text: str, message: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        sdp.SessionDescription.parse(text)
    assert str(info.value) == message
    assert info.value.error_status_hint == 400
