"""Agents as data, and routing a call to one.

An agent is a name, instructions (a template over call variables such as `{from}`, `{to}` and
any routing parameter), a voice, tools and the agents it may hand off to. Define them in Python:

    from gateway.agents import Agent, AgentSet
    from gateway.tools import tool

    @tool
    async def opening_hours(day: str) -> str:
        '''Opening hours for a day of the week.'''
        return "9 to 5"

    front_desk = Agent("front_desk", "You answer calls for Acme. The caller is {from}.",
                       tools=(opening_hours,), handoffs=("billing",))
    billing = Agent("billing", "You handle billing questions.")
    agents = AgentSet([front_desk, billing], default="front_desk", numbers={"+18005551212": "billing"})

and point `SWITCHBOARD_AGENTS=myproject.agents:agents` at it. Routing per call, first match
wins: an explicit `agent` parameter (Twilio `<Parameter>`, SIP header `X-Agent`, campaign row),
then the dialled number, then the default.
"""

from __future__ import annotations

import importlib
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gateway.backends.base import SessionConfig
from gateway.config import ConfigError, Settings
from gateway.tools import Tool, ToolRegistry, handoff_spec


@dataclass(frozen=True, slots=True)
class Agent:
    name: str
    instructions: str
    voice: str | None = None
    tools: tuple[Tool, ...] = ()
    handoffs: tuple[str, ...] = ()
    greeting: str | None = None
    description: str = ""
    transfer_targets: Mapping[str, str] = field(default_factory=dict)

    def render(self, variables: Mapping[str, str]) -> str:
        """Instructions with `{name}` placeholders filled; unknown names become empty strings
        (a missing caller id must not break the call)."""
        formatter = string.Formatter()
        out: list[str] = []
        for literal, name, _spec, _conv in formatter.parse(self.instructions):
            out.append(literal)
            if name is not None:
                out.append(str(variables.get(name, "")))
        return "".join(out)


class AgentSet:
    """All agents of a deployment, with routing and per-agent tool registries."""

    def __init__(
        self,
        agents: Iterable[Agent],
        *,
        default: str | None = None,
        numbers: Mapping[str, str] | None = None,
    ) -> None:
        self.agents: dict[str, Agent] = {}
        for agent in agents:
            if agent.name in self.agents:
                raise ValueError(f"two agents are named {agent.name!r}")
            self.agents[agent.name] = agent
        if not self.agents:
            raise ValueError("an AgentSet needs at least one agent")
        self.default = default or next(iter(self.agents))
        self.numbers = dict(numbers or {})
        for name in [self.default, *self.numbers.values()]:
            if name not in self.agents:
                raise ValueError(f"routing names an unknown agent {name!r}")
        for agent in self.agents.values():
            for target in agent.handoffs:
                if target not in self.agents:
                    raise ValueError(f"agent {agent.name!r} hands off to unknown agent {target!r}")

    def route(self, parameters: Mapping[str, str]) -> Agent:
        lowered = {k.lower(): v for k, v in parameters.items()}
        explicit = lowered.get("agent") or lowered.get("x-agent")
        if explicit and explicit in self.agents:
            return self.agents[explicit]
        dialled = lowered.get("to") or lowered.get("request_uri_user") or ""
        if dialled in self.numbers:
            return self.agents[self.numbers[dialled]]
        return self.agents[self.default]

    def registry(self, agent: Agent) -> ToolRegistry:
        handoffs = [
            Tool(handoff_spec(t, self.agents[t].description), None)
            for t in agent.handoffs
            if t in self.agents
        ]
        return ToolRegistry([*agent.tools, *handoffs], transfer_targets=agent.transfer_targets)

    def session_config(
        self, agent: Agent, base: SessionConfig, variables: Mapping[str, str]
    ) -> tuple[SessionConfig, ToolRegistry]:
        from dataclasses import replace

        tools = self.registry(agent)
        config = replace(
            base,
            instructions=agent.render(variables),
            voice=agent.voice or base.voice,
            tools=tools.specs(),
        )
        return config, tools


def default_agents(settings: Settings) -> AgentSet:
    """One agent from the plain settings (instructions, voice, greeting, transfer number)."""
    targets = {"human": settings.transfer_number} if settings.transfer_number else {}
    return AgentSet(
        [
            Agent(
                "default",
                settings.instructions,
                voice=settings.voice,
                greeting=settings.greeting or None,
                transfer_targets=targets,
            )
        ]
    )


def load_agents(settings: Settings) -> AgentSet:
    """`SWITCHBOARD_AGENTS=module:attribute` (an AgentSet, or a list of Agents), else the default."""
    spec = settings.agents
    if not spec:
        return default_agents(settings)
    module_name, _, attr = spec.partition(":")
    try:
        value = getattr(importlib.import_module(module_name), attr or "agents")
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            "SWITCHBOARD_AGENTS",
            f"cannot load {spec!r} ({type(exc).__name__}: {exc})",
            "use module.path:attribute naming an AgentSet or a list of Agents",
        ) from None
    if isinstance(value, AgentSet):
        return value
    if isinstance(value, list | tuple) and all(isinstance(a, Agent) for a in value):
        return AgentSet(value)
    raise ConfigError(
        "SWITCHBOARD_AGENTS",
        f"{spec!r} is a {type(value).__name__}",
        "point it at an AgentSet or a list of Agents",
    )
