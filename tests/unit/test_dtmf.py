"""DTMF: generate → detect round trips, Q.24-style acceptance limits, and no talk-off on speech."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

import gateway.audio.dtmf as dtmf
from gateway.audio import (
    DTMF_DIGITS,
    DtmfDetector,
    array_to_pcm16,
    dtmf_tone,
    dtmf_tone_ulaw,
    pcm16_to_ulaw,
    silence_pcm16,
    silence_ulaw,
)

GAP_MS = 50


def keyed(
    digits: str, rate: int = 8000, tone_ms: int = 100, gap_ms: int = GAP_MS, level: float = -6.0
) -> bytes:
    return b"".join(dtmf_tone(d, rate, tone_ms, level) + silence_pcm16(gap_ms, rate) for d in digits)


def two_tone(low: float, high: float, ms: int, low_amp: float, high_amp: float, rate: int = 8000) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return array_to_pcm16(low_amp * np.sin(2 * np.pi * low * t) + high_amp * np.sin(2 * np.pi * high * t))


def detect(pcm: bytes, rate: int = 8000) -> str:
    return "".join(DtmfDetector(rate).process(pcm))


def speech_like(seconds: float, rate: int, seed: int) -> NDArray[np.int16]:
    """Babble that exercises a DTMF receiver's talk-off defences.

    Pink noise plus a voiced source whose pitch glides over 60-300 Hz, so that its harmonics
    sweep across every DTMF frequency, shaped by two moving formants (around 500 and
    1500 Hz), all amplitude-modulated at a syllable rate of 4 Hz and peaking near full scale.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    pink = np.fft.irfft(spectrum / np.sqrt(np.maximum(freqs, 1.0)), n)
    syllables = (0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 2 * np.pi))) ** 2
    f0 = 180 + 90 * np.sin(2 * np.pi * 0.37 * t) + 30 * np.sin(2 * np.pi * 1.3 * t)
    pitch_phase = 2 * np.pi * np.cumsum(f0) / rate
    formant1 = 500 + 300 * np.sin(2 * np.pi * 0.23 * t)
    formant2 = 1500 + 700 * np.sin(2 * np.pi * 0.31 * t + 1)
    voiced = np.zeros(n)
    for k in range(1, 40):
        fk = k * f0
        gain = np.exp(-(((fk - formant1) / 150) ** 2)) + 0.6 * np.exp(-(((fk - formant2) / 200) ** 2)) + 0.02
        voiced += np.where(fk < rate / 2, gain * np.sin(k * pitch_phase), 0.0)
    x = syllables * (0.5 * pink / pink.std() + voiced / voiced.std())
    babble: NDArray[np.int16] = np.rint(x / np.abs(x).max() * 30000).astype(np.int16)
    return babble


# --------------------------------------------------------------------------- round trips


def test_all_digits_round_trip_pcm() -> None:
    got = DtmfDetector().process(keyed(DTMF_DIGITS))
    print(f"\nPCM 8 kHz: sent {DTMF_DIGITS}, detected {''.join(got)}")
    assert got == list(DTMF_DIGITS)


def test_all_digits_round_trip_ulaw() -> None:
    ulaw = b"".join(dtmf_tone_ulaw(d) + silence_ulaw(GAP_MS) for d in DTMF_DIGITS)
    assert ulaw == pcm16_to_ulaw(keyed(DTMF_DIGITS))
    got = DtmfDetector().process_ulaw(ulaw)
    print(f"\nμ-law: sent {DTMF_DIGITS}, detected {''.join(got)}")
    assert got == list(DTMF_DIGITS)


@pytest.mark.parametrize("rate", [16000, 24000, 44100, 48000])
def test_round_trip_at_other_rates(rate: int) -> None:
    assert detect(keyed(DTMF_DIGITS, rate), rate) == DTMF_DIGITS


def test_detection_does_not_depend_on_chunking() -> None:
    pcm = keyed("159#D0*")
    rng = np.random.default_rng(3)
    for _ in range(5):
        detector = DtmfDetector()
        got: list[str] = []
        pos = 0
        while pos < len(pcm):
            size = int(rng.integers(0, 700))  # odd sizes split samples
            got += detector.process(pcm[pos : pos + size])
            pos += size
        assert "".join(got) == "159#D0*"


def test_each_press_reported_once_while_held() -> None:
    detector = DtmfDetector()
    tone = dtmf_tone("8", duration_ms=2000)
    got = [d for i in range(0, len(tone), 320) for d in detector.process(tone[i : i + 320])]
    assert got == ["8"]
    assert detector.process(silence_pcm16(100, 8000) + dtmf_tone("8")) == ["8"]


# --------------------------------------------------------------------------- talk-off


def test_no_digits_in_30_seconds_of_speech_like_noise() -> None:
    babble = speech_like(30.0, 8000, seed=1)
    detector = DtmfDetector()
    got = [d for i in range(0, babble.size, 160) for d in detector.process(babble[i : i + 160].tobytes())]
    print(f"\n30 s speech-like noise: {len(got)} false digits")
    assert got == []


