"""HTTP digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760). Pure.

Client side: read the challenges of a 401 (`WWW-Authenticate`) or 407 (`Proxy-Authenticate`),
pick the strongest algorithm offered (RFC 8760 §2.4: SHA-512-256 > SHA-256 > MD5) and build
the `Authorization` / `Proxy-Authorization` value:

    HA1 = H(username ":" realm ":" password)
    HA2 = H(method ":" digest-uri)
    response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)     with qop=auth
    response = H(HA1 ":" nonce ":" HA2)                              without qop (RFC 2069)

Server side (inbound digest for trunks that authenticate that way): `DigestServer` issues
nonces that carry their own issue time and an HMAC, so no per-nonce state is needed to check
them; a small bounded map of the highest `nc` per nonce refuses replays.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum

ALGORITHMS: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
_STRENGTH = {"MD5": 0, "SHA-256": 1, "SHA-512-256": 2}
_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')


def _h(algorithm: str, text: str) -> str:
    return hashlib.new(ALGORITHMS[algorithm], text.encode("utf-8")).hexdigest()


def parse_params(text: str) -> dict[str, str]:
    """`realm="a", nonce="b", qop="auth,auth-int", algorithm=MD5` → dict (keys lower case)."""
    out: dict[str, str] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _PARAM_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"bad digest parameters near {text[pos : pos + 20]!r}")
        value = m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out[m.group(1).lower()] = value
        pos = m.end()
    return out


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class Challenge:
    """One `Digest` challenge. `proxy` is True for 407/Proxy-Authenticate."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False

    @classmethod
    def parse(cls, value: str, *, proxy: bool = False) -> Challenge:
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() != "digest":
            raise ValueError(f"not a Digest challenge ({scheme[:20]!r})")
        params = parse_params(rest)
        if "realm" not in params or "nonce" not in params:
            raise ValueError("Digest challenge without realm or nonce")
        algorithm = params.get("algorithm", "MD5").upper()
        qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
        return cls(
            realm=params["realm"],
            nonce=params["nonce"],
            algorithm=algorithm,
            qop=qop,
            opaque=params.get("opaque"),
            stale=params.get("stale", "").lower() == "true",
            proxy=proxy,
        )

    @property
    def supported(self) -> bool:
        return self.algorithm in ALGORITHMS and (not self.qop or "auth" in self.qop)


def pick(challenges: list[Challenge]) -> Challenge | None:
    """The strongest challenge we can answer (RFC 8760 §2.4), or None."""
    usable = [c for c in challenges if c.supported]
    return max(usable, key=lambda c: _STRENGTH[c.algorithm], default=None)


def digest_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str = "00000001",
    cnonce: str = "",
) -> str:
    """The `response` value (RFC 2617 §3.2.2.1, RFC 7616 §3.4.1 with qop=auth or none)."""
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    ha2 = _h(algorithm, f"{method}:{uri}")
    if qop:
        return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(algorithm, f"{ha1}:{nonce}:{ha2}")


def authorization(
    challenge: Challenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    cnonce: str,
    nc: int = 1,
) -> str:
    """The value of the `Authorization` (or `Proxy-Authorization`) header answering `challenge`."""
    qop = "auth" if "auth" in challenge.qop else None
    nc_text = f"{nc:08x}"
    response = digest_response(
        algorithm=challenge.algorithm,
        username=username,
        realm=challenge.realm,
        password=password,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
    )
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={challenge.algorithm}",
    ]
    if qop:
        parts += [f"cnonce={_quote(cnonce)}", f"qop={qop}", f"nc={nc_text}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)


# --------------------------------------------------------------------------- server side


class Verdict(StrEnum):
    OK = "ok"
    MISSING = "missing"  # no credentials: challenge (401)
    STALE = "stale"  # right password, expired nonce: challenge again with stale=true
    BAD = "bad"  # wrong user/password, forged nonce or a replay: 403


class DigestServer:
    """Checks inbound credentials. Nonces are `<issued-ms hex>.<hmac>`; `now` is passed in."""

    MAX_TRACKED_NONCES = 4096

    def __init__(
        self,
        *,
        realm: str,
        username: str,
        password: str,
        secret: bytes,
        nonce_ttl_s: float = 300.0,
        algorithm: str = "MD5",
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unsupported digest algorithm {algorithm!r}")
        self.realm = realm
        self.username = username
        self.password = password
        self.secret = secret
        self.nonce_ttl_s = nonce_ttl_s
        self.algorithm = algorithm
        self._nc: OrderedDict[str, int] = OrderedDict()

    def _mac(self, stamp: str) -> str:
        return hmac.new(self.secret, stamp.encode(), hashlib.sha256).hexdigest()[:32]

    def nonce(self, now: float) -> str:
        stamp = f"{int(now * 1000):x}"
        return f"{stamp}.{self._mac(stamp)}"

    def challenge(self, now: float, *, stale: bool = False) -> str:
        """A `WWW-Authenticate` value."""
        value = (
            f"Digest realm={_quote(self.realm)}, nonce={_quote(self.nonce(now))}, "
            f'algorithm={self.algorithm}, qop="auth"'
        )
        return value + (", stale=true" if stale else "")

    def verify(self, header: str | None, *, method: str, now: float) -> Verdict:
        if header is None:
            return Verdict.MISSING
        scheme, _, rest = header.strip().partition(" ")
        if scheme.lower() != "digest":
            return Verdict.MISSING
        try:
            params = parse_params(rest)
        except ValueError:
            return Verdict.BAD
        nonce = params.get("nonce", "")
        stamp, dot, mac = nonce.partition(".")
        if not dot or not hmac.compare_digest(mac, self._mac(stamp)):
            return Verdict.BAD
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm not in ALGORITHMS or params.get("realm") != self.realm:
            return Verdict.BAD
        if params.get("username") != self.username:
            return Verdict.BAD
        qop = params.get("qop")
        if qop not in (None, "auth"):
            return Verdict.BAD
        expected = digest_response(
            algorithm=algorithm,
            username=self.username,
            realm=self.realm,
            password=self.password,
            method=method,
            uri=params.get("uri", ""),
            nonce=nonce,
            qop=qop,
            nc=params.get("nc", ""),
            cnonce=params.get("cnonce", ""),
        )
        if not hmac.compare_digest(expected, params.get("response", "")):
            return Verdict.BAD
        try:
            issued = int(stamp, 16) / 1000
        except ValueError:
            return Verdict.BAD
        if now - issued > self.nonce_ttl_s or issued - now > 1.0:
            return Verdict.STALE
        if qop:
            try:
                nc = int(params.get("nc", ""), 16)
            except ValueError:
                return Verdict.BAD
            if nc <= self._nc.get(nonce, 0):
                return Verdict.BAD  # replayed request counter
            self._nc[nonce] = nc
            self._nc.move_to_end(nonce)
            while len(self._nc) > self.MAX_TRACKED_NONCES:
                self._nc.popitem(last=False)
        return Verdict.OK
