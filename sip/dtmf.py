"""RFC 4733 telephone-events (DTMF over RTP): payload codec, receiver and sender. Pure.

Payload (§2.3): `event (8) | E (1) R (1) volume (6) | duration (16)`. Events 0-9 are the
digits, 10 `*`, 11 `#`, 12-15 `A`-`D`, 16 flash (§3.2). Every packet of one event carries the
same RTP timestamp (the event's start) while `duration` grows; the first has M=1; the end
packet (E=1) is sent three times (§2.5.1.4).

The receiver reports each event once, on the first packet it sees of it, deduplicating on
(SSRC, timestamp) (§2.5.2: retransmitted and updated packets share the timestamp). A long
event split into segments (§2.5.1.3) arrives as a new timestamp with the same event and no M
bit while the previous segment has not ended; it is the same key press and is not reported
again.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass

EVENT_CHARS = "0123456789*#ABCD"
FLASH = 16


def digit_to_event(digit: str) -> int:
    d = digit.upper()
    if len(d) != 1 or d not in EVENT_CHARS:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return EVENT_CHARS.index(d)


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    event: int
    end: bool = False
    volume: int = 10  # dBm0 below 0, 0..63
    duration: int = 0  # in timestamp units (8000 Hz)

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise ValueError("telephone-event payload is shorter than 4 bytes")
        event, flags, duration = struct.unpack_from("!BBH", payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        if not 0 <= self.volume <= 63:
            raise ValueError("volume must be 0..63")
        return struct.pack(
            "!BBH", self.event, (0x80 if self.end else 0) | self.volume, self.duration & 0xFFFF
        )

    @property
    def digit(self) -> str | None:
        return EVENT_CHARS[self.event] if self.event < len(EVENT_CHARS) else None


class DtmfReceiver:
    """Turns telephone-event packets into digits, once per key press."""

    MAX_KEYS = 64  # (ssrc, timestamp) pairs remembered; a bound, not a feature

    def __init__(self) -> None:
        self._seen: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._last: dict[int, tuple[int, bool]] = {}  # ssrc -> (event, ended)
        self.malformed = 0

    def receive(self, ssrc: int, timestamp: int, payload: bytes, *, marker: bool = False) -> str | None:
        try:
            te = TelephoneEvent.parse(payload)
        except ValueError:
            self.malformed += 1
            return None
        key = (ssrc, timestamp)
        if key in self._seen:
            if te.end:
                last = self._last.get(ssrc)
                if last is not None and last[0] == te.event:
                    self._last[ssrc] = (te.event, True)
            return None
        self._seen[key] = None
        while len(self._seen) > self.MAX_KEYS:
            self._seen.popitem(last=False)
        previous = self._last.get(ssrc)
        if len(self._last) >= self.MAX_KEYS and ssrc not in self._last:
            self._last.clear()  # many sources at once is an attack or a bug: keep the bound
        self._last[ssrc] = (te.event, te.end)
        if previous is not None and previous == (te.event, False) and not marker:
            return None  # next segment of a long event (§2.5.1.3)
        return te.digit


@dataclass(frozen=True, slots=True)
class EventPacket:
    payload: bytes
    marker: bool
    new_seq: bool  # False for the repeats of the end packet


def event_packets(
    digit: str, *, duration_ms: int = 100, volume: int = 10, step: int = 160
) -> list[EventPacket]:
    """The packets of one key press, one per 20 ms: growing duration, then the end packet 3×."""
    event = digit_to_event(digit)
    duration = max(2, (duration_ms * 8 + step - 1) // step) * step
    out: list[EventPacket] = []
    elapsed = step
    while elapsed < duration:
        out.append(EventPacket(TelephoneEvent(event, False, volume, elapsed).serialize(), not out, True))
        elapsed += step
    end = TelephoneEvent(event, True, volume, duration).serialize()
    out.append(EventPacket(end, not out, True))
    out += [EventPacket(end, False, False), EventPacket(end, False, False)]
    return out
