"""The SIP user agent core on virtual time: every exchange as datagrams in and out, no sockets."""

from __future__ import annotations

import ipaddress
import random
import re

import pytest

from sip import sdp
from sip.auth import Challenge, authorization
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
from sip.errors import LocalProtocolError
from sip.message import Message, Request, Response, make_response, parse_message

PEER = ("192.0.2.10", 5080)
LOCAL = sdp.LocalMedia("198.51.100.7", 40000, 42)
OFFER = (
    "v=0\r\no=peer 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 16000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\n"
)


def config(**kw: object) -> CoreConfig:
    base: dict[str, object] = {"host": "198.51.100.7", "port": 5060}
    base.update(kw)
    return CoreConfig(**base)  # type: ignore[arg-type]


class Peer:
    """The far end: writes requests, reads what the core sent back."""

    def __init__(self, core: SipCore, addr: tuple[str, int] = PEER) -> None:
        self.core = core
        self.addr = addr
        self.n = 0
        self.call = 0

    def invite(
        self, *, body: str = OFFER, headers: str = "", call_id: str | None = None, cseq: int = 1
    ) -> bytes:
        self.call += 1
        cid = call_id or f"call{self.call}@peer"
        return self.request("INVITE", cid, f"{cseq} INVITE", body=body, headers=headers)

    def request(
        self,
        method: str,
        call_id: str,
        cseq: str,
        *,
        uri: str = "sip:bot@198.51.100.7",
        to_tag: str | None = None,
        branch: str | None = None,
        body: str = "",
        headers: str = "",
        from_tag: str = "peer1",
    ) -> bytes:
        self.n += 1
        to = "<sip:bot@198.51.100.7>" + (f";tag={to_tag}" if to_tag else "")
        ctype = "Content-Type: application/sdp\r\n" if body and "Content-Type" not in headers else ""
        head = (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.addr[0]}:{self.addr[1]};branch={branch or f'z9hG4bKp{self.n}'};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:alice@192.0.2.10>;tag={from_tag}\r\nTo: {to}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq}\r\nContact: <sip:alice@{self.addr[0]}:{self.addr[1]}>\r\n"
            f"{headers}{ctype}Content-Length: {len(body.encode())}\r\n\r\n"
        )
        return head.encode() + body.encode()

    def send(self, data: bytes, now: float) -> list[Message]:
        self.core.receive_datagram(data, self.addr, now)
        return self.out()

    def out(self) -> list[Message]:
        return [parse_message(o.data) for o in self.core.datagrams_to_send()]


def events(core: SipCore) -> list[CoreEvent]:
    out = []
    while (e := core.next_event()) is not None:
        out.append(e)
    return out


def statuses(messages: list[Message]) -> list[int | str]:
    return [m.status if isinstance(m, Response) else m.method for m in messages]


@pytest.fixture
def core() -> SipCore:
    return SipCore(config(), rng=random.Random(3))


def incoming(core: SipCore, peer: Peer, **kw: object) -> tuple[Session, bytes]:
    raw = peer.invite(**kw)  # type: ignore[arg-type]
    out = peer.send(raw, 0.0)
    assert statuses(out) == [100]
    [event] = events(core)
    assert isinstance(event, IncomingCall)
    return event.session, raw


def answer(core: SipCore, session: Session, peer: Peer, now: float = 0.1) -> Response:
    core.answer(session, LOCAL, now)
    [ok] = peer.out()
    assert isinstance(ok, Response)
    assert ok.status == 200
    return ok


def ack_for(peer: Peer, session: Session, ok: Response) -> bytes:
    return peer.request("ACK", session.call_id, f"{ok.cseq.number} ACK", to_tag=ok.to.tag)


# --------------------------------------------------------------------------- inbound (UAS)


def test_inbound_call_100_180_200_ack(core: SipCore) -> None:
    peer = Peer(core)
    session, _ = incoming(core, peer)
    core.ring(session, 0.05)
    [ringing] = peer.out()
    assert isinstance(ringing, Response)
    assert ringing.status == 180
    assert ringing.to.tag == session.local_tag
    assert ringing.header("contact") == "<sip:switchboard@198.51.100.7:5060>"
    ok = answer(core, session, peer)
    assert ok.to.tag == session.local_tag
    assert ok.top_via.param("rport") == "5080"  # RFC 3581
    body = sdp.SessionDescription.parse(ok.body)
    assert body.media[0].formats == ("0", "101")
    assert session.media is not None
    assert (session.media.remote_address, session.media.remote_port) == ("192.0.2.10", 16000)
    assert peer.send(ack_for(peer, session, ok), 0.3) == []
    assert [type(e) for e in events(core)] == [CallConfirmed]
    assert session.state is SessionState.ESTABLISHED
    core.handle_timer(10.0)
    assert peer.out() == []  # no 200 retransmission after the ACK


