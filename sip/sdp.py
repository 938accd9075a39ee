"""SDP (RFC 4566) and the offer/answer model (RFC 3264) for one G.711 audio stream. Pure.

A `SessionDescription` keeps every line as written (type letter and value, in order), so
`serialize(parse(text))` gives the text back byte for byte (with CRLF line ends); the
structured views (`origin`, `Media.rtpmap()`, `direction`, …) are read from those lines.

What we speak: PCMU (PT 0) and PCMA (PT 8) at 8000 Hz, 20 ms packets, and RFC 4733
telephone-event. `answer()` applies RFC 3264 §6:

- same number and order of `m=` lines; the ones we do not take get port 0 (§6, "rejected");
- formats are a subset of the offer's, the chosen codec first, payload type numbers kept as
  offered (dynamic ones such as 101 included, §6.1), telephone-event kept when offered;
- direction mirrored (§6.1): sendonly → recvonly, recvonly → sendonly, inactive → inactive;
  an old-style hold with `c=0.0.0.0` (RFC 3264 §8.4) is treated as sendonly;
- no audio stream with a codec in common → `RemoteProtocolError(…, 488)`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from sip.errors import RemoteProtocolError

Line = tuple[str, str]

SUPPORTED = ("PCMU", "PCMA")
STATIC_PT = {0: "PCMU", 8: "PCMA"}  # RFC 3551 §6, table 4
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
MAX_MEDIA = 16
MAX_LINES = 512


@dataclass(frozen=True, slots=True)
class Origin:
    username: str
    session_id: str
    version: int
    nettype: str
    addrtype: str
    address: str


@dataclass(frozen=True, slots=True)
class RtpMap:
    encoding: str  # upper case, e.g. "PCMU", "TELEPHONE-EVENT"
    clock_rate: int
    channels: int = 1


@dataclass(frozen=True, slots=True)
class Media:
    """One `m=` section: the m= line fields and the lines that follow it."""

    kind: str
    port: int
    proto: str
    formats: tuple[str, ...]
    lines: tuple[Line, ...] = ()
    port_count: int | None = None

    def attributes(self, name: str) -> list[str]:
        prefix = name + ":"
        out = []
        for t, v in self.lines:
            if t == "a":
                if v == name:
                    out.append("")
                elif v.startswith(prefix):
                    out.append(v[len(prefix) :].strip())
        return out

    def attribute(self, name: str) -> str | None:
        found = self.attributes(name)
        return found[0] if found else None

    @property
    def connection(self) -> str | None:
        for t, v in self.lines:
            if t == "c":
                return _connection_address(v)
        return None

    def rtpmap(self) -> dict[int, RtpMap]:
        """Payload type → encoding, with the static types of RFC 3551 filled in."""
        out: dict[int, RtpMap] = {}
        for fmt in self.formats:
            if fmt.isdigit() and int(fmt) in STATIC_PT:
                out[int(fmt)] = RtpMap(STATIC_PT[int(fmt)], 8000)
        for value in self.attributes("rtpmap"):
            pt_text, _, enc = value.partition(" ")
            parts = enc.strip().split("/")
            if not pt_text.isdigit() or len(parts) < 2 or not parts[1].isdigit():
                continue
            channels = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 1
            out[int(pt_text)] = RtpMap(parts[0].upper(), int(parts[1]), channels)
        return out

    def fmtp(self, pt: int) -> str | None:
        for value in self.attributes("fmtp"):
            pt_text, _, params = value.partition(" ")
            if pt_text == str(pt):
                return params.strip()
        return None

    @property
    def ptime(self) -> int | None:
        value = self.attribute("ptime")
        try:
            return int(float(value)) if value else None
        except ValueError:
            return None

    def own_direction(self) -> str | None:
        for t, v in self.lines:
            if t == "a" and v in DIRECTIONS:
                return v
        return None


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A parsed SDP body: session-level lines and media sections, as written."""

    lines: tuple[Line, ...]
    media: tuple[Media, ...] = ()

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
        except UnicodeDecodeError:
            raise RemoteProtocolError("SDP is not valid UTF-8") from None
        if "\x00" in text:
            raise RemoteProtocolError("NUL byte in SDP")
        raw_lines = [ln for ln in text.replace("\r\n", "\n").split("\n") if ln.strip()]
        if len(raw_lines) > MAX_LINES:
            raise RemoteProtocolError(f"SDP has more than {MAX_LINES} lines")
        session: list[Line] = []
        media: list[Media] = []
        current: tuple[str, int, str, tuple[str, ...], int | None] | None = None
        current_lines: list[Line] = []
        for raw in raw_lines:
            if len(raw) < 2 or raw[1] != "=" or not raw[0].isalpha():
                raise RemoteProtocolError(f"bad SDP line {raw[:40]!r}")
            t, v = raw[0], raw[2:]
            if t == "m":
                if current is not None:
                    media.append(Media(*current[:4], tuple(current_lines), current[4]))
                if len(media) >= MAX_MEDIA:
                    raise RemoteProtocolError(f"SDP has more than {MAX_MEDIA} media sections")
                current = _parse_m(v)
                current_lines = []
            elif current is None:
                session.append((t, v))
            else:
                current_lines.append((t, v))
        if current is not None:
            media.append(Media(*current[:4], tuple(current_lines), current[4]))
        if not session or session[0] != ("v", "0"):
            raise RemoteProtocolError("SDP does not start with v=0")
        sd = cls(tuple(session), tuple(media))
        sd.origin  # noqa: B018 (validates o=)
        return sd

    def serialize(self) -> bytes:
        out: list[str] = [f"{t}={v}" for t, v in self.lines]
        for m in self.media:
            port = f"{m.port}/{m.port_count}" if m.port_count else str(m.port)
            out.append(f"m={m.kind} {port} {m.proto} {' '.join(m.formats)}")
            out.extend(f"{t}={v}" for t, v in m.lines)
        return ("\r\n".join(out) + "\r\n").encode("utf-8")

    __bytes__ = serialize

    def _session(self, t: str) -> str | None:
        for k, v in self.lines:
            if k == t:
                return v
        return None

    @property
    def origin(self) -> Origin:
        value = self._session("o")
        parts = (value or "").split()
        if len(parts) != 6 or not parts[2].isdigit():
            raise RemoteProtocolError("bad or missing SDP o= line")
        return Origin(parts[0], parts[1], int(parts[2]), parts[3], parts[4], parts[5])

    @property
    def connection(self) -> str | None:
        value = self._session("c")
        return _connection_address(value) if value is not None else None

    def session_direction(self) -> str | None:
        for t, v in self.lines:
            if t == "a" and v in DIRECTIONS:
                return v
        return None

    def direction(self, media: Media) -> str:
        """The stream's direction: media level wins over session level (RFC 4566 §6)."""
        return media.own_direction() or self.session_direction() or "sendrecv"

    def address(self, media: Media) -> str | None:
        return media.connection or self.connection


