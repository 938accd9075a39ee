"""The three small interfaces a pipeline is built from, and the conversation history they share.

A provider is one per call (the factory builds a fresh set for every call), so it may keep
per-call state; anything expensive it shares (HTTP clients, loaded models) comes from the
factory. Every provider streams, and every stream can be abandoned at any `await`: the pipeline
cancels the task that iterates it on barge-in, so providers release what they hold in `finally`
(HTTP responses, synthesis threads) and never rely on being iterated to the end.

- `SpeechToText` → `SttStream`: one stream per caller utterance, fed PCM while the caller
  speaks (`feed` never blocks), `finish` returns the text once the turn has ended.
- `Agent.respond(history, instructions, tools)` streams `TextDelta`s and `ToolCall`s.
- `TextToSpeech.synthesize(text)` streams `SpeechChunk`s: PCM16 plus, where the engine knows
  them, the audio times at which words start, so the ms the caller heard map back to words.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.backends.base import ToolSpec

# --------------------------------------------------------------------------- history


@dataclass(slots=True)
class Message:
    """A user or assistant message. Assistant messages are cut to what the caller heard."""

    role: Literal["user", "assistant"]
    text: str
    item_id: str = ""
    interrupted: bool = False  # the caller cut this assistant message off; `text` is what they heard


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The agent asked for a tool (also what `Agent.respond` yields for one)."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The output of a tool call, as the call owner sent it back (`SendToolOutput`)."""

    call_id: str
    output: str


HistoryItem = Message | ToolCall | ToolResult

# --------------------------------------------------------------------------- agent output


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the agent's spoken answer, in order."""

    text: str


AgentOutput = TextDelta | ToolCall

# --------------------------------------------------------------------------- speech


@dataclass(frozen=True, slots=True)
class WordTiming:
    """Word `text[start:end]` of the synthesized text begins `audio_ms` into its audio."""

    start: int
    end: int
    audio_ms: float


@dataclass(frozen=True, slots=True)
class SpeechChunk:
    """PCM16 mono at the engine's `sample_rate`; `words` that begin in or before this chunk."""

    pcm: bytes
    words: tuple[WordTiming, ...] = ()


# --------------------------------------------------------------------------- protocols


class SttStream(Protocol):
    """One caller utterance being recognised."""

    def feed(self, pcm: bytes) -> None:
        """More audio of the utterance (PCM16 at the provider's rate). Never blocks."""
        ...

    async def finish(self) -> str:
        """The utterance is over: the final transcript ('' if nothing was recognised)."""
        ...

    async def cancel(self) -> None:
        """Forget the utterance (it was noise, or the call ended)."""
        ...


class SpeechToText(Protocol):
    sample_rate: int
    name: str

    def start(self) -> SttStream:
        """Begin an utterance."""
        ...

    async def aclose(self) -> None: ...


class Agent(Protocol):
    name: str

    def respond(
        self, history: Sequence[HistoryItem], *, instructions: str, tools: Sequence[ToolSpec]
    ) -> AsyncIterator[AgentOutput]:
        """Stream the next assistant turn given everything so far."""
        ...

    async def aclose(self) -> None: ...


class TextToSpeech(Protocol):
    sample_rate: int
    name: str

    def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        """Stream the audio of `text` (one sentence or so)."""
        ...

    async def aclose(self) -> None: ...


def estimate_words(text: str, duration_ms: float) -> tuple[WordTiming, ...]:
    """Word start times for engines that give none: spread over the audio in proportion to
    characters (speech rate is roughly constant per character; good to about a word)."""
    words: list[tuple[int, int]] = []
    start = None
    for i, ch in enumerate(text):
        if ch.isspace():
            if start is not None:
                words.append((start, i))
                start = None
        elif start is None:
            start = i
    if start is not None:
        words.append((start, len(text)))
    if not words:
        return ()
    span = max(1, words[-1][1])
    return tuple(WordTiming(s, e, duration_ms * s / span) for s, e in words)
