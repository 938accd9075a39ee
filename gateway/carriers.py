"""The seams carriers plug into. `gateway` never imports a carrier package.

A carrier package (`media_streams`, later `sip`) exposes a module attribute `plugin` that
satisfies `CarrierPlugin`; the app factory imports the packages named in
`SWITCHBOARD_CARRIERS` by name and mounts their routes. Per call, the carrier hands the
gateway a `CarrierLeg`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Protocol

from gateway.commands import CarrierCommand
from gateway.events import CarrierEvent

if TYPE_CHECKING:
    from starlette.routing import BaseRoute


class CarrierLeg(Protocol):
    """The phone side of one call, as the runner sees it."""

    name: str

    def events(self) -> AsyncIterator[CarrierEvent]:
        """Yield carrier events until the leg is gone; the last one is `CallerHungUp`."""
        ...

    async def send(self, command: CarrierCommand) -> None:
        """Carry out one carrier command. A closed leg is not an error here (its reader reports it)."""
        ...

    async def close(self) -> None:
        """Close the media leg; idempotent."""
        ...

    async def transfer(self, target: str, mode: str, summary: str) -> tuple[bool, str]:
        """Transfer the caller to `target` (E.164 number or sip:/tel: URI). `cold` hands the call
        over at once; `warm` first reaches the human and plays them `summary`. Returns (ok,
        detail); on failure the call goes on with the bot."""
        ...


class CarrierPlugin(Protocol):
    """What a carrier package offers the app factory."""

    name: str

    def routes(self) -> Sequence[BaseRoute]:
        """Routes to mount; handlers find the `Gateway` at `request.app.state.gateway`."""
        ...


# A plugin may also offer `lifespan(gateway) -> AbstractAsyncContextManager[None]` (its own
# listeners, e.g. SIP over UDP/TCP; started after the gateway, stopped after its calls) and
# `demo(settings, *, wav, seconds) -> int` (the `switchboard demo` caller for its protocol).
