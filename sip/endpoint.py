"""The asyncio shell around `SipCore` (after aioquic's `asyncio/protocol.py`): sockets and timers.

Everything that decides lives in the core; this module only moves bytes and time:

- `SipEndpoint`: one UDP socket (`DatagramProtocol`) and an optional TCP listener. Each input
  goes to the core with `loop.time()` as `now`; then `flush()` sends what the core queued,
  hands its events to the application callback, and re-arms one `loop.call_at` timer at the
  core's `get_timer()`.
- `RtpPortPool` / `RtpSocket`: one UDP socket per call from the configured RTP port range
  (even ports, RFC 3550 §11), whose packets go straight to the call's leg.
- `MediaClock`: a single 20 ms ticker for every call's media (pull 20 ms from the jitter
  buffer, push 20 ms of RTP), instead of one timer task per call: 50 calls cost 50 wake-ups a
  second, not 2,500.

The shell never lets an exception from the core or the application escape into the event
loop's datagram callbacks: it logs it (no peer-controlled text is echoed anywhere) and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
from collections.abc import Callable
from typing import Protocol, cast

import structlog

from sip.core import CoreEvent, Outgoing, SipCore

log = structlog.get_logger("switchboard.sip")

MAX_TCP_CONNECTIONS = 256
TCP_IDLE_TIMEOUT_S = 300.0


class SipEndpoint:
    """UDP + TCP listeners for one `SipCore`."""

    def __init__(
        self,
        core: SipCore,
        handler: Callable[[CoreEvent], None],
        *,
        host: str,
        udp_port: int,
        tcp_port: int | None = None,
    ) -> None:
        self.core = core
        self.handler = handler
        self.host = host
        self._udp_port = udp_port
        self._tcp_port = tcp_port
        self._loop = asyncio.get_running_loop()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._conns: dict[int, _TcpConnection] = {}
        self._conn_ids = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flushing = False
        self._resolved: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.errors = 0

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(self.host, self._udp_port)
        )
        self._udp = transport
        self._udp_port = transport.get_extra_info("sockname")[1]
        if self._tcp_port is not None:
            self._tcp_server = await self._loop.create_server(
                lambda: _TcpConnection(self), self.host, self._tcp_port
            )
            self._tcp_port = self._tcp_server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tcp_server is not None:
            self._tcp_server.close()
            for conn in list(self._conns.values()):
                conn.close()
            await self._tcp_server.wait_closed()
            self._tcp_server = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    @property
    def udp_port(self) -> int:
        return self._udp_port

    @property
    def tcp_port(self) -> int | None:
        return self._tcp_port

    def now(self) -> float:
        return self._loop.time()

    # ------------------------------------------------------------------ input

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.core.receive_datagram(data, (addr[0], addr[1]), self.now())
        except Exception:
            self.errors += 1
            log.exception("sip_core_failed", where="datagram")
        self.flush()

    def stream_received(self, conn: int, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.core.receive_stream(conn, data, addr, self.now())
        except Exception:
            self.errors += 1
            log.exception("sip_core_failed", where="stream")
        self.flush()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.core.handle_timer(self.now())
        except Exception:
            self.errors += 1
            log.exception("sip_core_failed", where="timer")
        self.flush()

    # ------------------------------------------------------------------ output

    def flush(self) -> None:
        """Send everything the core queued, deliver its events, re-arm the timer. Re-entrant
        calls (the handler acting on the core) are folded into the running flush."""
        if self._flushing:
            return
        self._flushing = True
        try:
            while True:
                outgoing = self.core.datagrams_to_send()
                for item in outgoing:
                    self._send(item)
                for conn in self.core.connections_to_close():
                    tcp = self._conns.get(conn)
                    if tcp is not None:
                        tcp.close()
                event = self.core.next_event()
                if event is None and not outgoing:
                    break
                if event is not None:
                    try:
                        self.handler(event)
                    except Exception:
                        self.errors += 1
                        log.exception("sip_event_handler_failed", event=type(event).__name__)
        finally:
            self._flushing = False
        self._arm_timer()

    def _arm_timer(self) -> None:
        at = self.core.get_timer()
        if at == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = self._loop.call_at(at, self._on_timer)

    def _send(self, item: Outgoing) -> None:
        target = item.target
        if target.transport == "TCP":
            conn = self._conns.get(target.conn) if target.conn is not None else None
            if conn is None:
                log.warning("sip_tcp_connection_gone", host=target.host, port=target.port)
                return
            conn.write(item.data)
            return
        if self._udp is None:
            return
        host = self._resolved.get(target.host, target.host)
        if _is_ip(host):
            self._udp.sendto(item.data, (host, target.port))
            return
        task = self._loop.create_task(self._resolve_and_send(item))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve_and_send(self, item: Outgoing) -> None:
        """Contact/Route hosts may be names; resolve off the loop's hot path, once."""
        try:
            infos = await self._loop.getaddrinfo(item.target.host, item.target.port, type=2)  # SOCK_DGRAM
        except OSError:
            log.warning("sip_resolve_failed", host=item.target.host)
            return
        if infos and self._udp is not None:
            ip = str(infos[0][4][0])
            if len(self._resolved) < 1024:
                self._resolved[item.target.host] = ip
            self._udp.sendto(item.data, (ip, item.target.port))

    # ------------------------------------------------------------------ TCP bookkeeping

    def _register(self, conn: _TcpConnection) -> int | None:
        if len(self._conns) >= MAX_TCP_CONNECTIONS:
            return None
        cid = next(self._conn_ids)
        self._conns[cid] = conn
        return cid

    def _unregister(self, cid: int) -> None:
        self._conns.pop(cid, None)
        self.core.connection_lost(cid)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.endpoint.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that went away: nothing to do, the transaction
        # times out by itself.
        log.debug("sip_udp_error", error=type(exc).__name__)


