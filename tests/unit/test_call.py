"""The call owner on virtual time: events in, commands out, no sockets."""

from __future__ import annotations

import pytest

from gateway.backends.base import Capabilities
from gateway.call import Call, CallOptions
from gateway.call_state import CallState, IllegalTransition, transition
from gateway.commands import (
    AddUserText,
    CancelResponse,
    ClearPlayback,
    CreateResponse,
    EndCall,
    HangUp,
    PlayAudio,
    RunTool,
    SendAudio,
    SendMark,
    SendToolOutput,
    TruncateItem,
)
from gateway.events import (
    CallerAudio,
    CallerDtmf,
    CallerHungUp,
    CallStarted,
    MarkPlayed,
    ModelAudio,
    ModelClosed,
    ModelReady,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    Tick,
    ToolCallRequested,
    ToolFinished,
    Transcript,
)

START = CallStarted(carrier="twilio", call_sid="CA1", stream_sid="MZ1")


def active_call(**opts: object) -> Call:
    call = Call("call_1", now=0.0, options=CallOptions(**opts))  # type: ignore[arg-type]
    call.handle(START, 0.0)
    call.handle(ModelReady("sess"), 0.0)
    assert call.state is CallState.ACTIVE
    return call


def marks(cmds: list[object]) -> list[str]:
    return [c.name for c in cmds if isinstance(c, SendMark)]


def test_early_audio_is_buffered_and_flushed_in_order_with_greeting() -> None:
    call = Call("c", now=0.0)
    assert call.handle(START, 0.0) == []
    frames = [bytes([i]) * 160 for i in range(3)]
    for f in frames:
        assert call.handle(CallerAudio(f), 0.01) == []
    cmds = call.handle(ModelReady("s"), 0.1)
    assert cmds[:3] == [SendAudio(f) for f in frames]
    assert isinstance(cmds[3], CreateResponse) and cmds[3].instructions
    assert call.state is CallState.ACTIVE


def test_early_audio_buffer_is_bounded_to_about_a_second() -> None:
    call = Call("c", now=0.0)
    call.handle(START, 0.0)
    for i in range(80):  # 1.6 s of 20 ms frames
        call.handle(CallerAudio(bytes([i % 256]) * 160), 0.0)
    cmds = call.handle(ModelReady("s"), 0.0)
    sent = [c for c in cmds if isinstance(c, SendAudio)]
    assert len(sent) == 50
    assert sent[0].payload[0] == 30  # the oldest were dropped
    assert call.early_audio_dropped == 30


def test_caller_audio_passes_through_byte_exact_when_active() -> None:
    call = active_call(greeting="")
    payload = bytes(range(160))
    assert call.handle(CallerAudio(payload), 1.0) == [SendAudio(payload)]


def test_model_audio_is_sent_in_chunks_with_marks_within_the_lead() -> None:
    call = active_call(lead_ms=100, chunk_ms=20)
    cmds = call.handle(ModelAudio("r1", "i1", b"\x7f" * 8000), 1.0)
    plays = [c for c in cmds if isinstance(c, PlayAudio)]
    assert len(plays) == 5 and len(marks(cmds)) == 5
    # Order: audio then its mark.
    assert isinstance(cmds[0], PlayAudio) and isinstance(cmds[1], SendMark)
    more = call.handle(MarkPlayed(marks(cmds)[0]), 1.02)
    assert len([c for c in more if isinstance(c, PlayAudio)]) == 1


def test_barge_in_clears_and_truncates_at_heard_position() -> None:
    call = active_call(lead_ms=200, chunk_ms=20, greeting="")
    call.handle(ResponseStarted("r1"), 1.0)
    cmds = call.handle(ModelAudio("r1", "i1", b"\x7f" * 8 * 1000), 1.0)
    first = marks(cmds)
    call.handle(MarkPlayed(first[0]), 1.02)
    call.handle(MarkPlayed(first[1]), 1.04)
    out = call.handle(SpeechStarted("u1", 900), 1.047)
    assert out == [ClearPlayback(), TruncateItem("i1", 47)]
    # Deltas already in flight for the cut item are never played.
    assert call.handle(ModelAudio("r1", "i1", b"\x7f" * 800), 1.05) == []
    assert any(e["type"] == "barge_in" and e["heard_ms"] == 47 for e in call.events)


def test_barge_in_cancels_only_when_the_server_does_not() -> None:
    caps = Capabilities(name="realtime", server_cancels_on_speech=False)
    call = Call("c", now=0.0, capabilities=caps, options=CallOptions(greeting=""))
    call.handle(START, 0.0)
    call.handle(ModelReady("s"), 0.0)
    call.handle(ResponseStarted("r9"), 0.1)
    call.handle(ModelAudio("r9", "i9", b"\x7f" * 800), 0.1)
    out = call.handle(SpeechStarted(), 0.15)
    assert out[0] == ClearPlayback()
    assert out[-1] == CancelResponse("r9")


