"""SIP messages (RFC 3261 §7, §20, §25): parse and serialize, with limits. Pure, no I/O.

`parse_message(data)` turns one datagram (or one framed TCP message) into a frozen `Request` or
`Response`, or raises `RemoteProtocolError` with a status hint and, for requests whose head
could be read, the `partial` request so the core can still address a 4xx to the sender.
`StreamParser` frames messages on a TCP byte stream by Content-Length (§18.3).

Headers are kept as written (name spelling, compact forms such as `v:` or `i:`, order), so
`serialize(parse(raw)) == raw` for any message written the usual way (`Name: value`, CRLF,
no line folding). Lookups go through canonical lower-case names, so `v` finds `Via`.

Limits (security limits, like websockets' `max_size`): a whole message at most 65,535 bytes
(the largest UDP datagram, §18.3 says such datagrams must be accepted), at most 128 header
fields, at most 8 KiB per header line. Beyond them the message is refused (400/413/513), never
buffered without bound.

Never a 2xx for broken input: a request is only returned when Via, From, To, Call-ID and CSeq
are present and parse, the CSeq method matches, Content-Length agrees with the body, and the
head has no NUL byte. RFC 3261 §18.3 lets a UDP receiver discard bytes beyond Content-Length;
we refuse such datagrams instead (shared/reference/sip-rules.md: a Content-Length that
disagrees with the body is broken input), because on a trunk that almost always means a
corrupted or smuggled message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sip.errors import RemoteProtocolError

# --------------------------------------------------------------------------- limits


@dataclass(frozen=True, slots=True)
class Limits:
    """Security limits of the parser."""

    max_message: int = 65_535
    max_headers: int = 128
    max_line: int = 8_192
    max_body: int = 65_535


DEFAULT_LIMITS = Limits()

# --------------------------------------------------------------------------- header names

# RFC 3261 §7.3.3 and §20 (plus RFC 3515 r/b, RFC 3265 o/u, RFC 4028 x, RFC 3841 a/j/d).
COMPACT_FORMS: dict[str, str] = {
    "v": "via",
    "i": "call-id",
    "f": "from",
    "t": "to",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "e": "content-encoding",
    "k": "supported",
    "s": "subject",
    "r": "refer-to",
    "b": "referred-by",
    "o": "event",
    "u": "allow-events",
    "x": "session-expires",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
    "n": "identity-info",
}

# How we spell headers we write (the canonical forms of RFC 3261 §20).
_SPELLING: dict[str, str] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "rseq": "RSeq",
    "rack": "RAck",
    "mime-version": "MIME-Version",
}

# Headers whose value is a comma-separated list (§7.3.1): they may be split over several lines
# or joined on one, and both mean the same.
_LIST_HEADERS = frozenset(
    {
        "via",
        "route",
        "record-route",
        "contact",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "allow-events",
        "content-encoding",
        "in-reply-to",
        "path",
        "service-route",
    }
)

# Headers that must appear at most once (several copies are how desync attacks start).
_SINGLE_HEADERS = ("call-id", "cseq", "from", "to", "content-length", "max-forwards", "content-type")

_MANDATORY = ("via", "from", "to", "call-id", "cseq")

_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_CSEQ_RE = re.compile(r"^(\d{1,10})[ \t]+([A-Za-z0-9\-.!%*_+`'~]+)$")
_STATUS_RE = re.compile(r"^SIP/2\.0 ([1-6]\d\d)(?: (.*))?$")
_REQUEST_RE = re.compile(r"^([A-Za-z0-9\-.!%*_+`'~]+) (\S+) (SIP/\d+\.\d+)$")
_BLANK_LINE_RE = re.compile(rb"\r?\n\r?\n")
_LINE_SPLIT_RE = re.compile(r"\r?\n")
_TEXTUAL_BODY = ("application/sdp", "message/sipfrag", "text/", "application/dtmf")


def canonical(name: str) -> str:
    """The canonical lower-case name of a header (`v` → `via`, `Call-Id` → `call-id`)."""
    lower = name.strip().lower()
    return COMPACT_FORMS.get(lower, lower)


def spell(name: str) -> str:
    """How we write a header name: `call-id` → `Call-ID`, `content-type` → `Content-Type`."""
    lower = canonical(name)
    return _SPELLING.get(lower) or "-".join(part.capitalize() for part in lower.split("-"))


def split_list(value: str) -> list[str]:
    """Split a header list on commas outside quotes and angle brackets (§7.3.1)."""
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    last = value[start:].strip()
    if last or not out:
        out.append(last)
    return [v for v in out if v]


def _split_params(text: str) -> tuple[tuple[str, str | None], ...]:
    """`;a=1;b;c="x;y"` → (("a","1"),("b",None),("c",'"x;y"')). Names lower-cased."""
    params: list[tuple[str, str | None]] = []
    for part in _split_outside_quotes(text, ";"):
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        params.append((name.strip().lower(), value.strip() if eq else None))
    return tuple(params)


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    out: list[str] = []
    quoted = False
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted and ch == "\\":
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return out


def _format_params(params: tuple[tuple[str, str | None], ...]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def _param(params: tuple[tuple[str, str | None], ...], name: str) -> str | None:
    for k, v in params:
        if k == name:
            return v if v is not None else ""
    return None


# --------------------------------------------------------------------------- URIs, addresses


@dataclass(frozen=True, slots=True)
class SipUri:
    """`sip:user@host:port;params?headers` (§19.1), and `tel:` kept as opaque text."""

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    headers: str = ""
    password: str | None = None

    @classmethod
    def parse(cls, text: str) -> SipUri:
        text = text.strip()
        scheme, colon, rest = text.partition(":")
        scheme = scheme.lower()
        if not colon or not rest:
            raise ValueError(f"not a URI: {text[:80]!r}")
        if scheme == "tel":
            number, _, params = rest.partition(";")
            return cls("tel", number, "", None, _split_params(params))
        if scheme not in ("sip", "sips"):
            raise ValueError(f"unsupported URI scheme {scheme!r}")
        rest, _, headers = rest.partition("?")
        userinfo, at, hostpart = rest.rpartition("@")
        if not at:
            hostpart = rest
            userinfo = ""
        hostport, _, params = hostpart.partition(";")
        user: str | None = None
        password: str | None = None
        if at:
            user, _, pw = userinfo.partition(":")
            password = pw or None
            if not user:
                raise ValueError("empty user part in SIP URI")
        host, port = _split_hostport(hostport)
        return cls(scheme, user, host, port, _split_params(params), headers, password)

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}{_format_params(self.params)}"
        userinfo = ""
        if self.user is not None:
            userinfo = self.user + (f":{self.password}" if self.password else "") + "@"
        port = f":{self.port}" if self.port is not None else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        tail = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{userinfo}{host}{port}{_format_params(self.params)}{tail}"

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    @property
    def transport(self) -> str:
        value = self.param("transport")
        return (value or ("tls" if self.scheme == "sips" else "udp")).lower()


_HOST_RE = re.compile(r"^[A-Za-z0-9\-.]+$")


def _split_hostport(text: str) -> tuple[str, int | None]:
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("unterminated IPv6 reference")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad host:port {text[:80]!r}")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = text.partition(":")
        if not host or not _HOST_RE.match(host):
            raise ValueError(f"bad host {host[:80]!r}")
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"bad port {port_text[:20]!r}")
        port = int(port_text)
    return host, port


@dataclass(frozen=True, slots=True)
class NameAddr:
    """From/To/Contact/Route values: `"Display" <uri>;params` or `uri;params` (§20.10)."""

    uri: str
    display: str = ""
    params: tuple[tuple[str, str | None], ...] = ()
    bracketed: bool = True

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if not text:
            raise ValueError("empty address")
        lt = _find_unquoted(text, "<")
        if lt >= 0:
            gt = text.find(">", lt)
            if gt < 0:
                raise ValueError("unterminated <uri>")
            display = text[:lt].strip()
            uri = text[lt + 1 : gt].strip()
            params = _split_params(text[gt + 1 :])
            bracketed = True
        else:
            # addr-spec: parameters after the URI belong to the header (§20.10).
            display = ""
            uri, _, params_text = text.partition(";")
            params = _split_params(params_text)
            bracketed = False
        if ":" not in uri:
            raise ValueError(f"not a URI: {uri[:80]!r}")
        return cls(uri, display, params, bracketed)

    def __str__(self) -> str:
        lead = f"{self.display} " if self.display else ""
        core = f"<{self.uri}>" if (self.bracketed or self.display) else self.uri
        return f"{lead}{core}{_format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        return _param(self.params, "tag")

    def with_tag(self, tag: str) -> NameAddr:
        params = (*(p for p in self.params if p[0] != "tag"), ("tag", tag))
        return NameAddr(self.uri, self.display, params, True)

    def sip_uri(self) -> SipUri:
        return SipUri.parse(self.uri)


def _find_unquoted(text: str, ch: str) -> int:
    quoted = False
    for i, c in enumerate(text):
        if c == '"':
            quoted = not quoted
        elif c == ch and not quoted:
            return i
    return -1


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value: `SIP/2.0/UDP host:port;branch=z9hG4bK…;rport` (§20.42, RFC 3581)."""

    transport: str
    host: str
    port: int | None
    params: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Via:
        proto, _, rest = text.strip().partition(" ")
        parts = [p.strip() for p in proto.split("/")]
        if len(parts) != 3 or parts[0].upper() != "SIP" or parts[1] != "2.0" or not parts[2]:
            raise ValueError(f"bad Via protocol {proto[:40]!r}")
        rest = rest.strip()
        sent_by, _, params = rest.partition(";")
        host, port = _split_hostport(sent_by)
        return cls(parts[2].upper(), host, port, _split_params(params))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {host}{port}{_format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return _param(self.params, "branch")

    @property
    def sent_by(self) -> tuple[str, int]:
        return self.host, self.port or 5060

    def param(self, name: str) -> str | None:
        return _param(self.params, name)


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        m = _CSEQ_RE.match(text.strip())
        if m is None:
            raise ValueError(f"bad CSeq {text[:40]!r}")
        number = int(m.group(1))
        if number >= 2**31:
            raise ValueError("CSeq number is not below 2**31")
        return cls(number, m.group(2).upper())

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


# --------------------------------------------------------------------------- messages

Headers = tuple[tuple[str, str], ...]


class _HeaderAccess:
    """Read access shared by requests and responses (headers as written, lookups canonical)."""

    __slots__ = ()
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any spelling or compact form), or None."""
        want = canonical(name)
        for k, v in self.headers:
            if canonical(k) == want:
                return v
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of `name`: all lines, list headers split on commas (§7.3.1)."""
        want = canonical(name)
        out: list[str] = []
        for k, v in self.headers:
            if canonical(k) == want:
                if want in _LIST_HEADERS and v.strip() != "*":
                    out.extend(split_list(v))
                else:
                    out.append(v)
        return out

    def has(self, name: str) -> bool:
        return self.header(name) is not None

    @property
    def call_id(self) -> str:
        return (self.header("call-id") or "").strip()

    @property
    def cseq(self) -> CSeq:
        return CSeq.parse(self.header("cseq") or "")

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.header_values("via")]

    @property
    def top_via(self) -> Via:
        values = self.header_values("via")
        if not values:
            raise ValueError("no Via")
        return Via.parse(values[0])

    @property
    def from_(self) -> NameAddr:
        return NameAddr.parse(self.header("from") or "")

    @property
    def to(self) -> NameAddr:
        return NameAddr.parse(self.header("to") or "")

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    def contacts(self) -> list[NameAddr]:
        return [NameAddr.parse(v) for v in self.header_values("contact") if v.strip() != "*"]


