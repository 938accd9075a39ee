"""Settings: env and file, precedence, and errors that name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import ConfigError, load_settings, require_for_serving


def test_defaults_need_nothing() -> None:
    s = load_settings(env={})
    assert s.realtime_url == "wss://api.openai.com/v1"
    assert s.audio_format == "pcmu"
    assert s.lead_ms == 250
    cfg = s.session_config()
    assert cfg.input_format == cfg.output_format == "audio/pcmu"
    assert cfg.turn_detection.type == "server_vad"


def test_env_is_parsed_and_typed() -> None:
    s = load_settings(
        env={
            "OPENAI_API_KEY": "sk-1",
            "SWITCHBOARD_LEAD_MS": "300",
            "SWITCHBOARD_VERIFY_SIGNATURES": "false",
            "SWITCHBOARD_TURN_DETECTION": "semantic_vad",
            "SWITCHBOARD_VAD_EAGERNESS": "high",
            "SWITCHBOARD_INTERRUPT_RESPONSE": "no",
            "SWITCHBOARD_AUDIO_FORMAT": "pcm24k",
        }
    )
    assert (s.openai_api_key, s.lead_ms, s.verify_signatures) == ("sk-1", 300, False)
    cfg = s.session_config()
    assert cfg.turn_detection.type == "semantic_vad"
    assert cfg.turn_detection.eagerness == "high"
    assert cfg.turn_detection.interrupt_response is False
    assert cfg.input_format == cfg.output_format == "audio/pcm"


@pytest.mark.parametrize(
    ("env", "key", "fix"),
    [
        ({"SWITCHBOARD_LEAD_MS": "abc"}, "SWITCHBOARD_LEAD_MS", "milliseconds"),
        ({"SWITCHBOARD_LEAD_MS": "5"}, "SWITCHBOARD_LEAD_MS", "chunk"),
        ({"SWITCHBOARD_PORT": "70000"}, "SWITCHBOARD_PORT", "1-65535"),
        ({"SWITCHBOARD_TURN_DETECTION": "vad"}, "SWITCHBOARD_TURN_DETECTION", "server_vad"),
        ({"SWITCHBOARD_REALTIME_URL": "http://x"}, "SWITCHBOARD_REALTIME_URL", "ws"),
        ({"SWITCHBOARD_VERIFY_SIGNATURE": "false"}, "SWITCHBOARD_VERIFY_SIGNATURE", "spelling"),
        ({"SWITCHBOARD_VAD_THRESHOLD": "2"}, "SWITCHBOARD_VAD_THRESHOLD", "0.5"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(env: dict[str, str], key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env=env)
    assert info.value.key == key
    assert key in str(info.value)
    assert fix in str(info.value)


def test_file_then_env_precedence(tmp_path: Path) -> None:
    path = tmp_path / "switchboard.toml"
    path.write_text('[switchboard]\nlead_ms = 400\nvoice = "cedar"\nverify_signatures = false\n')
    s = load_settings(env={"SWITCHBOARD_LEAD_MS": "200"}, config_file=path)
    assert (s.lead_ms, s.voice, s.verify_signatures) == (200, "cedar", False)


def test_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[switchboard]\nlead_mss = 400\n")
    with pytest.raises(ConfigError, match="lead_mss: unknown setting"):
        load_settings(env={}, config_file=path)
    path.write_text("[switchboard]\nlead_ms = 'x'\n")
    with pytest.raises(ConfigError, match="lead_ms"):
        load_settings(env={}, config_file=path)
    path.write_text("[switchboard\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(env={}, config_file=path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env={}, config_file=tmp_path / "nope.toml")


def test_serving_needs_the_token_and_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        require_for_serving(load_settings(env={"OPENAI_API_KEY": "sk"}))
    assert info.value.key == "TWILIO_AUTH_TOKEN"
    with pytest.raises(ConfigError) as info:
        require_for_serving(
            load_settings(
                env={"TWILIO_AUTH_TOKEN": "t", "OPENAI_API_KEY": "  ", "SWITCHBOARD_BACKEND": "realtime"}
            )
        )
    assert info.value.key == "OPENAI_API_KEY"
    # A SIP-only gateway has no Twilio webhooks to check.
    require_for_serving(load_settings(env={"SWITCHBOARD_CARRIERS": "sip"}))
    # Without a key the default backend is the offline one, which needs none.
    require_for_serving(load_settings(env={"TWILIO_AUTH_TOKEN": "t"}))


def test_cli_serve_reports_config_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SWITCHBOARD_PORT", "http")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "SWITCHBOARD_PORT" in err
    assert "Fix:" in err
