"""The SASL messages of token logins (gateway.oidc.sasl): RFC 7628 OAUTHBEARER, XOAUTH2."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.oidc.sasl import (
    Mechanism,
    SaslError,
    error_challenge,
    parse,
    parse_oauthbearer,
    parse_xoauth2,
)

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"


def test_oauthbearer_as_rfc_7628_example() -> None:
    msg = (b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
           b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01")
    r = parse_oauthbearer(msg)
    assert (r.mechanism, r.authzid, r.host, r.port) == (
        Mechanism.OAUTHBEARER, "user@example.com", "server.example.com", "143")
    assert r.token == "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
    assert TOKEN not in repr(parse_oauthbearer(f"n,,\x01auth=Bearer {TOKEN}\x01\x01".encode()))


def test_oauthbearer_without_authzid_and_escapes() -> None:
    r = parse_oauthbearer(f"y,,\x01auth=bearer  {TOKEN}\x01\x01".encode())
    assert (r.authzid, r.token) == ("", TOKEN)
    r = parse_oauthbearer(f"n,a=a=3Db=2Cc@x.fr,\x01auth=Bearer {TOKEN}\x01\x01".encode())
    assert r.authzid == "a=b,c@x.fr"


@pytest.mark.parametrize("msg, why", [
    (b"\x01", "lone kvsep"),
    (f"p=tls-unique,,\x01auth=Bearer {TOKEN}\x01\x01".encode(), "channel binding"),
    (f"x,,\x01auth=Bearer {TOKEN}\x01\x01".encode(), "GS2 channel-binding flag"),
    (f"n,u=me,\x01auth=Bearer {TOKEN}\x01\x01".encode(), "a=<mailbox>"),
    (f"n,a=me=2Dx,\x01auth=Bearer {TOKEN}\x01\x01".encode(), "escape"),
    (f"n,a=me\nx,\x01auth=Bearer {TOKEN}\x01\x01".encode(), "printable"),
    (b"n,,\x01host=x\x01\x01", "auth=Bearer"),
    (f"n,,\x01auth=Basic {TOKEN}\x01\x01".encode(), "Bearer <token>"),
    (f"n,,\x01auth=Bearer {TOKEN}\x01".encode(), "two kvsep"),
    (b"n,,\x01auth=Bearer a b\x01\x01", "characters"),
    (f"n,,\x01auth=Bearer {TOKEN}\x01auth=Bearer x\x01\x01".encode(), "twice"),
    (b"n,," + b"\x01auth=Bearer " + b"a" * 20000 + b"\x01\x01", "longer"),
    (f"n,,auth=Bearer {TOKEN}".encode(), "kvsep"),
])
def test_oauthbearer_malformed(msg: bytes, why: str) -> None:
    with pytest.raises(SaslError, match=why):
        parse_oauthbearer(msg)


def test_xoauth2() -> None:
    r = parse_xoauth2(f"user=dr.martin@x.fr\x01auth=Bearer {TOKEN}\x01\x01".encode())
    assert (r.mechanism, r.authzid, r.token) == (Mechanism.XOAUTH2, "dr.martin@x.fr", TOKEN)
    with pytest.raises(SaslError, match="user="):
        parse_xoauth2(f"auth=Bearer {TOKEN}\x01\x01".encode())
    with pytest.raises(SaslError, match="mailbox"):
        parse_xoauth2(f"user=\x01auth=Bearer {TOKEN}\x01\x01".encode())


def test_error_challenges() -> None:
    url = "https://idp.example/.well-known/openid-configuration"
    doc = json.loads(error_challenge(Mechanism.OAUTHBEARER, "invalid_token", "openid", url))
    assert doc == {"status": "invalid_token", "scope": "openid", "openid-configuration": url}
    doc = json.loads(error_challenge(Mechanism.XOAUTH2, "invalid_token", "openid", url))
    assert doc == {"status": "401", "schemes": "bearer", "scope": "openid"}
    doc = json.loads(error_challenge(Mechanism.XOAUTH2, "insufficient_scope", "openid", url))
    assert doc["status"] == "403"


@given(st.binary(max_size=300), st.sampled_from(list(Mechanism)))
def test_any_bytes_parse_or_saslerror(data: bytes, mechanism: Mechanism) -> None:
    try:
        r = parse(mechanism, data)
    except SaslError:
        return
    assert r.token and r.authzid.isprintable()