@dataclass(frozen=True, slots=True)
class Request(_HeaderAccess):
    """A SIP request as received or to send."""

    method: str
    uri: str
    headers: Headers = ()
    body: bytes = b""
    version: str = "SIP/2.0"

    def serialize(self) -> bytes:
        return _serialize(f"{self.method} {self.uri} {self.version}", self.headers, self.body)

    __bytes__ = serialize


@dataclass(frozen=True, slots=True)
class Response(_HeaderAccess):
    """A SIP response as received or to send."""

    status: int
    reason: str
    headers: Headers = ()
    body: bytes = b""

    def serialize(self) -> bytes:
        return _serialize(f"SIP/2.0 {self.status} {self.reason}".rstrip(), self.headers, self.body)

    __bytes__ = serialize


Message = Request | Response


def _serialize(start: str, headers: Headers, body: bytes) -> bytes:
    lines = [start]
    lines.extend(f"{k}: {v}" for k, v in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def build_headers(*pairs: tuple[str, str | int | None]) -> Headers:
    """Headers in our spelling; pairs with a None value are left out."""
    return tuple((spell(k), str(v)) for k, v in pairs if v is not None)


# --------------------------------------------------------------------------- reason phrases

REASONS: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "Version Not Supported",
    513: "Message Too Large",
    603: "Decline",
}


