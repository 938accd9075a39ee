"""The offline backend: the pipeline with local providers only. No network, no key, no download.

PocketSphinx (speech-to-text, a grammar built from the rule agent's phrases), the rule agent,
and eSpeak NG (text-to-speech), all from wheels that `pip install -e .` brings. It is what
`SWITCHBOARD_BACKEND=auto` picks without `OPENAI_API_KEY`, so a newcomer hears the whole gateway
work (turn-taking, barge-in, tools, hang-up) before owning any account.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from gateway.backends.base import SessionConfig
from gateway.backends.pipeline import PipelineBackend
from gateway.backends.providers.offline_stt import DecoderPool, PocketsphinxStt
from gateway.backends.providers.offline_tts import EspeakTts
from gateway.backends.providers.rule_agent import PHRASES, RuleAgent
from gateway.vad import VadConfig

__all__ = ["OfflineModels", "offline_backend"]


class OfflineModels:
    """What offline calls share in one process: the recogniser's warm decoders."""

    def __init__(self) -> None:
        self.decoders = DecoderPool(phrase for phrases in PHRASES.values() for phrase in phrases)

    async def warm_up(self) -> None:
        """Load one decoder now, so the first call does not wait for it."""
        await self.decoders.warm_up()


def offline_backend(
    config: SessionConfig,
    models: OfflineModels,
    *,
    vad: VadConfig | None = None,
    tts_speed: float = 1.0,
    clock: Callable[[], dt.datetime] | None = None,
) -> PipelineBackend:
    """One call's offline backend. `clock` is the rule agent's wall clock (tests fix it)."""
    return PipelineBackend(
        config,
        stt=PocketsphinxStt(models.decoders),
        agent=RuleAgent(clock),
        tts=EspeakTts(speed=tts_speed),
        vad=vad,
        name="offline",
    )
