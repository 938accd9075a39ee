"""media_streams.signature: protocols.md §1.5 vectors, URL reconstruction (bridge-rules.md "Signatures")."""

from __future__ import annotations

import pytest

from media_streams.signature import compute_signature, expected_url, is_valid

TOKEN = "12345"
# protocols.md §1.5, row 1 (the same vector as twilio-python's own test_request_validator.py).
WEBHOOK_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
WEBHOOK_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
WEBHOOK_SIG = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
# protocols.md §1.5, row 2: the Media Streams upgrade is signed over the wss:// URL with no params.
WS_URL = "wss://example.com/media-stream"
WS_SIG = "XFfwGS2Ev7f9qAP9MmRoMS7C724="


# --------------------------------------------------------------------------- vectors


def test_webhook_vector() -> None:
    assert compute_signature(TOKEN, WEBHOOK_URL, WEBHOOK_PARAMS) == WEBHOOK_SIG
    assert is_valid(TOKEN, WEBHOOK_URL, WEBHOOK_PARAMS, WEBHOOK_SIG)


def test_webhook_vector_as_pairs() -> None:
    # Starlette's FormData.multi_items() shape.
    pairs = list(WEBHOOK_PARAMS.items())
    assert compute_signature(TOKEN, WEBHOOK_URL, pairs) == WEBHOOK_SIG
    assert is_valid(TOKEN, WEBHOOK_URL, pairs, WEBHOOK_SIG)


def test_websocket_vector() -> None:
    assert compute_signature(TOKEN, WS_URL) == WS_SIG
    assert compute_signature(TOKEN, WS_URL, {}) == WS_SIG
    assert is_valid(TOKEN, WS_URL, None, WS_SIG)
    assert is_valid(TOKEN, WS_URL, {}, WS_SIG)


def test_repeated_keys_are_signed_sorted() -> None:
    # Twilio signs each value of a repeated key, values sorted (protocols.md §1.5).
    url = "https://gw.example.com/twilio/status"
    pairs = [("StatusCallbackEvent", "ringing"), ("StatusCallbackEvent", "answered"), ("CallSid", "CA1")]
    signature = compute_signature(TOKEN, url, pairs)
    assert signature == compute_signature(
        TOKEN, url + "CallSidCA1StatusCallbackEventansweredStatusCallbackEventringing"
    )
    assert is_valid(TOKEN, url, list(reversed(pairs)), signature)
    assert not is_valid(TOKEN, url, pairs[1:], signature)


# --------------------------------------------------------------------------- rejections


@pytest.mark.parametrize("signature", [None, "", " "])
def test_missing_or_blank_signature_is_invalid(signature: str | None) -> None:
    assert not is_valid(TOKEN, WS_URL, None, signature)


@pytest.mark.parametrize(
    ("token", "url", "params", "signature"),
    [
        ("54321", WS_URL, None, WS_SIG),  # wrong token
        (TOKEN, "ws://example.com/media-stream", None, WS_SIG),  # scheme is signed
        (TOKEN, "wss://example.com/media-stream?x=1", None, WS_SIG),  # query is signed
        (TOKEN, "wss://example.com/media-stream/", None, WS_SIG),  # path is signed exactly
        (TOKEN, "wss://evil.example/media-stream", None, WS_SIG),  # host is signed
        (TOKEN, WS_URL, {"a": "b"}, WS_SIG),  # params are signed
        (TOKEN, WS_URL, None, WS_SIG[:-1] + "A"),  # one character off
        (TOKEN, WS_URL, None, WS_SIG + "A"),  # length differs
        (TOKEN, WEBHOOK_URL, {**WEBHOOK_PARAMS, "Digits": "1235"}, WEBHOOK_SIG),
        (TOKEN, "https://mycompany.com/myapp.php?foo=1&bar=3", WEBHOOK_PARAMS, WEBHOOK_SIG),
        ("", WS_URL, None, WS_SIG),  # unconfigured token never validates
    ],
)
def test_tampering_is_invalid(token: str, url: str, params: dict[str, str] | None, signature: str) -> None:
    assert not is_valid(token, url, params, signature)


@pytest.mark.parametrize(
    "url",
    [
        "wss://example.com:notaport/media-stream",
        "wss://example.com:99999/media-stream",
        "wss://[example.com/media-stream",
        "wss://exa\ud800mple.com/media-stream",  # cannot be UTF-8 encoded
        "",
    ],
)
def test_hostile_urls_are_invalid_not_errors(url: str) -> None:
    # The host part comes from Host / X-Forwarded-Host, which a peer controls.
    assert not is_valid(TOKEN, url, None, WS_SIG)


# --------------------------------------------------------------------------- default ports


@pytest.mark.parametrize(
    ("signed", "checked"),
    [
        ("wss://example.com/media-stream", "wss://example.com:443/media-stream"),
        ("wss://example.com:443/media-stream", "wss://example.com/media-stream"),
        ("https://example.com/hook", "https://example.com:443/hook"),
        ("https://example.com:443/hook", "https://example.com/hook"),
        ("http://example.com/hook", "http://example.com:80/hook"),
        ("ws://example.com:80/media", "ws://example.com/media"),
        # A non-default port the request carries is also accepted without it (library behaviour).
        ("wss://example.com/media-stream", "wss://example.com:8443/media-stream"),
    ],
)
def test_default_port_variants_are_accepted(signed: str, checked: str) -> None:
    assert is_valid(TOKEN, checked, None, compute_signature(TOKEN, signed))


