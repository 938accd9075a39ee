"""Which brain a call gets: one place that turns settings into a per-call backend factory.

`SWITCHBOARD_BACKEND=auto` (the default) picks the OpenAI Realtime backend when
`OPENAI_API_KEY` is set, and the offline backend (local STT, rule agent, local TTS) when it is
not. `pipeline` runs STT → agent → TTS over OpenAI's HTTP APIs (`OPENAI_BASE_URL` points the
SDK at a compatible server). Shared clients and models are created once here and registered
on the lifespan's exit stack so they close when the app stops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from openai import AsyncOpenAI

from gateway.backends.base import BackendLeg, SessionConfig
from gateway.backends.offline import OfflineModels, offline_backend
from gateway.backends.pipeline import PipelineBackend
from gateway.backends.providers.openai_agent import OpenAIResponsesAgent
from gateway.backends.providers.openai_stt import OpenAIStt
from gateway.backends.providers.openai_tts import OpenAITts
from gateway.backends.realtime import RealtimeBackend
from gateway.config import ConfigError, Settings
from gateway.vad import VadConfig

BackendFactory = Callable[[SessionConfig], BackendLeg]


def backend_name(settings: Settings) -> str:
    """The backend `settings` select ('realtime', …), resolving 'auto'."""
    if settings.backend != "auto":
        return settings.backend
    return "realtime" if settings.openai_api_key else "offline"


async def build_backend_factory(settings: Settings, stack: contextlib.AsyncExitStack) -> BackendFactory:
    name = backend_name(settings)
    if name == "realtime":
        if not settings.openai_api_key:
            raise ConfigError(
                "OPENAI_API_KEY",
                "is not set; the realtime backend needs it",
                "export OPENAI_API_KEY=sk-…",
            )
        client = AsyncOpenAI(
            api_key=settings.openai_api_key,
            websocket_base_url=settings.realtime_url,
            max_retries=0,
        )
        stack.push_async_callback(client.close)

        def realtime(config: SessionConfig) -> BackendLeg:
            return RealtimeBackend(client, config)

        return realtime
    if name == "pipeline":
        return _pipeline_factory(settings, stack)
    if name == "offline":
        return await _offline_factory(settings)
    raise ConfigError(
        "SWITCHBOARD_BACKEND",
        f"the {name} backend is not available in this release",
        "set OPENAI_API_KEY to use the realtime backend",
    )


def vad_config(settings: Settings) -> VadConfig:
    """The pipeline VAD's parameters (gateway/vad.py documents each)."""
    return VadConfig(
        aggressiveness=settings.vad_aggressiveness,
        min_speech_ms=settings.vad_min_speech_ms,
        silence_duration_ms=settings.vad_silence_duration_ms,
        prefix_padding_ms=settings.vad_prefix_padding_ms,
    )


def _pipeline_factory(settings: Settings, stack: contextlib.AsyncExitStack) -> BackendFactory:
    if not settings.openai_api_key:
        raise ConfigError(
            "OPENAI_API_KEY",
            "is not set; the pipeline backend's OpenAI providers need it",
            "export OPENAI_API_KEY=sk-…, or SWITCHBOARD_BACKEND=offline",
        )
    # One HTTP client for every call's three providers: connections are reused between turns.
    client = AsyncOpenAI(api_key=settings.openai_api_key, max_retries=1)
    stack.push_async_callback(client.close)
    vad = vad_config(settings)

    def pipeline(config: SessionConfig) -> BackendLeg:
        return PipelineBackend(
            config,
            stt=OpenAIStt(client, settings.stt_model, language=settings.transcription_language),
            agent=OpenAIResponsesAgent(client, settings.agent_model),
            tts=OpenAITts(client, settings.tts_model, voice=settings.tts_voice, speed=settings.tts_speed),
            vad=vad,
        )

    return pipeline


async def _offline_factory(settings: Settings) -> BackendFactory:
    models = OfflineModels()
    await models.warm_up()  # the first call should not wait for the recogniser to load
    vad = vad_config(settings)

    def offline(config: SessionConfig) -> BackendLeg:
        return offline_backend(config, models, vad=vad, tts_speed=settings.tts_speed)

    return offline
