"""The streaming resampler: exact arithmetic, chunking invariance, measured quality and delay.

The quality tests hold the targets of the audio-core issue for 8 kHz ⇄ 24 kHz (alias and
image rejection ≥ 60 dB, passband ±0.5 dB over 300-3400 Hz, delay ≤ 2 ms), measured from
synthesized tones with gateway/audio/measure.py, the code bench/resample.py uses. Run with
`-s` to see the numbers. Speed is the bench's job (timings are too noisy for a unit test).
"""

from __future__ import annotations

import importlib
import math
import warnings
from types import ModuleType

import numpy as np
import pytest
from numpy.typing import NDArray

import gateway.audio.resample as resample
from gateway.audio import Resampler
from gateway.audio.measure import DelayResult, ToneResult, measure_delay, tone_response

REJECTION_DB = 60.0
PASSBAND_DB = 0.5
DELAY_MS = 2.0

PAIRS = [
    (8000, 24000),
    (24000, 8000),
    (8000, 16000),
    (16000, 8000),
    (16000, 24000),
    (24000, 16000),
    (16000, 48000),
    (48000, 8000),
    (22050, 8000),  # L/M = 160/441: gathered windows instead of block-Toeplitz products
    (8000, 22050),
    (44100, 48000),
    (48000, 44100),
]


def _load_audioop() -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module("audioop")


audioop = _load_audioop()


def noise(n: int, seed: int, full_scale: bool = False) -> NDArray[np.int16]:
    """Random PCM; full scale drives the filter's overshoot into the int16 limits."""
    rng = np.random.default_rng(seed)
    if full_scale:
        return rng.integers(-32768, 32768, n).astype(np.int16)
    return np.clip(rng.standard_normal(n) * 6000.0, -32768, 32767).astype(np.int16)


def convert(rs: Resampler, x: NDArray[np.int16]) -> bytes:
    return rs.process(x.tobytes()) + rs.flush()


