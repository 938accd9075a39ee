"""Agents and tools the end-to-end tests load through SWITCHBOARD_AGENTS=tests.fakes.agents:agents."""

from __future__ import annotations

import asyncio

from gateway.agents import Agent, AgentSet
from gateway.tools import tool

calls: list[tuple[str, dict[str, object]]] = []


@tool(timeout_s=5)
async def slow_lookup(order_id: str) -> dict[str, object]:
    """Look up an order (takes a moment).

    Args:
        order_id: The order number.
    """
    calls.append(("slow_lookup", {"order_id": order_id}))
    await asyncio.sleep(0.5)
    return {"order_id": order_id, "status": "shipped"}


@tool(timeout_s=0.2)
async def stuck() -> str:
    """A backend that never answers."""
    await asyncio.sleep(30)
    return "never"


@tool(needs_approval=True)
async def refund(amount: float) -> dict[str, object]:
    """Refund an amount to the caller's card."""
    calls.append(("refund", {"amount": amount}))
    return {"refunded": amount}


front = Agent(
    "front_desk",
    "You are the front desk of Acme. The caller's number is {from}.",
    tools=(slow_lookup, stuck, refund),
    handoffs=("billing",),
    transfer_targets={"human": "+15551230000"},
)
billing = Agent("billing", "You are Acme billing. Be precise about money.", description="Billing questions.")
agents = AgentSet([front, billing], default="front_desk", numbers={"+18005550000": "billing"})
