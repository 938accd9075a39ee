"""Text-to-speech with OpenAI's speech API (`gpt-4o-mini-tts`, `tts-1`), streamed as raw PCM.

`response_format="pcm"` is 24 kHz 16-bit mono with no header, so the first bytes are audio and
can be played while the rest is still being generated. The API gives no word timings; the
pipeline spreads the sentence's words over its audio in proportion to characters
(`providers.base.estimate_words`), which is good to about a word for barge-in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from openai import AsyncOpenAI

from gateway.backends.providers.base import SpeechChunk

__all__ = ["OpenAITts"]

_CHUNK_BYTES = 4800  # 100 ms at 24 kHz: small enough that the first audio leaves early


class OpenAITts:
    """`TextToSpeech` over `POST /v1/audio/speech`."""

    name = "openai-speech"
    sample_rate = 24000

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str = "gpt-4o-mini-tts",
        *,
        voice: str = "marin",
        speed: float = 1.0,
        instructions: str | None = None,
    ) -> None:
        if not 0.25 <= speed <= 4.0:
            raise ValueError("speed must be between 0.25 and 4.0")
        self.client = client
        self.model = model
        self.voice = voice
        self.speed = speed
        self.instructions = instructions

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        extra: dict[str, Any] = {}
        if self.instructions and not self.model.startswith("tts-1"):
            extra["instructions"] = self.instructions  # tts-1 refuses instructions
        odd = b""
        async with self.client.audio.speech.with_streaming_response.create(
            model=self.model, voice=self.voice, input=text, response_format="pcm", speed=self.speed, **extra
        ) as response:
            async for data in response.iter_bytes(_CHUNK_BYTES):
                data = odd + data
                cut = len(data) // 2 * 2  # keep whole samples; a split one waits for its other byte
                odd = data[cut:]
                if cut:
                    yield SpeechChunk(data[:cut])

    async def aclose(self) -> None:
        pass
