"""Tools the model may call: typed async functions turned into JSON-schema tools.

    @tool(timeout_s=5)
    async def order_status(order_id: str, include_items: bool = False) -> dict[str, object]:
        '''Look up an order.

        Args:
            order_id: The order number the caller reads out.
            include_items: Also list the items.
        '''

Tool functions run concurrently with the audio (the runner starts each in the call's task
group); each has a timeout, and every failure becomes a clear error result for the model, never
an exception in the call loop. Exception text is not sent to the model: it can carry internals.
A tool marked `needs_approval` waits for an operator's approve/reject (REST) before it runs.

Telephony tools (`end_call`, `transfer_call`, `send_dtmf`, `collect_digits`) and handoffs have
no function: the call owner carries them out itself, on whatever carrier the call came in on.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
import re
import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from gateway.backends.base import ToolSpec

ToolFn = Callable[..., Awaitable[Any]]

END_CALL = "end_call"
TRANSFER_CALL = "transfer_call"
SEND_DTMF = "send_dtmf"
COLLECT_DIGITS = "collect_digits"
HANDOFF_PREFIX = "handoff_to_"


@dataclass(frozen=True, slots=True)
class Tool:
    spec: ToolSpec
    fn: ToolFn | None  # None: carried out by the call owner itself (telephony actions, handoffs)
    timeout_s: float = 10.0
    needs_approval: bool = False

    @property
    def name(self) -> str:
        return self.spec.name


class ToolDefinitionError(TypeError):
    """A function cannot be described as a tool (an unsupported parameter type, say)."""


# --------------------------------------------------------------------------- schema from types


def _schema_for(annotation: Any, where: str) -> dict[str, Any]:
    if annotation is str:
        return {"type": "string"}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return {"type": "integer"}
    if annotation is float:
        return {"type": "number"}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"type": "string", "enum": [str(m.value) for m in annotation]}
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Literal:
        return {"type": "string" if all(isinstance(a, str) for a in args) else "number", "enum": list(args)}
    if origin in (list, tuple, set, frozenset) or origin is typing.Sequence:
        item = args[0] if args else str
        return {"type": "array", "items": _schema_for(item, where)}
    if origin in (dict, Mapping):
        return {"type": "object"}
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _schema_for(rest[0], where)
    raise ToolDefinitionError(f"{where}: parameter type {annotation!r} has no JSON schema mapping")


_ARG_LINE = re.compile(r"^\s{2,}(\w+)(?:\s*\([^)]*\))?:\s*(.+)$")


def _doc_parts(fn: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """First paragraph as the description; Google-style `Args:` lines as parameter descriptions."""
    doc = inspect.getdoc(fn) or ""
    description = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    params: dict[str, str] = {}
    if "Args:" in doc:
        for line in doc.split("Args:", 1)[1].splitlines():
            match = _ARG_LINE.match(line)
            if match:
                params[match.group(1)] = match.group(2).strip()
    return description, params


def tool(
    fn: ToolFn | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float = 10.0,
    needs_approval: bool = False,
) -> Any:
    """Turn a typed async function into a `Tool` (usable bare, `@tool`, or with options)."""

    def wrap(func: ToolFn) -> Tool:
        if not inspect.iscoroutinefunction(func):
            raise ToolDefinitionError(f"tool {func.__name__!r} must be an async function")
        hints = typing.get_type_hints(func)
        doc, arg_docs = _doc_parts(func)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for pname, param in inspect.signature(func).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ToolDefinitionError(f"tool {func.__name__!r}: *args/**kwargs cannot be described")
            if pname not in hints:
                raise ToolDefinitionError(f"tool {func.__name__!r}: parameter {pname!r} needs a type hint")
            schema = _schema_for(hints[pname], f"tool {func.__name__!r}, parameter {pname!r}")
            if pname in arg_docs:
                schema["description"] = arg_docs[pname]
            properties[pname] = schema
            if param.default is inspect.Parameter.empty:
                required.append(pname)
        spec = ToolSpec(
            name=name or func.__name__,
            description=description or doc or func.__name__.replace("_", " "),
            parameters={"type": "object", "properties": properties, "required": required},
        )
        return Tool(spec, func, timeout_s=timeout_s, needs_approval=needs_approval)

    return wrap(fn) if fn is not None else wrap


# --------------------------------------------------------------------------- built-in telephony


END_CALL_SPEC = ToolSpec(
    name=END_CALL,
    description=(
        "Hang up the phone call. Say a short goodbye first; the call ends once the caller has heard it."
    ),
    parameters={"type": "object", "properties": {}, "required": []},
)


def transfer_spec(targets: Iterable[str]) -> ToolSpec:
    names = sorted(targets)
    return ToolSpec(
        name=TRANSFER_CALL,
        description=(
            "Transfer the caller to a human. Tell the caller you are transferring them first. "
            "mode 'warm' calls the human first and briefs them; 'cold' transfers at once."
        ),
        parameters={
            "type": "object",
            "properties": {
                "target": {"type": "string", "enum": names, "description": "Who to transfer to."},
                "reason": {"type": "string", "description": "Why, in one sentence, for the human."},
                "mode": {"type": "string", "enum": ["cold", "warm"]},
            },
            "required": ["target", "reason"],
        },
    )


SEND_DTMF_SPEC = ToolSpec(
    name=SEND_DTMF,
    description="Press keys on the phone keypad (e.g. to navigate a phone menu). Digits 0-9, *, #, A-D.",
    parameters={
        "type": "object",
        "properties": {"digits": {"type": "string", "pattern": "^[0-9*#A-Da-d]{1,32}$"}},
        "required": ["digits"],
    },
)

COLLECT_DIGITS_SPEC = ToolSpec(
    name=COLLECT_DIGITS,
    description=(
        "Ask the caller to type digits on their keypad (an account or menu number) and wait for "
        "them. Ask the caller first; the digits come back as the result."
    ),
    parameters={
        "type": "object",
        "properties": {
            "max_digits": {"type": "integer", "minimum": 1, "maximum": 32},
            "terminator": {"type": "string", "enum": ["#", "*", ""]},
            "timeout_s": {"type": "number", "minimum": 1, "maximum": 60},
        },
        "required": ["max_digits"],
    },
)


def handoff_spec(agent: str, description: str) -> ToolSpec:
    return ToolSpec(
        name=HANDOFF_PREFIX + agent,
        description=f"Hand the conversation over to the {agent} agent. {description}".strip(),
        parameters={"type": "object", "properties": {}, "required": []},
    )


def builtin_tools(transfer_targets: Iterable[str] = ()) -> list[Tool]:
    tools = [Tool(END_CALL_SPEC, None), Tool(SEND_DTMF_SPEC, None), Tool(COLLECT_DIGITS_SPEC, None)]
    targets = list(transfer_targets)
    if targets:
        tools.append(Tool(transfer_spec(targets), None))
    return tools


# --------------------------------------------------------------------------- registry


class ToolRegistry:
    """Tools by name. Built-ins first; a user tool of the same name replaces a built-in."""

    def __init__(self, tools: Iterable[Tool] = (), *, transfer_targets: Iterable[str] = ()) -> None:
        self._tools: dict[str, Tool] = {t.name: t for t in builtin_tools(transfer_targets)}
        for t in tools:
            self._tools[t.name] = t

    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(t.spec for t in self._tools.values())

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    async def run(self, name: str, arguments: str) -> tuple[bool, str]:
        """Run tool `name`; returns (ok, output JSON text for the model)."""
        found = self._tools.get(name)
        if found is None or found.fn is None:
            return False, json.dumps({"error": f"unknown tool {name!r}"})
        try:
            args = json.loads(arguments or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
            inspect.signature(found.fn).bind(**args)
        except (ValueError, TypeError):
            return False, json.dumps({"error": f"arguments for {name!r} do not match its parameters"})
        try:
            async with asyncio.timeout(found.timeout_s):
                result = await found.fn(**args)
        except TimeoutError:
            return False, json.dumps({"error": f"tool {name!r} timed out after {found.timeout_s:g} s"})
        except Exception as exc:  # any tool bug becomes a result, not a dead call
            return False, json.dumps({"error": f"tool {name!r} failed ({type(exc).__name__})"})
        return True, result if isinstance(result, str) else json.dumps(result, default=str)
