"""media_streams.codec: every Twilio message of protocols.md §1.2/§1.3, malformed input, and a fuzz loop."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import pytest

from gateway.commands import ClearPlayback, PlayAudio, SendMark
from gateway.events import CallerAudio, CallerDtmf, CallerHungUp, CallStarted, MarkPlayed
from media_streams import codec
from media_streams.codec import (
    MAX_MESSAGE_BYTES,
    Connected,
    Malformed,
    OutboundClear,
    OutboundMark,
    OutboundMedia,
    encode,
    parse,
    parse_outbound,
)

MZ = "MZ" + "0123456789abcdef" * 2
CA = "CA" + "fedcba9876543210" * 2
AC = "AC" + "00112233445566778899aabbccddeeff"
FRAME = bytes(range(160))  # 20 ms of μ-law (protocols.md §1.4)
FRAME_B64 = base64.b64encode(FRAME).decode()

# --------------------------------------------------------------------------- §1.2, as Twilio sends it

TWILIO_MESSAGES: list[tuple[str, str, object]] = [
    (
        "connected",
        '{"event":"connected","protocol":"Call","version":"1.0.0"}',
        Connected(protocol="Call", version="1.0.0"),
    ),
    (
        "start",
        '{"event":"start","sequenceNumber":"1","start":{"accountSid":"' + AC + '","streamSid":"' + MZ + '",'
        '"callSid":"' + CA + '","tracks":["inbound"],'
        '"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},'
        '"customParameters":{"session_id":"s_123","tenant":"acme"}},"streamSid":"' + MZ + '"}',
        CallStarted(
            carrier="twilio",
            call_sid=CA,
            stream_sid=MZ,
            account_sid=AC,
            parameters={"session_id": "s_123", "tenant": "acme"},
            tracks=("inbound",),
            encoding="audio/x-mulaw",
            sample_rate=8000,
            channels=1,
        ),
    ),
    (
        "media",
        '{"event":"media","sequenceNumber":"4","media":{"track":"inbound","chunk":"2","timestamp":"5",'
        '"payload":"' + FRAME_B64 + '"},"streamSid":"' + MZ + '"}',
        CallerAudio(payload=FRAME, timestamp_ms=5, chunk=2),
    ),
    (
        "dtmf",
        '{"event":"dtmf","streamSid":"' + MZ + '","sequenceNumber":"5",'
        '"dtmf":{"track":"inbound_track","digit":"1"}}',
        CallerDtmf(digit="1"),
    ),
    (
        "mark",
        '{"event":"mark","sequenceNumber":"4","streamSid":"' + MZ + '","mark":{"name":"my label"}}',
        MarkPlayed(name="my label"),
    ),
    (
        "stop",
        '{"event":"stop","sequenceNumber":"5","stop":{"accountSid":"' + AC + '","callSid":"' + CA + '"},'
        '"streamSid":"' + MZ + '"}',
        CallerHungUp(reason="caller_hangup"),
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [m[1:] for m in TWILIO_MESSAGES], ids=[m[0] for m in TWILIO_MESSAGES]
)
def test_parses_every_twilio_message(text: str, expected: object) -> None:
    assert parse(text) == expected
    assert parse(text.encode()) == expected  # bytes frames too


def test_start_parameters_are_read_only() -> None:
    event = parse(TWILIO_MESSAGES[1][1])
    assert isinstance(event, CallStarted)
    with pytest.raises(TypeError):
        event.parameters["tenant"] = "evil"  # type: ignore[index]


def test_start_defaults_when_optional_parts_are_absent() -> None:
    text = json.dumps({"event": "start", "start": {"callSid": CA}, "streamSid": MZ})
    assert parse(text) == CallStarted(carrier="twilio", call_sid=CA, stream_sid=MZ)


@pytest.mark.parametrize(
    ("chunk", "timestamp", "expected_chunk", "expected_ts"),
    [
        ("2", "5", 2, 5),  # Twilio's form: JSON strings (protocols.md §0)
        (2, 5, 2, 5),  # plain numbers are accepted too
        ("1", "0", 1, 0),
        ("1234567", "86400000", 1234567, 86400000),
    ],
)
def test_media_numbers_as_strings_or_ints(
    chunk: object, timestamp: object, expected_chunk: int, expected_ts: int
) -> None:
    text = json.dumps(
        {
            "event": "media",
            "sequenceNumber": "9",
            "media": {"track": "inbound", "chunk": chunk, "timestamp": timestamp, "payload": FRAME_B64},
            "streamSid": MZ,
        }
    )
    assert parse(text) == CallerAudio(payload=FRAME, timestamp_ms=expected_ts, chunk=expected_chunk)


def test_media_without_track_chunk_or_timestamp_is_still_caller_audio() -> None:
    text = json.dumps({"event": "media", "media": {"payload": FRAME_B64}, "streamSid": MZ})
    assert parse(text) == CallerAudio(payload=FRAME, timestamp_ms=None, chunk=None)


@pytest.mark.parametrize("digit", sorted(codec.DTMF_DIGITS))
def test_every_dtmf_key(digit: str) -> None:
    assert parse(codec.twilio_dtmf(MZ, digit, 3)) == CallerDtmf(digit=digit)


def test_stop_needs_no_body() -> None:
    # A hang-up must never be refused over its details.
    assert parse('{"event":"stop"}') == CallerHungUp()
    assert parse('{"event":"stop","stop":42}') == CallerHungUp()


# --------------------------------------------------------------------------- malformed input


def _media(**media: Any) -> str:
    return json.dumps({"event": "media", "sequenceNumber": "2", "media": media, "streamSid": MZ})


MALFORMED: list[tuple[str, str | bytes, str]] = [
    ("oversized_ascii", '{"event":"media","pad":"' + "x" * MAX_MESSAGE_BYTES + '"}', "oversized"),
    # 30k two-byte characters: fewer code points than the limit, more UTF-8 bytes.
    ("oversized_utf8_text", '{"event":"mark","mark":{"name":"' + "é" * 33000 + '"}}', "oversized"),
    ("oversized_bytes", b" " * (MAX_MESSAGE_BYTES + 1), "oversized"),
    ("oversized_even_if_not_json", "\x00" * (MAX_MESSAGE_BYTES + 1), "oversized"),
    ("empty", "", "invalid_json"),
    ("not_json", "hello", "invalid_json"),
    ("truncated", '{"event":"media","media":{"payload":"', "invalid_json"),
    ("not_utf8", b'{"event":"\xff"}', "invalid_json"),
    (
        "lone_surrogate",
        '{"event":"mark","mark":{"name":"\ud800"}}'.encode("utf-8", "surrogatepass"),
        "invalid_json",
    ),
    ("deep_nesting", "[" * 60000, "invalid_json"),
    ("huge_int_literal", '{"event":"media","n":' + "9" * 5000 + "}", "invalid_json"),
    ("array", '[{"event":"stop"}]', "not_an_object"),
    ("string", '"stop"', "not_an_object"),
    ("null", "null", "not_an_object"),
    ("number", "42", "not_an_object"),
    ("unknown_event", '{"event":"clear","streamSid":"' + MZ + '"}', "unknown_event"),
    ("unknown_event_case", '{"event":"Media"}', "unknown_event"),
    (
        "outbound_track",
        _media(track="outbound", chunk="1", timestamp="0", payload=FRAME_B64),
        "unknown_event",
    ),
    ("no_event", '{"streamSid":"' + MZ + '"}', "missing_field"),
    ("event_not_string", '{"event":7}', "missing_field"),
    ("connected_no_version", '{"event":"connected","protocol":"Call"}', "missing_field"),
    ("start_no_body", '{"event":"start","streamSid":"' + MZ + '"}', "missing_field"),
    ("start_no_call_sid", json.dumps({"event": "start", "start": {"streamSid": MZ}}), "missing_field"),
    (
        "start_empty_call_sid",
        json.dumps({"event": "start", "start": {"streamSid": MZ, "callSid": ""}}),
        "missing_field",
    ),
    ("start_no_stream_sid", json.dumps({"event": "start", "start": {"callSid": CA}}), "missing_field"),
    (
        "start_param_not_string",
        json.dumps(
            {"event": "start", "start": {"streamSid": MZ, "callSid": CA, "customParameters": {"n": 1}}}
        ),
        "missing_field",
    ),
    (
        "start_params_not_object",
        json.dumps({"event": "start", "start": {"streamSid": MZ, "callSid": CA, "customParameters": ["a"]}}),
        "missing_field",
    ),
    (
        "start_tracks_not_list",
        json.dumps({"event": "start", "start": {"streamSid": MZ, "callSid": CA, "tracks": "inbound"}}),
        "missing_field",
    ),
    (
        "start_sample_rate_text",
        json.dumps(
            {"event": "start", "start": {"streamSid": MZ, "callSid": CA, "mediaFormat": {"sampleRate": "x"}}}
        ),
        "missing_field",
    ),
    ("media_no_body", '{"event":"media","streamSid":"' + MZ + '"}', "missing_field"),
    ("media_body_not_object", '{"event":"media","media":"AAAA"}', "missing_field"),
    ("media_no_payload", _media(track="inbound", chunk="1", timestamp="0"), "missing_field"),
    ("media_chunk_not_number", _media(chunk="two", timestamp="0", payload=FRAME_B64), "missing_field"),
    ("media_chunk_negative", _media(chunk=-1, timestamp="0", payload=FRAME_B64), "missing_field"),
    ("media_chunk_float", _media(chunk=1.5, timestamp="0", payload=FRAME_B64), "missing_field"),
    ("media_chunk_bool", _media(chunk=True, timestamp="0", payload=FRAME_B64), "missing_field"),
    ("media_timestamp_signed", _media(chunk="1", timestamp="-5", payload=FRAME_B64), "missing_field"),
    ("media_timestamp_unicode_digits", _media(chunk="1", timestamp="٣", payload=FRAME_B64), "missing_field"),
    ("dtmf_no_digit", '{"event":"dtmf","dtmf":{"track":"inbound_track"}}', "missing_field"),
    ("dtmf_bad_digit", '{"event":"dtmf","dtmf":{"digit":"12"}}', "missing_field"),
    ("mark_no_body", '{"event":"mark","streamSid":"' + MZ + '"}', "missing_field"),
    ("mark_name_not_string", '{"event":"mark","mark":{"name":3}}', "missing_field"),
    ("payload_empty", _media(chunk="1", timestamp="0", payload=""), "bad_payload"),
    ("payload_not_base64", _media(chunk="1", timestamp="0", payload="not base64!"), "bad_payload"),
    ("payload_bad_padding", _media(chunk="1", timestamp="0", payload="AAA"), "bad_payload"),
    ("payload_whitespace", _media(chunk="1", timestamp="0", payload="AAAA\nAAAA"), "bad_payload"),
    ("payload_urlsafe_alphabet", _media(chunk="1", timestamp="0", payload="__--"), "bad_payload"),
    ("payload_not_string", _media(chunk="1", timestamp="0", payload=123), "bad_payload"),
    ("payload_non_ascii", _media(chunk="1", timestamp="0", payload="AAé="), "bad_payload"),
]


@pytest.mark.parametrize(("data", "reason"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_input_gives_reason(data: str | bytes, reason: str) -> None:
    result = parse(data)
    assert isinstance(result, Malformed), result
    assert result.reason == reason
    assert result.detail
    assert len(result.detail) < 300  # details go to logs; peer-chosen strings are clipped


def test_size_limit_is_inclusive() -> None:
    prefix, suffix = '{"event":"mark","mark":{"name":""},"pad":"', '"}'
    exact = prefix + "x" * (MAX_MESSAGE_BYTES - len(prefix) - len(suffix)) + suffix
    assert len(exact.encode()) == MAX_MESSAGE_BYTES
    assert parse(exact) == MarkPlayed(name="")
    assert parse(exact.encode()) == MarkPlayed(name="")
    assert isinstance(parse(exact[:-1] + " }"), Malformed)


# --------------------------------------------------------------------------- server → Twilio (§1.3)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            PlayAudio(payload=b"\xff\x7f\x00"),
            '{"event":"media","streamSid":"' + MZ + '","media":{"payload":"/38A"}}',
        ),
        (
            SendMark(name="resp_1:chunk_17"),
            '{"event":"mark","streamSid":"' + MZ + '","mark":{"name":"resp_1:chunk_17"}}',
        ),
        (ClearPlayback(), '{"event":"clear","streamSid":"' + MZ + '"}'),
    ],
    ids=["media", "mark", "clear"],
)
def test_encode_exact_json(command: PlayAudio | SendMark | ClearPlayback, expected: str) -> None:
    assert encode(command, MZ) == expected


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (PlayAudio(payload=FRAME), OutboundMedia(stream_sid=MZ, payload=FRAME)),
        (SendMark(name='ünïcode "quoted"'), OutboundMark(stream_sid=MZ, name='ünïcode "quoted"')),
        (ClearPlayback(), OutboundClear(stream_sid=MZ)),
    ],
    ids=["media", "mark", "clear"],
)
def test_encode_then_parse_outbound(command: PlayAudio | SendMark | ClearPlayback, expected: object) -> None:
    assert parse_outbound(encode(command, MZ)) == expected


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ('{"event":"media","media":{"payload":"AAAA"}}', "missing_field"),  # no streamSid
        ('{"event":"media","streamSid":"MZ1","media":{}}', "missing_field"),
        ('{"event":"media","streamSid":"MZ1","media":{"payload":""}}', "bad_payload"),
        ('{"event":"media","streamSid":"MZ1","media":{"payload":"%%%%"}}', "bad_payload"),
        ('{"event":"mark","streamSid":"MZ1","mark":{}}', "missing_field"),
        ('{"event":"stop","streamSid":"MZ1"}', "unknown_event"),
        ('{"event":"clear"}', "missing_field"),
        ("[]", "not_an_object"),
        ("{", "invalid_json"),
        ("x" * (MAX_MESSAGE_BYTES + 1), "oversized"),
    ],
)
def test_parse_outbound_malformed(data: str, reason: str) -> None:
    result = parse_outbound(data)
    assert isinstance(result, Malformed)
    assert result.reason == reason


# --------------------------------------------------------------------------- Twilio-side encoders


def test_twilio_encoders_match_protocols_md_shapes() -> None:
    assert json.loads(codec.twilio_connected()) == {
        "event": "connected",
        "protocol": "Call",
        "version": "1.0.0",
    }
    start = json.loads(codec.twilio_start(MZ, CA, AC, {"tenant": "acme"}, seq=1))
    assert start == {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": AC,
            "streamSid": MZ,
            "callSid": CA,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"tenant": "acme"},
        },
        "streamSid": MZ,
    }
    assert json.loads(codec.twilio_media(MZ, FRAME, seq=4, chunk=2, timestamp_ms=5)) == {
        "event": "media",
        "sequenceNumber": "4",
        "media": {"track": "inbound", "chunk": "2", "timestamp": "5", "payload": FRAME_B64},
        "streamSid": MZ,
    }
    assert len(json.loads(codec.twilio_media(MZ, FRAME, 4, 2, 5))["media"]["payload"]) == 216  # §1.4
    assert json.loads(codec.twilio_dtmf(MZ, "1", seq=5)) == {
        "event": "dtmf",
        "streamSid": MZ,
        "sequenceNumber": "5",
        "dtmf": {"track": "inbound_track", "digit": "1"},
    }
    assert json.loads(codec.twilio_mark(MZ, "my label", seq=4)) == {
        "event": "mark",
        "sequenceNumber": "4",
        "streamSid": MZ,
        "mark": {"name": "my label"},
    }
    assert json.loads(codec.twilio_stop(MZ, CA, AC, seq=5)) == {
        "event": "stop",
        "sequenceNumber": "5",
        "stop": {"accountSid": AC, "callSid": CA},
        "streamSid": MZ,
    }


def test_twilio_encoders_round_trip_through_parse() -> None:
    params = {"session_id": "s_123", "tenant": "acme"}
    assert parse(codec.twilio_connected()) == Connected("Call", "1.0.0")
    assert parse(codec.twilio_start(MZ, CA, AC, params, seq=1)) == CallStarted(
        carrier="twilio", call_sid=CA, stream_sid=MZ, account_sid=AC, parameters=params
    )
    assert parse(codec.twilio_media(MZ, FRAME, seq=2, chunk=1, timestamp_ms=0)) == CallerAudio(FRAME, 0, 1)
    assert parse(codec.twilio_dtmf(MZ, "#", seq=3)) == CallerDtmf("#")
    assert parse(codec.twilio_mark(MZ, "resp_1:chunk_17", seq=4)) == MarkPlayed("resp_1:chunk_17")
    assert parse(codec.twilio_stop(MZ, CA, AC, seq=5)) == CallerHungUp("caller_hangup")


def test_twilio_numbers_are_json_strings() -> None:
    # protocols.md §0: sequenceNumber, chunk and timestamp are strings on the wire.
    media = json.loads(codec.twilio_media(MZ, FRAME, seq=12, chunk=11, timestamp_ms=200))
    assert (media["sequenceNumber"], media["media"]["chunk"], media["media"]["timestamp"]) == (
        "12",
        "11",
        "200",
    )


# --------------------------------------------------------------------------- fuzz


def _valid_messages() -> list[str]:
    return [m[1] for m in TWILIO_MESSAGES] + [
        encode(PlayAudio(FRAME), MZ),
        encode(SendMark("m"), MZ),
        encode(ClearPlayback(), MZ),
    ]


_JUNK_VALUES: list[object] = [
    None,
    True,
    0,
    -1,
    1.5,
    "",
    "x",
    "٣",
    [],
    {},
    [1, "a"],
    {"a": {}},
    "A" * 300,
    10**30,
]


def _mutate_json(value: Any, rng: random.Random) -> Any:
    """Replace, drop or add one field somewhere in a parsed message."""
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(sorted(value))
        copy = dict(value)
        roll = rng.random()
        if roll < 0.3:
            del copy[key]
        elif roll < 0.6:
            copy[key] = rng.choice(_JUNK_VALUES)
        elif roll < 0.7:
            copy["extra" + str(rng.randrange(10))] = rng.choice(_JUNK_VALUES)
        else:
            copy[key] = _mutate_json(copy[key], rng)
        return copy
    if isinstance(value, list) and value:
        copy_list = list(value)
        copy_list[rng.randrange(len(copy_list))] = rng.choice(_JUNK_VALUES)
        return copy_list
    return rng.choice(_JUNK_VALUES)


def _mutate_text(text: str, rng: random.Random) -> str | bytes:
    roll = rng.random()
    if roll < 0.25:
        cut = rng.randrange(len(text) + 1)
        return text[:cut]
    if roll < 0.5:
        pos = rng.randrange(len(text))
        return text[:pos] + chr(rng.randrange(0x20, 0x2FFF)) + text[pos + 1 :]
    if roll < 0.6:
        raw = bytearray(text.encode())
        raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw)
    if roll < 0.7:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
    return json.dumps(_mutate_json(json.loads(text), rng))


def test_fuzz_never_raises() -> None:
    rng = random.Random(20261125)
    seeds = _valid_messages()
    outcomes: set[str] = set()
    for _ in range(4000):
        data = _mutate_text(rng.choice(seeds), rng)
        for result in (parse(data), parse_outbound(data)):
            assert isinstance(
                result,
                Connected
                | CallStarted
                | CallerAudio
                | CallerDtmf
                | MarkPlayed
                | CallerHungUp
                | OutboundMedia
                | OutboundMark
                | OutboundClear
                | Malformed,
            ), result
            outcomes.add(result.reason if isinstance(result, Malformed) else type(result).__name__)
    # The fuzz reached every refusal path and still produced valid events.
    assert {"invalid_json", "not_an_object", "unknown_event", "missing_field", "bad_payload"} <= outcomes
    assert {"CallerAudio", "CallStarted", "MarkPlayed"} <= outcomes
