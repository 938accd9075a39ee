"""The asyncio shell of one call: readers turn I/O into events, `Call.handle` decides, writers act.

All of a call's tasks live in one `asyncio.TaskGroup`: one reader per leg, a ticker for
timers, and one task per running tool. Readers never decide anything; they put typed events
into one bounded inbox, and a single loop feeds them to the call owner in order, so the call's
state is only ever touched from one place. When the call ends, or either leg vanishes, the loop
stops, every task is cancelled and both legs are closed: nothing outlives the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import structlog

from gateway.backends.base import BackendLeg
from gateway.call import Call
from gateway.carriers import CarrierLeg
from gateway.commands import (
    AddUserText,
    CancelResponse,
    ClearPlayback,
    Command,
    CreateResponse,
    EndCall,
    HangUp,
    PlayAudio,
    RequestApproval,
    RunTool,
    SendAudio,
    SendDtmf,
    SendMark,
    SendToolOutput,
    TransferCall,
    TruncateItem,
    UpdateSession,
)
from gateway.events import CallerAudio, CallerHungUp, Event, ModelClosed, Tick, ToolFinished, TransferFinished
from gateway.recording import StereoRecorder

log = structlog.get_logger("switchboard.call")

_CARRIER_COMMANDS = (PlayAudio, SendMark, ClearPlayback, HangUp, SendDtmf)
_MODEL_COMMANDS = (
    SendAudio,
    TruncateItem,
    CancelResponse,
    CreateResponse,
    AddUserText,
    SendToolOutput,
    UpdateSession,
)
ApprovalHook = Callable[[Call, RequestApproval], Awaitable[None]]


class CallRunner:
    """Runs one `Call` between a carrier leg and a backend leg until the call ends."""

    INBOX_SIZE = 512  # events; a reader waits (backpressure) rather than grow memory
    CLOSE_TIMEOUT_S = 2.0

    def __init__(
        self,
        call: Call,
        carrier: CarrierLeg,
        backend: BackendLeg,
        *,
        clock: Callable[[], float] = time.monotonic,
        tick_s: float = 0.05,
        on_approval: ApprovalHook | None = None,
        recorder: StereoRecorder | None = None,
    ) -> None:
        self.call = call
        self.carrier = carrier
        self.backend = backend
        self.on_approval = on_approval
        self.recorder = recorder
        self._bot_cursor_ms = 0
        self.clock = clock
        self.tick_s = tick_s
        self._inbox: asyncio.Queue[Event] = asyncio.Queue(self.INBOX_SIZE)
        self._tg: asyncio.TaskGroup | None = None
        self._extra: set[asyncio.Task[None]] = set()  # running tools/transfers; finished ones leave

    def post(self, event: Event) -> None:
        """Deliver an event from outside the call (REST hang-up, shutdown). Never blocks."""
        try:
            self._inbox.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("inbox_full_dropped", event=type(event).__name__)

    async def run(self, first_events: Sequence[Event] = ()) -> None:
        for event in first_events:
            self._inbox.put_nowait(event)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                readers = [
                    tg.create_task(self._pump(self.carrier.events(), CallerHungUp("socket_closed"))),
                    tg.create_task(self._pump(self.backend.events(), ModelClosed("backend_gone"))),
                    tg.create_task(self._ticker()),
                ]
                try:
                    await self._loop()
                finally:
                    for task in [*readers, *self._extra]:
                        task.cancel()
        finally:
            self._tg = None
            await self._close_legs()

    async def _pump(self, source: AsyncIterator[Any], last: Event) -> None:
        """Move one leg's events into the inbox; always ends with a 'leg gone' event."""
        try:
            async for event in source:
                await self._inbox.put(event)
        except Exception:
            # Legs turn their I/O errors into events; anything else is a bug in a leg. Log it
            # and end the call through the normal path instead of tearing the task group down.
            log.exception("leg_reader_failed", last=type(last).__name__)
        finally:
            # The leg's own final event may already be queued; a duplicate is harmless (the
            # call ignores events once ended). put_nowait: never block inside a cancellation.
            with contextlib.suppress(asyncio.QueueFull):
                self._inbox.put_nowait(last)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            await self._inbox.put(Tick())

    async def _loop(self) -> None:
        while True:
            event = await self._inbox.get()
            if self.recorder is not None and isinstance(event, CallerAudio):
                self.recorder.add_caller(event.payload, self._call_ms())
            try:
                commands = self.call.handle(event, self.clock())
            except Exception:
                # A bug in the call owner must not drop the caller; log it and go on.
                log.exception("call_handle_failed", event=type(event).__name__)
                continue
            for entry in self.call.drain_new_events():
                log.info(entry["type"], **{k: v for k, v in entry.items() if k != "type"})
            for command in commands:
                if isinstance(command, EndCall):
                    return
                await self._execute(command)

    def _call_ms(self) -> int:
        return int((self.clock() - self.call.record.started_at) * 1000)

    def _record(self, command: Command) -> None:
        """Bot audio lands in the recording where it will play (after what is already queued);
        a clear cuts it where the caller stopped hearing."""
        assert self.recorder is not None
        now_ms = self._call_ms()
        if isinstance(command, PlayAudio):
            at = max(now_ms, self._bot_cursor_ms)
            self.recorder.add_bot(command.payload, at)
            self._bot_cursor_ms = at + len(command.payload) // 8
        elif isinstance(command, ClearPlayback):
            self.recorder.truncate_bot_after(now_ms)
            self._bot_cursor_ms = now_ms

    async def _execute(self, command: Command) -> None:
        if self.recorder is not None:
            self._record(command)
        if isinstance(command, _CARRIER_COMMANDS):
            await self.carrier.send(command)
        elif isinstance(command, _MODEL_COMMANDS):
            await self.backend.send(command)
        elif isinstance(command, RunTool | TransferCall | RequestApproval):
            # Slow work runs beside the audio; its result comes back as an event.
            assert self._tg is not None
            task = self._tg.create_task(self._background(command))
            self._extra.add(task)
            task.add_done_callback(self._extra.discard)

    async def _background(self, command: RunTool | TransferCall | RequestApproval) -> None:
        if isinstance(command, RunTool):
            # The call's current registry: a handoff may have changed it since the call began.
            ok, output = await self.call.tools.run(command.name, command.arguments)
            await self._inbox.put(ToolFinished(command.call_id, command.name, output, ok))
        elif isinstance(command, TransferCall):
            try:
                ok, detail = await self.carrier.transfer(command.target, command.mode, command.summary)
            except Exception:
                log.exception("transfer_failed")
                ok, detail = False, "internal error"
            await self._inbox.put(TransferFinished(command.call_id, ok, detail))
        elif self.on_approval is not None:
            try:
                await self.on_approval(self.call, command)
            except Exception:
                log.warning("approval_notify_failed", exc_info=True)

    async def _close_legs(self) -> None:
        for leg in (self.backend, self.carrier):
            try:
                async with asyncio.timeout(self.CLOSE_TIMEOUT_S):
                    await leg.close()
            except Exception:
                log.warning("leg_close_failed", leg=type(leg).__name__, exc_info=True)
