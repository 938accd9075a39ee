"""RTP packets, the paced sender, the jitter buffer, and RFC 4733 telephone-events."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from sip.dtmf import DtmfReceiver, TelephoneEvent, digit_to_event, event_packets
from sip.rtp import JitterBuffer, Pacer, RtpPacket, RtpSender
from tests.fakes.sip_pcap import read_udp_payloads, shipped_pcap

# protocols.md §4.3, the dtmf_2833_1.pcap that sipp ships: PT 101, SSRC 0x0e05384e, one
# timestamp (13280) for the whole event, seq 7984-7991, duration 0 → 2240 in steps of 320,
# the end packet (E=1) three times with the same sequence number.
DTMF_1 = [
    struct.pack("!BBHII", 0x80, (0x80 if seq == 7984 else 0) | 101, seq, 13280, 0x0E05384E) + payload
    for seq, payload in [
        (7984, bytes.fromhex("010a0000")),
        (7985, bytes.fromhex("010a0140")),
        (7986, bytes.fromhex("010a0280")),
        (7987, bytes.fromhex("010a03c0")),
        (7988, bytes.fromhex("010a0500")),
        (7989, bytes.fromhex("010a0640")),
        (7990, bytes.fromhex("010a0780")),
        (7991, bytes.fromhex("018a08c0")),
        (7991, bytes.fromhex("018a08c0")),
        (7991, bytes.fromhex("018a08c0")),
    ]
]


def test_dtmf_vector_parses_and_round_trips() -> None:
    first = RtpPacket.parse(DTMF_1[0])
    assert (first.payload_type, first.sequence_number, first.timestamp, first.ssrc, first.marker) == (
        101,
        7984,
        13280,
        0x0E05384E,
        True,
    )
    assert TelephoneEvent.parse(first.payload) == TelephoneEvent(1, False, 10, 0)
    last = RtpPacket.parse(DTMF_1[-1])
    assert TelephoneEvent.parse(last.payload) == TelephoneEvent(1, True, 10, 2240)
    for data in DTMF_1:
        assert RtpPacket.parse(data).serialize() == data


def test_the_shipped_pcap_matches_the_vector() -> None:
    path = shipped_pcap("dtmf_2833_1.pcap")
    if path is None:
        pytest.skip("sip-tester's dtmf_2833_1.pcap is not installed")
    assert read_udp_payloads(path) == DTMF_1


def test_dtmf_receiver_reports_one_digit_per_press() -> None:
    """Dedup on (SSRC, timestamp): ten packets, retransmitted end packets, one '1'."""
    rx = DtmfReceiver()
    digits = []
    for data in DTMF_1:
        p = RtpPacket.parse(data)
        digits.append(rx.receive(p.ssrc, p.timestamp, p.payload, marker=p.marker))
    assert [d for d in digits if d] == ["1"]
    p = RtpPacket.parse(DTMF_1[0])
    assert rx.receive(p.ssrc, p.timestamp, p.payload) is None  # late duplicate
    assert rx.receive(p.ssrc, p.timestamp + 1600, bytes.fromhex("0b0a0000"), marker=True) == "#"
    assert rx.receive(p.ssrc, p.timestamp + 3200, b"\x01") is None
    assert rx.malformed == 1


def test_long_event_segments_are_one_key_press() -> None:
    """RFC 4733 §2.5.1.3: a long event continues under a new timestamp without M=1."""
    rx = DtmfReceiver()
    assert rx.receive(1, 0, TelephoneEvent(5, False, 10, 160).serialize(), marker=True) == "5"
    assert rx.receive(1, 65535, TelephoneEvent(5, False, 10, 160).serialize()) is None
    assert rx.receive(1, 65535, TelephoneEvent(5, True, 10, 800).serialize()) is None
    assert rx.receive(1, 90000, TelephoneEvent(5, False, 10, 160).serialize(), marker=True) == "5"


def test_event_packets_for_sending() -> None:
    """Growing duration, M on the first, end packet three times (repeats keep the seq)."""
    packets = event_packets("#", duration_ms=100)
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert [p.new_seq for p in packets] == [True] * 5 + [False, False]
    assert {e.event for e in events} == {digit_to_event("#")} == {11}
    with pytest.raises(ValueError, match="not a DTMF digit"):
        digit_to_event("x")


def test_sender_sends_event_packets_under_one_timestamp() -> None:
    sender = RtpSender(0, rng=random.Random(1))
    start = sender.ts
    out = [
        RtpPacket.parse(sender.event(101, p.payload, timestamp=start, marker=p.marker, new_seq=p.new_seq))
        for p in event_packets("1")
    ]
    seqs = [p.sequence_number for p in out]
    assert seqs[-1] == seqs[-2] == seqs[-3] == seqs[0] + 4
    assert {p.timestamp for p in out} == {start}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80" * 11, "RTP packet length is less than 12 bytes"),
        (b"\x40" + b"\x00" * 11, "RTP packet has invalid version"),
        (b"\x82" + b"\x00" * 11 + b"\x00" * 4, "RTP packet has truncated CSRC"),
        (b"\x90" + b"\x00" * 11 + b"\x00\x01", "RTP packet has truncated extension"),
        (b"\xa0" + b"\x00" * 11 + b"\x00\x00\x00\x09", "RTP packet padding length is invalid"),
    ],
)
def test_rtp_parse_errors(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=r"^RTP packet") as info:
        RtpPacket.parse(data)
    assert str(info.value) == message


def test_rtp_csrc_extension_padding_round_trip() -> None:
    p = RtpPacket(8, 65535, 2**32 - 1, 7, b"\xd5" * 160, True, (1, 2), (0xBEDE, b"\x10\xff\x00\x00"), 4)
    data = p.serialize()
    assert len(data) == 12 + 8 + 8 + 160 + 4
    assert RtpPacket.parse(data) == p


def test_sender_numbers_packets_and_marks_talkspurts() -> None:
    """seq +1, timestamp +160 per 20 ms, random start values (RFC 3550 §5.1)."""
    sender = RtpSender(0, rng=random.Random(7))
    a = RtpPacket.parse(sender.audio(b"\xff" * 160, marker=True))
    b = RtpPacket.parse(sender.audio(b"\x00" * 160))
    sender.skip(320)
    c = RtpPacket.parse(sender.audio(b"\x00" * 160))
    assert (a.marker, b.marker) == (True, False)
    assert b.sequence_number == (a.sequence_number + 1) & 0xFFFF
    assert (b.timestamp - a.timestamp) & 0xFFFFFFFF == 160
    assert (c.timestamp - b.timestamp) & 0xFFFFFFFF == 480
    assert a.ssrc == b.ssrc == c.ssrc
    other = RtpSender(0, rng=random.Random(8))
    assert (other.ssrc, other.seq, other.ts) != (sender.ssrc, a.sequence_number, a.timestamp)


def test_pacer_keeps_50_per_second_and_skips_after_a_stall() -> None:
    pacer = Pacer(10.0)
    assert pacer.due(9.9) == (0, 0)
    assert pacer.due(10.0) == (1, 0)
    sent = sum(pacer.due(10.0 + k * 0.01)[0] for k in range(1, 101))  # ticks every 10 ms for 1 s
    assert sent == 50
    assert pacer.due(11.05) == (2, 0)  # a little late: catch up
    assert pacer.due(12.0) == (1, 47)  # a second late: skip the backlog (47 frames), send one
    assert pacer.next_at() == pytest.approx(12.02)


# --------------------------------------------------------------------------- jitter buffer


def frame(k: int) -> bytes:
    return bytes([k % 256]) * 160


def feed(jb: JitterBuffer, order: list[int], ssrc: int = 1, base: int = 1000) -> None:
    for k in order:
        jb.put(ssrc, base + 160 * k, frame(k))


def drain(jb: JitterBuffer, n: int) -> list[int | None]:
    out: list[int | None] = []
    for _ in range(n):
        f = jb.get()
        out.append(None if f is None else (-1 if f == b"\xff" * 160 else f[0]))
    return out


def test_in_order_after_prefetch() -> None:
    jb = JitterBuffer(prefetch=2)
    jb.put(1, 1000, frame(0))
    assert jb.get() is None  # waiting for 40 ms of audio
    feed(jb, [1, 2, 3])
    assert drain(jb, 5) == [0, 1, 2, 3, None]
    assert jb.stats.underruns == 1


def test_reorder_and_duplicates() -> None:
    jb = JitterBuffer(prefetch=2)
    feed(jb, [0, 2, 1, 1, 4, 3])
    assert drain(jb, 5) == [0, 1, 2, 3, 4]
    assert jb.stats.duplicate == 1


def test_late_packets_are_dropped() -> None:
    jb = JitterBuffer(prefetch=2)
    feed(jb, [0, 1, 2])
    assert drain(jb, 2) == [0, 1]
    feed(jb, [0, 1])  # behind the play position
    assert jb.stats.late == 2
    assert drain(jb, 1) == [2]


def test_a_lost_packet_is_filled_with_silence() -> None:
    jb = JitterBuffer(prefetch=2)
    feed(jb, [0, 1, 3, 4])
    assert drain(jb, 5) == [0, 1, -1, 3, 4]
    assert jb.stats.gap_frames == 1


def test_talkspurt_after_silence_suppression_resyncs() -> None:
    """A timestamp jump (DTX) is not played as seconds of silence: skip to the new talkspurt."""
    jb = JitterBuffer(prefetch=2, max_gap=5)
    feed(jb, [0, 1])
    assert drain(jb, 2) == [0, 1]
    feed(jb, [100, 101, 102])
    assert drain(jb, 3) == [100, 101, 102]


def test_overflow_drops_oldest_and_bounds_latency() -> None:
    jb = JitterBuffer(prefetch=2, capacity=6)
    feed(jb, list(range(10)))
    assert jb.stats.overflow == 4
    assert jb.depth <= 6 * 160
    assert drain(jb, 6) == [4, 5, 6, 7, 8, 9]


def test_ssrc_change_resets_and_the_old_stream_is_ignored() -> None:
    jb = JitterBuffer(prefetch=2)
    feed(jb, [0, 1, 2], ssrc=1)
    assert drain(jb, 1) == [0]
    feed(jb, [50, 51, 52], ssrc=2, base=777_000)  # a new source, unrelated numbering
    feed(jb, [3], ssrc=1)  # the old stream: stale, not a flap back
    assert jb.stats.ssrc_changes == 1
    assert jb.stats.stale_ssrc == 1
    assert drain(jb, 3) == [50, 51, 52]


def test_timestamp_wraparound() -> None:
    jb = JitterBuffer(prefetch=2)
    base = 2**32 - 320
    for k in range(4):
        jb.put(1, (base + 160 * k) % 2**32, frame(k))
    assert drain(jb, 4) == [0, 1, 2, 3]


def test_30_ms_packets_come_out_as_20_ms_frames() -> None:
    """Timestamps, not packet counts: 240-byte packets re-framed into 160-byte frames."""
    jb = JitterBuffer(prefetch=2)
    stream = bytes(range(256)) * 4  # 1024 samples
    for off in range(0, 960, 240):
        jb.put(9, 5000 + off, stream[off : off + 240])
    out = b"".join(jb.get() or b"" for _ in range(6))
    assert out == stream[:960]


def test_capacity_must_exceed_prefetch() -> None:
    with pytest.raises(ValueError, match="capacity must exceed prefetch"):
        JitterBuffer(prefetch=4, capacity=4)


def test_real_rtp_of_the_pcap_generator_is_read_back(tmp_path: Path) -> None:
    from tests.fakes.sip_pcap import pcmu_tone

    packets = read_udp_payloads(pcmu_tone(tmp_path / "t.pcap", seconds=0.2))
    parsed = [RtpPacket.parse(p) for p in packets]
    assert [p.sequence_number for p in parsed] == list(range(1, 11))
    assert all(len(p.payload) == 160 and p.payload_type == 0 for p in parsed)
