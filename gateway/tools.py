"""Tools the model may call. A minimal registry now; agents, approvals and handoffs build on it.

Tool functions run concurrently with the audio (the runner starts each in the call's task
group); each has a timeout, and every failure becomes a clear error result for the model, never
an exception in the call loop. Exception text is not sent to the model: it can carry internals.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gateway.backends.base import ToolSpec
from gateway.call import END_CALL_TOOL

ToolFn = Callable[[dict[str, Any]], Awaitable[Any]]

END_CALL_SPEC = ToolSpec(
    name=END_CALL_TOOL,
    description=(
        "Hang up the phone call. Say a short goodbye first; the call ends once the caller has heard it."
    ),
    parameters={"type": "object", "properties": {}, "required": []},
)


@dataclass(frozen=True, slots=True)
class Tool:
    spec: ToolSpec
    fn: ToolFn | None  # None: carried out by the call owner itself (telephony actions)
    timeout_s: float = 10.0


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {END_CALL_TOOL: Tool(END_CALL_SPEC, None)}
        for tool in tools:
            self._tools[tool.spec.name] = tool

    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(t.spec for t in self._tools.values())

    async def run(self, name: str, arguments: str) -> tuple[bool, str]:
        """Run tool `name`; returns (ok, output JSON text for the model)."""
        tool = self._tools.get(name)
        if tool is None or tool.fn is None:
            return False, json.dumps({"error": f"unknown tool {name!r}"})
        try:
            args = json.loads(arguments or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
        except ValueError:
            return False, json.dumps({"error": "arguments were not a JSON object"})
        try:
            async with asyncio.timeout(tool.timeout_s):
                result = await tool.fn(args)
        except TimeoutError:
            return False, json.dumps({"error": f"tool {name!r} timed out after {tool.timeout_s:g} s"})
        except Exception as exc:  # any tool bug becomes a result, not a dead call
            return False, json.dumps({"error": f"tool {name!r} failed ({type(exc).__name__})"})
        return True, result if isinstance(result, str) else json.dumps(result, default=str)
