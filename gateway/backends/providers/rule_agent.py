"""A small rule-based `Agent` for the offline backend: no model, no network, no key.

It greets, tells the time, repeats itself, takes a keypad choice, transfers to a person (the
`transfer_call` tool) and says goodbye (the `end_call` tool). Rules key on a few robust words
of the caller's turn, not on whole sentences: the offline recogniser is constrained to the
phrases in `PHRASES` (offline_stt.py builds its grammar from them), but a caller may say only
part of one. Numbers are never expected by voice: keypad digits arrive as the DTMF user text
the call owner writes (`CallOptions.dtmf_template`).

It streams its answer word by word, like a model would, so the pipeline's sentence splitting
and streaming TTS run exactly as they do with a real agent.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Final

from gateway.backends.base import ToolSpec
from gateway.backends.providers.base import AgentOutput, HistoryItem, Message, TextDelta, ToolCall, ToolResult
from gateway.tools import END_CALL, TRANSFER_CALL

__all__ = [
    "PHRASES",
    "TRANSFER_TOOL",
    "RuleAgent",
    "hour_words",
    "number_words",
    "time_grammar",
    "time_words",
]

TRANSFER_TOOL: Final = TRANSFER_CALL
END_CALL_TOOL: Final = END_CALL

# What callers are expected to say, by intent. The recogniser's grammar is built from these,
# and the demo's simulated caller speaks some of them.
PHRASES: Final[dict[str, tuple[str, ...]]] = {
    "time": ("what time is it", "what is the time", "tell me the time", "do you have the time"),
    "repeat": ("can you repeat that", "please repeat", "say that again", "repeat"),
    "transfer": (
        "transfer me to a person",
        "i want to speak to a human",
        "can i talk to someone",
        "operator",
        "let me speak to an agent",
    ),
    "goodbye": ("goodbye", "bye", "thank you bye", "that is all goodbye", "hang up"),
    "hello": ("hello", "hi there", "hello is anyone there"),
    "menu": ("what are my options", "help", "menu"),
    "yes_no": ("yes", "no", "thank you"),
}

# Robust words per intent, checked in this order (goodbye before transfer: "bye operator").
_KEYWORDS: Final[tuple[tuple[str, frozenset[str]], ...]] = (
    ("goodbye", frozenset({"goodbye", "bye", "hang"})),
    (
        "transfer",
        frozenset({"transfer", "person", "human", "someone", "operator", "agent", "representative"}),
    ),
    ("time", frozenset({"time", "clock"})),
    ("repeat", frozenset({"repeat", "again", "pardon"})),
    ("menu", frozenset({"help", "menu", "options"})),
    ("hello", frozenset({"hello", "hi", "hey"})),
    ("thanks", frozenset({"thank", "thanks"})),
)

OPTIONS: Final = (
    "You can ask me the time, ask me to repeat, press a key on your keypad, ask for a person, or say goodbye."
)
GREETING: Final = f"Hello, you are talking to the Switchboard offline assistant. {OPTIONS}"
KEYPAD: Final[dict[str, str]] = {
    "1": "You pressed one, for opening hours. We are open from nine to five, Monday to Friday.",
    "2": "You pressed two, for our address. We are at one Main Street, Springfield.",
}
KEYPAD_OTHER: Final = "You pressed {digit}. Press one for our opening hours, or two for our address."
_DTMF: Final = re.compile(r"pressed the key (\S+?)[\s.\]]")

_ONES: Final = (
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    *("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"),
)
_TENS: Final = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def number_words(n: int) -> str:
    """0-99 in words ("forty five")."""
    if not 0 <= n < 100:
        raise ValueError("0-99 only")
    if n < 20:
        return _ONES[n]
    return _TENS[n // 10] + (f" {_ONES[n % 10]}" if n % 10 else "")


def hour_words(hour: int) -> str:
    """The 12-hour clock hour of a 0-23 `hour`, in words."""
    return number_words(hour % 12 or 12)


def time_words(now: dt.datetime) -> str:
    """ "ten o'clock", "ten oh five", "ten thirty" — how people read a clock aloud."""
    if now.minute == 0:
        return f"{hour_words(now.hour)} o'clock"
    minute = number_words(now.minute)
    return f"{hour_words(now.hour)} {'oh ' if now.minute < 10 else ''}{minute}"


def time_grammar() -> str:
    """JSGF for the rule agent's answer to "what time is it": to check it by ear (tests, bench)."""
    hours = " | ".join(number_words(h) for h in range(1, 13))
    minutes = " | ".join(
        [
            "o'clock",
            *(f"( oh {number_words(m)} )" for m in range(1, 10)),
            *(f"( {number_words(m)} )" for m in range(10, 60)),
        ]
    )
    return (
        "#JSGF V1.0;\ngrammar clock;\n"
        f"public <answer> = the time is <hour> <minute>;\n<hour> = {hours};\n<minute> = {minutes};\n"
    )


