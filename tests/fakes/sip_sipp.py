"""Running real sipp (Debian `sip-tester`) against the gateway, and a gateway with SIP on.

Every sipp process is bounded twice: sipp's own `-timeout … -timeout_error` (a hang becomes a
failure, exit 97/1) and our `wait(timeout)`; leaving the `Sipp` context kills what is left. All
addresses are 127.0.0.1; ports are picked free for each test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.config import Settings, load_settings
from gateway.server import serve_in_process
from tests.fakes.sip_backend import ScriptedBackends
from tests.fakes.sip_pcap import dtmf_pcap, g711_pcap, pcmu_tone, tone_pcm16

SCENARIOS = Path(__file__).resolve().parent.parent / "sipp"
SIPP = shutil.which("sipp")


def sipp_unavailable() -> str | None:
    """Why the sipp tests cannot run here, or None."""
    if SIPP is None:
        return (
            "sipp is not installed: apt-get update && apt-get install -y sip-tester (.ci/run does this in CI)"
        )
    return None


def raw_socket_unavailable() -> str | None:
    """play_pcap_audio sends from a raw socket (protocols.md §5.4)."""
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "sipp play_pcap_audio needs root or CAP_NET_RAW"
    return None


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_and_tcp_port() -> int:
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free for both UDP and TCP")


def rtp_range(size: int = 400) -> tuple[int, int]:
    """A random RTP port range, so tests (and runs in parallel) rarely collide; the pool skips
    ports that are taken anyway."""
    low = random.randrange(20000, 60000 - size, 2)
    return low, low + size - 1


def workdir(tmp: Path) -> Path:
    """sipp's working directory: the pcaps the scenarios name, generated now."""
    pcmu_tone(tmp / "pcap" / "pcmu_tone.pcap")
    dtmf_pcap(tmp / "pcap" / "dtmf_2833_1.pcap", "1")
    g711_pcap(tmp / "pcap" / "pcma_30ms.pcap", tone_pcm16(2.0, 660.0), codec="PCMA", ptime_ms=30)
    return tmp


class Sipp:
    """One sipp process; `async with` kills it on exit whatever happened."""

    def __init__(self, scenario: str, *args: str, cwd: Path, timeout_s: float = 60.0) -> None:
        self.scenario = SCENARIOS / scenario
        self.args = args
        self.cwd = cwd
        self.timeout_s = timeout_s
        self.local_port = free_port()
        self.media_port = free_port()
        self.message_file = cwd / f"{scenario}.{self.local_port}.messages.log"
        self.error_file = cwd / f"{scenario}.{self.local_port}.errors.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.stdout = b""
        self.stderr = b""

    async def __aenter__(self) -> Sipp:
        assert SIPP is not None
        argv = [
            SIPP,
            *self.args,
            "-sf",
            str(self.scenario),
            "-i",
            "127.0.0.1",
            "-p",
            str(self.local_port),
            "-mi",
            "127.0.0.1",
            "-mp",
            str(self.media_port),
            "-nostdin",
            "-timeout",
            f"{int(self.timeout_s)}s",
            "-timeout_error",
            "-trace_err",
            "-error_file",
            str(self.error_file),
            "-trace_msg",
            "-message_file",
            str(self.message_file),
        ]
        self.proc = await asyncio.create_subprocess_exec(
            *argv, cwd=self.cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(Exception):
                await self.proc.wait()

    async def wait(self, timeout: float | None = None) -> int:  # noqa: ASYNC109
        assert self.proc is not None
        async with asyncio.timeout(timeout or self.timeout_s + 15):
            self.stdout, self.stderr = await self.proc.communicate()
        assert self.proc.returncode is not None
        return self.proc.returncode

    def report(self) -> str:
        """What to print when a sipp run did not go as expected."""
        errors = self.error_file.read_text(errors="replace")[-3000:] if self.error_file.exists() else ""
        return f"stderr:\n{self.stderr.decode(errors='replace')[-2000:]}\nerrors:\n{errors}"

    def messages(self) -> str:
        return self.message_file.read_text(errors="replace") if self.message_file.exists() else ""


@dataclass
class SipGateway:
    settings: Settings
    app: Any
    backends: ScriptedBackends

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway

    @property
    def service(self) -> Any:
        from sip.plugin import running_service

        return running_service(self.gateway)

    @property
    def sip_port(self) -> int:
        return int(self.service.endpoint.udp_port)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.sip_port}"


def sip_settings(**env: str) -> Settings:
    low, high = rtp_range()
    base = {
        "SWITCHBOARD_CARRIERS": "sip",
        "SWITCHBOARD_SIP_ENABLED": "true",
        "SWITCHBOARD_SIP_HOST": "127.0.0.1",
        "SWITCHBOARD_SIP_UDP_PORT": "0",
        "SWITCHBOARD_SIP_TCP_PORT": "0",
        "SWITCHBOARD_SIP_RTP_PORT_MIN": str(low),
        "SWITCHBOARD_SIP_RTP_PORT_MAX": str(high),
        "SWITCHBOARD_GREETING": "",
        "SWITCHBOARD_STORE_PATH": "",
        "SWITCHBOARD_LOG_LEVEL": "warning",
        "SWITCHBOARD_VERIFY_SIGNATURES": "false",
    }
    base.update(env)
    return load_settings(env=base)


@contextlib.asynccontextmanager
async def sip_gateway(**env: str) -> AsyncIterator[SipGateway]:
    """The whole app (uvicorn, lifespan, SIP service) in-process, with scripted model legs."""
    settings = sip_settings(**env)
    backends = ScriptedBackends()
    app = create_app(settings, backend_factory=backends)
    async with serve_in_process(app):
        yield SipGateway(settings, app, backends)
