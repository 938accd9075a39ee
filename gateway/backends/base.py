"""What every backend shares: the session it is asked to run, and what it can do.

A backend is a codec (its wire JSON ⇄ `gateway.events`/`gateway.commands`) plus a small async
connector (`BackendLeg`). The call owner reads `Capabilities` to act correctly for each brain,
e.g. it only sends `conversation.item.truncate` where `can_truncate` is true.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    # Only for annotations: commands.py itself uses ToolSpec from here.
    from gateway.commands import ModelCommand
    from gateway.events import CallerDtmf, ModelEvent

AudioFormat = Literal["audio/pcmu", "audio/pcma", "audio/pcm"]


@dataclass(frozen=True, slots=True)
class TurnDetection:
    """Realtime `audio.input.turn_detection` (GA). `type=None` turns server VAD off."""

    type: Literal["server_vad", "semantic_vad"] | None = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    idle_timeout_ms: int | None = None
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    create_response: bool = True
    interrupt_response: bool = True


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function tool as the model sees it (name, description, JSON-schema parameters)."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}, "required": []}
    )


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Everything a Realtime-style session needs; serialized by each backend's codec."""

    model: str = "gpt-realtime"
    instructions: str = "You are a helpful phone assistant. Keep answers short."
    voice: str = "marin"
    speed: float = 1.0
    input_format: AudioFormat = "audio/pcmu"
    output_format: AudioFormat = "audio/pcmu"
    turn_detection: TurnDetection = field(default_factory=TurnDetection)
    transcription_model: str | None = "gpt-4o-mini-transcribe"
    transcription_language: str | None = None
    noise_reduction: Literal["near_field", "far_field"] | None = "near_field"
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "auto"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do; the call owner branches on these, never on the backend's type."""

    name: str
    has_vad_events: bool = True
    can_truncate: bool = True
    server_cancels_on_speech: bool = True
    mutable_instructions: bool = True
    tools_on_voice_model: bool = True
    audio_formats: tuple[AudioFormat, ...] = ("audio/pcmu",)


class BackendLeg(Protocol):
    """The model side of one call, as the runner sees it."""

    capabilities: Capabilities

    def events(self) -> AsyncIterator[ModelEvent | CallerDtmf]:
        """Yield model events until the leg is gone; the last one is `ModelClosed`. A backend
        whose model hears the keypad itself (OpenAI SIP's sideband) may yield `CallerDtmf`."""
        ...

    async def send(self, command: ModelCommand) -> None:
        """Carry out one model command; never raises for a closed leg (the reader reports it)."""
        ...

    async def close(self) -> None:
        """Close the leg; idempotent."""
        ...