class _TcpConnection(asyncio.Protocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.cid: int | None = None
        self.peer: tuple[str, int] = ("", 0)
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1])) if peer else ("", 0)
        self.cid = self.endpoint._register(self)
        if self.cid is None:
            transport.close()  # too many connections: refuse rather than grow
            return
        self._touch()

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(TCP_IDLE_TIMEOUT_S, self.close)

    def data_received(self, data: bytes) -> None:
        if self.cid is not None:
            self._touch()
            self.endpoint.stream_received(self.cid, data, self.peer)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self.cid is not None:
            self.endpoint._unregister(self.cid)


# --------------------------------------------------------------------------- RTP sockets


class RtpSocket(asyncio.DatagramProtocol):
    """One call's RTP socket; packets go to `on_packet(data, addr)`."""

    def __init__(self, pool: RtpPortPool, port: int) -> None:
        self.pool = pool
        self.port = port
        self.transport: asyncio.DatagramTransport | None = None
        self.on_packet: Callable[[bytes, tuple[str, int]], None] | None = None
        self.send_errors = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (3.11's selector datagram transport does not subclass asyncio.DatagramTransport.)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.on_packet is not None:
            self.on_packet(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.send_errors += 1  # ICMP unreachable: the peer's media port is closed

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.closed:
            self.transport.sendto(data, addr)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.on_packet = None
        if self.transport is not None:
            self.transport.close()
        self.pool.release(self.port)


class RtpPortPool:
    """Hands out even ports from [low, high] (RTCP would take port+1, RFC 3550 §11)."""

    def __init__(self, host: str, low: int, high: int) -> None:
        if low > high:
            raise ValueError("RTP port range is empty")
        self.host = host
        self.low = low + (low % 2)
        self.high = high
        self._in_use: set[int] = set()
        self._cursor = self.low

    @property
    def capacity(self) -> int:
        return (self.high - self.low) // 2 + 1

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    async def open(self) -> RtpSocket:
        loop = asyncio.get_running_loop()
        for _ in range(self.capacity):
            port = self._cursor
            self._cursor = self._cursor + 2 if self._cursor + 2 <= self.high else self.low
            if port in self._in_use:
                continue
            self._in_use.add(port)
            try:
                _, protocol = await loop.create_datagram_endpoint(
                    lambda port=port: RtpSocket(self, port),  # type: ignore[misc]
                    local_addr=(self.host, port),
                )
            except OSError:
                self._in_use.discard(port)  # taken by someone else: try the next one
                continue
            assert isinstance(protocol, RtpSocket)
            return protocol
        raise RuntimeError("no free RTP port in the configured range")

    def release(self, port: int) -> None:
        self._in_use.discard(port)


# --------------------------------------------------------------------------- media clock


class Ticking(Protocol):
    def tick(self, now: float) -> None: ...


class MediaClock:
    """One 20 ms ticker for all calls. Deadlines are absolute (start + k·20 ms), so the rate
    does not drift; after a stall longer than 100 ms it re-bases instead of firing a burst
    (each leg's pacer accounts for the lost time)."""

    INTERVAL = 0.020

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._members: dict[int, Ticking] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._next = 0.0
        self.ticks = 0
        self.late_ticks = 0

    def add(self, member: Ticking) -> None:
        self._members[id(member)] = member
        if self._handle is None:
            self._next = self._loop.time() + self.INTERVAL
            self._handle = self._loop.call_at(self._next, self._tick)

    def remove(self, member: Ticking) -> None:
        self._members.pop(id(member), None)
        if not self._members and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def __len__(self) -> int:
        return len(self._members)

    def _tick(self) -> None:
        now = self._loop.time()
        self.ticks += 1
        for member in list(self._members.values()):
            try:
                member.tick(now)
            except Exception:
                log.exception("media_tick_failed")
                self.remove(member)
        if not self._members:
            self._handle = None
            return
        self._next += self.INTERVAL
        if now - self._next > 0.1:
            self.late_ticks += 1
            self._next = now + self.INTERVAL
        self._handle = self._loop.call_at(self._next, self._tick)

    def stop(self) -> None:
        self._members.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
