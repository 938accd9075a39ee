"""Pipeline backend: caller audio → VAD → speech-to-text → agent → text-to-speech → caller, with barge-in.

It is a `BackendLeg` like the Realtime one and speaks the same events, so the call owner,
tools, transcripts and the playback ledger work unchanged. It behaves like a Realtime session
with `server_vad`, `create_response` and `interrupt_response` on:

- Caller audio (`SendAudio`, μ-law 8 kHz) goes through `gateway.vad.Vad`. At an onset a
  recogniser stream starts (with the prefix padding); once `min_speech_ms` of speech is
  confirmed we emit `SpeechStarted` and cancel the response in progress ourselves (hence
  `server_cancels_on_speech`). The call owner then clears the caller's playback and sends
  `TruncateItem(item, heard_ms)` when the bot was audible.
- End of turn (`silence_duration_ms` of silence) → `SpeechStopped` → the transcript →
  `Transcript(user)` → a response, started by us as the Realtime server would.
- A response streams the agent's text; each complete sentence goes to TTS at once (the
  first sentence is speaking while the agent still writes the second), and TTS audio is
  resampled to 8 kHz, μ-law encoded and emitted as `ModelAudio` for the mark ledger.
  Tool calls are emitted after the text, then `ResponseDone`, the call owner runs them and
  answers with `SendToolOutput` + `CreateResponse`, and the agent continues from there.
- Barge-in: the running agent and TTS streams are cancelled (their tasks, so HTTP streams
  and synthesis threads stop), and on `TruncateItem` the assistant message in the history is
  cut to the words the caller heard: the TTS word timings (or an estimate for engines without
  them) map `audio_end_ms` back to a character offset. The message is marked `interrupted`.

The assistant's `Transcript` carries the text whose audio was emitted, once the response is
done, as the Realtime server's transcript does; on barge-in the call owner cuts its record's
copy itself, while the history here is cut by word timings.

Latency of every turn that answers speech is measured stage by stage (`TurnTiming`): kept in
`turn_latencies`, logged as `turn_latency`, and sent to the call owner as a `TurnLatency`
event for the call's event log and record.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog

from gateway.audio import Resampler, pcm16_to_ulaw, ulaw_to_pcm16
from gateway.backends.base import Capabilities, SessionConfig
from gateway.backends.providers.base import (
    Agent,
    HistoryItem,
    Message,
    SpeechToText,
    SttStream,
    TextDelta,
    TextToSpeech,
    ToolCall,
    ToolResult,
    WordTiming,
    estimate_words,
)
from gateway.commands import (
    AddUserText,
    CancelResponse,
    CreateResponse,
    ModelCommand,
    SendAudio,
    SendToolOutput,
    TruncateItem,
    UpdateSession,
)
from gateway.events import (
    ItemTruncated,
    ModelAudio,
    ModelAudioDone,
    ModelClosed,
    ModelError,
    ModelEvent,
    ModelReady,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    SpeechStopped,
    ToolCallRequested,
    Transcript,
    TurnLatency,
)
from gateway.vad import Vad, VadConfig

__all__ = ["PipelineBackend", "SentenceSplitter", "TurnTiming", "heard_text"]

log = structlog.get_logger("switchboard.pipeline")

OUTPUT_RATE = 8000


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


# --------------------------------------------------------------------------- text helpers

_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*\s")


class SentenceSplitter:
    """Cuts streamed text into sentences, so TTS can start on the first one.

    A sentence ends at `.`, `!`, `?` or `…` followed by whitespace (so "3.5" and "e.g.x" stay
    whole); a run-on longer than `max_chars` is cut at its last space, so a model that never
    writes a full stop still gets spoken.
    """

    def __init__(self, max_chars: int = 200) -> None:
        self.max_chars = max_chars
        self._buf = ""

    def push(self, text: str) -> list[str]:
        self._buf += text
        out: list[str] = []
        while True:
            match = _SENTENCE_END.search(self._buf)
            if match is not None:
                cut = match.end()
            elif len(self._buf) > self.max_chars and " " in self._buf[: self.max_chars]:
                cut = self._buf.rindex(" ", 0, self.max_chars) + 1
            else:
                return out
            sentence = self._buf[:cut].strip()
            self._buf = self._buf[cut:]
            if sentence:
                out.append(sentence)

    def flush(self) -> list[str]:
        rest, self._buf = self._buf.strip(), ""
        return [rest] if rest else []


def heard_text(text: str, words: Sequence[WordTiming], heard_ms: float, total_ms: float) -> str:
    """The part of `text` the caller heard after `heard_ms` of its audio.

    A word counts as heard once the caller heard past its middle (its end is the next word's
    start, or the end of the audio); the text is cut after the last such word.
    """
    end = 0
    for i, word in enumerate(words):
        word_end_ms = words[i + 1].audio_ms if i + 1 < len(words) else total_ms
        if heard_ms >= (word.audio_ms + word_end_ms) / 2:
            end = word.end
        else:
            break
    return text[:end].rstrip(" ,;:-")


# --------------------------------------------------------------------------- latency


@dataclass(frozen=True, slots=True)
class TurnTiming:
    """Where the time went between the caller's last word and the bot's first audio (ms).

    `vad_ms`: caller's last voiced frame → end of turn decided: the silence the VAD waited for,
    in audio time (`silence_duration_ms`, to a frame);
    `stt_ms`: end of turn → final transcript; `agent_first_token_ms`: transcript → first text
    delta; `agent_first_sentence_ms`: first delta → first complete sentence;
    `tts_first_audio_ms`: first sentence → its first audio; `total_ms`: caller's last voiced
    frame → first audio handed to the call owner. What is left, `total_ms` minus the stages, is
    the gateway's own share inside the backend; the network and playout come after `total_ms`.
    """

    response_id: str
    item_id: str
    vad_ms: float
    stt_ms: float
    agent_first_token_ms: float
    agent_first_sentence_ms: float
    tts_first_audio_ms: float
    total_ms: float

    @property
    def gateway_ms(self) -> float:
        stages = self.stt_ms + self.agent_first_token_ms + self.agent_first_sentence_ms
        return self.total_ms - self.vad_ms - stages - self.tts_first_audio_ms

    def stages_ms(self) -> dict[str, float]:
        """The breakdown as the `TurnLatency` event carries it (ms, by stage name)."""
        stages = {k: v for k, v in asdict(self).items() if k not in ("response_id", "item_id")}
        return {**stages, "gateway_ms": round(self.gateway_ms, 1)}


@dataclass
class _TurnClock:
    """Monotonic timestamps of one caller turn, as its response goes through the stages."""

    last_voiced_at: float
    end_of_turn_at: float
    transcript_at: float = 0.0
    first_token_at: float = 0.0
    first_sentence_at: float = 0.0
    first_tts_audio_at: float = 0.0


# --------------------------------------------------------------------------- per-response state


@dataclass
class _Item:
    """One assistant message: what was synthesized, when, and what the caller can have heard."""

    item_id: str
    response_id: str
    message: Message
    text: str = ""  # every sentence synthesized so far, joined with spaces
    words: list[WordTiming] = field(default_factory=list)  # offsets into `text`, ms into the item
    audio_ms: float = 0.0
    truncated: bool = False


@dataclass
class _Response:
    response_id: str
    item: _Item
    instructions: str
    turn: _TurnClock | None
    task: asyncio.Task[None] | None = None
    status: str = "in_progress"


class PipelineBackend:
    """One call's pipeline. See the module docstring."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        stt: SpeechToText,
        agent: Agent,
        tts: TextToSpeech,
        vad: VadConfig | None = None,
        name: str = "pipeline",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.stt = stt
        self.agent = agent
        self.tts = tts
        self.clock = clock
        self.capabilities = Capabilities(
            name=name,
            has_vad_events=True,
            can_truncate=True,
            server_cancels_on_speech=True,  # our VAD cancels the response itself
            mutable_instructions=True,
            tools_on_voice_model=True,
            audio_formats=("audio/pcmu",),
        )
        self.vad = Vad(vad or VadConfig(sample_rate=OUTPUT_RATE))
        self.history: list[HistoryItem] = []
        self.turn_latencies: list[TurnTiming] = []
        self._queue: asyncio.Queue[ModelEvent | None] = asyncio.Queue()
        self._closed = False
        self._started = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._items: dict[str, _Item] = {}
        self._response: _Response | None = None
        self._pending_create: str | None = None
        self._user_stream: SttStream | None = None
        self._user_item = ""
        self._to_stt: Resampler | None = (
            Resampler(OUTPUT_RATE, stt.sample_rate) if stt.sample_rate != OUTPUT_RATE else None
        )

    # ------------------------------------------------------------------ BackendLeg

    async def events(self) -> AsyncIterator[ModelEvent]:
        self._started = True
        yield ModelReady(_new_id("sess"))
        while True:
            event = await self._queue.get()
            if event is None:
                yield ModelClosed("closed")
                return
            yield event

    async def send(self, command: ModelCommand) -> None:
        if self._closed:
            return
        match command:
            case SendAudio():
                self._on_audio(command.payload)
            case CreateResponse():
                self._request_response(command.instructions)
            case AddUserText():
                self.history.append(Message("user", command.text, _new_id("item")))
            case SendToolOutput():
                self.history.append(ToolResult(command.call_id, command.output))
            case TruncateItem():
                self._on_truncate(command.item_id, command.audio_end_ms)
            case CancelResponse():
                self._cancel_response()
            case UpdateSession():
                # A handoff: the next responses use the new agent's instructions and tools.
                self.config = dataclasses.replace(
                    self.config, instructions=command.instructions, tools=command.tools
                )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if self._user_stream is not None:
            with contextlib.suppress(Exception):
                await self._user_stream.cancel()
        for provider in (self.stt, self.agent, self.tts):
            try:
                await provider.aclose()
            except Exception:
                log.warning("provider_close_failed", provider=provider.name, exc_info=True)
        self._queue.put_nowait(None)

    # ------------------------------------------------------------------ plumbing

    def _emit(self, event: ModelEvent) -> None:
        if not self._closed:
            self._queue.put_nowait(event)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._guard(coro, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in a stage must not take the call down silently
            log.exception("pipeline_task_failed", task=name)
            self._emit(ModelError("pipeline_error", f"{name} failed ({type(exc).__name__})"))

    # ------------------------------------------------------------------ caller audio and turns

    def _on_audio(self, ulaw: bytes) -> None:
        pcm = ulaw_to_pcm16(ulaw)
        now = self.clock()
        updates, speech = self.vad.process(pcm)
        # Audio before an update (the onset's padding) belongs to the stream that update opens;
        # the order below (open, feed, then close) keeps that true for one frame at a time.
        for update in updates:
            if update.kind == "onset":
                self._open_user_stream()
        if speech and self._user_stream is not None:
            self._user_stream.feed(self._to_stt.process(speech) if self._to_stt else speech)
        for update in updates:
            if update.kind == "speech_started":
                self._emit(SpeechStarted(self._user_item, update.audio_ms))
                self._cancel_response()
            elif update.kind == "speech_stopped":
                self._emit(SpeechStopped(self._user_item, update.audio_ms))
                self._close_user_stream(now, update.audio_ms)
            elif update.kind == "rejected":
                stream, self._user_stream = self._user_stream, None
                if stream is not None:
                    self._spawn(stream.cancel(), "stt_cancel")
                self._maybe_start_pending()

    def _open_user_stream(self) -> None:
        self._user_item = _new_id("item")
        if self._to_stt is not None:
            self._to_stt.reset()
        self._user_stream = self.stt.start()

    def _close_user_stream(self, now: float, last_voiced_ms: int) -> None:
        stream, self._user_stream = self._user_stream, None
        if stream is None:
            return
        if self._to_stt is not None:
            stream.feed(self._to_stt.flush())
        # The wait for the end of turn is counted in audio time (the silence the VAD needed),
        # so network jitter in the frames' arrival does not leak into this stage.
        silence_s = (self.vad.position_ms - last_voiced_ms) / 1000
        clock = _TurnClock(last_voiced_at=now - silence_s, end_of_turn_at=now)
        self._spawn(self._finish_turn(stream, self._user_item, clock), "stt_finish")

    async def _finish_turn(self, stream: SttStream, item_id: str, clock: _TurnClock) -> None:
        try:
            text = (await stream.finish()).strip()
        except Exception as exc:
            log.warning("stt_failed", provider=self.stt.name, error=type(exc).__name__)
            self._emit(ModelError("stt_failed", f"{self.stt.name}: {type(exc).__name__}"))
            text = ""
        clock.transcript_at = self.clock()
        if not text:
            log.info("stt_empty", item_id=item_id)
            self._maybe_start_pending()
            return
        self.history.append(Message("user", text, item_id))
        self._emit(Transcript("user", item_id, text, final=True))
        if self.vad.in_utterance:
            # The caller already speaks again: answer once, after that turn (like server VAD).
            return
        instructions, self._pending_create = self._pending_create or "", None
        self._start_response(instructions, clock)

    # ------------------------------------------------------------------ responses

    def _request_response(self, instructions: str) -> None:
        """`CreateResponse`: run now, or right after the response or caller turn in progress."""
        if self._response is not None or self.vad.in_utterance:
            self._pending_create = instructions if self._pending_create is None else self._pending_create
            return
        self._start_response(instructions, None)

    def _maybe_start_pending(self) -> None:
        if self._pending_create is None or self._response is not None or self.vad.in_utterance:
            return
        instructions, self._pending_create = self._pending_create, None
        self._start_response(instructions, None)

    def _start_response(self, instructions: str, turn: _TurnClock | None) -> None:
        if self._closed:
            return
        if self._response is not None:
            self._cancel_response()
        response_id, item_id = _new_id("resp"), _new_id("item")
        message = Message("assistant", "", item_id)
        item = _Item(item_id, response_id, message)
        self._items[item_id] = item
        response = _Response(response_id, item, instructions, turn)
        self._response = response
        self.history.append(message)
        self._emit(ResponseStarted(response_id))
        response.task = self._spawn(self._run_response(response), f"response {response_id}")

    def _cancel_response(self) -> None:
        response = self._response
        if response is None or response.task is None or response.task.done():
            return
        response.status = "cancelled"
        response.task.cancel()

    async def _run_response(self, response: _Response) -> None:
        tool_calls: list[ToolCall] = []
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        speaker = asyncio.get_running_loop().create_task(self._speak(response, sentences))
        splitter = SentenceSplitter()
        agent_text = ""
        status, reason = "completed", ""
        turn = response.turn
        try:
            instructions = self.config.instructions
            if response.instructions:
                instructions = f"{instructions}\n\n{response.instructions}"
            history = [h for h in self.history if not (isinstance(h, Message) and not h.text)]
            async for out in self.agent.respond(history, instructions=instructions, tools=self.config.tools):
                if isinstance(out, TextDelta):
                    if turn is not None and not turn.first_token_at:
                        turn.first_token_at = self.clock()
                    agent_text += out.text
                    for sentence in splitter.push(out.text):
                        if turn is not None and not turn.first_sentence_at:
                            turn.first_sentence_at = self.clock()
                        sentences.put_nowait(sentence)
                else:
                    tool_calls.append(out)
            for sentence in splitter.flush():
                if turn is not None and not turn.first_sentence_at:
                    turn.first_sentence_at = self.clock()
                sentences.put_nowait(sentence)
            sentences.put_nowait(None)
            await speaker
        except asyncio.CancelledError:
            speaker.cancel()
            with contextlib.suppress(BaseException):
                await speaker
            status = "cancelled"
        except Exception as exc:
            speaker.cancel()
            with contextlib.suppress(BaseException):
                await speaker
            log.warning("response_failed", response_id=response.response_id, error=type(exc).__name__)
            self._emit(ModelError("response_failed", f"{type(exc).__name__} in the agent or TTS"))
            status, reason = "failed", type(exc).__name__
        finally:
            self._finish_response(response, agent_text, tool_calls, status, reason)

    def _finish_response(
        self, response: _Response, agent_text: str, tool_calls: list[ToolCall], status: str, reason: str
    ) -> None:
        item = response.item
        if item.audio_ms:
            self._emit(ModelAudioDone(response.response_id, item.item_id))
        spoken = item.text
        if status == "completed":
            # What the agent wrote, even if TTS dropped nothing: the history is the agent's text.
            item.message.text = item.message.text if item.truncated else (spoken or agent_text.strip())
        else:
            # Only what reached the caller's ear can be in the history; the rest was never said.
            if not item.truncated:
                item.message.text = spoken
            item.message.interrupted = item.message.interrupted or spoken.split() != agent_text.split()
        if not item.message.text and not item.truncated:
            with contextlib.suppress(ValueError):
                self.history.remove(item.message)
        if item.text:
            # What was spoken, like the Realtime transcript: if the caller cut it, the call
            # owner cuts its record's copy to the heard part itself.
            self._emit(Transcript("assistant", item.item_id, item.text, final=True))
        if status == "completed":
            for call in tool_calls:
                self.history.append(call)
                self._emit(
                    ToolCallRequested(
                        call.call_id,
                        call.name,
                        call.arguments,
                        item_id=item.item_id,
                        response_id=response.response_id,
                    )
                )
        self._emit(ResponseDone(response.response_id, status, status_reason=reason))
        if self._response is response:
            self._response = None
        self._maybe_start_pending()

    async def _speak(self, response: _Response, sentences: asyncio.Queue[str | None]) -> None:
        item = response.item
        turn = response.turn
        down = Resampler(self.tts.sample_rate, OUTPUT_RATE) if self.tts.sample_rate != OUTPUT_RATE else None
        bytes_per_ms = self.tts.sample_rate * 2 / 1000
        while (sentence := await sentences.get()) is not None:
            offset = len(item.text) + (1 if item.text else 0)
            start_ms = item.audio_ms
            item.text = f"{item.text} {sentence}" if item.text else sentence
            got_words = False
            sentence_ms = 0.0
            async for chunk in self.tts.synthesize(sentence):
                if chunk.words:
                    got_words = True
                    item.words.extend(
                        WordTiming(offset + w.start, offset + w.end, start_ms + w.audio_ms)
                        for w in chunk.words
                    )
                if not chunk.pcm:
                    continue
                if turn is not None and not turn.first_tts_audio_at:
                    turn.first_tts_audio_at = self.clock()
                sentence_ms += len(chunk.pcm) / bytes_per_ms
                self._emit_audio(response, down.process(chunk.pcm) if down else chunk.pcm)
            if not got_words:
                item.words.extend(
                    WordTiming(offset + w.start, offset + w.end, start_ms + w.audio_ms)
                    for w in estimate_words(sentence, sentence_ms)
                )
        if down is not None:
            tail = down.flush()
            if tail:
                self._emit_audio(response, tail)

    def _emit_audio(self, response: _Response, pcm8k: bytes) -> None:
        if not pcm8k:
            return
        item = response.item
        now = self.clock()
        duration_ms = len(pcm8k) / 2 / (OUTPUT_RATE / 1000)
        if not item.audio_ms and response.turn is not None:
            self._record_latency(response, response.turn, now)
        item.audio_ms += duration_ms
        self._emit(ModelAudio(response.response_id, item.item_id, pcm16_to_ulaw(pcm8k)))

    def _record_latency(self, response: _Response, turn: _TurnClock, now: float) -> None:
        """Sent before the first audio, so the call's log has the breakdown as it plays."""

        def ms(a: float, b: float) -> float:
            return round(max(0.0, b - a) * 1000, 1) if a and b else 0.0

        latency = TurnTiming(
            response_id=response.response_id,
            item_id=response.item.item_id,
            vad_ms=ms(turn.last_voiced_at, turn.end_of_turn_at),
            stt_ms=ms(turn.end_of_turn_at, turn.transcript_at),
            agent_first_token_ms=ms(turn.transcript_at, turn.first_token_at),
            agent_first_sentence_ms=ms(turn.first_token_at, turn.first_sentence_at),
            tts_first_audio_ms=ms(turn.first_sentence_at, turn.first_tts_audio_at),
            total_ms=ms(turn.last_voiced_at, now),
        )
        self.turn_latencies.append(latency)
        log.info("turn_latency", **asdict(latency), gateway_ms=round(latency.gateway_ms, 1))
        self._emit(TurnLatency(response.response_id, latency.stages_ms()))

    # ------------------------------------------------------------------ what the caller heard

    def _on_truncate(self, item_id: str, audio_end_ms: int) -> None:
        item = self._items.get(item_id)
        if item is None:
            return
        response = self._response
        if response is not None and response.item is item:
            self._cancel_response()
        heard_ms = max(0, min(audio_end_ms, round(item.audio_ms)))
        heard = heard_text(item.text, item.words, heard_ms, item.audio_ms)
        item.truncated = True
        item.message.text = heard
        item.message.interrupted = True
        if not heard:
            with contextlib.suppress(ValueError):
                self.history.remove(item.message)
        log.info("assistant_truncated", item_id=item_id, heard_ms=heard_ms, heard=heard)
        self._emit(ItemTruncated(item_id, heard_ms))
