"""The offline backend's rule agent: intents by robust words, keypad choices, tools, the clock."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from gateway.backends.base import ToolSpec
from gateway.backends.providers.base import Message, TextDelta, ToolCall, ToolResult
from gateway.backends.providers.rule_agent import (
    GREETING,
    KEYPAD,
    PHRASES,
    RuleAgent,
    hour_words,
    number_words,
    time_words,
)
from gateway.tools import transfer_spec

NOON = dt.datetime(2026, 11, 25, 12, 0)


def agent() -> RuleAgent:
    return RuleAgent(clock=lambda: dt.datetime(2026, 11, 25, 14, 5))


def user(text: str) -> list[Message]:
    return [Message("assistant", GREETING), Message("user", text)]


def test_it_greets_when_asked_to_speak_first() -> None:
    assert agent().reply([]) == (GREETING, [])


@pytest.mark.parametrize("phrase", PHRASES["time"])
def test_every_time_phrase_gets_the_time(phrase: str) -> None:
    assert agent().reply(user(phrase)) == ("The time is two oh five.", [])


@pytest.mark.parametrize(
    ("now", "words"),
    [
        (dt.datetime(2026, 1, 1, 0, 0), "twelve o'clock"),
        (dt.datetime(2026, 1, 1, 10, 30), "ten thirty"),
        (dt.datetime(2026, 1, 1, 23, 9), "eleven oh nine"),
        (dt.datetime(2026, 1, 1, 13, 45), "one forty five"),
    ],
)
def test_time_words(now: dt.datetime, words: str) -> None:
    assert time_words(now) == words


def test_number_words() -> None:
    assert [number_words(n) for n in (0, 13, 20, 42, 99)] == [
        "zero",
        "thirteen",
        "twenty",
        "forty two",
        "ninety nine",
    ]
    assert hour_words(0) == hour_words(12) == "twelve"
    with pytest.raises(ValueError, match="0-99"):
        number_words(100)


@pytest.mark.parametrize("phrase", [*PHRASES["transfer"], "transfer me to a"])
def test_transfer_phrases_call_the_transfer_tool_with_the_first_target(phrase: str) -> None:
    text, calls = agent().reply(user(phrase), [transfer_spec(["sales", "front_desk"])])
    assert "transferring you" in text
    (call,) = calls
    assert call.name == "transfer_call"
    args = json.loads(call.arguments)
    assert args["target"] == "front_desk" and phrase in args["reason"]


def test_transfer_without_a_target_still_asks_the_call_owner() -> None:
    _, (call,) = agent().reply(user("operator"))
    assert json.loads(call.arguments)["target"] == ""


@pytest.mark.parametrize("phrase", PHRASES["goodbye"])
def test_goodbye_hangs_up(phrase: str) -> None:
    text, (call,) = agent().reply(user(phrase))
    assert text.startswith("Goodbye") and call.name == "end_call"


def test_keypad_choice_from_the_dtmf_user_text() -> None:
    dtmf = "[The caller pressed the key 1 on their phone keypad.]"
    assert agent().reply(user(dtmf)) == (KEYPAD["1"], [])
    text, _ = agent().reply(user("[The caller pressed the key # on their phone keypad.]"))
    assert text.startswith("You pressed #.")


async def test_repeat_says_the_last_answer_again_and_it_streams_words() -> None:
    a = agent()
    first = [o async for o in a.respond(user("what time is it"), instructions="", tools=[])]
    assert "".join(o.text for o in first if isinstance(o, TextDelta)) == "The time is two oh five."
    assert len(first) == 6  # word by word, like a model's stream
    again = [o async for o in a.respond(user("can you repeat that"), instructions="", tools=[])]
    assert "".join(o.text for o in again if isinstance(o, TextDelta)) == "I said: The time is two oh five."


def test_after_a_failed_transfer_it_says_so_and_after_success_nothing() -> None:
    call = ToolCall("call_1", "transfer_call", "{}")
    failed = [*user("operator"), call, ToolResult("call_1", '{"error": "unknown transfer target"}')]
    assert agent().reply(failed)[0].startswith("Sorry, I could not transfer you")
    ok = [*user("operator"), call, ToolResult("call_1", '{"ok": true}')]
    assert agent().reply(ok) == ("", [])


def test_unknown_speech_gets_the_options() -> None:
    text, calls = agent().reply(user("banana"))
    assert text.startswith("Sorry, I did not catch that.") and calls == []


def test_transfer_spec_shape_is_what_the_agent_reads() -> None:
    spec: ToolSpec = transfer_spec(["desk"])
    assert spec.parameters["properties"]["target"]["enum"] == ["desk"]
