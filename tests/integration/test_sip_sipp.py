"""The SIP carrier against real sipp (Debian `sip-tester`), end to end on loopback.

The gateway runs in-process exactly as `switchboard serve` runs it (uvicorn, lifespan, the SIP
service on UDP/TCP), with a scripted model leg (`tests.fakes.sip_backend`) so that what reaches
"the agent" can be asserted byte for byte. Every sipp run is bounded by its own `-timeout` and
killed when the test ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import pytest

from gateway.audio import pcm16_to_ulaw
from gateway.events import TransferRequested
from sip.leg import ALAW_TO_ULAW
from sip.outbound import place_call
from tests.conftest import wait_until
from tests.fakes.sip_pcap import tone_pcm16
from tests.fakes.sip_sipp import (
    Sipp,
    free_udp_and_tcp_port,
    raw_socket_unavailable,
    sip_gateway,
    sipp_unavailable,
    workdir,
)

pytestmark = pytest.mark.skipif(sipp_unavailable() is not None, reason=str(sipp_unavailable()))
needs_raw = pytest.mark.skipif(raw_socket_unavailable() is not None, reason=str(raw_socket_unavailable()))


def trunk_env(port: int) -> dict[str, str]:
    return {
        "SWITCHBOARD_SIP_TRUNK_HOST": "127.0.0.1",
        "SWITCHBOARD_SIP_TRUNK_PORT": str(port),
        "SWITCHBOARD_SIP_TRUNK_USERNAME": "trunkuser",
        "SWITCHBOARD_SIP_TRUNK_PASSWORD": "trunkpass",
        "SWITCHBOARD_SIP_CALLER_ID": "+15550001111",
    }


# --------------------------------------------------------------------------- inbound


@needs_raw
async def test_inbound_pcmu_audio_and_dtmf_reach_the_agent(tmp_path: Path) -> None:
    """sipp calls in with PCMU + telephone-event, plays 3 s of tone and DTMF 1, hangs up: the
    agent gets the tone byte for byte (μ-law passthrough) and the digit; we answered PCMU first
    (sipp checks the m= line) and sent RTP at 50 packets/s."""
    cwd = workdir(tmp_path)
    async with sip_gateway() as gw, Sipp("uac_pcmu.xml", gw.target, "-s", "bot", "-m", "1", cwd=cwd) as sipp:
        assert await sipp.wait() == 0, sipp.report()
        await wait_until(lambda: len(gw.gateway.registry.recent) == 1, timeout=10)
        call = gw.gateway.registry.recent[0]
        backend = gw.backends.backends[0]
        tone = pcm16_to_ulaw(tone_pcm16(3.0))
        assert tone in bytes(backend.audio)
        assert call.record.dtmf == ["1"]
        assert any("1" in text for text in backend.dtmf_texts)
        assert call.record.carrier == "sip"
        assert call.record.end_reason == "caller_hangup"
        sip_call_id = re.search(r"Call-ID: (\S+)", sipp.messages())
        assert sip_call_id is not None
        assert call.record.carrier_ids["call_sid"] == sip_call_id.group(1)
        assert call.record.parameters["request_uri_user"] == "bot"
        assert call.record.parameters["codec"] == "PCMU"
        leg = gw.service.recent_legs[0]
        seconds = 4.0  # 3.5 s of tone + 0.5 s after the DTMF
        assert 40 * seconds <= leg.stats.rtp_out <= 55 * seconds
        assert leg.jitter.stats.late == 0


@needs_raw
async def test_inbound_pcma_30ms_is_transcoded_for_the_agent(tmp_path: Path) -> None:
    """A PCMA-only offer is answered PCMA; 30 ms A-law packets come out as steady 20 ms μ-law
    frames, the same signal (A-law → μ-law through linear PCM)."""
    cwd = workdir(tmp_path)
    async with sip_gateway() as gw, Sipp("uac_pcma.xml", gw.target, "-s", "bot", "-m", "1", cwd=cwd) as sipp:
        assert await sipp.wait() == 0, sipp.report()
        await wait_until(lambda: len(gw.gateway.registry.recent) == 1, timeout=10)
        from gateway.audio import pcm16_to_alaw

        expected = pcm16_to_alaw(tone_pcm16(2.0, 660.0))
        expected = expected[: len(expected) // 240 * 240].translate(ALAW_TO_ULAW)
        backend = gw.backends.backends[0]
        assert expected in bytes(backend.audio)
        assert gw.gateway.registry.recent[0].record.parameters["codec"] == "PCMA"


async def test_cancel_before_answer_gets_487(tmp_path: Path) -> None:
    """With an answer delay the caller gives up first: 200 to the CANCEL, 487 to the INVITE,
    the ACK absorbs it, and no call or model session was ever opened."""
    env = {"SWITCHBOARD_SIP_ANSWER_DELAY_MS": "3000"}
    async with (
        sip_gateway(**env) as gw,
        Sipp("uac_cancel.xml", gw.target, "-s", "bot", "-m", "1", cwd=tmp_path) as sipp,
    ):
        assert await sipp.wait() == 0, sipp.report()
        log = sipp.messages()
        assert log.count("SIP/2.0 487 Request Terminated") == 1  # not retransmitted after the ACK
        assert gw.service.stats.cancelled == 1
        assert gw.backends.backends == []
        assert gw.gateway.registry.live == {}
        assert gw.service.ports.in_use == 0


@needs_raw
async def test_bot_hangup_sends_bye_after_the_goodbye_played(tmp_path: Path) -> None:
    """The model says 1 s of goodbye and calls end_call: the gateway plays it (marks echoed as
    RTP goes out), then sends BYE, which sipp expects, and handles sipp's 200."""
    cwd = workdir(tmp_path)
    async with (
        sip_gateway() as gw,
        Sipp("uac_wait_bye.xml", gw.target, "-s", "bot", "-m", "1", cwd=cwd) as sipp,
    ):
        backend = await gw.backends.next(0)
        await asyncio.sleep(0.5)
        backend.say(pcm16_to_ulaw(tone_pcm16(1.0, 300.0)))
        backend.end_call()
        assert await sipp.wait() == 0, sipp.report()
        await wait_until(lambda: len(gw.gateway.registry.recent) == 1, timeout=10)
        call = gw.gateway.registry.recent[0]
        assert call.record.end_reason == "bot_hangup"
        leg = gw.service.recent_legs[0]
        assert leg.stats.marks_echoed >= 50  # 1 s of audio in 20 ms chunks, each marked
        assert re.search(r"^BYE sip:sipp@", sipp.messages(), re.M)


