"""RFC 3261 §17 transactions on virtual time: retransmission schedules, timeouts, the tables."""

from __future__ import annotations

import pytest

from sip.errors import LocalProtocolError, RemoteProtocolError
from sip.message import Request, Response, make_response, parse_message
from sip.transaction import (
    ICT,
    IST,
    NICT,
    NIST,
    T1,
    T2,
    Input,
    Kind,
    State,
    Transaction,
    TxAcked,
    TxAckTimeout,
    TxResponse,
    TxTimeout,
)

INVITE = parse_message(
    b"INVITE sip:bot@198.51.100.7 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKtx1\r\n"
    b"Route: <sip:proxy.example.com;lr>\r\n"
    b"From: <sip:a@example.com>;tag=1\r\n"
    b"To: <sip:bot@198.51.100.7>\r\n"
    b"Call-ID: tx@example.com\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Contact: <sip:a@192.0.2.1>\r\n"
    b"Content-Length: 0\r\n\r\n"
)
assert isinstance(INVITE, Request)
OPTIONS = Request(
    "OPTIONS",
    INVITE.uri,
    tuple((k, v.replace("7 INVITE", "8 OPTIONS")) for k, v in INVITE.headers),
)


def tx(kind: Kind, request: Request = INVITE, *, reliable: bool = False) -> Transaction:
    return Transaction(kind, request, key=("k",), target=None, reliable=reliable, now=0.0)


def run_until(t: Transaction, end: float) -> list[float]:
    """Fire timers up to `end`; the times at which something was sent."""
    sent: list[float] = []
    t.outbox.clear()
    while (deadline := t.next_deadline()) is not None and deadline <= end:
        t.handle_timer(deadline)
        if t.outbox:
            sent.append(deadline)
            t.outbox.clear()
    return sent


def gaps(times: list[float], start: float = 0.0) -> list[float]:
    return [round(b - a, 3) for a, b in zip([start, *times], times, strict=False)]


def test_2xx_is_retransmitted_until_the_ack_then_never_again() -> None:
    """§13.3.1.4: from T1, doubling to T2: 0.5, 1, 2, 4, 4 … s; the ACK stops it."""
    t = tx(Kind.INVITE_SERVER)
    t.send_response(make_response(INVITE, 200, to_tag="x"), 0.0)
    assert len(t.outbox) == 1
    sent = run_until(t, 20.0)
    assert gaps(sent) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert t.state is State.ACCEPTED
    t.receive_request(Request("ACK", INVITE.uri, INVITE.headers), 20.1)
    assert t.state is State.TERMINATED
    assert [type(e) for e in t.events] == [TxAcked]
    assert t.next_deadline() is None
    assert run_until(t, 100.0) == []


def test_2xx_without_ack_times_out_after_64_t1() -> None:
    t = tx(Kind.INVITE_SERVER)
    t.send_response(make_response(INVITE, 200, to_tag="x"), 0.0)
    sent = run_until(t, 40.0)
    assert sent[-1] < 32.0
    assert t.state is State.TERMINATED
    assert [type(e) for e in t.events] == [TxAckTimeout]


def test_2xx_is_retransmitted_even_over_tcp() -> None:
    """The 2xx retransmission is end to end (§13.3.1.4): it runs over reliable transports too."""
    t = tx(Kind.INVITE_SERVER, reliable=True)
    t.send_response(make_response(INVITE, 200, to_tag="x"), 0.0)
    assert gaps(run_until(t, 4.0)) == [0.5, 1.0, 2.0]


def test_non_2xx_final_timer_g_and_h() -> None:
    """Timer G retransmits 486 at 0.5, 1, 2, 4, 4 … s; Timer H gives up at 32 s (TxTimeout)."""
    t = tx(Kind.INVITE_SERVER)
    t.send_response(make_response(INVITE, 486, to_tag="x"), 0.0)
    sent = run_until(t, 33.0)
    assert gaps(sent)[:6] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert max(sent) < 32.0
    assert t.state is State.TERMINATED
    assert [type(e) for e in t.events] == [TxTimeout]


