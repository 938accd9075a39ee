"""Stereo call recording: caller on the left channel, bot on the right, aligned by call time.

Audio arrives as G.711 μ-law frames with the call time (ms since the call started) at which
each frame was heard: the caller's as the carrier delivered it, the bot's as it was played to
the caller. Each frame is decoded to 16-bit PCM and placed at its own time offset; gaps are
silence. Placing by time, not appending, keeps the two channels aligned however unevenly the
frames arrive (jitter, the bot's burst of queued chunks, a caller frame lost).

Only what the caller heard belongs in the recording. Bot audio is usually sent ahead of
playback (the carrier's buffer holds up to `lead_ms`); on barge-in the carrier discards it
unplayed, so `truncate_bot_after(t_ms)` silences the bot channel from the heard point on.
The caller channel is never cut.

Memory is bounded: samples live in a buffer covering the last `hold_ms` (plus one block) of the
call, and older samples are written to disk in blocks. Frames that arrive late for a region
already written, and truncation that reaches into it, are applied to the file in place (read,
change, write back), so the result does not depend on the flush timing. The WAV header is
rewritten on every flush and on `close()`, so a crash leaves a playable file up to the last
flush.

File I/O only: no asyncio. Writes are small and local; a runner that cares can call this from
a worker thread.
"""

from __future__ import annotations

import struct
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

from gateway.audio import G711_RATE, ulaw_to_pcm16

__all__ = ["StereoRecorder"]

_HEADER_BYTES = 44
_CHANNELS = 2
_SAMPLE_BYTES = 2
_FRAME_BYTES = _CHANNELS * _SAMPLE_BYTES
CALLER, BOT = 0, 1  # left, right


def _wav_header(frames: int, rate: int) -> bytes:
    """The canonical 44-byte PCM WAVE header (RIFF, `fmt ` chunk of 16 bytes, `data`)."""
    data_bytes = frames * _FRAME_BYTES
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        _CHANNELS,
        rate,
        rate * _FRAME_BYTES,
        _FRAME_BYTES,
        8 * _SAMPLE_BYTES,
        b"data",
        data_bytes,
    )


