"""A token login, from the SASL message to the mailbox: what SMTP and IMAP both call.

    logins = TokenLogins(settings, validator, directory, throttle)
    result = await logins.login(response, client_ip, service="smtp")
    if result.ok: ... result.mailbox
    else: send result.challenge (if any) as the SASL error, then fail with result.message

The token must be valid (gateway.oidc.validator), and its identifier claim must be the
professional's national identifier ("8" + RPPS, or "0" + ADELI) of:
- the mailbox asked for (OAUTHBEARER's a=, XOAUTH2's user=) when it is that professional's own
  (PER) mailbox, or, when none is asked for, the professional's own mailbox;
- or a professional the directory lists as practising in the organisational (ORG) mailbox asked
  for (its `structure`).
Applicative (APP: TLS client certificate) and patient mailboxes never open with a token.
A suspended mailbox is refused at once (and an ORG mailbox through a suspended professional).

Every refusal counts as a failed login for the lockouts, exactly like a wrong password (the
account asked for, or the token's professional, and the client address), and is logged on one
line with its reason, never with the token. A provider that cannot be reached is a temporary
failure, which does not count.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from gateway.config import OIDCSection
from gateway.directory.model import Mailbox, MailboxKind
from gateway.directory.repository import Directory
from gateway.errors import InvalidIdentifier
from gateway.identifiers import adeli, rpps
from gateway.oidc.provider import ProviderError, discovery_url
from gateway.oidc.sasl import BearerResponse, error_challenge
from gateway.oidc.validator import Refusal, TokenClaims, TokenRefused, TokenValidator

log = logging.getLogger("mssgw.oidc")


class Throttle(Protocol):
    """The lockouts shared with password logins (gateway.directory.auth)."""

    def lockout(self, account: str | None, client_ip: str | None) -> float | None:
        """Seconds until the lockout of this account or client ends; None when not locked."""
        ...

    def failed(self, account: str | None, client_ip: str | None) -> None: ...

    def succeeded(self, account: str) -> None: ...


# What the client is told, per reason (the log has the details).
_MESSAGES = {
    Refusal.EXPIRED: "the token has expired: get a new one",
    Refusal.NOT_YET_VALID: "the token is not valid yet (check the clock)",
    Refusal.WRONG_AUDIENCE: "the token was not issued for this gateway",
    Refusal.WRONG_ISSUER: "the token was not issued by the provider this gateway trusts",
    Refusal.INACTIVE: "the provider says the token is no longer active: get a new one",
    Refusal.OPAQUE: "this gateway accepts only JWT access tokens",
    Refusal.NO_IDENTIFIER: "the token carries no professional identifier",
    Refusal.UNKNOWN_PROFESSIONAL: "the token's professional has no mailbox here",
    Refusal.WRONG_PROFESSIONAL: "the token's professional may not open this mailbox",
    Refusal.NOT_TOKEN_MAILBOX: "this mailbox does not log in with a token",
    Refusal.SUSPENDED: "the mailbox is suspended",
}
_INVALID = "the token is not valid"


@dataclass(frozen=True)
class TokenLogin:
    mailbox: Mailbox | None = None
    reason: Refusal | None = None
    message: str = ""  # for the client's final failure reply
    challenge: bytes | None = None  # the RFC 7628 error, sent before the failure
    retry_after: float | None = None  # locked out: seconds to wait
    temporary: bool = False  # the provider could not be reached, or a lockout

    @property
    def ok(self) -> bool:
        return self.mailbox is not None


class TokenLogins:
    def __init__(
        self,
        settings: OIDCSection,
        validator: TokenValidator,
        directory: Directory,
        throttle: Throttle,
    ) -> None:
        self.settings = settings
        self.validator = validator
        self.directory = directory
        self.throttle = throttle

    async def login(self, response: BearerResponse, client_ip: str, service: str) -> TokenLogin:
        asked = response.authzid.strip().lower()
        where = f"{service} {response.mechanism} peer={client_ip or '-'}"
        wait = self.throttle.lockout(asked or None, client_ip)
        if wait is not None:
            log.warning("token login refused: %s mailbox=%s reason=%s", where, asked or "-",
                        Refusal.LOCKED_OUT)
            return TokenLogin(reason=Refusal.LOCKED_OUT, temporary=True, retry_after=wait,
                              message="too many failed logins")
        try:
            claims = await self.validator.validate(response.token)
        except ProviderError as exc:
            log.error("token login failed: %s mailbox=%s: OpenID provider unavailable: %s",
                      where, asked or "-", exc)
            return TokenLogin(temporary=True, message="the identity provider cannot be reached")
        except TokenRefused as exc:
            return await self._refuse(response, where, asked or None, client_ip, exc.reason,
                                      exc.detail)
        try:
            mailbox = self._mailbox(claims, asked)
        except TokenRefused as exc:
            return await self._refuse(response, where, asked or None, client_ip, exc.reason,
                                      exc.detail, claims)
        if not asked:
            wait = self.throttle.lockout(mailbox.address, None)
            if wait is not None:
                log.warning("token login refused: %s mailbox=%s identifier=%s reason=%s", where,
                            mailbox.address, claims.identifier, Refusal.LOCKED_OUT)
                return TokenLogin(reason=Refusal.LOCKED_OUT, temporary=True, retry_after=wait,
                                  message="too many failed logins")
        await asyncio.to_thread(self.throttle.succeeded, mailbox.address)
        log.info("token login ok: %s mailbox=%s identifier=%s client=%s jti=%s", where,
                 mailbox.address, claims.identifier, claims.client_id or "-",
                 claims.token_id or "-")
        return TokenLogin(mailbox=mailbox)

    def _mailbox(self, claims: TokenClaims, asked: str) -> Mailbox:
        own = self._professional(claims.identifier)
        target = asked or own.address
        if target == own.address:
            mailbox = own
        else:
            found = self.directory.get(target)
            member = (
                found is not None and found.kind is MailboxKind.ORG
                and own.professional is not None and own.professional.structure == target
            )
            if not member or found is None:
                # Whether the mailbox exists is not told: it is not this professional's.
                raise TokenRefused(Refusal.WRONG_PROFESSIONAL, f"asked for {target}")
            mailbox = found
        if mailbox.kind not in (MailboxKind.PER, MailboxKind.ORG):
            raise TokenRefused(Refusal.NOT_TOKEN_MAILBOX, f"{mailbox.kind} mailbox")
        if not mailbox.active:
            raise TokenRefused(Refusal.SUSPENDED, f"{mailbox.address} is suspended")
        if not own.active:
            raise TokenRefused(Refusal.SUSPENDED, f"the professional's {own.address} is suspended")
        return mailbox

    def _professional(self, identifier: str) -> Mailbox:
        """The PER mailbox of the professional with this national identifier."""
        prefix, number = identifier[:1], identifier[1:]
        try:
            if prefix == "8":
                found = self.directory.find_by_rpps(rpps(number))
            elif prefix == "0":
                found = self.directory.find_by_adeli(adeli(number))
            else:
                found = None
        except InvalidIdentifier:
            found = None
        if found is None or found.kind is not MailboxKind.PER:
            raise TokenRefused(Refusal.UNKNOWN_PROFESSIONAL, "no professional in the directory")
        return found

    async def _refuse(
        self,
        response: BearerResponse,
        where: str,
        asked: str | None,
        client_ip: str,
        reason: Refusal,
        detail: str,
        claims: TokenClaims | None = None,
    ) -> TokenLogin:
        account = asked
        if account is None and claims is not None:
            try:
                account = self._professional(claims.identifier).address
            except TokenRefused:
                account = None
        await asyncio.to_thread(self.throttle.failed, account, client_ip)
        log.warning(
            "token login refused: %s mailbox=%s identifier=%s client=%s jti=%s reason=%s (%s)",
            where, asked or "-", claims.identifier if claims else "-",
            (claims.client_id or "-") if claims else "-", (claims.token_id or "-") if claims
            else "-", reason, detail,
        )
        status = "invalid_token" if reason.token_problem else "insufficient_scope"
        challenge = error_challenge(
            response.mechanism, status, self.settings.scope, discovery_url(self.settings.issuer)
        )
        return TokenLogin(reason=reason, message=_MESSAGES.get(reason, _INVALID),
                          challenge=challenge)
