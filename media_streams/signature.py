"""`X-Twilio-Signature` checks for Twilio webhooks and the Media Streams WebSocket upgrade.

The HMAC itself is twilio-python's `RequestValidator` (protocols.md §1.5): it builds the signed string
(URL + sorted key/value pairs), tries the URL with and without an explicit port, and compares with its
own `compare()`. That compare rejects a length mismatch at once (signatures are fixed-length, so that
leaks nothing) and otherwise walks every character without stopping early. It is not
`hmac.compare_digest`, but it has no data-dependent exit either, which is the property we need.

What this module adds is typing, "missing is invalid", never raising on peer-controlled input, and
`expected_url`: which URL Twilio signed, given how the request reached us (bridge-rules.md,
"Signatures").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import urlsplit, urlunsplit

from twilio.request_validator import RequestValidator

__all__ = ["SIGNATURE_HEADER", "compute_signature", "expected_url", "is_valid"]

SIGNATURE_HEADER = "X-Twilio-Signature"

Params = Mapping[str, str] | Iterable[tuple[str, str]]
"""Form fields as a mapping, or as (key, value) pairs when a key repeats (Starlette's
`FormData.multi_items()`); Twilio signs every value of a repeated key, sorted (protocols.md §1.5)."""

_WS_SCHEME = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_HTTP_SCHEME = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


class _MultiParams:
    """Repeated form keys in the shape `RequestValidator.get_values` looks for (Django's `getlist`)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for key, value in pairs:
            self._values.setdefault(key, []).append(value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __bool__(self) -> bool:
        return bool(self._values)

    def getlist(self, key: str) -> list[str]:
        return self._values[key]


def _for_validator(params: Params | None) -> Mapping[str, str] | _MultiParams:
    if params is None:
        return {}
    if isinstance(params, Mapping):
        return params
    return _MultiParams(params)


def compute_signature(auth_token: str, url: str, params: Params | None = None) -> str:
    """The `X-Twilio-Signature` Twilio would send for `url` and form `params` (HMAC-SHA1, base64)."""
    signature: str = RequestValidator(auth_token).compute_signature(url, _for_validator(params))
    return signature


def is_valid(auth_token: str, url: str, params: Params | None, signature: str | None) -> bool:
    """True if `signature` is Twilio's for `url` + `params`. Missing or empty is invalid; never raises.

    `url` is what `expected_url` returns. The library also accepts the URL with its port removed or
    with the default port added; it assumes port 80 for every scheme but `https`, so for `wss` URLs
    we also try `:443` (bridge-rules.md: accept with and without an explicit default port).
    """
    if not signature or not auth_token:
        return False
    validator = RequestValidator(auth_token)
    fields = _for_validator(params)
    try:
        if validator.validate(url, fields, signature):
            return True
        parts = urlsplit(url)
        if parts.scheme == "wss" and parts.port is None and parts.hostname:
            with_port = urlunsplit(parts._replace(netloc=f"{parts.netloc}:443"))
            return bool(validator.validate(with_port, fields, signature))
    except ValueError:
        # A peer-supplied host (X-Forwarded-Host, Host) can make urlparse choke: bad port, stray
        # bracket, or text that does not encode. Such a URL matches no signature Twilio made.
        return False
    return False


def expected_url(
    *,
    path: str,
    query: str,
    scheme: str,
    host: str,
    headers: Mapping[str, str],
    public_url: str | None,
    trust_forwarded: bool,
    websocket: bool,
) -> str:
    """The URL Twilio signed for this request (bridge-rules.md, "Signatures").

    path: the request path as it reached the app (percent-encoded as sent).
    query: the raw query string without "?", or "".
    scheme, host: the request's own scheme ("http"/"https"/"ws"/"wss") and Host header.
    headers: request headers; looked up case-insensitively.
    public_url: SWITCHBOARD_PUBLIC_URL. When set it wins: its scheme, host and base path, then `path`.
        Raises ValueError if it is not absolute (a configuration error, never peer input).
    trust_forwarded: the peer is a trusted proxy, so X-Forwarded-Proto/-Host describe the public URL.
    websocket: the Media Streams upgrade. Signed as `wss://host/path` with no params and no query
        (Twilio drops query strings from the <Stream> url, protocols.md §0/§1.5), so the scheme maps
        http→ws, https→wss and any query is left out. Webhooks keep a non-empty query, since Twilio
        signs the full URL it requested.
    """
    base_path = ""
    if public_url:
        public = urlsplit(public_url.strip())
        if not public.scheme or not public.netloc:
            # Our own configuration, not peer input: fail loudly rather than check against garbage.
            raise ValueError(f"public_url must be absolute, like https://host[/base]: {public_url!r}")
        scheme, host = public.scheme, public.netloc
        base_path = public.path.rstrip("/")
    elif trust_forwarded:
        scheme = _first(_header(headers, "x-forwarded-proto")) or scheme
        host = _first(_header(headers, "x-forwarded-host")) or host

    scheme = scheme.strip().lower()
    scheme = (_WS_SCHEME if websocket else _HTTP_SCHEME).get(scheme, scheme)
    if path and not path.startswith("/"):
        path = "/" + path
    full_path = (base_path + path) or "/"
    keep_query = query if (query and not websocket) else ""
    return urlunsplit((scheme, host.strip(), full_path, keep_query, ""))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that also works on a plain dict (Starlette's `Headers` already is)."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None


def _first(value: str | None) -> str:
    """First entry of a proxy list header: the hop nearest the client (`X-Forwarded-Proto: https, http`)."""
    if not value:
        return ""
    return value.split(",", 1)[0].strip()
