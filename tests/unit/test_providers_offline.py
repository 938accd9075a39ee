"""The offline providers on their own: eSpeak NG through ctypes, PocketSphinx with a built grammar."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.backends.providers.offline_stt import DecoderPool, build_grammar, transcribe_ulaw
from gateway.backends.providers.offline_tts import EspeakTts, synthesize_pcm, synthesize_ulaw
from gateway.backends.providers.rule_agent import PHRASES, time_grammar

ALL_PHRASES = [p for phrases in PHRASES.values() for p in phrases]


@pytest.fixture(scope="module")
def pool() -> DecoderPool:
    return DecoderPool(ALL_PHRASES)


async def test_espeak_streams_chunks_with_word_timings() -> None:
    tts = EspeakTts()
    text = "The time is ten thirty. Goodbye now."
    chunks = [c async for c in tts.synthesize(text)]
    assert tts.sample_rate == 22050 and len(chunks) > 3
    words = [w for c in chunks for w in c.words]
    assert [text[w.start : w.end] for w in words] == text.replace(".", "").split()
    assert [w.audio_ms for w in words] == sorted(w.audio_ms for w in words)
    total_ms = sum(len(c.pcm) for c in chunks) / 2 / 22.05
    assert 1500 < total_ms < 4000 and words[-1].audio_ms < total_ms


async def test_espeak_stops_when_the_stream_is_dropped() -> None:
    tts = EspeakTts()
    stream = tts.synthesize("one two three four five six seven eight nine ten " * 20)
    first = await anext(stream)
    await stream.aclose()  # what a barge-in does through task cancellation
    assert first.pcm
    # The library is free again at once (the lock is not held by an abandoned synthesis).
    assert synthesize_pcm("hi")[0]


def test_speed_scales_the_speaking_rate() -> None:
    slow = len(synthesize_ulaw("what time is it", wpm=120))
    fast = len(synthesize_ulaw("what time is it", wpm=240))
    assert fast < slow * 0.75
    assert EspeakTts(speed=2.0).wpm == 350 and EspeakTts(speed=10).wpm == 450


@pytest.mark.parametrize(
    "phrase", ["what time is it", "transfer me to a person", "goodbye", "can you repeat that", "operator"]
)
async def test_the_grammar_recognises_the_agents_phrases_over_a_phone_line(
    pool: DecoderPool, phrase: str
) -> None:
    ulaw = b"\xff" * 2400 + synthesize_ulaw(phrase) + b"\xff" * 4000
    assert await transcribe_ulaw(pool, ulaw) == phrase


async def test_one_decoder_serves_many_utterances_in_a_row(pool: DecoderPool) -> None:
    """Each utterance is normalised on its own: order does not matter (offline_stt.py)."""
    for phrase in ["what time is it", "transfer me to a person", "what time is it", "goodbye"]:
        assert await transcribe_ulaw(pool, synthesize_ulaw(phrase) + b"\xff" * 4000) == phrase


async def test_noise_is_not_a_phrase(pool: DecoderPool) -> None:
    rng = np.random.default_rng(1)
    hiss = np.clip(rng.normal(0, 20, 8000), -127, 127).astype(np.int8).tobytes()
    assert await transcribe_ulaw(pool, b"\xff" * 8000) == ""
    assert await transcribe_ulaw(pool, hiss) in ("", *ALL_PHRASES)


def test_build_grammar_keeps_known_words_and_dedupes() -> None:
    grammar = build_grammar(["Hello there!", "hello there", "zorblax hi"], known={"hello", "there", "hi"})
    assert "public <utterance> = ( hello there ) | ( hi );" in grammar
    with pytest.raises(ValueError, match="at least one phrase"):
        build_grammar(["zorblax"], known=set())


def test_time_grammar_accepts_every_answer() -> None:
    grammar = time_grammar()
    assert "<hour> = one | two" in grammar and "( oh five )" in grammar and "( fifty nine )" in grammar
