"""G.711 codecs against `audioop` over every input value, PCM16 helpers, public exports."""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest

import gateway.audio
from gateway.audio import (
    ALAW_SILENCE,
    ULAW_SILENCE,
    alaw_to_pcm16,
    array_to_pcm16,
    pcm16_rms_dbfs,
    pcm16_to_alaw,
    pcm16_to_array,
    pcm16_to_ulaw,
    samples_for_ms,
    silence_alaw,
    silence_pcm16,
    silence_ulaw,
    ulaw_to_pcm16,
)


def _load_audioop() -> ModuleType:
    # Deprecated in 3.11-3.12 (pytest makes that warning an error); audioop-lts on ≥ 3.13.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module("audioop")


audioop = _load_audioop()

# Every int16 bit pattern, in order 0x0000..0xFFFF (0, 1, ..., 32767, -32768, ..., -1).
EVERY_SAMPLE = np.arange(1 << 16, dtype=np.uint32).astype("<u2").tobytes()
EVERY_CODE = bytes(range(256))


def test_ulaw_encode_matches_audioop_for_every_sample() -> None:
    assert pcm16_to_ulaw(EVERY_SAMPLE) == audioop.lin2ulaw(EVERY_SAMPLE, 2)


def test_alaw_encode_matches_audioop_for_every_sample() -> None:
    assert pcm16_to_alaw(EVERY_SAMPLE) == audioop.lin2alaw(EVERY_SAMPLE, 2)


def test_ulaw_decode_matches_audioop_for_every_code() -> None:
    assert ulaw_to_pcm16(EVERY_CODE) == audioop.ulaw2lin(EVERY_CODE, 2)


def test_alaw_decode_matches_audioop_for_every_code() -> None:
    assert alaw_to_pcm16(EVERY_CODE) == audioop.alaw2lin(EVERY_CODE, 2)


@pytest.mark.parametrize(
    ("encode", "decode"), [(pcm16_to_ulaw, ulaw_to_pcm16), (pcm16_to_alaw, alaw_to_pcm16)]
)
def test_decoded_values_are_fixed_points(
    encode: Callable[[bytes], bytes], decode: Callable[[bytes], bytes]
) -> None:
    levels = decode(EVERY_CODE)
    assert decode(encode(levels)) == levels


def test_known_codes() -> None:
    # G.711 Table 2a/2b: the largest magnitudes and zero.
    assert pcm16_to_ulaw(np.array([0, 32767, -32768], dtype="<i2").tobytes()) == b"\xff\x80\x00"
    assert pcm16_to_alaw(np.array([0, 32767, -32768], dtype="<i2").tobytes()) == b"\xd5\xaa\x2a"
    assert np.frombuffer(ulaw_to_pcm16(b"\x80\x00"), dtype="<i2").tolist() == [32124, -32124]
    assert np.frombuffer(alaw_to_pcm16(b"\xaa\x2a"), dtype="<i2").tolist() == [32256, -32256]


@pytest.mark.parametrize("encode", [pcm16_to_ulaw, pcm16_to_alaw])
def test_encoders_reject_odd_length(encode: Callable[[bytes], bytes]) -> None:
    with pytest.raises(ValueError, match=r"^PCM16 data must have an even number of bytes, got 3$"):
        encode(b"\x00\x01\x02")


def test_empty_frames() -> None:
    assert pcm16_to_ulaw(b"") == b""
    assert ulaw_to_pcm16(b"") == b""
    assert pcm16_to_alaw(b"") == b""
    assert alaw_to_pcm16(b"") == b""


def test_silence_frames() -> None:
    assert ULAW_SILENCE == 0xFF
    assert ALAW_SILENCE == 0xD5
    assert silence_ulaw(20) == b"\xff" * 160
    assert silence_alaw(20) == b"\xd5" * 160
    assert ulaw_to_pcm16(silence_ulaw(20)) == bytes(320)
    assert alaw_to_pcm16(silence_alaw(20)) == np.full(160, 8, dtype="<i2").tobytes()  # A-law has no 0
    assert silence_pcm16(20, 24000) == bytes(960)
    assert silence_pcm16(20, 22050) == bytes(882)
    assert silence_pcm16(0, 8000) == b""


def test_durations_must_be_whole_samples() -> None:
    assert samples_for_ms(20, 44100) == 882
    with pytest.raises(ValueError, match=r"^10 ms at 22050 Hz is not a whole number of samples$"):
        silence_pcm16(10, 22050)
    with pytest.raises(ValueError, match=r"^duration must not be negative, got -1 ms$"):
        silence_ulaw(-1)
    with pytest.raises(ValueError, match=r"^sample rate must be positive, got 0 Hz$"):
        silence_pcm16(20, 0)


def test_array_conversions_round_and_saturate() -> None:
    data = array_to_pcm16(np.array([0.4, 0.5, 1.5, -2.5, 40000.0, -40000.0, 32767.4]))
    assert pcm16_to_array(data).tolist() == [0, 0, 2, -2, 32767, -32768, 32767]
    assert (
        array_to_pcm16(np.array([70000, -70000, 12], dtype=np.int64))
        == np.array([32767, -32768, 12], dtype="<i2").tobytes()
    )
    with pytest.raises(ValueError, match=r"^samples must be finite"):
        array_to_pcm16(np.array([0.0, math.nan]))
    with pytest.raises(ValueError, match=r"^expected a 1-D array of samples, got shape \(2, 2\)$"):
        array_to_pcm16(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"^PCM16 data must have an even number of bytes, got 1$"):
        pcm16_to_array(b"\x00")


def test_rms_level() -> None:
    sine = 32767.0 * np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000)
    assert pcm16_rms_dbfs(array_to_pcm16(sine)) == pytest.approx(-3.01, abs=0.01)
    assert pcm16_rms_dbfs(silence_pcm16(20, 8000)) == -math.inf
    assert pcm16_rms_dbfs(b"") == -math.inf


def test_public_api() -> None:
    # Other modules (media adapters, SIP, playback) import exactly these names.
    expected = {
        "ulaw_to_pcm16",
        "pcm16_to_ulaw",
        "alaw_to_pcm16",
        "pcm16_to_alaw",
        "Resampler",
        "silence_ulaw",
        "silence_pcm16",
        "dtmf_tone",
        "dtmf_tone_ulaw",
        "DtmfDetector",
    }
    assert expected <= set(gateway.audio.__all__)
    for name in gateway.audio.__all__:
        assert getattr(gateway.audio, name) is not None
    resampler = gateway.audio.Resampler(8000, 24000)
    assert isinstance(resampler.delay_ms, float)
    assert isinstance(resampler.delay_samples, float)
