"""The call's life cycle as one table.

Rule: every state change goes through `transition`, which checks the table first; an illegal
move raises `IllegalTransition` and leaves the state as it was (after h11's `_state.py`).

    connecting ──▶ active ──▶ transferring ──▶ active
        │            │             │
        └────────────┴─────────────┴──▶ ending ──▶ ended
    (any live state may also go straight to ended when a leg vanishes)
"""

from __future__ import annotations

from enum import StrEnum


class CallState(StrEnum):
    CONNECTING = "connecting"
    ACTIVE = "active"
    TRANSFERRING = "transferring"
    ENDING = "ending"
    ENDED = "ended"


TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    CallState.CONNECTING: frozenset({CallState.ACTIVE, CallState.ENDING, CallState.ENDED}),
    CallState.ACTIVE: frozenset({CallState.TRANSFERRING, CallState.ENDING, CallState.ENDED}),
    CallState.TRANSFERRING: frozenset({CallState.ACTIVE, CallState.ENDING, CallState.ENDED}),
    CallState.ENDING: frozenset({CallState.ENDED}),
    CallState.ENDED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A programming error: the call owner asked for a move the table does not allow."""

    def __init__(self, current: CallState, target: CallState) -> None:
        super().__init__(f"illegal call state transition {current.value} -> {target.value}")
        self.current = current
        self.target = target


def transition(current: CallState, target: CallState) -> CallState:
    """Return `target` if the table allows `current -> target`, else raise."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current, target)
    return target
