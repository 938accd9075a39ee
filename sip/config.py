"""The SIP settings, checked together: `sip_config(settings)` → `SipConfig` or `ConfigError`.

`gateway/config.py` parses each `SWITCHBOARD_SIP_*` value on its own; the rules that involve
several keys (an advertised address when binding a wildcard, a port range, who may call us)
live here, and every error names the key and the fix, like the gateway's own.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from gateway.config import ConfigError, Settings

P = "SWITCHBOARD_SIP_"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class SipConfig:
    host: str
    udp_port: int  # 0 = any free port (tests)
    tcp_port: int | None  # None = TCP off
    advertised_host: str
    rtp_port_min: int
    rtp_port_max: int
    answer_delay_s: float
    allowed_sources: tuple[Network, ...] | None  # None = anyone (digest then decides)
    username: str | None
    password: str | None
    trunk_host: str | None
    trunk_port: int
    trunk_username: str | None
    trunk_password: str | None
    caller_id: str | None
    accept_users: frozenset[str] | None  # None = every Request-URI user
    register: bool

    @property
    def trunk_credentials(self) -> tuple[str, str] | None:
        if self.trunk_username and self.trunk_password:
            return (self.trunk_username, self.trunk_password)
        return None

    def accepts(self, user: str) -> bool:
        return self.accept_users is None or user in self.accept_users


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _port(key: str, value: int, *, allow_zero: bool) -> int:
    low = 0 if allow_zero else 1
    if not low <= value <= 65535:
        raise ConfigError(P + key, f"{value} is not a port", f"use {low}-65535")
    return value


def sip_config(s: Settings) -> SipConfig:
    """Check the SIP settings as a whole. Raises `ConfigError` naming the key and the fix."""
    udp = _port("UDP_PORT", s.sip_udp_port, allow_zero=True)
    tcp = _port("TCP_PORT", s.sip_tcp_port, allow_zero=True)
    advertised = s.sip_advertised_host
    if not advertised:
        if _is_wildcard(s.sip_host):
            raise ConfigError(
                P + "ADVERTISED_HOST",
                f"is not set and {P}HOST is {s.sip_host}, an address peers cannot reach",
                "set it to the IP address your trunk reaches (it goes in Contact and SDP c=)",
            )
        advertised = s.sip_host
    low, high = s.sip_rtp_port_min, s.sip_rtp_port_max
    if not 1024 <= low <= 65535:
        raise ConfigError(
            P + "RTP_PORT_MIN", f"{low} is out of range", "use a port from 1024 to 65535, e.g. 10000"
        )
    if not low + 1 <= high <= 65535:
        raise ConfigError(
            P + "RTP_PORT_MAX",
            f"{high} leaves no room above {P}RTP_PORT_MIN ({low})",
            "use a port above the minimum, e.g. 20000 (two ports per call)",
        )
    if not 0 <= s.sip_answer_delay_ms <= 60_000:
        raise ConfigError(P + "ANSWER_DELAY_MS", f"{s.sip_answer_delay_ms} ms is out of range", "use 0-60000")
    if bool(s.sip_username) != bool(s.sip_password):
        raise ConfigError(
            P + ("PASSWORD" if s.sip_username else "USERNAME"),
            "is not set but its pair is",
            f"set both {P}USERNAME and {P}PASSWORD for inbound digest, or neither",
        )
    if bool(s.sip_trunk_username) != bool(s.sip_trunk_password):
        raise ConfigError(
            P + ("TRUNK_PASSWORD" if s.sip_trunk_username else "TRUNK_USERNAME"),
            "is not set but its pair is",
            f"set both {P}TRUNK_USERNAME and {P}TRUNK_PASSWORD, or neither",
        )
    _port("TRUNK_PORT", s.sip_trunk_port, allow_zero=False)
    if s.sip_trunk_register and not s.sip_trunk_host:
        raise ConfigError(P + "TRUNK_REGISTER", "needs a trunk to register with", f"set {P}TRUNK_HOST")
    sources = _sources(s)
    users = frozenset(u.strip() for u in s.sip_accept_users.split(",") if u.strip())
    if not users:
        raise ConfigError(
            P + "ACCEPT_USERS", "is empty, so every call would get 404", 'use "*" or a list of users'
        )
    return SipConfig(
        host=s.sip_host,
        udp_port=udp,
        tcp_port=tcp or None,
        advertised_host=advertised,
        rtp_port_min=low,
        rtp_port_max=high,
        answer_delay_s=s.sip_answer_delay_ms / 1000,
        allowed_sources=sources,
        username=s.sip_username,
        password=s.sip_password,
        trunk_host=s.sip_trunk_host,
        trunk_port=s.sip_trunk_port,
        trunk_username=s.sip_trunk_username,
        trunk_password=s.sip_trunk_password,
        caller_id=s.sip_caller_id,
        accept_users=None if "*" in users else users,
        register=s.sip_trunk_register,
    )


def _sources(s: Settings) -> tuple[Network, ...] | None:
    raw = [part.strip() for part in s.sip_allowed_sources.split(",") if part.strip()]
    if "*" in raw:
        return None
    networks: list[Network] = []
    for part in raw:
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(
                P + "ALLOWED_SOURCES",
                f"{part!r} is not an IP address or CIDR block",
                "use a comma-separated list such as 203.0.113.0/24,198.51.100.7",
            ) from None
    if networks:
        return tuple(networks)
    if _is_loopback(s.sip_host):
        # Development default: a loopback listener admits loopback peers.
        return (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    if s.sip_username and s.sip_password:
        return None  # digest decides
    raise ConfigError(
        P + "ALLOWED_SOURCES",
        f"is empty while listening on {s.sip_host}, so every call would be refused",
        f"list your trunk's addresses (IPs or CIDRs), set {P}USERNAME/{P}PASSWORD for digest, "
        'or use "*" to admit any source',
    )
