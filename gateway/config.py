"""Typed settings, read once from the environment and an optional `switchboard.toml`.

Precedence: environment variables win over the file, the file wins over defaults. Standard
names keep their vendors' spelling (`OPENAI_API_KEY`, `TWILIO_AUTH_TOKEN`, …); everything of
ours is `SWITCHBOARD_<KEY>` in the environment and `<key>` (lower case) in the file's
`[switchboard]` table. A missing or malformed value fails start-up with a message that names
the key and the fix (`ConfigError`); unknown `SWITCHBOARD_*` variables and unknown file keys
fail too, because a typo that silently does nothing is worse on a phone line.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.backends.base import AudioFormat, SessionConfig, TurnDetection

ENV_PREFIX = "SWITCHBOARD_"
DEFAULT_REALTIME_URL = "wss://api.openai.com/v1"


class ConfigError(ValueError):
    """A setting is missing or malformed. `str()` names the key and the fix."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        super().__init__(f"{key}: {problem}. Fix: {fix}")
        self.key = key
        self.problem = problem
        self.fix = fix


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _parse_int(raw: str) -> int:
    return int(raw.strip())


def _parse_float(raw: str) -> float:
    return float(raw.strip())


def _parse_str(raw: str) -> str:
    return raw


def _parse_opt_str(raw: str) -> str | None:
    return raw if raw.strip() else None


def _parse_opt_float(raw: str) -> float | None:
    return float(raw) if raw.strip() else None


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return parse


