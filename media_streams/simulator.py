"""A simulated Twilio Media Streams peer: connects over a real WebSocket and acts as Twilio does.

It is both the caller of `switchboard demo` and the fake Twilio of the end-to-end tests
(`tests/fakes/twilio_caller.py` re-exports it), so the demo exercises exactly what the tests check.

What it emulates (protocols.md §1.2-§1.4):
- Start-up: `connected` (no sequenceNumber), then `start` (sequenceNumber "1") with customParameters.
- Caller audio: `media` frames of 20 ms (160 bytes μ-law), sequenceNumber counting up from 2 across
  every message this side sends, chunk from 1, timestamp in ms since the stream started; with
  `realtime=True` they are paced 20 ms apart on an absolute schedule, so pacing does not drift.
- Playback of what the server sends: outbound `media` goes into a playout buffer that a clock drains
  at 8 bytes per ms (8 kHz μ-law) from the moment audio arrives while idle. A `mark` is echoed only
  once the audio queued before it has played (at once if nothing is queued). `clear` drops the
  buffer and echoes every outstanding mark at once. This is what tells a bridge played audio from
  discarded audio on barge-in, so the timing is computed from elapsed monotonic time (not by
  counting timer ticks) and the timer sleeps until the next mark is due: echoes land within ~1-2 ms.
- Checks on what the server sends: every message must be well-formed, a text frame, and carry this
  stream's `streamSid`; anything else goes to `errors` and is not played (Twilio would not play it).

Records for assertions: `played`, `received`, `max_buffered_ms`, `gaps` / `underruns_ms`, `clears`,
`played_ms_at_clear`, `dropped_ms_at_clear`, `marks_echoed` / `mark_echoes`, `messages`, `errors`,
`closed_code`. Waiting helpers (`wait_for_audio`, `wait_for_mark`, `wait_closed`, `wait_until`) sleep
on a change notification, never in a polling loop.

Sends after the socket has closed are dropped quietly (Twilio just stops); `closed_code` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from media_streams import codec
from media_streams.signature import SIGNATURE_HEADER, compute_signature

BYTES_PER_MS = 8  # G.711 μ-law at 8 kHz: one byte per sample (protocols.md §1.4)
FRAME_MS = 20
FRAME_BYTES = FRAME_MS * BYTES_PER_MS  # 160: the inbound frame size Twilio uses (§1.4)
SILENCE = 0xFF  # μ-law silence (§1.4)

# Upper bound on a playout-timer sleep while audio plays, so `played` grows smoothly for waiters;
# mark echoes do not depend on it (the timer sleeps exactly until the next mark is due).
_TICK_S = 0.005


def _sid(prefix: str) -> str:
    """Twilio SIDs are a two-letter prefix plus 32 hex digits (protocols.md §1.2)."""
    return prefix + secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class Gap:
    """The playout buffer ran dry and the server sent more audio later, with no `clear` in between."""

    at: float  # time.monotonic() when the buffer ran dry
    duration_ms: float  # until the next audio arrived
    played_ms: float  # audio played before the gap (since the stream started)


@dataclass(frozen=True, slots=True)
class MarkEcho:
    """One mark this fake echoed back."""

    name: str
    at: float  # time.monotonic() when its audio finished playing (or the clear that flushed it)
    cleared: bool  # True if echoed because of a `clear`, not because its audio played


class SimulatedCaller:
    """One simulated Twilio call leg. See the module docstring for what it does and records."""

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        call_sid: str | None = None,
        stream_sid: str | None = None,
        account_sid: str | None = None,
        params: dict[str, str] | None = None,
        auth_token: str | None = None,
        signed_url: str | None = None,
        open_timeout: float = 5.0,
    ) -> None:
        """Set up a call; nothing is sent until `connect()` (or `async with`).

        auth_token: if given, add the `X-Twilio-Signature` Twilio would send for the upgrade, computed
            over `signed_url` (default `url`) with no params (protocols.md §1.5). Explicit `headers`
            win, so a test can also send a wrong signature.
        """
        self.url = url
        self.call_sid = call_sid or _sid("CA")
        self.stream_sid = stream_sid or _sid("MZ")
        self.account_sid = account_sid or _sid("AC")
        self.params: dict[str, str] = dict(params or {})
        self.headers: dict[str, str] = {}
        if auth_token is not None:
            self.headers[SIGNATURE_HEADER] = compute_signature(auth_token, signed_url or url, {})
        self.headers.update(headers or {})
        self._open_timeout = open_timeout

        # What the server sent, and what happened to it.
        self.played = bytearray()  # audio in play order: only what was actually played
        self.received = bytearray()  # every byte of outbound audio accepted, played or not
        self.messages: list[codec.OutboundMessage] = []  # valid messages for this stream, in order
        self.errors: list[str] = []  # protocol problems in what the server sent
        self.max_buffered_ms = 0.0  # largest unplayed amount, measured each time audio arrives
        self.gaps: list[Gap] = []
        self.clears: list[float] = []  # time.monotonic() of each clear processed
        self.played_ms_at_clear: list[float] = []  # total ms played when each clear was processed
        self.dropped_ms_at_clear: list[float] = []  # unplayed ms each clear discarded
        self.marks_echoed: list[str] = []
        self.mark_echoes: list[MarkEcho] = []
        self.first_audio_at: float | None = None  # time.monotonic() of the first outbound audio
        self.started_at: float | None = None  # time.monotonic() when `start` was sent
        self.closed_code: int | None = None  # close code once the socket is closed (1006: no close frame)
        self.closed_reason: str = ""
        self.closed_at: float | None = None

        # What this side has sent.
        self.sent_media_frames = 0
        self._seq = 0  # sequenceNumber of the last numbered message sent ("1" is `start`)
        self._chunk = 0
        self._last_timestamp_ms: int | None = None
        self._next_frame_at = 0.0  # absolute pacing schedule, shared by consecutive speak() calls

        # Playout state. Positions count bytes in the play stream; clears keep them consistent.
        self._pending = bytearray()  # queued, not yet played
        self._played_pos = 0  # bytes played since the stream started
        self._anchor: tuple[float, int] | None = None  # (time, played_pos) the clock counts from
        self._dry_at: float | None = None  # when the buffer last ran dry (None after a clear)
        self._marks: deque[tuple[int, str]] = deque()  # (play position it waits for, name)
        self._to_echo: deque[MarkEcho] = deque()  # played or cleared, echo not sent yet

        self._ws: ClientConnection | None = None
        self._send_lock = asyncio.Lock()  # keeps sequenceNumber order equal to wire order
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()  # audio arrived: the idle playout timer should start counting
        self._reader: asyncio.Task[None] | None = None
        self._playout: asyncio.Task[None] | None = None
        self._hung_up = False

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A Twilio call that ends sends `stop`, then closes the socket.
        await self.hang_up()

    async def connect(self) -> None:
        """Open the WebSocket, then send `connected` and `start`, as Twilio does.

        Raises what `websockets` raises if the upgrade is refused (e.g. `InvalidStatus` for a 403 on
        a bad signature): Twilio would give up on the stream there too.
        """
        if self._ws is not None:
            raise RuntimeError("already connected")
        self._ws = await connect(
            self.url,
            additional_headers=self.headers,
            open_timeout=self._open_timeout,
            proxy=None,  # tests talk to 127.0.0.1 only; never route through an environment proxy
            # Twilio's client is not documented to negotiate permessage-deflate; plain frames keep
            # the byte sizes the server sees the same as with Twilio.
            compression=None,
        )
        self._reader = asyncio.create_task(self._read_loop(), name="simulated-twilio-reader")
        self._playout = asyncio.create_task(self._playout_loop(), name="simulated-twilio-playout")
        await self._send_text(codec.twilio_connected())
        self.started_at = time.monotonic()
        self._next_frame_at = self.started_at
        await self._send_numbered(
            lambda seq: codec.twilio_start(
                self.stream_sid, self.call_sid, self.account_sid, self.params, seq=seq
            )
        )

    async def hang_up(self) -> None:
        """The caller hangs up: send `stop`, then close the socket (code 1000). Idempotent."""
        if self._ws is not None and not self._hung_up and self.closed_code is None:
            self._hung_up = True
            await self._send_numbered(
                lambda seq: codec.twilio_stop(self.stream_sid, self.call_sid, self.account_sid, seq)
            )
        await self.close()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket without `stop` (a dropped stream) and stop the background tasks."""
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await self._ws.close(code, reason)
        await self._stop_tasks()

    async def abort(self) -> None:
        """Drop the TCP connection with no close frame (a network failure as the server sees it)."""
        if self._ws is not None:
            self._ws.transport.abort()
        await self._stop_tasks()

    async def _stop_tasks(self) -> None:
        for task in (self._reader, self._playout):
            if task is not None and not task.done():
                task.cancel()
        for task in (self._reader, self._playout):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._ws is not None and self.closed_code is None and self._ws.close_code is not None:
            self._record_closed()

    # ------------------------------------------------------------------ caller → server

    async def speak(self, ulaw: bytes, *, realtime: bool = True) -> None:
        """Send caller audio as 20 ms `media` frames; a short last frame is padded with silence.

        With `realtime`, frame i goes out at start + i·20 ms on an absolute schedule (no drift). The
        schedule carries over between calls, so back-to-back speak() calls stay 20 ms apart.
        """
        loop_start = max(time.monotonic(), self._next_frame_at)
        for index, offset in enumerate(range(0, len(ulaw), FRAME_BYTES)):
            frame = bytes(ulaw[offset : offset + FRAME_BYTES])
            frame += bytes([SILENCE]) * (FRAME_BYTES - len(frame))
            due = loop_start + index * FRAME_MS / 1000
            if realtime:
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if not await self._send_media(frame, due if realtime else time.monotonic()):
                return
            self._next_frame_at = due + FRAME_MS / 1000 if realtime else time.monotonic()

    async def send_silence(self, ms: int, *, realtime: bool = True) -> None:
        """Send `ms` of μ-law silence (0xFF), rounded up to whole 20 ms frames."""
        frames = -(-ms // FRAME_MS)
        await self.speak(bytes([SILENCE]) * (frames * FRAME_BYTES), realtime=realtime)

    async def send_dtmf(self, digit: str) -> None:
        """A keypad press, as Twilio reports it on a bidirectional stream."""
        await self._send_numbered(lambda seq: codec.twilio_dtmf(self.stream_sid, digit, seq))

    async def send_raw(self, text: str | bytes) -> None:
        """Send any frame as-is (malformed-frame tests). Bytes go out as a binary frame."""
        await self._send_text(text)

    async def _send_media(self, frame: bytes, sent_at: float) -> bool:
        assert self.started_at is not None, "connect() first"
        timestamp = round((sent_at - self.started_at) * 1000)
        if self._last_timestamp_ms is not None:
            timestamp = max(timestamp, self._last_timestamp_ms + FRAME_MS)
        self._last_timestamp_ms = timestamp
        self._chunk += 1
        chunk = self._chunk
        sent = await self._send_numbered(
            lambda seq: codec.twilio_media(self.stream_sid, frame, seq, chunk, timestamp)
        )
        if sent:
            self.sent_media_frames += 1
        return sent

    async def _send_numbered(self, build: Callable[[int], str]) -> bool:
        """Take the next sequenceNumber and send, under one lock so numbers go out in order."""
        async with self._send_lock:
            if self._ws is None or self.closed_code is not None:
                return False
            self._seq += 1
            return await self._send_locked(build(self._seq))

    async def _send_text(self, text: str | bytes) -> bool:
        async with self._send_lock:
            return await self._send_locked(text)

    async def _send_locked(self, text: str | bytes) -> bool:
        if self._ws is None:
            return False
        try:
            await self._ws.send(text)
        except ConnectionClosed:
            return False
        return True

    # ------------------------------------------------------------------ server → caller

    async def _read_loop(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                await self._on_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            self._record_closed()
            # The stream is over: nothing more plays and no mark can be echoed.
            if self._playout is not None:
                self._playout.cancel()

    def _record_closed(self) -> None:
        if self.closed_code is not None or self._ws is None:
            return
        now = time.monotonic()
        self._advance(now)  # what played up to the close counts; the rest is dropped with the stream
        self._anchor = None
        self.closed_code = self._ws.close_code if self._ws.close_code is not None else 1006
        self.closed_reason = self._ws.close_reason or ""
        self.closed_at = now
        self._notify()

    async def _on_frame(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            self.errors.append(f"binary frame of {len(frame)} bytes (Twilio expects JSON text)")
            self._notify()
            return
        message = codec.parse_outbound(frame)
        if isinstance(message, codec.Malformed):
            self.errors.append(f"{message.reason}: {message.detail}")
            self._notify()
            return
        if message.stream_sid != self.stream_sid:
            self.errors.append(f"streamSid {message.stream_sid!r} on {type(message).__name__}, expected ours")
            self._notify()
            return
        self.messages.append(message)
        now = time.monotonic()
        if isinstance(message, codec.OutboundMedia):
            self._on_audio(message.payload, now)
        elif isinstance(message, codec.OutboundMark):
            self._advance(now)
            if self._pending:
                self._marks.append((self._played_pos + len(self._pending), message.name))
            else:
                self._to_echo.append(MarkEcho(message.name, now, cleared=False))  # nothing before it
        else:
            self._on_clear(now)
        await self._flush_echoes()
        self._notify()

    def _on_audio(self, payload: bytes, now: float) -> None:
        self._advance(now)
        if self.first_audio_at is None:
            self.first_audio_at = now
        if self._anchor is None:
            # Idle: the playout clock starts now. If the buffer had run dry (and no clear since),
            # the silence in between was audible to the caller: record it.
            if self._dry_at is not None:
                gap_ms = (now - self._dry_at) * 1000
                self.gaps.append(Gap(self._dry_at, gap_ms, self._played_pos / BYTES_PER_MS))
            self._anchor = (now, self._played_pos)
            self._wake.set()
        self._dry_at = None
        self._pending += payload
        self.received += payload
        self.max_buffered_ms = max(self.max_buffered_ms, len(self._pending) / BYTES_PER_MS)

    def _on_clear(self, now: float) -> None:
        self._advance(now)
        self.clears.append(now)
        self.played_ms_at_clear.append(self._played_pos / BYTES_PER_MS)
        self.dropped_ms_at_clear.append(len(self._pending) / BYTES_PER_MS)
        self._pending.clear()
        self._anchor = None
        self._dry_at = None  # silence after a clear is intended, not an underrun
        # Twilio echoes every outstanding mark at once (protocols.md §1.3).
        self._to_echo.extend(MarkEcho(name, now, cleared=True) for _, name in self._marks)
        self._marks.clear()

    # ------------------------------------------------------------------ playout clock

    def _advance(self, now: float) -> None:
        """Move the played position to `now`: 8 bytes per ms since the anchor, never past the queue.

        Marks whose audio has now played move to `_to_echo`, stamped with the exact moment their
        audio ended (computed from the anchor, not from when we noticed). Every state change goes
        through here, so no caller can skip past a mark.
        """
        if self._anchor is None:
            return
        anchor_time, anchor_pos = self._anchor
        queued_end = self._played_pos + len(self._pending)
        target = min(anchor_pos + int((now - anchor_time) * 1000 * BYTES_PER_MS), queued_end)
        step = target - self._played_pos
        if step > 0:
            self.played += self._pending[:step]
            del self._pending[:step]
            self._played_pos = target
        while self._marks and self._marks[0][0] <= self._played_pos:
            position, name = self._marks.popleft()
            self._to_echo.append(MarkEcho(name, self._time_at(position), cleared=False))
        if not self._pending:
            # Ran dry; the exact moment follows from the anchor, whenever we happen to notice.
            self._dry_at = self._time_at(queued_end)
            self._anchor = None
        if self._to_echo:
            self._wake.set()

    def _time_at(self, position: int) -> float:
        """When the clock reaches play position `position` (requires a running clock)."""
        assert self._anchor is not None
        anchor_time, anchor_pos = self._anchor
        return anchor_time + (position - anchor_pos) / (1000 * BYTES_PER_MS)

    async def _playout_loop(self) -> None:
        while True:
            if self._anchor is None and not self._to_echo:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._advance(time.monotonic())
            await self._flush_echoes()
            self._notify()
            if self._anchor is None:
                continue
            delay = _TICK_S
            if self._marks:
                # Sleep exactly until the next mark is due, so its echo is not late by a tick.
                delay = min(delay, max(0.0, self._time_at(self._marks[0][0]) - time.monotonic()))
            await asyncio.sleep(delay)

    async def _flush_echoes(self) -> None:
        """Echo due marks in order. Popping is synchronous and the send lock is FIFO, so two tasks
        flushing at once still put the echoes on the wire in play order."""
        while self._to_echo:
            echo = self._to_echo.popleft()
            self.marks_echoed.append(echo.name)
            self.mark_echoes.append(echo)
            await self._send_echo(echo.name)

    async def _send_echo(self, name: str) -> None:
        await self._send_numbered(lambda seq: codec.twilio_mark(self.stream_sid, name, seq))

    # ------------------------------------------------------------------ waiting and derived records

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ASYNC109 (timeout parameters) is ignored on these helpers on purpose: a per-call deadline is
    # their whole API, and they apply it with asyncio.timeout inside.
    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float,  # noqa: ASYNC109
        what: str = "condition",
    ) -> None:
        """Wait until `predicate()` holds, re-checking on every change. Raises TimeoutError."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"fake Twilio: no {what} within {timeout} s") from None

    async def wait_for_audio(self, ms: float, timeout: float = 5.0, *, played: bool = False) -> None:  # noqa: ASYNC109
        """Wait until `ms` of outbound audio has been received (or, with `played`, played)."""

        def enough() -> bool:
            have = len(self.played if played else self.received) / BYTES_PER_MS
            return have >= ms or self.closed_code is not None

        await self.wait_until(enough, timeout, f"{ms} ms of {'played' if played else 'received'} audio")
        if len(self.played if played else self.received) / BYTES_PER_MS < ms:
            raise ConnectionError(f"socket closed ({self.closed_code}) before {ms} ms of audio arrived")

    async def wait_for_mark(self, name: str, timeout: float = 5.0) -> MarkEcho:  # noqa: ASYNC109
        """Wait until mark `name` has been echoed; returns its record."""
        await self.wait_until(lambda: name in self.marks_echoed, timeout, f"echo of mark {name!r}")
        return next(echo for echo in self.mark_echoes if echo.name == name)

    async def wait_closed(self, timeout: float = 5.0) -> int:  # noqa: ASYNC109
        """Wait until the socket is closed (by either side); returns the close code."""
        await self.wait_until(lambda: self.closed_code is not None, timeout, "close")
        assert self.closed_code is not None
        return self.closed_code

    @property
    def underruns_ms(self) -> float:
        """Total audible silence from the buffer running dry while more audio was still to come."""
        return sum(gap.duration_ms for gap in self.gaps)

    @property
    def buffered_ms(self) -> float:
        """Audio queued and not yet played, as of now."""
        self._advance(time.monotonic())  # any mark this passes is echoed by the playout task
        return len(self._pending) / BYTES_PER_MS

    @property
    def played_ms(self) -> float:
        """Audio played so far, as of now."""
        self._advance(time.monotonic())
        return self._played_pos / BYTES_PER_MS

    @property
    def sequence_number(self) -> int:
        """sequenceNumber of the last numbered message sent ("1" is `start`)."""
        return self._seq