def reason_phrase(status: int) -> str:
    return REASONS.get(status, "Unknown")


# --------------------------------------------------------------------------- parsing


def parse_message(data: bytes, limits: Limits = DEFAULT_LIMITS, *, stream: bool = False) -> Message:
    """Parse one whole message. `stream=True` means it came over TCP: Content-Length is then
    mandatory (§18.3) and the caller has already framed the body with it."""
    if len(data) > limits.max_message:
        partial = _partial_from(data[: limits.max_line * 4], limits)
        raise RemoteProtocolError(
            f"message of {len(data)} bytes exceeds the {limits.max_message}-byte limit", 513, partial
        )
    # §7.5: CRLFs before the start line are ignored.
    data = data.lstrip(b"\r\n")
    m = _BLANK_LINE_RE.search(data)
    if m is None:
        raise RemoteProtocolError("no blank line after the header fields", 400, _partial_from(data, limits))
    head, body = data[: m.start()], data[m.end() :]
    start, headers, problem = _parse_head(head, limits)
    message: Message
    if start.startswith("SIP/"):
        sm = _STATUS_RE.match(start)
        if sm is None:
            raise RemoteProtocolError(f"bad status line {start[:60]!r}")
        message = Response(int(sm.group(1)), sm.group(2) or "", headers, body)
    else:
        rm = _REQUEST_RE.match(start)
        if rm is None:
            raise RemoteProtocolError(f"bad request line {start[:60]!r}")
        method, uri, version = rm.groups()
        message = Request(method.upper(), uri, headers, body, version)
    partial = message if isinstance(message, Request) else None
    if problem is not None:
        raise RemoteProtocolError(problem[0], problem[1], partial)
    try:
        _validate(message, limits, stream=stream)
    except RemoteProtocolError as exc:
        exc.partial = partial
        raise
    return message


