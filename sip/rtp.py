"""RTP (RFC 3550) for G.711 audio: packets, a paced sender and a bounded jitter buffer. Pure.

- `RtpPacket.parse` / `serialize`: the 12-byte fixed header (§5.1), CSRCs, the header
  extension (§5.3.1) and padding (§5.1, P bit). `parse` raises `ValueError` with a fixed message.
- `RtpSender`: sequence number +1 and timestamp +160 per 20 ms packet, random initial values
  and SSRC (§5.1: "the initial value … SHOULD be random"), M=1 on the first packet of a
  talkspurt (RFC 3551 §4.1).
- `Pacer`: how many 20 ms packets are due at `now`, so the send rate stays at 50 packets/s
  without drifting, and a stalled loop catches up by skipping time, not by bursting.
- `JitterBuffer`: reorders by RTP timestamp, drops late and duplicate packets, fills gaps
  with silence, re-syncs after a talkspurt gap or an SSRC change, and holds at most
  `capacity` frames (the excess is dropped oldest-first, which also bounds added latency).
  It works on timestamps, not sequence numbers, so packets of any length (10, 20, 30 ms)
  come out as steady 20 ms frames.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

RTP_VERSION = 2
HEADER = struct.Struct("!BBHII")
FRAME_SAMPLES = 160  # 20 ms at 8000 Hz; one byte per sample for G.711
FRAME_S = 0.020


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None  # (profile, data) when the X bit is set
    padding: int = 0  # number of padding bytes (P bit), 0 when absent

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < 12:
            raise ValueError("RTP packet length is less than 12 bytes")
        b0, b1, seq, ts, ssrc = HEADER.unpack_from(data)
        if b0 >> 6 != RTP_VERSION:
            raise ValueError("RTP packet has invalid version")
        cc = b0 & 0x0F
        pos = 12 + 4 * cc
        if len(data) < pos:
            raise ValueError("RTP packet has truncated CSRC")
        csrc = struct.unpack_from(f"!{cc}I", data, 12) if cc else ()
        extension: tuple[int, bytes] | None = None
        if b0 & 0x10:
            if len(data) < pos + 4:
                raise ValueError("RTP packet has truncated extension")
            profile, words = struct.unpack_from("!HH", data, pos)
            end = pos + 4 + 4 * words
            if len(data) < end:
                raise ValueError("RTP packet has truncated extension")
            extension = (profile, bytes(data[pos + 4 : end]))
            pos = end
        padding = 0
        end = len(data)
        if b0 & 0x20:
            padding = data[-1]
            if padding == 0 or pos + padding > len(data):
                raise ValueError("RTP packet padding length is invalid")
            end -= padding
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(data[pos:end]),
            marker=bool(b1 & 0x80),
            csrc=tuple(csrc),
            extension=extension,
            padding=padding,
        )

    def serialize(self) -> bytes:
        b0 = (RTP_VERSION << 6) | len(self.csrc)
        if self.padding:
            b0 |= 0x20
        if self.extension is not None:
            b0 |= 0x10
        out = HEADER.pack(
            b0,
            (0x80 if self.marker else 0) | self.payload_type,
            self.sequence_number & 0xFFFF,
            self.timestamp & 0xFFFFFFFF,
            self.ssrc,
        )
        if self.csrc:
            out += struct.pack(f"!{len(self.csrc)}I", *self.csrc)
        if self.extension is not None:
            profile, ext = self.extension
            out += struct.pack("!HH", profile, len(ext) // 4) + ext
        out += self.payload
        if self.padding:
            out += b"\x00" * (self.padding - 1) + bytes([self.padding])
        return out

    __bytes__ = serialize


def pack(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    """The hot path: a plain 12-byte header and the payload."""
    return HEADER.pack(0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


class RtpSender:
    """Numbers our outgoing packets. One per call; audio and telephone-events share it."""

    def __init__(self, pt: int, *, rng: random.Random | None = None) -> None:
        rng = rng or random.SystemRandom()
        self.pt = pt
        self.ssrc = rng.getrandbits(32)
        self.seq = rng.getrandbits(16)
        self.ts = rng.getrandbits(32)
        self.packets = 0
        self.octets = 0

    def audio(self, payload: bytes, *, marker: bool = False) -> bytes:
        """One audio packet at the current timestamp; the clock then advances by its samples."""
        data = pack(self.pt, self.seq, self.ts, self.ssrc, payload, marker)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + len(payload)) & 0xFFFFFFFF
        self.packets += 1
        self.octets += len(payload)
        return data

    def event(self, pt: int, payload: bytes, *, timestamp: int, marker: bool, new_seq: bool = True) -> bytes:
        """A telephone-event packet (RFC 4733): fixed `timestamp` (the event's start); a repeat of
        the end packet keeps its sequence number (`new_seq=False`, as in sipp's dtmf_2833 pcaps)."""
        if not new_seq:
            self.seq = (self.seq - 1) & 0xFFFF
        data = pack(pt, self.seq, timestamp, self.ssrc, payload, marker)
        self.seq = (self.seq + 1) & 0xFFFF
        self.packets += 1
        self.octets += len(payload)
        return data

    def skip(self, samples: int) -> None:
        """Time passed without an audio packet (DTMF played, frames skipped): keep the clock real."""
        self.ts = (self.ts + samples) & 0xFFFFFFFF


class Pacer:
    """Packets due at `now` for a steady `interval`, started at `start`."""

    def __init__(self, start: float, interval: float = FRAME_S, *, max_burst: int = 3) -> None:
        self.start = start
        self.interval = interval
        self.max_burst = max_burst
        self.sent = 0
        self.skipped = 0

    def due(self, now: float) -> tuple[int, int]:
        """(packets to send now, packets skipped because we fell behind by more than a burst)."""
        if now < self.start:
            return 0, 0
        target = int((now - self.start) / self.interval + 1e-9) + 1  # (exact multiples are due)
        n = target - self.sent
        skip = 0
        if n > self.max_burst:
            skip = n - 1
            self.skipped += skip
            n = 1
        self.sent = target
        return max(n, 0), skip

    def next_at(self) -> float:
        return self.start + self.sent * self.interval


# --------------------------------------------------------------------------- jitter buffer


@dataclass
class JitterStats:
    received: int = 0
    played: int = 0  # frames returned with at least some audio
    late: int = 0
    duplicate: int = 0
    overflow: int = 0
    gap_frames: int = 0  # frames (partly) filled with silence inside a talkspurt
    resyncs: int = 0
    ssrc_changes: int = 0
    stale_ssrc: int = 0
    underruns: int = 0


class JitterBuffer:
    """Bounded reordering buffer for one G.711 stream; `get()` once per 20 ms."""

    def __init__(
        self,
        *,
        prefetch: int = 2,
        capacity: int = 12,
        max_gap: int = 5,
        frame: int = FRAME_SAMPLES,
        silence: int = 0xFF,
    ) -> None:
        if capacity <= prefetch:
            raise ValueError("capacity must exceed prefetch")
        self.frame = frame
        self.prefetch = prefetch * frame
        self.capacity = capacity * frame
        self.max_gap = max_gap * frame
        self.silence_byte = silence
        self._silence = bytes([silence]) * frame
        self.stats = JitterStats()
        self._ssrc: int | None = None
        self._prev_ssrc: int | None = None
        self._ref: int | None = None  # last extended timestamp seen (for wrap-around)
        self._packets: dict[int, bytes] = {}
        self._pos: int | None = None  # next sample to play (extended timestamp)
        self._played_until: int | None = None

    def __len__(self) -> int:
        return len(self._packets)

    @property
    def depth(self) -> int:
        """Buffered samples from the play position to the end of the newest packet."""
        if not self._packets:
            return 0
        start = self._pos if self._pos is not None else min(self._packets)
        return max(ts + len(p) for ts, p in self._packets.items()) - start

    def _extend(self, ts: int) -> int:
        if self._ref is None:
            ext = ts
        else:
            delta = ((ts - (self._ref & 0xFFFFFFFF) + 2**31) % 2**32) - 2**31
            ext = self._ref + delta
        self._ref = ext
        return ext

    def _reset(self) -> None:
        self._packets.clear()
        self._pos = None
        self._played_until = None
        self._ref = None

    def put(self, ssrc: int, timestamp: int, payload: bytes, *, marker: bool = False) -> None:
        if not payload:
            return
        if ssrc != self._ssrc:
            if self._ssrc is not None and ssrc == self._prev_ssrc:
                self.stats.stale_ssrc += 1  # the stream we left: do not flap back to it
                return
            if self._ssrc is not None:
                self.stats.ssrc_changes += 1
            self._prev_ssrc, self._ssrc = self._ssrc, ssrc
            self._reset()
        self.stats.received += 1
        ext = self._extend(timestamp)
        if self._played_until is not None and ext + len(payload) <= self._played_until:
            self.stats.late += 1
            return
        if ext in self._packets:
            self.stats.duplicate += 1
            return
        if self._pos is not None and (ext - self._pos > self.capacity or ext < self._pos - self.capacity):
            # A jump far outside the window (sender restarted its clock): start over from here.
            self.stats.resyncs += 1
            self._packets.clear()
            self._pos = None
            self._played_until = None
        self._packets[ext] = payload
        while self.depth > self.capacity:
            oldest = min(self._packets)
            dropped = self._packets.pop(oldest)
            self.stats.overflow += 1
            if self._pos is not None:
                self._pos = max(self._pos, oldest + len(dropped))

    def get(self) -> bytes | None:
        """The next 20 ms frame, or None while nothing is playing (not started, or underrun)."""
        if self._pos is None:
            if not self._packets or self.depth < self.prefetch:
                return None
            self._pos = min(self._packets)
        pos = self._pos
        end = pos + self.frame
        # Fast path: a whole frame stored exactly at the play position.
        payload = self._packets.get(pos)
        if payload is not None and len(payload) == self.frame:
            del self._packets[pos]
            return self._advance(end, payload)
        overlapping = sorted(ts for ts, p in self._packets.items() if ts < end and ts + len(p) > pos)
        if not overlapping:
            if not self._packets:
                # Underrun: nothing left. Hold; resume (after prefetch) from whatever comes next.
                self.stats.underruns += 1
                self._pos = None
                return None
            first = min(self._packets)
            if first - pos > self.max_gap:
                # A talkspurt after silence suppression (or a long loss): skip to it.
                self.stats.resyncs += 1
                self._pos = first
                return self.get()
            self.stats.gap_frames += 1
            return self._advance(end, self._silence)
        out = bytearray(self._silence)
        for ts in overlapping:
            p = self._packets[ts]
            lo, hi = max(ts, pos), min(ts + len(p), end)
            out[lo - pos : hi - pos] = p[lo - ts : hi - ts]
            if ts + len(p) <= end:
                del self._packets[ts]
        return self._advance(end, bytes(out))

    def _advance(self, end: int, frame: bytes) -> bytes:
        self._pos = end
        self._played_until = end
        # Packets that now lie entirely behind the play position can never play.
        for ts in [ts for ts, p in self._packets.items() if ts + len(p) <= end]:
            del self._packets[ts]
            self.stats.late += 1
        self.stats.played += 1
        return frame
