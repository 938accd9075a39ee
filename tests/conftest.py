"""Shared fixtures: the loopback fakes and a gateway served in-process against them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import pytest
import structlog

from gateway.app import create_app
from gateway.config import Settings, load_settings
from gateway.logging import configure_logging
from gateway.server import serve_in_process
from tests.fakes.realtime_server import FakeRealtimeServer
from tests.fakes.twilio_rest import FakeTwilioRest

AUTH_TOKEN = "test-auth-token"
ACCOUNT_SID = "AC" + "0" * 32


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Poll state owned by the gateway's tasks that offers no change signal (registries, records)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    """Gateway logs go to stderr at warning level in tests, so stdout is what a CLI printed."""
    configure_logging("warning", "console")
    yield
    structlog.reset_defaults()


@pytest.fixture
async def realtime() -> AsyncIterator[FakeRealtimeServer]:
    async with FakeRealtimeServer() as server:
        yield server


@pytest.fixture
async def twilio_rest() -> AsyncIterator[FakeTwilioRest]:
    async with FakeTwilioRest().running() as rest:
        yield rest


def settings_for(realtime_url: str, rest_url: str, **env: str) -> Settings:
    base = {
        "OPENAI_API_KEY": "sk-test",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SWITCHBOARD_REALTIME_URL": realtime_url,
        "SWITCHBOARD_TWILIO_API_BASE": rest_url,
        "SWITCHBOARD_GREETING": "",
        "SWITCHBOARD_LOG_LEVEL": "warning",
        "SWITCHBOARD_STORE_PATH": "",  # tests that need the SQLite store pass a tmp path
    }
    base.update(env)
    return load_settings(env=base)


@dataclass
class RunningGateway:
    port: int
    settings: Settings
    app: object

    @property
    def media_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/twilio/media"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def gateway(self):  # type: ignore[no-untyped-def]
        return self.app.state.gateway  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[RunningGateway]:
    app = create_app(settings)
    async with serve_in_process(app) as port:
        yield RunningGateway(port, settings, app)
