"""SIP settings (SWITCHBOARD_SIP_*): defaults, checks that name the key and the fix, the plugin."""

from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest

from gateway.config import ConfigError, load_settings
from sip.config import sip_config
from sip.service import disposition_for


def cfg(**env: str):  # type: ignore[no-untyped-def]
    return sip_config(load_settings(env={f"SWITCHBOARD_SIP_{k.upper()}": v for k, v in env.items()}))


def test_defaults_listen_on_loopback_and_admit_loopback() -> None:
    c = cfg()
    assert (c.host, c.udp_port, c.tcp_port, c.advertised_host) == ("127.0.0.1", 5060, 5060, "127.0.0.1")
    assert (c.rtp_port_min, c.rtp_port_max, c.answer_delay_s) == (10000, 20000, 0.0)
    assert c.allowed_sources is not None
    assert ipaddress.ip_address("127.0.0.1") in c.allowed_sources[0]
    assert c.accepts("anything")
    assert load_settings(env={}).sip_enabled is False


def test_values_are_parsed() -> None:
    c = cfg(
        host="0.0.0.0",
        advertised_host="203.0.113.7",
        tcp_port="0",
        allowed_sources="198.51.100.0/24, 192.0.2.1",
        accept_users="bot,+15551230000",
        answer_delay_ms="1500",
        trunk_host="trunk.example.com",
        trunk_username="u",
        trunk_password="p",
    )
    assert c.tcp_port is None
    assert c.advertised_host == "203.0.113.7"
    assert [str(n) for n in c.allowed_sources or ()] == ["198.51.100.0/24", "192.0.2.1/32"]
    assert c.accepts("bot")
    assert not c.accepts("other")
    assert c.answer_delay_s == 1.5
    assert c.trunk_credentials == ("u", "p")


@pytest.mark.parametrize(
    ("env", "key", "fix"),
    [
        (
            {"host": "0.0.0.0", "allowed_sources": "*"},
            "SWITCHBOARD_SIP_ADVERTISED_HOST",
            "IP address your trunk reaches",
        ),
        (
            {"host": "0.0.0.0", "advertised_host": "203.0.113.7"},
            "SWITCHBOARD_SIP_ALLOWED_SOURCES",
            "trunk's addresses",
        ),
        ({"allowed_sources": "10.0.0.300"}, "SWITCHBOARD_SIP_ALLOWED_SOURCES", "comma-separated list"),
        ({"udp_port": "70000"}, "SWITCHBOARD_SIP_UDP_PORT", "0-65535"),
        ({"rtp_port_min": "80"}, "SWITCHBOARD_SIP_RTP_PORT_MIN", "1024"),
        (
            {"rtp_port_min": "20000", "rtp_port_max": "20000"},
            "SWITCHBOARD_SIP_RTP_PORT_MAX",
            "above the minimum",
        ),
        ({"answer_delay_ms": "-1"}, "SWITCHBOARD_SIP_ANSWER_DELAY_MS", "0-60000"),
        ({"username": "u"}, "SWITCHBOARD_SIP_PASSWORD", "set both"),
        ({"trunk_password": "p"}, "SWITCHBOARD_SIP_TRUNK_USERNAME", "set both"),
        ({"trunk_register": "true"}, "SWITCHBOARD_SIP_TRUNK_REGISTER", "SWITCHBOARD_SIP_TRUNK_HOST"),
        ({"accept_users": " , "}, "SWITCHBOARD_SIP_ACCEPT_USERS", '"*"'),
    ],
)
def test_bad_settings_name_the_key_and_the_fix(env: dict[str, str], key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg(**env)
    assert info.value.key == key
    assert fix in str(info.value)


def test_env_parse_errors_name_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"SWITCHBOARD_SIP_UDP_PORT": "five"})
    assert info.value.key == "SWITCHBOARD_SIP_UDP_PORT"
    with pytest.raises(ConfigError) as info:
        load_settings(env={"SWITCHBOARD_SIP_ENABLED": "maybe"})
    assert "true or false" in str(info.value)


def test_digest_alone_is_enough_on_a_public_address() -> None:
    c = cfg(host="0.0.0.0", advertised_host="203.0.113.7", username="trunk", password="pw")
    assert c.allowed_sources is None  # digest decides


STATUS_DISPOSITIONS = [
    (200, "answered"),
    (486, "busy"),
    (600, "busy"),
    (480, "no_answer"),
    (487, "no_answer"),
    (408, "no_answer"),
    (403, "rejected"),
    (404, "rejected"),
    (603, "rejected"),
    (407, "rejected"),
    (500, "failed"),
    (503, "failed"),
]


@pytest.mark.parametrize(("status", "disposition"), STATUS_DISPOSITIONS)
def test_final_status_to_disposition(status: int, disposition: str) -> None:
    assert disposition_for(status) == disposition


@pytest.mark.parametrize(
    "code",
    [
        "import sip; p = sip.plugin; import sip.outbound",
        "import sip.outbound, sip; p = sip.plugin",  # the submodule first: `sip.plugin` is the module
    ],
)
def test_the_app_finds_the_plugin_in_either_import_order(code: str) -> None:
    """`SWITCHBOARD_CARRIERS=sip` loads `sip.plugin`; it must behave as the plugin whether Python
    bound that name to the lazy object or to the submodule."""
    check = (
        f"{code}\n"
        "from gateway.app import load_carriers\n"
        "[plugin] = load_carriers('sip')\n"
        "assert plugin.name == 'sip', plugin.name\n"
        "assert callable(plugin.lifespan) and callable(plugin.routes)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr
