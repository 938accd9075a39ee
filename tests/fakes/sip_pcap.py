"""Pcap files for sipp's `play_pcap_audio`, written at test time (no binaries in the repo).

`write_rtp_pcap` frames RTP packets as Ethernet/IPv4/UDP in a classic libpcap file, 20 ms
apart; sipp rewrites only addresses and ports when it replays them (protocols.md §5.4), so PT,
sequence numbers, timestamps and SSRC go out as written here. `pcmu_tone` is the equivalent of
shared/sipp/make_pcmu_pcap.py (3 s of 440 Hz, PT 0, 160-byte frames), with the μ-law encoder
from gateway.audio. `read_udp_payloads` reads such a file back (the RFC 4733 vector test reads
the dtmf_2833_1.pcap that the sip-tester package ships).
"""

from __future__ import annotations

import math
import shutil
import struct
from pathlib import Path

import numpy as np

from gateway.audio import pcm16_to_alaw, pcm16_to_ulaw

DTMF_PCAP_DIRS = (Path("/usr/share/sip-tester"), Path("/usr/share/sipp"))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(payload: bytes, ident: int, src_port: int = 40000, dst_port: int = 6000) -> bytes:
    udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        ident & 0xFFFF,
        0,
        64,
        17,
        0,
        bytes([10, 0, 0, 1]),
        bytes([10, 0, 0, 2]),
    )
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + ip + udp


def write_rtp_pcap(path: Path, packets: list[bytes], interval_s: float = 0.020) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = 1_700_000_000
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # DLT_EN10MB
        for k, rtp in enumerate(packets):
            frame = _frame(rtp, k)
            usec = round(k * interval_s * 1_000_000)
            f.write(struct.pack("<IIII", t0 + usec // 1_000_000, usec % 1_000_000, len(frame), len(frame)))
            f.write(frame)
    return path


def tone_pcm16(seconds: float = 3.0, freq: float = 440.0, amplitude: int = 8000) -> bytes:
    n = int(seconds * 8000)
    t = np.arange(n) / 8000.0
    return (amplitude * np.sin(2 * math.pi * freq * t)).astype("<i2").tobytes()


def g711_pcap(
    path: Path, pcm16: bytes, *, codec: str = "PCMU", ptime_ms: int = 20, ssrc: int = 0x1234ABCD
) -> Path:
    """RTP packets of `pcm16` encoded as PCMU (PT 0) or PCMA (PT 8), `ptime_ms` each."""
    encoded = pcm16_to_ulaw(pcm16) if codec == "PCMU" else pcm16_to_alaw(pcm16)
    pt = 0 if codec == "PCMU" else 8
    step = 8 * ptime_ms
    packets = []
    for k in range(len(encoded) // step):
        header = struct.pack("!BBHII", 0x80, (0x80 if k == 0 else 0) | pt, k + 1, k * step, ssrc)
        packets.append(header + encoded[k * step : (k + 1) * step])
    return write_rtp_pcap(path, packets, ptime_ms / 1000)


def pcmu_tone(path: Path, seconds: float = 3.0, freq: float = 440.0) -> Path:
    return g711_pcap(path, tone_pcm16(seconds, freq))


def dtmf_pcap(path: Path, digit: str = "1") -> Path:
    """The package's dtmf_2833_<digit>.pcap when installed, else the same event from our sender."""
    name = {"*": "star", "#": "pound"}.get(digit, digit)
    for folder in DTMF_PCAP_DIRS:
        shipped = folder / f"dtmf_2833_{name}.pcap"
        if shipped.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shipped, path)
            return path
    from sip.dtmf import event_packets

    packets = []
    seq = 7984
    for p in event_packets(digit, duration_ms=280, step=320):
        if p.new_seq:
            seq += 1
        packets.append(
            struct.pack("!BBHII", 0x80, (0x80 if p.marker else 0) | 101, seq, 13280, 0x0E05384E) + p.payload
        )
    return write_rtp_pcap(path, packets, 0.040)


def shipped_pcap(name: str) -> Path | None:
    for folder in DTMF_PCAP_DIRS:
        if (folder / name).exists():
            return folder / name
    return None


def read_udp_payloads(path: Path) -> list[bytes]:
    """UDP payloads of an Ethernet/IPv4 libpcap file (enough for sipp's sample pcaps)."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    pos = 24
    out = []
    while pos + 16 <= len(data):
        incl = struct.unpack_from(endian + "IIII", data, pos)[2]
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        if len(frame) < 42 or frame[12:14] != b"\x08\x00":
            continue
        ihl = (frame[14] & 0x0F) * 4
        if frame[14 + 9] != 17:
            continue
        udp = frame[14 + ihl :]
        length = struct.unpack_from("!H", udp, 4)[0]
        out.append(bytes(udp[8:length]))
    return out
