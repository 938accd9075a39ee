"""SIP transactions (RFC 3261 §17, with the RFC 6026 "Accepted" state), on virtual time.

Four state machines, each a literal table `(state, input) -> (next state, actions)`. Rule (as in
h11's `_state.py`): every change goes through `Transaction.fire`, which looks the pair up
first; a pair that is not in the table raises and leaves the transaction exactly as it was.
Inputs from our own side (send a response) raise `LocalProtocolError`; inputs from the network
(a stray response, a late ACK) raise `RemoteProtocolError`, which the core counts and drops.

Time is an argument (`now`, seconds); timers are deadlines the caller reads with
`next_deadline()` and fires with `handle_timer(now)`. Values from §17 and table 4 of RFC 3261:

    T1 = 0.5 s (RTT estimate), T2 = 4 s (max non-INVITE retransmit interval), T4 = 5 s
    A  INVITE request retransmit (UDP)      T1, doubling                       ICT Calling
    B  INVITE transaction timeout           64·T1 = 32 s                        ICT Calling
    D  wait for response retransmits        32 s UDP, 0 TCP                     ICT Completed
    E  non-INVITE request retransmit (UDP)  T1, doubling to T2 (T2 once 1xx)   NICT
    F  non-INVITE transaction timeout       64·T1                               NICT
    G  INVITE final response retransmit     T1, doubling to T2                  IST Completed, Accepted
    H  wait for ACK                         64·T1                               IST Completed
    I  wait for ACK retransmits             T4 UDP, 0 TCP                       IST Confirmed
    J  wait for request retransmits         64·T1 UDP, 0 TCP                    NIST Completed
    K  wait for response retransmits        T4 UDP, 0 TCP                       NICT Completed
    L  wait for the ACK of a 2xx            64·T1                               IST Accepted (RFC 6026)
    M  wait for 2xx retransmits             64·T1                               ICT Accepted (RFC 6026)

The 2xx to an INVITE is retransmitted end to end by the UAS core until the ACK arrives (§13.3.1.4:
from T1, doubling to T2, even over TCP). We keep that loop in the INVITE server transaction's
Accepted state (Timer G) so it lives in one table; after 64·T1 without an ACK the transaction
reports `AckTimeout` and the core ends the dialog with a BYE (§13.3.1.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sip.errors import LocalProtocolError, RemoteProtocolError
from sip.message import Request, Response, canonical

T1 = 0.5
T2 = 4.0
T4 = 5.0


class Kind(StrEnum):
    INVITE_CLIENT = "ict"
    INVITE_SERVER = "ist"
    NON_INVITE_CLIENT = "nict"
    NON_INVITE_SERVER = "nist"


class State(StrEnum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Input(StrEnum):
    # from the network
    RECV_REQUEST = "recv_request"  # a retransmission of the transaction's request
    RECV_ACK = "recv_ack"
    RECV_1XX = "recv_1xx"
    RECV_2XX = "recv_2xx"
    RECV_FINAL = "recv_300_699"
    TRANSPORT_ERROR = "transport_error"
    # from our side (the transaction user)
    SEND_1XX = "send_1xx"
    SEND_2XX = "send_2xx"
    SEND_FINAL = "send_300_699"
    # timers
    TIMER_A = "A"
    TIMER_B = "B"
    TIMER_D = "D"
    TIMER_E = "E"
    TIMER_F = "F"
    TIMER_G = "G"
    TIMER_H = "H"
    TIMER_I = "I"
    TIMER_J = "J"
    TIMER_K = "K"
    TIMER_L = "L"
    TIMER_M = "M"


_LOCAL_INPUTS = frozenset({Input.SEND_1XX, Input.SEND_2XX, Input.SEND_FINAL})


class Action(StrEnum):
    SEND = "send"  # send the message given with the input (and remember it)
    RESEND = "resend"  # resend the last message we sent (request or response)
    SEND_ACK = "send_ack"  # ICT: ACK a non-2xx final on the same branch (§17.1.1.3)
    PASS_UP = "pass_up"  # hand the response to the transaction user
    REPORT_TIMEOUT = "report_timeout"
    REPORT_TRANSPORT_ERROR = "report_transport_error"
    REPORT_ACKED = "report_acked"
    REPORT_ACK_TIMEOUT = "report_ack_timeout"
    BACKOFF = "backoff"  # re-arm the timer that fired at 2·interval (capped at T2 but for Timer A)
    HOLD_T2 = "hold_t2"  # re-arm the timer that fired at T2 (NICT Proceeding, §17.1.2.2)
    START_A = "start_A"
    START_B = "start_B"
    START_D = "start_D"
    START_E = "start_E"
    START_F = "start_F"
    START_G = "start_G"  # non-2xx final: only over unreliable transports
    START_G_2XX = "start_G_2xx"  # 2xx: over every transport (§13.3.1.4)
    START_H = "start_H"
    START_I = "start_I"
    START_J = "start_J"
    START_K = "start_K"
    START_L = "start_L"
    START_M = "start_M"
    STOP_TIMERS = "stop_timers"


S, I, A = State, Input, Action  # noqa: E741 (short names keep the tables readable)

# INVITE client transaction, §17.1.1.2 figure 5, with RFC 6026 Accepted.
ICT: dict[tuple[State, Input], tuple[State, tuple[Action, ...]]] = {
    (S.CALLING, I.TIMER_A): (S.CALLING, (A.RESEND, A.BACKOFF)),
    (S.CALLING, I.TIMER_B): (S.TERMINATED, (A.STOP_TIMERS, A.REPORT_TIMEOUT)),
    (S.CALLING, I.RECV_1XX): (S.PROCEEDING, (A.STOP_TIMERS, A.PASS_UP)),
    (S.CALLING, I.RECV_2XX): (S.ACCEPTED, (A.STOP_TIMERS, A.PASS_UP, A.START_M)),
    (S.CALLING, I.RECV_FINAL): (S.COMPLETED, (A.STOP_TIMERS, A.SEND_ACK, A.PASS_UP, A.START_D)),
    (S.CALLING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.STOP_TIMERS, A.REPORT_TRANSPORT_ERROR)),
    (S.PROCEEDING, I.RECV_1XX): (S.PROCEEDING, (A.PASS_UP,)),
    (S.PROCEEDING, I.RECV_2XX): (S.ACCEPTED, (A.PASS_UP, A.START_M)),
    (S.PROCEEDING, I.RECV_FINAL): (S.COMPLETED, (A.SEND_ACK, A.PASS_UP, A.START_D)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, I.RECV_FINAL): (S.COMPLETED, (A.SEND_ACK,)),  # retransmitted final: ACK again
    (S.COMPLETED, I.RECV_1XX): (S.COMPLETED, ()),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.TERMINATED, (A.STOP_TIMERS, A.REPORT_TRANSPORT_ERROR)),
    (S.COMPLETED, I.TIMER_D): (S.TERMINATED, ()),
    (S.ACCEPTED, I.RECV_2XX): (S.ACCEPTED, (A.PASS_UP,)),  # the TU ACKs each 2xx again
    (S.ACCEPTED, I.RECV_1XX): (S.ACCEPTED, ()),
    (S.ACCEPTED, I.RECV_FINAL): (S.ACCEPTED, ()),
    (S.ACCEPTED, I.TIMER_M): (S.TERMINATED, ()),
}

# INVITE server transaction, §17.2.1 figure 7, with RFC 6026 Accepted (and the §13.3.1.4 2xx
# retransmissions on Timer G there).
IST: dict[tuple[State, Input], tuple[State, tuple[Action, ...]]] = {
    (S.PROCEEDING, I.RECV_REQUEST): (S.PROCEEDING, (A.RESEND,)),
    (S.PROCEEDING, I.SEND_1XX): (S.PROCEEDING, (A.SEND,)),
    (S.PROCEEDING, I.SEND_2XX): (S.ACCEPTED, (A.SEND, A.START_G_2XX, A.START_L)),
    (S.PROCEEDING, I.SEND_FINAL): (S.COMPLETED, (A.SEND, A.START_G, A.START_H)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, I.RECV_REQUEST): (S.COMPLETED, (A.RESEND,)),
    (S.COMPLETED, I.TIMER_G): (S.COMPLETED, (A.RESEND, A.BACKOFF)),
    (S.COMPLETED, I.TIMER_H): (S.TERMINATED, (A.STOP_TIMERS, A.REPORT_TIMEOUT)),
    (S.COMPLETED, I.RECV_ACK): (S.CONFIRMED, (A.STOP_TIMERS, A.START_I)),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.TERMINATED, (A.STOP_TIMERS, A.REPORT_TRANSPORT_ERROR)),
    (S.CONFIRMED, I.RECV_ACK): (S.CONFIRMED, ()),
    (S.CONFIRMED, I.RECV_REQUEST): (S.CONFIRMED, ()),
    (S.CONFIRMED, I.TIMER_I): (S.TERMINATED, ()),
    (S.ACCEPTED, I.RECV_REQUEST): (S.ACCEPTED, (A.RESEND,)),
    (S.ACCEPTED, I.TIMER_G): (S.ACCEPTED, (A.RESEND, A.BACKOFF)),
    (S.ACCEPTED, I.RECV_ACK): (S.TERMINATED, (A.STOP_TIMERS, A.REPORT_ACKED)),
    (S.ACCEPTED, I.TIMER_L): (S.TERMINATED, (A.STOP_TIMERS, A.REPORT_ACK_TIMEOUT)),
    (S.ACCEPTED, I.TRANSPORT_ERROR): (S.ACCEPTED, ()),  # the next retransmission may get through
}

# Non-INVITE client transaction, §17.1.2.2 figure 6.
NICT: dict[tuple[State, Input], tuple[State, tuple[Action, ...]]] = {
    (S.TRYING, I.TIMER_E): (S.TRYING, (A.RESEND, A.BACKOFF)),
    (S.TRYING, I.TIMER_F): (S.TERMINATED, (A.STOP_TIMERS, A.REPORT_TIMEOUT)),
    (S.TRYING, I.RECV_1XX): (S.PROCEEDING, (A.PASS_UP,)),
    (S.TRYING, I.RECV_2XX): (S.COMPLETED, (A.STOP_TIMERS, A.PASS_UP, A.START_K)),
    (S.TRYING, I.RECV_FINAL): (S.COMPLETED, (A.STOP_TIMERS, A.PASS_UP, A.START_K)),
    (S.TRYING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.STOP_TIMERS, A.REPORT_TRANSPORT_ERROR)),
    (S.PROCEEDING, I.TIMER_E): (S.PROCEEDING, (A.RESEND, A.HOLD_T2)),
    (S.PROCEEDING, I.TIMER_F): (S.TERMINATED, (A.STOP_TIMERS, A.REPORT_TIMEOUT)),
    (S.PROCEEDING, I.RECV_1XX): (S.PROCEEDING, (A.PASS_UP,)),
    (S.PROCEEDING, I.RECV_2XX): (S.COMPLETED, (A.STOP_TIMERS, A.PASS_UP, A.START_K)),
    (S.PROCEEDING, I.RECV_FINAL): (S.COMPLETED, (A.STOP_TIMERS, A.PASS_UP, A.START_K)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.STOP_TIMERS, A.REPORT_TRANSPORT_ERROR)),
    (S.COMPLETED, I.RECV_1XX): (S.COMPLETED, ()),
    (S.COMPLETED, I.RECV_2XX): (S.COMPLETED, ()),
    (S.COMPLETED, I.RECV_FINAL): (S.COMPLETED, ()),
    (S.COMPLETED, I.TIMER_K): (S.TERMINATED, ()),
}

# Non-INVITE server transaction, §17.2.2 figure 8.
NIST: dict[tuple[State, Input], tuple[State, tuple[Action, ...]]] = {
    (S.TRYING, I.RECV_REQUEST): (S.TRYING, ()),
    (S.TRYING, I.SEND_1XX): (S.PROCEEDING, (A.SEND,)),
    (S.TRYING, I.SEND_2XX): (S.COMPLETED, (A.SEND, A.START_J)),
    (S.TRYING, I.SEND_FINAL): (S.COMPLETED, (A.SEND, A.START_J)),
    (S.TRYING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.PROCEEDING, I.RECV_REQUEST): (S.PROCEEDING, (A.RESEND,)),
    (S.PROCEEDING, I.SEND_1XX): (S.PROCEEDING, (A.SEND,)),
    (S.PROCEEDING, I.SEND_2XX): (S.COMPLETED, (A.SEND, A.START_J)),
    (S.PROCEEDING, I.SEND_FINAL): (S.COMPLETED, (A.SEND, A.START_J)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, I.RECV_REQUEST): (S.COMPLETED, (A.RESEND,)),
    (S.COMPLETED, I.TIMER_J): (S.TERMINATED, ()),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.TERMINATED, (A.STOP_TIMERS, A.REPORT_TRANSPORT_ERROR)),
}

del S, I, A

TABLES = {
    Kind.INVITE_CLIENT: ICT,
    Kind.INVITE_SERVER: IST,
    Kind.NON_INVITE_CLIENT: NICT,
    Kind.NON_INVITE_SERVER: NIST,
}
INITIAL = {
    Kind.INVITE_CLIENT: State.CALLING,
    Kind.INVITE_SERVER: State.PROCEEDING,
    Kind.NON_INVITE_CLIENT: State.TRYING,
    Kind.NON_INVITE_SERVER: State.TRYING,
}

# (initial interval, only over unreliable transports); the interval 0 over reliable ones.
_TIMERS: dict[Action, tuple[Input, float, bool]] = {
    Action.START_A: (Input.TIMER_A, T1, True),
    Action.START_B: (Input.TIMER_B, 64 * T1, False),
    Action.START_D: (Input.TIMER_D, 32.0, True),
    Action.START_E: (Input.TIMER_E, T1, True),
    Action.START_F: (Input.TIMER_F, 64 * T1, False),
    Action.START_G: (Input.TIMER_G, T1, True),
    Action.START_G_2XX: (Input.TIMER_G, T1, False),
    Action.START_H: (Input.TIMER_H, 64 * T1, False),
    Action.START_I: (Input.TIMER_I, T4, True),
    Action.START_J: (Input.TIMER_J, 64 * T1, True),
    Action.START_K: (Input.TIMER_K, T4, True),
    Action.START_L: (Input.TIMER_L, 64 * T1, False),
    Action.START_M: (Input.TIMER_M, 64 * T1, False),
}
# Retransmission timers are not armed at all over reliable transports (§17.1.1.2, §17.2.1);
# wait timers are armed with 0 there (they fire at once).
_RETRANSMIT = frozenset({Action.START_A, Action.START_E, Action.START_G})


# --------------------------------------------------------------------------- TU notifications


@dataclass(frozen=True, slots=True)
class TxResponse:
    """A client transaction passes a response up (every 1xx, the first final, 2xx repeats)."""

    tx: Transaction
    response: Response


@dataclass(frozen=True, slots=True)
class TxTimeout:
    """Timer B/F/H fired: no response (client; the TU sees a local 408) or no ACK (server)."""

    tx: Transaction


@dataclass(frozen=True, slots=True)
class TxTransportError:
    tx: Transaction


@dataclass(frozen=True, slots=True)
class TxAcked:
    """The ACK for our 2xx arrived (IST Accepted → Terminated)."""

    tx: Transaction


@dataclass(frozen=True, slots=True)
class TxAckTimeout:
    """64·T1 after our 2xx and no ACK (§13.3.1.4): the core must end the dialog with BYE."""

    tx: Transaction


TxEvent = TxResponse | TxTimeout | TxTransportError | TxAcked | TxAckTimeout


def response_input(status: int, *, sending: bool) -> Input:
    if status < 200:
        return Input.SEND_1XX if sending else Input.RECV_1XX
    if status < 300:
        return Input.SEND_2XX if sending else Input.RECV_2XX
    return Input.SEND_FINAL if sending else Input.RECV_FINAL


# --------------------------------------------------------------------------- the machine


class Transaction:
    """One transaction. Outputs accumulate in `outbox` (bytes to send to `target`) and
    `events` (for the transaction user); the owner drains both after every call."""

    def __init__(
        self,
        kind: Kind,
        request: Request,
        *,
        key: tuple[object, ...],
        target: object,
        reliable: bool,
        now: float,
    ) -> None:
        self.kind = kind
        self.request = request
        self.key = key
        self.target = target  # opaque to us: where the owner sends our outbox
        self.reliable = reliable
        self.state = INITIAL[kind]
        self.table = TABLES[kind]
        self.last_response: Response | None = None
        self.final_response: Response | None = None
        self._last_bytes: bytes | None = None
        self.timers: dict[Input, tuple[float, float]] = {}
        self.outbox: list[bytes] = []
        self.events: list[TxEvent] = []
        self.created = now
        self.context: object = None  # owner data (the call / dialog this belongs to)
        self._firing_interval = T1
        if kind in (Kind.INVITE_CLIENT, Kind.NON_INVITE_CLIENT):
            self._last_bytes = request.serialize()
            self.outbox.append(self._last_bytes)
            starts = (
                (Action.START_A, Action.START_B)
                if kind is Kind.INVITE_CLIENT
                else (Action.START_E, Action.START_F)
            )
            for action in starts:
                self._start(action, now)

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    # ------------------------------------------------------------------ inputs

    def fire(self, inp: Input, now: float, message: Request | Response | None = None) -> None:
        """Apply one input. Not in the table: raise, change nothing."""
        entry = self.table.get((self.state, inp))
        if entry is None:
            error = LocalProtocolError if inp in _LOCAL_INPUTS else RemoteProtocolError
            raise error(f"{self.kind.value}: no transition from {self.state.value} on {inp.value}")
        target_state, actions = entry
        fired: Input | None = inp if inp.value in _TIMER_NAMES else None
        self.state = target_state
        for action in actions:
            self._do(action, now, message, fired)

    def send_response(self, response: Response, now: float) -> None:
        if self.kind not in (Kind.INVITE_SERVER, Kind.NON_INVITE_SERVER):
            raise LocalProtocolError("only server transactions send responses")
        self.fire(response_input(response.status, sending=True), now, response)

    def receive_response(self, response: Response, now: float) -> None:
        self.fire(response_input(response.status, sending=False), now, response)

    def receive_request(self, request: Request, now: float) -> None:
        """A retransmission of our request (or the ACK of an INVITE server transaction)."""
        self.fire(Input.RECV_ACK if request.method == "ACK" else Input.RECV_REQUEST, now, request)

    def transport_error(self, now: float) -> None:
        self.fire(Input.TRANSPORT_ERROR, now)

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        return min((d for d, _ in self.timers.values()), default=None)

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at `now`, earliest first."""
        while self.timers:
            name, (deadline, interval) = min(self.timers.items(), key=lambda kv: kv[1][0])
            if deadline > now:
                return
            del self.timers[name]
            self._firing_interval = interval  # BACKOFF doubles the interval of the timer that fired
            self.fire(name, now)

    # ------------------------------------------------------------------ actions

    def _start(self, action: Action, now: float) -> None:
        name, interval, unreliable_only = _TIMERS[action]
        if self.reliable and unreliable_only:
            if action in _RETRANSMIT:
                return
            interval = 0.0
        self.timers[name] = (now + interval, interval)

    def _do(
        self, action: Action, now: float, message: Request | Response | None, fired: Input | None
    ) -> None:
        match action:
            case Action.SEND:
                assert isinstance(message, Response)
                self.last_response = message
                if message.status >= 200:
                    self.final_response = message
                self._last_bytes = message.serialize()
                self.outbox.append(self._last_bytes)
            case Action.RESEND:
                if self._last_bytes is not None:
                    self.outbox.append(self._last_bytes)
            case Action.SEND_ACK:
                assert isinstance(message, Response)
                self.final_response = message
                self.outbox.append(ack_for_non2xx(self.request, message).serialize())
            case Action.PASS_UP:
                assert isinstance(message, Response)
                self.last_response = message
                if message.status >= 200:
                    self.final_response = message
                self.events.append(TxResponse(self, message))
            case Action.REPORT_TIMEOUT:
                self.events.append(TxTimeout(self))
            case Action.REPORT_TRANSPORT_ERROR:
                self.events.append(TxTransportError(self))
            case Action.REPORT_ACKED:
                self.events.append(TxAcked(self))
            case Action.REPORT_ACK_TIMEOUT:
                self.events.append(TxAckTimeout(self))
            case Action.BACKOFF | Action.HOLD_T2:
                assert fired is not None
                interval = self._firing_interval
                if action is Action.HOLD_T2:
                    nxt = T2
                elif fired is Input.TIMER_A:
                    nxt = 2 * interval  # §17.1.1.2: INVITE retransmissions double without a cap
                else:
                    nxt = min(2 * interval, T2)
                self.timers[fired] = (now + nxt, nxt)
            case Action.STOP_TIMERS:
                self.timers.clear()
            case _:
                self._start(action, now)


_TIMER_NAMES = frozenset("ABDEFGHIJKLM")


def ack_for_non2xx(request: Request, response: Response) -> Request:
    """§17.1.1.3: the ACK for a non-2xx final, sent by the INVITE client transaction on the same
    branch: Request-URI, Call-ID, From, CSeq number and Route of the INVITE; To of the response;
    only the top Via."""
    vias = [(k, v) for k, v in request.headers if canonical(k) == "via"][:1]
    routes = [(k, v) for k, v in request.headers if canonical(k) == "route"]
    cseq = request.cseq
    headers = (
        *vias,
        ("From", request.header("from") or ""),
        ("To", response.header("to") or ""),
        ("Call-ID", request.call_id),
        ("CSeq", f"{cseq.number} ACK"),
        *routes,
        ("Max-Forwards", "70"),
        ("Content-Length", "0"),
    )
    return Request("ACK", request.uri, headers)
