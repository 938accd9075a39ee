"""Local text-to-speech: eSpeak NG driven through ctypes, from the `espeakng-loader` wheel.

The wheel ships `libespeak-ng` and its voice data, so `pip install` is all it needs (no apt
package, no model download). eSpeak NG is a formant synthesizer: robotic, but thousands of
times faster than real time on one core, with word events that give the audio time of every
word — exactly what barge-in needs to map "heard 1.2 s" back to text.

The library is one process-wide instance with global voice and rate settings, so every
synthesis holds `_LOCK`; each takes a few ms, so calls queue briefly rather than contend.
Synthesis runs in a worker thread (`SYNCHRONOUS` mode: the callback receives audio as it is
produced) and chunks cross to the event loop one by one; a cancelled stream makes the callback
return 1, which stops eSpeak at its next chunk.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

from gateway.audio import Resampler, pcm16_to_ulaw
from gateway.backends.providers.base import SpeechChunk, WordTiming

__all__ = ["DEFAULT_VOICE", "EspeakTts", "espeak_available", "synthesize_pcm", "synthesize_ulaw"]

DEFAULT_VOICE: Final = "en-us"
DEFAULT_WPM: Final = 175  # eSpeak's own default speaking rate, words per minute

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2
_INITIALIZE_DONT_EXIT: Final = 0x8000  # report errors instead of calling exit()
_POS_CHARACTER: Final = 1
_CHARS_UTF8: Final = 1
_EVENT_LIST_TERMINATED: Final = 0
_EVENT_WORD: Final = 1
_PARAM_RATE: Final = 1
_BUFFER_MS: Final = 60  # audio per callback: small, so the first audio comes early


class _Event(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character position of the word
        ("length", ctypes.c_int),  # characters in the word
        ("audio_position", ctypes.c_int),  # ms into this synthesis
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_void_p),  # a union of int / char* / char[8]; unused here
    )


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass
class _Sink:
    """Where the callback of the synthesis in progress delivers (set under `_LOCK`)."""

    deliver: Callable[[bytes, tuple[WordTiming, ...]], None]
    cancelled: threading.Event


_LOCK = threading.Lock()
_lib: Any = None
_rate = 0
_sink: _Sink | None = None


@_Callback  # type: ignore[untyped-decorator]
def _on_audio(wav: Any, n_samples: int, events: Any) -> int:
    sink = _sink
    if sink is None:
        return 1
    if sink.cancelled.is_set():
        return 1  # stop synthesis
    words: list[WordTiming] = []
    i = 0
    while events[i].type != _EVENT_LIST_TERMINATED:
        event = events[i]
        if event.type == _EVENT_WORD:
            start = max(0, event.text_position - 1)
            words.append(WordTiming(start, start + event.length, float(event.audio_position)))
        i += 1
    pcm = ctypes.string_at(wav, n_samples * 2) if n_samples > 0 and wav else b""
    if pcm or words:
        sink.deliver(pcm, tuple(words))
    return 0


def _load() -> Any:
    """Load and initialise the library once (under `_LOCK`)."""
    global _lib, _rate
    if _lib is None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
        lib.espeak_SetVoiceByName.argtypes = (ctypes.c_char_p,)
        lib.espeak_SetParameter.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
        lib.espeak_Synth.argtypes = (
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        )  # fmt: skip
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS,
            _BUFFER_MS,
            espeakng_loader.get_data_path().encode(),
            _INITIALIZE_DONT_EXIT,
        )
        if rate <= 0:
            raise RuntimeError("eSpeak NG failed to initialise")
        lib.espeak_SetSynthCallback(_on_audio)
        _lib, _rate = lib, rate
    return _lib


def espeak_available() -> bool:
    try:
        with _LOCK:
            _load()
    except (ImportError, OSError, RuntimeError):
        return False
    return True


def sample_rate() -> int:
    with _LOCK:
        _load()
    return _rate


def _synthesize(text: str, voice: str, wpm: int, sink: _Sink) -> None:
    """Blocking: speak `text` into `sink`."""
    global _sink
    data = text.encode("utf-8")
    buf = ctypes.create_string_buffer(data)
    with _LOCK:
        lib = _load()
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice {voice!r}")
        lib.espeak_SetParameter(_PARAM_RATE, wpm, 0)
        _sink = sink
        try:
            status = lib.espeak_Synth(buf, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        finally:
            _sink = None
    if status != 0 and not sink.cancelled.is_set():
        raise RuntimeError(f"eSpeak NG synthesis failed (status {status})")


def synthesize_pcm(text: str, voice: str = DEFAULT_VOICE, wpm: int = DEFAULT_WPM) -> tuple[bytes, int]:
    """Blocking, whole text: (PCM16, sample rate). For tools, tests and the demo caller."""
    parts: list[bytes] = []
    _synthesize(text, voice, wpm, _Sink(lambda pcm, _w: parts.append(pcm), threading.Event()))
    return b"".join(parts), _rate


def synthesize_ulaw(text: str, voice: str = DEFAULT_VOICE, wpm: int = DEFAULT_WPM) -> bytes:
    """`text` spoken as a phone line carries it: μ-law 8 kHz (what a simulated caller sends)."""
    pcm, rate = synthesize_pcm(text, voice, wpm)
    resampler = Resampler(rate, 8000)
    return pcm16_to_ulaw(resampler.process(pcm) + resampler.flush())


class EspeakTts:
    """`TextToSpeech` with eSpeak NG. `speed` scales the rate like OpenAI's (1.0 = 175 wpm)."""

    name = "espeak-ng"

    def __init__(self, voice: str = DEFAULT_VOICE, speed: float = 1.0) -> None:
        self.voice = voice
        self.wpm = max(80, min(450, round(DEFAULT_WPM * speed)))
        self.sample_rate = sample_rate()

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[SpeechChunk | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()

        def deliver(pcm: bytes, words: tuple[WordTiming, ...]) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, SpeechChunk(pcm, words))

        def run() -> None:
            try:
                _synthesize(text, self.voice, self.wpm, _Sink(deliver, cancelled))
            except BaseException as exc:
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            else:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        worker = loop.run_in_executor(None, run)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled.set()
            # The thread ends at eSpeak's next chunk; wait so nothing outlives the stream.
            await asyncio.shield(worker)

    async def aclose(self) -> None:
        pass