def _partial_from(data: bytes, limits: Limits) -> Request | None:
    """Best-effort request from a broken message, only to address the 400 (never to act on)."""
    try:
        end = _BLANK_LINE_RE.search(data)
        head = data[: end.start()] if end else data
        start, headers, _ = _parse_head(head, limits, lenient=True)
        rm = _REQUEST_RE.match(start)
        if rm is None:
            return None
        return Request(rm.group(1).upper(), rm.group(2), headers, b"", rm.group(3))
    except (RemoteProtocolError, ValueError):
        return None


def _parse_head(
    head: bytes, limits: Limits, *, lenient: bool = False
) -> tuple[str, Headers, tuple[str, int] | None]:
    """Start line and header fields. Returns the first problem instead of raising for problems
    in header lines, so the caller can still build a partial request from the good ones."""
    problem: tuple[str, int] | None = None
    if b"\x00" in head:
        problem = ("NUL byte in the message head", 400)  # kept: `answerable` refuses to echo it
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        problem = problem or ("message head is not valid UTF-8", 400)
        text = head.decode("utf-8", errors="replace")
    lines = _LINE_SPLIT_RE.split(text)
    start = lines[0].strip()
    if len(lines[0]) > limits.max_line:
        raise RemoteProtocolError(f"start line longer than {limits.max_line} bytes")
    if not start:
        raise RemoteProtocolError("empty start line")
    headers: list[tuple[str, str]] = []
    for raw in lines[1:]:
        if len(raw) > limits.max_line:
            problem = problem or (f"header line longer than {limits.max_line} bytes", 400)
            continue
        if raw[:1] in (" ", "\t"):
            # §7.3.1 line folding (obsolete, still accepted): continuation of the previous field.
            if headers:
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {raw.strip()}".strip())
            else:
                problem = problem or ("continuation line before any header field", 400)
            continue
        name, colon, value = raw.partition(":")
        name = name.rstrip(" \t")
        if not colon or not _TOKEN_RE.match(name):
            problem = problem or (f"malformed header line {raw[:40]!r}", 400)
            continue
        headers.append((name, value.strip(" \t")))
        if len(headers) > limits.max_headers and not lenient:
            return start, tuple(headers), (f"more than {limits.max_headers} header fields", 400)
    return start, tuple(headers), problem


