"""The SIP user agent core (RFC 3261 §8, §12-§17), sans-I/O (after aioquic's QuicConnection).

Inputs:  `receive_datagram(data, addr, now)`, `receive_stream(conn, data, addr, now)`,
         `handle_timer(now)`, and calls from the application (`answer`, `invite`, `hang_up`, …).
Outputs: `datagrams_to_send()` (bytes and where to), `next_event()` (typed events for the
         application), `get_timer()` (the next deadline), `connections_to_close()`.

It never sleeps, never touches a socket and reads time only from `now`, so every rule below is
tested on virtual time, and the fuzz test drives it with thousands of broken messages.

What it does by itself, so the application never has to:
- parse with limits; answer broken requests 400 (413/416/505/513 where they fit) when they
  can be answered (Via, From, To, Call-ID and CSeq readable), else drop; never 2xx them;
- match transactions (§17.1.3, §17.2.3) and run them; absorb retransmissions;
- 100 Trying at once on INVITE (§17.2.1: within 200 ms);
- CANCEL (§9.2): 200 to the CANCEL, 487 to the INVITE if still pending, 481 if unknown;
- OPTIONS (§11) → 200 with Allow/Accept; BYE → 200; unknown dialog → 481; CSeq out of
  order → 500 (§12.2.2); Require with an extension we lack → 420 (§8.2.2.3); a body other
  than SDP → 415; merged requests → 482 (§8.2.2.2);
- source allowlist (403) and inbound digest (401, then 403 for bad credentials);
- SDP: 488 when no codec matches (before the application ever sees the call); re-INVITE and
  UPDATE (hold, unhold, session refresh) answered with our current media, o= version bumped
  only on change (RFC 3264 §8); delayed offers (INVITE without SDP) get our offer in the 2xx
  and the answer is read from the ACK (§13.2.1);
- 2xx retransmission until ACK and BYE after 64·T1 without one (§13.3.1.4);
- outbound INVITE (UAC): ACK for 2xx (§13.2.2.4, repeated for each retransmitted 2xx),
  digest retry on 401/407 (§22.2, once per challenge), CANCEL only after a provisional (§9.1),
  ACK+BYE for a 2xx that arrives after we gave up;
- INFO DTMF (`application/dtmf-relay`, `application/dtmf`), NOTIFY passed up after 200.
"""

from __future__ import annotations

import ipaddress
import random
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from sip import sdp
from sip.auth import Challenge, DigestServer, Verdict, authorization, pick
from sip.dialog import Dialog, DialogState
from sip.errors import LocalProtocolError, RemoteProtocolError
from sip.message import (
    DEFAULT_LIMITS,
    Headers,
    Limits,
    Message,
    Request,
    Response,
    StreamParser,
    Via,
    answerable,
    canonical,
    make_response,
    parse_message,
    split_list,
)
from sip.transaction import (
    Input,
    Kind,
    State,
    Transaction,
    TxAcked,
    TxAckTimeout,
    TxEvent,
    TxResponse,
    TxTimeout,
    TxTransportError,
)

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, NOTIFY, INFO, UPDATE"
MAGIC_COOKIE = "z9hG4bK"  # §8.1.1.7
_KNOWN_UNSUPPORTED = frozenset({"REGISTER", "SUBSCRIBE", "PUBLISH", "MESSAGE", "REFER", "PRACK"})
_NO_DIALOG_METHODS = frozenset({"BYE", "INFO", "NOTIFY", "UPDATE"})
_DTMF_INFO = ("application/dtmf-relay", "application/dtmf")

# --------------------------------------------------------------------------- addresses


@dataclass(frozen=True, slots=True)
class Target:
    """Where a message goes: a transport, an address, and for TCP the connection to use."""

    transport: str  # "UDP" | "TCP"
    host: str
    port: int
    conn: int | None = None

    @property
    def reliable(self) -> bool:
        return self.transport != "UDP"

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)


@dataclass(frozen=True, slots=True)
class Outgoing:
    data: bytes
    target: Target


@dataclass(frozen=True, slots=True)
class CoreConfig:
    host: str  # the address we advertise in Via, Contact and SDP
    port: int  # our UDP port
    tcp_port: int | None = None
    user_agent: str = "Switchboard"
    contact_user: str = "switchboard"
    allowed_sources: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None
    inbound_username: str | None = None
    inbound_password: str | None = None
    realm: str = "switchboard"
    nonce_secret: bytes = b""
    limits: Limits = DEFAULT_LIMITS
    max_transactions: int = 10_000
    max_sessions: int = 2_000


# --------------------------------------------------------------------------- sessions


class SessionState(StrEnum):
    INCOMING = "incoming"  # UAS: INVITE received, no final response yet
    OUTGOING = "outgoing"  # UAC: INVITE sent, no final response yet
    ANSWERED = "answered"  # UAS: 2xx sent, no ACK yet
    ESTABLISHED = "established"
    TERMINATED = "terminated"


SESSION_TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.INCOMING: frozenset({SessionState.ANSWERED, SessionState.TERMINATED}),
    SessionState.OUTGOING: frozenset({SessionState.ESTABLISHED, SessionState.TERMINATED}),
    SessionState.ANSWERED: frozenset({SessionState.ESTABLISHED, SessionState.TERMINATED}),
    SessionState.ESTABLISHED: frozenset({SessionState.TERMINATED}),
    SessionState.TERMINATED: frozenset(),
}


@dataclass(eq=False, repr=False)
class Session:
    """One call's signalling state (INVITE dialog usage), UAS or UAC."""

    id: int
    role: str  # "uas" | "uac"
    call_id: str
    local_tag: str
    invite: Request
    source: Target  # UAS: where the INVITE came from; UAC: where we sent it
    state: SessionState
    invite_tx: Transaction | None = None
    dialog: Dialog | None = None
    offer: sdp.SessionDescription | None = None  # their offer (UAS) or ours (UAC)
    local_sdp: sdp.SessionDescription | None = None
    local_media: sdp.LocalMedia | None = None
    media: sdp.MediaParams | None = None
    credentials: tuple[str, str] | None = None
    auth_tries: int = 0
    cancel_pending: bool = False
    cancel_sent: bool = False
    bye_pending: bool = False
    ack_wait: Transaction | None = None  # IST in Accepted, waiting for the ACK of our 2xx
    expect_ack_answer: bool = False  # we offered in a 2xx (delayed offer): the ACK answers
    ack_bytes: bytes | None = None  # UAC: our ACK, resent for every retransmitted 2xx
    ack_target: Target | None = None
    user: object = None  # the application's handle (the call leg)

    def set_state(self, target: SessionState) -> None:
        if target is self.state:
            return
        if target not in SESSION_TRANSITIONS[self.state]:
            raise LocalProtocolError(f"session: no transition from {self.state.value} to {target.value}")
        self.state = target

    def __repr__(self) -> str:
        return f"Session(id={self.id}, role={self.role}, call_id={self.call_id!r}, state={self.state.value})"


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """A new INVITE passed every check; answer it with `ring`/`answer`/`reject`."""

    session: Session
    request: Request
    source: Target


