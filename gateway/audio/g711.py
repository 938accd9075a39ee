"""G.711 μ-law and A-law, bit-exact with CPython's `audioop`, as table lookups.

ITU-T G.711 compands 16-bit linear PCM into 8-bit codes: μ-law (North America, Japan; what
Twilio Media Streams carry) and A-law (the rest of the world; SIP trunks offering PCMA).
The tables below are computed once at import from the segment/quantisation algorithm of
G.711 in the form of the Sun reference code (`g711.c`), which is also what `audioop` uses;
`tests/unit/test_audio_g711.py` checks all 65,536 PCM inputs and all 256 codes of each law
against `audioop`. We do not import `audioop` here: it is deprecated in Python 3.11-3.12 and
gone from the standard library in 3.13.

Encoding is one gather from a 65,536-entry table indexed by the raw 16-bit sample, decoding
one gather from a 256-entry table, so a 20 ms frame costs a couple of numpy calls and no
Python-level loop.

As in `audioop`, the encoders drop the low bits before companding: μ-law works on the top 14
bits (sample >> 2), A-law on the top 13 bits (sample >> 3), both with arithmetic shifts.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ALAW_SILENCE",
    "ULAW_SILENCE",
    "alaw_to_pcm16",
    "pcm16_to_alaw",
    "pcm16_to_ulaw",
    "ulaw_to_pcm16",
]

# Segment end points, G.711 Tables 1a/2a expressed on the 14-bit (μ-law) and 13-bit (A-law)
# magnitude scales used by the reference code.
_SEG_ULAW_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_SEG_ALAW_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)
_ULAW_BIAS = 0x84  # 132: the μ-law bias, added so that every segment starts at a power of 2
_ULAW_CLIP = 8159  # largest 14-bit magnitude that still encodes without overflow


def _all_pcm16() -> NDArray[np.int32]:
    """Every int16 value, at the index of its little-endian unsigned bit pattern."""
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _ulaw_encode_table() -> NDArray[np.uint8]:
    pcm = _all_pcm16() >> 2  # 14-bit, arithmetic shift
    negative = pcm < 0
    mask = np.where(negative, 0x7F, 0xFF)  # μ-law transmits all bits inverted
    magnitude = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_SEG_ULAW_END, magnitude, side="left").astype(np.int32)
    shift = np.minimum(seg, 7) + 1
    code = (seg << 4) | ((magnitude >> shift) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)  # out of range: the largest code
    return (code ^ mask).astype(np.uint8)


def _ulaw_decode_table() -> NDArray[np.int16]:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return np.where(code & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype("<i2")


def _alaw_encode_table() -> NDArray[np.uint8]:
    pcm = _all_pcm16() >> 3  # 13-bit, arithmetic shift
    negative = pcm < 0
    mask = np.where(negative, 0x55, 0xD5)  # A-law inverts the even bits; sign bit 1 = positive
    magnitude = np.where(negative, -pcm - 1, pcm)
    seg = np.searchsorted(_SEG_ALAW_END, magnitude, side="left").astype(np.int32)
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    code = (seg << 4) | ((magnitude >> shift) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _alaw_decode_table() -> NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (code & 0x70) >> 4
    t = (code & 0x0F) << 4
    t = np.where(seg == 0, t + 8, ((t + 0x108) << np.maximum(seg - 1, 0)))
    return np.where(code & 0x80, t, -t).astype("<i2")


_ULAW_ENCODE = _ulaw_encode_table()
_ULAW_DECODE = _ulaw_decode_table()
_ALAW_ENCODE = _alaw_encode_table()
_ALAW_DECODE = _alaw_decode_table()
for _table in (_ULAW_ENCODE, _ULAW_DECODE, _ALAW_ENCODE, _ALAW_DECODE):
    _table.flags.writeable = False

#: The code for a zero sample: what a silent G.711 frame is filled with.
ULAW_SILENCE = int(_ULAW_ENCODE[0])  # 0xFF
ALAW_SILENCE = int(_ALAW_ENCODE[0])  # 0xD5


def _pcm16_codes(data: bytes) -> NDArray[np.uint16]:
    if len(data) % 2:
        raise ValueError(f"PCM16 data must have an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<u2")


def ulaw_to_pcm16(data: bytes) -> bytes:
    """Decode G.711 μ-law to PCM16 (little-endian, signed); 1 byte in, 2 bytes out."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()


def pcm16_to_ulaw(data: bytes) -> bytes:
    """Encode PCM16 (little-endian, signed, even length) to G.711 μ-law."""
    return _ULAW_ENCODE[_pcm16_codes(data)].tobytes()


def alaw_to_pcm16(data: bytes) -> bytes:
    """Decode G.711 A-law to PCM16 (little-endian, signed); 1 byte in, 2 bytes out."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()


def pcm16_to_alaw(data: bytes) -> bytes:
    """Encode PCM16 (little-endian, signed, even length) to G.711 A-law."""
    return _ALAW_ENCODE[_pcm16_codes(data)].tobytes()
