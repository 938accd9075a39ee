"""A local OpenAI Realtime server (GA protocol) for end-to-end tests.

It is a real `websockets.asyncio.server` on 127.0.0.1, so the gateway under test talks to it
through the official SDK exactly as in production::

    async with FakeRealtimeServer() as server:
        client = AsyncOpenAI(api_key="test", base_url=server.http_url, websocket_base_url=server.url)
        async with client.realtime.connect(model="gpt-realtime") as conn: ...

The SDK appends `/realtime` to `websocket_base_url` and adds `?model=…` (openai-python
`AsyncRealtimeConnectionManager._prepare_url`), so `server.url` is `ws://127.0.0.1:PORT/v1`
and the server accepts only `/v1/realtime`.

What it imitates (protocols.md §3, openai-python `types/realtime/*`):

- handshake: `Authorization: Bearer …` required (HTTP 401 otherwise); an `OpenAI-Beta`
  header gets close `4000 beta_api_shape_disabled` like the real API since 2026-05
  (protocols.md §0); then `session.created` with a full GA session object;
- `session.update` is checked for the GA shape (beta/unknown keys → an `error` event, e.g.
  `unknown_parameter`, and the update is not applied), merged, and answered by
  `session.updated` with the full effective session;
- `conversation.item.truncate` → `conversation.item.truncated` (error for an unknown item or
  an end past the audio sent), `conversation.item.create` → `conversation.item.added`/`.done`,
  `response.cancel` → the scripted response stops with `response.done` `cancelled`
  (`client_cancelled`), or error `response_cancel_not_active` if none is active;
- `speech_started()` with `interrupt_response: true` cancels the in-flight response itself
  (`turn_detected`), as the real server does (bridge-rules.md "Playback and barge-in").

It never invents responses: tests script them (`respond_audio`, `function_call`), if need be
from the `on_response_create` hook. Error codes marked "fake" are this fake's choice where the
real one is undocumented.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

__all__ = ["FakeRealtimeServer", "ReceivedEvent"]

JSON = dict[str, Any]

# GA session fields a client may send (openai-python RealtimeSessionCreateRequestParam).
# Anything else, notably the beta flat fields, is refused.
_SESSION_KEYS = frozenset(
    {
        "type",
        "model",
        "instructions",
        "output_modalities",
        "audio",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "include",
        "prompt",
        "tracing",
        "truncation",
        "reasoning",
        "parallel_tool_calls",
    }
)
_AUDIO_KEYS = {
    "input": frozenset({"format", "noise_reduction", "transcription", "turn_detection"}),
    "output": frozenset({"format", "voice", "speed"}),
}
_FORMAT_TYPES = frozenset({"audio/pcm", "audio/pcmu", "audio/pcma"})
# protocols.md §3 "server_vad" / "semantic_vad" defaults; the server fills in what is omitted.
_VAD_DEFAULTS: dict[str, JSON] = {
    "server_vad": {
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    },
    "semantic_vad": {"eagerness": "auto", "create_response": True, "interrupt_response": True},
}


@dataclass(slots=True)
class ReceivedEvent:
    """One client event as the fake received it."""

    event: JSON
    at: float
    """`time.monotonic()` on arrival."""
    connection: int
    """1-based number of the session it arrived on."""


@dataclass(eq=False, slots=True)
class _Stream:
    """An audio response being streamed by a background task."""

    response_id: str
    item_id: str
    stop_reason: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


@dataclass(eq=False, slots=True)
class _Conn:
    ws: ServerConnection
    number: int
    model: str
    session: JSON
    stream: _Stream | None = None
    audio_in_bytes: int = 0
    assistant_audio_sent: bool = False
    item_audio_ms: dict[str, int] = field(default_factory=dict)
    last_item_id: str | None = None
    user_item_id: str | None = None
    closed: bool = False

    @property
    def gone(self) -> bool:
        return self.closed or self.ws.state is not State.OPEN


class FakeRealtimeServer:
    """GA Realtime server on 127.0.0.1:<free port>; use as `async with FakeRealtimeServer() as s`.

    Script methods act on the latest open session, waiting up to 5 s for one to exist.
    """

    def __init__(
        self,
        *,
        on_response_create: Callable[[JSON], Awaitable[None]] | None = None,
        max_size: int = 16 * 1024 * 1024,
    ) -> None:
        self.on_response_create = on_response_create
        """Run as a task with each client `response.create` (when no response is active).
        It may call `respond_audio`/`function_call`; it must not wait for client events."""
        self._max_size = max_size

        self.records: list[ReceivedEvent] = []
        self.received: list[JSON] = []
        """Every client event, parsed, in arrival order (parallel to `records`)."""
        self.audio_in = bytearray()
        """Decoded concatenation of every `input_audio_buffer.append` (all sessions)."""
        self.connections = 0
        """Sessions established (handshake accepted and `session.created` sent)."""
        self.api_keys: list[str] = []
        self.models: list[str | None] = []
        self.paths: list[str] = []
        self.request_headers: list[dict[str, str]] = []
        self.rejections: list[str] = []
        """`not_found`, `unauthorized` or `beta_api_shape_disabled`, one per refused attempt."""
        self.truncates: list[JSON] = []
        self.cancels: list[JSON] = []
        self.errors_sent: list[JSON] = []
        """Every `error` event sent; a test can assert it stays empty."""
        self.invalid_frames: list[str | bytes] = []
        self.failures: list[BaseException] = []
        """Exceptions in hooks or in the fake itself; `__aexit__` re-raises the first."""

        self._server: Server | None = None
        self._conns: list[_Conn] = []
        self._changed = asyncio.Condition()
        self._consumed: set[int] = set()
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self._responses: dict[str, asyncio.Future[str]] = {}
        self._counters: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeRealtimeServer:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._process_request, max_size=self._max_size
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
        if exc is None and self.failures:
            raise RuntimeError(f"FakeRealtimeServer: {len(self.failures)} failure(s)") from self.failures[0]

    async def close(self) -> None:
        """Stop serving: cancel hooks, close open sessions with 1001, end streams. Idempotent."""
        for task in list(self._hook_tasks):
            task.cancel()
        await asyncio.gather(*self._hook_tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for conn in self._conns:
            await self._abandon_stream(conn)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeRealtimeServer is not started (use `async with`)")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """`websocket_base_url` for the SDK: `ws://127.0.0.1:PORT/v1`."""
        return f"ws://127.0.0.1:{self.port}/v1"

    @property
    def http_url(self) -> str:
        """A `base_url` for the SDK that keeps any stray HTTP request on loopback (it fails)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def open_connections(self) -> int:
        """Sessions currently open (a closed or dropped one no longer counts)."""
        return sum(1 for conn in self._conns if not conn.gone)

    @property
    def session(self) -> JSON:
        """The effective session of the latest connection (after merging `session.update`s)."""
        return self._conns[-1].session if self._conns else {}

    # ------------------------------------------------------------------ waiting

    def mark(self) -> int:
        """Index of the next client event; pass it as `since=` to look only at later events."""
        return len(self.received)

    async def wait_for(
        self,
        type: str,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - every wait is bounded and says what it missed
        predicate: Callable[[JSON], bool] | None = None,
        since: int = 0,
    ) -> JSON:
        """The first client event of `type` (matching `predicate`, at index ≥ `since`) that no
        earlier `wait_for` returned. Already-received events count, so there is no race with
        the client; each event is returned once, so repeated calls walk through repeats."""

        def find() -> int | None:
            for i in range(since, len(self.received)):
                event = self.received[i]
                if (
                    event["type"] == type
                    and i not in self._consumed
                    and (predicate is None or predicate(event))
                ):
                    return i
            return None

        index: int | None = None
        try:
            async with asyncio.timeout(timeout), self._changed:
                while (index := find()) is None:
                    await self._changed.wait()
        except TimeoutError:
            seen = [event["type"] for event in self.received[since:]][-20:]
            raise TimeoutError(f"no client {type!r} within {timeout}s; last received: {seen}") from None
        self._consumed.add(index)
        return self.received[index]

    async def wait_for_audio(self, n_bytes: int, *, timeout: float = 5.0) -> bytes:  # noqa: ASYNC109
        """Wait until `audio_in` holds at least `n_bytes`; returns a copy of all of it."""
        await self._wait_until(lambda: len(self.audio_in) >= n_bytes, timeout, f"{n_bytes} audio bytes")
        return bytes(self.audio_in)

    async def wait_connected(self, *, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await self._current(timeout)

    async def wait_response(self, response_id: str, *, timeout: float = 5.0) -> str:  # noqa: ASYNC109
        """Wait until a `respond_audio` response is over: `completed`, `cancelled` or `dropped`."""
        async with asyncio.timeout(timeout):
            return await asyncio.shield(self._responses[response_id])

    # ------------------------------------------------------------------ script API

    async def send(self, event: JSON) -> None:
        """Send a server event as given (an `event_id` is added if missing)."""
        await self._send(await self._current(), event)

    async def send_raw(self, data: str | bytes) -> None:
        """Send one frame verbatim (malformed-input tests)."""
        await (await self._current()).ws.send(data)

    async def respond_audio(
        self,
        audio: bytes,
        *,
        chunk_ms: int = 100,
        bytes_per_ms: int = 8,
        pace: float = 0.0,
        transcript: str = "",
        usage: JSON | None = None,
    ) -> tuple[str, str]:
        """Start an assistant audio response; returns `(response_id, item_id)` right away.

        `response.created`, `response.output_item.added`, `conversation.item.added` and
        `response.content_part.added` are sent before returning; the audio deltas
        (`chunk_ms * bytes_per_ms` bytes each: 8 bytes/ms is μ-law 8 kHz, 48 is PCM 24 kHz),
        interleaved transcript deltas and the closing events stream from a background task.
        `pace` scales real time between chunks: 0 = as fast as possible (still yielding to
        the event loop, so a cancel can land), 1.0 = real time, 0.5 = twice as fast.
        `usage` replaces the computed `response.done` usage.
        """
        conn = await self._current()
        self._check_idle(conn)
        rid, iid = self._id("resp"), self._id("item")
        stream = _Stream(rid, iid)
        conn.stream = stream  # in flight from here on: speech_started()/response.cancel stop it
        self._responses[rid] = asyncio.get_running_loop().create_future()
        conn.item_audio_ms[iid] = 0
        item: JSON = {
            "id": iid,
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        previous, conn.last_item_id = conn.last_item_id, iid
        await self._emit(conn, "response.created", response=self._response(rid))
        await self._emit(conn, "response.output_item.added", response_id=rid, output_index=0, item=item)
        await self._emit(conn, "conversation.item.added", previous_item_id=previous, item=item)
        part = {"type": "audio", "transcript": ""}
        await self._emit(
            conn,
            "response.content_part.added",
            response_id=rid,
            item_id=iid,
            output_index=0,
            content_index=0,
            part=part,
        )
        stream.task = asyncio.create_task(
            self._stream_audio(conn, stream, audio, max(1, chunk_ms), bytes_per_ms, pace, transcript, usage),
            name=f"fake-realtime-{rid}",
        )
        return rid, iid

    async def function_call(self, name: str, arguments: JSON, *, usage: JSON | None = None) -> str:
        """Emit a whole function-call response (through `response.done`); returns its `call_id`."""
        conn = await self._current()
        self._check_idle(conn)
        rid, iid, call_id = self._id("resp"), self._id("item"), self._id("call")
        args = json.dumps(arguments)
        item: JSON = {
            "id": iid,
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "name": name,
            "call_id": call_id,
            "arguments": "",
        }
        done_item = item | {"status": "completed", "arguments": args}
        previous, conn.last_item_id = conn.last_item_id, iid
        where = {"response_id": rid, "item_id": iid, "output_index": 0, "call_id": call_id}
        await self._emit(conn, "response.created", response=self._response(rid))
        await self._emit(conn, "response.output_item.added", response_id=rid, output_index=0, item=item)
        await self._emit(conn, "conversation.item.added", previous_item_id=previous, item=item)
        await self._emit(conn, "response.function_call_arguments.delta", **where, delta=args)
        await self._emit(conn, "response.function_call_arguments.done", **where, name=name, arguments=args)
        await self._emit(conn, "conversation.item.done", previous_item_id=previous, item=done_item)
        await self._emit(conn, "response.output_item.done", response_id=rid, output_index=0, item=done_item)
        usage = usage or self._usage(conn, out_audio_ms=0, out_text=len(args) // 4 + 1)
        body = self._response(rid, status="completed", output=[done_item], usage=usage)
        await self._emit(conn, "response.done", response=body)
        return call_id

    async def speech_started(self, *, audio_start_ms: int | None = None, item_id: str | None = None) -> str:
        """Emit `input_audio_buffer.speech_started`; returns the user item id.

        With `interrupt_response` true in the session's turn detection, an in-flight response is
        then cancelled by the server itself (`response.done` cancelled, reason `turn_detected`),
        and this returns once that `response.done` is sent. `audio_start_ms` defaults to the
        input audio received so far on this session, in its input format.
        """
        conn = await self._current()
        item_id = conn.user_item_id = item_id or self._id("item")
        start = self._input_ms(conn) if audio_start_ms is None else audio_start_ms
        await self._emit(conn, "input_audio_buffer.speech_started", audio_start_ms=start, item_id=item_id)
        turn_detection = conn.session["audio"]["input"]["turn_detection"]
        if turn_detection and turn_detection.get("interrupt_response") and conn.stream is not None:
            await self._stop_stream(conn, "turn_detected")
        return item_id

    async def speech_stopped(self, *, audio_end_ms: int | None = None, item_id: str | None = None) -> str:
        """Emit `speech_stopped`, `input_audio_buffer.committed` and the user item's
        `conversation.item.added`/`.done`; returns the item id. No response is created."""
        conn = await self._current()
        item_id = item_id or conn.user_item_id or self._id("item")
        conn.user_item_id = None
        end = self._input_ms(conn) if audio_end_ms is None else audio_end_ms
        await self._emit(conn, "input_audio_buffer.speech_stopped", audio_end_ms=end, item_id=item_id)
        previous, conn.last_item_id = conn.last_item_id, item_id
        await self._emit(conn, "input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        await self._emit(conn, "conversation.item.added", previous_item_id=previous, item=item)
        await self._emit(conn, "conversation.item.done", previous_item_id=previous, item=item)
        return item_id

    async def user_transcript(self, text: str, *, item_id: str | None = None) -> str:
        """Emit input transcription `.delta` and `.completed` (default: the last item); returns its id."""
        conn = await self._current()
        item_id = item_id or conn.last_item_id or self._id("item")
        where = {"item_id": item_id, "content_index": 0}
        await self._emit(conn, "conversation.item.input_audio_transcription.delta", **where, delta=text)
        usage = {"type": "duration", "seconds": max(1, len(text) // 12)}
        await self._emit(
            conn,
            "conversation.item.input_audio_transcription.completed",
            **where,
            transcript=text,
            usage=usage,
        )
        return item_id

    async def drop(self, *, abrupt: bool = True) -> None:
        """Kill the current session: `abrupt` aborts the TCP connection (the client sees 1006),
        otherwise it is closed with 1011. A stream in flight just stops."""
        conn = await self._current()
        conn.closed = True
        if abrupt:
            conn.ws.transport.abort()
        else:
            await conn.ws.close(1011, "internal error")
        await self._abandon_stream(conn)

    # ------------------------------------------------------------------ connections

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path.rstrip("/") != "/v1/realtime":
            self.rejections.append("not_found")
            return connection.respond(HTTPStatus.NOT_FOUND, "Not found\n")
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            self.rejections.append("unauthorized")
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Missing bearer authentication in header\n")
        self.api_keys.append(key.strip())
        self.models.append(parse_qs(parts.query).get("model", [None])[0])
        self.paths.append(request.path)
        self.request_headers.append(dict(request.headers.raw_items()))
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        if ws.request is not None and "OpenAI-Beta" in ws.request.headers:
            # protocols.md §0: beta-shaped sessions are closed since 2026-05-12.
            self.rejections.append("beta_api_shape_disabled")
            await ws.close(4000, "beta_api_shape_disabled")
            return
        self.connections += 1
        model = self.models[-1] or "gpt-realtime"
        conn = _Conn(ws, self.connections, model, self._default_session(model))
        self._conns.append(conn)
        try:
            await self._emit(conn, "session.created", session=copy.deepcopy(conn.session))
            await self._notify()
            # Sends never raise (see _send), so every frame the client got out before
            # closing is still received and recorded.
            async for message in ws:
                await self._on_message(conn, message)
        except ConnectionClosed:
            pass
        except Exception as exc:  # a bug in the fake or a hook must fail the test, not hang it
            self.failures.append(exc)
            await ws.close(1011, "fake server failure")
        finally:
            conn.closed = True
            await self._abandon_stream(conn)
            await self._notify()

    async def _on_message(self, conn: _Conn, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.invalid_frames.append(message)
            await self._error(conn, None, "invalid_json", "The server could not parse the event.")
            return
        self.records.append(ReceivedEvent(event, time.monotonic(), conn.number))
        self.received.append(event)
        try:
            await self._dispatch(conn, event)
        finally:
            await self._notify()

    async def _dispatch(self, conn: _Conn, event: JSON) -> None:
        kind, client_id = event["type"], event.get("event_id")
        if kind == "input_audio_buffer.append":
            audio = event.get("audio")
            try:
                decoded = binascii.a2b_base64(audio, strict_mode=True) if isinstance(audio, str) else None
            except ValueError:
                decoded = None
            if decoded is None:
                await self._error(conn, client_id, "invalid_value", "Invalid base64 audio.", "audio")
                return
            self.audio_in += decoded
            conn.audio_in_bytes += len(decoded)
        elif kind == "session.update":
            await self._session_update(conn, event)
        elif kind == "conversation.item.truncate":
            self.truncates.append(event)
            await self._truncate(conn, event)
        elif kind == "response.cancel":
            self.cancels.append(event)
            wanted = event.get("response_id")
            if conn.stream is None or (wanted and wanted != conn.stream.response_id):
                message = "Cancellation failed: no active response found."
                await self._error(conn, client_id, "response_cancel_not_active", message)
            else:
                await self._stop_stream(conn, "client_cancelled")
        elif kind == "response.create":
            if conn.stream is not None:
                message = (
                    f"Conversation already has an active response in progress: {conn.stream.response_id}."
                )
                await self._error(conn, client_id, "conversation_already_has_active_response", message)
            elif self.on_response_create is not None:
                task = asyncio.create_task(self._run_hook(self.on_response_create, event))
                self._hook_tasks.add(task)
                task.add_done_callback(self._hook_tasks.discard)
        elif kind == "conversation.item.create":
            item = event.get("item")
            if not isinstance(item, dict):
                await self._error(conn, client_id, "missing_required_parameter", "Missing 'item'.", "item")
                return
            item = {"id": self._id("item"), "object": "realtime.item", "status": "completed", **item}
            previous, conn.last_item_id = conn.last_item_id, item["id"]
            await self._emit(conn, "conversation.item.added", previous_item_id=previous, item=item)
            await self._emit(conn, "conversation.item.done", previous_item_id=previous, item=item)
        elif kind == "input_audio_buffer.commit":
            item_id = self._id("item")
            previous, conn.last_item_id = conn.last_item_id, item_id
            await self._emit(conn, "input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        elif kind == "input_audio_buffer.clear":
            await self._emit(conn, "input_audio_buffer.cleared")
        elif kind in ("output_audio_buffer.clear", "conversation.item.delete", "conversation.item.retrieve"):
            pass  # recorded; a WS-only test needs nothing back
        else:
            await self._error(conn, client_id, "invalid_value", f"Invalid value: '{kind}'.", "type")

    async def _session_update(self, conn: _Conn, event: JSON) -> None:
        update = event.get("session")
        problem = self._check_session(conn, update)
        if problem is not None:
            await self._error(conn, event.get("event_id"), *problem)
            return
        assert isinstance(update, dict)
        merged = copy.deepcopy(conn.session)
        for key, value in update.items():
            if key != "audio":
                merged[key] = copy.deepcopy(value)
                continue
            # audio.input/output are merged per setting; each setting is replaced whole
            # (a new format object must not inherit the old one's `rate`).
            for side, settings in value.items():
                for name, setting in settings.items():
                    if name == "turn_detection" and setting is not None:
                        setting = _VAD_DEFAULTS[setting["type"]] | setting
                    merged["audio"][side][name] = copy.deepcopy(setting)
        conn.session = merged
        await self._emit(conn, "session.updated", session=copy.deepcopy(merged))

    def _check_session(self, conn: _Conn, update: object) -> tuple[str, str, str] | None:
        """GA shape check (protocols.md §3); (code, message, param) of the first problem."""
        if not isinstance(update, dict):
            return ("missing_required_parameter", "Missing required parameter: 'session'.", "session")
        if update.get("type") != "realtime":
            return (
                "missing_required_parameter",
                "Missing required parameter: 'session.type'.",
                "session.type",
            )
        for key in update:
            if key not in _SESSION_KEYS:
                return ("unknown_parameter", f"Unknown parameter: 'session.{key}'.", f"session.{key}")
        if "model" in update and update["model"] != conn.model:
            # fake: the model is fixed by the connect URL (protocols.md §3).
            return ("invalid_value", "The model cannot be changed in session.update.", "session.model")
        audio = update.get("audio", {})
        if not isinstance(audio, dict):
            return ("invalid_type", "Invalid type for 'session.audio'.", "session.audio")
        for side, settings in audio.items():
            param = f"session.audio.{side}"
            if side not in _AUDIO_KEYS:
                return ("unknown_parameter", f"Unknown parameter: '{param}'.", param)
            if not isinstance(settings, dict):
                return ("invalid_type", f"Invalid type for '{param}'.", param)
            for name, value in settings.items():
                param = f"session.audio.{side}.{name}"
                if name not in _AUDIO_KEYS[side]:
                    return ("unknown_parameter", f"Unknown parameter: '{param}'.", param)
                if name == "format" and not (
                    isinstance(value, dict)
                    and value.get("type") in _FORMAT_TYPES
                    and value.get("rate", 24000) == 24000
                ):
                    # Beta format strings ("g711_ulaw") land here.
                    return ("invalid_type", f"Invalid value for '{param}': expected a format object.", param)
                if name == "turn_detection" and not (
                    value is None or (isinstance(value, dict) and value.get("type") in _VAD_DEFAULTS)
                ):
                    return ("invalid_value", f"Invalid value for '{param}'.", param)
                if (
                    name == "voice"
                    and conn.assistant_audio_sent
                    and value != conn.session["audio"]["output"]["voice"]
                ):
                    # protocols.md §3: the voice can change only before the first audio output.
                    message = "Cannot update a conversation's voice if assistant audio is present."
                    return ("cannot_update_voice", message, param)
        return None

    async def _truncate(self, conn: _Conn, event: JSON) -> None:
        client_id, item_id, end = event.get("event_id"), event.get("item_id"), event.get("audio_end_ms")
        if not isinstance(end, int) or isinstance(end, bool) or end < 0:
            await self._error(conn, client_id, "invalid_type", "Invalid 'audio_end_ms'.", "audio_end_ms")
        elif not isinstance(item_id, str) or item_id not in conn.item_audio_ms:
            # fake code; the real server refuses unknown items too.
            await self._error(conn, client_id, "item_not_found", f"Item '{item_id}' not found.", "item_id")
        elif end > conn.item_audio_ms[item_id]:
            message = f"Audio content of {conn.item_audio_ms[item_id]}ms is already shorter than {end}ms"
            await self._error(conn, client_id, "invalid_value", message, "audio_end_ms")
        else:
            conn.item_audio_ms[item_id] = end
            content_index = event.get("content_index", 0)
            await self._emit(
                conn,
                "conversation.item.truncated",
                item_id=item_id,
                content_index=content_index,
                audio_end_ms=end,
            )

    # ------------------------------------------------------------------ streaming

    async def _stream_audio(
        self,
        conn: _Conn,
        stream: _Stream,
        audio: bytes,
        chunk_ms: int,
        bytes_per_ms: int,
        pace: float,
        transcript: str,
        usage: JSON | None,
    ) -> None:
        rid, iid = stream.response_id, stream.item_id
        where = {"response_id": rid, "item_id": iid, "output_index": 0, "content_index": 0}
        step = chunk_ms * bytes_per_ms
        chunks = [audio[i : i + step] for i in range(0, len(audio), step)]
        words = transcript.split(" ") if transcript else []
        said: list[str] = []
        sent = 0
        status = "dropped"
        try:
            for n, chunk in enumerate(chunks):
                if stream.stop_reason is not None or conn.gone:
                    break
                # Spread the transcript over the audio, as the real server interleaves them.
                share = words[len(words) * n // len(chunks) : len(words) * (n + 1) // len(chunks)]
                if share:
                    said.append((" " if said else "") + " ".join(share))
                    await self._emit(conn, "response.output_audio_transcript.delta", **where, delta=said[-1])
                await self._emit(
                    conn, "response.output_audio.delta", **where, delta=base64.b64encode(chunk).decode()
                )
                conn.assistant_audio_sent = True
                sent += len(chunk)
                conn.item_audio_ms[iid] = sent // bytes_per_ms
                if pace > 0:
                    try:  # paced like playback; a stop request wakes us at once
                        async with asyncio.timeout(chunk_ms / 1000 * pace):
                            await stream.wake.wait()
                    except TimeoutError:
                        pass
                else:
                    await asyncio.sleep(0)  # let response.cancel / speech_started interleave
            if conn.gone:
                return
            # A stopped response still closes its item, part and response (status cancelled).
            cancelled = stream.stop_reason is not None
            text = "".join(said) if cancelled else transcript
            await self._emit(conn, "response.output_audio.done", **where)
            await self._emit(conn, "response.output_audio_transcript.done", **where, transcript=text)
            await self._emit(
                conn, "response.content_part.done", **where, part={"type": "audio", "transcript": text}
            )
            item: JSON = {
                "id": iid,
                "object": "realtime.item",
                "type": "message",
                "status": "incomplete" if cancelled else "completed",
                "role": "assistant",
                "content": [{"type": "output_audio", "transcript": text}],
            }
            await self._emit(conn, "conversation.item.done", item=item)
            await self._emit(conn, "response.output_item.done", response_id=rid, output_index=0, item=item)
            status = "cancelled" if cancelled else "completed"
            details = {"type": "cancelled", "reason": stream.stop_reason} if cancelled else None
            usage = usage or self._usage(conn, out_audio_ms=sent // bytes_per_ms, out_text=len(said) * 2)
            body = self._response(rid, status=status, status_details=details, output=[item], usage=usage)
            # Idle *before* the client can see response.done, so a response.create sent in
            # reaction to it is not refused as concurrent.
            conn.stream = None
            await self._emit(conn, "response.done", response=body)
        finally:
            if conn.stream is stream:
                conn.stream = None
            future = self._responses[rid]
            if not future.done():
                future.set_result(status)

    async def _stop_stream(self, conn: _Conn, reason: str) -> None:
        """End the in-flight stream as `cancelled`; returns once its `response.done` is sent."""
        stream = conn.stream
        if stream is None or stream.task is None:
            return
        stream.stop_reason = reason
        stream.wake.set()
        await asyncio.shield(stream.task)

    async def _abandon_stream(self, conn: _Conn) -> None:
        """The session is gone: end its stream task without sending anything more."""
        stream = conn.stream
        if stream is not None and stream.task is not None:
            stream.task.cancel()
            await asyncio.gather(stream.task, return_exceptions=True)

    async def _run_hook(self, hook: Callable[[JSON], Awaitable[None]], event: JSON) -> None:
        try:
            await hook(event)
        except Exception as exc:
            self.failures.append(exc)

    # ------------------------------------------------------------------ helpers

    def _check_idle(self, conn: _Conn) -> None:
        # The real server allows one active response per conversation; a script asking for
        # a second one is a bug in the test.
        if conn.stream is not None:
            raise RuntimeError(f"response {conn.stream.response_id} is still in flight")

    async def _current(self, within: float = 5.0) -> _Conn:
        def latest() -> _Conn | None:
            return next((conn for conn in reversed(self._conns) if not conn.gone), None)

        await self._wait_until(lambda: latest() is not None, within, "open session")
        conn = latest()
        assert conn is not None
        return conn

    async def _wait_until(self, ready: Callable[[], bool], within: float, what: str) -> None:
        try:
            async with asyncio.timeout(within), self._changed:
                await self._changed.wait_for(ready)
        except TimeoutError:
            raise TimeoutError(f"FakeRealtimeServer: no {what} within {within}s") from None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _emit(self, conn: _Conn, type: str, **fields: Any) -> None:
        await self._send(conn, {"type": type, **fields})

    async def _send(self, conn: _Conn, event: JSON) -> None:
        """Send one event; a closed session swallows it, like a socket the peer has left."""
        if "event_id" not in event:
            event = {"event_id": self._id("event"), **event}
        if event.get("type") == "error":
            self.errors_sent.append(event)
        with contextlib.suppress(ConnectionClosed):
            await conn.ws.send(json.dumps(event))

    async def _error(
        self, conn: _Conn, client_id: object, code: str, message: str, param: str | None = None
    ) -> None:
        error = {"type": "invalid_request_error", "code": code, "message": message, "param": param}
        await self._emit(conn, "error", error=error | {"event_id": client_id})

    def _id(self, prefix: str) -> str:
        n = self._counters[prefix] = self._counters.get(prefix, 0) + 1
        return f"{prefix}_fake{n:05d}"

    def _input_ms(self, conn: _Conn) -> int:
        # μ-law/A-law 8 kHz: 8 bytes/ms; PCM16 24 kHz: 48 bytes/ms.
        pcm = conn.session["audio"]["input"]["format"].get("type") == "audio/pcm"
        return conn.audio_in_bytes // (48 if pcm else 8)

    def _default_session(self, model: str) -> JSON:
        # Shape of a GA `session.created` (openai-python RealtimeSessionCreateResponse).
        return {
            "object": "realtime.session",
            "type": "realtime",
            "id": self._id("sess"),
            "model": model,
            "output_modalities": ["audio"],
            "instructions": "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI.",
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
            "expires_at": int(time.time()) + 3600,  # sessions last at most 60 min (protocols.md §3)
            "include": None,
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": {"type": "server_vad", **_VAD_DEFAULTS["server_vad"]},
                },
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0},
            },
        }

    @staticmethod
    def _response(
        response_id: str,
        *,
        status: str = "in_progress",
        status_details: JSON | None = None,
        output: list[JSON] | None = None,
        usage: JSON | None = None,
    ) -> JSON:
        return {
            "object": "realtime.response",
            "id": response_id,
            "status": status,
            "status_details": status_details,
            "output": output or [],
            "conversation_id": "conv_fake",
            "output_modalities": ["audio"],
            "max_output_tokens": "inf",
            "usage": usage,
            "metadata": None,
        }

    def _usage(self, conn: _Conn, *, out_audio_ms: int, out_text: int) -> JSON:
        # Shape of protocols.md §3's example; audio is 1 token per 100 ms in and per 50 ms out
        # ("Managing costs" guide, protocols.md §3 "Audio tokens").
        in_audio, in_text, out_audio = (
            math.ceil(self._input_ms(conn) / 100),
            120,
            math.ceil(out_audio_ms / 50),
        )
        return {
            "total_tokens": in_audio + in_text + out_audio + out_text,
            "input_tokens": in_audio + in_text,
            "output_tokens": out_audio + out_text,
            "input_token_details": {
                "text_tokens": in_text,
                "audio_tokens": in_audio,
                "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
        }
