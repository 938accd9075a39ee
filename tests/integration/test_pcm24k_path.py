"""The 24 kHz PCM option end to end: μ-law ⇄ PCM16 24 kHz through our resampler, both ways."""

from __future__ import annotations

import math

import numpy as np

from gateway.audio import pcm16_to_ulaw, ulaw_to_pcm16
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, running_gateway, settings_for
from tests.fakes.realtime_server import FakeRealtimeServer
from tests.fakes.twilio_caller import FakeTwilioCaller
from tests.fakes.twilio_rest import FakeTwilioRest


def tone(freq: float, ms: int, rate: int, level: float = 0.3) -> bytes:
    n = rate * ms // 1000
    t = np.arange(n) / rate
    return (np.sin(2 * math.pi * freq * t) * level * 32767).astype("<i2").tobytes()


def dominant_hz(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


async def test_pcm24k_converts_both_ways(realtime: FakeRealtimeServer, twilio_rest: FakeTwilioRest) -> None:
    settings = settings_for(realtime.url, twilio_rest.base_url, SWITCHBOARD_AUDIO_FORMAT="pcm24k")
    caller_audio = pcm16_to_ulaw(tone(1000, 1000, 8000))
    async with running_gateway(settings) as gw:
        caller = FakeTwilioCaller(gw.media_url, auth_token=AUTH_TOKEN, account_sid=ACCOUNT_SID)
        await caller.connect()
        await realtime.wait_for("session.update")
        assert realtime.session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert realtime.session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
        await caller.speak(caller_audio)
        # 1 s of 8 kHz μ-law becomes 1 s of 24 kHz PCM16: 48,000 bytes, the tone kept.
        got = await realtime.wait_for_audio(48_000)
        assert len(got) == 48_000
        assert abs(dominant_hz(got[4800:], 24000) - 1000) < 5
        # 1 s of 24 kHz model audio with a 600 Hz tone plays as 1 s of μ-law with the tone.
        await realtime.respond_audio(tone(600, 1000, 24000), bytes_per_ms=48, chunk_ms=100)
        await caller.wait_for_audio(1000, timeout=5, played=True)
        played = ulaw_to_pcm16(bytes(caller.played))
        assert len(caller.played) == 8000
        assert abs(dominant_hz(played[800:], 8000) - 600) < 5
        await caller.hang_up()
