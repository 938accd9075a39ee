"""Speech-to-text with OpenAI's transcription API (`gpt-4o-transcribe`, `gpt-4o-mini-transcribe`).

The utterance the VAD cut is uploaded as one WAV at the end of the turn, with `stream=True`,
so the transcript comes back as deltas and the request returns as soon as the model is done
(`transcript.text.done`). 8 kHz is sent as is: the phone band is all there is, and a quarter
of the bytes of 16 kHz uploads faster. `whisper-1` has no streaming; it is called plainly.

(A Realtime transcription session, `intent=transcription`, would transcribe while the caller
speaks and save the upload; it fits the same `SttStream` interface and can be added beside.)
"""

from __future__ import annotations

import io
import wave
from typing import Any

from openai import AsyncOpenAI

__all__ = ["OpenAIStt"]


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


class _Upload:
    def __init__(self, owner: OpenAIStt) -> None:
        self._owner = owner
        self._pcm = bytearray()

    def feed(self, pcm: bytes) -> None:
        self._pcm += pcm

    async def finish(self) -> str:
        return await self._owner.transcribe(bytes(self._pcm))

    async def cancel(self) -> None:
        self._pcm.clear()


class OpenAIStt:
    """`SpeechToText` over `POST /v1/audio/transcriptions`."""

    name = "openai-transcribe"
    sample_rate = 8000

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str = "gpt-4o-mini-transcribe",
        *,
        language: str | None = None,
        prompt: str | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.language = language
        self.prompt = prompt

    def start(self) -> _Upload:
        return _Upload(self)

    async def transcribe(self, pcm: bytes) -> str:
        if not pcm:
            return ""
        extra: dict[str, Any] = {}
        if self.language:
            extra["language"] = self.language
        if self.prompt:
            extra["prompt"] = self.prompt
        file = ("turn.wav", wav_bytes(pcm, self.sample_rate), "audio/wav")
        if self.model.startswith("whisper"):
            result = await self.client.audio.transcriptions.create(file=file, model=self.model, **extra)
            return str(result.text)
        stream = await self.client.audio.transcriptions.create(
            file=file, model=self.model, stream=True, **extra
        )
        text = ""
        async with stream:
            async for event in stream:
                if event.type == "transcript.text.delta":
                    text += event.delta
                elif event.type == "transcript.text.done":
                    text = event.text
        return text

    async def aclose(self) -> None:
        pass
