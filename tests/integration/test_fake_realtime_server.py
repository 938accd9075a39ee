"""The official openai SDK against `FakeRealtimeServer`, with our codec on both directions.

This is the path production takes (SDK socket, `send_raw(codec…)`, `codec.parse(recv_bytes())`),
so it proves the fake is something the SDK accepts and that the codec's JSON is what the fake,
a GA-only server, accepts. No test may reach the internet: an autouse guard refuses any
non-loopback connect or DNS lookup.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.backends import realtime_codec as codec
from gateway.backends.base import SessionConfig, TurnDetection
from gateway.backends.realtime_codec import Ignored, Malformed, ParseResult
from gateway.commands import CancelResponse, CreateResponse, SendAudio, SendToolOutput, TruncateItem
from gateway.events import (
    ItemTruncated,
    ModelAudio,
    ModelAudioDone,
    ModelError,
    ModelReady,
    ResponseDone,
    ResponseStarted,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    ToolCallRequested,
    Transcript,
)
from tests.fakes.realtime_server import FakeRealtimeServer

# --------------------------------------------------------------------------- no internet


def _is_local(host: object) -> bool:
    if host in ("localhost", None):
        return True
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("OPENAI_")]:
        monkeypatch.delenv(name)
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            raise AssertionError(f"test tried to reach {address!r}")
        real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_local(host.decode() if isinstance(host, bytes) else host):
            raise AssertionError(f"test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


# --------------------------------------------------------------------------- helpers


@pytest.fixture
async def server() -> AsyncIterator[FakeRealtimeServer]:
    async with FakeRealtimeServer() as fake:
        yield fake


@asynccontextmanager
async def sdk_connection(
    server: FakeRealtimeServer, **connect_kwargs: Any
) -> AsyncIterator[AsyncRealtimeConnection]:
    # base_url too, so even a stray HTTP call from the SDK stays on loopback.
    client = AsyncOpenAI(api_key="test", base_url=server.http_url, websocket_base_url=server.url)
    try:
        async with client.realtime.connect(model="gpt-realtime", **connect_kwargs) as conn:
            yield conn
    finally:
        await client.close()


async def next_event(conn: AsyncRealtimeConnection, *, keep_ignored: bool = False) -> ParseResult:
    """The next parsed server event (skipping `Ignored` unless asked), within 5 s."""
    async with asyncio.timeout(5):
        while True:
            result = codec.parse(await conn.recv_bytes())
            assert not isinstance(result, Malformed), result
            if keep_ignored or not isinstance(result, Ignored):
                return result


async def read_until(
    conn: AsyncRealtimeConnection, stop: Callable[[ParseResult], bool], *, keep_ignored: bool = False
) -> list[ParseResult]:
    out: list[ParseResult] = []
    while True:
        result = await next_event(conn, keep_ignored=keep_ignored)
        out.append(result)
        if stop(result):
            return out


async def ready(conn: AsyncRealtimeConnection, config: SessionConfig | None = None) -> None:
    """session.created, then our session.update answered by session.updated."""
    assert isinstance(await next_event(conn), ModelReady)
    await conn.send_raw(codec.session_update(config or SessionConfig()))
    assert await next_event(conn) == SessionUpdated()


async def drain(conn: AsyncRealtimeConnection) -> None:
    """Read until the connection fails (the caller expects ConnectionClosed)."""
    async with asyncio.timeout(5):
        while True:
            await conn.recv_bytes()


def is_done(result: ParseResult) -> bool:
    return isinstance(result, ResponseDone)


# --------------------------------------------------------------------------- connect


async def test_sdk_connects_to_fake_with_ga_handshake(server: FakeRealtimeServer) -> None:
    async with sdk_connection(server) as conn:
        raw = await conn.recv_bytes()
        result = codec.parse(raw)
        assert isinstance(result, ModelReady)
        assert result.session_id.startswith("sess_")
        # The SDK itself also understands the fake's session.created.
        assert conn.parse_event(raw).type == "session.created"
    # openai-python appends /realtime and ?model= to websocket_base_url (protocols.md §3).
    assert server.paths == ["/v1/realtime?model=gpt-realtime"]
    assert server.models == ["gpt-realtime"]
    assert server.api_keys == ["test"]
    assert server.connections == 1
    headers = {k.lower() for k in server.request_headers[0]}
    assert "openai-beta" not in headers
    assert server.rejections == []


async def test_session_update_is_merged_and_echoed(server: FakeRealtimeServer) -> None:
    config = SessionConfig(
        instructions="Be brief.",
        voice="cedar",
        turn_detection=TurnDetection(type="semantic_vad", eagerness="high", interrupt_response=False),
        transcription_language="en",
    )
    async with sdk_connection(server) as conn:
        assert isinstance(await next_event(conn), ModelReady)
        await conn.send_raw(codec.session_update(config))
        raw = await conn.recv_bytes()
        assert codec.parse(raw) == SessionUpdated()
        echoed = conn.parse_event(raw)
        assert echoed.type == "session.updated"
    update = await server.wait_for("session.update")
    assert update["session"]["type"] == "realtime"
    session = server.session
    assert session["instructions"] == "Be brief."
    assert session["model"] == "gpt-realtime"  # from the URL, untouched
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"] == {"format": {"type": "audio/pcmu"}, "voice": "cedar", "speed": 1.0}
    assert session["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "high",
        "create_response": True,
        "interrupt_response": False,
    }
    assert session["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe", "language": "en"}
    assert server.errors_sent == []


async def test_beta_shaped_session_update_is_refused(server: FakeRealtimeServer) -> None:
    beta = '{"type":"session.update","session":{"modalities":["audio"],"input_audio_format":"g711_ulaw"}}'
    async with sdk_connection(server) as conn:
        assert isinstance(await next_event(conn), ModelReady)
        await conn.send_raw(beta)
        error = await next_event(conn)
        assert isinstance(error, ModelError)
        assert error.code == "missing_required_parameter"  # no session.type
        await conn.send_raw('{"type":"session.update","session":{"type":"realtime","voice":"marin"}}')
        error = await next_event(conn)
        assert isinstance(error, ModelError)
        assert (error.code, error.type) == ("unknown_parameter", "invalid_request_error")
        assert "session.voice" in error.message
    assert server.session["audio"]["output"]["voice"] == "marin"  # not applied


async def test_openai_beta_header_is_closed_4000(server: FakeRealtimeServer) -> None:
    async with sdk_connection(server, extra_headers={"OpenAI-Beta": "realtime=v1"}) as conn:
        with pytest.raises(ConnectionClosed) as closed:
            await conn.recv_bytes()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "beta_api_shape_disabled")
    assert server.rejections == ["beta_api_shape_disabled"]
    assert server.connections == 0


async def test_missing_bearer_gets_401(server: FakeRealtimeServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(server.url + "/realtime?model=gpt-realtime"):
            pass
    assert refused.value.response.status_code == 401
    assert server.rejections == ["unauthorized"]
    assert server.api_keys == []


# --------------------------------------------------------------------------- audio


async def test_caller_audio_is_recorded_byte_exact(server: FakeRealtimeServer) -> None:
    frames = [bytes((i * 7 + j) % 256 for j in range(160)) for i in range(50)]  # 1 s of 20 ms μ-law
    async with sdk_connection(server) as conn:
        await ready(conn)
        for frame in frames:
            await conn.send_raw(codec.encode(SendAudio(frame)))
        assert await server.wait_for_audio(8000) == b"".join(frames)
    appends = [e for e in server.received if e["type"] == "input_audio_buffer.append"]
    assert len(appends) == 50
    times = [r.at for r in server.records]
    assert times == sorted(times)
    assert server.errors_sent == []


async def test_respond_audio_streams_in_order(server: FakeRealtimeServer) -> None:
    audio = bytes(range(256)) * 40  # 10 240 bytes = 1.28 s μ-law → 13 chunks of 100 ms
    async with sdk_connection(server) as conn:
        await ready(conn)
        response_id, item_id = await server.respond_audio(audio, transcript="Hello, thanks for calling.")
        events = await read_until(conn, is_done, keep_ignored=True)
    assert await server.wait_response(response_id) == "completed"

    kinds = [type(e).__name__ if not isinstance(e, Ignored) else e.type for e in events]
    assert kinds[:4] == [
        "ResponseStarted",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
    ]
    assert kinds[-6:] == [
        "ModelAudioDone",
        "Transcript",
        "response.content_part.done",
        "conversation.item.done",
        "response.output_item.done",
        "ResponseDone",
    ]
    assert events[0] == ResponseStarted(response_id)
    chunks = [e for e in events if isinstance(e, ModelAudio)]
    assert len(chunks) == 13
    assert all((c.response_id, c.item_id) == (response_id, item_id) for c in chunks)
    assert b"".join(c.audio for c in chunks) == audio
    assert ModelAudioDone(response_id, item_id) in events
    transcripts = [e for e in events if isinstance(e, Transcript)]
    assert "".join(t.text for t in transcripts if not t.final) == "Hello, thanks for calling."
    assert transcripts[-1] == Transcript("assistant", item_id, "Hello, thanks for calling.", True)
    done = events[-1]
    assert isinstance(done, ResponseDone)
    assert (done.response_id, done.status, done.status_reason) == (response_id, "completed", "")
    assert done.usage is not None
    assert done.usage.output_audio_tokens == 26  # 1 token per 50 ms of assistant audio
    assert all(not (isinstance(e, Ignored) and e.beta) for e in events)


async def test_speech_started_with_interrupt_response_cancels(server: FakeRealtimeServer) -> None:
    audio = b"\x7f" * 8 * 3000  # 3 s
    async with sdk_connection(server) as conn:
        await ready(conn)  # default TurnDetection: interrupt_response=True
        response_id, item_id = await server.respond_audio(audio, pace=1.0)
        first = await read_until(conn, lambda e: isinstance(e, ModelAudio))
        user_item = await server.speech_started(audio_start_ms=1200)
        rest = await read_until(conn, is_done)
        events = first + rest
        assert SpeechStarted(user_item, 1200) in events
        done = events[-1]
        assert isinstance(done, ResponseDone)
        assert (done.response_id, done.status, done.status_reason) == (
            response_id,
            "cancelled",
            "turn_detected",
        )
        played = sum(len(e.audio) for e in events if isinstance(e, ModelAudio))
        assert 0 < played < len(audio)
        assert await server.wait_response(response_id) == "cancelled"

        # Barge-in: the gateway truncates what the caller heard (bridge-rules.md).
        await conn.send_raw(codec.encode(TruncateItem(item_id, 90)))
        assert await next_event(conn) == ItemTruncated(item_id, 90)
        await server.speech_stopped()
        assert await next_event(conn) == SpeechStopped(user_item, 0)
        await server.user_transcript("Wait, one more thing")
        assert await next_event(conn) == Transcript("user", user_item, "Wait, one more thing", False)
        assert await next_event(conn) == Transcript("user", user_item, "Wait, one more thing", True)
    assert server.cancels == []  # the server cancelled by itself
    assert [t["audio_end_ms"] for t in server.truncates] == [90]
    assert server.errors_sent == []


async def test_without_interrupt_response_client_cancels(server: FakeRealtimeServer) -> None:
    config = SessionConfig(turn_detection=TurnDetection(interrupt_response=False))
    async with sdk_connection(server) as conn:
        await ready(conn, config)
        response_id, _ = await server.respond_audio(b"\xff" * 8 * 2000, pace=1.0)
        await read_until(conn, lambda e: isinstance(e, ModelAudio))
        await server.speech_started()
        assert isinstance(await next_event(conn), SpeechStarted)
        assert isinstance(await next_event(conn), ModelAudio)  # still streaming: no server cancel
        await conn.send_raw(codec.encode(CancelResponse(response_id)))
        events = await read_until(conn, is_done)
        done = events[-1]
        assert isinstance(done, ResponseDone)
        assert (done.status, done.status_reason) == ("cancelled", "client_cancelled")
        await conn.send_raw(codec.encode(CancelResponse()))  # nothing left to cancel
        error = await next_event(conn)
        assert isinstance(error, ModelError)
        assert error.code == "response_cancel_not_active"
    assert len(server.cancels) == 2


async def test_truncate_past_sent_audio_is_an_error(server: FakeRealtimeServer) -> None:
    async with sdk_connection(server) as conn:
        await ready(conn)
        _, item_id = await server.respond_audio(b"\xff" * 800)  # 100 ms
        await read_until(conn, is_done)
        await conn.send_raw(codec.encode(TruncateItem(item_id, 500)))
        error = await next_event(conn)
        assert isinstance(error, ModelError)
        assert error.code == "invalid_value"
        await conn.send_raw(codec.encode(TruncateItem("item_nope", 0)))
        assert isinstance(await next_event(conn), ModelError)


# --------------------------------------------------------------------------- responses


async def test_function_call_and_tool_output(server: FakeRealtimeServer) -> None:
    async with sdk_connection(server) as conn:
        await ready(conn)
        call_id = await server.function_call("transfer_call", {"reason": "billing"})
        events = await read_until(conn, is_done)
        call = next(e for e in events if isinstance(e, ToolCallRequested))
        assert (call.call_id, call.name, call.arguments) == (
            call_id,
            "transfer_call",
            '{"reason": "billing"}',
        )
        await conn.send_raw(codec.encode(SendToolOutput(call_id, '{"ok":true}')))
        await conn.send_raw(codec.encode(CreateResponse()))
    item = await server.wait_for("conversation.item.create")
    assert item["item"] == {"type": "function_call_output", "call_id": call_id, "output": '{"ok":true}'}
    assert await server.wait_for("response.create") == {"type": "response.create"}


async def test_on_response_create_hook_makes_greeting_audio() -> None:
    async def greet(event: dict[str, Any]) -> None:
        await fake.respond_audio(b"\x55" * 1600, transcript="Hi!")

    async with FakeRealtimeServer(on_response_create=greet) as fake, sdk_connection(fake) as conn:
        await ready(conn)
        await conn.send_raw(codec.encode(CreateResponse("Greet the caller")))
        events = await read_until(conn, is_done)
        assert b"".join(e.audio for e in events if isinstance(e, ModelAudio)) == b"\x55" * 1600
        create = await fake.wait_for("response.create")
        assert create["response"] == {"instructions": "Greet the caller"}


async def test_concurrent_response_create_is_refused() -> None:
    started = asyncio.Event()

    async def slow(event: dict[str, Any]) -> None:
        await fake.respond_audio(b"\x55" * 8 * 2000, pace=1.0)
        started.set()

    async with FakeRealtimeServer(on_response_create=slow) as fake, sdk_connection(fake) as conn:
        await ready(conn)
        await conn.send_raw(codec.encode(CreateResponse()))
        await read_until(conn, lambda e: isinstance(e, ModelAudio))
        await conn.send_raw(codec.encode(CreateResponse()))
        error = (await read_until(conn, lambda e: isinstance(e, ModelError)))[-1]
        assert isinstance(error, ModelError)
        assert error.code == "conversation_already_has_active_response"
        assert started.is_set()


async def test_wait_for_returns_each_event_once(server: FakeRealtimeServer) -> None:
    async with sdk_connection(server) as conn:
        await ready(conn)
        await conn.send_raw(codec.encode(CreateResponse("one")))
        await conn.send_raw(codec.encode(CreateResponse("two")))
        first = await server.wait_for("response.create")
        second = await server.wait_for("response.create")
        assert (first["response"]["instructions"], second["response"]["instructions"]) == ("one", "two")
        with pytest.raises(TimeoutError, match=r"response\.create"):
            await server.wait_for("response.create", timeout=0.05)
        mark = server.mark()
        await conn.send_raw(codec.encode(CreateResponse("three")))
        third = await server.wait_for("response.create", since=mark)
        assert third["response"]["instructions"] == "three"
        # A predicate picks a specific one even if it was not next.
        again = await server.wait_for(
            "session.update", predicate=lambda e: e["session"]["type"] == "realtime"
        )
        assert again["type"] == "session.update"


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(("abrupt", "code"), [(True, 1006), (False, 1011)])
async def test_drop_then_reconnect(server: FakeRealtimeServer, abrupt: bool, code: int) -> None:
    async with sdk_connection(server) as conn:
        await ready(conn)
        await server.respond_audio(b"\xff" * 8 * 5000, pace=1.0)
        await read_until(conn, lambda e: isinstance(e, ModelAudio))
        await server.drop(abrupt=abrupt)
        with pytest.raises(ConnectionClosed) as closed:
            await drain(conn)
        received = closed.value.rcvd
        assert (received.code if received is not None else 1006) == code
        assert server.open_connections == 0
    async with sdk_connection(server) as conn:
        await ready(conn)
        assert server.open_connections == 1
    assert server.connections == 2
    assert server.records[-1].connection == 2