def _validate(message: Message, limits: Limits, *, stream: bool) -> None:
    counts: dict[str, int] = {}
    for k, _ in message.headers:
        c = canonical(k)
        counts[c] = counts.get(c, 0) + 1
    for name in _MANDATORY:
        if name not in counts:
            raise RemoteProtocolError(f"missing {spell(name)} header")
    for name in _SINGLE_HEADERS:
        if counts.get(name, 0) > 1:
            raise RemoteProtocolError(f"more than one {spell(name)} header")
    if isinstance(message, Request):
        if message.version != "SIP/2.0":
            raise RemoteProtocolError(f"unsupported SIP version {message.version!r}", 505)
        try:
            SipUri.parse(message.uri)
        except ValueError:
            raise RemoteProtocolError(f"bad Request-URI {message.uri[:60]!r}", 416) from None
    call_id = message.call_id
    if not call_id or any(ch.isspace() for ch in call_id):
        raise RemoteProtocolError("bad Call-ID")
    try:
        cseq = message.cseq
    except ValueError:
        raise RemoteProtocolError(f"bad CSeq {str(message.header('cseq'))[:40]!r}") from None
    if isinstance(message, Request) and cseq.method != message.method:
        raise RemoteProtocolError(f"CSeq method {cseq.method} does not match {message.method}")
    try:
        vias = message.vias
        NameAddr.parse(message.header("from") or "")
        NameAddr.parse(message.header("to") or "")
    except ValueError as exc:
        raise RemoteProtocolError(f"bad address header ({exc})") from None
    if not vias:
        raise RemoteProtocolError("missing Via header")
    mf = message.header("max-forwards")
    if mf is not None and (not mf.strip().isdigit() or int(mf) > 255):
        raise RemoteProtocolError(f"bad Max-Forwards {mf[:20]!r}")
    cl_text = message.header("content-length")
    body = message.body
    if cl_text is None:
        if stream:
            raise RemoteProtocolError("missing Content-Length on a stream transport")
    else:
        if not cl_text.strip().isdigit():
            raise RemoteProtocolError(f"bad Content-Length {cl_text[:20]!r}")
        length = int(cl_text)
        if length > limits.max_body:
            raise RemoteProtocolError(
                f"Content-Length {length} exceeds the {limits.max_body}-byte limit", 413
            )
        if length != len(body):
            raise RemoteProtocolError(f"Content-Length {length} does not match the body ({len(body)} bytes)")
    if body:
        ctype = message.content_type
        if not ctype:
            raise RemoteProtocolError("body without Content-Type")
        if b"\x00" in body and ctype.startswith(_TEXTUAL_BODY):
            raise RemoteProtocolError("NUL byte in a text body")


