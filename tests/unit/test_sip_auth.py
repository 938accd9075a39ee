"""Digest authentication: published vectors, challenge parsing, client headers, server checks."""

from __future__ import annotations

import hashlib

import pytest

from sip.auth import (
    Challenge,
    DigestServer,
    Verdict,
    authorization,
    digest_response,
    parse_params,
    pick,
)


def test_rfc2617_section_3_5_md5_example() -> None:
    assert (
        digest_response(
            algorithm="MD5",
            username="Mufasa",
            realm="testrealm@host.com",
            password="Circle Of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop="auth",
            nc="00000001",
            cnonce="0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_examples(algorithm: str, expected: str) -> None:
    assert (
        digest_response(
            algorithm=algorithm,
            username="Mufasa",
            realm="http-auth@example.org",
            password="Circle of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            qop="auth",
            nc="00000001",
            cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        )
        == expected
    )


def test_sha512_256_and_no_qop_follow_the_same_construction() -> None:
    """RFC 8760 SHA-512-256, and RFC 2069 (no qop): H(HA1:nonce:HA2)."""

    def h(text: str) -> str:
        return hashlib.new("sha512_256", text.encode()).hexdigest()

    ha1, ha2 = h("u:r:p"), h("INVITE:sip:x@y")
    assert digest_response(
        algorithm="SHA-512-256",
        username="u",
        realm="r",
        password="p",
        method="INVITE",
        uri="sip:x@y",
        nonce="n",
    ) == h(f"{ha1}:n:{ha2}")


def test_challenge_parsing_and_strongest_choice() -> None:
    md5 = Challenge.parse('Digest realm="sip.twilio.com",nonce="abc",qop="auth"', proxy=True)
    assert (md5.realm, md5.nonce, md5.algorithm, md5.qop, md5.proxy) == (
        "sip.twilio.com",
        "abc",
        "MD5",
        ("auth",),
        True,
    )
    sha = Challenge.parse(
        'Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth,auth-int", opaque="o", stale=TRUE'
    )
    assert (sha.algorithm, sha.qop, sha.opaque, sha.stale) == ("SHA-256", ("auth", "auth-int"), "o", True)
    only_int = Challenge.parse('Digest realm="r", nonce="n", qop="auth-int"')
    unknown = Challenge.parse('Digest realm="r", nonce="n", algorithm=SHA-1')
    assert pick([md5, sha, only_int, unknown]) is sha  # RFC 8760 §2.4: the strongest we can do
    assert pick([only_int, unknown]) is None
    with pytest.raises(ValueError, match="not a Digest challenge"):
        Challenge.parse('Basic realm="r"')
    with pytest.raises(ValueError, match="without realm or nonce"):
        Challenge.parse('Digest realm="r"')
    assert parse_params('a="x, \\"y\\"", b=z') == {"a": 'x, "y"', "b": "z"}


def test_authorization_header_is_verifiable() -> None:
    challenge = Challenge.parse('Digest realm="trunk", nonce="n1", qop="auth", opaque="op"', proxy=True)
    value = authorization(
        challenge, username="u", password="p", method="INVITE", uri="sip:+1555@trunk", cnonce="c0", nc=1
    )
    params = parse_params(value.removeprefix("Digest "))
    assert params == {
        "username": "u",
        "realm": "trunk",
        "nonce": "n1",
        "uri": "sip:+1555@trunk",
        "response": digest_response(
            algorithm="MD5",
            username="u",
            realm="trunk",
            password="p",
            method="INVITE",
            uri="sip:+1555@trunk",
            nonce="n1",
            qop="auth",
            nc="00000001",
            cnonce="c0",
        ),
        "algorithm": "MD5",
        "cnonce": "c0",
        "qop": "auth",
        "nc": "00000001",
        "opaque": "op",
    }


def _server() -> DigestServer:
    return DigestServer(
        realm="switchboard", username="trunk", password="s3cret", secret=b"k" * 32, nonce_ttl_s=60
    )


def _answer(server: DigestServer, now: float, *, password: str = "s3cret", nc: int = 1) -> str:
    challenge = Challenge.parse(server.challenge(now))
    return authorization(
        challenge, username="trunk", password=password, method="INVITE", uri="sip:bot@gw", cnonce="cc", nc=nc
    )


def test_server_accepts_good_credentials_and_refuses_the_rest() -> None:
    server = _server()
    assert server.verify(None, method="INVITE", now=0.0) is Verdict.MISSING
    good = _answer(server, 10.0)
    assert server.verify(good, method="INVITE", now=11.0) is Verdict.OK
    assert server.verify(good, method="INVITE", now=12.0) is Verdict.BAD  # the same nc again: replay
    assert server.verify(_answer(server, 10.0, nc=2), method="INVITE", now=12.0) is Verdict.OK
    assert server.verify(_answer(server, 10.0, password="wrong"), method="INVITE", now=11.0) is Verdict.BAD
    assert server.verify(_answer(server, 10.0), method="BYE", now=11.0) is Verdict.BAD  # method is hashed
    assert server.verify(_answer(server, 10.0), method="INVITE", now=100.0) is Verdict.STALE
    forged = _answer(server, 10.0).replace('nonce="', 'nonce="0')
    assert server.verify(forged, method="INVITE", now=11.0) is Verdict.BAD
    assert server.verify('Digest username="trunk", broken', method="INVITE", now=11.0) is Verdict.BAD
    assert "stale=true" in server.challenge(0.0, stale=True)
