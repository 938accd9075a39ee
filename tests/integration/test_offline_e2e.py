"""The offline backend end to end over real loopback sockets, with no key and no network.

A simulated Twilio caller speaks phrases synthesized with eSpeak NG (μ-law 8 kHz, as a phone
line carries them) into the gateway served by uvicorn; the gateway answers with the offline
pipeline (WebRTC VAD → PocketSphinx → rule agent → eSpeak NG). What the bot said is checked by
ear: the audio the caller actually played is transcribed back with PocketSphinx.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator

from gateway.app import create_app
from gateway.backends.base import BackendLeg, SessionConfig
from gateway.backends.offline import OfflineModels, offline_backend
from gateway.backends.pipeline import PipelineBackend, heard_text
from gateway.backends.providers.base import Message
from gateway.backends.providers.offline_stt import DecoderPool, transcribe_ulaw
from gateway.backends.providers.offline_tts import EspeakTts, synthesize_ulaw
from gateway.backends.providers.rule_agent import GREETING, time_grammar
from gateway.config import load_settings
from gateway.server import serve_in_process
from media_streams.simulator import SimulatedCaller
from tests.conftest import AUTH_TOKEN

# 10:30 is read "ten thirty". PocketSphinx hears espeak's hours right for most hours but not all
# (six, seven and twelve come out wrong on this path: offline-backend.md), so the clock is fixed
# at an hour it hears; the check below is still a real transcription of the played audio.
FIXED_NOW = dt.datetime(2026, 11, 25, 10, 30)


class OfflineCall:
    def __init__(self, caller: SimulatedCaller, app: object, backends: list[PipelineBackend]) -> None:
        self.caller = caller
        self.app = app
        self.backends = backends

    @property
    def call(self):  # type: ignore[no-untyped-def]
        gateway = self.app.state.gateway  # type: ignore[attr-defined]
        live = list(gateway.registry.live.values())
        return live[0].call if live else gateway.registry.recent[0]

    async def say(self, phrase: str) -> None:
        await self.caller.speak(synthesize_ulaw(phrase))

    async def wait_quiet(self, quiet_ms: int = 900, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        """Keep the line open (silence) until the bot has said nothing new for `quiet_ms`."""
        deadline = time.monotonic() + timeout
        last, since = len(self.caller.received), time.monotonic()
        while time.monotonic() < deadline and self.caller.closed_code is None:
            await self.caller.send_silence(100)
            if len(self.caller.received) != last or self.caller.buffered_ms > 0:
                last, since = len(self.caller.received), time.monotonic()
            elif time.monotonic() - since >= quiet_ms / 1000:
                return
        if self.caller.closed_code is None:
            raise TimeoutError("the bot kept talking")


@contextlib.asynccontextmanager
async def offline_call(greeting: str = "") -> AsyncIterator[OfflineCall]:
    settings = load_settings(
        env={
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "SWITCHBOARD_GREETING": greeting,
            "SWITCHBOARD_STORE_PATH": "",
            "SWITCHBOARD_LOG_LEVEL": "warning",
        }
    )
    models = OfflineModels()
    await models.warm_up()
    backends: list[PipelineBackend] = []

    def factory(config: SessionConfig) -> BackendLeg:
        backend = offline_backend(config, models, clock=lambda: FIXED_NOW)
        backends.append(backend)
        return backend

    app = create_app(settings, backend_factory=factory)
    async with serve_in_process(app) as port:
        caller = SimulatedCaller(f"ws://127.0.0.1:{port}/twilio/media", auth_token=AUTH_TOKEN)
        await caller.connect()
        try:
            await caller.send_silence(300)
            yield OfflineCall(caller, app, backends)
        finally:
            await caller.hang_up()


async def test_caller_asks_the_time_and_hears_it() -> None:
    async with offline_call() as c:
        await c.say("what time is it")
        start = len(c.caller.played)
        await c.wait_quiet()
        answer = bytes(c.caller.played[start:])
        transcript = c.call.record.transcript
    assert [e["role"] for e in transcript] == ["user", "assistant"]
    assert transcript[0]["text"] == "what time is it"
    assert transcript[1]["text"] == "The time is ten thirty."
    assert len(answer) > 8 * 800  # most of a second of speech reached the caller
    # By ear: the played audio, recognised against a grammar of every possible answer.
    heard = await transcribe_ulaw(DecoderPool((), grammar=time_grammar()), answer + b"\xff" * 2400)
    assert heard == "the time is ten thirty"
    # The per-turn latency breakdown is in the call's event log.
    latency = [e for e in c.call.events if e["type"] == "turn_latency" and "vad_ms" in e]
    assert len(latency) == 1
    assert 400 <= latency[0]["vad_ms"] <= 700  # silence_duration_ms (500) decides the end of turn
    assert latency[0]["stt_ms"] < 500
    assert latency[0]["total_ms"] < 1500


async def test_transfer_me_to_a_person_calls_the_transfer_tool() -> None:
    async with offline_call() as c:
        await c.say("transfer me to a person")
        await c.wait_quiet()
        events = list(c.call.events)
        transcript = c.call.record.transcript
    tool_calls = [e for e in events if e["type"] == "tool_call"]
    assert [e["name"] for e in tool_calls] == ["transfer_call"]
    said = [e["text"] for e in transcript if e["role"] == "assistant"]
    assert any("transferring you" in text for text in said), said


async def test_barge_in_mid_sentence_keeps_only_the_heard_words() -> None:
    async with offline_call(greeting="Greet the caller.") as c:
        await c.caller.wait_for_audio(1800, timeout=5, played=True)
        await c.say("what time is it")
        await c.wait_quiet()
        backend = c.backends[0]
        events = list(c.call.events)
        transcript = c.call.record.transcript
    assert c.caller.clears, "the caller's playback was not cleared"
    barge_in = next(e for e in events if e["type"] == "barge_in")
    heard_ms = barge_in["heard_ms"]
    # The gateway's idea of what was heard matches what the simulated phone played.
    assert abs(heard_ms - c.caller.played_ms_at_clear[0]) <= 60
    assert 1800 <= heard_ms < 5000
    greeting = backend.history[0]
    assert isinstance(greeting, Message)
    assert greeting.role == "assistant" and greeting.interrupted
    # The history ends at the words heard: what eSpeak's word timings put before heard_ms.
    words, pcm_bytes = [], 0
    async for chunk in EspeakTts().synthesize(GREETING):
        words += chunk.words
        pcm_bytes += len(chunk.pcm)
    total_ms = pcm_bytes / 2 / 22.05
    expected = heard_text(GREETING, words, heard_ms, total_ms)
    assert greeting.text == expected
    assert 2 <= len(greeting.text.split()) < len(GREETING.split()) - 5
    assert GREETING.startswith(greeting.text)
    # The caller's question came next, and was answered.
    assert [m.role for m in backend.history if isinstance(m, Message)][1:] == ["user", "assistant"]
    assert transcript[0]["interrupted"] is True
    assert transcript[-1]["text"] == "The time is ten thirty."
