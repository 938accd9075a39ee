"""The fake Twilio caller itself, against a tiny local WebSocket server that plays "our gateway".

The fake is what end-to-end tests trust about Twilio's behaviour (protocols.md §1.2-§1.4), so its
numbering, pacing and playback emulation (mark echo timing, clear) are pinned here.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from http import HTTPStatus
from itertools import pairwise
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response

from gateway.commands import ClearPlayback, PlayAudio, SendMark
from media_streams.codec import encode
from media_streams.signature import SIGNATURE_HEADER, compute_signature
from tests.fakes.twilio_caller import BYTES_PER_MS, FRAME_BYTES, FakeTwilioCaller

TOLERANCE_S = 0.015  # the brief's bar for mark timing and pacing


class TinyServer:
    """Accepts one stream at a time and records every frame with its arrival time."""

    def __init__(self) -> None:
        self.url = ""
        self.conn: ServerConnection | None = None
        self.request_headers: dict[str, str] = {}
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.close_code: int | None = None
        self._changed = asyncio.Event()

    async def handler(self, ws: ServerConnection) -> None:
        self.conn = ws
        assert ws.request is not None
        self.request_headers = dict(ws.request.headers.raw_items())
        self._notify()
        try:
            async for frame in ws:
                self.received.append((time.monotonic(), json.loads(frame)))
                self._notify()
        except ConnectionClosed:
            pass
        self.close_code = ws.close_code
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Any, timeout_s: float = 3.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await self._changed.wait()

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [m for _, m in self.received if m["event"] == kind]

    def times(self, kind: str) -> list[float]:
        return [t for t, m in self.received if m["event"] == kind]

    async def echo_time(self, name: str) -> float:
        def seen() -> bool:
            return any(m["event"] == "mark" and m["mark"]["name"] == name for _, m in self.received)

        await self.wait_for(seen)
        return next(t for t, m in self.received if m["event"] == "mark" and m["mark"]["name"] == name)

    async def send(self, text: str | bytes) -> None:
        assert self.conn is not None
        await self.conn.send(text)

    async def play(self, ms: int, sid: str, *, fill: int = 0x55, chunk_ms: int = 20) -> bytes:
        """Send `ms` of audio as outbound media messages; returns the bytes sent."""
        audio = bytes([fill]) * (ms * BYTES_PER_MS)
        step = chunk_ms * BYTES_PER_MS
        for offset in range(0, len(audio), step):
            await self.send(encode(PlayAudio(audio[offset : offset + step]), sid))
        return audio


@pytest.fixture
async def server() -> AsyncIterator[TinyServer]:
    tiny = TinyServer()
    async with serve(tiny.handler, "127.0.0.1", 0, compression=None) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        tiny.url = f"ws://127.0.0.1:{port}/media-stream"
        yield tiny


async def _connected(server: TinyServer, caller: FakeTwilioCaller) -> str:
    await server.wait_for(lambda: len(server.events("start")) == 1)
    return caller.stream_sid


# --------------------------------------------------------------------------- what the caller sends


async def test_start_sequence_numbering_and_hang_up(server: TinyServer) -> None:
    caller = FakeTwilioCaller(server.url, params={"session_id": "s_123", "tenant": "acme"})
    async with caller:
        await _connected(server, caller)
        await caller.speak(bytes(400), realtime=False)  # 2.5 frames: the last is padded
        await caller.send_dtmf("7")
    await server.wait_for(lambda: server.close_code is not None)

    kinds = [m["event"] for _, m in server.received]
    assert kinds == ["connected", "start", "media", "media", "media", "dtmf", "stop"]
    connected, start, *media, dtmf, stop = (m for _, m in server.received)
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert "sequenceNumber" not in connected
    assert re.fullmatch(r"MZ[0-9a-f]{32}", caller.stream_sid)
    assert re.fullmatch(r"CA[0-9a-f]{32}", caller.call_sid)
    assert re.fullmatch(r"AC[0-9a-f]{32}", caller.account_sid)
    assert start["sequenceNumber"] == "1"
    assert start["start"]["customParameters"] == {"session_id": "s_123", "tenant": "acme"}
    assert (start["start"]["callSid"], start["streamSid"]) == (caller.call_sid, caller.stream_sid)
    # sequenceNumber runs on from 2 across every message kind, as strings; chunk from "1".
    assert [m["sequenceNumber"] for m in [*media, dtmf, stop]] == ["2", "3", "4", "5", "6"]
    assert [m["media"]["chunk"] for m in media] == ["1", "2", "3"]
    stamps = [int(m["media"]["timestamp"]) for m in media]
    assert all(b - a >= 20 for a, b in pairwise(stamps))
    payloads = [m["media"]["payload"] for m in media]
    assert all(len(p) == 216 for p in payloads)  # 160 bytes → 216 base64 chars (§1.4)
    assert dtmf["dtmf"] == {"track": "inbound_track", "digit": "7"}
    assert stop["stop"] == {"accountSid": caller.account_sid, "callSid": caller.call_sid}
    assert server.close_code == 1000
    assert caller.closed_code == 1000
    assert caller.errors == []


async def test_frames_are_paced_20ms_without_drift(server: TinyServer) -> None:
    async with FakeTwilioCaller(server.url) as caller:
        await _connected(server, caller)
        # Two back-to-back calls must continue one schedule (no double frame at the seam).
        await caller.speak(bytes(25 * FRAME_BYTES))
        await caller.speak(bytes(25 * FRAME_BYTES))
        await server.wait_for(lambda: len(server.events("media")) == 50)

    arrivals = server.times("media")
    first = arrivals[0]
    deviations = [abs(t - (first + i * 0.020)) for i, t in enumerate(arrivals)]
    assert max(deviations) < TOLERANCE_S, max(deviations)
    assert abs((arrivals[-1] - first) - 0.98) < TOLERANCE_S
    stamps = [int(m["media"]["timestamp"]) for m in server.events("media")]
    assert all(abs((b - a) - 20) <= 2 for a, b in pairwise(stamps)), stamps
    assert caller.sent_media_frames == 50


async def test_send_silence_and_raw(server: TinyServer) -> None:
    async with FakeTwilioCaller(server.url) as caller:
        await _connected(server, caller)
        await caller.send_silence(50, realtime=False)  # rounds up to 3 frames
        await caller.send_raw('{"event":"media","hello":1}')
        await server.wait_for(lambda: len(server.received) == 6)
    media = server.events("media")
    assert len(media) == 4
    assert media[-1] == {"event": "media", "hello": 1}


async def test_signed_upgrade_header(server: TinyServer) -> None:
    async with FakeTwilioCaller(server.url, auth_token="12345", signed_url="wss://example.com/media-stream"):
        await server.wait_for(lambda: bool(server.request_headers))
    assert server.request_headers[SIGNATURE_HEADER] == "XFfwGS2Ev7f9qAP9MmRoMS7C724="  # protocols.md §1.5
    assert server.request_headers[SIGNATURE_HEADER] == compute_signature(
        "12345", "wss://example.com/media-stream"
    )


# --------------------------------------------------------------------------- playback emulation


async def test_marks_echo_only_after_preceding_audio_played(server: TinyServer) -> None:
    async with FakeTwilioCaller(server.url) as caller:
        sid = await _connected(server, caller)
        t0 = time.monotonic()
        first = await server.play(200, sid, fill=0x11)
        await server.send(encode(SendMark("a"), sid))
        second = await server.play(100, sid, fill=0x22)
        await server.send(encode(SendMark("b"), sid))
        t_a = await server.echo_time("a")
        t_b = await server.echo_time("b")
        # A mark with nothing queued before it comes back at once.
        await caller.wait_for_audio(300, timeout=1, played=True)
        t_c0 = time.monotonic()
        await server.send(encode(SendMark("c"), sid))
        t_c = await server.echo_time("c")

    assert abs((t_a - t0) - 0.200) < TOLERANCE_S, t_a - t0
    assert abs((t_b - t0) - 0.300) < TOLERANCE_S, t_b - t0
    assert t_c - t_c0 < TOLERANCE_S
    assert caller.marks_echoed == ["a", "b", "c"]
    assert [e.cleared for e in caller.mark_echoes] == [False, False, False]
    assert bytes(caller.played) == first + second == bytes(caller.received)
    assert caller.gaps == []
    assert 280 <= caller.max_buffered_ms <= 300
    # Echoes are numbered messages too, after `start` ("1").
    assert [m["sequenceNumber"] for m in server.events("mark")] == ["2", "3", "4"]
    assert all(m["streamSid"] == caller.stream_sid for m in server.events("mark"))
    assert caller.errors == []


async def test_clear_echoes_outstanding_marks_at_once_and_stops_playout(server: TinyServer) -> None:
    async with FakeTwilioCaller(server.url) as caller:
        sid = await _connected(server, caller)
        t0 = time.monotonic()
        await server.play(1000, sid, chunk_ms=100)
        await server.send(encode(SendMark("m1"), sid))
        await server.play(500, sid, chunk_ms=100)
        await server.send(encode(SendMark("m2"), sid))
        await asyncio.sleep(0.2)
        t_clear = time.monotonic()
        await server.send(encode(ClearPlayback(), sid))
        t_m1 = await server.echo_time("m1")
        t_m2 = await server.echo_time("m2")
        played_after_clear = len(caller.played)
        await asyncio.sleep(0.1)
        assert len(caller.played) == played_after_clear  # nothing plays after a clear

        # New audio after the clear plays again; the silence before it was intended, not a gap.
        await server.play(40, sid, fill=0x33)
        await server.send(encode(SendMark("m3"), sid))
        await server.echo_time("m3")

    assert t_m1 - t_clear < TOLERANCE_S
    assert t_m2 - t_clear < TOLERANCE_S
    assert caller.marks_echoed == ["m1", "m2", "m3"]
    assert [e.cleared for e in caller.mark_echoes] == [True, True, False]
    assert len(caller.clears) == 1
    played_ms = caller.played_ms_at_clear[0]
    assert abs(played_ms - (t_clear - t0) * 1000) < TOLERANCE_S * 1000, played_ms
    assert abs(played_ms + caller.dropped_ms_at_clear[0] - 1500) < 0.5
    assert played_after_clear == played_ms * BYTES_PER_MS
    assert caller.played.endswith(bytes([0x33]) * 320)
    assert caller.gaps == []


async def test_underrun_gap_is_recorded(server: TinyServer) -> None:
    async with FakeTwilioCaller(server.url) as caller:
        sid = await _connected(server, caller)
        await server.play(100, sid)
        await asyncio.sleep(0.25)
        await server.play(100, sid)
        await caller.wait_for_audio(200, timeout=1, played=True)

    assert len(caller.gaps) == 1
    gap = caller.gaps[0]
    assert abs(gap.duration_ms - 150) < TOLERANCE_S * 1000, gap
    assert gap.played_ms == 100
    assert caller.underruns_ms == gap.duration_ms
    assert 95 <= caller.max_buffered_ms <= 100


async def test_bad_outbound_messages_are_errors_and_not_played(server: TinyServer) -> None:
    async with FakeTwilioCaller(server.url) as caller:
        sid = await _connected(server, caller)
        await server.send(encode(PlayAudio(b"\x01" * 160), "MZ" + "0" * 32))  # someone else's stream
        await server.send('{"event":"media","streamSid":"' + sid + '","media":{"payload":"!!"}}')
        await server.send("not json")
        await server.send(b"\x00\x01")  # binary frame
        await server.send(encode(PlayAudio(b"\x02" * 160), sid))
        await caller.wait_for_audio(20)

    assert len(caller.errors) == 4, caller.errors
    assert "streamSid" in caller.errors[0]
    assert caller.errors[1].startswith("bad_payload")
    assert caller.errors[2].startswith("invalid_json")
    assert "binary" in caller.errors[3]
    assert bytes(caller.received) == b"\x02" * 160


async def test_server_close_is_recorded(server: TinyServer) -> None:
    async with FakeTwilioCaller(server.url) as caller:
        await _connected(server, caller)
        assert server.conn is not None
        await server.conn.close(1008, "policy")
        assert await caller.wait_closed(timeout=1) == 1008
        assert caller.closed_reason == "policy"
        await caller.send_dtmf("1")  # a send after the close is dropped quietly
        with pytest.raises(ConnectionError):
            await caller.wait_for_audio(20, timeout=1)
    assert [m["event"] for _, m in server.received] == ["connected", "start"]


async def test_wait_for_audio_times_out(server: TinyServer) -> None:
    async with FakeTwilioCaller(server.url) as caller:
        await _connected(server, caller)
        with pytest.raises(TimeoutError, match="20 ms of received audio"):
            await caller.wait_for_audio(20, timeout=0.05)


async def test_abort_drops_the_connection_without_close_frame(server: TinyServer) -> None:
    caller = FakeTwilioCaller(server.url)
    await caller.connect()
    await _connected(server, caller)
    await caller.abort()
    await server.wait_for(lambda: server.close_code is not None)
    assert server.close_code == 1006
    assert caller.closed_code == 1006
    assert [m["event"] for _, m in server.received] == ["connected", "start"]


async def test_refused_upgrade_raises() -> None:
    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(HTTPStatus.FORBIDDEN, "bad signature\n")

    async def never(ws: ServerConnection) -> None:  # pragma: no cover - the upgrade is refused
        raise AssertionError("handler must not run")

    async with serve(never, "127.0.0.1", 0, process_request=refuse) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        caller = FakeTwilioCaller(f"ws://127.0.0.1:{port}/media-stream", headers={SIGNATURE_HEADER: "nope"})
        with pytest.raises(InvalidStatus) as refused:
            await caller.connect()
    assert refused.value.response.status_code == 403
