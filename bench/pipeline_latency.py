"""Per-turn latency of the offline pipeline over the real loopback path, stage by stage.

    python bench/pipeline_latency.py [--turns 20] [--phrase "what time is it"]

One call, all on 127.0.0.1: a simulated Twilio caller (media_streams.simulator) speaks the phrase
(eSpeak NG, μ-law 8 kHz) into the gateway served by uvicorn on the offline backend, waits for the
whole answer, and repeats. For every turn it measures, on its own clock, the time from the last
frame of its phrase to the first bot audio it receives; the backend's breakdown of the same turn
comes from `PipelineBackend.turn_latencies`:

- end of turn: the silence the VAD waits for (SWITCHBOARD_VAD_SILENCE_DURATION_MS, 500 ms);
- STT, agent first token, TTS first audio: the providers' own time;
- gateway: everything else inside the backend (framing, VAD, resampling, queues);
- network and playout: from the backend handing over the first audio to the caller receiving it
  (call owner, mark ledger, Twilio codec, WebSocket, event loops).

The gateway's own share is the total minus STT, agent and TTS (and minus the end-of-turn wait,
which is a setting, shown apart). The script stops by itself after --turns turns.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.app import create_app
from gateway.backends.base import BackendLeg, SessionConfig
from gateway.backends.factory import vad_config
from gateway.backends.offline import OfflineModels, offline_backend
from gateway.backends.pipeline import PipelineBackend
from gateway.backends.providers.offline_tts import synthesize_ulaw
from gateway.config import load_settings
from gateway.logging import configure_logging
from gateway.server import serve_in_process
from media_streams.simulator import SimulatedCaller

TOKEN = "bench-token"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def wait_quiet(caller: SimulatedCaller, quiet_ms: int = 600, timeout: float = 20.0) -> None:  # noqa: ASYNC109
    last, since = len(caller.received), time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await caller.send_silence(100)
        if len(caller.received) != last or caller.buffered_ms > 0:
            last, since = len(caller.received), time.monotonic()
        elif time.monotonic() - since >= quiet_ms / 1000:
            return


async def run(turns: int, phrase: str) -> None:
    configure_logging("error", "console")
    settings = load_settings(
        env={"TWILIO_AUTH_TOKEN": TOKEN, "SWITCHBOARD_GREETING": "", "SWITCHBOARD_STORE_PATH": ""}
    )
    models = OfflineModels()
    await models.warm_up()
    backends: list[PipelineBackend] = []

    def factory(config: SessionConfig) -> BackendLeg:
        backend = offline_backend(config, models, vad=vad_config(settings))
        backends.append(backend)
        return backend

    speech = synthesize_ulaw(phrase)
    caller_ms: list[float] = []
    app = create_app(settings, backend_factory=factory)
    async with serve_in_process(app) as port:
        caller = SimulatedCaller(f"ws://127.0.0.1:{port}/twilio/media", auth_token=TOKEN)
        await caller.connect()
        await caller.send_silence(500)
        for _ in range(turns):
            await caller.speak(speech)
            stopped, before = time.monotonic(), len(caller.received)
            # The line keeps carrying silence (the VAD needs it to end the turn) while we wait on
            # the caller's change signal, so the measurement has no 20 ms frame granularity.
            line = asyncio.create_task(caller.send_silence(10_000))
            try:
                await caller.wait_until(lambda: len(caller.received) > before, 10.0, "answer")  # noqa: B023
            finally:
                line.cancel()
            caller_ms.append((time.monotonic() - stopped) * 1000)
            await wait_quiet(caller)
        await caller.hang_up()
    stages = backends[0].turn_latencies
    if len(stages) != turns:
        print(f"warning: {turns - len(stages)} turns were not recognised as speech turns", file=sys.stderr)
    n = min(len(stages), len(caller_ms))
    rows: dict[str, list[float]] = {
        "end of turn (VAD silence)": [t.vad_ms for t in stages[:n]],
        "STT (PocketSphinx)": [t.stt_ms for t in stages[:n]],
        "agent first token (rules)": [t.agent_first_token_ms + t.agent_first_sentence_ms for t in stages[:n]],
        "TTS first audio (eSpeak NG)": [t.tts_first_audio_ms for t in stages[:n]],
        "gateway, inside the backend": [t.gateway_ms for t in stages[:n]],
        "network and playout": [max(0.0, c - t.total_ms) for c, t in zip(caller_ms, stages, strict=False)],
        "total (caller stops → first audio)": caller_ms[:n],
    }
    own = [
        c - t.stt_ms - t.agent_first_token_ms - t.agent_first_sentence_ms - t.tts_first_audio_ms
        for c, t in zip(caller_ms, stages, strict=False)
    ]
    rows["gateway's own share (total − STT/agent/TTS)"] = own
    rows["  … of which not the VAD wait"] = [o - t.vad_ms for o, t in zip(own, stages, strict=False)]
    print(f"offline pipeline, {n} turns of {phrase!r} over loopback (ms)")
    print(f"{'stage':<46}{'p50':>9}{'p90':>9}{'p99':>9}{'mean':>9}")
    for name, values in rows.items():
        if values:
            print(
                f"{name:<46}{pct(values, 50):9.1f}{pct(values, 90):9.1f}{pct(values, 99):9.1f}"
                f"{statistics.fmean(values):9.1f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--phrase", default="what time is it")
    args = parser.parse_args()
    asyncio.run(run(args.turns, args.phrase))


if __name__ == "__main__":
    main()
