"""The call-state manager on virtual time: tools, approvals, handoffs, telephony tools, guards."""

from __future__ import annotations

import json

from gateway.agents import Agent, AgentSet
from gateway.backends.base import SessionConfig
from gateway.call import Call, CallOptions
from gateway.call_state import CallState
from gateway.commands import (
    AddUserText,
    CancelResponse,
    ClearPlayback,
    CreateResponse,
    EndCall,
    HangUp,
    PlayAudio,
    RequestApproval,
    RunTool,
    SendDtmf,
    SendToolOutput,
    TransferCall,
    UpdateSession,
)
from gateway.events import (
    ApprovalDecision,
    CallerDtmf,
    CallStarted,
    MarkPlayed,
    ModelAudio,
    ModelReady,
    RemotePlayback,
    ResponseDone,
    ResponseStarted,
    SayRequested,
    SpeechStopped,
    Tick,
    ToolCallRequested,
    ToolFinished,
    TransferFinished,
    Usage,
)
from gateway.tools import tool

START = CallStarted(carrier="twilio", call_sid="CA1", stream_sid="MZ1", parameters={"From": "+1555"})


@tool(needs_approval=True)
async def refund(amount: float) -> str:
    """Refund money."""
    return "ok"


@tool
async def lookup(q: str) -> str:
    """Look something up."""
    return q


FRONT = Agent(
    "front",
    "Front desk. Caller {from}.",
    tools=(lookup, refund),
    handoffs=("billing",),
    transfer_targets={"human": "+15550000"},
)
BILLING = Agent("billing", "Billing agent for {from}.", description="Money questions.")
AGENTS = AgentSet([FRONT, BILLING], default="front")


def make(now: float = 0.0, **opts: object) -> Call:
    session, tools = AGENTS.session_config(FRONT, SessionConfig(), {"from": "+1555"})
    call = Call(
        "c",
        now=now,
        options=CallOptions(greeting="", **opts),  # type: ignore[arg-type]
        tools=tools,
        agents=AGENTS,
        agent=FRONT,
        session=session,
        variables={"from": "+1555"},
    )
    call.handle(START, now)
    call.handle(ModelReady("s"), now)
    return call


def tool_call(
    call: Call, call_id: str, name: str, args: dict[str, object], rid: str, now: float
) -> list[object]:
    call.handle(ResponseStarted(rid), now)
    assert call.handle(ToolCallRequested(call_id, name, json.dumps(args), response_id=rid), now) == []
    return list(call.handle(ResponseDone(rid, "completed"), now))


def test_agent_instructions_are_templated_and_tools_include_builtins() -> None:
    call = make()
    assert call.session.instructions == "Front desk. Caller +1555."
    names = {t.name for t in call.session.tools}
    assert {
        "lookup",
        "refund",
        "end_call",
        "send_dtmf",
        "collect_digits",
        "transfer_call",
        "handoff_to_billing",
    } <= names


def test_outputs_of_one_response_go_back_together_with_one_response_create() -> None:
    call = make()
    call.handle(ResponseStarted("r1"), 1.0)
    call.handle(ToolCallRequested("a", "lookup", '{"q":"1"}', response_id="r1"), 1.0)
    call.handle(ToolCallRequested("b", "lookup", '{"q":"2"}', response_id="r1"), 1.0)
    assert call.handle(ResponseDone("r1", "completed"), 1.1) == [
        RunTool("a", "lookup", '{"q":"1"}'),
        RunTool("b", "lookup", '{"q":"2"}'),
    ]
    assert call.handle(ToolFinished("b", "lookup", '"2"'), 1.2) == []
    out = call.handle(ToolFinished("a", "lookup", '"1"'), 1.3)
    assert out == [SendToolOutput("b", '"2"'), SendToolOutput("a", '"1"'), CreateResponse()]


def test_approval_approve_runs_the_tool() -> None:
    call = make()
    out = tool_call(call, "t1", "refund", {"amount": 5}, "r1", 1.0)
    assert isinstance(out[0], RequestApproval)
    assert isinstance(out[1], AddUserText) and "approval" in out[1].text
    assert out[2] == CreateResponse()
    assert call.snapshot(1.0)["pending_approvals"][0]["tool_call_id"] == "t1"
    call.handle(ResponseDone("r2", "completed"), 1.5)
    assert call.handle(ApprovalDecision("t1", True), 2.0) == [RunTool("t1", "refund", '{"amount": 5}')]


