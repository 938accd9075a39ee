"""Bench: Switchboard's resampler vs `audioop.ratecv` vs soxr HQ, measured in one run.

    pip install -e '.[bench]'        # soxr is a bench-only extra
    python bench/resample.py         # 8 ⇄ 24 kHz, the phone ⇄ Realtime path
    python bench/resample.py --more  # also 8 ⇄ 16, 16 ⇄ 24, 16 ⇄ 48 kHz
    python bench/resample.py --check # exit 1 if our resampler misses a target

Per direction and method, from synthesized tones (gateway/audio/measure.py, the same code
the unit tests assert with):

- alias dB: least rejection of a tone swept over 1.15×-0.98× the two Nyquist frequencies
  (4.6-11.8 kHz for 24 → 8 kHz), i.e. input power over all output power;
- image dB: least rejection of a 300 Hz-0.85×Nyquist tone going up (300-3400 Hz for
  8 → 24 kHz), i.e. input power over everything in the output but the tone itself;
- pass ±dB: largest gain error over the same 300 Hz-0.85×Nyquist band;
- delay ms: lag of the output waveform plus the least holdback (input fed but not yet
  answered by output) with 20 ms frames; mean ms uses the mean holdback instead, which
  differs when a converter emits output in bursts (soxr's stream API does);
- µs/frame: best of several runs over 20 ms frames, bytes in and bytes out for every
  method (soxr gets np.frombuffer/tobytes around it, as the gateway would need); the raw
  ndarray cost of soxr is printed below the table.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

from gateway.audio import Resampler  # noqa: E402
from gateway.audio.measure import ConverterFactory, StreamConverter, measure_delay, tone_response  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # deprecated in 3.11-3.12
    import audioop  # on Python ≥ 3.13 the audioop-lts package provides it

try:
    import soxr
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("bench/resample.py needs soxr: pip install -e '.[bench]'")

TARGET_REJECTION_DB = 60.0
TARGET_PASSBAND_DB = 0.5
TARGET_DELAY_MS = 2.0
TARGET_COST_RATIO = 1.5
FRAME_MS = 20


class AudioopStream:
    """`audioop.ratecv` with its state carried across frames (it holds no tail)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._rates = (in_rate, out_rate)
        self._state: tuple[int, tuple[tuple[int, int], ...]] | None = None

    def process(self, pcm: bytes) -> bytes:
        out, self._state = audioop.ratecv(pcm, 2, 1, self._rates[0], self._rates[1], self._state)
        return bytes(out)

    def flush(self) -> bytes:
        return b""


class SoxrStream:
    """soxr's streaming API at HQ quality, int16, with bytes in and out."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")

    def process(self, pcm: bytes) -> bytes:
        return bytes(self._stream.resample_chunk(np.frombuffer(pcm, dtype="<i2")).tobytes())

    def flush(self) -> bytes:
        return bytes(self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True).tobytes())


METHODS: dict[str, ConverterFactory] = {
    "switchboard": Resampler,
    "audioop.ratecv": AudioopStream,
    "soxr HQ": SoxrStream,
}


@dataclass
class Row:
    method: str
    alias_db: float | None = None
    image_db: float | None = None
    pass_db: float = math.nan
    delay_ms: float = math.nan
    mean_ms: float = math.nan
    us_per_frame: float = math.nan
    ratio: float = math.nan


def sweep(start: float, stop: float, step: float) -> NDArray[np.float64]:
    return np.arange(start, stop + step / 2, step)


def measure_quality(factory: ConverterFactory, in_rate: int, out_rate: int, step: float, row: Row) -> None:
    nyquist_low = min(in_rate, out_rate) / 2.0
    band = sweep(300.0, 0.85 * nyquist_low, step)
    passband = [tone_response(factory, in_rate, out_rate, f) for f in band]
    row.pass_db = max(abs(r.gain_db) for r in passband)
    if out_rate > in_rate:
        row.image_db = min(r.rejection_db for r in passband)
    else:
        tones = sweep(1.15 * nyquist_low, 0.98 * in_rate / 2.0, step)
        row.alias_db = min(tone_response(factory, in_rate, out_rate, f).rejection_db for f in tones)
    delay = measure_delay(factory, in_rate, out_rate, frame_ms=FRAME_MS)
    row.delay_ms, row.mean_ms = delay.total_ms, delay.mean_ms


def best_time(run: Callable[[], None], calls: int, repeats: int) -> float:
    """Best per-call time in µs over `repeats` runs of `calls` calls."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best / calls * 1e6