def _transfer_target(tools: Sequence[ToolSpec]) -> str:
    """The first target the agent's `transfer_call` tool offers ('' if it has none)."""
    for spec in tools:
        if spec.name == TRANSFER_TOOL:
            target = spec.parameters.get("properties", {}).get("target", {})
            names = target.get("enum") or [] if isinstance(target, dict) else []
            return str(names[0]) if names else ""
    return ""


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


class RuleAgent:
    """`Agent` that answers by rules. One per call (it remembers what it said last)."""

    name = "rules"

    def __init__(self, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.clock = clock or (lambda: dt.datetime.now().astimezone())
        self._last_said = ""

    def reply(
        self, history: Sequence[HistoryItem], tools: Sequence[ToolSpec] = ()
    ) -> tuple[str, list[ToolCall]]:
        """The whole answer for this turn (text, tool calls)."""
        last = history[-1] if history else None
        if isinstance(last, ToolResult):
            return self._after_tool(history, last), []
        if not isinstance(last, Message) or last.role != "user":
            return GREETING, []  # asked to speak first (CreateResponse with a greeting)
        if (digit := _DTMF.search(last.text + " ")) is not None:
            key = digit.group(1)
            return KEYPAD.get(key, KEYPAD_OTHER.format(digit=key)), []
        words = _words(last.text)
        intent = next((name for name, keys in _KEYWORDS if words & keys), "")
        if intent == "goodbye":
            return "Goodbye, and thank you for calling.", [self._call(END_CALL_TOOL, {})]
        if intent == "transfer":
            args = {"target": _transfer_target(tools), "reason": f"the caller asked: {last.text}"}
            return "Sure, I am transferring you to a person now.", [self._call(TRANSFER_TOOL, args)]
        if intent == "time":
            return f"The time is {time_words(self.clock())}.", []
        if intent == "repeat":
            return (f"I said: {self._last_said}" if self._last_said else GREETING), []
        if intent == "menu":
            return OPTIONS, []
        if intent == "hello":
            return f"Hello again. {OPTIONS}", []
        if intent == "thanks":
            return "You are welcome. Is there anything else?", []
        return f"Sorry, I did not catch that. {OPTIONS}", []

    def _after_tool(self, history: Sequence[HistoryItem], result: ToolResult) -> str:
        call = next((h for h in history if isinstance(h, ToolCall) and h.call_id == result.call_id), None)
        failed = '"error"' in result.output
        if call is not None and call.name == TRANSFER_TOOL:
            if failed:
                return "Sorry, I could not transfer you right now. Is there anything else I can do?"
            return ""  # the transfer is under way: nothing to add
        return "Sorry, that did not work." if failed else ""

    @staticmethod
    def _call(name: str, args: dict[str, str]) -> ToolCall:
        return ToolCall("call_" + secrets.token_hex(8), name, json.dumps(args))

    async def respond(
        self, history: Sequence[HistoryItem], *, instructions: str, tools: Sequence[ToolSpec]
    ) -> AsyncIterator[AgentOutput]:
        text, calls = self.reply(history, tools)
        if text and not text.startswith("I said: "):
            self._last_said = text
        for i, word in enumerate(text.split(" ")):
            if word:
                yield TextDelta(word if i == 0 else " " + word)
        for call in calls:
            yield call

    async def aclose(self) -> None:
        pass