def test_approval_reject_and_timeout_become_error_results() -> None:
    call = make(approval_timeout_s=10.0)
    tool_call(call, "t1", "refund", {"amount": 5}, "r1", 1.0)
    call.handle(ResponseDone("r2", "completed"), 1.1)
    out = call.handle(ApprovalDecision("t1", False, "too much"), 2.0)
    assert out[0] == SendToolOutput("t1", json.dumps({"error": "not approved: too much"}))
    call.handle(ResponseDone("r3", "completed"), 2.1)
    tool_call(call, "t2", "refund", {"amount": 9}, "r4", 3.0)
    call.handle(ResponseDone("r5", "completed"), 3.1)
    assert call.handle(Tick(), 12.9) == []
    out = call.handle(Tick(), 13.0)
    assert out[0] == SendToolOutput("t2", json.dumps({"error": "not approved: timed out"}))


def test_handoff_updates_instructions_and_tools_and_is_logged() -> None:
    call = make()
    out = tool_call(call, "h1", "handoff_to_billing", {}, "r1", 1.0)
    update = out[0]
    assert isinstance(update, UpdateSession)
    assert update.instructions == "Billing agent for +1555."
    assert "lookup" not in {t.name for t in update.tools}
    assert out[1:] == [SendToolOutput("h1", json.dumps({"ok": True, "agent": "billing"})), CreateResponse()]
    assert call.agent is BILLING
    assert any(e["type"] == "handoff" and e["to_agent"] == "billing" for e in call.events)


def test_send_dtmf_plays_in_band_tones_without_native_dtmf() -> None:
    call = make(lead_ms=1000)
    out = tool_call(call, "d1", "send_dtmf", {"digits": "12#"}, "r1", 1.0)
    audio = b"".join(c.payload for c in out if isinstance(c, PlayAudio))
    assert len(audio) == 3 * 160 * 8  # 3 × (100 ms tone + 60 ms gap) at 8 bytes/ms
    assert SendToolOutput("d1", json.dumps({"ok": True, "sent": "12#"})) in out


def test_send_dtmf_is_out_of_band_on_native_carriers() -> None:
    call = make(native_dtmf=True)
    out = tool_call(call, "d1", "send_dtmf", {"digits": "9"}, "r1", 1.0)
    assert out[0] == SendDtmf("9")


def test_send_dtmf_is_refused_where_the_carrier_has_no_way_to_send_it() -> None:
    call = make(can_send_dtmf=False)
    out = tool_call(call, "d1", "send_dtmf", {"digits": "9"}, "r1", 1.0)
    assert out[0] == SendToolOutput(
        "d1", json.dumps({"error": "this call's carrier cannot send keypad tones"})
    )


def test_end_call_waits_for_remote_playback_to_stop() -> None:
    """OpenAI SIP plays audio itself; the hang-up waits for output_audio_buffer.stopped."""
    call = make()
    call.handle(RemotePlayback(True, "r1"), 1.0)
    out = tool_call(call, "e1", "end_call", {}, "r1", 1.0)
    assert isinstance(out[0], SendToolOutput)
    assert call.handle(Tick(), 2.0) == []
    assert call.handle(RemotePlayback(False, "r1"), 3.0) == [HangUp("bot_hangup"), EndCall("bot_hangup")]


def test_collect_digits_until_terminator_as_one_result() -> None:
    call = make()
    assert tool_call(call, "k1", "collect_digits", {"max_digits": 6, "terminator": "#"}, "r1", 1.0) == []
    for d in "4711":
        assert call.handle(CallerDtmf(d), 2.0) == []
    out = call.handle(CallerDtmf("#"), 2.5)
    assert out == [SendToolOutput("k1", json.dumps({"digits": "4711", "complete": True})), CreateResponse()]


def test_collect_digits_times_out_between_keys() -> None:
    call = make(dtmf_inter_digit_s=3.0)
    tool_call(call, "k1", "collect_digits", {"max_digits": 6}, "r1", 1.0)
    call.handle(CallerDtmf("1"), 2.0)
    assert call.handle(Tick(), 4.9) == []
    out = call.handle(Tick(), 5.0)
    assert out[0] == SendToolOutput("k1", json.dumps({"digits": "1", "complete": False}))


