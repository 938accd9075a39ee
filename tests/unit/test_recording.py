"""Stereo recorder: tones land in the right channel at the right samples; the WAV is valid."""

from __future__ import annotations

import random
import wave
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from gateway.audio import pcm16_to_ulaw, ulaw_to_pcm16
from gateway.recording import StereoRecorder

RATE = 8000
MS = RATE // 1000  # samples per ms


def tone_ulaw(freq: float, ms: int, level: float = 8000.0) -> bytes:
    t = np.arange(ms * MS) / RATE
    pcm = np.rint(level * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()
    return pcm16_to_ulaw(pcm)


def decoded(ulaw: bytes) -> NDArray[np.int16]:
    return np.frombuffer(ulaw_to_pcm16(ulaw), dtype="<i2")


def read_wav(path: Path) -> tuple[NDArray[np.int16], NDArray[np.int16]]:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth(), w.getcomptype()) == (2, RATE, 2, "NONE")
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    return frames[:, 0], frames[:, 1]


def test_tones_land_in_their_channel_at_their_offsets(tmp_path: Path) -> None:
    caller, bot = tone_ulaw(440, 200), tone_ulaw(1000, 300)
    path = tmp_path / "call.wav"
    with StereoRecorder(path) as rec:
        rec.add_bot(bot, t_ms=500)  # arrival order does not matter, time does
        rec.add_caller(caller, t_ms=100)
        assert rec.duration_ms == 800
    left, right = read_wav(path)
    assert len(left) == 800 * MS  # ends where the last audio ends
    assert np.array_equal(left[100 * MS : 300 * MS], decoded(caller))
    assert np.array_equal(right[500 * MS : 800 * MS], decoded(bot))
    # Everything else is silence: nothing leaks into the other channel or the gaps.
    assert not left[: 100 * MS].any() and not left[300 * MS :].any()
    assert not right[: 500 * MS].any()


def test_truncate_keeps_only_what_the_caller_heard(tmp_path: Path) -> None:
    path = tmp_path / "barge.wav"
    bot = tone_ulaw(1000, 1000)
    with StereoRecorder(path) as rec:
        for i in range(50):  # the caller talks the whole second, 20 ms frames
            rec.add_caller(tone_ulaw(440, 20), t_ms=1000 + 20 * i)
        rec.add_bot(bot, t_ms=1000)  # a second of bot audio was sent ahead of playback
        rec.truncate_bot_after(1400)  # barge-in: the caller heard 400 ms of it
        rec.add_bot(tone_ulaw(600, 100), t_ms=1900)  # the next response is kept
    left, right = read_wav(path)
    assert np.array_equal(right[1000 * MS : 1400 * MS], decoded(bot)[: 400 * MS])
    assert not right[1400 * MS : 1900 * MS].any()
    assert np.array_equal(right[1900 * MS : 2000 * MS], decoded(tone_ulaw(600, 100)))
    assert left[1000 * MS : 2000 * MS].any()  # the caller channel is never cut


def frame_code(i: int) -> int:
    """A distinct nonzero μ-law code per 20 ms frame (0x7F/0xFF decode to 0)."""
    return 1 + i % 120


def test_long_call_streams_in_bounded_memory_with_late_frames_and_old_truncation(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    n = 60 * 50  # one minute of 20 ms frames per side
    rec = StereoRecorder(path, hold_ms=200, block_ms=100)
    order = list(range(n))
    rng = random.Random(7)
    # Jitter: frames arrive shuffled within 100 ms windows; a few arrive at the very end,
    # seconds late, when their region is already on disk.
    for k in range(0, n, 5):
        window = order[k : k + 5]
        rng.shuffle(window)
        order[k : k + 5] = window
    late = {100, 1500, 2999}
    arrivals = [i for i in order if i not in late]
    for i in arrivals:
        rec.add_caller(bytes([frame_code(i)]) * (20 * MS), t_ms=20 * i)
        rec.add_bot(bytes([0x80 | frame_code(i)]) * (20 * MS), t_ms=20 * i)
        assert rec.memory_frames <= (200 + 2 * 100) * MS
    for i in late:
        rec.add_caller(bytes([frame_code(i)]) * (20 * MS), t_ms=20 * i)
        rec.add_bot(bytes([0x80 | frame_code(i)]) * (20 * MS), t_ms=20 * i)
    # A truncation far behind the newest audio (already flushed) still applies, in the file.
    rec.truncate_bot_after(59_000)
    rec.close()
    rec.close()  # idempotent

    left, right = read_wav(path)
    assert len(left) == n * 20 * MS
    for i in range(n):
        want_left = decoded(bytes([frame_code(i)]))[0]
        want_right = 0 if 20 * i >= 59_000 else decoded(bytes([0x80 | frame_code(i)]))[0]
        seg = slice(20 * i * MS, 20 * (i + 1) * MS)
        assert (left[seg] == want_left).all(), i
        assert (right[seg] == want_right).all(), i


def test_out_of_order_arrival_gives_the_same_file(tmp_path: Path) -> None:
    frames = [(i, tone_ulaw(300 + 10 * i, 20)) for i in range(100)]
    shuffled = frames[:]
    random.Random(3).shuffle(shuffled)
    outputs = []
    for name, seq in (("a.wav", frames), ("b.wav", shuffled)):
        with StereoRecorder(tmp_path / name, hold_ms=100, block_ms=40) as rec:
            for i, payload in seq:
                rec.add_caller(payload, t_ms=20 * i)
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]


def test_header_is_valid_while_recording_and_a_jump_ahead_stays_out_of_memory(tmp_path: Path) -> None:
    path = tmp_path / "live.wav"
    rec = StereoRecorder(path, hold_ms=200, block_ms=100)
    rec.add_caller(tone_ulaw(440, 1000), t_ms=0)
    with wave.open(str(path), "rb") as w:  # a crash now would leave a playable file
        assert w.getnchannels() == 2
        assert 0 < w.getnframes() <= 1000 * MS
    rec.add_bot(tone_ulaw(1000, 20), t_ms=120_000)  # two minutes later
    assert rec.memory_frames <= 1000 * MS + (200 + 2 * 100) * MS
    rec.close()
    left, right = read_wav(path)
    assert len(left) == 120_020 * MS
    assert not left[1000 * MS :].any() and not right[: 120_000 * MS].any()
    assert np.array_equal(right[120_000 * MS :], decoded(tone_ulaw(1000, 20)))


def test_limits_and_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="8000"):
        StereoRecorder(tmp_path / "x.wav", rate=16000)
    rec = StereoRecorder(tmp_path / "sub" / "y.wav", max_duration_s=1)
    with pytest.raises(ValueError, match="t_ms"):
        rec.add_caller(b"\xff" * 160, t_ms=-1)
    rec.add_caller(tone_ulaw(440, 500), t_ms=800)  # 300 ms beyond the cap are dropped
    assert rec.dropped_ms == 300
    assert rec.frames == RATE
    rec.close()
    with pytest.raises(ValueError, match="closed"):
        rec.add_bot(b"\xff" * 160, t_ms=0)
    left, _ = read_wav(tmp_path / "sub" / "y.wav")
    assert len(left) == RATE
    # An empty recording is still a valid (empty) WAV.
    StereoRecorder(tmp_path / "empty.wav").close()
    assert len(read_wav(tmp_path / "empty.wav")[0]) == 0