_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def answerable(request: Request) -> bool:
    """Whether a broken request still names who to answer (§8.2.6.2): every Via, From, To,
    Call-ID and CSeq reads cleanly, so the 4xx we build from them is itself well formed."""
    copied = [v for k, v in request.headers if canonical(k) in ("via", "from", "to", "call-id", "cseq")]
    if any(_CONTROL_RE.search(v) for v in copied):
        return False
    try:
        vias = request.vias
        request.cseq  # noqa: B018 (parses)
        NameAddr.parse(request.header("from") or "")
        NameAddr.parse(request.header("to") or "")
    except ValueError:
        return False
    call_id = request.call_id
    return bool(vias) and bool(call_id) and not any(ch.isspace() for ch in call_id)


# --------------------------------------------------------------------------- TCP framing


class StreamParser:
    """Frames SIP messages on a byte stream by Content-Length (§18.3). Bounded: a head longer
    than the limits, or a declared body beyond them, is an error and the stream must be closed
    (framing is lost)."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._buf = bytearray()
        self.failed = False

    def feed(self, data: bytes) -> list[Message | RemoteProtocolError | bytes]:
        """Add bytes; return complete messages, errors (then stop), and CRLF keepalive pings
        (RFC 5626 §3.5.1: `\\r\\n\\r\\n`, answered by the caller with `\\r\\n`) as `bytes`."""
        if self.failed:
            return []
        self._buf += data
        out: list[Message | RemoteProtocolError | bytes] = []
        while True:
            if self._buf.startswith(b"\r\n\r\n"):
                del self._buf[:4]
                out.append(b"\r\n\r\n")
                continue
            if self._buf.startswith(b"\r\n"):
                if len(self._buf) < 4:
                    return out  # maybe the start of a ping
                del self._buf[:2]  # §7.5: stray CRLF before a start line
                continue
            m = _BLANK_LINE_RE.search(self._buf)
            if m is None:
                if len(self._buf) > self.limits.max_line * 8 or len(self._buf) > self.limits.max_message:
                    self.failed = True
                    out.append(RemoteProtocolError("message head exceeds the size limit", 513))
                return out
            head = bytes(self._buf[: m.start()])
            length = _content_length(head)
            if length is None:
                self.failed = True
                out.append(
                    RemoteProtocolError(
                        "missing or bad Content-Length on a stream transport",
                        400,
                        _partial_from(head + b"\r\n\r\n", self.limits),
                    )
                )
                return out
            total = m.end() + length
            if total > self.limits.max_message:
                self.failed = True
                out.append(
                    RemoteProtocolError(
                        f"message of {total} bytes exceeds the {self.limits.max_message}-byte limit",
                        513,
                        _partial_from(head + b"\r\n\r\n", self.limits),
                    )
                )
                return out
            if len(self._buf) < total:
                return out
            raw = bytes(self._buf[:total])
            del self._buf[:total]
            try:
                out.append(parse_message(raw, self.limits, stream=True))
            except RemoteProtocolError as exc:
                out.append(exc)


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            text = value.strip()
            return int(text) if text.isdigit() else None
    return None


# --------------------------------------------------------------------------- building


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Headers = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """A response to `request` per §8.2.6.2: Via (all, in order), From, Call-ID and CSeq copied;
    To copied with our tag added (not on 100, §8.2.6.2 "MAY"; we never do)."""
    out: list[tuple[str, str]] = [(k, v) for k, v in request.headers if canonical(k) == "via"]
    to_value = request.header("to") or ""
    if to_tag and status != 100:
        try:
            to_addr = NameAddr.parse(to_value)
            if to_addr.tag is None:
                to_value = str(to_addr.with_tag(to_tag))
        except ValueError:
            pass
    out += [
        ("From", request.header("from") or ""),
        ("To", to_value),
        ("Call-ID", request.call_id),
        ("CSeq", request.header("cseq") or ""),
    ]
    if 100 < status < 300:
        # §12.1.1: Record-Route is copied into responses that create a dialog.
        out += [(k, v) for k, v in request.headers if canonical(k) == "record-route"]
    out += list(headers)
    if body:
        out.append(("Content-Type", content_type or "application/sdp"))
    out.append(("Content-Length", str(len(body))))
    return Response(status, reason or reason_phrase(status), tuple(out), body)
