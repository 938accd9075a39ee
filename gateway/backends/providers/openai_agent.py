"""The agent step with OpenAI's Responses API: streamed text and function tools.

Each turn sends the whole history (`store=False`: the gateway owns the conversation, so an
interrupted answer is cut to what the caller heard, which a server-side thread would not
know) and streams `response.output_text.delta` into speech while the model still writes.
Function calls are taken from `response.output_item.done`, complete with their arguments;
the pipeline hands them to the call owner, which runs them (or hangs up, for `end_call`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

from openai import AsyncOpenAI, omit
from openai.types.responses import (
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseFunctionToolCall,
    ResponseInputParam,
    ResponseOutputItemDoneEvent,
    ResponseTextDeltaEvent,
    ToolParam,
)

from gateway.backends.base import ToolSpec
from gateway.backends.providers.base import AgentOutput, HistoryItem, Message, TextDelta, ToolCall, ToolResult

__all__ = ["INTERRUPTED_MARK", "OpenAIResponsesAgent", "history_to_input", "tools_to_functions"]

# Appended to an assistant message the caller cut off, so the model knows the rest was not heard
# (and does not assume the caller knows it).
INTERRUPTED_MARK = " [interrupted by the caller]"


class AgentError(RuntimeError):
    """The model reported a failed response."""


def history_to_input(history: Sequence[HistoryItem]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for entry in history:
        if isinstance(entry, Message):
            text = entry.text + (INTERRUPTED_MARK if entry.interrupted else "")
            items.append({"role": entry.role, "content": text})
        elif isinstance(entry, ToolCall):
            items.append(
                {
                    "type": "function_call",
                    "call_id": entry.call_id,
                    "name": entry.name,
                    "arguments": entry.arguments,
                }
            )
        elif isinstance(entry, ToolResult):
            items.append({"type": "function_call_output", "call_id": entry.call_id, "output": entry.output})
    return items


def tools_to_functions(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "name": t.name,
            "description": t.description,
            "parameters": dict(t.parameters),
            "strict": False,
        }
        for t in tools
    ]


class OpenAIResponsesAgent:
    """`Agent` over `POST /v1/responses` with `stream=True`."""

    name = "openai-responses"

    def __init__(
        self, client: AsyncOpenAI, model: str = "gpt-4.1-mini", *, max_output_tokens: int = 400
    ) -> None:
        self.client = client
        self.model = model
        self.max_output_tokens = max_output_tokens

    async def respond(
        self, history: Sequence[HistoryItem], *, instructions: str, tools: Sequence[ToolSpec]
    ) -> AsyncIterator[AgentOutput]:
        stream = await self.client.responses.create(
            model=self.model,
            instructions=instructions,
            input=cast("ResponseInputParam", history_to_input(history)),
            stream=True,
            store=False,
            max_output_tokens=self.max_output_tokens,
            tools=cast("list[ToolParam]", tools_to_functions(tools)) if tools else omit,
        )
        async with stream:
            async for event in stream:
                if isinstance(event, ResponseTextDeltaEvent):
                    yield TextDelta(event.delta)
                elif isinstance(event, ResponseOutputItemDoneEvent):
                    if isinstance(event.item, ResponseFunctionToolCall):
                        item = event.item
                        yield ToolCall(item.call_id, item.name, item.arguments)
                elif isinstance(event, ResponseFailedEvent | ResponseErrorEvent):
                    raise AgentError(f"the model failed the response ({event.type})")

    async def aclose(self) -> None:
        pass