def test_speech_with_nothing_playing_does_nothing() -> None:
    call = active_call(greeting="")
    assert call.handle(SpeechStarted(), 1.0) == []
    # All audio confirmed: nothing audible any more.
    cmds = call.handle(ModelAudio("r", "i", b"\x7f" * 160), 1.0)
    call.handle(MarkPlayed(marks(cmds)[0]), 1.02)
    assert call.handle(SpeechStarted(), 1.03) == []


def test_end_call_waits_for_the_goodbye_to_be_heard() -> None:
    call = active_call(greeting="")
    call.handle(ResponseStarted("r1"), 1.0)
    cmds = call.handle(ModelAudio("r1", "i1", b"\x7f" * 8 * 60), 1.0)
    # The tool call waits for its response to complete.
    assert call.handle(ToolCallRequested("call_x", "end_call", "{}", response_id="r1"), 1.01) == []
    out = call.handle(ResponseDone("r1", "completed"), 1.02)
    assert len(out) == 1 and isinstance(out[0], SendToolOutput)
    assert call.state is CallState.ENDING
    assert call.handle(Tick(), 1.03) == []
    m = marks(cmds)
    call.handle(MarkPlayed(m[0]), 1.02)
    assert call.handle(MarkPlayed(m[1]), 1.04) == []
    assert call.handle(MarkPlayed(m[2]), 1.06) == [HangUp("bot_hangup"), EndCall("bot_hangup")]
    assert call.state is CallState.ENDED
    assert call.record.end_reason == "bot_hangup"


def test_end_call_hangs_up_anyway_after_the_grace_period() -> None:
    call = active_call(greeting="", hangup_grace_s=5.0)
    call.handle(ResponseStarted("r1"), 1.0)
    call.handle(ModelAudio("r1", "i1", b"\x7f" * 160), 1.0)
    call.handle(ToolCallRequested("c", "end_call", "{}"), 1.0)
    assert call.handle(Tick(), 5.9) == []
    assert call.handle(Tick(), 6.0) == [HangUp("bot_hangup"), EndCall("bot_hangup")]


def test_dtmf_reaches_the_model_and_waits_for_the_active_response() -> None:
    call = active_call(greeting="")
    call.handle(ResponseStarted("r1"), 1.0)
    out = call.handle(CallerDtmf("5"), 1.1)
    assert len(out) == 1 and isinstance(out[0], AddUserText) and "5" in out[0].text
    assert call.handle(ResponseDone("r1", "completed"), 1.2) == [CreateResponse()]
    assert call.record.dtmf == ["5"]


def test_dtmf_to_model_can_be_turned_off() -> None:
    call = active_call(greeting="", dtmf_to_model=False)
    assert call.handle(CallerDtmf("#"), 1.0) == []
    assert any(e["type"] == "dtmf" and e["digit"] == "#" for e in call.events)


def test_tools_run_outside_and_their_result_asks_for_one_response() -> None:
    call = active_call(greeting="")
    assert call.handle(ToolCallRequested("c1", "lookup", '{"q":1}'), 1.0) == [
        RunTool("c1", "lookup", '{"q":1}')
    ]
    out = call.handle(ToolFinished("c1", "lookup", '{"ok":true}'), 1.5)
    assert out == [SendToolOutput("c1", '{"ok":true}'), CreateResponse()]


def test_tool_calls_of_a_cancelled_response_never_run() -> None:
    call = active_call(greeting="")
    call.handle(ResponseStarted("r1"), 1.0)
    assert call.handle(ToolCallRequested("c1", "lookup", "{}", response_id="r1"), 1.1) == []
    assert call.handle(ResponseDone("r1", "cancelled"), 1.2) == []
    assert any(e["type"] == "tool_call_dropped" for e in call.events)


def test_model_leg_loss_hangs_up_and_ends() -> None:
    call = active_call()
    assert call.handle(ModelClosed("disconnected", 1011), 2.0) == [HangUp("error"), EndCall("error")]
    assert call.state is CallState.ENDED
    assert call.handle(CallerAudio(b"\xff" * 160), 2.1) == []


def test_caller_hangup_ends_without_rest_call() -> None:
    call = active_call()
    assert call.handle(CallerHungUp(), 2.0) == [EndCall("caller_hangup")]
    assert call.record.end_reason == "caller_hangup"


def test_interrupted_assistant_transcript_is_marked() -> None:
    call = active_call(greeting="")
    call.handle(ResponseStarted("r1"), 1.0)
    call.handle(ModelAudio("r1", "i1", b"\x7f" * 8 * 400), 1.0)
    call.handle(SpeechStarted(), 1.1)
    call.handle(Transcript("assistant", "i1", "Hello there, how can I help", True), 1.2)
    entry = call.record.transcript[-1]
    assert entry["interrupted"] is True
    assert entry["heard_ms"] == 100


def test_state_table_refuses_illegal_moves() -> None:
    with pytest.raises(IllegalTransition):
        transition(CallState.ENDED, CallState.ACTIVE)
    assert transition(CallState.CONNECTING, CallState.ACTIVE) is CallState.ACTIVE