def test_non_2xx_ack_then_timer_i() -> None:
    t = tx(Kind.INVITE_SERVER)
    t.send_response(make_response(INVITE, 487, to_tag="x"), 0.0)
    t.receive_request(Request("ACK", INVITE.uri, INVITE.headers), 0.7)
    assert t.state is State.CONFIRMED
    t.receive_request(Request("ACK", INVITE.uri, INVITE.headers), 0.8)  # absorbed
    assert t.next_deadline() == pytest.approx(0.7 + 5.0)  # Timer I = T4
    t.handle_timer(5.7)
    assert t.state is State.TERMINATED


def test_invite_retransmission_gets_the_last_response() -> None:
    t = tx(Kind.INVITE_SERVER)
    t.send_response(make_response(INVITE, 100), 0.0)
    t.outbox.clear()
    t.receive_request(INVITE, 0.3)
    assert len(t.outbox) == 1
    assert parse_message(t.outbox[0]).status == 100  # type: ignore[union-attr]


def test_invite_client_timer_a_and_b() -> None:
    """Timer A: INVITE at 0, then +0.5, +1, +2, +4, +8, +16 (no cap at T2); Timer B: 408 at 32 s."""
    t = tx(Kind.INVITE_CLIENT)
    assert len(t.outbox) == 1
    sent = run_until(t, 40.0)
    assert gaps(sent) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert t.state is State.TERMINATED
    assert [type(e) for e in t.events] == [TxTimeout]


def test_invite_client_provisional_stops_retransmissions_and_b() -> None:
    t = tx(Kind.INVITE_CLIENT)
    t.receive_response(make_response(INVITE, 180, to_tag="y"), 0.2)
    assert t.state is State.PROCEEDING
    assert t.next_deadline() is None  # the TU times ringing out (CANCEL), not Timer B


def test_invite_client_acks_non_2xx_on_the_same_branch() -> None:
    """§17.1.1.3: ACK with the INVITE's Request-URI, branch, Route and CSeq number, the response's To."""
    t = tx(Kind.INVITE_CLIENT)
    t.outbox.clear()
    t.receive_response(make_response(INVITE, 407, to_tag="y"), 0.1)
    [ack_bytes] = t.outbox
    ack = parse_message(ack_bytes)
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert ack.uri == INVITE.uri
    assert ack.top_via.branch == "z9hG4bKtx1"
    assert ack.header("route") == "<sip:proxy.example.com;lr>"
    assert str(ack.cseq) == "7 ACK"
    assert ack.to.tag == "y"
    assert [type(e) for e in t.events] == [TxResponse]
    t.outbox.clear()
    t.receive_response(make_response(INVITE, 407, to_tag="y"), 0.6)  # retransmitted final
    assert len(t.outbox) == 1  # ACKed again, not passed up again
    assert len(t.events) == 1
    assert t.next_deadline() == pytest.approx(0.1 + 32.0)  # Timer D


def test_invite_client_accepts_2xx_retransmissions() -> None:
    """RFC 6026: after a 2xx the transaction stays (Timer M) and passes repeats up to be ACKed."""
    t = tx(Kind.INVITE_CLIENT)
    ok = make_response(INVITE, 200, to_tag="y")
    t.receive_response(ok, 0.1)
    t.receive_response(ok, 0.6)
    assert t.state is State.ACCEPTED
    assert [type(e) for e in t.events] == [TxResponse, TxResponse]
    t.handle_timer(0.1 + 32.0)
    assert t.state is State.TERMINATED


def test_non_invite_client_timer_e_and_f() -> None:
    """Timer E: 0.5, 1, 2, 4, 4, 4 … (capped at T2); Timer F: timeout at 32 s (the TU sees 408)."""
    t = tx(Kind.NON_INVITE_CLIENT, OPTIONS)
    sent = run_until(t, 40.0)
    assert gaps(sent)[:6] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert max(sent) < 32.0
    assert [type(e) for e in t.events] == [TxTimeout]


