"""A streaming polyphase resampler that is alias-free and adds under 2 ms of delay.

Why not the usual tools: `audioop.ratecv` interpolates linearly, with no anti-alias filter
(a 5 kHz tone at 24 kHz comes out of 24 → 8 kHz at full level, as 3 kHz), and soxr's HQ
filter is clean but its stream holds audio back: 13 ms at best and 42 ms on average with
20 ms frames, as it emits in bursts (bench/resample.py), which a phone call pays on every
turn. Here one linear-phase FIR is designed for the pair of rates:

- rational ratio out/in = L/M (reduced with gcd); the FIR runs at the up-sampled rate
  in·L and is applied in polyphase form, so only the taps that meet a real input sample
  are computed (K = N/L taps per output sample);
- cut-off at the lower of the two Nyquist frequencies, pass edge 0.85× and stop edge 1.15×
  that frequency (3.4 kHz / 4.6 kHz when one side is 8 kHz, which keeps the 300-3400 Hz
  telephone band of ITU-T G.712 flat); a tone in the 4.0-4.6 kHz transition band aliases
  only into 3.4-4.0 kHz, above the telephone band;
- Kaiser-windowed sinc, 65 dB design attenuation (β = 6.2). For 8 ⇄ 24 kHz that is 81 taps
  at 24 kHz: 40 samples = 1.67 ms of group delay, ≥ 63 dB stopband, ±0.01 dB passband.
  `bench/resample.py` measures these against `audioop` and soxr in one run.

Exactness. Taps are quantised to integers m in Q24 and stored as the float64 values m·2⁻²⁴;
samples are integers. Every product is then an integer multiple of 2⁻²⁴, and so is every
partial sum of an output's window, with magnitude below 2¹⁵ times the L1 norm of a branch
(< 2, checked by `_check_exact`): under 2⁴⁰ units of 2⁻²⁴, well inside float64's 53-bit
significand. So every multiplication and addition is exact, in whatever order or blocking
BLAS picks (fused multiply-adds included), and zero taps add exact zeros. Each output
sample is thus a pure function of the input samples in its window: the output is bit-exact
whatever the chunking of the input. Results are rounded half to even, then saturated to
int16 (an overshoot must not wrap around into a click).

Streaming. `process` emits every output sample whose newest input has arrived (the filter is
causal, no look-ahead is held back), so 20 ms in gives exactly 20 ms out at the integer
ratios. `flush` ends the stream: it pushes zeros through to emit the samples still inside
the filter, up to the group delay past the last input, and returns the resampler to its
initial state for a new stream.
"""

from __future__ import annotations

import functools
import importlib
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import NDArray

__all__ = ["Resampler"]

_COEF_BITS = 24
_COEF_SCALE = float(1 << _COEF_BITS)
_PASS_EDGE = 0.85  # fractions of the lower Nyquist frequency
_STOP_EDGE = 1.15
_ATTENUATION_DB = 65.0
_MAX_RATIO_TERM = 1024  # L and M after reduction; 44.1 kHz ⇄ 8 kHz needs 441
_STEP = 2048  # most input samples per internal step: bounds scratch memory for huge chunks
_MAX_PLANS = 8
# Outputs per block-Toeplitz product, tuned with bench/resample.py: small blocks keep the span
# (and the wasted zero taps) short, large ones amortise numpy's per-call overhead.
_BLOCK_TARGET_UP = 24
_BLOCK_TARGET_DOWN = 8

_INT16_MIN = np.array(-32768.0)
_INT16_MAX = np.array(32767.0)


def _clip_fallback(
    y: NDArray[np.float64], low: NDArray[np.float64], high: NDArray[np.float64], out: NDArray[np.float64]
) -> NDArray[np.float64]:
    np.minimum(y, high, out=out)
    return np.maximum(out, low, out=out)


def _find_clip_ufunc() -> Callable[..., Any]:
    """numpy's `clip` ufunc, without the Python wrapper of `np.clip` (≈1.5 µs per call).

    It is not exported publicly, so look for it where numpy 2 keeps it and fall back to
    minimum + maximum (identical results, ≈0.4 µs slower per frame).
    """
    try:
        with warnings.catch_warnings():  # numpy 1.26 ships pickle-compatibility stubs there
            warnings.simplefilter("ignore")
            umath = importlib.import_module("numpy._core.umath")
    except ImportError:  # pragma: no cover - numpy 1.x
        return _clip_fallback
    clip = getattr(umath, "clip", None)
    return clip if isinstance(clip, np.ufunc) else _clip_fallback


