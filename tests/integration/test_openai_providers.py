"""The OpenAI providers of the pipeline against a local fake of the HTTP APIs, through the real SDK."""

from __future__ import annotations

import asyncio
import io
import json
import wave
from collections.abc import AsyncIterator

import pytest
from openai import AsyncOpenAI

from gateway.backends.base import SessionConfig, ToolSpec
from gateway.backends.pipeline import PipelineBackend
from gateway.backends.providers.base import Message, TextDelta, ToolCall, ToolResult
from gateway.backends.providers.offline_tts import synthesize_ulaw
from gateway.backends.providers.openai_agent import INTERRUPTED_MARK, OpenAIResponsesAgent
from gateway.backends.providers.openai_stt import OpenAIStt
from gateway.backends.providers.openai_tts import OpenAITts
from gateway.commands import SendAudio
from gateway.events import (
    ModelAudio,
    ModelEvent,
    ResponseDone,
    SpeechStarted,
    SpeechStopped,
    ToolCallRequested,
    Transcript,
)
from tests.fakes.openai_http import FakeOpenAIHttp


@pytest.fixture
async def api() -> AsyncIterator[FakeOpenAIHttp]:
    async with FakeOpenAIHttp().running() as fake:
        yield fake


@pytest.fixture
async def client(api: FakeOpenAIHttp) -> AsyncIterator[AsyncOpenAI]:
    client = AsyncOpenAI(api_key="sk-test", base_url=api.base_url, max_retries=0)
    yield client
    await client.close()


async def test_stt_uploads_the_turn_as_wav_and_reads_the_streamed_transcript(
    api: FakeOpenAIHttp, client: AsyncOpenAI
) -> None:
    api.transcripts.append("what time is it")
    stt = OpenAIStt(client, "gpt-4o-transcribe", language="en")
    pcm = bytes(range(256)) * 40
    utterance = stt.start()
    utterance.feed(pcm[:5000])
    utterance.feed(pcm[5000:])
    assert await utterance.finish() == "what time is it"
    (request,) = api.of("transcriptions")
    assert request.authorization == "Bearer sk-test"
    assert request.body["model"] == "gpt-4o-transcribe"
    assert request.body["stream"] == "true"
    assert request.body["language"] == "en"
    with wave.open(io.BytesIO(request.files["file"]), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.readframes(w.getnframes()) == pcm


async def test_stt_whisper_is_called_without_streaming(api: FakeOpenAIHttp, client: AsyncOpenAI) -> None:
    api.transcripts.append("goodbye")
    utterance = OpenAIStt(client, "whisper-1").start()
    utterance.feed(b"\x00\x01" * 800)
    assert await utterance.finish() == "goodbye"
    assert "stream" not in api.of("transcriptions")[0].body


async def test_agent_streams_text_and_function_calls(api: FakeOpenAIHttp, client: AsyncOpenAI) -> None:
    api.replies.append(
        [
            {"text": "Sure, "},
            {"text": "transferring you."},
            {"tool": "transfer_call", "arguments": '{"a": 1}'},
        ]
    )
    agent = OpenAIResponsesAgent(client, "gpt-4.1-mini")
    history = [
        Message("assistant", "Hello, you are", interrupted=True),
        Message("user", "a person please"),
        ToolCall("call_x", "lookup", "{}"),
        ToolResult("call_x", '{"ok": true}'),
    ]
    tool = ToolSpec("transfer_call", "Transfer.", {"type": "object", "properties": {}})
    out = [o async for o in agent.respond(history, instructions="Be brief.", tools=[tool])]
    assert out == [
        TextDelta("Sure, "),
        TextDelta("transferring you."),
        ToolCall("call_2", "transfer_call", '{"a": 1}'),
    ]
    body = api.of("responses")[0].body
    assert body["model"] == "gpt-4.1-mini"
    assert body["stream"] is True and body["store"] is False
    assert body["instructions"] == "Be brief."
    assert body["input"] == [
        {"role": "assistant", "content": "Hello, you are" + INTERRUPTED_MARK},
        {"role": "user", "content": "a person please"},
        {"type": "function_call", "call_id": "call_x", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_x", "output": '{"ok": true}'},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "name": "transfer_call",
            "description": "Transfer.",
            "parameters": {"type": "object", "properties": {}},
            "strict": False,
        }
    ]


async def test_tts_streams_pcm_with_voice_and_speed(api: FakeOpenAIHttp, client: AsyncOpenAI) -> None:
    tts = OpenAITts(client, "gpt-4o-mini-tts", voice="coral", speed=1.5, instructions="Warm.")
    chunks = [c async for c in tts.synthesize("Hello there.")]
    assert len(chunks) > 1  # streamed, not one blob
    assert sum(len(c.pcm) for c in chunks) == 24 * 2 * 60 * len("Hello there.")
    assert all(len(c.pcm) % 2 == 0 for c in chunks)
    body = api.of("speech")[0].body
    assert body == {
        "model": "gpt-4o-mini-tts",
        "voice": "coral",
        "input": "Hello there.",
        "response_format": "pcm",
        "speed": 1.5,
        "instructions": "Warm.",
    }
    tts1 = OpenAITts(client, "tts-1", instructions="Warm.")
    _ = [c async for c in tts1.synthesize("Hi.")]
    assert "instructions" not in api.of("speech")[1].body  # tts-1 refuses them
    with pytest.raises(ValueError, match="speed"):
        OpenAITts(client, speed=5.0)


async def test_pipeline_with_openai_providers_answers_a_spoken_turn(
    api: FakeOpenAIHttp, client: AsyncOpenAI
) -> None:
    """Caller audio in, the whole chain over HTTP, μ-law audio and the tool call out."""
    api.transcripts.append("goodbye")
    api.replies.append([{"text": "Goodbye. "}, {"text": "Take care."}, {"tool": "end_call"}])
    backend = PipelineBackend(
        SessionConfig(tools=(ToolSpec("end_call", "Hang up."),)),
        stt=OpenAIStt(client),
        agent=OpenAIResponsesAgent(client),
        tts=OpenAITts(client),
    )
    events: list[ModelEvent] = []

    async def read() -> None:
        async for event in backend.events():
            events.append(event)

    reader = asyncio.create_task(read())
    speech = b"\xff" * 1600 + synthesize_ulaw("goodbye") + b"\xff" * 8000
    for i in range(0, len(speech), 160):
        await backend.send(SendAudio(speech[i : i + 160]))
    async with asyncio.timeout(5):
        while not any(isinstance(e, ResponseDone) for e in events):  # noqa: ASYNC110 (a plain list)
            await asyncio.sleep(0.01)
    await backend.close()
    await reader
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("SpeechStarted") < kinds.index("SpeechStopped") < kinds.index("Transcript")
    assert [e.text for e in events if isinstance(e, Transcript)] == ["goodbye", "Goodbye. Take care."]
    audio = b"".join(e.audio for e in events if isinstance(e, ModelAudio))
    # Two sentences spoken separately, 24 kHz resampled to 8 kHz μ-law: one byte per 1/8 ms.
    assert abs(len(audio) / 8 - 60 * len("Goodbye.Take care.")) < 10
    (call,) = [e for e in events if isinstance(e, ToolCallRequested)]
    assert call.name == "end_call" and json.loads(call.arguments) == {}
    assert kinds[-1] == "ModelClosed"
    assert [r.body["input"] for r in api.of("speech")] == ["Goodbye.", "Take care."]
    assert isinstance(events[1], SpeechStarted) and any(isinstance(e, SpeechStopped) for e in events)
    assert backend.turn_latencies and backend.turn_latencies[0].stt_ms > 0
