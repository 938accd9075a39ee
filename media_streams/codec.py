"""Twilio Media Streams wire codec: JSON text frames ⇄ typed events and commands. Pure, no I/O.

Direction Twilio → server (what our endpoint reads):
    `parse(data)` returns one `TwilioEvent` or a `Malformed` outcome. It never raises for peer input:
    a bad frame is data the endpoint counts and drops, and the call goes on (bridge-rules.md,
    "Failures"; style-exemplars.md §6(d): one malformed message must never end a receive loop).

Direction server → Twilio (what our endpoint writes):
    `encode(command, stream_sid)` for `PlayAudio`, `SendMark` and `ClearPlayback`.

The mirror images (`twilio_*` encoders and `parse_outbound`) are what Twilio itself would send and
read; the fake caller in tests/fakes and the tests use them so both directions share one definition.

Message shapes: protocols.md §1.2 (Twilio sends) and §1.3 (server sends), from Twilio's
"Media Streams - WebSocket Messages" docs page.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

from gateway.commands import ClearPlayback, PlayAudio, SendMark
from gateway.events import CallerAudio, CallerDtmf, CallerHungUp, CallStarted, MarkPlayed

__all__ = [
    "DTMF_DIGITS",
    "MAX_MESSAGE_BYTES",
    "Connected",
    "Malformed",
    "MalformedReason",
    "OutboundClear",
    "OutboundMark",
    "OutboundMedia",
    "OutboundMessage",
    "TwilioEvent",
    "encode",
    "parse",
    "parse_outbound",
    "twilio_connected",
    "twilio_dtmf",
    "twilio_mark",
    "twilio_media",
    "twilio_start",
    "twilio_stop",
]

MAX_MESSAGE_BYTES: Final = 64 * 1024
"""Largest text frame we parse, in UTF-8 bytes. A 20 ms inbound frame is about 400 bytes of JSON and
a `start` with a few custom parameters well under 2 KiB (protocols.md §1.2, §1.4), so 64 KiB leaves a
wide margin while keeping a hostile frame from costing a large `json.loads`."""

DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
"""Keys Twilio reports in a `dtmf` message (the 16 DTMF tones; `gateway.events.CallerDtmf`)."""

_COMPACT: Final = (",", ":")

MalformedReason = Literal[
    "oversized",  # more than MAX_MESSAGE_BYTES; checked before any JSON parsing
    "invalid_json",  # not UTF-8, or not JSON
    "not_an_object",  # JSON, but not an object
    "unknown_event",  # `event` names nothing we handle (or media on a track that is not the caller's)
    "missing_field",  # a required field is absent or of the wrong type/value
    "bad_payload",  # media payload that is not base64, or decodes to nothing
]


@dataclass(frozen=True, slots=True)
class Connected:
    """Twilio's first message on a stream (`connected`); it carries no call identity yet."""

    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """A frame we could not use. `detail` is for our logs and counters only: never echo it to a peer."""

    reason: MalformedReason
    detail: str


TwilioEvent = Connected | CallStarted | CallerAudio | CallerDtmf | MarkPlayed | CallerHungUp


@dataclass(frozen=True, slots=True)
class OutboundMedia:
    """Server → Twilio `media`: μ-law 8 kHz audio to queue for the caller (payload base64-decoded)."""

    stream_sid: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboundMark:
    """Server → Twilio `mark`: echo `name` once the audio queued before it has played."""

    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class OutboundClear:
    """Server → Twilio `clear`: drop queued audio and echo every outstanding mark."""

    stream_sid: str


OutboundMessage = OutboundMedia | OutboundMark | OutboundClear


