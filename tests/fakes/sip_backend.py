"""A scripted model leg for SIP tests: no network, ready at once, records what the call sends.

`ScriptedBackends` is the `backend_factory` handed to `gateway.app.create_app`; each call gets a
`ScriptedBackend` that yields `ModelReady` at once and then whatever the test pushes (model
audio, an `end_call` tool call), and records every `SendAudio` payload (the caller's μ-law as
the call owner passes it to the model) and every other command.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

from gateway.backends.base import Capabilities, SessionConfig
from gateway.commands import AddUserText, ModelCommand, SendAudio
from gateway.events import (
    CallerDtmf,
    ModelAudio,
    ModelAudioDone,
    ModelClosed,
    ModelEvent,
    ModelReady,
    ResponseDone,
    ResponseStarted,
    ToolCallRequested,
)


class ScriptedBackend:
    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.capabilities = Capabilities(
            name="scripted",
            has_vad_events=False,
            can_truncate=False,
            server_cancels_on_speech=False,
            audio_formats=("audio/pcmu",),
        )
        self.audio = bytearray()
        self.frames = 0
        self.commands: list[ModelCommand] = []
        self.closed = asyncio.Event()
        self._queue: asyncio.Queue[ModelEvent | CallerDtmf] = asyncio.Queue()
        self._queue.put_nowait(ModelReady("scripted"))
        self._changed = asyncio.Event()

    async def events(self) -> AsyncIterator[ModelEvent | CallerDtmf]:
        while True:
            event = await self._queue.get()
            yield event
            if isinstance(event, ModelClosed):
                return

    async def send(self, command: ModelCommand) -> None:
        if isinstance(command, SendAudio):
            self.audio += command.payload
            self.frames += 1
        else:
            self.commands.append(command)
        self._changed.set()

    async def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self._queue.put_nowait(ModelClosed("closed"))

    # ------------------------------------------------------------------ scripting

    def push(self, event: ModelEvent) -> None:
        self._queue.put_nowait(event)

    def say(self, ulaw: bytes, *, chunk: int = 1600) -> str:
        """A whole response of μ-law audio, delivered faster than real time."""
        response_id, item_id = f"resp_{uuid.uuid4().hex[:8]}", f"item_{uuid.uuid4().hex[:8]}"
        self.push(ResponseStarted(response_id))
        for i in range(0, len(ulaw), chunk):
            self.push(ModelAudio(response_id, item_id, ulaw[i : i + chunk]))
        self.push(ModelAudioDone(response_id, item_id))
        self.push(ResponseDone(response_id, "completed"))
        return item_id

    def end_call(self) -> None:
        """The model calls the built-in `end_call` tool."""
        self.push(ToolCallRequested(f"call_{uuid.uuid4().hex[:8]}", "end_call", "{}"))

    @property
    def dtmf_texts(self) -> list[str]:
        return [c.text for c in self.commands if isinstance(c, AddUserText)]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


class ScriptedBackends:
    """`backend_factory` for `create_app`: one `ScriptedBackend` per call, kept in order."""

    def __init__(self) -> None:
        self.backends: list[ScriptedBackend] = []
        self._new = asyncio.Event()

    def __call__(self, config: SessionConfig) -> ScriptedBackend:
        backend = ScriptedBackend(config)
        self.backends.append(backend)
        self._new.set()
        return backend

    async def next(self, index: int = 0, timeout: float = 10.0) -> ScriptedBackend:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while len(self.backends) <= index:
                self._new.clear()
                await self._new.wait()
        return self.backends[index]