@needs_raw
async def test_fifty_concurrent_inbound_calls_all_complete(tmp_path: Path) -> None:
    """50 calls at 25/s, each 4 s of audio + DTMF: all succeed (sipp exit 0), about 50 at once."""
    cwd = workdir(tmp_path)
    peak = 0

    async with sip_gateway() as gw:

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, len(gw.gateway.registry.live))
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        args = ("-s", "bot", "-r", "25", "-l", "50", "-m", "50")
        async with Sipp("uac_pcmu.xml", gw.target, *args, cwd=cwd, timeout_s=60) as sipp:
            assert await sipp.wait(timeout=75) == 0, sipp.report()
        watcher.cancel()
        await wait_until(lambda: len(gw.gateway.registry.recent) == 50, timeout=10)
        assert gw.service.stats.answered == 50
        assert all(call.record.dtmf == ["1"] for call in gw.gateway.registry.recent)
        assert peak >= 40
        assert gw.service.ports.in_use == 0


async def test_capacity_gives_503(tmp_path: Path) -> None:
    """SWITCHBOARD_MAX_CALLS=1 and two calls at once: the second gets 503 with Retry-After."""
    cwd = workdir(tmp_path)
    async with sip_gateway(SWITCHBOARD_MAX_CALLS="1") as gw:
        args = ("-s", "bot", "-r", "10", "-l", "2", "-m", "2")
        async with Sipp("uac_pcmu.xml", gw.target, *args, cwd=cwd, timeout_s=30) as sipp:
            assert await sipp.wait() == 1, sipp.report()  # one call failed (the 503)
        assert "SIP/2.0 503 Service Unavailable" in sipp.messages()
        assert gw.service.stats.rejected == {503: 1}
        assert gw.service.stats.answered == 1


