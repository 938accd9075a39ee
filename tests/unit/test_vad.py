"""The pipeline's VAD: WebRTC frame decisions behind an energy gate, turned into turn events."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.audio import ulaw_to_pcm16
from gateway.backends.providers.offline_tts import synthesize_ulaw
from gateway.vad import Vad, VadConfig, VadUpdate

FRAME = 320  # 20 ms of PCM16 at 8 kHz


def silence(ms: int) -> bytes:
    return b"\x00\x00" * 8 * ms


def feed(vad: Vad, pcm: bytes) -> tuple[list[VadUpdate], bytes]:
    """Frame by frame, as the pipeline gets it."""
    updates: list[VadUpdate] = []
    out = bytearray()
    for i in range(0, len(pcm), FRAME):
        u, audio = vad.process(pcm[i : i + FRAME])
        updates += u
        out += audio
    return updates, bytes(out)


@pytest.fixture(scope="module")
def speech() -> bytes:
    return ulaw_to_pcm16(synthesize_ulaw("hello, can you tell me what time it is"))


def test_a_turn_is_onset_started_stopped_with_prefix_padding(speech: bytes) -> None:
    vad = Vad(VadConfig(prefix_padding_ms=300, min_speech_ms=200, silence_duration_ms=500))
    updates, audio = feed(vad, silence(1000) + speech + silence(800))
    kinds = [u.kind for u in updates]
    assert kinds == ["onset", "speech_started", "speech_stopped"]
    onset, started, stopped = updates
    assert 900 <= onset.audio_ms <= 1200  # espeak starts with a few ms of near-silence
    assert started.audio_ms == onset.audio_ms
    speech_ms = len(speech) // 16
    assert abs(stopped.audio_ms - (1000 + speech_ms)) <= 120  # the end of the last voiced frame
    # The recogniser got the 300 ms before the onset, the speech, and the silence that ended it.
    assert len(audio) // 16 == 300 + (stopped.audio_ms + 500 - onset.audio_ms)
    assert not vad.in_utterance


def test_a_short_burst_is_rejected_and_never_starts_speech(speech: bytes) -> None:
    """The cough guard: 120 ms of sound is under min_speech_ms."""
    vad = Vad(VadConfig(min_speech_ms=200, silence_duration_ms=500))
    burst = speech[4000 : 4000 + 16 * 120]
    updates, _ = feed(vad, silence(500) + burst + silence(800))
    assert [u.kind for u in updates] == ["onset", "rejected"]


def test_min_speech_ms_delays_speech_started(speech: bytes) -> None:
    short = feed(Vad(VadConfig(min_speech_ms=100)), silence(400) + speech)[0]
    long = feed(Vad(VadConfig(min_speech_ms=400)), silence(400) + speech)[0]
    assert [u.kind for u in short][:2] == [u.kind for u in long][:2] == ["onset", "speech_started"]


def test_line_noise_below_the_energy_gate_is_silence() -> None:
    """WebRTC's VAD alone calls steady noise speech; the -45 dBFS gate keeps it out."""
    rng = np.random.default_rng(0)
    noise = np.clip(rng.normal(0, 30, 8000 * 3), -32768, 32767).astype("<i2").tobytes()
    updates, audio = feed(Vad(), noise)
    assert updates == [] and audio == b""


def test_odd_sized_input_is_framed_internally(speech: bytes) -> None:
    pcm = silence(500) + speech + silence(700)
    whole = feed(Vad(), pcm)[0]
    vad = Vad()
    pieces: list[VadUpdate] = []
    for i in range(0, len(pcm), 123 * 2):
        pieces += vad.process(pcm[i : i + 123 * 2])[0]
    assert pieces == whole


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="mode"):
        VadConfig(aggressiveness=4)
    with pytest.raises(ValueError, match="frames"):
        VadConfig(frame_ms=25)
