"""Authentication commands: STARTTLS, LOGIN, AUTHENTICATE PLAIN / EXTERNAL / OAUTHBEARER /
XOAUTH2 (SASL-IR), with the failure count that ends a connection after repeated refusals.
"""

from __future__ import annotations

import base64

from gateway.imap.parser import Token, as_atom, as_text
from gateway.imap.state import (
    MAX_LOGIN_FAILURES,
    AuthFailed,
    Bad,
    Login,
    No,
    SessionState,
    _no_args,
)
from gateway.oidc import sasl


class AuthCommands(SessionState):
    """The commands of the not-authenticated state."""

    async def cmd_starttls(self, tag: str, args: list[Token]) -> None:
        _no_args(args)
        if self.tls or not self.starttls_offered:
            raise Bad("TLS is already active")
        self.tagged(tag, "OK", "Begin TLS negotiation now")
        self.want_starttls = True

    async def cmd_login(self, tag: str, args: list[Token]) -> None:
        if len(args) != 2:
            raise Bad("LOGIN expects a user name and a password")
        if not self.tls:
            raise No("LOGIN is disabled before STARTTLS", "PRIVACYREQUIRED")
        user = as_text(args[0], "user name")
        password = as_text(args[1], "password")
        await self._authenticate(tag, user, password)

    async def cmd_authenticate(self, tag: str, args: list[Token]) -> None:
        if not args or len(args) > 2:
            raise Bad("AUTHENTICATE expects a mechanism and an optional initial response")
        mech = as_atom(args[0], "mechanism").upper()
        if not self.tls:
            raise No("authentication is disabled before STARTTLS", "PRIVACYREQUIRED")
        tokens = self.hooks.authenticate_token is not None
        if mech not in ("PLAIN", "EXTERNAL") and not (tokens and mech in TOKEN_MECHANISMS):
            raise No(f"unsupported mechanism {mech[:20]}", "CANNOT")
        if len(args) == 2:
            initial = as_text(args[1], "initial response")
            response = b"" if initial == "=" else _b64(initial)
        else:
            response = await self._continue(b"")
        if mech in TOKEN_MECHANISMS:
            await self._token(tag, sasl.Mechanism(mech), response)
            return
        if mech == "EXTERNAL":
            if self.hooks.authenticate_certificate is None or not self._has_cert():
                raise No("no client certificate was presented", "AUTHENTICATIONFAILED")
            try:
                login = await self.hooks.authenticate_certificate(
                    self.tls_info, response.decode("utf-8", "replace")
                )
            except AuthFailed as exc:
                await self._failed(tag, exc)
                return
            self._logged_in(tag, login)
            return
        parts = response.split(b"\0")
        if len(parts) != 3:
            raise Bad("malformed PLAIN response")
        authzid, user, password = (p.decode("utf-8", "replace") for p in parts)
        if authzid and authzid.lower() != user.lower():
            raise No("acting for another user is not allowed", "AUTHORIZATIONFAILED")
        await self._authenticate(tag, user, password)

    async def _continue(self, challenge: bytes) -> bytes:
        """Send a continuation with `challenge`, return the client's decoded answer."""
        self.io.send(b"+ " + base64.b64encode(challenge) + b"\r\n")
        await self.io.flush()
        line = await self.io.read_line(60)
        if line is None:
            raise Bad("authentication timed out")
        if line.strip() == b"*":
            raise Bad("authentication cancelled")
        return _b64(line.decode("ascii", "replace").strip())

    async def _token(self, tag: str, mechanism: sasl.Mechanism, response: bytes) -> None:
        assert self.hooks.authenticate_token is not None
        try:
            bearer = sasl.parse(mechanism, response)
        except sasl.SaslError as exc:
            raise Bad(f"malformed {mechanism} response: {exc}") from None
        try:
            login = await self.hooks.authenticate_token(bearer, self.client_ip)
        except AuthFailed as exc:
            if exc.challenge is not None:
                # RFC 7628 3.2.2: the error in a continuation; the client answers it (a lone
                # kvsep, or nothing for XOAUTH2) before the NO.
                await self._continue(exc.challenge)
            await self._failed(tag, exc)
            return
        self._logged_in(tag, login)

    async def _authenticate(self, tag: str, user: str, password: str) -> None:
        try:
            login = await self.hooks.authenticate(user, password, self.client_ip)
        except AuthFailed as exc:
            await self._failed(tag, exc)
            return
        self._logged_in(tag, login)

    async def _failed(self, tag: str, exc: AuthFailed) -> None:
        self.failures += 1
        if self.failures >= MAX_LOGIN_FAILURES:
            self.untagged("BYE too many failed logins")
            self.closing = True
        self.tagged(tag, "NO", str(exc), exc.code)

    def _logged_in(self, tag: str, login: Login) -> None:
        self.store = self.hooks.pool.acquire(login.address)
        self.login = login
        self.tagged(tag, "OK", "Logged in", f"CAPABILITY {self.capabilities()}")


TOKEN_MECHANISMS = frozenset(m.value for m in sasl.Mechanism)


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise Bad("invalid base64 in authentication response") from None