def _parse_m(value: str) -> tuple[str, int, str, tuple[str, ...], int | None]:
    parts = value.split()
    if len(parts) < 4:
        raise RemoteProtocolError(f"bad SDP m= line {value[:40]!r}")
    port_text, _, count_text = parts[1].partition("/")
    if not port_text.isdigit() or int(port_text) > 65535 or (count_text and not count_text.isdigit()):
        raise RemoteProtocolError(f"bad SDP m= port {parts[1][:20]!r}")
    return parts[0], int(port_text), parts[2], tuple(parts[3:]), int(count_text) if count_text else None


def _connection_address(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN":
        raise RemoteProtocolError(f"bad SDP c= line {value[:40]!r}")
    return parts[2].split("/")[0]


# --------------------------------------------------------------------------- offer/answer


@dataclass(frozen=True, slots=True)
class LocalMedia:
    """What we put in our SDP: where we receive RTP, and the o= line's identity (RFC 4566 §5.2:
    the version goes up by one each time the session description changes)."""

    address: str
    port: int
    session_id: int
    version: int = 1
    username: str = "switchboard"


@dataclass(frozen=True, slots=True)
class MediaParams:
    """The negotiated audio stream, from our side."""

    codec: str  # "PCMU" | "PCMA"
    pt: int
    dtmf_pt: int | None
    remote_address: str
    remote_port: int
    direction: str  # our direction: sendrecv | sendonly | recvonly | inactive
    ptime: int = 20
    index: int = 0

    @property
    def sends(self) -> bool:
        return self.direction in ("sendrecv", "sendonly") and self.remote_port != 0

    @property
    def on_hold(self) -> bool:
        return self.direction in ("recvonly", "inactive")


def _addrtype(address: str) -> str:
    try:
        return "IP6" if ipaddress.ip_address(address).version == 6 else "IP4"
    except ValueError:
        return "IP4"


def _head(local: LocalMedia) -> list[Line]:
    kind = _addrtype(local.address)
    return [
        ("v", "0"),
        ("o", f"{local.username} {local.session_id} {local.version} IN {kind} {local.address}"),
        ("s", local.username),
        ("c", f"IN {kind} {local.address}"),
        ("t", "0 0"),
    ]


def choose_codec(media: Media, prefer: tuple[str, ...] = SUPPORTED) -> tuple[str, int] | None:
    """The codec we take from an offered stream: the first of `prefer` that is offered (PCMU
    first: it passes through to the model without transcoding), with the offer's PT number."""
    if media.kind != "audio" or media.proto.upper() not in ("RTP/AVP", "RTP/AVPF") or media.port == 0:
        return None
    rtpmap = media.rtpmap()
    offered: dict[str, int] = {}
    for fmt in media.formats:
        if not fmt.isdigit():
            continue
        entry = rtpmap.get(int(fmt))
        if entry and entry.clock_rate == 8000 and entry.channels == 1 and entry.encoding in SUPPORTED:
            offered.setdefault(entry.encoding, int(fmt))
    for name in prefer:
        if name in offered:
            return name, offered[name]
    return None


def telephone_event_pt(media: Media) -> int | None:
    rtpmap = media.rtpmap()
    for fmt in media.formats:
        if fmt.isdigit():
            entry = rtpmap.get(int(fmt))
            if entry and entry.encoding == "TELEPHONE-EVENT" and entry.clock_rate == 8000:
                return int(fmt)
    return None


def answer(
    offer: SessionDescription, local: LocalMedia, *, prefer: tuple[str, ...] = SUPPORTED
) -> tuple[SessionDescription, MediaParams]:
    """Answer `offer` (RFC 3264 §6); see the module docstring. Raises 488 with no common codec."""
    chosen: tuple[int, str, int, int | None] | None = None
    for index, media in enumerate(offer.media):
        codec = choose_codec(media, prefer)
        if codec is not None and offer.address(media) is not None:
            chosen = (index, codec[0], codec[1], telephone_event_pt(media))
            break
    if chosen is None:
        raise RemoteProtocolError("no common codec in the SDP offer", 488)
    index, name, pt, te = chosen
    offered = offer.media[index]
    address = offer.address(offered) or ""
    their_dir = offer.direction(offered)
    if address in ("0.0.0.0", "::") and their_dir == "sendrecv":
        their_dir = "sendonly"  # RFC 3264 §8.4: the RFC 2543 way of putting a call on hold
    ours = _MIRROR[their_dir]
    sections: list[Media] = []
    for i, media in enumerate(offer.media):
        if i != index:
            sections.append(Media(media.kind, 0, media.proto, media.formats[:1]))
            continue
        formats = [str(pt)]
        lines: list[Line] = [("a", f"rtpmap:{pt} {name}/8000")]
        if te is not None:
            formats.append(str(te))
            lines += [
                ("a", f"rtpmap:{te} telephone-event/8000"),
                ("a", f"fmtp:{te} {media.fmtp(te) or '0-16'}"),
            ]
        lines += [("a", "ptime:20"), ("a", ours)]
        sections.append(Media("audio", local.port, media.proto, tuple(formats), tuple(lines)))
    params = MediaParams(
        codec=name,
        pt=pt,
        dtmf_pt=te,
        remote_address=address,
        remote_port=offered.port,
        direction=ours,
        ptime=offered.ptime or 20,
        index=index,
    )
    return SessionDescription(tuple(_head(local)), tuple(sections)), params


def offer(
    local: LocalMedia,
    *,
    codecs: tuple[str, ...] = SUPPORTED,
    dtmf_pt: int | None = 101,
    direction: str = "sendrecv",
) -> SessionDescription:
    """Our offer (outbound calls, delayed-offer INVITEs): the codecs in order of preference."""
    pts = {"PCMU": 0, "PCMA": 8}
    formats = [str(pts[c]) for c in codecs]
    lines: list[Line] = [("a", f"rtpmap:{pts[c]} {c}/8000") for c in codecs]
    if dtmf_pt is not None:
        formats.append(str(dtmf_pt))
        lines += [("a", f"rtpmap:{dtmf_pt} telephone-event/8000"), ("a", f"fmtp:{dtmf_pt} 0-16")]
    lines += [("a", "ptime:20"), ("a", direction)]
    media = Media("audio", local.port, "RTP/AVP", tuple(formats), tuple(lines))
    return SessionDescription(tuple(_head(local)), (media,))


def accept_answer(answer_sdp: SessionDescription, sent_offer: SessionDescription) -> MediaParams:
    """Read the peer's answer to our offer (UAC side). Raises 488 when it takes no codec of ours."""
    if not answer_sdp.media:
        raise RemoteProtocolError("SDP answer has no media", 488)
    for index, media in enumerate(answer_sdp.media):
        if index >= len(sent_offer.media) or media.port == 0:
            continue
        # The answer's order is its preference (RFC 3264 §6.1); take its first codec we speak.
        rtpmap = media.rtpmap()
        for fmt in media.formats:
            if fmt.isdigit() and (entry := rtpmap.get(int(fmt))) and entry.encoding in SUPPORTED:
                address = answer_sdp.address(media)
                if address is None:
                    break
                return MediaParams(
                    codec=entry.encoding,
                    pt=int(fmt),
                    dtmf_pt=telephone_event_pt(media),
                    remote_address=address,
                    remote_port=media.port,
                    direction=_MIRROR[answer_sdp.direction(media)],
                    ptime=media.ptime or 20,
                    index=index,
                )
    raise RemoteProtocolError("SDP answer takes no codec we offered", 488)


def bump_if_changed(new: SessionDescription, previous: SessionDescription | None) -> SessionDescription:
    """Keep the previous o= version when nothing but o= changed; else previous version + 1
    (RFC 3264 §8: a re-offer/answer that changes nothing keeps the version)."""
    if previous is None:
        return new
    old = previous.origin
    same = _without_origin(new) == _without_origin(previous)
    version = old.version if same else old.version + 1
    lines = tuple(
        (t, f"{old.username} {old.session_id} {version} {old.nettype} {old.addrtype} {old.address}")
        if t == "o"
        else (t, v)
        for t, v in new.lines
    )
    return replace(new, lines=lines)


def _without_origin(sd: SessionDescription) -> tuple[object, ...]:
    return (tuple(line for line in sd.lines if line[0] != "o"), sd.media)