def test_the_200_is_retransmitted_until_ack_and_invite_retransmissions_get_it(core: SipCore) -> None:
    peer = Peer(core)
    session, raw = incoming(core, peer)
    ok = answer(core, session, peer, now=0.0)
    times = []
    now = 0.0
    while (t := core.get_timer()) is not None and t < 8.0:
        now = t
        core.handle_timer(now)
        if peer.out():
            times.append(now)
    assert times == [0.5, 1.5, 3.5, 7.5]
    assert statuses(peer.send(raw, 7.6)) == [200]  # the INVITE again: the 200 again
    assert events(core) == []  # …and no second call
    peer.send(ack_for(peer, session, ok), 7.7)
    core.handle_timer(12.0)
    assert peer.out() == []


def test_no_ack_means_bye_after_64_t1(core: SipCore) -> None:
    peer = Peer(core)
    session, _ = incoming(core, peer)
    answer(core, session, peer, now=0.0)
    while (t := core.get_timer()) is not None and t <= 32.0:
        core.handle_timer(t)
    out = peer.out()
    assert statuses(out)[-1] == "BYE"
    ended = [e for e in events(core) if isinstance(e, CallEnded)]
    assert [e.reason for e in ended] == ["ack_timeout"]


def test_cancel_before_answer(core: SipCore) -> None:
    peer = Peer(core)
    session, raw = incoming(core, peer)
    core.ring(session, 0.0)
    peer.out()
    invite = parse_message(raw)
    cancel = peer.request("CANCEL", session.call_id, "1 CANCEL", branch=invite.top_via.branch)
    out = peer.send(cancel, 0.5)
    assert statuses(out) == [200, 487]
    assert out[1].to.tag == session.local_tag
    assert [type(e) for e in events(core)] == [CallCancelled]
    assert session.state is SessionState.TERMINATED
    ack = peer.request(
        "ACK", session.call_id, "1 ACK", branch=invite.top_via.branch, to_tag=session.local_tag
    )
    assert peer.send(ack, 0.6) == []
    core.handle_timer(1.0)
    assert peer.out() == []  # the ACK stopped Timer G
    with pytest.raises(LocalProtocolError):
        core.answer(session, LOCAL, 0.7)


def test_cancel_after_answer_and_unknown_cancel(core: SipCore) -> None:
    peer = Peer(core)
    session, raw = incoming(core, peer)
    answer(core, session, peer)
    branch = parse_message(raw).top_via.branch
    assert statuses(peer.send(peer.request("CANCEL", session.call_id, "1 CANCEL", branch=branch), 0.2)) == [
        200
    ]
    assert events(core) == []  # a final was sent already: no effect
    stray = peer.request("CANCEL", "nope@peer", "1 CANCEL", branch="z9hG4bKnothing")
    assert statuses(peer.send(stray, 0.3)) == [481]


def test_bye_and_unknown_dialogs(core: SipCore) -> None:
    peer = Peer(core)
    session, _ = incoming(core, peer)
    ok = answer(core, session, peer)
    peer.send(ack_for(peer, session, ok), 0.2)
    events(core)
    bye = peer.request("BYE", session.call_id, "2 BYE", to_tag=session.local_tag)
    assert statuses(peer.send(bye, 1.0)) == [200]
    assert [(type(e), getattr(e, "reason", "")) for e in events(core)] == [(CallEnded, "remote_bye")]
    assert statuses(peer.send(bye, 1.1)) == [200]  # retransmission: the same 200, no new event
    assert events(core) == []
    again = peer.request("BYE", session.call_id, "3 BYE", to_tag=session.local_tag)
    assert statuses(peer.send(again, 2.0)) == [481]
    assert statuses(peer.send(peer.request("BYE", "x@peer", "1 BYE", to_tag="nope"), 2.0)) == [481]
    assert statuses(peer.send(peer.request("INFO", "x@peer", "1 INFO"), 2.0)) == [481]


