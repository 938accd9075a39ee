"""PipelineBackend with scripted providers: turn-taking, streaming, tools, barge-in and history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from gateway.backends.base import SessionConfig, ToolSpec
from gateway.backends.pipeline import PipelineBackend, SentenceSplitter, heard_text
from gateway.backends.providers.base import (
    AgentOutput,
    HistoryItem,
    Message,
    SpeechChunk,
    TextDelta,
    ToolCall,
    ToolResult,
    WordTiming,
    estimate_words,
)
from gateway.backends.providers.offline_tts import synthesize_ulaw
from gateway.commands import (
    AddUserText,
    CancelResponse,
    CreateResponse,
    SendAudio,
    SendToolOutput,
    TruncateItem,
    UpdateSession,
)
from gateway.events import (
    ItemTruncated,
    ModelAudio,
    ModelEvent,
    ModelReady,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    ToolCallRequested,
    Transcript,
    TurnLatency,
)

WORD_MS = 100  # the fake TTS speaks every word in exactly 100 ms


class FakeStt:
    name = "fake-stt"
    sample_rate = 8000

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.fed: list[int] = []

    def start(self) -> FakeUtterance:
        return FakeUtterance(self)

    async def aclose(self) -> None:
        pass


class FakeUtterance:
    def __init__(self, owner: FakeStt) -> None:
        self.owner = owner
        self.n = 0

    def feed(self, pcm: bytes) -> None:
        self.n += len(pcm)

    async def finish(self) -> str:
        self.owner.fed.append(self.n)
        return self.owner.texts.pop(0) if self.owner.texts else ""

    async def cancel(self) -> None:
        pass


class ScriptAgent:
    """Each call to respond() plays the next script; a `None` step waits for `self.go`."""

    name = "script"

    def __init__(self, *scripts: list[AgentOutput | None]) -> None:
        self.scripts = list(scripts)
        self.seen: list[tuple[list[HistoryItem], str]] = []
        self.go = asyncio.Event()
        self.cancelled = 0

    async def respond(
        self, history: Sequence[HistoryItem], *, instructions: str, tools: Sequence[ToolSpec]
    ) -> AsyncIterator[AgentOutput]:
        self.seen.append((list(history), instructions))
        try:
            for step in self.scripts.pop(0) if self.scripts else [TextDelta("OK.")]:
                if step is None:
                    await self.go.wait()
                else:
                    yield step
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def aclose(self) -> None:
        pass


class WordTts:
    """8 kHz 'speech': WORD_MS of a constant level per word, with exact word timings."""

    name = "words"
    sample_rate = 8000

    def __init__(self) -> None:
        self.spoken: list[str] = []

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        self.spoken.append(text)
        position = 0
        for i, word in enumerate(text.split(" ")):
            start = text.index(word, position)
            position = start + len(word)
            timing = WordTiming(start, position, i * WORD_MS)
            yield SpeechChunk(b"\x10\x00" * 8 * WORD_MS, (timing,))
            await asyncio.sleep(0)

    async def aclose(self) -> None:
        pass


class Harness:
    def __init__(self, agent: ScriptAgent, stt_texts: Sequence[str] = (), **config: object) -> None:
        self.stt = FakeStt(list(stt_texts))
        self.tts = WordTts()
        self.agent = agent
        self.backend = PipelineBackend(
            SessionConfig(**config),  # type: ignore[arg-type]
            stt=self.stt,
            agent=agent,
            tts=self.tts,
        )
        self.events: list[ModelEvent] = []
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Harness:
        async def read() -> None:
            async for event in self.backend.events():
                self.events.append(event)

        self._reader = asyncio.create_task(read())
        await self.until(lambda: any(isinstance(e, ModelReady) for e in self.events))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.backend.close()
        assert self._reader is not None
        await self._reader

    async def until(self, predicate: object, timeout: float = 3.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            # The backend's events land in a list this harness fills; poll it briefly.
            while not predicate():  # type: ignore[operator]  # noqa: ASYNC110
                await asyncio.sleep(0.005)

    def of(self, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events if isinstance(e, kind)]

    async def done(self, n: int = 1) -> None:
        await self.until(lambda: len(self.of(ResponseDone)) >= n)

    async def speak(self, ulaw: bytes) -> None:
        for i in range(0, len(ulaw), 160):
            await self.backend.send(SendAudio(ulaw[i : i + 160]))


SPEECH = b"\xff" * 800 + synthesize_ulaw("what time is it") + b"\xff" * 6000


async def test_create_response_speaks_sentence_by_sentence() -> None:
    agent = ScriptAgent([TextDelta("Hello there. "), TextDelta("How can "), TextDelta("I help?")])
    async with Harness(agent, instructions="Be kind.") as h:
        await h.backend.send(CreateResponse("Greet the caller."))
        await h.done()
    started, done = h.of(ResponseStarted)[0], h.of(ResponseDone)[0]
    assert done.status == "completed" and done.response_id == started.response_id
    assert h.tts.spoken == ["Hello there.", "How can I help?"]  # TTS started on the first sentence
    audio = b"".join(e.audio for e in h.of(ModelAudio))
    assert len(audio) == 8 * WORD_MS * 6  # six words; μ-law 8 kHz: one byte per sample
    (transcript,) = h.of(Transcript)
    assert transcript.role == "assistant" and transcript.text == "Hello there. How can I help?"
    assert agent.seen[0][1] == "Be kind.\n\nGreet the caller."
    assert h.backend.history == [Message("assistant", "Hello there. How can I help?", transcript.item_id)]


async def test_a_spoken_turn_is_transcribed_and_answered_with_latency() -> None:
    agent = ScriptAgent([TextDelta("It is noon.")])
    async with Harness(agent, ["what time is it"]) as h:
        await h.speak(SPEECH)
        await h.done()
    kinds = [type(e).__name__ for e in h.events]
    assert kinds.index("SpeechStarted") < kinds.index("SpeechStopped") < kinds.index("ResponseStarted")
    user = h.of(Transcript)[0]
    assert (user.role, user.text) == ("user", "what time is it")
    assert h.stt.fed[0] > 16 * 800  # the utterance (8 kHz PCM16), padding included
    (latency,) = h.of(TurnLatency)
    assert latency.stages_ms["vad_ms"] == 500  # audio time: silence_duration_ms
    assert latency.stages_ms["total_ms"] >= latency.stages_ms["vad_ms"]
    assert kinds.index("TurnLatency") < kinds.index("ModelAudio")
    assert h.backend.turn_latencies[0].response_id == latency.response_id
    assert [type(m).__name__ for m in agent.seen[0][0]] == ["Message"]


async def test_tool_calls_come_before_response_done_and_the_result_continues_the_turn() -> None:
    call = ToolCall("call_1", "lookup", '{"q": 1}')
    agent = ScriptAgent([TextDelta("Let me check."), call], [TextDelta("Found it.")])
    async with Harness(agent) as h:
        await h.backend.send(AddUserText("[The caller pressed the key 1.]"))
        await h.backend.send(CreateResponse())
        await h.done()
        kinds = [type(e).__name__ for e in h.events]
        assert kinds.index("Transcript") < kinds.index("ToolCallRequested") < kinds.index("ResponseDone")
        requested = h.of(ToolCallRequested)[0]
        assert requested.response_id == h.of(ResponseDone)[0].response_id
        await h.backend.send(SendToolOutput("call_1", '{"ok": true}'))
        await h.backend.send(CreateResponse())
        await h.done(2)
    history = agent.seen[1][0]
    assert history[-2:] == [call, ToolResult("call_1", '{"ok": true}')]
    assert isinstance(history[0], Message) and history[0].role == "user"


async def test_truncate_cuts_the_history_to_the_heard_words() -> None:
    words = "one two three four five six seven eight nine ten."
    async with Harness(ScriptAgent([TextDelta(words)])) as h:
        await h.backend.send(CreateResponse())
        await h.done()
        item = h.of(Transcript)[0].item_id
        await h.backend.send(TruncateItem(item, 460))
    (message,) = h.backend.history
    assert isinstance(message, Message)
    assert message.text == "one two three four five"  # word 5 (400-500 ms) heard past its middle
    assert message.interrupted
    assert h.of(ItemTruncated) == [ItemTruncated(item, 460)]


async def test_truncate_at_zero_drops_the_message() -> None:
    async with Harness(ScriptAgent([TextDelta("Hello there.")])) as h:
        await h.backend.send(CreateResponse())
        await h.done()
        await h.backend.send(TruncateItem(h.of(Transcript)[0].item_id, 0))
    assert h.backend.history == []


async def test_caller_speech_cancels_the_response_in_progress() -> None:
    """Our VAD is the server VAD: speech cancels the running agent and TTS streams."""
    agent = ScriptAgent([TextDelta("First sentence here. "), None, TextDelta("Never said.")])
    async with Harness(agent, ["what time is it"]) as h:
        await h.backend.send(CreateResponse())
        await h.until(lambda: bool(h.of(ModelAudio)))
        await h.speak(SPEECH[:8000])
        await h.until(lambda: bool(h.of(SpeechStarted)))
        await h.done()
        assert h.of(ResponseDone)[0].status == "cancelled"
        assert agent.cancelled == 1
        cut = h.of(Transcript)[0]
        assert cut.text == "First sentence here."
        await h.backend.send(TruncateItem(cut.item_id, 140))
        await h.speak(SPEECH[8000:])
        await h.done(2)
    first = h.backend.history[0]
    assert isinstance(first, Message) and first.text == "First" and first.interrupted
    assert [type(m).__name__ for m in h.backend.history] == ["Message", "Message", "Message"]
    assert "Never said." not in "".join(h.tts.spoken)


async def test_create_response_while_one_runs_is_queued_not_dropped() -> None:
    agent = ScriptAgent([TextDelta("A. "), None, TextDelta("B.")], [TextDelta("C.")])
    async with Harness(agent) as h:
        await h.backend.send(CreateResponse())
        await h.until(lambda: bool(h.of(ModelAudio)))
        await h.backend.send(CreateResponse())
        agent.go.set()
        await h.done(2)
    assert [e.status for e in h.of(ResponseDone)] == ["completed", "completed"]
    assert [t.text for t in h.of(Transcript)] == ["A. B.", "C."]


async def test_cancel_response_and_update_session() -> None:
    agent = ScriptAgent([TextDelta("Wait. "), None], [TextDelta("Hi.")])
    async with Harness(agent) as h:
        await h.backend.send(CreateResponse())
        await h.until(lambda: bool(h.of(ModelAudio)))
        await h.backend.send(CancelResponse())
        await h.done()
        await h.backend.send(UpdateSession("You are the billing agent.", ()))
        await h.backend.send(CreateResponse())
        await h.done(2)
    assert h.of(ResponseDone)[0].status == "cancelled"
    assert agent.seen[1][1] == "You are the billing agent."


async def test_agent_failure_is_a_failed_response_not_a_dead_call() -> None:
    class Broken(ScriptAgent):
        async def respond(  # type: ignore[override]
            self, history: Sequence[HistoryItem], *, instructions: str, tools: Sequence[ToolSpec]
        ) -> AsyncIterator[AgentOutput]:
            yield TextDelta("Hm")
            raise RuntimeError("boom")

    async with Harness(Broken()) as h:
        await h.backend.send(CreateResponse())
        await h.done()
        assert h.of(ResponseDone)[0].status == "failed"
        await h.backend.send(CreateResponse())  # the call goes on
        await h.done(2)


@pytest.mark.parametrize(
    ("pieces", "sentences"),
    [
        (["Hello. How", " are you? Fine"], ["Hello.", "How are you?"]),
        (["It costs 3.5 dollars. ", "OK"], ["It costs 3.5 dollars."]),
        (["Wow!! ", "Yes… ", "no"], ["Wow!!", "Yes…"]),
    ],
)
def test_sentence_splitter(pieces: list[str], sentences: list[str]) -> None:
    splitter = SentenceSplitter()
    out = [s for piece in pieces for s in splitter.push(piece)]
    assert out == sentences


def test_sentence_splitter_cuts_run_ons_and_flushes() -> None:
    splitter = SentenceSplitter(max_chars=20)
    assert splitter.push("one two three four five six seven") == ["one two three four"]
    assert splitter.flush() == ["five six seven"]
    assert splitter.flush() == []


def test_heard_text_and_estimated_words() -> None:
    text = "Hello there, general Kenobi."
    words = estimate_words(text, 1000.0)
    assert [text[w.start : w.end] for w in words] == ["Hello", "there,", "general", "Kenobi."]
    assert heard_text(text, words, 0, 1000) == ""
    assert heard_text(text, words, 400, 1000) == "Hello there"  # trailing comma dropped
    assert heard_text(text, words, 1000, 1000) == text