def reference(rs: Resampler, x: NDArray[np.int16]) -> NDArray[np.int16]:
    """Textbook interpolate-filter-decimate in exact integers, one output at a time.

    y[j] = Σ h[n]·x_up[j·M - n] with x_up[i·L] = x[i] and zeros between; the integer sum is
    divided by 2²⁴ rounding half to even, and saturated. Output runs to the group delay
    past the last input, ⌈(len(x)·L + (N - 1)/2) / M⌉ samples.
    """
    taps = rs._taps.astype(np.int64)
    up, down, n_taps = rs._up, rs._down, taps.size
    values = x.astype(np.int64)
    count = -(-(2 * x.size * up + n_taps - 1) // (2 * down))
    out = np.empty(count, dtype=np.int64)
    for j in range(count):
        t = j * down
        first = max(0, -(-(t - n_taps + 1) // up))
        last = min(x.size - 1, t // up)
        i = np.arange(first, last + 1)
        acc = int(np.dot(taps[t - i * up], values[i])) if i.size else 0
        q, rem = divmod(acc, 1 << 24)
        if rem > 1 << 23 or (rem == 1 << 23 and q % 2):
            q += 1
        out[j] = min(max(q, -32768), 32767)
    return out.astype(np.int16)


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_matches_exact_integer_reference(in_rate: int, out_rate: int) -> None:
    rs = Resampler(in_rate, out_rate)
    for seed, full_scale in ((1, False), (2, True)):
        x = noise(301, seed, full_scale)
        assert np.frombuffer(convert(rs, x), dtype="<i2").tolist() == reference(rs, x).tolist()


@pytest.mark.parametrize(("in_rate", "out_rate"), [*PAIRS, (16000, 16000)])
def test_output_does_not_depend_on_chunking(in_rate: int, out_rate: int) -> None:
    x = noise(in_rate // 4 + 3, seed=in_rate + out_rate)
    data = x.tobytes()
    whole = convert(Resampler(in_rate, out_rate), x)
    rng = np.random.default_rng(7)
    for trial in range(3):
        rs = Resampler(in_rate, out_rate)
        pieces: list[bytes] = []
        pos = 0
        while pos < len(data):
            # Mostly small and odd-sized chunks, empty ones, and now and then a huge one.
            size = int(rng.choice([rng.integers(0, 9), rng.integers(0, 400), rng.integers(5000, 12000)]))
            pieces.append(rs.process(data[pos : pos + size]))
            pos += size
        pieces.append(rs.flush())
        assert b"".join(pieces) == whole, f"trial {trial}"
    frame = 2 * in_rate // 50  # 20 ms frames, the steady state
    rs = Resampler(in_rate, out_rate)
    framed = b"".join(rs.process(data[i : i + frame]) for i in range(0, len(data), frame))
    assert framed + rs.flush() == whole


def test_frames_in_frames_out() -> None:
    up, down = Resampler(8000, 24000), Resampler(24000, 8000)
    for _ in range(5):
        assert len(up.process(bytes(320))) == 960
        assert len(down.process(bytes(960))) == 320


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_stream_length_and_flush_reset(in_rate: int, out_rate: int) -> None:
    rs = Resampler(in_rate, out_rate)
    up, down, n_taps = rs._up, rs._down, rs._taps.size
    assert rs.delay_samples == pytest.approx((n_taps - 1) / 2 / down)
    assert rs.delay_ms == pytest.approx(rs.delay_samples / out_rate * 1000)
    for n in (0, 1, 7, 160, 441, 1000):
        x = noise(n, seed=n)
        out = convert(rs, x)
        expected = -(-(2 * n * up + n_taps - 1) // (2 * down)) if n else 0
        assert len(out) == 2 * expected, n
        assert convert(Resampler(in_rate, out_rate), x) == out  # flush left it as new
    assert rs.flush() == b""


def test_odd_byte_is_held_until_completed() -> None:
    x = noise(480, seed=3).tobytes()
    whole = convert(Resampler(24000, 8000), np.frombuffer(x, dtype="<i2"))
    rs = Resampler(24000, 8000)
    assert rs.process(x[:1]) == b""
    with pytest.raises(ValueError, match=r"^PCM16 stream ends with 1 dangling byte"):
        rs.flush()
    assert rs.process(x[1:]) + rs.flush() == whole  # the failed flush changed nothing
    rs.process(x[:3])
    rs.reset()
    assert rs.flush() == b""
    assert convert(rs, np.frombuffer(x, dtype="<i2")) == whole


def test_same_rate_is_a_passthrough() -> None:
    rs = Resampler(16000, 16000)
    x = noise(100, seed=4).tobytes()
    assert rs.process(x[:5]) + rs.process(x[5:]) == x
    assert rs.flush() == b""
    assert rs.delay_ms == 0.0


def test_invalid_rates() -> None:
    with pytest.raises(ValueError, match=r"^in_rate must be positive, got 0$"):
        Resampler(0, 8000)
    with pytest.raises(TypeError, match=r"^out_rate must be an int, got float$"):
        Resampler(8000, 24000.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^unsupported rate ratio 8000 → 44101 Hz: reduces to 44101/8000"):
        Resampler(8000, 44101)


def test_unity_gain_at_dc() -> None:
    # Every polyphase branch sums to exactly 1, so a constant stays exactly constant.
    for in_rate, out_rate in PAIRS:
        rs = Resampler(in_rate, out_rate)
        out = np.frombuffer(rs.process(np.full(4000, -1234, dtype="<i2").tobytes()), dtype="<i2")
        settled = out[math.ceil(2 * rs.delay_samples) + 1 :]
        assert settled.size > 100
        assert np.all(settled == -1234), (in_rate, out_rate)


def test_overshoot_saturates_instead_of_wrapping() -> None:
    # A full-scale 500 Hz square wave: the filter's ringing overshoots both rails.
    square = np.where((np.arange(8000) // 8) % 2 == 0, 32767, -32768).astype("<i2")
    rs = Resampler(8000, 24000)
    out = np.frombuffer(convert(rs, square), dtype="<i2")
    assert out.max() == 32767
    assert out.min() == -32768
    lag = round(rs.delay_samples)
    expected_sign = np.repeat(np.sign(square.astype(np.int32)), 3)
    middle = np.tile(np.arange(6, 18), 300) + np.repeat(np.arange(300) * 24, 12)  # away from edges
    assert np.all(np.sign(out[middle + lag]) == expected_sign[middle])


def test_clip_fallback_matches_clip_ufunc() -> None:
    # The hot path uses numpy's private clip ufunc when present; the fallback must agree.
    y = np.random.default_rng(8).standard_normal(1000) * 50000.0
    low, high = resample._INT16_MIN, resample._INT16_MAX
    expected = np.clip(y, -32768.0, 32767.0)
    assert np.array_equal(resample._clip(y.copy(), low, high, np.empty_like(y)), expected)
    assert np.array_equal(resample._clip_fallback(y.copy(), low, high, np.empty_like(y)), expected)


# --------------------------------------------------------------------------- measured quality


def factory(in_rate: int, out_rate: int) -> Resampler:
    return Resampler(in_rate, out_rate)


def worst(results: list[ToneResult]) -> ToneResult:
    return min(results, key=lambda r: r.rejection_db)


def test_alias_rejection_24k_to_8k() -> None:
    # Densely near the 4.6 kHz stop edge, where a Kaiser design's first sidelobe peaks.
    freqs = np.concatenate([np.arange(4600, 5000, 10), np.arange(5000, 11801, 50)])
    results = [tone_response(factory, 24000, 8000, float(f)) for f in freqs]
    w = worst(results)
    print(f"\n24 → 8 kHz alias rejection, 4.6-11.8 kHz: min {w.rejection_db:.1f} dB at {w.freq:.0f} Hz")
    assert w.rejection_db >= REJECTION_DB


def test_image_rejection_and_passband_8k_to_24k() -> None:
    results = [tone_response(factory, 8000, 24000, float(f)) for f in np.arange(300, 3401, 25)]
    w = worst(results)
    ripple = max(abs(r.gain_db) for r in results)
    print(f"\n8 → 24 kHz image rejection: min {w.rejection_db:.1f} dB (tone {w.freq:.0f} Hz)")
    print(f"8 → 24 kHz passband 300-3400 Hz: within ±{ripple:.4f} dB")
    assert w.rejection_db >= REJECTION_DB
    assert ripple <= PASSBAND_DB


def test_passband_24k_to_8k() -> None:
    results = [tone_response(factory, 24000, 8000, float(f)) for f in np.arange(300, 3401, 25)]
    ripple = max(abs(r.gain_db) for r in results)
    w = worst(results)
    print(
        f"\n24 → 8 kHz passband 300-3400 Hz: within ±{ripple:.4f} dB; "
        f"everything else ≥ {w.rejection_db:.1f} dB down"
    )
    assert ripple <= PASSBAND_DB
    assert w.rejection_db >= REJECTION_DB


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 24000), (24000, 8000)])
def test_measured_delay(in_rate: int, out_rate: int) -> None:
    rs = Resampler(in_rate, out_rate)
    d = measure_delay(factory, in_rate, out_rate, frame_ms=20)
    print(
        f"\n{in_rate} → {out_rate} Hz delay: lag {d.lag_ms:.4f} ms + holdback {d.holdback_mean_ms:.4f} ms "
        f"= {d.total_ms:.4f} ms (filter group delay {rs.delay_ms:.4f} ms)"
    )
    assert d.total_ms <= DELAY_MS
    assert d.holdback_min_ms == pytest.approx(0.0, abs=1e-9)
    assert d.holdback_mean_ms == pytest.approx(0.0, abs=1e-9)
    assert d.lag_ms == pytest.approx(rs.delay_ms, abs=0.002)


@pytest.mark.parametrize(
    ("in_rate", "out_rate"),
    [
        (16000, 8000),
        (8000, 16000),
        (24000, 16000),
        (16000, 24000),
        (48000, 16000),
        (22050, 8000),
        (48000, 8000),
    ],
)
def test_quality_at_other_rates(in_rate: int, out_rate: int) -> None:
    nyquist_low = min(in_rate, out_rate) / 2
    band = [
        tone_response(factory, in_rate, out_rate, float(f)) for f in np.linspace(300, 0.85 * nyquist_low, 12)
    ]
    assert max(abs(r.gain_db) for r in band) <= PASSBAND_DB
    if out_rate > in_rate:
        rejection = worst(band).rejection_db
    else:
        stop = np.linspace(1.15 * nyquist_low, 0.98 * in_rate / 2, 25)
        rejection = worst([tone_response(factory, in_rate, out_rate, float(f)) for f in stop]).rejection_db
    print(f"\n{in_rate} → {out_rate} Hz: worst alias/image {rejection:.1f} dB")
    assert rejection >= REJECTION_DB


# --------------------------------------------------------------------------- the yardsticks


class AudioopStream:
    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._rates = (in_rate, out_rate)
        self._state: object = None

    def process(self, pcm: bytes) -> bytes:
        out, self._state = audioop.ratecv(pcm, 2, 1, self._rates[0], self._rates[1], self._state)
        return bytes(out)

    def flush(self) -> bytes:
        return b""


class FixedDelay:
    """Same rate, delayed by 7 samples: a converter whose delay is known exactly."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._held = bytes(14)

    def process(self, pcm: bytes) -> bytes:
        data = self._held + pcm
        self._held = data[-14:]
        return data[:-14]

    def flush(self) -> bytes:
        return self._held


def test_measurements_catch_audioop() -> None:
    # The same measurements fail audioop.ratecv, which has no anti-alias filter.
    alias = tone_response(AudioopStream, 24000, 8000, 5000.0)
    image = worst([tone_response(AudioopStream, 8000, 24000, float(f)) for f in (1000.0, 3000.0)])
    print(
        f"\naudioop.ratecv: 5 kHz alias {alias.rejection_db:.1f} dB, worst image {image.rejection_db:.1f} dB"
    )
    assert alias.rejection_db < 1.0
    assert image.rejection_db < 40.0


def test_delay_measurement_is_exact_on_a_known_delay() -> None:
    d: DelayResult = measure_delay(FixedDelay, 8000, 8000)
    assert d.lag_ms == pytest.approx(7 / 8, abs=1e-4)
    assert d.holdback_mean_ms == pytest.approx(0.0, abs=1e-9)