def test_non_invite_client_proceeding_retransmits_at_t2() -> None:
    t = tx(Kind.NON_INVITE_CLIENT, OPTIONS)
    t.receive_response(make_response(OPTIONS, 100), 0.1)
    assert t.state is State.PROCEEDING
    sent = run_until(t, 10.0)
    assert gaps(sent, 0.0)[1:] == [T2, T2]  # after the first pending E fires, every T2


def test_non_invite_client_final_then_timer_k() -> None:
    t = tx(Kind.NON_INVITE_CLIENT, OPTIONS)
    t.receive_response(make_response(OPTIONS, 200, to_tag="y"), 0.1)
    assert t.state is State.COMPLETED
    assert t.next_deadline() == pytest.approx(0.1 + 5.0)  # Timer K = T4 over UDP
    t.receive_response(make_response(OPTIONS, 200, to_tag="y"), 0.2)  # absorbed
    assert len(t.events) == 1


def test_non_invite_server_timer_j() -> None:
    t = tx(Kind.NON_INVITE_SERVER, OPTIONS)
    t.receive_request(OPTIONS, 0.0)  # a retransmission before any response: absorbed
    assert t.outbox == []
    t.send_response(make_response(OPTIONS, 200, to_tag="x"), 0.1)
    t.outbox.clear()
    t.receive_request(OPTIONS, 1.0)
    assert len(t.outbox) == 1  # the final response again
    assert t.next_deadline() == pytest.approx(0.1 + 64 * T1)
    t.handle_timer(32.1)
    assert t.state is State.TERMINATED


def test_reliable_transports_do_not_retransmit_and_do_not_wait() -> None:
    """Over TCP: no Timer A/E/G, and Timers D/I/J/K are zero (§17)."""
    t = tx(Kind.NON_INVITE_CLIENT, OPTIONS, reliable=True)
    assert set(t.timers) == {Input.TIMER_F}
    s = tx(Kind.NON_INVITE_SERVER, OPTIONS, reliable=True)
    s.send_response(make_response(OPTIONS, 200, to_tag="x"), 1.0)
    assert s.next_deadline() == 1.0
    s.handle_timer(1.0)
    assert s.state is State.TERMINATED


def test_illegal_transitions_raise_and_change_nothing() -> None:
    """Our misuse is a LocalProtocolError; a stray message is a RemoteProtocolError; either way
    the transaction is exactly as it was."""
    t = tx(Kind.INVITE_SERVER)
    t.send_response(make_response(INVITE, 486, to_tag="x"), 0.0)
    before = (t.state, dict(t.timers), list(t.outbox), t.last_response)
    with pytest.raises(LocalProtocolError) as info:
        t.send_response(make_response(INVITE, 200, to_tag="x"), 0.1)
    assert str(info.value) == "ist: no transition from Completed on send_2xx"
    assert (t.state, dict(t.timers), list(t.outbox), t.last_response) == before
    c = tx(Kind.NON_INVITE_CLIENT, OPTIONS)
    c.receive_response(make_response(OPTIONS, 200, to_tag="y"), 0.0)
    c.handle_timer(10.0)
    with pytest.raises(RemoteProtocolError, match=r"^nict: no transition from Terminated on recv_2xx$"):
        c.receive_response(make_response(OPTIONS, 200, to_tag="y"), 11.0)
    with pytest.raises(LocalProtocolError):
        c.send_response(make_response(OPTIONS, 200), 11.0)


@pytest.mark.parametrize("table", [ICT, IST, NICT, NIST])
def test_every_state_of_every_table_can_end(
    table: dict[tuple[State, Input], tuple[State, tuple[object, ...]]],
) -> None:
    """No state is a trap: from each state some path reaches Terminated."""
    states = {s for s, _ in table} | {target for target, _ in table.values()}
    ends = {State.TERMINATED}
    changed = True
    while changed:
        changed = False
        for (source, _), (target, _) in table.items():
            if target in ends and source not in ends:
                ends.add(source)
                changed = True
    assert states <= ends


def test_response_to_response_input() -> None:
    r = Response(200, "OK")
    assert r.status == 200
