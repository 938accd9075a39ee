"""Measure a streaming resampler with synthesized tones: rejection, passband gain and delay.

`bench/resample.py` runs these on our `Resampler`, `audioop.ratecv` and soxr, and
`tests/unit/test_resample.py` asserts the targets with the same code, so the numbers the bench
prints are the ones the tests hold. Anything with `process(bytes) -> bytes` and
`flush() -> bytes` can be measured; numpy is the only dependency.

- `tone_response`: one sine through the converter. Its output is least-squares fitted with
  a sine at the input frequency (when that frequency exists at the output rate); the gain
  is the fitted amplitude over the input's, and the rejection is the input power over the
  power of everything else: aliases, images, distortion and rounding noise together. For a
  tone above the output Nyquist frequency all output is unwanted.
- `measure_delay`: a multi-tone signal (24 tones in 300-3400 Hz, random phases) fed in
  frames. Delay = lag + holdback. Lag is how far the output waveform trails the input
  (cross-correlation, refined by the least-squares phase of each tone: the group delay of
  a linear-phase converter). Holdback is input time fed minus output time emitted after
  each frame: audio a converter keeps before emitting it (soxr's stream API emits
  time-aligned output, but late, and in bursts). The algorithmic delay is the lag plus
  the least holdback; with bursty output a call pays the mean holdback on average.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DelayResult",
    "StreamConverter",
    "ToneResult",
    "measure_delay",
    "run_stream",
    "tone_response",
]


class StreamConverter(Protocol):
    """A stateful PCM16 converter: our `Resampler`, or an adapter around another one."""

    def process(self, pcm: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


ConverterFactory = Callable[[int, int], StreamConverter]


@dataclass(frozen=True, slots=True)
class ToneResult:
    freq: float
    gain_db: float  # output level of the tone itself, relative to the input (-inf if absent)
    rejection_db: float  # input tone power / power of everything else in the output


@dataclass(frozen=True, slots=True)
class DelayResult:
    lag_ms: float  # how far the output waveform trails the input
    holdback_min_ms: float  # least input time not yet answered by output, after a frame
    holdback_mean_ms: float  # the same, averaged over frames (larger if output is bursty)

    @property
    def total_ms(self) -> float:
        """Algorithmic delay: the lag plus the least holdback."""
        return self.lag_ms + self.holdback_min_ms

    @property
    def mean_ms(self) -> float:
        """Average delay at this frame size: the lag plus the mean holdback."""
        return self.lag_ms + self.holdback_mean_ms


def run_stream(
    converter: StreamConverter, samples: NDArray[np.int16], frame: int | None = None
) -> tuple[NDArray[np.float64], list[int]]:
    """Feed `samples` in frames of `frame` samples (all at once if None), then flush.

    Returns the whole output and the cumulative output length after each frame.
    """
    data = samples.astype("<i2").tobytes()
    step = 2 * frame if frame else max(len(data), 1)
    chunks: list[bytes] = []
    emitted: list[int] = []
    total = 0
    for start in range(0, len(data), step):
        out = converter.process(data[start : start + step])
        chunks.append(out)
        total += len(out) // 2
        emitted.append(total)
    chunks.append(converter.flush())
    return np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.float64), emitted


def _fit_sines(
    y: NDArray[np.float64], t: NDArray[np.float64], freqs: NDArray[np.float64]
) -> tuple[NDArray[np.complex128], NDArray[np.float64]]:
    """Least-squares fit y ≈ Σ Re(z_k·exp(2πi·f_k·t)); returns (z, residual)."""
    phase = 2.0 * math.pi * np.outer(t, freqs)
    basis = np.concatenate([np.cos(phase), -np.sin(phase)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    k = freqs.size
    return coef[:k] + 1j * coef[k:], y - basis @ coef


def tone_response(
    factory: ConverterFactory,
    in_rate: int,
    out_rate: int,
    freq: float,
    *,
    seconds: float = 0.25,
    amplitude: float = 16384.0,
    settle: float = 0.05,
) -> ToneResult:
    """Send a sine of `freq` Hz through a fresh converter; see the module docstring.

    The first and last `settle` seconds of output are left out, to skip the filter's
    ramp-in and ramp-out (soxr's lag and its 21 ms holdback included).
    """
    n = round(seconds * in_rate)
    x = np.rint(amplitude * np.sin(2.0 * math.pi * freq * np.arange(n) / in_rate)).astype(np.int16)
    y, _ = run_stream(factory(in_rate, out_rate), x)
    start, stop = round(settle * out_rate), round((seconds - settle) * out_rate)
    segment = y[start:stop]
    if segment.size < stop - start:
        raise ValueError(f"converter returned {y.size} samples, expected at least {stop}")
    input_power = amplitude * amplitude / 2.0
    if freq < out_rate / 2.0:
        z, residual = _fit_sines(segment, np.arange(start, stop) / out_rate, np.array([float(freq)]))
        gain_db = 20.0 * math.log10(max(abs(complex(z[0])), 1e-300) / amplitude)
    else:
        residual, gain_db = segment, -math.inf
    unwanted = float(np.mean(residual * residual))
    rejection_db = math.inf if unwanted == 0.0 else 10.0 * math.log10(input_power / unwanted)
    return ToneResult(float(freq), gain_db, rejection_db)


def measure_delay(
    factory: ConverterFactory,
    in_rate: int,
    out_rate: int,
    *,
    frame_ms: int = 20,
    seconds: float = 0.6,
    max_lag_ms: float = 60.0,
    seed: int = 0,
) -> DelayResult:
    """Lag and holdback of a fresh converter fed `frame_ms` frames; see the module docstring."""
    rng = np.random.default_rng(seed)
    freqs = np.sort(rng.uniform(300.0, 3400.0, 24))
    phases = rng.uniform(0.0, 2.0 * math.pi, freqs.size)

    def signal(t: NDArray[np.float64]) -> NDArray[np.float64]:
        tones: NDArray[np.float64] = np.cos(2.0 * math.pi * np.outer(t, freqs) + phases)
        total: NDArray[np.float64] = tones.sum(axis=1) * 1000.0
        return total

    frame = in_rate * frame_ms // 1000
    n = round(seconds * in_rate) // frame * frame
    x = np.rint(signal(np.arange(n) / in_rate)).astype(np.int16)
    y, emitted = run_stream(factory(in_rate, out_rate), x, frame)

    # Holdback after each frame past the first 100 ms.
    deficits = np.array(
        [
            (k + 1) * frame / in_rate - emitted[k] / out_rate
            for k in range(len(emitted))
            if (k + 1) * frame >= 0.1 * in_rate
        ]
    )

    # Coarse lag: cross-correlation with the ideal output, on the output grid.
    max_lag = round(max_lag_ms / 1000.0 * out_rate)
    start, stop = max(max_lag, round(0.1 * out_rate)), round((seconds - 0.1) * out_rate)
    if y.size < stop:
        raise ValueError(f"converter returned {y.size} samples, expected at least {stop}")
    segment = y[start:stop]
    reference = signal(np.arange(start - max_lag, stop + max_lag) / out_rate)
    corr = np.correlate(reference, segment, mode="valid")  # index i ↔ lag max_lag - i
    coarse = (max_lag - int(np.argmax(corr))) / out_rate

    # Fine lag: each tone's phase shift; phase k·2π ambiguity resolved with the coarse lag.
    z, _ = _fit_sines(segment, np.arange(start, stop) / out_rate, freqs)
    shift = np.angle(np.exp(1j * phases) / z)  # 2π·f·lag, modulo 2π
    turns = np.round(freqs * coarse - shift / (2.0 * math.pi))
    lags = (shift / (2.0 * math.pi) + turns) / freqs
    lag = float(np.sum(freqs**2 * lags) / np.sum(freqs**2))  # least squares in phase
    return DelayResult(
        lag_ms=lag * 1000.0,
        holdback_min_ms=float(deficits.min()) * 1000.0,
        holdback_mean_ms=float(deficits.mean()) * 1000.0,
    )
