"""structlog set-up: JSON lines, call identity bound per call task through contextvars.

Every line logged inside a call's task carries `call_id`, `call_sid` and `stream_sid` because the
runner binds them with `structlog.contextvars.bound_contextvars` (structlog docs, "Context
Variables"); nothing has to pass a logger around.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_SECRET_KEYS = ("authorization", "auth_token", "api_key", "token", "signature")


def _redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Never write credentials, even if a caller of the logger passes them by mistake."""
    for key in list(event_dict):
        if any(s in key.lower() for s in _SECRET_KEYS):
            event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    renderer: Any = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "switchboard") -> Any:
    return structlog.get_logger(name)
