"""Concurrent SIP calls from sipp against the gateway: calls held, setup time, CPU per call.

    python bench/sip_load.py [--calls 50] [--rate 50]

Topology (all loopback, one run, stops by itself):

    sipp UAC (subprocess) ──SIP/RTP──▶ gateway (this process: uvicorn + SIP service) ──▶ scripted model leg

Each call is tests/sipp/uac_pcmu.xml: INVITE with PCMU + telephone-event, 3 s of PCMU tone, DTMF 1,
BYE (about 4 s). At the default rate all calls are up at once. The model leg is a local stand-in
that takes the caller's audio and answers nothing, so the figures are the carrier's own cost:
SIP signalling, the jitter buffer, RTP in and out at 50 packets/s per call (comfort silence),
and the call owner fed 50 frames a second per call.

Printed:
- calls held: the peak of concurrent live calls, and completed/failed as sipp counted them;
- setup time INVITE → 200, p50/p99: on the wire as sipp measured it (`-trace_rtt`, the `rtd`
  mark on the 200), and inside the gateway (INVITE parsed → 200 handed to the socket);
- CPU per call: this process's CPU time (user + system) over the run divided by the calls;
  sipp's own CPU is not counted.
Needs sipp (`apt-get install sip-tester`) and root or CAP_NET_RAW (sipp's play_pcap_audio).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.logging import configure_logging  # noqa: E402
from tests.fakes.sip_sipp import SCENARIOS, free_port, sip_gateway, workdir  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def sipp_rtts(folder: Path) -> list[float]:
    """Response times (ms) from sipp's `-trace_rtt` file(s): INVITE sent → 200 received."""
    out: list[float] = []
    for path in folder.glob("*_rtt.csv"):
        with path.open(newline="") as f:
            for row in csv.reader(f, delimiter=";"):
                if len(row) >= 2:
                    with contextlib.suppress(ValueError):
                        out.append(float(row[1]))
    return out


async def run(calls: int, rate: int, timeout_s: float) -> int:
    sipp = shutil.which("sipp")
    if sipp is None:
        print("sip_load: sipp is not installed (apt-get install -y sip-tester)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sip_load_") as tmp:
        cwd = workdir(Path(tmp))
        span = max(calls / max(rate, 1), 1.0)
        env = {"SWITCHBOARD_MAX_CALLS": str(max(calls * 2, 100)), "SWITCHBOARD_LOG_LEVEL": "error"}
        async with sip_gateway(**env) as gw:
            peak = 0

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, len(gw.gateway.registry.live))
                    await asyncio.sleep(0.02)

            watcher = asyncio.create_task(watch())
            cpu0, wall0 = time.process_time(), time.perf_counter()
            argv = [
                sipp,
                gw.target,
                "-sf",
                str(SCENARIOS / "uac_pcmu.xml"),
                "-i",
                "127.0.0.1",
                "-p",
                str(free_port()),
                "-mi",
                "127.0.0.1",
                "-mp",
                str(free_port()),
                "-s",
                "bot",
                "-r",
                str(rate),
                "-l",
                str(calls),
                "-m",
                str(calls),
                "-nostdin",
                "-timeout",
                f"{int(timeout_s)}s",
                "-timeout_error",
                "-trace_rtt",
                "-rtt_freq",
                "1",
                "-trace_err",
            ]
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=cwd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            try:
                async with asyncio.timeout(timeout_s + 15):
                    _, err = await proc.communicate()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            # Let the last calls' runners finish before reading the clock.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await gw.gateway.registry.idle.wait()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            watcher.cancel()
            service = gw.service
            recent = list(gw.gateway.registry.recent)
            completed = len(recent)
            lengths = [
                c.record.ended_at - c.record.answered_at
                for c in recent
                if c.record.ended_at is not None and c.record.answered_at is not None
            ]
            stats = service.stats
            internal = list(service.stats.setup_ms or [])
            wire = sipp_rtts(cwd)
            late, lost, rtp_in, rtp_out = (
                stats.jitter_late,
                stats.jitter_gap_frames,
                stats.rtp_in,
                stats.rtp_out,
            )
            rc = proc.returncode
    failed = calls - completed
    print(
        f"\nSIP load: {calls} calls offered at {rate}/s over {span:.1f} s, tests/sipp/uac_pcmu.xml, loopback"
    )
    print(f"  calls held (peak concurrent)   {peak}")
    print(f"  completed / failed             {completed} / {failed}   (sipp exit {rc})")
    p50, p99 = percentile(wire, 0.5), percentile(wire, 0.99)
    print(
        f"  setup INVITE→200, sipp (wire)  p50 {p50:.0f} ms   p99 {p99:.0f} ms"
        f"   ({len(wire)} samples; sipp counts whole milliseconds)"
    )
    print(
        f"  setup INVITE→200, gateway      p50 {percentile(internal, 0.5):.2f} ms   "
        f"p99 {percentile(internal, 0.99):.2f} ms"
    )
    per_call = cpu / max(completed, 1)
    call_s = statistics.mean(lengths) if lengths else float("nan")
    print(
        f"  CPU per call                   {per_call * 1000:.1f} ms"
        f"   (process CPU {cpu:.2f} s over {wall:.1f} s;"
        f" calls last {call_s:.1f} s: {100 * per_call / call_s:.2f}% of a core per live call)"
    )
    print(f"  RTP packets in / out           {rtp_in} / {rtp_out}")
    print(f"  jitter buffer                  {late} late packets, {lost} gap frames")
    if rc != 0:
        print(err.decode(errors="replace")[-1500:], file=sys.stderr)
    return 0 if rc == 0 and failed == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=50, help="calls to place (default 50)")
    parser.add_argument("--rate", type=int, default=50, help="new calls per second (default 50)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="give up after this long (default 120 s)"
    )
    args = parser.parse_args()
    configure_logging("error", "console")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        print("sip_load: sipp's play_pcap_audio needs root or CAP_NET_RAW", file=sys.stderr)
    return asyncio.run(run(args.calls, args.rate, args.timeout))


if __name__ == "__main__":
    sys.exit(main())
