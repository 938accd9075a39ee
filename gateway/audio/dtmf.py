"""DTMF: a tone generator for in-band digits and a Goertzel detector for callers' keypresses.

Dual-tone multi-frequency signalling (ITU-T Q.23) sends each key as one tone from a low
("row") group and one from a high ("column") group:

              1209 Hz  1336 Hz  1477 Hz  1633 Hz
     697 Hz      1        2        3        A
     770 Hz      4        5        6        B
     852 Hz      7        8        9        C
     941 Hz      *        0        #        D

The generator is for carriers that only take digits as audio (Twilio Media Streams has no
"send digit" message). The detector is for carriers that pass callers' tones in-band
instead of as RFC 4733 events or Twilio `dtmf` messages.

Detector design, after ITU-T Q.24 and the classic Goertzel receivers (Asterisk, spandsp):
the signal is cut into blocks of 12.75 ms (102 samples at 8 kHz; the bin width, 78 Hz, is
about the smallest gap between DTMF frequencies, 73 Hz). In each block the energy at the 8
DTMF frequencies and at their second harmonics is the Goertzel value, i.e. the DFT bin at
that exact frequency, computed here for all 16 frequencies at once as one matrix product.
A block counts as a key when the strongest row and column tones pass every check:

- level: each tone at least -33 dBFS (about -30 dBm0 on a G.711 channel);
- twist: the column tone at most 4 dB above the row tone ("reverse" twist) and at most
  8 dB below it ("normal" twist, as lines attenuate the high group more);
- relative peak: each tone at least 8 dB above every other frequency of its group;
- second harmonic: the column tone's 2nd harmonic at least 15 dB below it. The row tone's
  must only be 3 dB below: its 2nd harmonics (1394-1882 Hz) lie within one bin of the
  column frequencies, and a genuine column tone leaks up to -6 dB into them;
- purity: the two tones carry at least 80% of the block's power (signal to other ≥ 6 dB),
  which is what rejects speech, whose voiced harmonics spread over many frequencies.

With 78 Hz bins these checks also give Q.24's frequency tolerance: tones off by ±1.5% are
accepted, tones off by ±3.5% are not (tests/unit/test_dtmf.py checks both).

A key is reported once, when 2 consecutive blocks agree on it, so tones of 38.25 ms or more
are always detected and tones under 25.5 ms never are (Q.24's usual limits: operate at
40 ms, never under about 20-23 ms). It
is released after 3 consecutive blocks without it. A 10 ms interruption touches at most 2
blocks, so it does not repeat the digit; a 40 ms pause (Q.24's minimum) always spoils at
least 3, because a block that is more than about a fifth silent fails the purity check.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from .g711 import pcm16_to_ulaw, ulaw_to_pcm16
from .pcm import array_to_pcm16

__all__ = ["DTMF_DIGITS", "DtmfDetector", "dtmf_tone", "dtmf_tone_ulaw"]

ROW_FREQS = (697.0, 770.0, 852.0, 941.0)
COL_FREQS = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYPAD = ("123A", "456B", "789C", "*0#D")
#: The 16 DTMF keys, in keypad order.
DTMF_DIGITS = "".join(_KEYPAD)
_FREQS_OF = {
    key: (ROW_FREQS[row], COL_FREQS[col]) for row, keys in enumerate(_KEYPAD) for col, key in enumerate(keys)
}

_RAMP_SECONDS = 0.002  # raised-cosine on/off ramps: no clicks, no spectral splatter
_BLOCK_SECONDS = 0.01275  # 102 samples at 8 kHz
_MIN_TONE_DBFS = -33.0
_NORMAL_TWIST_DB = 8.0
_REVERSE_TWIST_DB = 4.0
_RELATIVE_PEAK_DB = 8.0
_ROW_HARMONIC_DB = 3.0
_COL_HARMONIC_DB = 15.0
_MIN_PURITY = 0.8
_CONFIRM_BLOCKS = 2
_RELEASE_BLOCKS = 3


def _db(db: float) -> float:
    """Power ratio of `db` decibels."""
    return float(10.0 ** (db / 10.0))


def _check_digit(digit: str) -> str:
    key = digit.upper()
    if len(key) != 1 or key not in _FREQS_OF:
        raise ValueError(f"not a DTMF digit: {digit!r} (expected one of {DTMF_DIGITS})")
    return key


def dtmf_tone(digit: str, rate: int = 8000, duration_ms: int = 100, level_dbfs: float = -6.0) -> bytes:
    """PCM16 of one DTMF key: two equal-level sines with 2 ms raised-cosine ramps.

    `level_dbfs` is the peak of the two-tone sum relative to full scale, so it never clips
    at 0 dBFS or below; each tone is 6 dB lower (-12 dBFS, about -9 dBm0 on a μ-law channel,
    for the default). `digit` is one of 0-9, *, #, A-D (a-d accepted).
    """
    low, high = _FREQS_OF[_check_digit(digit)]
    if rate < 8000:
        raise ValueError(f"rate must be at least 8000 Hz, got {rate}")
    if duration_ms <= 0:
        raise ValueError(f"duration must be positive, got {duration_ms} ms")
    if level_dbfs > 0.0:
        raise ValueError(f"level must be at most 0 dBFS, got {level_dbfs}")
    n = rate * duration_ms // 1000
    t = np.arange(n, dtype=np.float64) / rate
    amplitude = 32767.0 * 10.0 ** (level_dbfs / 20.0) / 2.0
    samples = amplitude * (np.sin(2.0 * math.pi * low * t) + np.sin(2.0 * math.pi * high * t))
    ramp = min(round(_RAMP_SECONDS * rate), n // 4)
    if ramp > 0:
        envelope = 0.5 - 0.5 * np.cos(math.pi * (np.arange(ramp) + 0.5) / ramp)
        samples[:ramp] *= envelope
        samples[n - ramp :] *= envelope[::-1]
    return array_to_pcm16(samples)


def dtmf_tone_ulaw(digit: str, duration_ms: int = 100, level_dbfs: float = -6.0) -> bytes:
    """`dtmf_tone` at 8 kHz, G.711 μ-law encoded: ready for a Twilio media message."""
    return pcm16_to_ulaw(dtmf_tone(digit, 8000, duration_ms, level_dbfs))


class DtmfDetector:
    """Streaming DTMF receiver for PCM16 at `rate` Hz; reports each key press once.

    Feed any chunking of the audio (an odd trailing byte is kept for the next call); the
    digits reported depend only on the audio, not on how it was cut. One instance per
    stream; `reset` forgets the audio and key state.
    """

    __slots__ = (
        "_basis",
        "_block",
        "_buffer",
        "_gap",
        "_last",
        "_min_power",
        "_pressed",
        "_run",
        "rate",
    )

    def __init__(self, rate: int = 8000) -> None:
        if rate < 8000:
            raise ValueError(f"rate must be at least 8000 Hz (2nd harmonics reach 3266 Hz), got {rate}")
        self.rate = rate
        self._block = block = round(rate * _BLOCK_SECONDS)
        freqs = np.array(ROW_FREQS + COL_FREQS)
        freqs = np.concatenate([freqs, 2.0 * freqs])
        phase = 2.0 * math.pi * np.outer(np.arange(block), freqs) / rate
        # Columns: cos then sin for each frequency, scaled so that a sine of amplitude A
        # gives cos² + sin² ≈ A² (exactly so when the block holds whole periods).
        self._basis: NDArray[np.float64] = np.concatenate([np.cos(phase), np.sin(phase)], axis=1) * (
            2.0 / block
        )
        self._min_power = (32768.0 * 10.0 ** (_MIN_TONE_DBFS / 20.0)) ** 2
        self._buffer = b""
        self._last: str | None = None
        self._run = 0
        self._pressed: str | None = None
        self._gap = 0

    def reset(self) -> None:
        """Forget buffered audio and any key being held."""
        self._buffer = b""
        self._last = None
        self._run = 0
        self._pressed = None
        self._gap = 0

    def process(self, pcm: bytes) -> list[str]:
        """Analyse a chunk of PCM16; returns the keys whose press was confirmed in it."""
        data = self._buffer + bytes(pcm)
        block_bytes = 2 * self._block
        n_blocks = len(data) // block_bytes
        used = n_blocks * block_bytes
        self._buffer = data[used:]
        if not n_blocks:
            return []
        x = np.frombuffer(data, dtype="<i2", count=used // 2).astype(np.float64)
        digits: list[str] = []
        for key in self._classify(x.reshape(n_blocks, self._block)):
            self._advance(key, digits)
        return digits

    def process_ulaw(self, data: bytes) -> list[str]:
        """`process` for G.711 μ-law audio (at this detector's rate, normally 8 kHz)."""
        return self.process(ulaw_to_pcm16(data))

    def _classify(self, blocks: NDArray[np.float64]) -> list[str | None]:
        """The key each block shows, or None; vectorised over blocks."""
        amp = blocks @ self._basis
        half = amp.shape[1] // 2
        power = amp[:, :half] ** 2 + amp[:, half:] ** 2
        rows, cols = power[:, 0:4], power[:, 4:8]
        rows2, cols2 = power[:, 8:12], power[:, 12:16]
        index = np.arange(blocks.shape[0])
        r = np.argmax(rows, axis=1)
        c = np.argmax(cols, axis=1)
        p_row, p_col = rows[index, r], cols[index, c]
        ok = (p_row >= self._min_power) & (p_col >= self._min_power)
        ok &= p_row <= p_col * _db(_NORMAL_TWIST_DB)
        ok &= p_col <= p_row * _db(_REVERSE_TWIST_DB)
        ok &= np.sort(rows, axis=1)[:, -2] * _db(_RELATIVE_PEAK_DB) <= p_row
        ok &= np.sort(cols, axis=1)[:, -2] * _db(_RELATIVE_PEAK_DB) <= p_col
        ok &= rows2[index, r] * _db(_ROW_HARMONIC_DB) <= p_row
        ok &= cols2[index, c] * _db(_COL_HARMONIC_DB) <= p_col
        # A sine of amplitude A has power A²/2; the block's mean power is mean(x²).
        ok &= (p_row + p_col) / 2.0 >= _MIN_PURITY * np.mean(blocks * blocks, axis=1)
        return [_KEYPAD[int(r[i])][int(c[i])] if ok[i] else None for i in range(blocks.shape[0])]

    def _advance(self, key: str | None, digits: list[str]) -> None:
        """Per-block key state: confirm after 2 agreeing blocks, release after 3 without the key."""
        self._run = self._run + 1 if key is not None and key == self._last else int(key is not None)
        self._last = key
        if self._pressed is not None:
            self._gap = 0 if key == self._pressed else self._gap + 1
            if self._gap >= _RELEASE_BLOCKS:
                self._pressed = None
        if self._pressed is None and key is not None and self._run >= _CONFIRM_BLOCKS:
            self._pressed = key
            self._gap = 0
            digits.append(key)