def test_speech_like_noise_would_fool_a_detector_without_the_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    # The talk-off test above is not vacuous: the same babble fools a receiver that only
    # looks for the strongest row and column tones (level and twist checks kept).
    monkeypatch.setattr(dtmf, "_MIN_PURITY", 0.0)
    monkeypatch.setattr(dtmf, "_RELATIVE_PEAK_DB", 0.0)
    monkeypatch.setattr(dtmf, "_ROW_HARMONIC_DB", -100.0)
    monkeypatch.setattr(dtmf, "_COL_HARMONIC_DB", -100.0)
    false_digits = DtmfDetector().process(speech_like(30.0, 8000, seed=1).tobytes())
    print(f"\nwithout purity/peak/harmonic checks: {len(false_digits)} false digits")
    assert len(false_digits) >= 5


# --------------------------------------------------------------------------- acceptance limits


def test_noise_tolerance() -> None:
    pcm = np.frombuffer(keyed(DTMF_DIGITS), dtype="<i2").astype(np.float64)
    tone_power = (32767 * 10 ** (-6 / 20) / 2) ** 2  # each tone's amplitude², i.e. 2× its power
    rng = np.random.default_rng(5)
    noisy = pcm + rng.standard_normal(pcm.size) * math.sqrt(tone_power / 10 ** (10 / 10))  # 10 dB SNR
    assert detect(array_to_pcm16(noisy)) == DTMF_DIGITS


def test_levels() -> None:
    assert detect(keyed(DTMF_DIGITS, level=-20.0)) == DTMF_DIGITS  # each tone -26 dBFS
    assert detect(keyed(DTMF_DIGITS, level=-30.0)) == ""  # each tone -36 dBFS: below -33


@pytest.mark.parametrize(
    ("deviation", "expected"), [(-0.015, True), (0.015, True), (-0.035, False), (0.035, False)]
)
def test_frequency_tolerance(deviation: float, expected: bool) -> None:
    # Q.24: operate within ±1.5 %, do not operate beyond ±3.5 %.
    for digit in DTMF_DIGITS:
        low, high = dtmf._FREQS_OF[digit]
        pcm = two_tone(low * (1 + deviation), high * (1 + deviation), 100, 8000, 8000) + silence_pcm16(
            50, 8000
        )
        assert detect(pcm) == (digit if expected else ""), digit


@pytest.mark.parametrize(("twist_db", "expected"), [(-7.0, True), (3.0, True), (-10.0, False), (6.0, False)])
def test_twist(twist_db: float, expected: bool) -> None:
    # twist = high-group level - low-group level; accepted from -8 dB to +4 dB.
    for digit in DTMF_DIGITS:
        low, high = dtmf._FREQS_OF[digit]
        pcm = two_tone(low, high, 100, 8000, 8000 * 10 ** (twist_db / 20)) + silence_pcm16(50, 8000)
        assert detect(pcm) == (digit if expected else ""), digit


def test_single_tones_are_not_digits() -> None:
    for freq in dtmf.ROW_FREQS + dtmf.COL_FREQS:
        assert detect(two_tone(freq, freq, 200, 8000, 0)) == ""


@pytest.mark.parametrize(("tone_ms", "expected"), [(40, 1), (20, 0)])
def test_minimum_duration(tone_ms: int, expected: int) -> None:
    # Every alignment of the tone against the 102-sample blocks.
    for offset in range(0, 102, 3):
        pcm = bytes(2 * offset) + dtmf_tone("5", duration_ms=tone_ms) + silence_pcm16(60, 8000)
        assert len(detect(pcm)) == expected, offset


def test_short_dropout_is_bridged_and_pause_separates() -> None:
    tone = np.frombuffer(dtmf_tone("7", duration_ms=200), dtype="<i2")
    for offset in range(0, 102, 3):
        cut = tone.copy()
        cut[800 + offset : 880 + offset] = 0  # a 10 ms interruption
        assert detect(cut.tobytes()) == "7", offset
    for offset in range(0, 102, 3):  # 40 ms pauses, Q.24's minimum
        pcm = bytes(2 * offset) + keyed("777", tone_ms=60, gap_ms=40)
        assert detect(pcm) == "777", offset


# --------------------------------------------------------------------------- generator


def test_tone_shape() -> None:
    pcm = dtmf_tone("#", rate=8000, duration_ms=100, level_dbfs=-6.0)
    samples = np.frombuffer(pcm, dtype="<i2")
    assert samples.size == 800
    assert np.abs(samples).max() <= round(32767 * 10 ** (-6 / 20))
    edges = np.abs(np.concatenate([samples[:4], samples[-4:]]))
    assert edges.max() < 0.15 * np.abs(samples).max()  # 2 ms raised-cosine ramps, no click
    assert len(dtmf_tone("a", rate=22050, duration_ms=40)) == 2 * 882
    assert dtmf_tone("d") == dtmf_tone("D")


def test_generator_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"^not a DTMF digit: 'E' \(expected one of 123A456B789C\*0#D\)$"):
        dtmf_tone("E")
    with pytest.raises(ValueError, match=r"^not a DTMF digit: '12'"):
        dtmf_tone("12")
    with pytest.raises(ValueError, match=r"^level must be at most 0 dBFS, got 3.0$"):
        dtmf_tone("1", level_dbfs=3.0)
    with pytest.raises(ValueError, match=r"^duration must be positive, got 0 ms$"):
        dtmf_tone("1", duration_ms=0)
    with pytest.raises(ValueError, match=r"^rate must be at least 8000 Hz"):
        DtmfDetector(4000)


def test_reset_forgets_a_half_heard_key() -> None:
    detector = DtmfDetector()
    tone = dtmf_tone("3", duration_ms=100)
    assert detector.process(tone[:200]) == []  # under one block
    detector.reset()
    assert detector.process(tone[200:]) == ["3"]
