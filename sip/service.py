"""The SIP carrier at run time: one `SipCore` on its endpoint, its calls, and the gateway.

`SipService` is what the plugin's lifespan starts. It owns every task it creates (answering,
running calls, registering) and cancels and awaits them on `stop()`, so nothing outlives the
app. It decides what only the application can decide:

- admission of an inbound call (`IncomingCall`): 503 while draining or at capacity (the
  gateway's registry plus calls still ringing), 404 for a Request-URI user we do not serve,
  503 when the RTP port range is exhausted; otherwise 180, the configured answer delay, 200
  with our SDP, and the call runs through `gateway.open_call` / `gateway.run_call` with a
  `SipLeg`, exactly like a Twilio call (same agents, tools and records);
- outbound calls through the trunk (`place_call`), with digest credentials, ringing timeout
  (CANCEL) and the final status mapped to a disposition;
- REGISTER to the trunk when configured, refreshed before it expires;
- routing of in-dialog events (BYE, re-INVITE, NOTIFY, INFO DTMF) to the call's leg.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import socket
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from gateway.events import CallStarted
from gateway.runtime import Gateway
from sip.config import SipConfig
from sip.core import (
    CallAnswered,
    CallCancelled,
    CallConfirmed,
    CallEnded,
    CallFailed,
    CallProgress,
    CoreConfig,
    CoreEvent,
    IncomingCall,
    InDialogRequest,
    InfoDtmf,
    MediaChanged,
    RequestDone,
    Session,
    SessionState,
    SipCore,
    Target,
)
from sip.endpoint import MediaClock, RtpPortPool, SipEndpoint
from sip.leg import SipLeg
from sip.message import NameAddr, Request, Response, SipUri
from sip.sdp import LocalMedia

log = structlog.get_logger("switchboard.sip")

Disposition = Literal["answered", "busy", "no_answer", "rejected", "failed"]
REGISTER_EXPIRES_S = 600
CANCEL_WAIT_S = 5.0


@dataclass(frozen=True, slots=True)
class OutboundResult:
    """What became of a call we placed. `leg` and `call_id` are set when it was answered (the
    call then runs in the service's task; `await leg.wait_closed()` waits for its end)."""

    disposition: Disposition
    status: int
    reason: str = ""
    call_id: str | None = None
    sip_call_id: str | None = None
    leg: SipLeg | None = None


def disposition_for(status: int) -> Disposition:
    """The final status of our INVITE as a campaign outcome (RFC 3261 §21)."""
    if 200 <= status < 300:
        return "answered"
    if status in (486, 600):
        return "busy"
    if status in (408, 480, 487):
        return "no_answer"
    if status in (401, 403, 404, 407, 410, 484, 485, 488, 603, 604, 606):
        return "rejected"
    return "failed"


@dataclass
class ServiceStats:
    inbound: int = 0
    answered: int = 0
    rejected: dict[int, int] | None = None
    cancelled: int = 0
    outbound: int = 0
    setup_ms: list[float] | None = None  # INVITE received → 200 sent, per inbound call (bounded)
    rtp_in: int = 0  # totals over closed legs
    rtp_out: int = 0
    jitter_late: int = 0
    jitter_gap_frames: int = 0

    def __post_init__(self) -> None:
        self.rejected = {}
        self.setup_ms = []


class SipService:
    """See the module docstring."""

    MAX_SETUP_SAMPLES = 10_000

    def __init__(self, gateway: Gateway, config: SipConfig, *, rng: random.Random | None = None) -> None:
        self.gateway = gateway
        self.config = config
        self._rng = rng or random.SystemRandom()
        self.core: SipCore | None = None
        self.endpoint: SipEndpoint | None = None
        self.ports = RtpPortPool(config.host, config.rtp_port_min, config.rtp_port_max)
        self.clock: MediaClock | None = None
        self.draining = False
        self.stats = ServiceStats()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._answering: dict[int, asyncio.Task[Any]] = {}
        self._legs: dict[int, SipLeg] = {}
        self._waiters: dict[int, asyncio.Future[RequestDone]] = {}
        self._outbound: dict[int, asyncio.Queue[CoreEvent]] = {}
        self._invite_at: dict[int, float] = {}
        self._pending = 0
        self._trunk_ip: str | None = None
        self.recent_legs: deque[SipLeg] = deque(maxlen=100)  # for stats and tests

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        c = self.config
        self.clock = MediaClock()
        core = SipCore(self._core_config(c.udp_port, c.tcp_port), rng=self._rng)
        self.endpoint = SipEndpoint(
            core, self._on_event, host=c.host, udp_port=c.udp_port, tcp_port=c.tcp_port
        )
        await self.endpoint.start()
        # With port 0 (tests) the bound ports are known only now: Via and Contact need them.
        core.config = self._core_config(self.endpoint.udp_port, self.endpoint.tcp_port)
        self.core = core
        if c.trunk_host:
            self._trunk_ip = await self._resolve(c.trunk_host, c.trunk_port)
        if c.register and self._trunk_ip:
            self._spawn(self._register_loop())
        log.info(
            "sip_started",
            host=c.host,
            udp_port=self.endpoint.udp_port,
            tcp_port=self.endpoint.tcp_port,
            advertised=c.advertised_host,
            rtp_ports=f"{c.rtp_port_min}-{c.rtp_port_max}",
        )

    def _core_config(self, udp_port: int, tcp_port: int | None) -> CoreConfig:
        c = self.config
        return CoreConfig(
            host=c.advertised_host,
            port=udp_port,
            tcp_port=tcp_port,
            allowed_sources=c.allowed_sources,
            inbound_username=c.username,
            inbound_password=c.password,
            nonce_secret=secrets.token_bytes(32),
            max_sessions=max(4 * self.gateway.registry.max_calls, 64),
        )

    async def stop(self) -> None:
        """Drain: refuse new calls (503), hang up what is left, stop every task, close sockets."""
        self.draining = True
        core, endpoint = self.core, self.endpoint
        if core is not None and endpoint is not None:
            now = endpoint.now()
            for session in list(core.sessions.values()):
                if session.state is SessionState.INCOMING:
                    core.reject(session, 503, now)
            endpoint.flush()
        legs = list(self._legs.values())
        if legs:
            await asyncio.gather(*(leg.shutdown() for leg in legs), return_exceptions=True)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # Give final BYEs/503s a moment on the wire before the socket goes.
        if endpoint is not None:
            endpoint.flush()
            await endpoint.stop()
        if self.clock is not None:
            self.clock.stop()
        log.info("sip_stopped")

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A bug in one call's task must not pass silently (nor take the others down).
            log.error("sip_task_failed", exc_info=task.exception())

    @property
    def live_legs(self) -> dict[int, SipLeg]:
        return self._legs

    def leg_for(self, sip_call_id: str) -> SipLeg | None:
        for leg in self._legs.values():
            if leg.session.call_id == sip_call_id:
                return leg
        return None

    # ------------------------------------------------------------------ core events

    def _on_event(self, event: CoreEvent) -> None:
        match event:
            case IncomingCall():
                self._admit(event)
            case CallCancelled(session=session):
                self.stats.cancelled += 1
                task = self._answering.pop(session.id, None)
                if task is not None:
                    task.cancel()
            case CallConfirmed():
                pass
            case CallEnded(session=session, reason=reason):
                leg = self._legs.get(session.id)
                if leg is not None:
                    leg.remote_hangup("caller_hangup" if reason == "remote_bye" else reason)
            case MediaChanged(session=session, media=media):
                leg = self._legs.get(session.id)
                if leg is not None:
                    leg.set_media(media)
            case InfoDtmf(session=session, digit=digit):
                leg = self._legs.get(session.id)
                if leg is not None:
                    leg.push_dtmf(digit)
            case InDialogRequest(session=session, request=request):
                leg = self._legs.get(session.id)
                if leg is not None:
                    leg.on_notify(request)
            case RequestDone(handle=handle):
                waiter = self._waiters.pop(handle, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(event)
            case CallProgress(session=session) | CallAnswered(session=session) | CallFailed(session=session):
                queue = self._outbound.get(session.id)
                if queue is not None:
                    with contextlib.suppress(asyncio.QueueFull):
                        queue.put_nowait(event)

    def _reject(self, session: Session, status: int, headers: tuple[tuple[str, str], ...] = ()) -> None:
        assert self.core is not None
        assert self.endpoint is not None
        rejected = self.stats.rejected
        assert rejected is not None
        rejected[status] = rejected.get(status, 0) + 1
        if session.state is SessionState.INCOMING:
            self.core.reject(session, status, self.endpoint.now(), headers=headers)

    def _has_room(self) -> bool:
        registry = self.gateway.registry
        return registry.has_room() and len(registry.live) + self._pending < registry.max_calls

    def _admit(self, event: IncomingCall) -> None:
        assert self.endpoint is not None
        session, request = event.session, event.request
        self.stats.inbound += 1
        invite_at = self.endpoint.now()
        if self.draining:
            self._reject(session, 503, (("Retry-After", "30"),))
            return
        user = _uri_user(request.uri)
        if not self.config.accepts(user):
            self._reject(session, 404)
            return
        if not self._has_room():
            self.gateway.registry.rejected += 1
            log.warning(
                "call_rejected_capacity", sip_call_id=session.call_id, live=len(self.gateway.registry.live)
            )
            self._reject(session, 503, (("Retry-After", "5"),))
            return
        self._pending += 1
        self._invite_at[session.id] = invite_at
        self._answering[session.id] = self._spawn(self._inbound(session, request, event.source))

    async def _inbound(self, session: Session, request: Request, source: Target) -> None:
        assert self.core is not None
        assert self.endpoint is not None
        assert self.clock is not None
        core, endpoint = self.core, self.endpoint
        leg: SipLeg | None = None
        pending = True
        try:
            try:
                rtp = await self.ports.open()
            except RuntimeError:
                log.warning("sip_no_rtp_port", sip_call_id=session.call_id)
                self._reject(session, 503, (("Retry-After", "5"),))
                endpoint.flush()
                return
            leg = SipLeg(session, rtp, self.clock, self)
            session.user = leg
            self._legs[session.id] = leg
            if session.state is not SessionState.INCOMING:
                return  # cancelled while we opened the socket
            core.ring(session, endpoint.now())
            endpoint.flush()
            if self.config.answer_delay_s > 0:
                await asyncio.sleep(self.config.answer_delay_s)
            if session.state is not SessionState.INCOMING:
                return
            local = LocalMedia(self.config.advertised_host, rtp.port, self._rng.randint(1, 2**31))
            media = core.answer(session, local, endpoint.now())
            endpoint.flush()
            self._answering.pop(session.id, None)
            self.stats.answered += 1
            setup = self.stats.setup_ms
            if setup is not None and len(setup) < self.MAX_SETUP_SAMPLES:
                setup.append((endpoint.now() - self._invite_at.pop(session.id, endpoint.now())) * 1000)
            start = CallStarted(
                carrier="sip",
                call_sid=session.call_id,
                stream_sid="",
                parameters=_parameters(request, source, media.codec if media else "PCMU", "inbound"),
            )
            leg.begin(start, media, endpoint.now())
            call, backend = self.gateway.open_call("sip", start.parameters, native_dtmf=True)
            self._pending -= 1
            pending = False
            await self.gateway.run_call(call, leg, backend, first_events=[start])
        finally:
            if pending:
                self._pending -= 1
            self._answering.pop(session.id, None)
            self._invite_at.pop(session.id, None)
            if leg is not None:
                await leg.close()

    # ------------------------------------------------------------------ Signalling (for legs)

    async def _sent(self, handle: int) -> RequestDone:
        """Send what the core queued for request `handle` and wait for its outcome."""
        assert self.endpoint is not None
        waiter: asyncio.Future[RequestDone] = asyncio.get_running_loop().create_future()
        self._waiters[handle] = waiter
        self.endpoint.flush()
        try:
            return await waiter
        finally:
            self._waiters.pop(handle, None)

    async def _request(self, session: Session, method: str, **kw: Any) -> RequestDone | None:
        if self.core is None or self.endpoint is None:
            return None
        try:
            handle = self.core.request(session, method, self.endpoint.now(), **kw)
        except Exception:
            log.warning("sip_request_refused", method=method, state=session.state.value)
            return None
        return await self._sent(handle)

    async def hang_up(self, session: Session) -> int | None:
        if self.core is None or self.endpoint is None:
            return None
        handle = self.core.hang_up(session, self.endpoint.now())
        if handle is None:
            self.endpoint.flush()
            return None
        return (await self._sent(handle)).status

    def hang_up_nowait(self, session: Session) -> None:
        if self.core is None or self.endpoint is None:
            return
        self.core.hang_up(session, self.endpoint.now())
        self.endpoint.flush()

    async def refer(self, session: Session, refer_to: str) -> Response | None:
        referred_by = f"<sip:{self.config.caller_id or 'switchboard'}@{self.config.advertised_host}>"
        done = await self._request(
            session, "REFER", headers=(("Refer-To", refer_to), ("Referred-By", referred_by))
        )
        return done.response if done is not None else None

    def leg_closed(self, leg: SipLeg) -> None:
        self._legs.pop(leg.session.id, None)
        self.recent_legs.append(leg)
        self.stats.rtp_in += leg.stats.rtp_in
        self.stats.rtp_out += leg.stats.rtp_out
        self.stats.jitter_late += leg.jitter.stats.late
        self.stats.jitter_gap_frames += leg.jitter.stats.gap_frames

    # ------------------------------------------------------------------ outbound

    async def place_call(
        self, to: str, *, from_: str | None = None, timeout_s: float = 30.0
    ) -> OutboundResult:
        """INVITE `to` through the trunk; see `sip.outbound.place_call`."""
        if self.core is None or self.endpoint is None or self.clock is None:
            return OutboundResult("failed", 503, "SIP is not running")
        if self._trunk_ip is None or not self.config.trunk_host:
            return OutboundResult("failed", 503, "no trunk configured (SWITCHBOARD_SIP_TRUNK_HOST)")
        if self.draining or not self._has_room():
            return OutboundResult("failed", 503, "at capacity")
        self.stats.outbound += 1
        self._pending += 1
        try:
            return await self._place_call(to, from_, timeout_s)
        finally:
            self._pending -= 1

    async def _place_call(self, to: str, from_: str | None, timeout_s: float) -> OutboundResult:
        assert self.core is not None
        assert self.endpoint is not None
        assert self.clock is not None
        core, endpoint, c = self.core, self.endpoint, self.config
        assert self._trunk_ip is not None
        assert c.trunk_host is not None
        try:
            rtp = await self.ports.open()
        except RuntimeError:
            return OutboundResult("failed", 503, "no free RTP port")
        target = Target("UDP", self._trunk_ip, c.trunk_port)
        uri = to if to.startswith(("sip:", "sips:")) else f"sip:{to}@{c.trunk_host}:{c.trunk_port}"
        caller = from_ or c.caller_id or "switchboard"
        from_uri = caller if caller.startswith("sip:") else f"sip:{caller}@{c.trunk_host}"
        local = LocalMedia(c.advertised_host, rtp.port, self._rng.randint(1, 2**31))
        session = core.invite(
            uri=uri,
            from_uri=from_uri,
            to_uri=uri,
            local=local,
            target=target,
            now=endpoint.now(),
            credentials=c.trunk_credentials,
        )
        queue: asyncio.Queue[CoreEvent] = asyncio.Queue(maxsize=64)  # a few 1xx and one final
        self._outbound[session.id] = queue
        leg = SipLeg(session, rtp, self.clock, self)
        session.user = leg
        self._legs[session.id] = leg
        endpoint.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        cancelled = False
        try:
            while True:
                remaining = deadline - loop.time()
                try:
                    if remaining <= 0:
                        raise TimeoutError
                    async with asyncio.timeout(remaining):
                        event = await queue.get()
                except TimeoutError:
                    if cancelled:
                        await leg.close()
                        return OutboundResult("no_answer", 408, "no answer", sip_call_id=session.call_id)
                    # Ringing too long: CANCEL, then wait (bounded) for the 487 or a crossing 200.
                    cancelled = True
                    core.cancel(session, endpoint.now())
                    endpoint.flush()
                    deadline = loop.time() + CANCEL_WAIT_S
                    continue
                if isinstance(event, CallProgress):
                    if event.media is not None:
                        leg.set_media(event.media)
                    continue
                if isinstance(event, CallFailed):
                    await leg.close()
                    disposition = "no_answer" if cancelled else disposition_for(event.status)
                    log.info("sip_outbound_failed", status=event.status, disposition=disposition)
                    return OutboundResult(
                        disposition, event.status, event.reason, sip_call_id=session.call_id
                    )
                assert isinstance(event, CallAnswered)
                break
        except BaseException:
            await leg.close()
            raise
        finally:
            self._outbound.pop(session.id, None)
        params = {
            "from": _user_of(from_uri),
            "to": to,
            "from_uri": from_uri,
            "to_uri": uri,
            "request_uri_user": _uri_user(uri),
            "codec": event.media.codec,
            "Direction": "outbound-api",
            "direction": "outbound",
        }
        start = CallStarted(carrier="sip", call_sid=session.call_id, stream_sid="", parameters=params)
        leg.begin(start, event.media, endpoint.now())
        call, backend = self.gateway.open_call("sip", params, native_dtmf=True)
        self._spawn(self._run_outbound(call, leg, backend, start))
        # Let the task start: `run_call` registers the call before its first await, so the
        # caller can address it (`gateway.hang_up`, `gateway.post`) as soon as we return.
        await asyncio.sleep(0)
        return OutboundResult("answered", 200, "OK", call.call_id, session.call_id, leg)

    async def _run_outbound(self, call: Any, leg: SipLeg, backend: Any, start: CallStarted) -> None:
        try:
            await self.gateway.run_call(call, leg, backend, first_events=[start])
        finally:
            await leg.close()

    # ------------------------------------------------------------------ REGISTER

    async def _register_loop(self) -> None:
        """Keep a registration with the trunk (RFC 3261 §10.2.4: refresh before it expires)."""
        assert self._trunk_ip is not None
        assert self.config.trunk_host
        c = self.config
        user = c.trunk_username or c.caller_id or "switchboard"
        while True:
            result = await self.register_once(user, REGISTER_EXPIRES_S)
            if result is not None and 200 <= result.status < 300 and result.response is not None:
                granted = _granted_expiry(result.response, REGISTER_EXPIRES_S)
                log.info("sip_registered", expires=granted)
                await asyncio.sleep(max(30.0, granted * 0.8))
            else:
                log.warning("sip_register_failed", status=result.status if result else None)
                await asyncio.sleep(60.0)

    async def register_once(self, user: str, expires: int) -> RequestDone | None:
        if self.core is None or self.endpoint is None or self._trunk_ip is None or not self.config.trunk_host:
            return None
        handle = self.core.register(
            registrar=Target("UDP", self._trunk_ip, self.config.trunk_port),
            domain=self.config.trunk_host,
            user=user,
            expires=expires,
            now=self.endpoint.now(),
            credentials=self.config.trunk_credentials,
        )
        return await self._sent(handle)

    @staticmethod
    async def _resolve(host: str, port: int) -> str:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        return str(infos[0][4][0])


def _uri_user(uri: str) -> str:
    try:
        return SipUri.parse(uri).user or ""
    except ValueError:
        return ""


def _user_of(uri: str) -> str:
    user = _uri_user(uri)
    return user or uri


def _parameters(request: Request, source: Target, codec: str, direction: str) -> dict[str, str]:
    """The call's variables for routing and records (agents route on `to`/`request_uri_user`,
    an `X-Agent` header picks an agent explicitly)."""
    frm = NameAddr.parse(request.header("from") or "")
    to = NameAddr.parse(request.header("to") or "")
    params = {
        "from": _user_of(frm.uri),
        "to": _user_of(to.uri),
        "from_uri": frm.uri,
        "to_uri": to.uri,
        "request_uri_user": _uri_user(request.uri),
        "codec": codec,
        "direction": direction,
        "Direction": "inbound",
        "source": f"{source.host}:{source.port}",
    }
    agent = request.header("x-agent")
    if agent:
        params["x-agent"] = agent.strip()[:64]
    return params


def _granted_expiry(response: Response, asked: int) -> int:
    for contact in response.contacts():
        value = next((v for k, v in contact.params if k == "expires"), None)
        if value and value.isdigit():
            return int(value)
    header = response.header("expires")
    return int(header) if header and header.strip().isdigit() else asked
