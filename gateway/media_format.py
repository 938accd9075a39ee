"""Between the carrier's μ-law 8 kHz and the model's audio format.

The default is passthrough: Twilio payload bytes go to the model unchanged and back (the model
is told `audio/pcmu` both ways; protocols.md §0 "Cheapest audio path"). The PCM mode decodes
μ-law and resamples 8 kHz ⇄ 24 kHz with our low-delay resampler (gateway.audio).
"""

from __future__ import annotations

from typing import Protocol

from gateway.audio import Resampler, pcm16_to_ulaw, ulaw_to_pcm16


class MediaAdapter(Protocol):
    """Converts one call's audio; stateful (resampler history), one instance per call."""

    model_format: str

    def to_model(self, ulaw: bytes) -> bytes: ...

    def to_carrier(self, audio: bytes) -> bytes: ...

    def reset_output(self) -> None:
        """Playback was cut (barge-in): forget filter history so the next item starts clean."""
        ...


class Passthrough:
    """μ-law both ways: no conversion, no added delay."""

    model_format = "audio/pcmu"

    def to_model(self, ulaw: bytes) -> bytes:
        return ulaw

    def to_carrier(self, audio: bytes) -> bytes:
        return audio

    def reset_output(self) -> None:
        pass


class Pcm24k:
    """PCM16 24 kHz for the model (`audio/pcm`, the only PCM rate Realtime takes, protocols.md §3).

    μ-law is decoded and resampled 8 → 24 kHz on the way in, and resampled 24 → 8 kHz and encoded
    on the way out, with `gateway.audio.Resampler` (alias/image rejection ≥ 60 dB at 1.67 ms delay
    each way, where `audioop.ratecv` has no anti-alias filter). One instance per call: the
    resamplers carry filter state across frames.
    """

    model_format = "audio/pcm"

    def __init__(self) -> None:
        self._up = Resampler(8000, 24000)
        self._down = Resampler(24000, 8000)

    def to_model(self, ulaw: bytes) -> bytes:
        return self._up.process(ulaw_to_pcm16(ulaw))

    def to_carrier(self, audio: bytes) -> bytes:
        return pcm16_to_ulaw(self._down.process(audio))

    def reset_output(self) -> None:
        self._down.reset()