_clip = _find_clip_ufunc()


@functools.lru_cache(maxsize=32)
def _design(up: int, down: int) -> NDArray[np.int64]:
    """Prototype low-pass at the up-sampled rate, Q24 integers, length a multiple of `up`.

    The cut-off relative to the up-sampled rate in·L is 1/(2·max(L, M)), so the design
    depends on the reduced ratio only. Every polyphase branch is normalised to sum exactly to
    2²⁴: unity gain at DC for every output sample, so a constant input gives a constant
    output and no DC-modulated images.
    """
    span = max(up, down)
    transition = 2.0 * math.pi * (_STOP_EDGE - _PASS_EDGE) / (2.0 * span)  # rad/sample
    # Kaiser's empirical formulas for the length and β of a window meeting the attenuation.
    length = (_ATTENUATION_DB - 7.95) / (2.285 * transition) + 1.0
    beta = 0.1102 * (_ATTENUATION_DB - 8.7)
    per_phase = math.ceil(length / up)
    n_taps = per_phase * up
    centre = (n_taps - 1) / 2.0
    n = np.arange(n_taps, dtype=np.float64)
    ideal = (up / span) * np.sinc((n - centre) / span)
    taps = np.rint(ideal * np.kaiser(n_taps, beta) * _COEF_SCALE).astype(np.int64)
    phases = taps.reshape(per_phase, up)  # phases[k, p] = taps[k·L + p]
    largest = np.argmax(np.abs(phases), axis=0)
    phases[largest, np.arange(up)] += (1 << _COEF_BITS) - phases.sum(axis=0)
    taps.flags.writeable = False
    return taps


def _check_rate(name: str, rate: int) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int):
        raise TypeError(f"{name} must be an int, got {type(rate).__name__}")
    if rate <= 0:
        raise ValueError(f"{name} must be positive, got {rate}")


