"""Digest authentication against the published test vectors of RFC 2617 and RFC 7616."""

from __future__ import annotations

import pytest

from agent.sip.auth import DigestClient, digest_response, parse_challenge
from agent.sip.message import SipParseError


def test_rfc2617_vector() -> None:
    # RFC 2617 §3.5 (GET /dir/index.html, Mufasa / Circle Of Life).
    assert (
        digest_response(
            username="Mufasa",
            password="Circle Of Life",
            realm="testrealm@host.com",
            method="GET",
            uri="/dir/index.html",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop="auth",
            nc=1,
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
def test_rfc7616_vectors(algorithm: str, expected: str) -> None:
    # RFC 7616 §3.9.1 (Mufasa / Circle of Life, http-auth@example.org).
    assert (
        digest_response(
            username="Mufasa",
            password="Circle of Life",
            realm="http-auth@example.org",
            method="GET",
            uri="/dir/index.html",
            nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            algorithm=algorithm,
            qop="auth",
            nc=1,
            cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        )
        == expected
    )


def test_client_prefers_sha256_and_counts_nonce_reuse() -> None:
    c = DigestClient("alice", "pw")
    c.on_challenge(
        401,
        [
            'Digest realm="r", nonce="n1", qop="auth", algorithm=MD5',
            'Digest realm="r", nonce="n1", qop="auth", algorithm=SHA-256',
        ],
    )
    a1 = c.authorization("REGISTER", "sip:r")
    a2 = c.authorization("REGISTER", "sip:r")
    assert "algorithm=SHA-256" in a1 and "nc=00000001" in a1 and "nc=00000002" in a2
    c.on_challenge(407, ['Digest realm="r", nonce="n2"'])
    a3 = c.authorization("INVITE", "sip:b@r")
    assert c.header_name == "Proxy-Authorization" and "qop" not in a3
    assert parse_challenge(a3.replace("Digest", "Digest", 1))["nonce"] == "n2"


def test_bad_challenges_are_named() -> None:
    with pytest.raises(SipParseError, match="not Digest"):
        parse_challenge('Basic realm="x"')
    with pytest.raises(SipParseError, match="no nonce"):
        parse_challenge('Digest realm="x"')
    with pytest.raises(SipParseError, match="no supported Digest algorithm"):
        DigestClient("a", "b").on_challenge(401, ['Digest realm="x", nonce="y", algorithm=SHA-512'])