def test_options_keepalive(core: SipCore) -> None:
    peer = Peer(core)
    [ok] = peer.send(peer.request("OPTIONS", "ka@peer", "1 OPTIONS"), 0.0)
    assert isinstance(ok, Response)
    assert ok.status == 200
    assert "INVITE" in (ok.header("allow") or "")
    assert ok.header("accept") == "application/sdp"
    assert ok.body == b""


@pytest.mark.parametrize(
    ("kw", "status"),
    [
        ({"body": OFFER.replace("0 8 101", "18")}, 488),
        ({"headers": "Require: 100rel\r\n"}, 420),
        ({"body": "hello", "headers": "Content-Type: text/plain\r\n"}, 415),
        ({"body": "v=0\r\nbroken\r\n"}, 400),
    ],
)
def test_invites_we_cannot_take(core: SipCore, kw: dict[str, str], status: int) -> None:
    peer = Peer(core)
    out = peer.send(peer.invite(**kw), 0.0)
    assert statuses(out) == [100, status]
    assert out[1].to.tag
    assert events(core) == []
    if status == 420:
        assert out[1].header("unsupported") == "100rel"


def test_merged_request_is_482(core: SipCore) -> None:
    """§8.2.2.2: the same INVITE (Call-ID, From tag, CSeq) by another path (branch)."""
    peer = Peer(core)
    incoming(core, peer, call_id="m@peer")
    other = peer.invite(call_id="m@peer")
    assert statuses(peer.send(other, 0.1)) == [100, 482]


def test_source_allowlist_403(core: SipCore) -> None:
    locked = SipCore(config(allowed_sources=(ipaddress.ip_network("203.0.113.0/24"),)), rng=random.Random(1))
    peer = Peer(locked)
    assert statuses(peer.send(peer.invite(), 0.0)) == [403]
    assert statuses(peer.send(peer.request("OPTIONS", "o@peer", "1 OPTIONS"), 0.0)) == [403]
    assert locked.stats.forbidden == 2
    friend = Peer(locked, ("203.0.113.9", 5060))
    assert statuses(friend.send(friend.invite(), 0.0)) == [100]


def test_inbound_digest_401_then_ok_and_403_for_wrong_password() -> None:
    core = SipCore(
        config(inbound_username="trunk", inbound_password="pw", nonce_secret=b"s" * 32), rng=random.Random(2)
    )
    peer = Peer(core)
    out = peer.send(peer.invite(), 0.0)
    assert statuses(out) == [100, 401]
    challenge = Challenge.parse(out[1].header("www-authenticate") or "")

    def with_auth(password: str) -> bytes:
        value = authorization(
            challenge,
            username="trunk",
            password=password,
            method="INVITE",
            uri="sip:bot@198.51.100.7",
            cnonce="c",
        )
        return peer.invite(headers=f"Authorization: {value}\r\n")

    assert statuses(peer.send(with_auth("wrong"), 0.5)) == [100, 403]
    assert statuses(peer.send(with_auth("pw"), 0.6)) == [100]
    assert [type(e) for e in events(core)] == [IncomingCall]


def test_reinvite_hold_unhold_and_refresh(core: SipCore) -> None:
    """Hold (sendonly → recvonly, version +1), refresh (same SDP, same version), unhold."""
    peer = Peer(core)
    session, _ = incoming(core, peer)
    ok = answer(core, session, peer)
    peer.send(ack_for(peer, session, ok), 0.2)
    events(core)
    tag = session.local_tag
    versions = []
    for cseq, direction in [(2, "sendonly"), (3, "sendonly"), (4, "sendrecv")]:
        offer = OFFER.replace("a=sendrecv", f"a={direction}")
        out = peer.send(
            peer.request("INVITE", session.call_id, f"{cseq} INVITE", to_tag=tag, body=offer), cseq
        )
        assert statuses(out) == [200]  # at once: no 100 needed (§17.2.1, 200 ms)
        answer_sdp = sdp.SessionDescription.parse(out[0].body)
        versions.append((answer_sdp.origin.version, answer_sdp.media[0].own_direction()))
        peer.send(peer.request("ACK", session.call_id, f"{cseq} ACK", to_tag=tag), cseq + 0.1)
    assert versions == [(2, "recvonly"), (2, "recvonly"), (3, "sendrecv")]
    changes = [e.media.direction for e in events(core) if isinstance(e, MediaChanged)]
    assert changes == ["recvonly", "sendrecv"]