def test_wrong_port_is_not_added() -> None:
    signed = compute_signature(TOKEN, "wss://example.com:8443/media-stream")
    assert not is_valid(TOKEN, "wss://example.com:443/media-stream", None, signed)


# --------------------------------------------------------------------------- expected_url


def _url(
    *,
    path: str = "/media-stream",
    query: str = "",
    scheme: str = "ws",
    host: str = "10.0.0.5:8080",
    headers: dict[str, str] | None = None,
    public_url: str | None = None,
    trust_forwarded: bool = False,
    websocket: bool = True,
) -> str:
    return expected_url(
        path=path,
        query=query,
        scheme=scheme,
        host=host,
        headers=headers or {},
        public_url=public_url,
        trust_forwarded=trust_forwarded,
        websocket=websocket,
    )


PROXY_HEADERS = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "example.com"}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # public_url wins over everything, forwarded headers included.
        ({"public_url": "https://example.com"}, WS_URL),
        ({"public_url": "https://example.com/", "trust_forwarded": True, "headers": PROXY_HEADERS}, WS_URL),
        ({"public_url": "https://example.com", "headers": {"X-Forwarded-Host": "evil.test"}}, WS_URL),
        ({"public_url": "http://example.com"}, "ws://example.com/media-stream"),
        ({"public_url": "https://example.com:8443"}, "wss://example.com:8443/media-stream"),
        # ... with its base path in front of the request path.
        (
            {"public_url": "https://example.com/sb/", "path": "/twilio/media"},
            "wss://example.com/sb/twilio/media",
        ),
        # The upgrade is signed without query (Twilio drops it from the <Stream> url).
        ({"public_url": "https://example.com", "query": "x=1"}, WS_URL),
        # Webhooks keep a non-empty query, and stay http(s).
        (
            {
                "public_url": "https://mycompany.com",
                "path": "/myapp.php",
                "query": "foo=1&bar=2",
                "websocket": False,
            },
            WEBHOOK_URL,
        ),
        (
            {"public_url": "https://mycompany.com", "path": "/myapp.php", "websocket": False},
            "https://mycompany.com/myapp.php",
        ),
        # Trusted proxy: X-Forwarded-Proto/Host, https → wss.
        ({"trust_forwarded": True, "headers": PROXY_HEADERS}, WS_URL),
        (
            {
                "trust_forwarded": True,
                "headers": {"x-forwarded-proto": "HTTPS", "x-forwarded-host": "example.com"},
            },
            WS_URL,
        ),
        # First value of a comma list: the hop nearest the client.
        (
            {
                "trust_forwarded": True,
                "headers": {"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "example.com, lb"},
            },
            WS_URL,
        ),
        # Only one header forwarded: the other comes from the request.
        (
            {"trust_forwarded": True, "headers": {"X-Forwarded-Proto": "https"}},
            "wss://10.0.0.5:8080/media-stream",
        ),
        (
            {"trust_forwarded": True, "headers": {"X-Forwarded-Host": "example.com"}},
            "ws://example.com/media-stream",
        ),
        (
            {"trust_forwarded": True, "headers": PROXY_HEADERS, "websocket": False, "scheme": "http"},
            "https://example.com/media-stream",
        ),
        # Untrusted peer: forwarded headers are ignored; the request's own scheme and host.
        ({"headers": PROXY_HEADERS}, "ws://10.0.0.5:8080/media-stream"),
        ({"scheme": "wss", "host": "example.com"}, WS_URL),
        ({"scheme": "https", "host": "example.com"}, WS_URL),  # http-style scheme on the upgrade
        ({"scheme": "ws", "host": "example.com", "websocket": False}, "http://example.com/media-stream"),
        ({"scheme": "https", "host": "example.com:443"}, "wss://example.com:443/media-stream"),
        ({"path": "", "scheme": "wss", "host": "example.com"}, "wss://example.com/"),
    ],
)
def test_expected_url(kwargs: dict[str, object], expected: str) -> None:
    assert _url(**kwargs) == expected  # type: ignore[arg-type]


def test_expected_url_then_vector_end_to_end() -> None:
    # The proxied upgrade of protocols.md §1.5: rebuilt from X-Forwarded-*, checked against the vector.
    url = _url(trust_forwarded=True, headers=PROXY_HEADERS)
    assert is_valid(TOKEN, url, None, WS_SIG)
    # An explicit :443 in the Host header still validates (default-port variant).
    url = _url(scheme="wss", host="example.com:443")
    assert is_valid(TOKEN, url, None, WS_SIG)
    # Without trust, the same proxied request does not.
    assert not is_valid(TOKEN, _url(headers=PROXY_HEADERS), None, WS_SIG)


def test_public_url_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="absolute"):
        _url(public_url="example.com")
