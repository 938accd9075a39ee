"""PCM16 helpers: the gateway's linear audio is signed 16-bit little-endian mono.

Frames travel as `bytes` (that is what carriers and model APIs send, base64-decoded); these
helpers convert to and from numpy arrays at the edges of DSP code and build silence frames.
Durations are whole milliseconds and must map to a whole number of samples, so a frame
length is never silently rounded.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .g711 import ALAW_SILENCE, ULAW_SILENCE

__all__ = [
    "G711_RATE",
    "array_to_pcm16",
    "pcm16_rms_dbfs",
    "pcm16_to_array",
    "samples_for_ms",
    "silence_alaw",
    "silence_pcm16",
    "silence_ulaw",
]

#: G.711 is always sampled at 8 kHz (one byte per sample).
G711_RATE = 8000

_FULL_SCALE = 32768.0


def samples_for_ms(ms: int, rate: int) -> int:
    """Number of samples in `ms` milliseconds at `rate` Hz; raises if it is not whole."""
    if ms < 0:
        raise ValueError(f"duration must not be negative, got {ms} ms")
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate} Hz")
    samples, remainder = divmod(ms * rate, 1000)
    if remainder:
        raise ValueError(f"{ms} ms at {rate} Hz is not a whole number of samples")
    return samples


def silence_pcm16(ms: int, rate: int) -> bytes:
    """`ms` milliseconds of PCM16 silence at `rate` Hz."""
    return bytes(2 * samples_for_ms(ms, rate))


def silence_ulaw(ms: int) -> bytes:
    """`ms` milliseconds of G.711 μ-law silence (8 kHz, code 0xFF)."""
    return bytes([ULAW_SILENCE]) * samples_for_ms(ms, G711_RATE)


def silence_alaw(ms: int) -> bytes:
    """`ms` milliseconds of G.711 A-law silence (8 kHz, code 0xD5)."""
    return bytes([ALAW_SILENCE]) * samples_for_ms(ms, G711_RATE)


def pcm16_to_array(data: bytes) -> NDArray[np.int16]:
    """A read-only int16 view of PCM16 bytes (no copy)."""
    if len(data) % 2:
        raise ValueError(f"PCM16 data must have an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<i2")


def array_to_pcm16(samples: ArrayLike) -> bytes:
    """PCM16 bytes from sample values on the int16 scale.

    Floats are rounded to the nearest integer (halves to even); everything is clipped to [-32768, 32767] so
    that an overshoot saturates instead of wrapping around (a wrap is a loud click).
    """
    array = np.asarray(samples)
    if array.ndim != 1:
        raise ValueError(f"expected a 1-D array of samples, got shape {array.shape}")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise ValueError("samples must be finite (got NaN or infinity)")
        array = np.rint(array)
    clipped: NDArray[np.int16] = np.clip(array, -32768, 32767).astype("<i2")
    return clipped.tobytes()


def pcm16_rms_dbfs(data: bytes) -> float:
    """RMS level in dBFS, where 0 dBFS is the RMS of a full-scale square wave.

    A full-scale sine reads about -3 dBFS; silence (or empty input) reads -inf.
    """
    samples = pcm16_to_array(data).astype(np.float64)
    if samples.size == 0:
        return -math.inf
    power = float(np.mean(samples * samples))
    if power == 0.0:
        return -math.inf
    return 10.0 * math.log10(power / (_FULL_SCALE * _FULL_SCALE))