def test_reinvite_with_a_new_codec_only_is_488_and_the_call_goes_on(core: SipCore) -> None:
    peer = Peer(core)
    session, _ = incoming(core, peer)
    ok = answer(core, session, peer)
    peer.send(ack_for(peer, session, ok), 0.2)
    bad = OFFER.replace("0 8 101", "18")
    out = peer.send(
        peer.request("INVITE", session.call_id, "2 INVITE", to_tag=session.local_tag, body=bad), 1.0
    )
    assert statuses(out) == [488]
    assert session.state is SessionState.ESTABLISHED


def test_out_of_order_cseq_is_500(core: SipCore) -> None:
    peer = Peer(core)
    session, _ = incoming(core, peer, cseq=10)
    ok = answer(core, session, peer)
    peer.send(ack_for(peer, session, ok), 0.2)
    stale = peer.request("INFO", session.call_id, "5 INFO", to_tag=session.local_tag)
    assert statuses(peer.send(stale, 1.0)) == [500]


def test_info_dtmf_and_notify(core: SipCore) -> None:
    peer = Peer(core)
    session, _ = incoming(core, peer)
    ok = answer(core, session, peer)
    peer.send(ack_for(peer, session, ok), 0.2)
    events(core)
    tag = session.local_tag
    info = peer.request(
        "INFO",
        session.call_id,
        "2 INFO",
        to_tag=tag,
        body="Signal=5\r\nDuration=160\r\n",
        headers="Content-Type: application/dtmf-relay\r\n",
    )
    assert statuses(peer.send(info, 1.0)) == [200]
    notify = peer.request(
        "NOTIFY",
        session.call_id,
        "3 NOTIFY",
        to_tag=tag,
        body="SIP/2.0 180 Ringing\r\n",
        headers="Event: refer\r\nSubscription-State: active\r\nContent-Type: message/sipfrag\r\n",
    )
    assert statuses(peer.send(notify, 1.1)) == [200]
    got = events(core)
    assert isinstance(got[0], InfoDtmf)
    assert got[0].digit == "5"
    assert isinstance(got[1], InDialogRequest)
    assert got[1].request.method == "NOTIFY"


def test_delayed_offer_gets_our_offer_and_reads_the_ack(core: SipCore) -> None:
    """§13.2.1: an INVITE without SDP: the 200 offers, the ACK answers."""
    peer = Peer(core)
    session, _ = incoming(core, peer, body="")
    assert core.answer(session, LOCAL, 0.1) is None
    [ok] = peer.out()
    assert sdp.SessionDescription.parse(ok.body).media[0].formats == ("0", "8", "101")
    answer_sdp = OFFER.replace("0 8 101", "8 101")
    ack = peer.request("ACK", session.call_id, "1 ACK", to_tag=ok.to.tag, body=answer_sdp)  # type: ignore[union-attr]
    peer.send(ack, 0.2)
    got = events(core)
    assert [type(e) for e in got] == [MediaChanged, CallConfirmed]
    assert session.media is not None
    assert session.media.codec == "PCMA"


def test_unknown_and_unsupported_methods(core: SipCore) -> None:
    peer = Peer(core)
    assert statuses(peer.send(peer.request("REGISTER", "r@peer", "1 REGISTER"), 0.0)) == [405]
    out = peer.send(peer.request("FROB", "f@peer", "1 FROB"), 0.0)
    assert statuses(out) == [501]
    assert "INVITE" in (out[0].header("allow") or "")


def test_hang_up_before_the_ack_waits_for_it(core: SipCore) -> None:
    """§15: a BYE only after the ACK for our 2xx."""
    peer = Peer(core)
    session, _ = incoming(core, peer)
    ok = answer(core, session, peer)
    assert core.hang_up(session, 0.15) is None
    assert peer.out() == []
    out = peer.send(ack_for(peer, session, ok), 0.2)
    assert statuses(out) == ["BYE"]


def test_broken_requests_get_400_only_when_answerable(core: SipCore) -> None:
    peer = Peer(core)
    raw = peer.invite().replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE")
    [reply] = peer.send(raw, 0.0)
    assert isinstance(reply, Response)
    assert (reply.status, reply.reason) == (400, "Bad Request")  # a fixed phrase, not our error text
    assert peer.send(re.sub(rb"Call-ID: [^\r]*\r\n", b"", peer.invite()), 0.0) == []
    assert peer.send(b"\x00\x01garbage", 0.0) == []
    assert peer.send(b"\r\n\r\n", 0.0) == []  # a keepalive
    assert core.stats.malformed == 3
    assert events(core) == []


