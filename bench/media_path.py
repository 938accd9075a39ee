"""Per-frame latency the gateway adds on the media path, against a bare WebSocket relay.

    python bench/media_path.py [--frames 500]

Topology (all loopback, one run):

    caller (this process) ──ws──▶ [gateway | bare relay] (own process) ──ws──▶ model server (this process)

Both directions run at once, as on a real call: the caller sends 20 ms μ-law frames in real
time, and the model server sends 20 ms audio deltas in real time. Each frame carries a sequence
number in its first 4 bytes, so the far side can match it to its send time (same clock: both
ends live in this process; the system under test runs in its own process so that it does not
share an event loop with the load).

The bare relay is what the Twilio sample does: parse each JSON frame, rewrap the base64 payload,
send it on; no signature check, no call owner, no marks. The gateway runs exactly as
`switchboard serve` (signature check on, passthrough audio, mark ledger). The caller echoes marks
at once, so the playback lead never holds audio back and the numbers are pure path latency.
The script stops by itself after --frames frames (10 s at the default) per system.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from media_streams import codec  # noqa: E402
from media_streams.signature import compute_signature  # noqa: E402

TOKEN = "bench-token"
FRAME = 160
WARMUP = 25


def frame(seq: int) -> bytes:
    return seq.to_bytes(4, "big") + b"\xff" * (FRAME - 4)


def seq_of(payload: bytes) -> int:
    return int.from_bytes(payload[:4], "big")


class ModelServer:
    """Minimal GA Realtime peer: records when each caller frame arrives, streams deltas back."""

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.arrived: dict[int, float] = {}
        self.sent: dict[int, float] = {}
        self.port = 0

    async def handler(self, ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "session.created", "session": {"id": "sess_bench"}}))
        sender: asyncio.Task[None] | None = None
        try:
            async for message in ws:
                now = time.perf_counter()
                event = json.loads(message)
                if event.get("type") == "input_audio_buffer.append":
                    self.arrived[seq_of(base64.b64decode(event["audio"]))] = now
                    if sender is None:
                        sender = asyncio.create_task(self.stream(ws))
        except websockets.ConnectionClosed:
            pass
        finally:
            if sender is not None:
                sender.cancel()

    async def stream(self, ws: ServerConnection) -> None:
        start = time.perf_counter()
        for seq in range(self.frames):
            await asyncio.sleep(max(0.0, start + seq * 0.02 - time.perf_counter()))
            msg = json.dumps(
                {
                    "type": "response.output_audio.delta",
                    "response_id": "resp_1",
                    "item_id": "item_1",
                    "output_index": 0,
                    "content_index": 0,
                    "delta": base64.b64encode(frame(seq)).decode(),
                }
            )
            self.sent[seq] = time.perf_counter()
            await ws.send(msg)


async def run_caller(url: str, frames: int, signed_url: str) -> dict[int, float]:
    """Send `frames` frames in real time; return arrival times of outbound audio by sequence."""
    arrived: dict[int, float] = {}
    headers = {"X-Twilio-Signature": compute_signature(TOKEN, signed_url, {})}
    async with connect(url, additional_headers=headers) as ws:
        stream_sid, call_sid = "MZ" + "b" * 32, "CA" + "b" * 32
        await ws.send(codec.twilio_connected())
        await ws.send(codec.twilio_start(stream_sid, call_sid, "AC" + "b" * 32, {}, 1))

        async def reader() -> None:
            async for message in ws:
                now = time.perf_counter()
                data = json.loads(message)
                if data["event"] == "media":
                    arrived[seq_of(base64.b64decode(data["media"]["payload"]))] = now
                elif data["event"] == "mark":
                    await ws.send(codec.twilio_mark(stream_sid, data["mark"]["name"], 0))

        task = asyncio.create_task(reader())
        start = time.perf_counter()
        for seq in range(frames):
            await asyncio.sleep(max(0.0, start + seq * 0.02 - time.perf_counter()))
            caller_sent[seq] = time.perf_counter()
            await ws.send(codec.twilio_media(stream_sid, frame(seq), seq + 2, seq + 1, seq * 20))
        await asyncio.sleep(0.5)
        task.cancel()
    return arrived


caller_sent: dict[int, float] = {}


async def relay_main(port: int, model_url: str) -> None:
    """The bare relay, run in its own process by `--relay`."""

    async def handler(caller: ServerConnection) -> None:
        async with connect(model_url, additional_headers={"Authorization": "Bearer x"}) as model:
            stream_sid = ""

            async def up() -> None:
                nonlocal stream_sid
                async for message in caller:
                    data = json.loads(message)
                    if data["event"] == "start":
                        stream_sid = data["start"]["streamSid"]
                    elif data["event"] == "media":
                        payload = data["media"]["payload"]
                        await model.send(json.dumps({"type": "input_audio_buffer.append", "audio": payload}))

            async def down() -> None:
                async for message in model:
                    data = json.loads(message)
                    if data["type"] == "response.output_audio.delta":
                        out = {"event": "media", "streamSid": stream_sid, "media": {"payload": data["delta"]}}
                        await caller.send(json.dumps(out))

            tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in tasks:
                t.cancel()

    async with serve(handler, "127.0.0.1", port):
        await asyncio.Future()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_port(port: int, timeout: float = 15.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


async def measure(kind: str, frames: int) -> tuple[list[float], list[float]]:
    model = ModelServer(frames)
    async with serve(model.handler, "127.0.0.1", 0) as server:
        model_port = server.sockets[0].getsockname()[1]  # type: ignore[index]
        port = free_port()
        env = dict(os.environ)
        if kind == "gateway":
            env.update(
                OPENAI_API_KEY="sk-bench",
                TWILIO_AUTH_TOKEN=TOKEN,
                SWITCHBOARD_REALTIME_URL=f"ws://127.0.0.1:{model_port}/v1",
                SWITCHBOARD_GREETING="",
                SWITCHBOARD_LOG_LEVEL="warning",
                SWITCHBOARD_PORT=str(port),
            )
            cmd = [sys.executable, "-m", "gateway.cli", "serve"]
            path = "/twilio/media"
        else:
            cmd = [sys.executable, __file__, "--relay", str(port), f"ws://127.0.0.1:{model_port}/v1/realtime"]
            path = "/"
        proc = await asyncio.create_subprocess_exec(*cmd, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
        try:
            await wait_port(port)
            url = f"ws://127.0.0.1:{port}{path}"
            caller_sent.clear()
            arrived = await run_caller(url, frames, url)
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
    inbound = [
        (model.arrived[s] - caller_sent[s]) * 1000 for s in caller_sent if s >= WARMUP and s in model.arrived
    ]
    outbound = [(arrived[s] - model.sent[s]) * 1000 for s in model.sent if s >= WARMUP and s in arrived]
    lost_in = len([s for s in caller_sent if s not in model.arrived])
    lost_out = len([s for s in model.sent if s not in arrived])
    if lost_in or lost_out:
        print(f"  {kind}: {lost_in} inbound and {lost_out} outbound frames did not arrive")
    return inbound, outbound


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def main(frames: int) -> None:
    results = {}
    for kind in ("relay", "gateway"):
        results[kind] = await measure(kind, frames)
    print(f"\nmedia path latency per 20 ms frame, {frames} frames each way ({frames * 0.02:.0f} s), loopback")
    heads = ("relay p50", "relay p99", "gw p50", "gw p99", "added p50", "added p99")
    print(f"{'direction':<22}" + "".join(f"{h:>11}" for h in heads))
    for i, name in enumerate(("caller → model", "model → caller")):
        r, g = results["relay"][i], results["gateway"][i]
        r50, r99, g50, g99 = pct(r, 0.5), pct(r, 0.99), pct(g, 0.5), pct(g, 0.99)
        cells = (r50, r99, g50, g99, g50 - r50, g99 - r99)
        print(f"{name:<22}" + "".join(f"{c:>9.2f}ms" for c in cells))
    print(
        f"(samples: {len(results['gateway'][0])} in, {len(results['gateway'][1])} out; mean gw in "
        f"{statistics.mean(results['gateway'][0]):.2f} ms)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--relay", nargs=2, metavar=("PORT", "MODEL_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay:
        asyncio.run(relay_main(int(args.relay[0]), args.relay[1]))
    else:
        asyncio.run(main(args.frames))