def measure_speed(
    in_rate: int, out_rate: int, rows: dict[str, Row], loops: int, repeats: int
) -> tuple[float, float]:
    """µs per 20 ms frame for each method (interleaved, best of `repeats`).

    Returns soxr's raw ndarray cost per frame, and ours relative to it.
    """
    rng = np.random.default_rng(1)
    n = in_rate * FRAME_MS // 1000
    frames = [(rng.standard_normal(n) * 3000.0).astype("<i2").tobytes() for _ in range(50)]
    arrays = [np.frombuffer(f, dtype="<i2") for f in frames]
    streams: dict[str, StreamConverter] = {name: make(in_rate, out_rate) for name, make in METHODS.items()}
    raw = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")

    def loop(process: Callable[[bytes], bytes]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(loops):
                for frame in frames:
                    process(frame)

        return run

    def raw_loop() -> None:
        for _ in range(loops):
            for array in arrays:
                raw.resample_chunk(array)

    calls = loops * len(frames)
    times = {name: math.inf for name in streams}
    raw_time = math.inf
    for _ in range(repeats):  # interleave methods so that drifts in clock speed hit all alike
        for name, stream in streams.items():
            times[name] = min(times[name], best_time(loop(stream.process), calls, 1))
        raw_time = min(raw_time, best_time(raw_loop, calls, 1))
    for name, row in rows.items():
        row.us_per_frame = times[name]
        row.ratio = times[name] / times["soxr HQ"]
    return raw_time, times["switchboard"] / raw_time


def fmt(value: float | None, digits: int, width: int) -> str:
    if value is None:
        return "—".rjust(width)
    if math.isinf(value):
        return ("inf" if value > 0 else "-inf").rjust(width)
    if abs(value) < 0.5 * 10.0**-digits:
        value = 0.0  # no "-0.00"
    return f"{value:{width}.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--more", action="store_true", help="add 8⇄16, 16⇄24 and 16⇄48 kHz rows")
    parser.add_argument("--quick", action="store_true", help="coarser sweeps, shorter timing")
    parser.add_argument("--check", action="store_true", help="exit 1 if our resampler misses a target")
    args = parser.parse_args(argv)

    pairs = [(8000, 24000)]
    if args.more:
        pairs += [(8000, 16000), (16000, 24000), (16000, 48000)]
    step = 200.0 if args.quick else 50.0
    loops, repeats = (4, 5) if args.quick else (20, 9)

    print(
        f"Python {platform.python_version()}, numpy {np.__version__}, soxr {soxr.__version__}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}; 20 ms frames, tone sweep step {step:g} Hz"
    )
    header = (
        f"{'':16}{'alias dB':>9}{'image dB':>9}{'pass ±dB':>9}{'delay ms':>9}{'mean ms':>9}"
        f"{'µs/frame':>9}{'× soxr':>8}"
    )
    failures: list[str] = []
    notes: list[str] = []
    for low, high in pairs:
        for in_rate, out_rate in ((low, high), (high, low)):
            rows = {name: Row(name) for name in METHODS}
            for name, factory in METHODS.items():
                measure_quality(factory, in_rate, out_rate, step, rows[name])
            raw_us, raw_ratio = measure_speed(in_rate, out_rate, rows, loops, repeats)
            print(f"\n{in_rate} → {out_rate} Hz   ({Resampler(in_rate, out_rate)!r})")
            print(header)
            for row in rows.values():
                print(
                    f"  {row.method:14}{fmt(row.alias_db, 1, 9)}{fmt(row.image_db, 1, 9)}"
                    f"{fmt(row.pass_db, 3, 9)}{fmt(row.delay_ms, 2, 9)}{fmt(row.mean_ms, 2, 9)}"
                    f"{fmt(row.us_per_frame, 2, 9)}{fmt(row.ratio, 2, 8)}"
                )
            notes.append(
                f"{in_rate} → {out_rate}: soxr HQ with ndarray in/out (no bytes conversion) "
                f"{raw_us:.2f} µs/frame; switchboard is {raw_ratio:.2f}× that"
            )
            ours = rows["switchboard"]
            checks = [
                ("alias", ours.alias_db is None or ours.alias_db >= TARGET_REJECTION_DB),
                ("image", ours.image_db is None or ours.image_db >= TARGET_REJECTION_DB),
                ("passband", ours.pass_db <= TARGET_PASSBAND_DB),
                ("delay", ours.delay_ms <= TARGET_DELAY_MS),
                ("cost", ours.ratio <= TARGET_COST_RATIO),
            ]
            failures += [f"{in_rate} → {out_rate}: {what}" for what, ok in checks if not ok]
    print()
    for note in notes:
        print(note)
    print(
        f"\ntargets for switchboard: alias and image ≥ {TARGET_REJECTION_DB:g} dB, passband within "
        f"±{TARGET_PASSBAND_DB:g} dB, delay ≤ {TARGET_DELAY_MS:g} ms, cost ≤ {TARGET_COST_RATIO:g}× soxr HQ"
    )
    print("all met" if not failures else "MISSED: " + "; ".join(failures))
    return 1 if failures and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