@needs_raw
async def test_inbound_call_over_tcp(tmp_path: Path) -> None:
    """The same call over TCP (sipp -t t1): framing by Content-Length, answers on the connection."""
    cwd = workdir(tmp_path)
    port = free_udp_and_tcp_port()
    env = {"SWITCHBOARD_SIP_UDP_PORT": str(port), "SWITCHBOARD_SIP_TCP_PORT": str(port)}
    async with sip_gateway(**env) as gw:
        async with Sipp("uac_pcmu.xml", gw.target, "-t", "t1", "-s", "bot", "-m", "1", cwd=cwd) as sipp:
            assert await sipp.wait() == 0, sipp.report()
        assert "SIP/2.0/TCP" in sipp.messages()
        await wait_until(lambda: len(gw.gateway.registry.recent) == 1, timeout=10)
        assert gw.gateway.registry.recent[0].record.dtmf == ["1"]


# --------------------------------------------------------------------------- outbound


def _digest_ok(log: str, username: str, password: str, header: str) -> bool:
    """Recompute the digest of the INVITE we sent, with hashlib alone (RFC 2617 §3.2.2)."""
    m = re.search(rf"^{header}: Digest (.*)$", log, re.M)
    assert m is not None, f"no {header} in the INVITE"
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', m.group(1)))

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{username}:{params['realm']}:{password}")
    ha2 = md5(f"INVITE:{params['uri']}")
    expected = md5(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:{params['qop']}:{ha2}")
    return params["response"] == expected


@pytest.mark.parametrize(
    ("scenario", "header"),
    [("uas_auth_407.xml", "Proxy-Authorization"), ("uas_auth_401.xml", "Authorization")],
)
async def test_outbound_call_through_a_trunk_that_challenges(
    tmp_path: Path, scenario: str, header: str
) -> None:
    """place_call → 407 (or 401) → ACK → INVITE with credentials, CSeq+1 → 180 → 200 → ACK; the
    call runs like an inbound one (RTP echoed back by sipp); hanging up sends BYE. For 401 sipp
    itself checks the digest (verifyauth); for 407 we recompute it from sipp's message log."""
    async with (
        Sipp(scenario, "-m", "1", "-rtp_echo", cwd=tmp_path) as sipp,
        sip_gateway(**trunk_env(sipp.local_port)) as gw,
    ):
        result = await place_call(gw.gateway, "+15551230000", timeout_s=10)
        assert result.disposition == "answered", result
        assert result.status == 200
        assert result.leg is not None
        assert result.call_id is not None
        await wait_until(
            lambda: result.leg is not None and result.leg.stats.rtp_in >= 25, timeout=10
        )  # echo of our RTP
        assert gw.gateway.hang_up(result.call_id)
        async with asyncio.timeout(15):
            await result.leg.wait_closed()
        assert await sipp.wait() == 0, sipp.report()
        log = sipp.messages()
        assert _digest_ok(log, "trunkuser", "trunkpass", header)
        invites = re.findall(r"^CSeq: (\d+) INVITE", log, re.M)
        assert len({int(n) for n in invites}) == 2  # the retry went out with CSeq + 1
        assert re.search(r"^BYE sip:", log, re.M)
        call = gw.gateway.registry.recent[0]
        assert call.record.parameters["direction"] == "outbound"


async def test_outbound_call_to_a_plain_callee(tmp_path: Path) -> None:
    """shared/sipp's callee (100/180/200 with PCMU + 101, waits for BYE): answered, our RTP
    echoed back at 50 packets/s, and the agent hears the echo."""
    async with Sipp("uas_pcmu.xml", "-m", "1", "-rtp_echo", cwd=tmp_path) as sipp:
        env = {"SWITCHBOARD_SIP_TRUNK_HOST": "127.0.0.1", "SWITCHBOARD_SIP_TRUNK_PORT": str(sipp.local_port)}
        async with sip_gateway(**env) as gw:
            result = await place_call(gw.gateway, "+15551230000", timeout_s=10)
            assert (result.disposition, result.status) == ("answered", 200)
            assert result.leg is not None
            assert result.call_id is not None
            await asyncio.sleep(1.0)
            assert 40 <= result.leg.stats.rtp_in <= 60
            assert gw.gateway.hang_up(result.call_id)
            async with asyncio.timeout(15):
                await result.leg.wait_closed()
            assert await sipp.wait() == 0, sipp.report()
            backend = gw.backends.backends[0]
            assert len(backend.audio) >= 40 * 160  # the echoed comfort silence reached the agent


@pytest.mark.parametrize(
    ("scenario", "disposition", "status"),
    [("uas_busy.xml", "busy", 486), ("uas_no_answer.xml", "no_answer", 487)],
)
async def test_outbound_failures_map_to_dispositions(
    tmp_path: Path, scenario: str, disposition: str, status: int
) -> None:
    """486 → busy; ringing past the timeout → CANCEL → 487 → no_answer. No call is opened."""
    async with (
        Sipp(scenario, "-m", "1", cwd=tmp_path, timeout_s=20) as sipp,
        sip_gateway(**trunk_env(sipp.local_port)) as gw,
    ):
        result = await place_call(gw.gateway, "+15551230000", timeout_s=1.0)
        assert (result.disposition, result.status) == (disposition, status)
        assert result.leg is None
        assert await sipp.wait() == 0, sipp.report()
        assert gw.backends.backends == []
        assert gw.service.ports.in_use == 0


async def test_refer_transfer_is_accepted(tmp_path: Path) -> None:
    """An operator transfer goes through the call owner to the SIP leg: REFER → 202 → NOTIFY
    sipfrag 100 → NOTIFY sipfrag 200 (both answered 200) → the call ends as transferred and
    the gateway sends BYE."""
    async with (
        Sipp("uas_refer.xml", "-m", "1", cwd=tmp_path) as sipp,
        sip_gateway(**trunk_env(sipp.local_port)) as gw,
    ):
        result = await place_call(gw.gateway, "+15551230000", timeout_s=10)
        assert result.disposition == "answered", result
        assert result.call_id is not None
        assert result.leg is not None
        live = gw.gateway.registry.live[result.call_id].call
        await wait_until(lambda: live.state.value == "active", timeout=10)  # model ready: transfers allowed
        assert gw.gateway.post(result.call_id, TransferRequested("sip:agent@127.0.0.1"))
        async with asyncio.timeout(15):
            await result.leg.wait_closed()
        assert await sipp.wait() == 0, sipp.report()
        call = gw.gateway.registry.recent[0]
        assert call.record.end_reason == "transfer"
        results = [e for e in call.events if e["type"] == "transfer_result"]
        assert results
        assert results[0]["ok"] is True
        assert results[0]["detail"] == "200 OK"
        log = sipp.messages()
        assert re.search(r"^REFER sip:", log, re.M)
        assert "Refer-To: <sip:agent@127.0.0.1>" in log
        assert log.count("SIP/2.0 200 OK") >= 3  # our 200s to both NOTIFYs, sipp's to our BYE


async def test_register_with_digest(tmp_path: Path) -> None:
    """SWITCHBOARD_SIP_TRUNK_REGISTER: REGISTER → 401 → REGISTER with Authorization (checked
    by sipp's own digest) → 200; the service learns the granted expiry."""
    async with Sipp("uas_register.xml", "-m", "1", cwd=tmp_path, timeout_s=20) as sipp:
        env = {**trunk_env(sipp.local_port), "SWITCHBOARD_SIP_TRUNK_REGISTER": "true"}
        async with sip_gateway(**env):
            assert await sipp.wait() == 0, sipp.report()
        log = sipp.messages()
        assert re.search(r"^Authorization: Digest username=\"trunkuser\"", log, re.M)
        assert "Contact: <sip:trunkuser@127.0.0.1:" in log
