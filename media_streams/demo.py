"""`switchboard demo`: the gateway in-process, called by a simulated Twilio caller.

Everything runs on loopback: uvicorn serves the real app (signature checks on, with a one-off
token the simulated caller signs with), and `SimulatedCaller` speaks a WAV file as 20 ms μ-law
frames, plays the bot's audio in real time, echoes marks and honours `clear`, exactly as Twilio
does. The live transcript and the outcome are printed as they happen.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import sys
import time
import wave
from pathlib import Path

from gateway.app import create_app
from gateway.config import Settings
from gateway.runtime import Gateway
from gateway.server import serve_in_process
from media_streams.simulator import SimulatedCaller

MISSING_KEY = """\
switchboard demo: OPENAI_API_KEY is not set.

The demo calls the gateway with a simulated phone caller, and the gateway talks to the
OpenAI Realtime API, which needs an API key:

    export OPENAI_API_KEY=sk-...
    switchboard demo [--wav what-the-caller-says.wav]

(A keyless offline backend is planned; until then this is the one thing the demo needs.)
"""


def wav_to_ulaw(path: str | Path) -> bytes:
    """Read a PCM16 WAV (any rate, mono or stereo) as μ-law 8 kHz."""
    from gateway.audio import Resampler, pcm16_to_ulaw

    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV files are supported")
        rate, channels = w.getframerate(), w.getnchannels()
        pcm = w.readframes(w.getnframes())
    if channels == 2:
        import numpy as np

        stereo = np.frombuffer(pcm, dtype="<i2").reshape(-1, 2).astype(np.int32)
        pcm = ((stereo[:, 0] + stereo[:, 1]) // 2).astype("<i2").tobytes()
    elif channels != 1:
        raise ValueError(f"{path}: {channels} channels; use mono or stereo")
    if rate != 8000:
        resampler = Resampler(rate, 8000)
        pcm = resampler.process(pcm) + resampler.flush()
    return pcm16_to_ulaw(pcm)


async def _print_transcript(gateway: Gateway, caller: SimulatedCaller, started: float) -> None:
    printed = 0
    while True:
        call = next(iter(gateway.registry.live.values()), None)
        record = (
            call.call.record
            if call
            else (gateway.registry.recent[0].record if gateway.registry.recent else None)
        )
        if record is not None:
            for entry in record.transcript[printed:]:
                who = "caller" if entry["role"] == "user" else "bot   "
                cut = " [interrupted]" if entry.get("interrupted") else ""
                print(f"[{time.monotonic() - started:6.1f}s] {who}: {entry['text']}{cut}", flush=True)
            printed = len(record.transcript)
        await asyncio.sleep(0.1)


async def _demo(settings: Settings, wav: str | None, seconds: float) -> int:
    token = secrets.token_hex(16)
    settings = dataclasses.replace(
        settings,
        twilio_auth_token=token,
        twilio_account_sid=None,  # no REST hang-up: the simulated call just closes its socket
        verify_signatures=True,
        public_url=None,
        host="127.0.0.1",
        log_level="warning",
    )
    speech = wav_to_ulaw(wav) if wav else b""
    app = create_app(settings)
    async with serve_in_process(app) as port:
        gateway: Gateway = app.state.gateway
        url = f"ws://127.0.0.1:{port}/twilio/media"
        caller = SimulatedCaller(url, auth_token=token, params={"From": "+15550100", "To": "+15550199"})
        started = time.monotonic()
        print(f"demo: gateway on 127.0.0.1:{port}; calling it as a simulated Twilio caller…", flush=True)
        printer = asyncio.create_task(_print_transcript(gateway, caller, started))
        try:
            await caller.connect()
            await caller.send_silence(1500)  # let the bot greet first
            if speech:
                await caller.speak(speech)
            deadline = started + seconds
            while caller.closed_code is None and time.monotonic() < deadline:
                await caller.send_silence(200)
            await caller.hang_up()
            await asyncio.sleep(0.3)
        finally:
            printer.cancel()
        record = gateway.registry.recent[0].record if gateway.registry.recent else None
        heard = len(caller.played) / 8000
        outcome = record.end_reason if record else "no call"
        print(f"demo: call ended ({outcome}); the caller heard {heard:.1f} s of bot audio.")
        return 0 if record is not None and heard > 0 else 1


def run_demo(settings: Settings, wav: str | None, seconds: float) -> int:
    if not settings.openai_api_key:
        print(MISSING_KEY, file=sys.stderr)
        return 2
    return asyncio.run(_demo(settings, wav, seconds))
