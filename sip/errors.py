"""Errors of the SIP core, split by blame (after h11's `_util.py`).

- `LocalProtocolError`: *we* asked for something the protocol forbids (send a 2xx in a
  transaction that already sent a final response, build a response without a Via, …). A bug in
  our code or in the caller of the core; it never comes from the network.
- `RemoteProtocolError`: the *peer* sent something we cannot accept (malformed message, SDP
  with no codec we speak, a request for a dialog we do not know). Each carries
  `error_status_hint`: the SIP status the core answers with when the message can be answered
  at all (400, 481, 488, 513, …).

`ProtocolError` itself cannot be instantiated. The message text is for our logs only: no
exception text is ever put on the wire (the reason phrases of error responses are fixed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sip.message import Request


class ProtocolError(Exception):
    """Base class; use `LocalProtocolError` or `RemoteProtocolError`."""

    def __init__(self, message: str, error_status_hint: int = 400) -> None:
        if type(self) is ProtocolError:
            raise TypeError("tried to directly instantiate ProtocolError")
        super().__init__(message)
        self.error_status_hint = error_status_hint


class LocalProtocolError(ProtocolError):
    """We broke the protocol (programming error in the core or its caller)."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol. `partial` is the request as far as it could be read, so a
    4xx can still be addressed to the sender (it has Via, From, To, Call-ID and CSeq)."""

    def __init__(self, message: str, error_status_hint: int = 400, partial: Request | None = None) -> None:
        super().__init__(message, error_status_hint)
        self.partial = partial