class _Bad(Exception):
    """Internal: a field check failed. Never escapes this module (parse/parse_outbound catch it)."""

    def __init__(self, reason: MalformedReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: MalformedReason = reason
        self.detail = detail


# --------------------------------------------------------------------------- Twilio → server


def parse(data: str | bytes) -> TwilioEvent | Malformed:
    """Turn one Twilio text frame into a typed event, or say why it is unusable. Never raises."""
    message = _load(data)
    if isinstance(message, Malformed):
        return message
    try:
        return _parse_inbound(message)
    except _Bad as bad:
        return Malformed(bad.reason, bad.detail)


def _parse_inbound(message: dict[str, Any]) -> TwilioEvent:
    event = _str(message, "event")
    if event == "connected":
        return Connected(protocol=_str(message, "protocol"), version=_str(message, "version"))
    if event == "start":
        return _parse_start(message)
    if event == "media":
        return _parse_media(message)
    if event == "dtmf":
        body = _obj(message, "dtmf")
        digit = _str(body, "digit", where="dtmf.")
        if digit not in DTMF_DIGITS:
            raise _Bad("missing_field", f"dtmf.digit: {_clip(digit)!r} is not a DTMF key")
        return CallerDtmf(digit=digit)
    if event == "mark":
        return MarkPlayed(name=_str(_obj(message, "mark"), "name", where="mark."))
    if event == "stop":
        # Nothing in `stop` is needed to act on it, so a stop with odd fields still ends the call:
        # refusing it would leave a dead call up.
        return CallerHungUp(reason="caller_hangup")
    raise _Bad("unknown_event", f"event {_clip(event)!r}")


def _parse_start(message: dict[str, Any]) -> CallStarted:
    start = _obj(message, "start")
    # `streamSid` sits both inside `start` and at the top level (protocols.md §1.2); prefer `start`'s.
    stream_sid = start.get("streamSid", message.get("streamSid"))
    if not isinstance(stream_sid, str) or not stream_sid:
        raise _Bad("missing_field", "start.streamSid")
    call_sid = _str(start, "callSid", where="start.")
    if not call_sid:
        raise _Bad("missing_field", "start.callSid: empty")
    account_sid = _opt_str(start, "accountSid", "", where="start.")

    tracks_raw = start.get("tracks", ["inbound"])
    if not isinstance(tracks_raw, list) or not all(isinstance(t, str) for t in tracks_raw):
        raise _Bad("missing_field", "start.tracks: expected a list of strings")

    media_format = start.get("mediaFormat", {})
    if not isinstance(media_format, dict):
        raise _Bad("missing_field", "start.mediaFormat: expected an object")
    encoding = _opt_str(media_format, "encoding", "audio/x-mulaw", where="start.mediaFormat.")
    sample_rate = _int(media_format, "sampleRate", where="start.mediaFormat.", default=8000)
    channels = _int(media_format, "channels", where="start.mediaFormat.", default=1)

    custom = start.get("customParameters", {})
    if not isinstance(custom, dict) or not all(isinstance(v, str) for v in custom.values()):
        # <Parameter> values are always strings (protocols.md §1.1); anything else is not from Twilio.
        raise _Bad("missing_field", "start.customParameters: expected an object of strings")

    return CallStarted(
        carrier="twilio",
        call_sid=call_sid,
        stream_sid=stream_sid,
        account_sid=account_sid,
        # Read-only view, so a frozen event cannot be changed through its parameters either.
        parameters=MappingProxyType(dict(custom)),
        tracks=tuple(tracks_raw),
        encoding=encoding,
        sample_rate=sample_rate if sample_rate is not None else 8000,
        channels=channels if channels is not None else 1,
    )


def _parse_media(message: dict[str, Any]) -> CallerAudio:
    media = _obj(message, "media")
    # <Connect><Stream> only allows track="inbound_track" (protocols.md §1.1), and Twilio labels those
    # frames "inbound". A missing label is read as inbound; any other track is not the caller.
    track = _opt_str(media, "track", "inbound", where="media.")
    if track not in ("inbound", "inbound_track"):
        raise _Bad("unknown_event", f"media on track {_clip(track)!r} is not caller audio")
    if "payload" not in media:
        raise _Bad("missing_field", "media.payload")
    payload = _b64(media["payload"], "media.payload")
    return CallerAudio(
        payload=payload,
        timestamp_ms=_int(media, "timestamp", where="media."),
        chunk=_int(media, "chunk", where="media."),
    )


# --------------------------------------------------------------------------- server → Twilio


def encode(command: PlayAudio | SendMark | ClearPlayback, stream_sid: str) -> str:
    """Serialize a carrier command as the JSON text frame Twilio expects (protocols.md §1.3)."""
    if isinstance(command, PlayAudio):
        body: dict[str, object] = {
            "event": "media",
            "streamSid": stream_sid,
            "media": {"payload": base64.b64encode(command.payload).decode("ascii")},
        }
    elif isinstance(command, SendMark):
        body = {"event": "mark", "streamSid": stream_sid, "mark": {"name": command.name}}
    elif isinstance(command, ClearPlayback):
        body = {"event": "clear", "streamSid": stream_sid}
    else:  # pragma: no cover - guarded by the type; HangUp goes through REST control, not the socket
        raise TypeError(f"not a Media Streams command: {type(command).__name__}")
    return json.dumps(body, separators=_COMPACT)


def parse_outbound(data: str | bytes) -> OutboundMessage | Malformed:
    """Parse what a server sent to Twilio (the fake caller's side). Never raises."""
    message = _load(data)
    if isinstance(message, Malformed):
        return message
    try:
        event = _str(message, "event")
        if event not in ("media", "mark", "clear"):
            raise _Bad("unknown_event", f"event {_clip(event)!r}")
        stream_sid = _str(message, "streamSid")
        if event == "media":
            media = _obj(message, "media")
            if "payload" not in media:
                raise _Bad("missing_field", "media.payload")
            return OutboundMedia(stream_sid=stream_sid, payload=_b64(media["payload"], "media.payload"))
        if event == "mark":
            name = _str(_obj(message, "mark"), "name", where="mark.")
            return OutboundMark(stream_sid=stream_sid, name=name)
        return OutboundClear(stream_sid=stream_sid)
    except _Bad as bad:
        return Malformed(bad.reason, bad.detail)


# --------------------------------------------------------------------------- Twilio-side encoders
# Exactly the shapes of protocols.md §1.2, key order included, with sequenceNumber, chunk and
# timestamp as JSON strings as Twilio sends them.


def twilio_connected() -> str:
    """Twilio's first message: no sequenceNumber, no streamSid."""
    return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}, separators=_COMPACT)


