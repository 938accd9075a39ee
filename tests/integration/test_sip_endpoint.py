"""The SIP endpoint's sockets, driven by plain UDP/TCP clients (no sipp needed): big datagrams,
garbage, TCP framing and limits, admission (403, 404, 503), and OPTIONS answered throughout."""

from __future__ import annotations

import asyncio
import socket

from sip.message import Response, parse_message
from tests.fakes.sip_sipp import free_udp_and_tcp_port, sip_gateway


def request(method: str, *, user: str = "bot", n: int = 1, body: bytes = b"", extra: str = "") -> bytes:
    ctype = "Content-Type: text/plain\r\n" if body else ""
    head = (
        f"{method} sip:{user}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKe{n};rport\r\n"
        f"From: <sip:probe@127.0.0.1>;tag=p{n}\r\nTo: <sip:{user}@127.0.0.1>\r\n"
        f"Call-ID: probe{n}@127.0.0.1\r\nCSeq: {n} {method}\r\nContact: <sip:probe@127.0.0.1:9>\r\n"
        f"{extra}{ctype}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class UdpClient:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)

    async def exchange(self, data: bytes, port: int, *, expect: int, wait: float = 0.5) -> list[Response]:
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(self.sock, data, ("127.0.0.1", port))
        out: list[Response] = []
        try:
            async with asyncio.timeout(wait if expect == 0 else 5):
                while len(out) < expect or expect == 0:
                    raw, _ = await loop.sock_recvfrom(self.sock, 70000)
                    message = parse_message(raw)
                    assert isinstance(message, Response)
                    out.append(message)
        except TimeoutError:
            pass
        return out

    def close(self) -> None:
        self.sock.close()


async def test_big_datagrams_garbage_and_options_keepalive() -> None:
    async with sip_gateway() as gw:
        client = UdpClient()
        try:
            # Near the largest UDP payload IPv4 carries (65,507 bytes): accepted and answered.
            big = request("OPTIONS", n=1, body=b"x" * 64_000)
            [ok] = await client.exchange(big, gw.sip_port, expect=1)
            assert ok.status == 200
            assert await client.exchange(b"\x16\x03\x01 not sip at all", gw.sip_port, expect=0) == []
            broken = request("OPTIONS", n=2).replace(b"CSeq: 2 OPTIONS", b"CSeq: 2 INVITE")
            [bad] = await client.exchange(broken, gw.sip_port, expect=1)
            assert (bad.status, bad.reason) == (400, "Bad Request")
            [ok] = await client.exchange(request("OPTIONS", n=3), gw.sip_port, expect=1)
            assert ok.status == 200
            assert gw.service.core.stats.malformed == 2
            assert gw.service.endpoint.errors == 0
        finally:
            client.close()


async def test_tcp_framing_and_the_size_limit() -> None:
    port = free_udp_and_tcp_port()
    async with sip_gateway(SWITCHBOARD_SIP_UDP_PORT=str(port), SWITCHBOARD_SIP_TCP_PORT=str(port)):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            two = request("OPTIONS", n=1) + request("OPTIONS", n=2)
            writer.write(two[:50])
            await writer.drain()
            writer.write(two[50:])
            await writer.drain()
            got = []
            async with asyncio.timeout(5):
                for _ in range(2):
                    head = await reader.readuntil(b"\r\n\r\n")
                    got.append(parse_message(head))
            assert [r.status for r in got if isinstance(r, Response)] == [200, 200]
            writer.write(b"\r\n\r\n")  # RFC 5626 ping
            await writer.drain()
            async with asyncio.timeout(5):
                assert await reader.readexactly(2) == b"\r\n"
            huge = request("OPTIONS", n=3).replace(b"Content-Length: 0", b"Content-Length: 900000")
            writer.write(huge)
            await writer.drain()
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
                assert isinstance(too_big := parse_message(head), Response)
                assert too_big.status == 513
                assert await reader.read() == b""  # framing lost: the connection is closed
        finally:
            writer.close()
            await writer.wait_closed()


async def test_admission_403_404_503() -> None:
    env = {"SWITCHBOARD_SIP_ALLOWED_SOURCES": "10.0.0.0/8"}
    async with sip_gateway(**env) as gw:
        client = UdpClient()
        try:
            [forbidden] = await client.exchange(request("INVITE", n=1), gw.sip_port, expect=1)
            assert forbidden.status == 403
        finally:
            client.close()
    env = {"SWITCHBOARD_SIP_ACCEPT_USERS": "bot"}
    offer = (
        b"v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"
    )
    sdp = "Content-Type: application/sdp\r\n"
    async with sip_gateway(**env) as gw:
        client = UdpClient()
        try:
            invite = (
                request("INVITE", user="someone", n=2, extra=sdp).replace(
                    b"Content-Length: 0", b"Content-Length: %d" % len(offer)
                )
                + offer
            )
            replies = await client.exchange(invite, gw.sip_port, expect=2)
            assert [r.status for r in replies] == [100, 404]
            gw.service.draining = True
            invite = (
                request("INVITE", n=3, extra=sdp).replace(
                    b"Content-Length: 0", b"Content-Length: %d" % len(offer)
                )
                + offer
            )
            replies = await client.exchange(invite, gw.sip_port, expect=2)
            assert [r.status for r in replies] == [100, 503]
            assert replies[1].header("retry-after") == "30"
            assert gw.backends.backends == []
        finally:
            client.close()