@dataclass(frozen=True, slots=True)
class CallCancelled:
    """CANCEL before our final response; 200 and 487 are already sent."""

    session: Session


@dataclass(frozen=True, slots=True)
class CallConfirmed:
    """The ACK for our 2xx arrived."""

    session: Session


@dataclass(frozen=True, slots=True)
class CallProgress:
    """A provisional response to our INVITE; `media` when it carried SDP (early media)."""

    session: Session
    status: int
    media: sdp.MediaParams | None = None


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """Our INVITE was answered (ACK already sent)."""

    session: Session
    media: sdp.MediaParams


@dataclass(frozen=True, slots=True)
class CallFailed:
    """Our INVITE got a final non-2xx (after any digest retry), or timed out (408), or the
    transport failed (503)."""

    session: Session
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The far end ended an established call, or it could not go on."""

    session: Session
    reason: str  # remote_bye | ack_timeout | transport_error


@dataclass(frozen=True, slots=True)
class MediaChanged:
    """A re-INVITE/UPDATE (or an ACK answer) changed the stream: hold, unhold, new address."""

    session: Session
    media: sdp.MediaParams


@dataclass(frozen=True, slots=True)
class InfoDtmf:
    session: Session
    digit: str


@dataclass(frozen=True, slots=True)
class InDialogRequest:
    """A NOTIFY (or other request we answered 200) that the application may care about."""

    session: Session
    request: Request


@dataclass(frozen=True, slots=True)
class RequestDone:
    """Final outcome of a request we sent with `request()`/`register()`: `status` is the final
    response's, or 408 (timeout) / 503 (transport error) with `response=None`."""

    handle: int
    session: Session | None
    status: int
    response: Response | None


CoreEvent = (
    IncomingCall
    | CallCancelled
    | CallConfirmed
    | CallProgress
    | CallAnswered
    | CallFailed
    | CallEnded
    | MediaChanged
    | InfoDtmf
    | InDialogRequest
    | RequestDone
)


@dataclass
class CoreStats:
    received: int = 0
    malformed: int = 0
    answered_malformed: int = 0
    dropped: int = 0
    overload: int = 0
    forbidden: int = 0


@dataclass(eq=False)
class _ClientRequest:
    handle: int
    session: Session | None
    request: Request
    target: Target
    credentials: tuple[str, str] | None
    tries: int = 0


@dataclass(eq=False)
class _Stream:
    parser: StreamParser
    addr: tuple[str, int]


# --------------------------------------------------------------------------- the core


