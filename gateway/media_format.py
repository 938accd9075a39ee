"""Between the carrier's μ-law 8 kHz and the model's audio format.

The default is passthrough: Twilio payload bytes go to the model unchanged and back (the model
is told `audio/pcmu` both ways; protocols.md §0 "Cheapest audio path"). The PCM mode decodes
μ-law and resamples 8 kHz ⇄ 24 kHz with our low-delay resampler (gateway.audio).
"""

from __future__ import annotations

from typing import Protocol


class MediaAdapter(Protocol):
    """Converts one call's audio; stateful (resampler history), one instance per call."""

    model_format: str

    def to_model(self, ulaw: bytes) -> bytes: ...

    def to_carrier(self, audio: bytes) -> bytes: ...


class Passthrough:
    """μ-law both ways: no conversion, no added delay."""

    model_format = "audio/pcmu"

    def to_model(self, ulaw: bytes) -> bytes:
        return ulaw

    def to_carrier(self, audio: bytes) -> bytes:
        return audio