def test_transfer_tool_goes_to_the_configured_target() -> None:
    call = make()
    out = tool_call(
        call,
        "x1",
        "transfer_call",
        {"target": "human", "reason": "wants a person", "mode": "warm"},
        "r1",
        1.0,
    )
    assert len(out) == 1 and isinstance(out[0], TransferCall)
    assert (out[0].target, out[0].mode) == ("+15550000", "warm")
    assert "wants a person" in out[0].summary
    assert call.state is CallState.TRANSFERRING
    # No answer: the bot tells the caller and carries on.
    back = call.handle(TransferFinished("x1", False, "no-answer"), 20.0)
    assert call.state is CallState.ACTIVE
    assert isinstance(back[0], SendToolOutput) and "no-answer" in back[0].output
    assert back[1] == CreateResponse()


def test_successful_transfer_ends_our_legs_with_reason_transfer() -> None:
    call = make()
    tool_call(call, "x1", "transfer_call", {"target": "human", "reason": "r"}, "r1", 1.0)
    assert call.handle(TransferFinished("x1", True, "dialing"), 2.0) == [EndCall("transfer")]
    assert call.record.end_reason == "transfer"


def test_unknown_transfer_target_is_an_error_result() -> None:
    call = make()
    out = tool_call(call, "x1", "transfer_call", {"target": "ceo", "reason": "r"}, "r1", 1.0)
    assert out[0] == SendToolOutput("x1", json.dumps({"error": "unknown transfer target"}))


def test_max_duration_ends_politely_after_the_line_is_heard() -> None:
    call = make(max_duration_s=60.0, idle_timeout_s=0)
    out = call.handle(Tick(), 60.0)
    assert len(out) == 1 and isinstance(out[0], CreateResponse) and "time limit" in out[0].instructions
    assert call.state is CallState.ENDING
    call.handle(ResponseStarted("g"), 60.1)
    cmds = call.handle(ModelAudio("g", "gi", b"\x7f" * 160), 60.1)
    call.handle(ResponseDone("g", "completed"), 60.2)
    mark = next(c.name for c in cmds if hasattr(c, "name"))
    assert call.handle(MarkPlayed(mark), 60.3) == [HangUp("max_duration"), EndCall("max_duration")]


def test_max_duration_cuts_a_long_answer_first() -> None:
    call = make(max_duration_s=60.0, idle_timeout_s=0)
    call.handle(ResponseStarted("r"), 59.0)
    call.handle(ModelAudio("r", "i", b"\x7f" * 8000), 59.0)
    out = call.handle(Tick(), 60.0)
    assert ClearPlayback() in out and CancelResponse("r") in out
    assert not any(isinstance(c, CreateResponse) for c in out)
    after = call.handle(ResponseDone("r", "cancelled"), 60.1)
    assert isinstance(after[0], CreateResponse) and "time limit" in after[0].instructions


def test_idle_caller_is_prompted_then_hung_up_on() -> None:
    call = make(idle_timeout_s=10.0)
    call.handle(SpeechStopped(), 1.0)
    assert call.handle(Tick(), 10.9) == []
    prompt = call.handle(Tick(), 11.0)
    assert isinstance(prompt[0], CreateResponse) and "still there" in prompt[0].instructions
    call.handle(ResponseDone("p", "completed"), 11.5)
    assert call.handle(Tick(), 20.9) == []
    bye = call.handle(Tick(), 21.0)
    assert isinstance(bye[0], CreateResponse) and "Goodbye" in bye[0].instructions
    assert call.state is CallState.ENDING


def test_max_cost_ends_the_call() -> None:
    totals = iter([0.5, 1.2])
    call = make(max_cost_usd=1.0)
    call.on_usage = lambda model, usage: next(totals)
    assert call.handle(ResponseDone("r1", "completed", Usage(total_tokens=1)), 1.0) == []
    out = call.handle(ResponseDone("r2", "completed", Usage(total_tokens=1)), 2.0)
    assert isinstance(out[0], CreateResponse) and "end the call" in out[0].instructions
    assert any(e["type"] == "guard" and e["reason"] == "max_cost" for e in call.events)


def test_operator_say_asks_for_a_response() -> None:
    call = make()
    out = call.handle(SayRequested("Your order shipped."), 1.0)
    assert isinstance(out[0], CreateResponse) and "Your order shipped." in out[0].instructions


def test_snapshot_has_the_api_shape() -> None:
    call = make()
    snap = call.snapshot(5.0)
    for key in (
        "id",
        "carrier",
        "direction",
        "from",
        "to",
        "carrier_ids",
        "agent",
        "backend",
        "state",
        "started_at",
        "answered_at",
        "ended_at",
        "end_reason",
        "transcript",
        "events",
        "latency",
    ):
        assert key in snap
    assert snap["from"] == "+1555"
    assert snap["agent"] == "front"