class SipCore:
    """See the module docstring."""

    def __init__(self, config: CoreConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng or random.SystemRandom()
        self._out: list[Outgoing] = []
        self._events: deque[CoreEvent] = deque()
        self._close: list[int] = []
        self._server_tx: dict[tuple[object, ...], Transaction] = {}
        self._client_tx: dict[tuple[object, ...], Transaction] = {}
        self._dialogs: dict[tuple[str, str, str], Session] = {}
        self._sessions: dict[int, Session] = {}
        self._recent_invites: dict[tuple[str, str, int], tuple[object, ...]] = {}
        self._streams: dict[int, _Stream] = {}
        self._next_id = 0
        self._reg_call_id: str | None = None
        self._reg_cseq = 0
        self.stats = CoreStats()
        self._digest: DigestServer | None = None
        if config.inbound_username and config.inbound_password:
            self._digest = DigestServer(
                realm=config.realm,
                username=config.inbound_username,
                password=config.inbound_password,
                secret=config.nonce_secret or self._rng.getrandbits(256).to_bytes(32, "big"),
            )

    # ------------------------------------------------------------------ outputs

    def datagrams_to_send(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> CoreEvent | None:
        return self._events.popleft() if self._events else None

    def connections_to_close(self) -> list[int]:
        out, self._close = self._close, []
        return out

    def get_timer(self) -> float | None:
        deadlines = [
            d
            for table in (self._server_tx, self._client_tx)
            for tx in table.values()
            if (d := tx.next_deadline()) is not None
        ]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        for table in (self._server_tx, self._client_tx):
            for tx in list(table.values()):
                deadline = tx.next_deadline()
                if deadline is not None and deadline <= now:
                    tx.handle_timer(now)
                    self._drain(tx, now)

    @property
    def sessions(self) -> dict[int, Session]:
        return self._sessions

    @property
    def transaction_count(self) -> int:
        return len(self._server_tx) + len(self._client_tx)

    # ------------------------------------------------------------------ network input

    def receive_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        if not data.strip(b"\r\n\t "):
            return  # RFC 5626 §3.5.1 keepalive (or noise): nothing to answer over UDP
        self._receive(data, Target("UDP", addr[0], addr[1]), now, stream=False)

    def receive_stream(self, conn: int, data: bytes, addr: tuple[str, int], now: float) -> None:
        stream = self._streams.get(conn)
        if stream is None:
            stream = self._streams[conn] = _Stream(StreamParser(self.config.limits), addr)
        src = Target("TCP", addr[0], addr[1], conn)
        for item in stream.parser.feed(data):
            if isinstance(item, bytes):
                self._out.append(Outgoing(b"\r\n", src))  # pong (RFC 5626 §3.5.1)
            elif isinstance(item, RemoteProtocolError):
                self._on_malformed(item, src)
            else:
                self._dispatch(item, src, now)
        if stream.parser.failed:
            self._close.append(conn)
            self._streams.pop(conn, None)

    def connection_lost(self, conn: int) -> None:
        self._streams.pop(conn, None)

    def _receive(self, data: bytes, src: Target, now: float, *, stream: bool) -> None:
        try:
            message = parse_message(data, self.config.limits, stream=stream)
        except RemoteProtocolError as exc:
            self._on_malformed(exc, src)
            return
        self._dispatch(message, src, now)

    def _dispatch(self, message: Message, src: Target, now: float) -> None:
        self.stats.received += 1
        try:
            if isinstance(message, Request):
                self._on_request(message, src, now)
            else:
                self._on_response(message, now)
        except RemoteProtocolError:
            # A message that parsed but makes no sense where it arrived (a response in the
            # wrong state, …): count and drop; transactions were left unchanged.
            self.stats.dropped += 1

    def _on_malformed(self, exc: RemoteProtocolError, src: Target) -> None:
        self.stats.malformed += 1
        partial = exc.partial
        if partial is None or partial.method == "ACK" or not answerable(partial):
            return
        status = exc.error_status_hint if exc.error_status_hint >= 400 else 400
        self._send_stateless(partial, status, src)
        self.stats.answered_malformed += 1

    # ------------------------------------------------------------------ requests

    def _on_request(self, request: Request, src: Target, now: float) -> None:
        request = _stamp_via(request, src)
        via = request.top_via
        key = _server_key(request, via)
        tx = self._server_tx.get(key)
        if tx is not None:
            if request.method == "ACK" and tx.state is State.ACCEPTED:
                # An ACK for our 2xx that reused the INVITE's branch (RFC 2543 style).
                self._ack_received(tx, request, now)
            else:
                tx.receive_request(request, now)
                self._drain(tx, now)
            return
        if request.method == "ACK":
            self._on_ack(request, now)
            return
        if self.transaction_count >= self.config.max_transactions:
            self.stats.overload += 1
            self._send_stateless(request, 503, src, headers=(("Retry-After", "5"),))
            return
        if request.method == "CANCEL":
            self._on_cancel(request, src, key, now)
            return
        if request.to.tag:
            self._on_in_dialog(request, src, key, now)
            return
        self._on_out_of_dialog(request, src, key, now)

    def _server_transaction(
        self, request: Request, src: Target, key: tuple[object, ...], now: float
    ) -> Transaction:
        kind = Kind.INVITE_SERVER if request.method == "INVITE" else Kind.NON_INVITE_SERVER
        target = _response_target(request.top_via, src)
        tx = Transaction(kind, request, key=key, target=target, reliable=src.reliable, now=now)
        self._server_tx[key] = tx
        return tx

    def _respond(
        self,
        tx: Transaction,
        status: int,
        now: float,
        *,
        to_tag: str | None = None,
        headers: Headers = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> None:
        extra: Headers = (("Server", self.config.user_agent), *headers) if status >= 200 else headers
        response = make_response(
            tx.request,
            status,
            to_tag=to_tag or self._token(),
            headers=extra,
            body=body,
            content_type=content_type,
        )
        tx.send_response(response, now)
        self._drain(tx, now)

    def _reply(
        self,
        request: Request,
        src: Target,
        key: tuple[object, ...],
        status: int,
        now: float,
        *,
        to_tag: str | None = None,
        headers: Headers = (),
        body: bytes = b"",
    ) -> None:
        """Answer a new request through a fresh server transaction (absorbs retransmissions)."""
        tx = self._server_transaction(request, src, key, now)
        self._respond(tx, status, now, to_tag=to_tag, headers=headers, body=body)

    def _send_stateless(self, request: Request, status: int, src: Target, *, headers: Headers = ()) -> None:
        try:
            target = _response_target(request.top_via, src)
        except ValueError:
            return
        response = make_response(request, status, to_tag=self._token(), headers=headers)
        self._out.append(Outgoing(response.serialize(), target))

    def _on_out_of_dialog(self, request: Request, src: Target, key: tuple[object, ...], now: float) -> None:
        if not self._source_allowed(src.host):
            self.stats.forbidden += 1
            self._reply(request, src, key, 403, now)
            return
        method = request.method
        if method == "INVITE":
            self._on_new_invite(request, src, key, now)
        elif method == "OPTIONS":
            self._reply(request, src, key, 200, now, headers=self._capabilities())
        elif method in _NO_DIALOG_METHODS:
            self._reply(request, src, key, 481, now)
        elif method in _KNOWN_UNSUPPORTED:
            self._reply(request, src, key, 405, now, headers=(("Allow", ALLOW),))
        else:
            self._reply(request, src, key, 501, now, headers=(("Allow", ALLOW),))

    def _capabilities(self) -> Headers:
        return (("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", ""))

    def _on_new_invite(self, request: Request, src: Target, key: tuple[object, ...], now: float) -> None:
        tx = self._server_transaction(request, src, key, now)
        tx.send_response(make_response(request, 100), now)  # §17.2.1: at once
        self._drain(tx, now)
        local_tag = self._token()

        def refuse(status: int, headers: Headers = ()) -> None:
            self._respond(tx, status, now, to_tag=local_tag, headers=headers)

        cseq = request.cseq
        merged = (request.call_id, request.from_.tag or "", cseq.number)
        if self._recent_invites.get(merged, key) != key:
            refuse(482)  # §8.2.2.2: the same request reached us by another path
            return
        self._recent_invites[merged] = key
        while len(self._recent_invites) > 4 * self.config.max_sessions:
            self._recent_invites.pop(next(iter(self._recent_invites)))
        required = [v for v in request.header_values("require") if v]
        if required:
            refuse(420, (("Unsupported", ", ".join(required)),))
            return
        if not request.contacts():
            refuse(400)
            return
        encoding = (request.header("content-encoding") or "identity").strip().lower()
        if request.body and (request.content_type != "application/sdp" or encoding != "identity"):
            refuse(415, (("Accept", "application/sdp"), ("Accept-Encoding", "identity")))
            return
        if self._digest is not None:
            verdict = self._digest.verify(request.header("authorization"), method="INVITE", now=now)
            if verdict in (Verdict.MISSING, Verdict.STALE):
                challenge = self._digest.challenge(now, stale=verdict is Verdict.STALE)
                refuse(401, (("WWW-Authenticate", challenge),))
                return
            if verdict is Verdict.BAD:
                self.stats.forbidden += 1
                refuse(403)
                return
        offer: sdp.SessionDescription | None = None
        if request.body:
            try:
                offer = sdp.SessionDescription.parse(request.body)
                sdp.answer(offer, sdp.LocalMedia(self.config.host, 9, 0))  # only checks for a codec
            except RemoteProtocolError as exc:
                refuse(exc.error_status_hint)
                return
        if len(self._sessions) >= self.config.max_sessions:
            self.stats.overload += 1
            refuse(503, (("Retry-After", "5"),))
            return
        session = Session(
            id=self._new_id(),
            role="uas",
            call_id=request.call_id,
            local_tag=local_tag,
            invite=request,
            source=src,
            state=SessionState.INCOMING,
            invite_tx=tx,
            offer=offer,
        )
        tx.context = session
        self._sessions[session.id] = session
        self._events.append(IncomingCall(session, request, src))

    def _on_cancel(self, request: Request, src: Target, key: tuple[object, ...], now: float) -> None:
        """§9.2: match the INVITE by branch; 200 to the CANCEL, then 487 to the INVITE."""
        invite_key = (*key[:-1], "INVITE")
        ist = self._server_tx.get(invite_key)
        tx = self._server_transaction(request, src, key, now)
        if ist is None or ist.kind is not Kind.INVITE_SERVER:
            self._respond(tx, 481, now)
            return
        session = ist.context if isinstance(ist.context, Session) else None
        to_tag = session.local_tag if session else None
        self._respond(tx, 200, now, to_tag=to_tag)
        if ist.state is State.PROCEEDING:
            self._respond(ist, 487, now, to_tag=to_tag)
            if session is not None and session.state is SessionState.INCOMING:
                self._terminate(session)
                self._forget(session)
                self._events.append(CallCancelled(session))

    def _on_ack(self, request: Request, now: float) -> None:
        """An ACK outside any transaction: the ACK for a 2xx (§13.3.1.4), matched by dialog."""
        session = self._dialogs.get((request.call_id, request.to.tag or "", request.from_.tag or ""))
        tx = session.ack_wait if session is not None else None
        if session is None or tx is None or tx.request.cseq.number != request.cseq.number:
            return  # a stray or late ACK: never answered
        self._ack_received(tx, request, now)

    def _ack_received(self, tx: Transaction, ack: Request, now: float) -> None:
        session = tx.context if isinstance(tx.context, Session) else None
        if session is not None and session.expect_ack_answer and ack.body:
            session.expect_ack_answer = False
            self._take_answer(session, ack.body)
        tx.fire(Input.RECV_ACK, now, ack)
        self._drain(tx, now)

    def _take_answer(self, session: Session, body: bytes) -> None:
        if session.local_sdp is None:
            return
        try:
            media = sdp.accept_answer(sdp.SessionDescription.parse(body), session.local_sdp)
        except RemoteProtocolError:
            return
        if media != session.media:
            session.media = media
            self._events.append(MediaChanged(session, media))

    def _on_in_dialog(self, request: Request, src: Target, key: tuple[object, ...], now: float) -> None:
        session = self._dialogs.get((request.call_id, request.to.tag or "", request.from_.tag or ""))
        if session is None or session.dialog is None:
            self._reply(request, src, key, 481, now)
            return
        try:
            session.dialog.check_remote_cseq(request)
        except RemoteProtocolError as exc:
            self._reply(request, src, key, exc.error_status_hint, now)
            return
        method = request.method
        tag = session.local_tag
        if session.state is SessionState.TERMINATED and method != "BYE":
            self._reply(request, src, key, 481, now, to_tag=tag)
            return
        if method == "BYE":
            self._reply(request, src, key, 200, now, to_tag=tag)
            invite_tx = session.invite_tx
            if (
                session.state is SessionState.INCOMING
                and invite_tx is not None
                and invite_tx.state is State.PROCEEDING
            ):
                self._respond(invite_tx, 487, now, to_tag=tag)  # BYE on an early dialog
            if session.ack_wait is not None and session.ack_wait.state is State.ACCEPTED:
                # They could only send this BYE having seen our 2xx: it stands for the ACK.
                session.ack_wait.fire(Input.RECV_ACK, now)
                self._drain(session.ack_wait, now)
            if session.state is not SessionState.TERMINATED:
                self._terminate(session)
                self._events.append(CallEnded(session, "remote_bye"))
            self._forget(session)
        elif method == "INVITE":
            self._on_reinvite(session, request, src, key, now)
        elif method == "UPDATE":
            self._on_update(session, request, src, key, now)
        elif method in ("NOTIFY", "OPTIONS"):
            headers = self._capabilities() if method == "OPTIONS" else ()
            self._reply(request, src, key, 200, now, to_tag=tag, headers=headers)
            if method == "NOTIFY":
                self._events.append(InDialogRequest(session, request))
        elif method == "INFO":
            self._reply(request, src, key, 200, now, to_tag=tag)
            digit = _info_digit(request)
            if digit is not None:
                self._events.append(InfoDtmf(session, digit))
        elif method in _KNOWN_UNSUPPORTED:
            self._reply(request, src, key, 405, now, to_tag=tag, headers=(("Allow", ALLOW),))
        else:
            self._reply(request, src, key, 501, now, to_tag=tag, headers=(("Allow", ALLOW),))

    def _negotiate_again(self, session: Session, body: bytes) -> tuple[int, bytes]:
        """Answer a new offer in an established dialog: (status, SDP body)."""
        assert session.local_media is not None
        try:
            offer = sdp.SessionDescription.parse(body)
            prefer = (session.media.codec,) if session.media is not None else sdp.SUPPORTED
            answer, media = sdp.answer(offer, session.local_media, prefer=prefer)
        except RemoteProtocolError as exc:
            return exc.error_status_hint, b""
        answer = sdp.bump_if_changed(answer, session.local_sdp)
        session.local_sdp = answer
        if media != session.media:
            session.media = media
            self._events.append(MediaChanged(session, media))
        return 200, answer.serialize()

    def _on_reinvite(
        self, session: Session, request: Request, src: Target, key: tuple[object, ...], now: float
    ) -> None:
        tx = self._server_transaction(request, src, key, now)
        tx.context = session
        tag = session.local_tag
        busy_ours = session.invite_tx is not None and session.invite_tx.state in (
            State.CALLING,
            State.PROCEEDING,
        )
        busy_theirs = session.ack_wait is not None and session.ack_wait.state is State.ACCEPTED
        if session.state is not SessionState.ESTABLISHED or busy_ours:
            self._respond(tx, 491, now, to_tag=tag)  # RFC 3261 §14.2: glare
            return
        if busy_theirs:
            self._respond(tx, 500, now, to_tag=tag, headers=(("Retry-After", str(self._rng.randint(0, 10))),))
            return
        if request.body:
            if request.content_type != "application/sdp":
                self._respond(tx, 415, now, to_tag=tag, headers=(("Accept", "application/sdp"),))
                return
            status, body = self._negotiate_again(session, request.body)
        else:
            # §14.2: a re-INVITE without an offer: our current SDP is the offer, the ACK answers.
            status, body = 200, session.local_sdp.serialize() if session.local_sdp else b""
            session.expect_ack_answer = True
        if status != 200:
            self._respond(tx, status, now, to_tag=tag)
            return
        session.ack_wait = tx
        self._respond(tx, 200, now, to_tag=tag, headers=self._dialog_headers(src), body=body)

    def _on_update(
        self, session: Session, request: Request, src: Target, key: tuple[object, ...], now: float
    ) -> None:
        tag = session.local_tag
        if not request.body:
            self._reply(request, src, key, 200, now, to_tag=tag, headers=self._dialog_headers(src))
            return
        if session.local_media is None:
            self._reply(request, src, key, 491, now, to_tag=tag)
            return
        status, body = self._negotiate_again(session, request.body)
        headers = self._dialog_headers(src) if status == 200 else ()
        self._reply(request, src, key, status, now, to_tag=tag, headers=headers, body=body)

    # ------------------------------------------------------------------ UAS API

    def _dialog_headers(self, src: Target) -> Headers:
        return (("Contact", self.contact(src.transport)), ("Allow", ALLOW), ("Supported", ""))

    def contact(self, transport: str = "UDP", *, user: str | None = None) -> str:
        user, host = user or self.config.contact_user, _host(self.config.host)
        if transport == "TCP" and self.config.tcp_port:
            return f"<sip:{user}@{host}:{self.config.tcp_port};transport=tcp>"
        return f"<sip:{user}@{host}:{self.config.port}>"

    def _uas_dialog(self, session: Session) -> Dialog:
        if session.dialog is None:
            session.dialog = Dialog.for_uas(
                session.invite, session.local_tag, self.contact(session.source.transport)
            )
            self._dialogs[session.dialog.id] = session
        return session.dialog

    def ring(self, session: Session, now: float, status: int = 180) -> None:
        """Send a provisional response (180 Ringing by default) with our tag: an early dialog."""
        if session.state is not SessionState.INCOMING or session.invite_tx is None:
            raise LocalProtocolError(f"cannot ring a session in state {session.state.value}")
        if not 100 < status < 200:
            raise LocalProtocolError(f"{status} is not a provisional status")
        self._uas_dialog(session)
        self._respond(
            session.invite_tx,
            status,
            now,
            to_tag=session.local_tag,
            headers=self._dialog_headers(session.source),
        )

    def answer(self, session: Session, local: sdp.LocalMedia, now: float) -> sdp.MediaParams | None:
        """Send the 200 OK with our SDP (an answer, or an offer for a delayed-offer INVITE, in
        which case the media is known only from the ACK: returns None and a `MediaChanged`
        follows)."""
        if session.state is not SessionState.INCOMING or session.invite_tx is None:
            raise LocalProtocolError(f"cannot answer a session in state {session.state.value}")
        media: sdp.MediaParams | None = None
        if session.offer is not None:
            local_sdp, media = sdp.answer(session.offer, local)
        else:
            local_sdp = sdp.offer(local)
            session.expect_ack_answer = True
        dialog = self._uas_dialog(session)
        dialog.set_state(DialogState.CONFIRMED)
        session.local_media = local
        session.local_sdp = local_sdp
        session.media = media
        session.set_state(SessionState.ANSWERED)
        session.ack_wait = session.invite_tx
        self._respond(
            session.invite_tx,
            200,
            now,
            to_tag=session.local_tag,
            headers=self._dialog_headers(session.source),
            body=local_sdp.serialize(),
        )
        return media

    def reject(self, session: Session, status: int, now: float, *, headers: Headers = ()) -> None:
        if session.state is not SessionState.INCOMING or session.invite_tx is None:
            raise LocalProtocolError(f"cannot reject a session in state {session.state.value}")
        if status < 300:
            raise LocalProtocolError(f"{status} is not a rejection")
        self._respond(session.invite_tx, status, now, to_tag=session.local_tag, headers=headers)
        self._terminate(session)
        self._forget(session)

    # ------------------------------------------------------------------ UAC API

    def invite(
        self,
        *,
        uri: str,
        from_uri: str,
        to_uri: str,
        local: sdp.LocalMedia,
        target: Target,
        now: float,
        credentials: tuple[str, str] | None = None,
        display_name: str = "",
        headers: Headers = (),
    ) -> Session:
        """Place a call: INVITE with our offer to `target` (the trunk)."""
        offer = sdp.offer(local)
        tag = self._token()
        call_id = f"{self._token()}{self._token()}@{_host(self.config.host)}"
        from_value = f"{display_name + ' ' if display_name else ''}<{from_uri}>;tag={tag}"
        request = Request(
            "INVITE",
            uri,
            (
                ("Via", self._via(target)),
                ("Max-Forwards", "70"),
                ("From", from_value),
                ("To", f"<{to_uri}>"),
                ("Call-ID", call_id),
                ("CSeq", f"{self._rng.randint(1, 9999)} INVITE"),
                ("Contact", self.contact(target.transport)),
                ("Allow", ALLOW),
                ("Supported", ""),
                ("User-Agent", self.config.user_agent),
                *headers,
                ("Content-Type", "application/sdp"),
                ("Content-Length", str(len(offer.serialize()))),
            ),
            offer.serialize(),
        )
        session = Session(
            id=self._new_id(),
            role="uac",
            call_id=call_id,
            local_tag=tag,
            invite=request,
            source=target,
            state=SessionState.OUTGOING,
            offer=offer,
            local_sdp=offer,
            local_media=local,
            credentials=credentials,
        )
        self._sessions[session.id] = session
        self._send_invite(session, request, now)
        return session

    def _send_invite(self, session: Session, request: Request, now: float) -> None:
        key = ("c", request.top_via.branch, "INVITE")
        tx = Transaction(
            Kind.INVITE_CLIENT,
            request,
            key=key,
            target=session.source,
            reliable=session.source.reliable,
            now=now,
        )
        tx.context = session
        session.invite = request
        session.invite_tx = tx
        self._client_tx[key] = tx
        self._drain(tx, now)

    def cancel(self, session: Session, now: float) -> None:
        """Give up on our INVITE (§9.1). Before any provisional response the CANCEL waits for
        one; the INVITE then ends with 487 (`CallFailed`)."""
        if session.state is not SessionState.OUTGOING or session.cancel_pending:
            return
        session.cancel_pending = True
        tx = session.invite_tx
        if tx is not None and tx.state is State.PROCEEDING:
            self._send_cancel(session, now)

    def _send_cancel(self, session: Session, now: float) -> None:
        if session.cancel_sent:
            return  # one CANCEL per INVITE; its client transaction retransmits it
        session.cancel_sent = True
        invite = session.invite
        headers: list[tuple[str, str]] = [(k, v) for k, v in invite.headers if canonical(k) == "via"][:1]
        headers += [
            ("Max-Forwards", "70"),
            ("From", invite.header("from") or ""),
            ("To", invite.header("to") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq.number} CANCEL"),
        ]
        headers += [(k, v) for k, v in invite.headers if canonical(k) == "route"]
        headers.append(("Content-Length", "0"))
        cancel = Request("CANCEL", invite.uri, tuple(headers))
        self._client_request(cancel, session.source, session, None, now)

    # ------------------------------------------------------------------ both sides

    def hang_up(self, session: Session, now: float) -> int | None:
        """End the call the right way for its state: BYE when established (the returned handle's
        `RequestDone` tells the outcome), 480 before we answered, CANCEL before they answered,
        BYE after the ACK when we answered but the ACK has not come yet (§15)."""
        match session.state:
            case SessionState.INCOMING:
                self.reject(session, 480, now)
            case SessionState.OUTGOING:
                self.cancel(session, now)
            case SessionState.ANSWERED:
                session.bye_pending = True
            case SessionState.ESTABLISHED:
                self._terminate(session)
                return self._bye(session, now)
        return None

    def _bye(self, session: Session, now: float) -> int:
        return self.request(session, "BYE", now, _allow_terminated=True)

    def request(
        self,
        session: Session,
        method: str,
        now: float,
        *,
        headers: Headers = (),
        body: bytes = b"",
        content_type: str | None = None,
        _allow_terminated: bool = False,
    ) -> int:
        """Send an in-dialog request (REFER, INFO, BYE, …); its `RequestDone` carries `handle`."""
        if session.dialog is None or (session.state is SessionState.TERMINATED and not _allow_terminated):
            raise LocalProtocolError(f"no dialog to send {method} in")
        target = self._dialog_target(session)
        request = session.dialog.request(
            method, self._via(target), headers=headers, body=body, content_type=content_type
        )
        return self._client_request(request, target, session, session.credentials, now)

    def register(
        self,
        *,
        registrar: Target,
        domain: str,
        user: str,
        expires: int,
        now: float,
        credentials: tuple[str, str] | None = None,
    ) -> int:
        """REGISTER our Contact for `user@domain` (§10.2); one Call-ID, CSeq rising (§10.2.4)."""
        if self._reg_call_id is None:
            self._reg_call_id = f"{self._token()}@{_host(self.config.host)}"
        self._reg_cseq += 1
        aor = f"<sip:{user}@{domain}>"
        request = Request(
            "REGISTER",
            f"sip:{domain}",
            (
                ("Via", self._via(registrar)),
                ("Max-Forwards", "70"),
                ("From", f"{aor};tag={self._token()}"),
                ("To", aor),
                ("Call-ID", self._reg_call_id),
                ("CSeq", f"{self._reg_cseq} REGISTER"),
                ("Contact", self.contact(registrar.transport, user=user)),
                ("Expires", str(expires)),
                ("User-Agent", self.config.user_agent),
                ("Content-Length", "0"),
            ),
        )
        return self._client_request(request, registrar, None, credentials, now)

    def _client_request(
        self,
        request: Request,
        target: Target,
        session: Session | None,
        credentials: tuple[str, str] | None,
        now: float,
        *,
        handle: int | None = None,
        tries: int = 0,
    ) -> int:
        handle = self._new_id() if handle is None else handle
        ctx = _ClientRequest(handle, session, request, target, credentials, tries)
        key = ("c", request.top_via.branch, request.method)
        tx = Transaction(
            Kind.NON_INVITE_CLIENT, request, key=key, target=target, reliable=target.reliable, now=now
        )
        tx.context = ctx
        self._client_tx[key] = tx
        self._drain(tx, now)
        return handle

    # ------------------------------------------------------------------ responses

    def _on_response(self, response: Response, now: float) -> None:
        via = response.top_via
        tx = self._client_tx.get(("c", via.branch, response.cseq.method))
        if tx is None:
            self._stray_response(response)
            return
        tx.receive_response(response, now)
        self._drain(tx, now)

    def _stray_response(self, response: Response) -> None:
        """A 2xx to an INVITE whose transaction is gone: ACK it again (§13.2.2.4)."""
        if response.cseq.method != "INVITE" or not 200 <= response.status < 300:
            return
        session = self._dialogs.get((response.call_id, response.from_.tag or "", response.to.tag or ""))
        if session is not None and session.ack_bytes is not None and session.ack_target is not None:
            self._out.append(Outgoing(session.ack_bytes, session.ack_target))

    def _on_invite_response(self, session: Session, response: Response, now: float) -> None:
        status = response.status
        if status < 200:
            self._on_provisional(session, response, now)
        elif status < 300:
            self._on_invite_2xx(session, response, now)
        elif status in (401, 407) and self._retry_invite_with_auth(session, response, now):
            return
        elif session.state is SessionState.OUTGOING:
            self._terminate(session)
            self._forget(session)
            self._events.append(CallFailed(session, status, response.reason))

    def _on_provisional(self, session: Session, response: Response, now: float) -> None:
        media: sdp.MediaParams | None = None
        if response.to.tag and status_creates_dialog(response.status) and session.dialog is None:
            dialog = Dialog.for_uac(session.invite, response, self.contact(session.source.transport))
            session.dialog = dialog
            self._dialogs[dialog.id] = session
        if response.body and response.content_type == "application/sdp" and session.offer is not None:
            try:
                media = sdp.accept_answer(sdp.SessionDescription.parse(response.body), session.offer)
                session.media = media
            except RemoteProtocolError:
                media = None
        if session.cancel_pending:
            self._send_cancel(session, now)
        self._events.append(CallProgress(session, response.status, media))

    def _on_invite_2xx(self, session: Session, response: Response, now: float) -> None:
        remote_tag = response.to.tag or ""
        if session.dialog is not None and session.state is not SessionState.OUTGOING:
            if remote_tag == session.dialog.remote_tag:
                if session.ack_bytes is not None and session.ack_target is not None:
                    self._out.append(Outgoing(session.ack_bytes, session.ack_target))  # 2xx repeat
            else:
                self._ack_and_bye(session, response, now)  # a second fork answered (§13.2.2.4)
            return
        dialog = session.dialog
        if dialog is None or dialog.remote_tag != remote_tag:
            if dialog is not None:
                self._dialogs.pop(dialog.id, None)
            dialog = Dialog.for_uac(session.invite, response, self.contact(session.source.transport))
            session.dialog = dialog
            self._dialogs[dialog.id] = session
        else:
            dialog.update_from_response(response)
        dialog.set_state(DialogState.CONFIRMED)
        self._send_ack(session, now)
        media: sdp.MediaParams | None = session.media
        if response.body and session.offer is not None:
            try:
                media = sdp.accept_answer(sdp.SessionDescription.parse(response.body), session.offer)
            except RemoteProtocolError:
                media = None
        if session.cancel_pending or media is None:
            # Answered after we gave up, or with nothing we can play: ACK, then BYE (§15).
            session.set_state(SessionState.ESTABLISHED)
            self._terminate(session)
            self._bye(session, now)
            if session.cancel_pending:
                self._events.append(CallFailed(session, 487, "Request Terminated"))
            else:
                self._events.append(CallFailed(session, 488, "Not Acceptable Here"))
            return
        session.media = media
        session.set_state(SessionState.ESTABLISHED)
        self._events.append(CallAnswered(session, media))

    def _send_ack(self, session: Session, now: float) -> None:
        assert session.dialog is not None
        target = self._dialog_target(session)
        ack = session.dialog.request("ACK", self._via(target), cseq=session.invite.cseq.number)
        session.ack_bytes = ack.serialize()
        session.ack_target = target
        self._out.append(Outgoing(session.ack_bytes, target))

    def _ack_and_bye(self, session: Session, response: Response, now: float) -> None:
        ghost = Session(
            id=self._new_id(),
            role="uac",
            call_id=session.call_id,
            local_tag=session.local_tag,
            invite=session.invite,
            source=session.source,
            state=SessionState.ESTABLISHED,
            dialog=Dialog.for_uac(session.invite, response, self.contact(session.source.transport)),
        )
        self._send_ack(ghost, now)
        self._terminate(ghost)
        self._bye(ghost, now)

    def _retry_invite_with_auth(self, session: Session, response: Response, now: float) -> bool:
        if (
            session.credentials is None
            or session.auth_tries >= 2
            or session.state is not SessionState.OUTGOING
        ):
            return False
        request = self._with_auth(session.invite, response, session.credentials, session.source)
        if request is None:
            return False
        session.auth_tries += 1
        self._send_invite(session, request, now)
        return True

    def _with_auth(
        self, request: Request, response: Response, credentials: tuple[str, str], target: Target
    ) -> Request | None:
        """§22.2: the same request with CSeq + 1, a new branch, and our answer to the challenge."""
        proxy = response.status == 407
        header = "proxy-authenticate" if proxy else "www-authenticate"
        challenges: list[Challenge] = []
        for value in response.header_values(header):
            try:
                challenges.append(Challenge.parse(value, proxy=proxy))
            except ValueError:
                continue
        challenge = pick(challenges)
        if challenge is None:
            return None
        value = authorization(
            challenge,
            username=credentials[0],
            password=credentials[1],
            method=request.method,
            uri=request.uri,
            cnonce=self._token(),
        )
        cseq = request.cseq
        out: list[tuple[str, str]] = []
        via_done = False
        for k, v in request.headers:
            name = canonical(k)
            if name == "via" and not via_done:
                out.append((k, self._via(target)))
                via_done = True
            elif name == "cseq":
                out.append((k, f"{cseq.number + 1} {cseq.method}"))
            elif name in ("authorization", "proxy-authorization", "content-length"):
                continue
            else:
                out.append((k, v))
        out.append(("Proxy-Authorization" if proxy else "Authorization", value))
        out.append(("Content-Length", str(len(request.body))))
        return Request(request.method, request.uri, tuple(out), request.body)

    # ------------------------------------------------------------------ transaction events

    def _drain(self, tx: Transaction, now: float) -> None:
        if tx.outbox:
            target = cast(Target, tx.target)
            self._out.extend(Outgoing(data, target) for data in tx.outbox)
            tx.outbox.clear()
        while tx.events:
            self._on_tx_event(tx.events.pop(0), now)
        if tx.terminated:
            table = (
                self._server_tx
                if tx.kind in (Kind.INVITE_SERVER, Kind.NON_INVITE_SERVER)
                else self._client_tx
            )
            if table.get(tx.key) is tx:
                del table[tx.key]

    def _on_tx_event(self, event: TxEvent, now: float) -> None:
        tx = event.tx
        ctx = tx.context
        match event:
            case TxResponse(response=response):
                if isinstance(ctx, Session):
                    self._on_invite_response(ctx, response, now)
                elif isinstance(ctx, _ClientRequest) and response.status >= 200:
                    self._on_request_done(ctx, response, now)
            case TxTimeout() | TxTransportError():
                status = 408 if isinstance(event, TxTimeout) else 503
                if tx.kind is Kind.INVITE_CLIENT and isinstance(ctx, Session):
                    if ctx.state is SessionState.OUTGOING:
                        self._terminate(ctx)
                        self._forget(ctx)
                        self._events.append(
                            CallFailed(ctx, status, "Request Timeout" if status == 408 else "Transport Error")
                        )
                elif isinstance(ctx, _ClientRequest):
                    self._finish_request(ctx, status, None)
                elif (
                    isinstance(ctx, Session)
                    and isinstance(event, TxTransportError)
                    and ctx.state is not SessionState.TERMINATED
                ):
                    self._terminate(ctx)
                    self._forget(ctx)
                    self._events.append(CallEnded(ctx, "transport_error"))
            case TxAcked():
                if isinstance(ctx, Session):
                    if ctx.ack_wait is tx:
                        ctx.ack_wait = None
                    if ctx.state is SessionState.ANSWERED:
                        ctx.set_state(SessionState.ESTABLISHED)
                        self._events.append(CallConfirmed(ctx))
                        if ctx.bye_pending:
                            self._terminate(ctx)
                            self._bye(ctx, now)
            case TxAckTimeout():
                if isinstance(ctx, Session):
                    ctx.ack_wait = None
                    if ctx.state in (SessionState.ANSWERED, SessionState.ESTABLISHED):
                        # §13.3.1.4: no ACK within 64·T1: the session is over, say so with BYE.
                        if ctx.state is SessionState.ANSWERED:
                            ctx.set_state(SessionState.ESTABLISHED)
                        self._terminate(ctx)
                        self._bye(ctx, now)
                        self._events.append(CallEnded(ctx, "ack_timeout"))

    def _on_request_done(self, ctx: _ClientRequest, response: Response, now: float) -> None:
        if response.status in (401, 407) and ctx.credentials is not None and ctx.tries < 2:
            retry = self._with_auth(ctx.request, response, ctx.credentials, ctx.target)
            if retry is not None:
                if ctx.session is not None and ctx.session.dialog is not None and retry.method != "CANCEL":
                    ctx.session.dialog.local_cseq = retry.cseq.number
                if retry.method == "REGISTER":
                    self._reg_cseq = retry.cseq.number
                self._client_request(
                    retry,
                    ctx.target,
                    ctx.session,
                    ctx.credentials,
                    now,
                    handle=ctx.handle,
                    tries=ctx.tries + 1,
                )
                return
        self._finish_request(ctx, response.status, response)

    def _finish_request(self, ctx: _ClientRequest, status: int, response: Response | None) -> None:
        if ctx.request.method == "BYE" and ctx.session is not None:
            self._forget(ctx.session)
        if ctx.request.method != "CANCEL":
            self._events.append(RequestDone(ctx.handle, ctx.session, status, response))

    # ------------------------------------------------------------------ helpers

    def _terminate(self, session: Session) -> None:
        if session.state is not SessionState.TERMINATED:
            session.set_state(SessionState.TERMINATED)
        if session.dialog is not None and session.dialog.state is not DialogState.TERMINATED:
            session.dialog.set_state(DialogState.TERMINATED)
        self._sessions.pop(session.id, None)

    def _forget(self, session: Session) -> None:
        """Drop the dialog from the index (after its BYE, or at once when it never got going)."""
        if session.dialog is not None and self._dialogs.get(session.dialog.id) is session:
            del self._dialogs[session.dialog.id]

    def _dialog_target(self, session: Session) -> Target:
        assert session.dialog is not None
        hop = session.dialog.next_hop()
        transport = "TCP" if hop.transport == "tcp" else "UDP"
        port = hop.port or 5060
        if transport == "TCP" and session.source.transport == "TCP":
            return Target("TCP", hop.host, port, session.source.conn)
        if transport == "TCP":
            transport = "UDP"  # we open no outgoing TCP connections; fall back to UDP
        return Target(transport, hop.host, port)

    def _via(self, target: Target) -> str:
        port = (
            self.config.tcp_port if target.transport == "TCP" and self.config.tcp_port else self.config.port
        )
        branch = MAGIC_COOKIE + self._token()
        return f"SIP/2.0/{target.transport} {_host(self.config.host)}:{port};branch={branch};rport"

    def _token(self) -> str:
        return f"{self._rng.getrandbits(64):016x}"

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _source_allowed(self, host: str) -> bool:
        allowed = self.config.allowed_sources
        if allowed is None:
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in net for net in allowed)


def status_creates_dialog(status: int) -> bool:
    return 100 < status < 300


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _server_key(request: Request, via: Via) -> tuple[object, ...]:
    """§17.2.3: branch + sent-by + method (ACK matches its INVITE); RFC 2543 peers without the
    magic cookie are matched on Call-ID, From tag, CSeq number and the top Via."""
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE):
        host, port = via.sent_by
        return ("z", branch, host.lower(), port, method)
    return ("2543", request.call_id, request.from_.tag or "", request.cseq.number, str(via), method)


def _stamp_via(request: Request, src: Target) -> Request:
    """RFC 3261 §18.2.1 `received` and RFC 3581 `rport` on the top Via, so responses find the
    way back through NAT."""
    via = request.top_via
    params = list(via.params)
    changed = False
    if via.host != src.host:
        params = [p for p in params if p[0] != "received"] + [("received", src.host)]
        changed = True
    if via.param("rport") == "":
        params = [(k, str(src.port) if k == "rport" else v) for k, v in params]
        changed = True
    if not changed:
        return request
    stamped = str(Via(via.transport, via.host, via.port, tuple(params)))
    headers: list[tuple[str, str]] = []
    done = False
    for k, v in request.headers:
        if not done and canonical(k) == "via":
            rest = split_list(v)[1:]
            headers.append((k, ", ".join([stamped, *rest])))
            done = True
        else:
            headers.append((k, v))
    return Request(request.method, request.uri, tuple(headers), request.body, request.version)


def _response_target(via: Via, src: Target) -> Target:
    """§18.2.2 (with RFC 3581): over TCP the same connection; over UDP the source address, to
    the `rport` when the client asked for it, else to the Via's port."""
    if src.reliable:
        return src
    rport = via.param("rport")
    if rport is not None:  # present, with or without a value (stamped or not yet)
        return Target("UDP", src.host, int(rport) if rport.isdigit() else src.port)
    return Target("UDP", src.host, via.port or 5060)


def _info_digit(request: Request) -> str | None:
    ctype = request.content_type
    if ctype not in _DTMF_INFO or not request.body:
        return None
    text = request.body.decode("utf-8", "replace")
    if ctype == "application/dtmf":
        value = text.strip()
    else:
        value = ""
        for line in text.splitlines():
            name, _, v = line.partition("=")
            if name.strip().lower() == "signal":
                value = v.strip()
    if len(value) == 1 and value.upper() in "0123456789*#ABCD":
        return value.upper()
    if value == "10":
        return "*"
    if value == "11":
        return "#"
    return None
