"""`switchboard demo`: the gateway in-process, called by a simulated Twilio caller.

Everything runs on loopback: uvicorn serves the real app (signature checks on, with a one-off
token the simulated caller signs with), and `SimulatedCaller` speaks 20 ms μ-law frames, plays
the bot's audio in real time, echoes marks and honours `clear`, exactly as Twilio does. The live
transcript and the outcome are printed as they happen.

With `OPENAI_API_KEY` the gateway talks to OpenAI Realtime and the caller speaks `--wav` (or
stays silent after the greeting). Without one it runs on the offline backend, and the caller
follows a short script of phrases synthesized with the same offline TTS (eSpeak NG, resampled
to μ-law 8 kHz as a phone line carries them): it asks the time, presses a key, asks for a
person and says goodbye. Each turn's latency (caller stops speaking → first bot audio) is
printed with the backend's breakdown.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import sys
import time
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path

from gateway.app import create_app
from gateway.config import Settings
from gateway.runtime import Gateway
from gateway.server import serve_in_process
from media_streams.simulator import SimulatedCaller

OFFLINE_NOTE = """\
demo: no OPENAI_API_KEY, so the gateway runs on the offline backend (local speech recognition,
a rule-based agent and local speech synthesis; no network). `export OPENAI_API_KEY=sk-...` to
hear OpenAI Realtime instead.
"""

# What the simulated caller does on the offline backend: ("say", phrase) or ("press", digit).
OFFLINE_SCRIPT: tuple[tuple[str, str], ...] = (
    ("say", "what time is it"),
    ("press", "1"),
    ("say", "transfer me to a person"),
    ("say", "goodbye"),
)


DemoScript = Callable[[Gateway, SimulatedCaller, float], Awaitable[list[float]]]


def _demo_settings(settings: Settings, token: str) -> Settings:
    """The demo's gateway: loopback only, signatures checked with a one-off token the simulated
    caller signs with, no REST hang-up (the simulated call just closes its socket), and records
    kept in memory (a demo leaves no database behind)."""
    return dataclasses.replace(
        settings,
        twilio_auth_token=token,
        twilio_account_sid=None,
        verify_signatures=True,
        public_url=None,
        host="127.0.0.1",
        log_level="warning",
        store_path=None,
    )


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


async def _run_call(settings: Settings, script: DemoScript, *, note: str = "") -> int:
    """Serve the gateway on loopback, call it with the simulated caller, run `script` on the
    call, then print the outcome (and the per-turn latencies the script measured)."""
    token = secrets.token_hex(16)
    app = create_app(_demo_settings(settings, token))
    if note:
        print(note, flush=True)
    async with serve_in_process(app) as port:
        gateway: Gateway = app.state.gateway
        url = f"ws://127.0.0.1:{port}/twilio/media"
        caller = SimulatedCaller(url, auth_token=token, params={"From": "+15550100", "To": "+15550199"})
        started = time.monotonic()
        print(f"demo: gateway on 127.0.0.1:{port}; calling it as a simulated Twilio caller…", flush=True)
        printer = asyncio.create_task(_print_transcript(gateway, caller, started))
        try:
            await caller.connect()
            latencies = await script(gateway, caller, started)
            if caller.closed_code is None:
                await caller.hang_up()
            await asyncio.sleep(0.3)
        finally:
            printer.cancel()
        record = gateway.registry.recent[0].record if gateway.registry.recent else None
        heard = len(caller.played) / 8000
        outcome = record.end_reason if record else "no call"
        if latencies:
            ordered = sorted(latencies)
            print(
                f"demo: {len(latencies)} turns, latency median {ordered[len(ordered) // 2]:.0f} ms,"
                f" worst {ordered[-1]:.0f} ms (caller stops speaking → first bot audio)"
            )
        print(f"demo: call ended ({outcome}); the caller heard {heard:.1f} s of bot audio.")
        return 0 if record is not None and heard > 0 else 1


async def _demo(settings: Settings, wav: str | None, seconds: float) -> int:
    """The keyed demo: the caller listens to the greeting, says the WAV (if any), then stays
    on the line until `seconds` have passed or the bot hangs up."""
    speech = wav_to_ulaw(wav) if wav else b""

    async def script(gateway: Gateway, caller: SimulatedCaller, started: float) -> list[float]:
        await caller.send_silence(1500)  # let the bot greet first
        if speech:
            await caller.speak(speech)
        while caller.closed_code is None and time.monotonic() < started + seconds:
            await caller.send_silence(200)
        return []

    return await _run_call(settings, script)


async def _wait_quiet(caller: SimulatedCaller, quiet_ms: int, deadline: float) -> None:
    """Keep the line open (silence) until the bot has said nothing new for `quiet_ms`."""
    last, since = len(caller.received), time.monotonic()
    while caller.closed_code is None and time.monotonic() < deadline:
        await caller.send_silence(100)
        if len(caller.received) != last or caller.buffered_ms > 0:
            last, since = len(caller.received), time.monotonic()
        elif time.monotonic() - since >= quiet_ms / 1000:
            return


async def _first_audio_after(caller: SimulatedCaller, count: int, deadline: float) -> float | None:
    """Send silence until audio beyond the first `count` bytes arrives; when it did."""
    while caller.closed_code is None and time.monotonic() < deadline:
        if len(caller.received) > count:
            return time.monotonic()
        await caller.send_silence(20)
    return None


def _backend(gateway: Gateway) -> object | None:
    entry = next(iter(gateway.registry.live.values()), None)
    return getattr(entry.runner, "backend", None) if entry and entry.runner else None


async def _offline_script(gateway: Gateway, caller: SimulatedCaller, deadline: float) -> list[float]:
    """Play OFFLINE_SCRIPT; returns each turn's latency as the caller measured it (ms)."""
    from gateway.backends.providers.offline_tts import synthesize_ulaw

    latencies: list[float] = []
    await _wait_quiet(caller, 700, deadline)  # the greeting
    for action, what in OFFLINE_SCRIPT:
        if caller.closed_code is not None or time.monotonic() >= deadline:
            break
        if action == "say":
            print(f"demo: caller says {what!r}", flush=True)
            await caller.speak(synthesize_ulaw(what))
        else:
            print(f"demo: caller presses {what}", flush=True)
            await caller.send_dtmf(what)
        stopped, heard_before = time.monotonic(), len(caller.received)
        backend = _backend(gateway)
        first = await _first_audio_after(caller, heard_before, deadline)
        if first is not None:
            ms = (first - stopped) * 1000
            latencies.append(ms)
            stages = getattr(backend, "turn_latencies", [])
            detail = ""
            if action == "say" and stages:
                t = stages[-1]
                detail = (
                    f" (end of turn {t.vad_ms:.0f} + STT {t.stt_ms:.0f} + agent {t.agent_first_token_ms:.0f}"
                    f" + TTS {t.tts_first_audio_ms:.0f} + gateway {t.gateway_ms:.0f} ms;"
                    f" network and playout {max(0.0, ms - t.total_ms):.0f} ms)"
                )
            print(f"demo: latency {ms:.0f} ms{detail}", flush=True)
        await _wait_quiet(caller, 700, deadline)
    return latencies


async def _offline_demo(settings: Settings, seconds: float) -> int:
    async def script(gateway: Gateway, caller: SimulatedCaller, started: float) -> list[float]:
        return await _offline_script(gateway, caller, started + max(seconds, 90.0))

    return await _run_call(settings, script, note=OFFLINE_NOTE)


def run_demo(settings: Settings, wav: str | None, seconds: float) -> int:
    if not settings.openai_api_key and settings.backend in ("realtime", "pipeline"):
        print(
            f"switchboard demo: the {settings.backend} backend needs OPENAI_API_KEY "
            "(export OPENAI_API_KEY=sk-..., or SWITCHBOARD_BACKEND=auto to run offline)",
            file=sys.stderr,
        )
        return 2
    if not settings.openai_api_key and settings.backend in ("auto", "offline") and wav is None:
        return asyncio.run(_offline_demo(settings, seconds))
    return asyncio.run(_demo(settings, wav, seconds))
