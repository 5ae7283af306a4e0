"""Access-token validation: is this token one our OpenID provider issued for us, still valid?

    validator = TokenValidator(settings, provider)
    claims = await validator.validate(token)       # or raises TokenRefused(reason)

A JWT access token (RFC 9068, or any JWS the provider signs) is checked here, in this order:
header readable; `alg` in the configured allow-list (never `none`, never HMAC: the list is
checked when the configuration loads); `typ` absent or a JWT/access-token type; a key of the
provider's set that fits the algorithm (by `kid`; an unknown `kid` makes one rate-limited read
of the set, gateway.oidc.provider); the signature (joserfc); then `iss` (exactly the issuer),
`aud` (contains the audience), `exp` (required) and `nbf`/`iat`, with `clock_skew` seconds of
tolerance; and last the identifier claim. An opaque token (not a JWS) is sent to the provider's
introspection endpoint when `[oidc] introspection` is on (RFC 7662), and refused otherwise.

The cryptography is joserfc's; this module only decides what to ask it and what to accept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)

from gateway.config import OIDCSection
from gateway.oidc.provider import Provider

# RFC 9068 2.1 `at+jwt`; many providers (Keycloak, hence Pro Santé Connect) write `JWT`.
_ACCEPTED_TYP = {"jwt", "at+jwt", "application/at+jwt"}


class Refusal(StrEnum):
    """Why a token login is refused (logged, and mapped to the client's answer)."""

    MALFORMED = "malformed-token"
    ALGORITHM = "algorithm-not-allowed"
    TOKEN_TYPE = "not-an-access-token"  # noqa: S105 - a reason, not a secret
    UNKNOWN_KEY = "unknown-key"
    BAD_SIGNATURE = "bad-signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    WRONG_ISSUER = "wrong-issuer"
    WRONG_AUDIENCE = "wrong-audience"
    BAD_CLAIMS = "bad-claims"
    INACTIVE = "inactive"  # introspection: revoked, expired or unknown at the provider
    OPAQUE = "opaque-token"  # not a JWT, and introspection is off
    NO_IDENTIFIER = "no-identifier"
    # After validation, the mapping to a mailbox (gateway.oidc.login):
    UNKNOWN_PROFESSIONAL = "unknown-professional"
    WRONG_PROFESSIONAL = "wrong-professional"
    NOT_TOKEN_MAILBOX = "not-a-token-mailbox"  # noqa: S105 - a reason, not a secret
    SUSPENDED = "suspended"
    LOCKED_OUT = "locked-out"

    @property
    def token_problem(self) -> bool:
        """The token itself is bad: the client should get a new one (RFC 7628 invalid_token)."""
        return self not in _NOT_TOKEN_PROBLEMS


_NOT_TOKEN_PROBLEMS = {
    Refusal.UNKNOWN_PROFESSIONAL, Refusal.WRONG_PROFESSIONAL, Refusal.NOT_TOKEN_MAILBOX,
    Refusal.SUSPENDED, Refusal.LOCKED_OUT,
}


class TokenRefused(Exception):
    def __init__(self, reason: Refusal, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class TokenClaims:
    """What a valid token says (never the token itself)."""

    identifier: str  # the identifier claim, e.g. "810100123453"
    subject: str = ""
    client_id: str = ""
    token_id: str = ""  # jti, for the logs
    expires: float | None = None
    claims: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class TokenValidator:
    settings: OIDCSection
    provider: Provider
    clock: Callable[[], float] = time.time

    async def validate(self, token: str) -> TokenClaims:
        if token.count(".") != 2:
            return await self._introspected(token)
        header = _header(token)
        alg = self._algorithm(header)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenRefused(Refusal.MALFORMED, "kid is not a string")
        keys = await self.provider.signing_keys(kid, alg)
        return self._verify(token, alg, kid, keys)

    def validate_sync(self, token: str) -> TokenClaims:
        """The same checks, for code running in a thread (JWT tokens only)."""
        if token.count(".") != 2:
            raise TokenRefused(Refusal.OPAQUE, "not a JWT")
        header = _header(token)
        alg = self._algorithm(header)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenRefused(Refusal.MALFORMED, "kid is not a string")
        return self._verify(token, alg, kid, self.provider.signing_keys_sync(kid, alg))

    def _algorithm(self, header: dict[str, Any]) -> str:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.settings.algorithms:
            raise TokenRefused(Refusal.ALGORITHM, f"alg {str(alg)[:20]!r} is not allowed")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYP):
            raise TokenRefused(Refusal.TOKEN_TYPE, f"typ {str(typ)[:30]!r}")
        return alg

    def _verify(self, token: str, alg: str, kid: str | None, keys: list[Any]) -> TokenClaims:
        if not keys:
            raise TokenRefused(Refusal.UNKNOWN_KEY, f"kid {str(kid)[:60]!r} is not in the "
                               "provider's key set")
        decoded: jwt.Token | None = None
        for key in keys:
            try:
                decoded = jwt.decode(token, key, algorithms=[alg])
                break
            except BadSignatureError:
                continue
            except JoseError as exc:
                raise TokenRefused(Refusal.MALFORMED, exc.error) from None
        if decoded is None:
            raise TokenRefused(Refusal.BAD_SIGNATURE, "the signature does not verify")
        return self._check_claims(decoded.claims)

    def _check_claims(self, claims: dict[str, Any]) -> TokenClaims:
        s = self.settings
        registry = jwt.JWTClaimsRegistry(
            now=int(self.clock()),
            leeway=s.clock_skew,
            iss={"essential": True, "value": s.issuer},
            aud={"essential": True, "value": s.audience},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise TokenRefused(Refusal.EXPIRED, f"exp {claims.get('exp')}") from None
        except (InvalidClaimError, MissingClaimError) as exc:
            claim = getattr(exc, "claim", "")
            reason = {
                "iss": Refusal.WRONG_ISSUER, "aud": Refusal.WRONG_AUDIENCE,
            }.get(claim, Refusal.BAD_CLAIMS)
            if claim in ("nbf", "iat") and isinstance(exc, InvalidClaimError):
                reason = Refusal.NOT_YET_VALID
            shown = str(claims.get(claim, "absent"))[:100]
            raise TokenRefused(reason, f"{claim} {shown}") from None
        except JoseError as exc:
            raise TokenRefused(Refusal.BAD_CLAIMS, exc.error) from None
        return self._claims(claims)

    def _claims(self, claims: dict[str, Any]) -> TokenClaims:
        identifier = claims.get(self.settings.identifier_claim)
        if not isinstance(identifier, str) or not identifier:
            raise TokenRefused(Refusal.NO_IDENTIFIER,
                               f"no {self.settings.identifier_claim!r} claim")
        exp = claims.get("exp")
        return TokenClaims(
            identifier=identifier,
            subject=str(claims.get("sub", "")),
            client_id=str(claims.get("client_id", claims.get("azp", ""))),
            token_id=str(claims.get("jti", "")),
            expires=float(exp) if isinstance(exp, int | float) else None,
            claims=claims,
        )

    async def _introspected(self, token: str) -> TokenClaims:
        if not self.settings.introspection:
            raise TokenRefused(Refusal.OPAQUE, "not a JWT, and [oidc] introspection is off")
        answer = await self.provider.introspect(token)
        if not answer.get("active"):
            raise TokenRefused(Refusal.INACTIVE, "the provider says the token is not active")
        # The provider vouches for the token; its answer must still be for us and current.
        claims = dict(answer)
        claims.setdefault("iss", self.settings.issuer)
        return self._check_claims(claims)


def _header(token: str) -> dict[str, Any]:
    try:
        header = jws.extract_compact(token.encode("ascii")).protected
    except (JoseError, ValueError, UnicodeEncodeError):
        raise TokenRefused(Refusal.MALFORMED, "not a readable JWS") from None
    if not isinstance(header, dict):
        raise TokenRefused(Refusal.MALFORMED, "the JWS header is not an object")
    return dict(header)