# --------------------------------------------------------------------------- outbound (UAC)


class Trunk:
    """The far end of our INVITE."""

    def __init__(self, core: SipCore) -> None:
        self.core = core
        self.addr = ("203.0.113.1", 5060)

    def take(self) -> list[Request]:
        return [
            m
            for m in (parse_message(o.data) for o in self.core.datagrams_to_send())
            if isinstance(m, Request)
        ]

    def respond(
        self,
        request: Request,
        status: int,
        now: float,
        *,
        tag: str = "t1",
        body: str = "",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        extra = (("Contact", "<sip:uas@203.0.113.1:5060>"), *headers)
        response = make_response(
            request, status, to_tag=tag, headers=extra, body=body.encode(), content_type="application/sdp"
        )
        self.core.receive_datagram(response.serialize(), self.addr, now)


def place(core: SipCore, credentials: tuple[str, str] | None = None) -> Session:
    return core.invite(
        uri="sip:+15551230000@trunk.example.com",
        from_uri="sip:+15550001111@trunk.example.com",
        to_uri="sip:+15551230000@trunk.example.com",
        local=LOCAL,
        target=Target("UDP", "203.0.113.1", 5060),
        now=0.0,
        credentials=credentials,
    )


ANSWER = OFFER.replace("192.0.2.10", "203.0.113.1").replace("0 8 101", "0 101")


def test_outbound_407_retry_then_answer_and_ack(core: SipCore) -> None:
    trunk = Trunk(core)
    session = place(core, ("u", "p"))
    [first] = trunk.take()
    challenge = 'Digest realm="trunk", nonce="abc", qop="auth", algorithm=MD5'
    trunk.respond(first, 407, 0.1, headers=(("Proxy-Authenticate", challenge),))
    sent = trunk.take()
    assert [m.method for m in sent] == ["ACK", "INVITE"]
    ack, second = sent
    assert ack.top_via.branch == first.top_via.branch  # §17.1.1.3
    assert second.call_id == first.call_id
    assert second.from_.tag == first.from_.tag
    assert second.cseq.number == first.cseq.number + 1
    assert second.top_via.branch != first.top_via.branch
    value = second.header("proxy-authorization") or ""
    assert 'username="u"' in value
    assert value == authorization(
        Challenge.parse(challenge),
        username="u",
        password="p",
        method="INVITE",
        uri=first.uri,
        cnonce=re.search(r'cnonce="([^"]+)"', value).group(1),  # type: ignore[union-attr]
    )
    trunk.respond(second, 180, 0.2)
    trunk.respond(second, 200, 0.3, body=ANSWER)
    [ack2] = trunk.take()
    assert ack2.method == "ACK"
    assert ack2.uri == "sip:uas@203.0.113.1:5060"  # the remote target
    assert ack2.cseq.number == second.cseq.number
    assert ack2.top_via.branch != second.top_via.branch  # a 2xx ACK is its own transaction
    got = events(core)
    assert [type(e) for e in got] == [CallProgress, CallAnswered]
    assert isinstance(got[1], CallAnswered)
    assert got[1].media.remote_port == 16000
    trunk.respond(second, 200, 0.8, body=ANSWER)  # a retransmitted 200: ACK again
    assert [m.method for m in trunk.take()] == ["ACK"]
    handle = core.hang_up(session, 2.0)
    [bye] = trunk.take()
    assert bye.method == "BYE"
    trunk.respond(bye, 200, 2.1)
    done = events(core)
    assert [(type(e), getattr(e, "handle", None), getattr(e, "status", None)) for e in done] == [
        (RequestDone, handle, 200)
    ]


def test_outbound_wrong_credentials_fail_after_one_retry(core: SipCore) -> None:
    trunk = Trunk(core)
    place(core, ("u", "bad"))
    challenge = (("WWW-Authenticate", 'Digest realm="t", nonce="n1"'),)
    [invite] = trunk.take()
    trunk.respond(invite, 401, 0.1, headers=challenge)
    invite = trunk.take()[-1]
    trunk.respond(invite, 401, 0.2, headers=(("WWW-Authenticate", 'Digest realm="t", nonce="n2"'),))
    invite = trunk.take()[-1]
    trunk.respond(invite, 403, 0.3)
    failed = [e for e in events(core) if isinstance(e, CallFailed)]
    assert [(e.status, e.reason) for e in failed] == [(403, "Forbidden")]


def test_outbound_timer_b(core: SipCore) -> None:
    place(core)
    while (t := core.get_timer()) is not None:
        core.handle_timer(t)
    failed = [e for e in events(core) if isinstance(e, CallFailed)]
    assert [(e.status, e.reason) for e in failed] == [(408, "Request Timeout")]


def test_outbound_cancel_waits_for_a_provisional(core: SipCore) -> None:
    """§9.1: no CANCEL before a provisional response; then CANCEL on the INVITE's branch."""
    trunk = Trunk(core)
    session = place(core)
    [invite] = trunk.take()
    core.cancel(session, 0.1)
    assert trunk.take() == []
    trunk.respond(invite, 180, 0.2)
    [cancel] = trunk.take()
    assert cancel.method == "CANCEL"
    assert cancel.top_via.branch == invite.top_via.branch
    assert str(cancel.cseq) == f"{invite.cseq.number} CANCEL"
    trunk.respond(invite, 183, 0.25)
    assert trunk.take() == []  # one CANCEL, not one per provisional
    trunk.respond(cancel, 200, 0.3)
    trunk.respond(invite, 487, 0.4)
    assert [m.method for m in trunk.take()] == ["ACK"]
    failed = [e for e in events(core) if isinstance(e, CallFailed)]
    assert [e.status for e in failed] == [487]


def test_a_200_after_cancel_is_acked_and_byed(core: SipCore) -> None:
    trunk = Trunk(core)
    session = place(core)
    [invite] = trunk.take()
    trunk.respond(invite, 180, 0.1)
    core.cancel(session, 0.2)
    trunk.take()
    trunk.respond(invite, 200, 0.3, body=ANSWER)
    assert [m.method for m in trunk.take()] == ["ACK", "BYE"]
    assert [e.status for e in events(core) if isinstance(e, CallFailed)] == [487]


def test_in_dialog_request_and_its_result(core: SipCore) -> None:
    trunk = Trunk(core)
    session = place(core)
    [invite] = trunk.take()
    trunk.respond(invite, 200, 0.1, body=ANSWER)
    trunk.take()
    handle = core.request(session, "REFER", 1.0, headers=(("Refer-To", "<sip:agent@pbx>"),))
    [refer] = trunk.take()
    assert refer.header("refer-to") == "<sip:agent@pbx>"
    assert refer.from_.tag == session.local_tag
    assert refer.to.tag == "t1"
    trunk.respond(refer, 202, 1.1)
    done = [e for e in events(core) if isinstance(e, RequestDone)]
    assert [(e.handle, e.status) for e in done] == [(handle, 202)]


def test_nothing_is_left_behind_after_calls_end(core: SipCore) -> None:
    """Sessions, dialogs and transactions all go away once the timers have run out."""
    peer = Peer(core)
    # answered then BYE from them
    session, _ = incoming(core, peer)
    ok = answer(core, session, peer)
    peer.send(ack_for(peer, session, ok), 0.2)
    peer.send(peer.request("BYE", session.call_id, "2 BYE", to_tag=session.local_tag), 1.0)
    # rung then cancelled
    events(core)
    session2, raw = incoming(core, peer)
    core.ring(session2, 1.1)
    branch = parse_message(raw).top_via.branch
    peer.send(peer.request("CANCEL", session2.call_id, "1 CANCEL", branch=branch), 1.2)
    peer.send(peer.request("ACK", session2.call_id, "1 ACK", branch=branch, to_tag=session2.local_tag), 1.3)
    # answered, then our BYE, answered 200
    events(core)
    session3, _ = incoming(core, peer)
    ok3 = answer(core, session3, peer, now=1.4)
    peer.send(ack_for(peer, session3, ok3), 1.5)
    core.hang_up(session3, 2.0)
    [bye] = peer.out()
    assert isinstance(bye, Request)
    core.receive_datagram(make_response(bye, 200, to_tag="peer1").serialize(), PEER, 2.1)
    # rejected at once
    events(core)
    session4, raw4 = incoming(core, peer)
    core.reject(session4, 486, 2.2)
    branch4 = parse_message(raw4).top_via.branch
    peer.send(peer.request("ACK", session4.call_id, "1 ACK", branch=branch4, to_tag=session4.local_tag), 2.3)
    while (t := core.get_timer()) is not None:
        core.handle_timer(t)
    events(core)
    assert core.sessions == {}
    assert core._dialogs == {}
    assert core.transaction_count == 0