class StereoRecorder:
    """A 16-bit stereo WAV of one call, written as the call goes. See the module docstring.

    `hold_ms` is how far behind the newest audio samples stay in memory (so that truncation
    and late frames are cheap); `block_ms` is the flush size; `max_duration_s` caps the file
    (audio placed beyond it is dropped and counted in `dropped_ms`).
    """

    def __init__(
        self,
        path: str | Path,
        rate: int = G711_RATE,
        *,
        hold_ms: int = 2000,
        block_ms: int = 1000,
        max_duration_s: float = 6 * 3600,
    ) -> None:
        if rate != G711_RATE:
            # μ-law is 8 kHz; writing another rate would need resampling both channels.
            raise ValueError(f"only {G711_RATE} Hz is supported (G.711 is 8 kHz), got {rate}")
        if hold_ms < 0 or block_ms <= 0 or max_duration_s <= 0:
            raise ValueError("hold_ms must be ≥ 0, block_ms and max_duration_s > 0")
        self.path = Path(path)
        self.rate = rate
        self._hold = hold_ms * rate // 1000
        self._block = max(1, block_ms * rate // 1000)
        self._max_frames = int(max_duration_s * rate)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = open(self.path, "w+b")  # noqa: SIM115 - closed in close()
        self._file.write(_wav_header(0, rate))
        # Frames [base, end) are in memory; [0, base) are on disk. buf[end - base:] is silence.
        self._buf: NDArray[np.int16] = np.zeros((self._hold + 2 * self._block, _CHANNELS), dtype="<i2")
        self._base = 0
        self._end = 0
        self.dropped_ms = 0.0

    # ------------------------------------------------------------------ public

    @property
    def frames(self) -> int:
        """Length of the recording so far, in sample frames (one left + one right sample)."""
        return self._end

    @property
    def duration_ms(self) -> float:
        return self._end * 1000 / self.rate

    @property
    def memory_frames(self) -> int:
        """Frames of buffer held in memory (its capacity): bounded by hold + blocks + one add."""
        return len(self._buf)

    def add_caller(self, ulaw: bytes, t_ms: int) -> None:
        """Caller audio (μ-law) heard at call time `t_ms`: the left channel."""
        self._place(CALLER, t_ms, ulaw)

    def add_bot(self, ulaw: bytes, t_ms: int) -> None:
        """Bot audio (μ-law) played to the caller from call time `t_ms`: the right channel."""
        self._place(BOT, t_ms, ulaw)

    def truncate_bot_after(self, t_ms: int) -> None:
        """Silence bot audio from `t_ms` on: it was cleared at barge-in and never heard.

        Bot audio added later (the next response) is kept as usual.
        """
        start = self._frame(t_ms)
        if start >= self._end:
            return
        on_disk_end = min(self._base, self._end)
        if start < on_disk_end:
            region = self._read(start, on_disk_end)
            region[:, BOT] = 0
            self._write(start, region)
        lo = max(start, self._base) - self._base
        self._buf[lo : self._end - self._base, BOT] = 0

    def close(self) -> None:
        """Write what is left, finish the header, close the file. Idempotent."""
        if self._file is None:
            return
        try:
            self._flush(self._end)
            self._write_header()
        finally:
            self._file.close()
            self._file = None

    def __enter__(self) -> StereoRecorder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _frame(self, t_ms: int) -> int:
        if t_ms < 0:
            raise ValueError(f"t_ms must be ≥ 0 (ms since the call started), got {t_ms}")
        return int(t_ms * self.rate // 1000)

    def _place(self, channel: int, t_ms: int, ulaw: bytes) -> None:
        if self._file is None:
            raise ValueError("the recording is closed")
        start = self._frame(t_ms)
        if not ulaw:
            return
        samples = np.frombuffer(ulaw_to_pcm16(ulaw), dtype="<i2")
        if start + samples.size > self._max_frames:
            keep = max(0, self._max_frames - start)
            self.dropped_ms += (samples.size - keep) * 1000 / self.rate
            samples = samples[:keep]
            if not samples.size:
                return
        end = start + samples.size
        if start < self._base:
            # A late frame for a region already on disk: patch the file in place.
            split = min(end, self._base)
            region = self._read(start, split)
            region[:, channel] = samples[: split - start]
            self._write(start, region)
            samples = samples[split - start :]
            start = split
        if samples.size:
            if start > self._end + self._hold + self._block:
                # A jump ahead (a long silence nobody sent): keep it out of memory. Everything
                # buffered goes to disk; the gap becomes a hole that the file system fills with
                # zeros when the next frames are written after it.
                self._flush(self._end)
                self._base = self._end = start
            self._reserve(end)
            self._buf[start - self._base : end - self._base, channel] = samples
            self._end = max(self._end, end)
        self._flush(self._end - self._hold, whole_blocks=True)

    def _reserve(self, end: int) -> None:
        """Make the buffer cover frames up to `end`; new room is silence."""
        needed = end - self._base
        if needed > len(self._buf):
            grown = np.zeros((max(needed, 2 * len(self._buf)), _CHANNELS), dtype="<i2")
            used = self._end - self._base
            grown[:used] = self._buf[:used]
            self._buf = grown

    def _flush(self, upto: int, *, whole_blocks: bool = False) -> None:
        """Write frames [base, upto) to disk and drop them from memory."""
        count = min(upto, self._end) - self._base
        if whole_blocks:
            count -= count % self._block
        if count <= 0:
            return
        self._write(self._base, self._buf[:count])
        used = self._end - self._base
        self._buf[: used - count] = self._buf[count:used]
        self._buf[used - count : used] = 0
        self._base += count
        self._write_header()

    def _read(self, start: int, stop: int) -> NDArray[np.int16]:
        assert self._file is not None
        self._file.seek(_HEADER_BYTES + start * _FRAME_BYTES)
        raw = self._file.read((stop - start) * _FRAME_BYTES)
        region = np.zeros((stop - start, _CHANNELS), dtype="<i2")
        got = np.frombuffer(raw, dtype="<i2").reshape(-1, _CHANNELS)
        region[: len(got)] = got
        return region

    def _write(self, start: int, frames: NDArray[np.int16]) -> None:
        assert self._file is not None
        self._file.seek(_HEADER_BYTES + start * _FRAME_BYTES)
        self._file.write(np.ascontiguousarray(frames, dtype="<i2").tobytes())

    def _write_header(self) -> None:
        assert self._file is not None
        self._file.seek(0)
        self._file.write(_wav_header(self._base, self.rate))
        self._file.flush()
