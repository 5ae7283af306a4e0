"""Token validation (gateway.oidc.validator and .provider) against a real OpenID provider
(node-oidc-provider over HTTPS, tests/oidc_provider.py): real tokens from its CIBA flow, and
the forgeries an attacker would try."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import logging
import time

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from oidc_provider import (
    AUDIENCE,
    ES256,
    GATEWAY,
    GATEWAY_CLIENT,
    GATEWAY_SECRET,
    OPAQUE,
    OTHER,
    SHORT,
    OpenIDProvider,
    national_id,
    new_signing_key,
)

from gateway.config import OIDCSection
from gateway.directory import demo
from gateway.oidc.provider import Provider, ProviderError
from gateway.oidc.validator import Refusal, TokenRefused, TokenValidator

DOCTOR_ID = national_id(demo.DOCTOR_RPPS)


def settings(idp: OpenIDProvider, **changes: object) -> OIDCSection:
    base = OIDCSection(issuer=idp.issuer, audience=AUDIENCE, ca_file=str(idp.ca_file))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def validator(idp: OpenIDProvider, secret: str = "", **changes: object) -> TokenValidator:
    s = settings(idp, **changes)
    return TokenValidator(s, Provider(s, idp.ca_file, secret))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict[str, object], dict[str, object], str]:
    h, p, s = token.split(".")
    pad = lambda x: x + "=" * (-len(x) % 4)  # noqa: E731
    return (json.loads(base64.urlsafe_b64decode(pad(h))),
            json.loads(base64.urlsafe_b64decode(pad(p))), s)


async def _refused(v: TokenValidator, token: str) -> Refusal:
    with pytest.raises(TokenRefused) as info:
        await v.validate(token)
    return info.value.reason


async def test_a_real_token_is_valid(openid_provider: OpenIDProvider) -> None:
    v = validator(openid_provider)
    claims = await v.validate(await asyncio.to_thread(openid_provider.token, DOCTOR_ID))
    assert claims.identifier == DOCTOR_ID
    assert claims.client_id == "practice-software"
    assert claims.expires and claims.expires > time.time()
    assert v.provider.fetches == {"discovery": 1, "jwks": 1}
    # The next login costs the provider nothing: documents and keys are cached.
    await v.validate(await asyncio.to_thread(openid_provider.token, DOCTOR_ID))
    assert v.provider.fetches == {"discovery": 1, "jwks": 1}


async def test_the_identifier_claim_is_configurable(openid_provider: OpenIDProvider) -> None:
    token = await asyncio.to_thread(openid_provider.token, DOCTOR_ID)
    claims = await validator(openid_provider, identifier_claim="SubjectNameID").validate(token)
    assert claims.identifier == DOCTOR_ID
    assert await _refused(validator(openid_provider, identifier_claim="rpps"), token) \
        is Refusal.NO_IDENTIFIER


async def test_expired(openid_provider: OpenIDProvider) -> None:
    token = await asyncio.to_thread(openid_provider.token, DOCTOR_ID, SHORT)
    issued = float(_parts(token)[1]["iat"])  # type: ignore[arg-type]
    v = validator(openid_provider, clock_skew=0)
    v.clock = lambda: issued  # valid for one second from its issue (whatever the load)
    await v.validate(token)
    v.clock = lambda: issued + 2  # two seconds later (tests/test_oidc_login waits them)
    assert await _refused(v, token) is Refusal.EXPIRED
    # Within the clock skew it is still accepted: clocks differ a little.
    lax = validator(openid_provider, clock_skew=30)
    lax.clock = v.clock
    await lax.validate(token)
    # Not valid before it was issued (a provider clock ahead of ours beyond the skew).
    v.clock = lambda: issued - 120
    assert await _refused(v, token) is Refusal.NOT_YET_VALID  # iat in the future


async def test_wrong_audience(openid_provider: OpenIDProvider) -> None:
    token = await asyncio.to_thread(openid_provider.token, DOCTOR_ID, OTHER)
    assert await _refused(validator(openid_provider), token) is Refusal.WRONG_AUDIENCE


async def test_tampered_payload_and_signature(openid_provider: OpenIDProvider) -> None:
    token = await asyncio.to_thread(openid_provider.token, DOCTOR_ID)
    header, payload, sig = _parts(token)
    payload["preferred_username"] = national_id(demo.PHARMACIST_RPPS)
    forged = f"{token.split('.')[0]}.{_b64(json.dumps(payload).encode())}.{sig}"
    v = validator(openid_provider)
    assert await _refused(v, forged) is Refusal.BAD_SIGNATURE
    flipped = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    assert await _refused(v, flipped) is Refusal.BAD_SIGNATURE
    assert await _refused(v, "not.a.jwt") is Refusal.MALFORMED


async def test_alg_none_and_hmac_with_the_public_key(openid_provider: OpenIDProvider) -> None:
    token = await asyncio.to_thread(openid_provider.token, DOCTOR_ID)
    header, payload, _ = _parts(token)
    v = validator(openid_provider)
    unsigned = f"{_b64(json.dumps({'alg': 'none'}).encode())}.{token.split('.')[1]}."
    assert await _refused(v, unsigned) is Refusal.ALGORITHM
    # The classic confusion: HS256 "signed" with the provider's public key as the secret.
    # (joserfc refuses to make one: it is written by hand.)
    public = RSAKey.import_key(openid_provider.keys[0]).as_pem(private=False)
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'kid': header['kid']}).encode())}." \
        f"{token.split('.')[1]}"
    mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    assert await _refused(v, f"{signing_input}.{_b64(mac)}") is Refusal.ALGORITHM
    # Even with HS256 in the allow-list it could not pass (joserfc: an RSA key is no HMAC key);
    # the configuration refuses such a list anyway (test_oidc_config).
    lax = validator(openid_provider, algorithms=["RS256", "HS256"])
    assert await _refused(lax, f"{signing_input}.{_b64(mac)}") in (
        Refusal.UNKNOWN_KEY, Refusal.MALFORMED, Refusal.BAD_SIGNATURE)


async def test_a_key_not_in_the_jwks_refetches_once(openid_provider: OpenIDProvider) -> None:
    token = await asyncio.to_thread(openid_provider.token, DOCTOR_ID)
    _, payload, _ = _parts(token)
    intruder = RSAKey.import_key(new_signing_key("intruder-key"))
    forged = jwt.encode({"alg": "RS256", "kid": "intruder-key", "typ": "at+jwt"}, payload,
                        intruder)
    v = validator(openid_provider, jwks_refetch_interval=60)
    await v.validate(token)
    assert v.provider.fetches["jwks"] == 1
    v.provider._last_jwks_attempt -= 120  # the last read was long ago
    assert await _refused(v, forged) is Refusal.UNKNOWN_KEY
    assert v.provider.fetches["jwks"] == 2  # one new read: it may have been a rotation
    # A flood of tokens with unknown keys does not become a flood of requests.
    for _ in range(5):
        assert await _refused(v, forged) is Refusal.UNKNOWN_KEY
    assert v.provider.fetches["jwks"] == 2
    # Signed by our intruder but naming the provider's key id: the signature fails.
    same_kid = jwt.encode({"alg": "RS256", "kid": openid_provider.keys[0]["kid"]}, payload,
                          intruder)
    assert await _refused(v, same_kid) is Refusal.BAD_SIGNATURE


async def test_key_rotation_is_followed(openid_provider: OpenIDProvider) -> None:
    v = validator(openid_provider, jwks_refetch_interval=0)
    before = openid_provider.keys
    await v.validate(await asyncio.to_thread(openid_provider.token, DOCTOR_ID))
    try:
        await asyncio.to_thread(openid_provider.rotate, [new_signing_key("key-rotated"),
                                                         *before])
        token = await asyncio.to_thread(openid_provider.token, DOCTOR_ID)
        assert _parts(token)[0]["kid"] == "key-rotated"
        claims = await v.validate(token)  # the new key is read without a restart
        assert claims.identifier == DOCTOR_ID
        assert v.provider.fetches["jwks"] == 2
        # An EC key (ES256) added later is followed too.
        await asyncio.to_thread(openid_provider.rotate,
                                [*before, new_signing_key("key-ec", "ES256")])
        token = await asyncio.to_thread(openid_provider.token, DOCTOR_ID, ES256)
        assert _parts(token)[0] == {"alg": "ES256", "typ": "at+jwt", "kid": "key-ec"}
        assert (await v.validate(token)).identifier == DOCTOR_ID
        assert v.provider.fetches["jwks"] == 3
    finally:
        await asyncio.to_thread(openid_provider.rotate, before)


async def test_opaque_tokens_need_introspection(openid_provider: OpenIDProvider) -> None:
    token = await asyncio.to_thread(openid_provider.token, DOCTOR_ID, OPAQUE)
    assert token.count(".") == 0
    assert await _refused(validator(openid_provider), token) is Refusal.OPAQUE
    v = validator(openid_provider, GATEWAY_SECRET, introspection=True, client_id=GATEWAY_CLIENT,
                  client_secret_file="unused: the secret is given")
    claims = await v.validate(token)
    assert claims.identifier == DOCTOR_ID
    assert await _refused(v, "a" * 43) is Refusal.INACTIVE
    # A wrong client secret is the gateway's misconfiguration: a temporary failure.
    bad = validator(openid_provider, "wrong", introspection=True, client_id=GATEWAY_CLIENT,
                    client_secret_file="x")
    with pytest.raises(ProviderError, match="HTTP 401"):
        await bad.validate(token)


async def test_provider_problems_are_temporary(
    openid_provider: OpenIDProvider, caplog: pytest.LogCaptureFixture
) -> None:
    token = await asyncio.to_thread(openid_provider.token, DOCTOR_ID, GATEWAY)
    # The provider's certificate is not from a CA we trust (no ca_file: the system's CAs).
    s = settings(openid_provider)
    v = TokenValidator(s, Provider(s, None))  # the system's CAs
    with caplog.at_level(logging.WARNING, "mssgw.oidc"), pytest.raises(ProviderError):
        await v.validate(token)
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    assert token not in caplog.text
    # The issuer must be the one the discovery document names, exactly.
    v = validator(openid_provider, issuer=openid_provider.issuer + "/")
    with pytest.raises(ProviderError, match="names issuer"):
        await v.validate(token)