class _Plan:
    """Precomputed views, matrices and scratch arrays for one (chunk length, phase) pair.

    The phase `r` is the position of the next output on the up-sampled grid relative to the
    first new input sample (0 ≤ r < M). With 20 ms frames at the usual rates it never changes,
    so in steady state every call reuses one plan and allocates only its output bytes.

    Output i sits at up-sampled position r + i·M past the first new sample; its window is
    the K input samples that end at the newest sample it needs, which starts at buffer index
    (r + i·M) // L (the buffer begins with K - 1 samples of history), and it uses polyphase
    branch (r + i·M) % L.

    Block-Toeplitz form (the fast path): the pattern of window offsets and branches repeats
    every L outputs (M inputs), so a block of B = b·L outputs reads one span of b·M + K - 1
    input samples, the same way for every block. The branch taps are laid out once into a
    (span × B) matrix; a chunk is then one small copy of the block spans (they overlap, by
    K - 1 samples) into a float64 matrix and one matrix product, 1.5-2× faster than
    materialising every K-wide window. The last block may run past the valid input: those
    outputs are discarded, and the valid outputs have exact zero taps on the extra samples.
    For ratios with a long period (44.1 ⇄ 48 kHz: L = 160) the span would dwarf K, so
    there each output's window is gathered and multiplied by its branch instead.
    """

    __slots__ = ("blocks", "matrix", "n_out", "next_r", "out", "rows", "scratch", "windows", "y")

    blocks: bool
    matrix: NDArray[np.float64]
    n_out: int
    next_r: int
    out: NDArray[np.float64]
    rows: NDArray[np.int64]
    scratch: NDArray[np.float64]
    windows: NDArray[np.int16]
    y: NDArray[np.float64]

    def __init__(self, rs: Resampler, n: int, r: int) -> None:
        up, down, width = rs._up, rs._down, rs._width
        n_out = -(-(n * up - r) // down) if n * up > r else 0
        self.n_out = n_out
        self.next_r = r + n_out * down - n * up
        position = r + np.arange(max(n_out, rs._block_out), dtype=np.int64) * down
        start = position // up
        buf = rs._samples
        self.blocks = rs._block_out > 0
        if self.blocks:
            per_block = rs._block_out
            n_blocks = -(-n_out // per_block)
            first = int(start[0])
            span = int(start[per_block - 1]) - first + width
            matrix = np.zeros((span, per_block), dtype=np.float64)
            for i in range(per_block):
                offset = int(start[i]) - first
                matrix[offset : offset + width, i] = rs._coef[int(position[i] % up)]
            stride = per_block // up * down  # input samples per block
            if first + (n_blocks - 1) * stride + span > buf.size:
                raise AssertionError("resampler buffer too small for plan")  # pragma: no cover
            self.windows = as_strided(
                buf[first:], shape=(n_blocks, span), strides=(2 * stride, 2), writeable=False
            )
            self.scratch = np.empty((n_blocks, span), dtype=np.float64)
            self.matrix = matrix
            self.y = np.empty((n_blocks, per_block), dtype=np.float64)
            self.rows = start[:0]
        else:
            self.rows = start[:n_out]
            self.windows = as_strided(buf, shape=(n, width), strides=(2, 2), writeable=False)
            self.matrix = np.ascontiguousarray(rs._coef[position[:n_out] % up])
            self.scratch = self.matrix[:0]
            self.y = np.empty(n_out, dtype=np.float64)
        self.out = self.y.reshape(-1)[:n_out]

    def compute(self) -> NDArray[np.float64]:
        """The outputs of this chunk, exact but not yet rounded (a view of scratch)."""
        if self.blocks:
            np.copyto(self.scratch, self.windows)
            np.dot(self.scratch, self.matrix, out=self.y)
        else:
            np.einsum("ij,ij->i", self.windows[self.rows], self.matrix, out=self.y)
        return self.out


class Resampler:
    """Streaming sample-rate converter for PCM16 (little-endian, signed, mono).

    One instance per stream and direction; not thread-safe. `process` accepts any number of
    bytes: an odd trailing byte is held and joined to the next chunk, so a sample split
    across chunks is reassembled and the output is identical for any chunking of the same
    bytes. `flush` ends the stream (see there); `reset` drops it without output.
    """

    __slots__ = (
        "_block_out",
        "_coef",
        "_down",
        "_fed",
        "_hist_bytes",
        "_identity",
        "_mv",
        "_pending",
        "_plans",
        "_r",
        "_samples",
        "_taps",
        "_up",
        "_width",
        "in_rate",
        "out_rate",
    )

    def __init__(self, in_rate: int, out_rate: int) -> None:
        _check_rate("in_rate", in_rate)
        _check_rate("out_rate", out_rate)
        g = math.gcd(in_rate, out_rate)
        up, down = out_rate // g, in_rate // g
        if max(up, down) > _MAX_RATIO_TERM:
            raise ValueError(
                f"unsupported rate ratio {in_rate} → {out_rate} Hz: reduces to {up}/{down}, "
                f"terms above {_MAX_RATIO_TERM} need an impractically long filter"
            )
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._up = up
        self._down = down
        self._identity = up == down
        if self._identity:  # same rate: a pass-through, described as a one-tap identity filter
            self._taps: NDArray[np.int64] = np.array([1 << _COEF_BITS], dtype=np.int64)
        else:
            self._taps = _design(up, down)
        self._width = width = self._taps.size // up
        _check_exact(self._taps, up)
        # _coef[p, k]: tap for the k-th sample of a window (oldest first) when the output
        # falls on branch p of the up-sampled grid; exact dyadic float64 values (module doc).
        branches = self._taps.reshape(width, up).T[:, ::-1]
        self._coef: NDArray[np.float64] = np.ascontiguousarray(branches / _COEF_SCALE)
        self._block_out, span = _block_shape(up, down, width)
        self._hist_bytes = 2 * (width - 1)
        # Room for the history, the largest step, and one block read past the end (_Plan).
        raw = bytearray(self._hist_bytes + 2 * (_STEP + 2 * span))
        self._mv = memoryview(raw)
        self._samples: NDArray[np.int16] = np.frombuffer(raw, dtype="<i2")
        self._plans: dict[tuple[int, int], _Plan] = {}
        self._pending = b""
        self._r = 0
        self._fed = False

    def __repr__(self) -> str:
        return (
            f"Resampler({self.in_rate}, {self.out_rate}): {self._up}/{self._down}, "
            f"{self._taps.size} taps, {self.delay_ms:.3f} ms delay"
        )

    @property
    def delay_samples(self) -> float:
        """Group delay in output samples (the filter is linear-phase: the same at every frequency)."""
        return (self._taps.size - 1) / 2.0 / self._down

    @property
    def delay_ms(self) -> float:
        """Group delay in milliseconds: the whole algorithmic delay.

        Nothing else is held back: `process` emits each output sample as soon as the newest
        input sample it depends on has arrived.
        """
        return (self._taps.size - 1) / 2.0 / (self.in_rate * self._up) * 1000.0

    def process(self, pcm: bytes) -> bytes:
        """Resample a chunk of PCM16; returns every output sample that is now complete."""
        if self._pending or len(pcm) & 1:
            pcm = self._whole_samples(pcm)
        n_bytes = len(pcm)
        if self._identity:
            return bytes(pcm)
        if 0 < n_bytes <= 2 * _STEP:
            return self._convert(pcm, n_bytes)
        step = 2 * _STEP  # empty, or too large for the scratch space: split, same output
        view = memoryview(pcm).cast("B")
        parts = (view[i : i + step] for i in range(0, n_bytes, step))
        return b"".join(self._convert(part, len(part)) for part in parts)

    def flush(self) -> bytes:
        """End the stream: return the output still inside the filter, then reset.

        The tail runs to the group delay past the last input sample, so a whole stream of n
        input samples gives ⌈(n·L + (N - 1)/2) / M⌉ output samples: n·out/in plus the delay,
        which the output carries at its start. Afterwards the resampler is exactly as newly
        constructed. A stream that was never fed flushes to nothing.

        Raises ValueError, changing nothing, if an odd byte is still pending: the stream
        had an odd length, so it was not PCM16.
        """
        if self._pending:
            raise ValueError(
                "PCM16 stream ends with 1 dangling byte: total length must be even "
                "(send the missing byte with process(), or call reset())"
            )
        tail = b""
        if self._fed and not self._identity:
            # Outputs still owed: up-sampled positions r + i·M before the centre (N - 1)/2.
            twice_centre = self._taps.size - 1
            r, up, down = self._r, self._up, self._down
            owed = -(-(twice_centre - 2 * r) // (2 * down)) if twice_centre > 2 * r else 0
            if owed:
                zeros = (r + (owed - 1) * down) // up + 1
                tail = self._convert(bytes(2 * zeros), 2 * zeros)[: 2 * owed]
        self.reset()
        return tail

    def reset(self) -> None:
        """Forget the stream (history, phase, a pending odd byte) without emitting anything."""
        self._mv[: self._hist_bytes] = bytes(self._hist_bytes)
        self._pending = b""
        self._r = 0
        self._fed = False

    def _whole_samples(self, pcm: bytes) -> bytes:
        data = self._pending + bytes(pcm)
        if len(data) & 1:
            self._pending = data[-1:]
            return data[:-1]
        self._pending = b""
        return data

    def _convert(self, pcm: bytes | memoryview, n_bytes: int) -> bytes:
        """The hot path: one call per 20 ms frame, at 50 frames/s in each direction."""
        self._fed = True
        plan = self._plans.get((n_bytes, self._r))
        if plan is None:
            plan = self._new_plan(n_bytes >> 1)
        hist = self._hist_bytes
        mv = self._mv
        mv[hist : hist + n_bytes] = pcm
        y = plan.compute()
        mv[:hist] = mv[n_bytes : n_bytes + hist]  # memmove: the newest K - 1 samples stay
        self._r = plan.next_r
        np.rint(y, out=y)
        _clip(y, _INT16_MIN, _INT16_MAX, y)
        return y.astype("<i2").tobytes()

    def _new_plan(self, n: int) -> _Plan:
        if len(self._plans) >= _MAX_PLANS:
            self._plans.clear()
        plan = self._plans[(2 * n, self._r)] = _Plan(self, n, self._r)
        return plan


def _block_shape(up: int, down: int, width: int) -> tuple[int, int]:
    """Outputs per block-Toeplitz product and the input span it reads; (0, width) to gather.

    A block must hold whole periods of L outputs. Each output column of the block matrix has
    `span` rows against `width` useful taps, so blocks stay short, and the block form is only
    used while span ≤ 2·width.
    """
    target = _BLOCK_TARGET_UP if up > down else _BLOCK_TARGET_DOWN
    periods = max(1, round(target / up))
    span = periods * down + width  # an upper bound: (periods·L - 1)·M // L + width ≤ this
    if span > 2 * width:
        return 0, width
    return periods * up, span


def _check_exact(taps: NDArray[np.int64], up: int) -> None:
    """Verify the bound behind bit-exactness: |window sum| · 2²⁴ < 2⁵³ for any int16 input."""
    worst = int(np.abs(taps).reshape(-1, up).sum(axis=0).max()) * 32768
    if worst >= 1 << 53:
        raise ValueError(f"filter too long for exact float64 accumulation ({worst:#x})")
