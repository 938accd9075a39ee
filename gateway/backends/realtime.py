"""OpenAI Realtime backend (GA protocol over WebSocket): a thin connector around our codec.

The official SDK opens the socket (auth, URL, `websocket_base_url` for self-hosted or test
servers); we then speak raw JSON through `realtime_codec`, so every server event is parsed at
the edge into our frozen events, and the hot path (50 audio appends a second per call) avoids
the SDK's per-event model validation. No `OpenAI-Beta` header is ever sent: beta-shaped
sessions are refused by the API (protocols.md §0).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import structlog
from openai import AsyncOpenAI
from openai.types.websocket_connection_options import WebSocketConnectionOptions

from gateway.backends import realtime_codec
from gateway.backends.base import Capabilities, SessionConfig
from gateway.commands import ModelCommand, SendAudio, UpdateSession
from gateway.events import (
    CallerDtmf,
    ModelClosed,
    ModelError,
    ModelEvent,
    ModelReady,
    ResponseDone,
    ResponseStarted,
    Transcript,
)

log = structlog.get_logger("switchboard.realtime")


class RealtimeBackend:
    """One Realtime session for one call."""

    CONNECT_TIMEOUT_S = 10.0
    HISTORY_TURNS = 20
    HOLD_AUDIO_MS = 1000
    MAX_MESSAGE_BYTES = 16 * 1024 * 1024

    def __init__(self, client: AsyncOpenAI, config: SessionConfig, call_id: str | None = None) -> None:
        self.client = client
        self.config = config
        # With a call_id this is the sideband of a call OpenAI already answered over SIP
        # (protocols.md §2 "Sideband"): the session was configured by the accept request.
        self.call_id = call_id
        self.capabilities = Capabilities(
            name="realtime",
            has_vad_events=config.turn_detection.type is not None,
            can_truncate=True,
            server_cancels_on_speech=config.turn_detection.interrupt_response,
            mutable_instructions=True,
            tools_on_voice_model=True,
            audio_formats=("audio/pcmu", "audio/pcma", "audio/pcm"),
        )
        self._conn: Any = None
        self._closed = False
        self.malformed = 0
        self.reconnects = 0
        self.response_id = ""
        self._reconnecting = False
        # What a new session needs if the socket drops: the last turns as text, and the caller
        # audio that arrived while reconnecting (bounded, about a second).
        self._history: deque[tuple[str, str]] = deque(maxlen=self.HISTORY_TURNS)
        self._held_audio: deque[bytes] = deque()
        self._held_ms = 0.0

    async def _connect(self) -> bool:
        """Open the socket and configure the session; False (logged) if that fails."""
        # websockets pings every 20 s and drops the link after 20 s without a pong by default:
        # that is the keepalive we want. Compression off: audio does not deflate, and it would
        # cost CPU and latency on every frame.
        options: WebSocketConnectionOptions = {"max_size": self.MAX_MESSAGE_BYTES, "compression": None}
        try:
            async with asyncio.timeout(self.CONNECT_TIMEOUT_S):
                if self.call_id is None:
                    manager = self.client.realtime.connect(
                        model=self.config.model, websocket_connection_options=options
                    )
                else:
                    # `?call_id=…` and no model: it was fixed at accept (protocols.md §2).
                    manager = self.client.realtime.connect(
                        call_id=self.call_id, websocket_connection_options=options
                    )
                self._conn = await manager.enter()
                if self.call_id is None:
                    # Configure before anything else is sent: the first audio must already be
                    # interpreted in the right format.
                    await self._conn.send_raw(realtime_codec.session_update(self.config))
                # A sideband sends no session.update: the accept body carried the whole session,
                # SIP negotiated the codec (protocols.md §2 says omit audio.*.format), and an
                # update here could only repeat the accept or race the greeting.
        except Exception as exc:  # connect failures of any kind end the model leg, as data
            log.warning("realtime_connect_failed", error=type(exc).__name__)
            self._conn = None
            return False
        log.info("realtime_connected", model=self.config.model, sideband=self.call_id is not None)
        return True

    async def _restore(self) -> None:
        """After a reconnect: give the new session the conversation so far, as text items
        (bridge-rules.md, "Failures": restore instructions, tools and recent history)."""
        for role, text in self._history:
            part = "input_text" if role == "user" else "output_text"
            item = {"type": "message", "role": role, "content": [{"type": part, "text": text}]}
            await self._conn.send_raw(json.dumps({"type": "conversation.item.create", "item": item}))
        for payload in self._held_audio:
            await self._conn.send_raw(realtime_codec.encode(SendAudio(payload)))
        self._held_audio.clear()
        self._held_ms = 0.0

    async def events(self) -> AsyncIterator[ModelEvent | CallerDtmf]:
        if not await self._connect():
            yield ModelClosed("connect_failed")
            return
        if self.call_id is not None:
            # The session exists since the accept returned 200; do not hang the call on a
            # `session.created` the sideband is not documented to send.
            yield ModelReady(session_id=self.call_id)
        while True:
            code: int | None = None
            async for event in self._read():
                if isinstance(event, int):
                    code = event
                    break
                yield event
            if self._closed:
                yield ModelClosed("closed", code)
                return
            # The model socket dropped under a live call. That is not the caller's problem: try
            # once to get a new session within about a second, with the conversation restored.
            self._reconnecting = True
            if self.response_id:
                # The cut response will never finish on its own: say so, so the call owner
                # does not wait for it forever.
                yield ResponseDone(self.response_id, "failed", None, "model_disconnected")
                self.response_id = ""
            if self.call_id is not None or not await self._connect():
                yield ModelClosed("disconnected", code)
                return
            await self._restore()
            self._reconnecting = False
            self.reconnects += 1
            yield ModelError(
                "reconnected", "the model connection dropped; a new session took over", "gateway"
            )

    async def _read(self) -> AsyncIterator[ModelEvent | CallerDtmf | int]:
        """Parsed events until the socket goes; then its close code (an int) or None."""
        while True:
            try:
                data = await self._conn.recv_bytes()
            except Exception as exc:
                yield getattr(getattr(exc, "rcvd", None), "code", None) or 0
                return
            event = realtime_codec.parse(data)
            if isinstance(event, realtime_codec.Malformed):
                self.malformed += 1
                log.warning("realtime_malformed", reason=event.reason, detail=event.detail)
                continue
            if isinstance(event, realtime_codec.Ignored):
                continue
            if self.call_id is not None and isinstance(event, ModelReady):
                continue  # already announced at connect
            if isinstance(event, ResponseStarted):
                self.response_id = event.response_id
            elif isinstance(event, ResponseDone):
                self.response_id = ""
            elif isinstance(event, Transcript) and event.final and event.text:
                self._history.append((event.role, event.text))
            yield event

    async def send(self, command: ModelCommand) -> None:
        if isinstance(command, UpdateSession):
            # A handoff: a reconnected session must get the new agent, not the first one.
            self.config = replace(self.config, instructions=command.instructions, tools=command.tools)
        if self._reconnecting and isinstance(command, SendAudio):
            self._held_audio.append(command.payload)
            self._held_ms += len(command.payload) / 8
            while self._held_ms > self.HOLD_AUDIO_MS:
                self._held_ms -= len(self._held_audio.popleft()) / 8
            return
        if self._conn is None or self._closed or self._reconnecting:
            return
        try:
            await self._conn.send_raw(realtime_codec.encode(command))
        except Exception:
            # The reader sees the closed socket and reports it; nothing to do here.
            log.debug("realtime_send_failed", command=type(command).__name__)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._conn is not None:
            try:
                await self._conn.close()
            except Exception:
                log.debug("realtime_close_failed")
