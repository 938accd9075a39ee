"""SIP dialogs (RFC 3261 §12): identity, route set, remote target and CSeq spaces. Pure.

A dialog is identified by Call-ID, local tag and remote tag. The UAS builds it from the
request it answers (§12.1.1: route set = Record-Route in order, remote target = the request's
Contact); the UAC from the response (§12.1.2: route set = Record-Route reversed, remote target
= the response's Contact). Our own in-dialog requests (§12.2.1.1) go to the remote target, with
the route set as `Route` headers (loose routing, `;lr`), our tag on From, and our own CSeq
counter. Their requests must come with a CSeq above the last one (§12.2.2), else 500.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sip.errors import LocalProtocolError, RemoteProtocolError
from sip.message import Headers, NameAddr, Request, Response, SipUri


class DialogState(StrEnum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


# Rule as for transactions: every change of state goes through this table.
DIALOG_TRANSITIONS: dict[DialogState, frozenset[DialogState]] = {
    DialogState.EARLY: frozenset({DialogState.CONFIRMED, DialogState.TERMINATED}),
    DialogState.CONFIRMED: frozenset({DialogState.TERMINATED}),
    DialogState.TERMINATED: frozenset(),
}


@dataclass(slots=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # our From value (without tag) in our requests
    remote_uri: str  # their address, our To value (without tag)
    remote_target: str  # URI to send requests to (their Contact)
    route_set: tuple[str, ...] = ()
    local_cseq: int = 1
    remote_cseq: int | None = None
    local_contact: str = ""
    state: DialogState = DialogState.EARLY
    role: str = "uas"

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    def set_state(self, target: DialogState) -> None:
        if target is self.state:
            return
        if target not in DIALOG_TRANSITIONS[self.state]:
            raise LocalProtocolError(f"dialog: no transition from {self.state.value} to {target.value}")
        self.state = target

    # ------------------------------------------------------------------ creation

    @classmethod
    def for_uas(cls, request: Request, local_tag: str, local_contact: str) -> Dialog:
        """§12.1.1, from the INVITE we answer with a tag."""
        contacts = request.contacts()
        if not contacts:
            raise RemoteProtocolError("INVITE without Contact")
        frm, to = request.from_, request.to
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=frm.tag or "",
            local_uri=_without_tag(to),
            remote_uri=_without_tag(frm),
            remote_target=contacts[0].uri,
            route_set=tuple(request.header_values("record-route")),
            local_cseq=0,
            remote_cseq=request.cseq.number,
            local_contact=local_contact,
            role="uas",
        )

    @classmethod
    def for_uac(cls, request: Request, response: Response, local_contact: str) -> Dialog:
        """§12.1.2, from our INVITE and a response to it that carries a To tag."""
        contacts = response.contacts()
        frm, to = request.from_, response.to
        remote_target = contacts[0].uri if contacts else request.uri
        return cls(
            call_id=request.call_id,
            local_tag=frm.tag or "",
            remote_tag=to.tag or "",
            local_uri=_without_tag(frm),
            remote_uri=_without_tag(request.to),
            remote_target=remote_target,
            route_set=tuple(reversed(response.header_values("record-route"))),
            local_cseq=request.cseq.number,
            remote_cseq=None,
            local_contact=local_contact,
            role="uac",
        )

    def update_from_response(self, response: Response) -> None:
        """A 2xx refreshes the remote target (§12.2.1.2) and, from an early dialog, the route set."""
        contacts = response.contacts()
        if contacts:
            self.remote_target = contacts[0].uri
        if self.state is DialogState.EARLY and self.role == "uac":
            self.route_set = tuple(reversed(response.header_values("record-route")))

    # ------------------------------------------------------------------ requests

    def check_remote_cseq(self, request: Request) -> None:
        """§12.2.2: a lower CSeq than the last is out of order (500); ACK/CANCEL reuse theirs."""
        number = request.cseq.number
        if request.method in ("ACK", "CANCEL"):
            return
        if self.remote_cseq is not None and number <= self.remote_cseq:
            raise RemoteProtocolError(f"CSeq {number} is not above {self.remote_cseq}", 500)
        self.remote_cseq = number
        contacts = request.contacts()
        if request.method in ("INVITE", "UPDATE") and contacts:
            self.remote_target = contacts[0].uri  # target refresh (§12.2.2)

    def next_cseq(self) -> int:
        self.local_cseq += 1
        return self.local_cseq

    def request(
        self,
        method: str,
        via: str,
        *,
        headers: Headers = (),
        body: bytes = b"",
        content_type: str | None = None,
        cseq: int | None = None,
    ) -> Request:
        """An in-dialog request (§12.2.1.1). ACK passes `cseq` (the INVITE's number)."""
        number = cseq if cseq is not None else self.next_cseq()
        uri, routes = self._uri_and_routes()
        out: list[tuple[str, str]] = [
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", f"{self.local_uri};tag={self.local_tag}"),
            ("To", f"{self.remote_uri};tag={self.remote_tag}" if self.remote_tag else self.remote_uri),
            ("Call-ID", self.call_id),
            ("CSeq", f"{number} {method}"),
        ]
        out += [("Route", r) for r in routes]
        if self.local_contact and method not in ("ACK", "BYE", "CANCEL"):
            out.append(("Contact", self.local_contact))
        out += list(headers)
        if body:
            out.append(("Content-Type", content_type or "application/sdp"))
        out.append(("Content-Length", str(len(body))))
        return Request(method, uri, tuple(out), body)

    def _uri_and_routes(self) -> tuple[str, list[str]]:
        routes = list(self.route_set)
        if routes and not _is_loose(routes[0]):
            # §12.2.1.1 strict routing: the first route becomes the Request-URI.
            first = NameAddr.parse(routes[0]).uri
            return first, [*routes[1:], f"<{self.remote_target}>"]
        return self.remote_target, routes

    def next_hop(self) -> SipUri:
        """Where our in-dialog requests go: the first route, else the remote target (§8.1.2)."""
        if self.route_set:
            return NameAddr.parse(self.route_set[0]).sip_uri()
        return SipUri.parse(self.remote_target)


def _is_loose(route: str) -> bool:
    try:
        return NameAddr.parse(route).sip_uri().param("lr") is not None
    except ValueError:
        return True


def _without_tag(addr: NameAddr) -> str:
    params = tuple(p for p in addr.params if p[0] != "tag")
    return str(NameAddr(addr.uri, addr.display, params, addr.bracketed or bool(params)))
