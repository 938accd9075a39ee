"""`switchboard demo` end to end against the loopback Realtime fake."""

from __future__ import annotations

import pytest

from gateway.config import load_settings
from media_streams.demo import _demo, run_demo
from tests.fakes.realtime_server import FakeRealtimeServer


async def test_demo_runs_a_call_and_prints_the_transcript(capsys: pytest.CaptureFixture[str]) -> None:
    server: FakeRealtimeServer

    async def greet(_: dict[str, object]) -> None:
        await server.respond_audio(b"\x7f" * 8 * 600, transcript="Hello from the fake model.")

    async with FakeRealtimeServer(on_response_create=greet) as server:
        settings = load_settings(
            env={
                "OPENAI_API_KEY": "sk-test",
                "SWITCHBOARD_REALTIME_URL": server.url,
                "SWITCHBOARD_LOG_LEVEL": "error",
            }
        )
        code = await _demo(settings, wav=None, seconds=2.5)
    out = capsys.readouterr().out
    assert code == 0
    assert "bot   : Hello from the fake model." in out
    assert "the caller heard 0.6 s of bot audio" in out
    # The greeting instruction went to the model.
    create = await_first(server.received, "response.create")
    assert "Greet" in create["response"]["instructions"]


def await_first(events: list[dict[str, object]], type_: str) -> dict[str, object]:
    return next(e for e in events if e.get("type") == type_)


def test_demo_on_realtime_without_a_key_says_what_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo(load_settings(env={"SWITCHBOARD_BACKEND": "realtime"}), wav=None, seconds=1) == 2
    err = capsys.readouterr().err
    assert "needs OPENAI_API_KEY" in err
    assert "export OPENAI_API_KEY" in err