def _ranged(parse: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    def parse_in_range(raw: str) -> Any:
        value = parse(raw)
        if not low <= value <= high:
            raise ValueError(f"expected {low:g} to {high:g}")
        return value

    return parse_in_range


@dataclass(frozen=True, slots=True)
class _Key:
    attr: str
    env: str
    parse: Callable[[str], Any]
    fix: str


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway reads at start-up. Built by `load_settings`; immutable after."""

    # Credentials (standard names).
    openai_api_key: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    openai_webhook_secret: str | None = None
    # Server.
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    trust_forwarded: bool = True
    verify_signatures: bool = True
    max_calls: int = 100
    log_level: str = "info"
    log_format: str = "json"
    # Model.
    backend: str = "auto"
    realtime_url: str = DEFAULT_REALTIME_URL
    model: str = "gpt-realtime"
    instructions: str = (
        "You are a friendly, concise phone assistant. Speak in short sentences. "
        "When the caller says goodbye or asks to hang up, say a short goodbye and call end_call."
    )
    greeting: str = "Greet the caller briefly and ask how you can help."
    voice: str = "marin"
    speed: float = 1.0
    audio_format: str = "pcmu"
    turn_detection: str = "server_vad"
    vad_threshold: float = 0.5
    vad_prefix_padding_ms: int = 300
    vad_silence_duration_ms: int = 500
    vad_eagerness: str = "auto"
    interrupt_response: bool = True
    transcription_model: str | None = "gpt-4o-mini-transcribe"
    transcription_language: str | None = None
    noise_reduction: str = "near_field"
    # Call behaviour.
    lead_ms: int = 250
    chunk_ms: int = 20
    dtmf_to_model: bool = True
    hangup_grace_s: float = 10.0
    # Pipeline. The `pipeline` backend (STT → agent → TTS over OpenAI's HTTP APIs) and the
    # `offline` one (local engines) share the VAD settings; vad_silence_duration_ms and
    # vad_prefix_padding_ms above apply to them too.
    stt_model: str = "gpt-4o-mini-transcribe"
    agent_model: str = "gpt-4.1-mini"
    tts_model: str = "gpt-4o-mini-tts"
    tts_voice: str = "marin"
    tts_speed: float = 1.0
    vad_min_speech_ms: int = 200
    vad_aggressiveness: int = 2
    # Call-state manager: agents, guards, records, REST API.
    agents: str | None = None
    transfer_number: str | None = None
    max_duration_s: float = 3600.0
    idle_timeout_s: float = 30.0
    max_cost_usd: float | None = None
    approval_timeout_s: float = 60.0
    approval_webhook_url: str | None = None
    dtmf_inter_digit_s: float = 5.0
    api_token: str | None = None
    store_path: str | None = "switchboard.db"
    recording_dir: str | None = None
    price_file: str | None = None
    # Carriers.
    carriers: str = "media_streams"
    twilio_api_base: str = "https://api.twilio.com"
    # OpenAI SIP.
    openai_api_base: str = "https://api.openai.com/v1"
    # SIP.
    sip_enabled: bool = False
    sip_host: str = "127.0.0.1"
    sip_udp_port: int = 5060
    sip_tcp_port: int = 5060
    sip_advertised_host: str | None = None
    sip_rtp_port_min: int = 10000
    sip_rtp_port_max: int = 20000
    sip_answer_delay_ms: int = 0
    sip_allowed_sources: str = ""
    sip_username: str | None = None
    sip_password: str | None = None
    sip_trunk_host: str | None = None
    sip_trunk_port: int = 5060
    sip_trunk_username: str | None = None
    sip_trunk_password: str | None = None
    sip_caller_id: str | None = None
    sip_accept_users: str = "*"
    sip_trunk_register: bool = False

    def session_config(self, *, tools: tuple[Any, ...] = ()) -> SessionConfig:
        """The Realtime session this configuration asks for."""
        fmt: AudioFormat = "audio/pcmu" if self.audio_format == "pcmu" else "audio/pcm"
        td = TurnDetection(
            type=None if self.turn_detection == "none" else self.turn_detection,  # type: ignore[arg-type]
            threshold=self.vad_threshold,
            prefix_padding_ms=self.vad_prefix_padding_ms,
            silence_duration_ms=self.vad_silence_duration_ms,
            eagerness=self.vad_eagerness,  # type: ignore[arg-type]
            interrupt_response=self.interrupt_response,
        )
        return SessionConfig(
            model=self.model,
            instructions=self.instructions,
            voice=self.voice,
            speed=self.speed,
            input_format=fmt,
            output_format=fmt,
            turn_detection=td,
            transcription_model=self.transcription_model,
            transcription_language=self.transcription_language,
            noise_reduction=None if self.noise_reduction == "none" else self.noise_reduction,  # type: ignore[arg-type]
            tools=tools,
        )


def _keys() -> list[_Key]:
    std = {
        "openai_api_key": ("OPENAI_API_KEY", "set it to your OpenAI API key (sk-…)"),
        "twilio_account_sid": ("TWILIO_ACCOUNT_SID", "set it to your Twilio Account SID (AC…)"),
        "twilio_auth_token": ("TWILIO_AUTH_TOKEN", "set it to your Twilio auth token"),
        "openai_webhook_secret": ("OPENAI_WEBHOOK_SECRET", "set it to the webhook secret (whsec_…)"),
    }
    special: dict[str, tuple[Callable[[str], Any], str]] = {
        "port": (_parse_int, "use a TCP port number such as 8080"),
        "max_calls": (_parse_int, "use a whole number of calls, e.g. 100"),
        "lead_ms": (_parse_int, "use a whole number of milliseconds, e.g. 250"),
        "chunk_ms": (_parse_int, "use a whole number of milliseconds, e.g. 20"),
        "vad_prefix_padding_ms": (_parse_int, "use milliseconds, e.g. 300"),
        "vad_silence_duration_ms": (_parse_int, "use milliseconds, e.g. 500"),
        "vad_threshold": (_parse_float, "use a number between 0 and 1, e.g. 0.5"),
        "speed": (_parse_float, "use a number between 0.25 and 1.5, e.g. 1.0"),
        "hangup_grace_s": (_parse_float, "use seconds, e.g. 10"),
        "trust_forwarded": (_parse_bool, "use true or false"),
        "verify_signatures": (_parse_bool, "use true, or false only for local development"),
        "interrupt_response": (_parse_bool, "use true or false"),
        "dtmf_to_model": (_parse_bool, "use true or false"),
        # Pipeline.
        "tts_speed": (_ranged(_parse_float, 0.25, 4.0), "use a number between 0.25 and 4.0, e.g. 1.0"),
        "vad_min_speech_ms": (_ranged(_parse_int, 0, 2000), "use milliseconds, e.g. 200"),
        "vad_aggressiveness": (_ranged(_parse_int, 0, 3), "use a WebRTC VAD mode from 0 to 3, e.g. 2"),
        "backend": (
            _choice("auto", "realtime", "pipeline", "offline"),
            "use auto (realtime with OPENAI_API_KEY, else offline), realtime, pipeline or offline",
        ),
        "audio_format": (_choice("pcmu", "pcm24k"), "use pcmu (passthrough, default) or pcm24k"),
        "turn_detection": (
            _choice("server_vad", "semantic_vad", "none"),
            "use server_vad, semantic_vad or none",
        ),
        "vad_eagerness": (_choice("low", "medium", "high", "auto"), "use low, medium, high or auto"),
        "noise_reduction": (_choice("near_field", "far_field", "none"), "use near_field, far_field or none"),
        "agents": (_parse_opt_str, "use module.path:attribute naming an AgentSet, e.g. myapp.agents:agents"),
        "transfer_number": (
            _parse_opt_str,
            "use an E.164 number or sip: URI for transfers, e.g. +14155550123",
        ),
        "max_duration_s": (_parse_float, "use seconds, e.g. 3600"),
        "idle_timeout_s": (_parse_float, "use seconds of caller silence, e.g. 30 (0 turns it off)"),
        "max_cost_usd": (_parse_opt_float, "use dollars per call, e.g. 2.50, or leave empty for no cap"),
        "approval_timeout_s": (_parse_float, "use seconds, e.g. 60"),
        "approval_webhook_url": (_parse_opt_str, "use an https URL that receives approval requests"),
        "dtmf_inter_digit_s": (_parse_float, "use seconds between key presses, e.g. 5"),
        "api_token": (_parse_opt_str, "use a long random string; clients send Authorization: Bearer <token>"),
        "store_path": (_parse_opt_str, "use a file path for the SQLite call store, or empty for memory only"),
        "recording_dir": (_parse_opt_str, "use a directory for stereo WAV recordings, or empty for none"),
        "price_file": (_parse_opt_str, "use a TOML file overriding gateway/prices.toml"),
        "log_level": (_choice("debug", "info", "warning", "error"), "use debug, info, warning or error"),
        "log_format": (_choice("json", "console"), "use json or console"),
        "public_url": (_parse_opt_str, "use the https base URL Twilio reaches, e.g. https://gw.example.com"),
        "transcription_model": (_parse_opt_str, "use e.g. gpt-4o-mini-transcribe, or empty to turn off"),
        "transcription_language": (_parse_opt_str, "use an ISO-639-1 code such as en, or leave empty"),
        # OpenAI SIP.
        "openai_api_base": (_parse_str, "use the OpenAI REST base URL, e.g. https://api.openai.com/v1"),
        # SIP.
        "sip_enabled": (_parse_bool, "use true or false (and add sip to SWITCHBOARD_CARRIERS)"),
        "sip_host": (_parse_str, "use the address to listen on, e.g. 0.0.0.0 or 127.0.0.1"),
        "sip_udp_port": (_parse_int, "use a UDP port such as 5060"),
        "sip_tcp_port": (_parse_int, "use a TCP port such as 5060, or 0 to turn SIP over TCP off"),
        "sip_advertised_host": (_parse_opt_str, "use the IP address trunks reach, e.g. 203.0.113.7"),
        "sip_rtp_port_min": (_parse_int, "use a UDP port such as 10000"),
        "sip_rtp_port_max": (_parse_int, "use a UDP port such as 20000"),
        "sip_answer_delay_ms": (_parse_int, "use milliseconds of ringing before the answer, e.g. 0"),
        "sip_allowed_sources": (_parse_str, "use a comma-separated list of IPs/CIDRs, e.g. 203.0.113.0/24"),
        "sip_username": (_parse_opt_str, "use the user name trunks authenticate with, or leave empty"),
        "sip_password": (_parse_opt_str, "use the password trunks authenticate with, or leave empty"),
        "sip_trunk_host": (_parse_opt_str, "use the trunk's host name or IP, e.g. example.pstn.twilio.com"),
        "sip_trunk_port": (_parse_int, "use the trunk's SIP port, e.g. 5060"),
        "sip_trunk_username": (_parse_opt_str, "use the trunk credential's user name, or leave empty"),
        "sip_trunk_password": (_parse_opt_str, "use the trunk credential's password, or leave empty"),
        "sip_caller_id": (_parse_opt_str, "use the number to call from, e.g. +15551230000"),
        "sip_accept_users": (_parse_str, 'use "*" or a comma-separated list of Request-URI users'),
        "sip_trunk_register": (_parse_bool, "use true or false"),
    }
    keys: list[_Key] = []
    for f in fields(Settings):
        if f.name in std:
            env, fix = std[f.name]
            keys.append(_Key(f.name, env, _parse_opt_str, fix))
            continue
        parse, fix = special.get(f.name, (_parse_str, "see the configuration reference in README.md"))
        keys.append(_Key(f.name, ENV_PREFIX + f.name.upper(), parse, fix))
    return keys


def _validate(s: Settings) -> None:
    if not 0 < s.port < 65536:
        raise ConfigError(f"{ENV_PREFIX}PORT", f"{s.port} is not a TCP port", "use 1-65535")
    if s.chunk_ms < 10 or s.chunk_ms > 200:
        raise ConfigError(f"{ENV_PREFIX}CHUNK_MS", f"{s.chunk_ms} ms is out of range", "use 10-200 ms")
    if s.lead_ms < s.chunk_ms:
        raise ConfigError(
            f"{ENV_PREFIX}LEAD_MS",
            f"{s.lead_ms} ms is shorter than one chunk ({s.chunk_ms} ms)",
            "use at least the chunk size; about 250 ms is a good default",
        )
    if not 0.0 <= s.vad_threshold <= 1.0:
        raise ConfigError(f"{ENV_PREFIX}VAD_THRESHOLD", f"{s.vad_threshold} is outside 0..1", "use e.g. 0.5")
    for key, value in (
        ("MAX_DURATION_S", s.max_duration_s),
        ("APPROVAL_TIMEOUT_S", s.approval_timeout_s),
        ("DTMF_INTER_DIGIT_S", s.dtmf_inter_digit_s),
    ):
        if value <= 0:
            raise ConfigError(ENV_PREFIX + key, f"{value} is not positive", "use a number of seconds above 0")
    if s.idle_timeout_s < 0:
        raise ConfigError(f"{ENV_PREFIX}IDLE_TIMEOUT_S", "is negative", "use seconds, or 0 to turn it off")
    if s.max_calls < 1:
        raise ConfigError(f"{ENV_PREFIX}MAX_CALLS", "must be at least 1", "use e.g. 100")
    for key, url, schemes in (
        ("REALTIME_URL", s.realtime_url, {"ws", "wss"}),
        ("PUBLIC_URL", s.public_url, {"http", "https"}),
        ("TWILIO_API_BASE", s.twilio_api_base, {"http", "https"}),
    ):
        if url is None:
            continue
        parts = urlsplit(url)
        if parts.scheme not in schemes or not parts.netloc:
            raise ConfigError(
                ENV_PREFIX + key,
                f"{url!r} is not a {'/'.join(sorted(schemes))} URL",
                f"use e.g. {sorted(schemes)[-1]}://host[:port]/path",
            )


def load_settings(
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Build `Settings` from `env` (default: os.environ) and an optional TOML file."""
    env = os.environ if env is None else env
    keys = _keys()
    by_env = {k.env: k for k in keys}
    by_attr = {k.attr: k for k in keys}
    values: dict[str, Any] = {}

    if config_file is not None:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                "--config", f"file {str(path)!r} does not exist", "pass an existing file"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{path} is not valid TOML ({exc})", "fix the syntax") from None
        table = data.get("switchboard", {})
        extra = sorted(set(data) - {"switchboard"})
        if extra or not isinstance(table, dict):
            raise ConfigError(
                f"{path}: [{extra[0] if extra else 'switchboard'}]",
                "unknown table",
                "put every setting in the [switchboard] table",
            )
        for name, raw in table.items():
            key = by_attr.get(name)
            if key is None:
                raise ConfigError(f"{path}: {name}", "unknown setting", "check the spelling in README.md")
            values[name] = _coerce(f"{path}: {name}", key, raw)

    for name in env:
        if name.startswith(ENV_PREFIX) and name not in by_env:
            raise ConfigError(name, "unknown setting", "check the spelling against README.md, or unset it")
    for key in keys:
        if key.env in env:
            values[key.attr] = _coerce(key.env, key, env[key.env])

    # An empty credential counts as absent (offline-backend.md).
    for attr in ("openai_api_key", "twilio_account_sid", "twilio_auth_token", "openai_webhook_secret"):
        if isinstance(values.get(attr), str) and not values[attr].strip():
            values[attr] = None
    settings = Settings(**values)
    _validate(settings)
    return settings


def _coerce(label: str, key: _Key, raw: Any) -> Any:
    if isinstance(raw, bool):
        raw = "true" if raw else "false"
    elif isinstance(raw, int | float):
        raw = str(raw)
    elif not isinstance(raw, str):
        raise ConfigError(label, f"{raw!r} has the wrong type", key.fix)
    try:
        return key.parse(raw)
    except ValueError as exc:
        raise ConfigError(label, f"{raw!r} is not valid ({exc})", key.fix) from None


def require_for_serving(s: Settings) -> None:
    """Checks that only matter when answering real calls."""
    twilio_mounted = "media_streams" in {c.strip() for c in s.carriers.split(",")}
    if twilio_mounted and s.verify_signatures and not s.twilio_auth_token:
        raise ConfigError(
            "TWILIO_AUTH_TOKEN",
            "is not set, so Twilio webhook signatures cannot be checked",
            "set it to your Twilio auth token "
            "(or SWITCHBOARD_VERIFY_SIGNATURES=false, for local development only)",
        )
    # `auto` without a key resolves to the offline backend, which needs none.
    if s.backend in ("realtime", "pipeline") and not s.openai_api_key:
        raise ConfigError(
            "OPENAI_API_KEY",
            f"is not set; the {s.backend} backend needs it",
            "export OPENAI_API_KEY=sk-…, or SWITCHBOARD_BACKEND=auto (offline without a key)",
        )