def twilio_start(
    stream_sid: str, call_sid: str, account_sid: str, params: Mapping[str, str], seq: int = 1
) -> str:
    """`start` (sequenceNumber "1" on a real stream), with the TwiML <Parameter>s as customParameters."""
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": str(seq),
            "start": {
                "accountSid": account_sid,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": dict(params),
            },
            "streamSid": stream_sid,
        },
        separators=_COMPACT,
    )


def twilio_media(stream_sid: str, payload: bytes, seq: int, chunk: int, timestamp_ms: int) -> str:
    """Inbound `media`: caller audio, μ-law 8 kHz (20 ms = 160 bytes on a real stream, §1.4)."""
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(seq),
            "media": {
                "track": "inbound",
                "chunk": str(chunk),
                "timestamp": str(timestamp_ms),
                "payload": base64.b64encode(payload).decode("ascii"),
            },
            "streamSid": stream_sid,
        },
        separators=_COMPACT,
    )


def twilio_dtmf(stream_sid: str, digit: str, seq: int) -> str:
    """`dtmf` (bidirectional streams only); note the track is spelled `inbound_track` here."""
    return json.dumps(
        {
            "event": "dtmf",
            "streamSid": stream_sid,
            "sequenceNumber": str(seq),
            "dtmf": {"track": "inbound_track", "digit": digit},
        },
        separators=_COMPACT,
    )


def twilio_mark(stream_sid: str, name: str, seq: int) -> str:
    """A mark echoed back once the audio before it has played (or was cleared)."""
    return json.dumps(
        {"event": "mark", "sequenceNumber": str(seq), "streamSid": stream_sid, "mark": {"name": name}},
        separators=_COMPACT,
    )


def twilio_stop(stream_sid: str, call_sid: str, account_sid: str, seq: int) -> str:
    """`stop`: the stream ended (caller hung up, call redirected or completed)."""
    return json.dumps(
        {
            "event": "stop",
            "sequenceNumber": str(seq),
            "stop": {"accountSid": account_sid, "callSid": call_sid},
            "streamSid": stream_sid,
        },
        separators=_COMPACT,
    )


# --------------------------------------------------------------------------- helpers


def _load(data: str | bytes) -> dict[str, Any] | Malformed:
    """Size check, then UTF-8 and JSON, then "is an object". The size check comes first on purpose."""
    if isinstance(data, str):
        # len() counts code points, which never exceed UTF-8 bytes; only non-ASCII text needs encoding
        # to learn its byte length ("surrogatepass" so a lone surrogate cannot raise here).
        if len(data) > MAX_MESSAGE_BYTES or (
            not data.isascii() and len(data.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES
        ):
            return Malformed("oversized", f"text frame over {MAX_MESSAGE_BYTES} bytes")
        text = data
    elif isinstance(data, bytes | bytearray | memoryview):
        if len(data) > MAX_MESSAGE_BYTES:
            return Malformed("oversized", f"{len(data)} bytes > {MAX_MESSAGE_BYTES}")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            return Malformed("invalid_json", f"not UTF-8: {exc.reason} at {exc.start}")
    else:
        return Malformed("invalid_json", f"frame of type {type(data).__name__}")
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, lone surrogates and over-long integer literals;
        # RecursionError a deeply nested array that still fits in the size limit.
        return Malformed("invalid_json", f"{type(exc).__name__}: {_clip(str(exc))}")
    if not isinstance(message, dict):
        return Malformed("not_an_object", f"JSON {type(message).__name__}")
    return message


def _obj(message: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = message.get(key)
    if not isinstance(value, dict):
        raise _Bad("missing_field", f"{key}: expected an object")
    return value


def _str(message: Mapping[str, Any], key: str, *, where: str = "") -> str:
    value = message.get(key)
    if not isinstance(value, str):
        raise _Bad("missing_field", f"{where}{key}: expected a string")
    return value


def _opt_str(message: Mapping[str, Any], key: str, default: str, *, where: str = "") -> str:
    if key not in message:
        return default
    return _str(message, key, where=where)


def _int(message: Mapping[str, Any], key: str, *, where: str = "", default: int | None = None) -> int | None:
    """A non-negative integer sent as a JSON string ("4", Twilio's form, §1.2) or a JSON number."""
    if key not in message:
        return default
    value = message[key]
    if isinstance(value, str) and value.isascii() and value.isdecimal() and len(value) <= 18:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18:
        return value
    raise _Bad("missing_field", f"{where}{key}: expected a non-negative integer")


def _b64(value: object, where: str) -> bytes:
    """Strict standard base64 (Twilio's alphabet, §1.4): whitespace or junk is refused, not skipped."""
    if not isinstance(value, str) or not value.isascii():
        raise _Bad("bad_payload", f"{where}: not a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _Bad("bad_payload", f"{where}: {exc}") from None
    if not raw:
        raise _Bad("bad_payload", f"{where}: empty")
    return raw


def _clip(text: str, limit: int = 60) -> str:
    """Keep peer-chosen strings short in log details."""
    return text if len(text) <= limit else text[:limit] + "…"
