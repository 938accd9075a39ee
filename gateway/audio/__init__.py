"""Audio core: G.711 codecs, PCM16 helpers, a low-delay resampler, DTMF generation/detection.

Everything here is sans-I/O and works on `bytes` frames: PCM16 is signed 16-bit
little-endian mono; G.711 is one byte per sample at 8 kHz. numpy is the only dependency
(`audioop` is not used at run time; the tests compare against it).

- `g711`: μ-law / A-law encode and decode, bit-exact with `audioop` (ITU-T G.711).
- `pcm`: silence frames, array conversions, levels.
- `resample`: `Resampler`, streaming and chunking-invariant, ≥ 60 dB alias/image rejection
  at 1.67 ms delay for 8 ⇄ 24 kHz.
- `dtmf`: `dtmf_tone` (Q.23 tones) and `DtmfDetector` (Goertzel, Q.24-style checks).
- `measure`: tone-based quality and delay measurements, for the bench and the tests.
"""

from .dtmf import DTMF_DIGITS, DtmfDetector, dtmf_tone, dtmf_tone_ulaw
from .g711 import (
    ALAW_SILENCE,
    ULAW_SILENCE,
    alaw_to_pcm16,
    pcm16_to_alaw,
    pcm16_to_ulaw,
    ulaw_to_pcm16,
)
from .pcm import (
    G711_RATE,
    array_to_pcm16,
    pcm16_rms_dbfs,
    pcm16_to_array,
    samples_for_ms,
    silence_alaw,
    silence_pcm16,
    silence_ulaw,
)
from .resample import Resampler

__all__ = [
    "ALAW_SILENCE",
    "DTMF_DIGITS",
    "G711_RATE",
    "ULAW_SILENCE",
    "DtmfDetector",
    "Resampler",
    "alaw_to_pcm16",
    "array_to_pcm16",
    "dtmf_tone",
    "dtmf_tone_ulaw",
    "pcm16_rms_dbfs",
    "pcm16_to_alaw",
    "pcm16_to_array",
    "pcm16_to_ulaw",
    "samples_for_ms",
    "silence_alaw",
    "silence_pcm16",
    "silence_ulaw",
    "ulaw_to_pcm16",
]
