"""OpenAI Realtime backend (GA protocol over WebSocket): a thin connector around our codec.

The official SDK opens the socket (auth, URL, `websocket_base_url` for self-hosted or test
servers); we then speak raw JSON through `realtime_codec`, so every server event is parsed at
the edge into our frozen events, and the hot path (50 audio appends a second per call) avoids
the SDK's per-event model validation. No `OpenAI-Beta` header is ever sent: beta-shaped
sessions are refused by the API (protocols.md §0).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import structlog
from openai import AsyncOpenAI

from gateway.backends import realtime_codec
from gateway.backends.base import Capabilities, SessionConfig
from gateway.commands import ModelCommand
from gateway.events import ModelClosed, ModelEvent

log = structlog.get_logger("switchboard.realtime")


class RealtimeBackend:
    """One Realtime session for one call."""

    CONNECT_TIMEOUT_S = 10.0
    MAX_MESSAGE_BYTES = 16 * 1024 * 1024

    def __init__(self, client: AsyncOpenAI, config: SessionConfig) -> None:
        self.client = client
        self.config = config
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

    async def events(self) -> AsyncIterator[ModelEvent]:
        try:
            async with asyncio.timeout(self.CONNECT_TIMEOUT_S):
                manager = self.client.realtime.connect(
                    model=self.config.model,
                    # websockets pings every 20 s and drops the link after 20 s without a
                    # pong by default: that is the keepalive we want. Compression off: audio
                    # does not deflate, and it would cost CPU and latency on every frame.
                    websocket_connection_options={"max_size": self.MAX_MESSAGE_BYTES, "compression": None},
                )
                self._conn = await manager.enter()
                # Configure before anything else is sent: the first audio must already be
                # interpreted in the right format.
                await self._conn.send_raw(realtime_codec.session_update(self.config))
        except Exception as exc:  # connect failures of any kind end the model leg, as data
            log.warning("realtime_connect_failed", error=type(exc).__name__)
            yield ModelClosed("connect_failed")
            return
        log.info("realtime_connected", model=self.config.model)
        while True:
            try:
                data = await self._conn.recv_bytes()
            except Exception as exc:
                code = getattr(getattr(exc, "rcvd", None), "code", None)
                yield ModelClosed("closed" if self._closed else "disconnected", code)
                return
            event = realtime_codec.parse(data)
            if isinstance(event, realtime_codec.Malformed):
                self.malformed += 1
                log.warning("realtime_malformed", reason=event.reason, detail=event.detail)
                continue
            if isinstance(event, realtime_codec.Ignored):
                continue
            yield event

    async def send(self, command: ModelCommand) -> None:
        if self._conn is None or self._closed:
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
