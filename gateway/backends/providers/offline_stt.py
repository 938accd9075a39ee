"""Local speech-to-text: PocketSphinx with a grammar built at run time from the phrases expected.

The `pocketsphinx` wheel ships a US English acoustic model and dictionary, so this needs no
download. Its general language model is useless on phone audio (offline-backend.md: about 90 %
of words wrong, 13 s to load), so the decoder gets a JSGF grammar of the phrases the offline
agent understands (`rule_agent.PHRASES`) instead: it loads in about 0.1 s and turns a caller's
utterance into the closest phrase, or nothing.

Two measured details matter on a phone line (tests/unit/test_providers_offline.py):

- **Digital silence breaks the front end.** μ-law silence decodes to exact zeros, and the
  acoustic front end (noise removal, cepstral mean normalisation) then misjudges the speech
  around it: "what time is it" came out empty. Low-level noise (σ = 30 LSB, about -60 dBFS,
  far below speech) is added to the audio, seeded per utterance so the same audio is always
  heard the same way: 38 of 42 phrases in three voices were recognised exactly, against 28
  without.
- **8 kHz in, 16 kHz model.** The model's filterbank reaches 6.8 kHz, so the decoder cannot run
  at 8 kHz; the pipeline resamples the caller's audio to 16 kHz (the band above 4 kHz stays
  empty, which the model tolerates).

- **Whole-utterance decoding beats streaming here.** Decoding while the caller speaks uses
  live cepstral mean normalisation, whose estimate carries over from the previous utterances
  of the call; on a sequence of 9 commands it recognised 7, against 9 of 9 when each utterance
  is decoded at the end of the turn with its own mean (`full_utt`). That costs about 35 ms for
  a 2 s turn (in a worker thread), so the utterance is kept while the caller speaks and decoded
  when the VAD ends the turn.
"""

from __future__ import annotations

import asyncio
import re
import warnings
from collections.abc import Iterable
from typing import Any, Final

import numpy as np

__all__ = ["DecoderPool", "PocketsphinxStt", "build_grammar", "transcribe_ulaw"]

SAMPLE_RATE: Final = 16000
NOISE_SIGMA: Final = 30.0


def _pocketsphinx() -> Any:
    with warnings.catch_warnings():
        # pocketsphinx's package imports sounddevice-era helpers; keep import-time noise out.
        warnings.simplefilter("ignore", DeprecationWarning)
        import pocketsphinx

    return pocketsphinx


def build_grammar(phrases: Iterable[str], known: set[str] | None = None) -> str:
    """A JSGF grammar accepting any one of `phrases` (lower-cased, words the dictionary knows)."""
    alternatives: list[str] = []
    for phrase in phrases:
        words = re.findall(r"[a-z']+", phrase.lower())
        if known is not None:
            words = [w for w in words if w in known]
        if words:
            alternative = " ".join(words)
            if alternative not in alternatives:
                alternatives.append(alternative)
    if not alternatives:
        raise ValueError("a grammar needs at least one phrase with known words")
    body = " | ".join(f"( {a} )" for a in alternatives)
    return f"#JSGF V1.0;\ngrammar switchboard;\npublic <utterance> = {body};\n"


class DecoderPool:
    """Decoders loaded with one grammar, shared by calls (a decoder serves one call at a time).

    Loading takes about 0.1 s, so the factory warms one up at start-up and released decoders are
    reused; a call that finds none free loads another in a worker thread.
    """

    def __init__(self, phrases: Iterable[str], *, grammar: str | None = None) -> None:
        """Recognise one of `phrases`, or, given `grammar`, sentences of that JSGF grammar."""
        self.phrases = tuple(phrases)
        self.grammar = grammar
        self._free: list[Any] = []
        self.loaded = 0

    def _load(self) -> Any:
        ps = _pocketsphinx()
        decoder = ps.Decoder(
            hmm=ps.get_model_path("en-us/en-us"),
            dict=ps.get_model_path("en-us/cmudict-en-us.dict"),
            loglevel="FATAL",
            # No dither: its random state runs on across utterances, so the same audio could be
            # heard differently depending on what came before. Our own noise is seeded per utterance.
            dither=False,
        )
        known = {w for p in self.phrases for w in re.findall(r"[a-z']+", p.lower()) if decoder.lookup_word(w)}
        decoder.add_jsgf_string("phrases", self.grammar or build_grammar(self.phrases, known))
        decoder.activate_search("phrases")
        self.loaded += 1
        return decoder

    async def warm_up(self) -> None:
        if not self._free:
            self._free.append(await asyncio.to_thread(self._load))

    async def acquire(self) -> Any:
        if self._free:
            return self._free.pop()
        return await asyncio.to_thread(self._load)

    def release(self, decoder: Any) -> None:
        self._free.append(decoder)


class _Utterance:
    """One utterance: audio is kept while the caller speaks and decoded when the turn ends."""

    def __init__(self, owner: PocketsphinxStt) -> None:
        self._owner = owner
        self._buf = bytearray()

    def feed(self, pcm: bytes) -> None:
        self._buf += pcm

    async def finish(self) -> str:
        pcm, self._buf = self._owner.add_noise(bytes(self._buf)), bytearray()  # same audio, same noise
        if not pcm:
            return ""
        async with self._owner.lock:
            decoder = await self._owner.decoder()
            return await asyncio.to_thread(_decode, decoder, pcm)

    async def cancel(self) -> None:
        self._buf.clear()


def _decode(decoder: Any, pcm: bytes) -> str:
    decoder.start_utt()
    # full_utt: normalise the cepstra over this utterance alone (batch CMN), see the module doc.
    decoder.process_raw(pcm, False, True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return str(hyp.hypstr) if hyp is not None else ""


class PocketsphinxStt:
    """`SpeechToText` for one call, with a decoder from `pool` held for the call's lifetime."""

    name = "pocketsphinx"
    sample_rate = SAMPLE_RATE

    def __init__(self, pool: DecoderPool, *, seed: int = 0) -> None:
        self.pool = pool
        self.lock = asyncio.Lock()  # one utterance at a time on the decoder
        self._decoder: Any = None
        self.seed = seed

    async def decoder(self) -> Any:
        if self._decoder is None:
            self._decoder = await self.pool.acquire()
        return self._decoder

    def add_noise(self, pcm: bytes) -> bytes:
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)
        samples += np.random.default_rng(self.seed).normal(0.0, NOISE_SIGMA, samples.size)
        return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()

    def start(self) -> _Utterance:
        return _Utterance(self)

    async def aclose(self) -> None:
        async with self.lock:
            if self._decoder is not None:
                self.pool.release(self._decoder)
                self._decoder = None


async def transcribe_ulaw(pool: DecoderPool, ulaw: bytes) -> str:
    """Recognise μ-law 8 kHz audio as the pipeline would (tests and the bench hear the bot)."""
    from gateway.audio import Resampler, ulaw_to_pcm16

    up = Resampler(8000, SAMPLE_RATE)
    stt = PocketsphinxStt(pool)
    utterance = stt.start()
    utterance.feed(up.process(ulaw_to_pcm16(ulaw)) + up.flush())
    try:
        return await utterance.finish()
    finally:
        await stt.aclose()
