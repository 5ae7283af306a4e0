"""`AdminAccounts`: the rules for administrator accounts, their logins, sessions and API tokens.

One implementation for the three faces: `mssgw admin ...` creates accounts and tokens, the
console logs people in and keeps their sessions, the API checks tokens. Every change and every
login (success or failure) goes to the audit log under the acting administrator's name.

Logins: the password is checked with scrypt (directory/passwords.py) and then the TOTP code; an
unknown name costs the same scrypt, and every failure gets the same answer (no account
enumeration). `[admin] max_failures` failures within `lockout` seconds lock the account for
`lockout` seconds; a success resets the count. A TOTP code is accepted once (its step is kept).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable

from cryptography import x509

from gateway.admins import totp
from gateway.admins.model import (
    Admin,
    ApiToken,
    Caller,
    Forbidden,
    LockedOut,
    Role,
    Session,
    Unauthenticated,
    check_scopes,
)
from gateway.admins.store import AccountSecrets, AdminStore
from gateway.audit import Recorder
from gateway.config import AdminSection
from gateway.directory.passwords import check_new_password, dummy_verify, hash_password
from gateway.directory.passwords import verify_password as check_password
from gateway.directory.validate import InvalidField
from gateway.errors import Conflict, GatewayError, NotFound
from gateway.texts import t

ISSUER = "mssgw"
TOKEN_PREFIX = "mssgw_"  # noqa: S105 (the prefix of every token, not a secret)
_NAME = re.compile(r"[a-z][a-z0-9._-]{0,62}")
_TOKEN = re.compile(r"mssgw_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
BAD_LOGIN = "login: wrong name, password or code"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def certificate_sha256(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import hashes

    return cert.fingerprint(hashes.SHA256()).hex()


class UnknownAdmin(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(t("name: no administrator account {name!r}", name=name))


def _may_change(caller: Caller) -> None:
    if not caller.can_write:
        raise Forbidden(t("role: {name} is an auditor: read-only, no changes",
                          name=caller.name))


class AdminAccounts:
    def __init__(
        self,
        store: AdminStore,
        audit: Recorder,
        settings: AdminSection,
        *,
        min_password_length: int = 12,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store = store
        self.audit = audit
        self.settings = settings
        self.min_password_length = min_password_length
        self.now = clock
        self._closers: list[Callable[[], None]] = []

    def closing(self, *closers: Callable[[], None]) -> AdminAccounts:
        """Close these (the store, the audit log it was opened with) with `close()`."""
        self._closers.extend(closers)
        return self

    def close(self) -> None:
        closers, self._closers = self._closers, []
        for close in reversed(closers):
            close()

    # --- accounts --------------------------------------------------------------------------
    @staticmethod
    def check_name(name: str) -> str:
        n = (name or "").strip().lower()
        if not _NAME.fullmatch(n):
            raise InvalidField(
                "name", name, "a name is a lower-case letter then letters, digits, . _ -"
                " (at most 63)"
            )
        return n

    def _require(self, name: str) -> AccountSecrets:
        found = self.store.account(self.check_name(name))
        if found is None:
            raise UnknownAdmin(name)
        return found

    def get(self, name: str) -> Admin:
        return self._require(name).admin

    def accounts(self) -> list[Admin]:
        return self.store.accounts()

    def any(self) -> bool:
        return bool(self.store.accounts())

    def add(
        self,
        caller: Caller,
        name: str,
        role: Role | str,
        *,
        password: str | None,
        totp_enabled: bool = True,
        certificate: x509.Certificate | None = None,
    ) -> tuple[Admin, str | None]:
        """A new account; returns it and its TOTP secret (shown once) when it has one."""
        _may_change(caller)
        name = self.check_name(name)
        try:
            role = Role(role)
        except ValueError:
            raise InvalidField(
                "role", role, "a role is administrator or auditor"
            ) from None
        if password is None and certificate is None:
            raise GatewayError("password: an account needs a password (with TOTP) or --certificate")
        if password is not None:
            check_new_password(password, self.min_password_length)
        if self.store.account(name) is not None:
            raise Conflict(t("name: administrator {name!r} already exists", name=name))
        cert_hash = certificate_sha256(certificate) if certificate is not None else None
        if cert_hash and self.store.account_by_certificate(cert_hash) is not None:
            raise Conflict("certificate: already bound to another administrator")
        secret = totp.new_secret() if password is not None and totp_enabled else None
        self.store.add_account(
            name, role, hash_password(password) if password else None, secret, cert_hash,
            self.now(),
        )
        self.audit(caller.actor, "admin.add", name, {"role": role.value, "totp": bool(secret),
                                                      "certificate": cert_hash})
        return self.get(name), secret

    def remove(self, caller: Caller, name: str) -> None:
        _may_change(caller)
        name = self._require(name).admin.name
        self.store.delete_account(name)
        self.audit(caller.actor, "admin.remove", name, {})

    def set_password(self, caller: Caller, name: str, password: str) -> None:
        _may_change(caller)
        name = self._require(name).admin.name
        check_new_password(password, self.min_password_length)
        self.store.update_account(name, password_hash=hash_password(password))
        self.store.delete_sessions(name)
        self.audit(caller.actor, "admin.set-password", name, {})

    def reset_totp(self, caller: Caller, name: str) -> str:
        _may_change(caller)
        name = self._require(name).admin.name
        secret = totp.new_secret()
        self.store.update_account(name, totp_secret=secret, totp_last_step=-1)
        self.store.delete_sessions(name)
        self.audit(caller.actor, "admin.reset-totp", name, {})
        return secret

    def bind_certificate(self, caller: Caller, name: str, cert: x509.Certificate | None) -> None:
        _may_change(caller)
        name = self._require(name).admin.name
        digest = certificate_sha256(cert) if cert is not None else None
        other = self.store.account_by_certificate(digest) if digest else None
        if other is not None and other.admin.name != name:
            raise Conflict("certificate: already bound to another administrator")
        self.store.update_account(name, cert_sha256=digest)
        self.audit(caller.actor, "admin.certificate", name, {"sha256": digest})

    def set_active(self, caller: Caller, name: str, active: bool) -> None:
        _may_change(caller)
        name = self._require(name).admin.name
        self.store.update_account(name, active=int(active))
        if not active:
            self.store.delete_sessions(name)
        self.audit(caller.actor, "admin.enable" if active else "admin.disable", name, {})

    def unlock(self, caller: Caller, name: str) -> None:
        _may_change(caller)
        name = self._require(name).admin.name
        self.store.update_account(name, failures=0, first_failure_at=None, locked_until=None)
        self.audit(caller.actor, "admin.unlock", name, {})

    # --- logins ----------------------------------------------------------------------------
    def _locked(self, acc: AccountSecrets, now: dt.datetime) -> bool:
        until = acc.admin.locked_until
        return until is not None and until > now

    def _failed(self, acc: AccountSecrets, now: dt.datetime, client: str) -> None:
        window = dt.timedelta(seconds=self.settings.lockout)
        # Counted by the store in one atomic step: parallel attempts (on any worker) all count.
        count = self.store.count_failure(acc.admin.name, now, now - window)
        locked = now + window if count >= self.settings.max_failures else None
        if locked is not None:
            self.store.update_account(acc.admin.name, locked_until=locked)
        self.audit(f"unauthenticated {client}".strip(), "admin.login-failed", acc.admin.name,
                   {"client": client, "failures": count, "locked": locked is not None})

    def login(self, name: str, password: str, code: str, *, client: str = "") -> Admin:
        """Password + TOTP. Raises Unauthenticated (LockedOut when locked). Slow (scrypt)."""
        now = self.now()
        try:
            acc = self.store.account(self.check_name(name))
        except InvalidField:
            acc = None
        if acc is None or acc.password_hash is None:
            dummy_verify(password)
            raise Unauthenticated(BAD_LOGIN)
        if self._locked(acc, now):
            raise LockedOut(t(
                "login: too many failed attempts: this account is locked until {until} UTC",
                until=f"{acc.admin.locked_until:%H:%M}"))
        ok = check_password(password, acc.password_hash) and acc.admin.active
        step = -1
        if ok and acc.totp_secret is not None:
            step = totp.verify(acc.totp_secret, code, last_step=acc.totp_last_step,
                               at=now.timestamp())
            # A code is good once: of two logins presenting it at the same moment, one wins.
            ok = step >= 0 and self.store.take_totp_step(acc.admin.name, step)
        if not ok:
            self._failed(acc, now, client)
            raise Unauthenticated(BAD_LOGIN)
        self.store.update_account(
            acc.admin.name, failures=0, first_failure_at=None, locked_until=None,
            last_login_at=now,
        )
        self.audit(f"admin:{acc.admin.name}", "admin.login", acc.admin.name,
                   {"client": client, "method": "password+totp" if step >= 0 else "password"})
        return acc.admin

    def by_certificate(self, cert: x509.Certificate) -> Admin | None:
        """The active account bound to this (already verified) client certificate."""
        acc = self.store.account_by_certificate(certificate_sha256(cert))
        if acc is None or not acc.admin.active:
            return None
        return acc.admin

    def login_certificate(self, cert: x509.Certificate, *, client: str = "") -> Admin:
        admin = self.by_certificate(cert)
        if admin is None:
            raise Unauthenticated("login: this certificate is not bound to an administrator")
        self.store.update_account(admin.name, last_login_at=self.now())
        self.audit(f"admin:{admin.name}", "admin.login", admin.name,
                   {"client": client, "method": "certificate"})
        return admin

    # --- console sessions ------------------------------------------------------------------
    def start_session(self, admin: Admin) -> Session:
        now = self.now()
        secret = secrets.token_urlsafe(32)
        session = Session(
            admin=admin.name, csrf=secrets.token_urlsafe(32), created_at=now,
            expires_at=now + dt.timedelta(seconds=self.settings.session_idle), secret=secret,
        )
        self.store.add_session(_digest(secret), session)
        self.store.delete_sessions(before=now)  # sweep the expired ones
        return session

    def session(self, secret: str) -> tuple[Session, Admin] | None:
        """The live session behind a cookie, moved on (idle expiry), or None."""
        if not secret or len(secret) > 100:
            return None
        key = _digest(secret)
        found = self.store.session(key)
        now = self.now()
        if found is None or found.expires_at <= now:
            return None
        hard = found.created_at + dt.timedelta(seconds=self.settings.session_max)
        if hard <= now:
            self.store.delete_session(key)
            return None
        acc = self.store.account(found.admin)
        if acc is None or not acc.admin.active:
            self.store.delete_session(key)
            return None
        idle = min(now + dt.timedelta(seconds=self.settings.session_idle), hard)
        if idle - found.expires_at > dt.timedelta(seconds=30):  # not a write per request
            self.store.touch_session(key, idle)
        return found, acc.admin

    def end_session(self, secret: str, admin: str) -> None:
        self.store.delete_session(_digest(secret))
        self.audit(f"admin:{admin}", "admin.logout", admin, {})

    # --- one-time login links (the demo, a first login) ------------------------------------
    def login_link(self, caller: Caller, name: str, *, minutes: int | None = None) -> str:
        name = self._require(name).admin.name
        secret = secrets.token_urlsafe(32)
        minutes = minutes or self.settings.login_link_minutes
        self.store.add_login_link(_digest(secret), name, self.now() + dt.timedelta(minutes=minutes))
        self.audit(caller.actor, "admin.login-link", name, {"minutes": minutes})
        return secret

    def use_login_link(self, secret: str, *, client: str = "") -> Admin:
        name = self.store.take_login_link(_digest(secret or ""), self.now())
        acc = self.store.account(name) if name else None
        if acc is None or not acc.admin.active:
            raise Unauthenticated("login: this link is unknown, used or expired")
        self.store.update_account(acc.admin.name, last_login_at=self.now())
        self.audit(f"admin:{acc.admin.name}", "admin.login", acc.admin.name,
                   {"client": client, "method": "one-time link"})
        return acc.admin

    # --- API tokens ------------------------------------------------------------------------
    def create_token(
        self,
        caller: Caller,
        admin: str,
        label: str,
        scopes: list[str] | tuple[str, ...],
        *,
        days: int | None = None,
    ) -> tuple[ApiToken, str]:
        """A new token for `admin`'s account; returns it and the secret string (shown once)."""
        _may_change(caller)
        owner = self._require(admin).admin
        label = " ".join((label or "").split())
        if not label or len(label) > 100:
            raise InvalidField("label", label, "a token needs a label of 1 to 100 characters")
        checked = check_scopes(scopes)
        days = self.settings.token_days if days is None else days
        if not 1 <= days <= self.settings.max_token_days:
            raise InvalidField(
                "days", days, t("a token lasts 1 to {n} days", n=self.settings.max_token_days)
            )
        now = self.now()
        token = ApiToken(
            id=secrets.token_hex(6), admin=owner.name, label=label, scopes=checked,
            created_at=now, expires_at=now + dt.timedelta(days=days), created_by=caller.actor,
        )
        secret = secrets.token_urlsafe(32)
        self.store.add_token(token, _digest(secret))
        self.audit(caller.actor, "admin.token-create", owner.name, {
            "token": token.id, "scopes": list(checked), "expires": token.expires_at.isoformat()
        })
        return token, f"{TOKEN_PREFIX}{token.id}_{secret}"

    def tokens(self, admin: str | None = None) -> list[ApiToken]:
        return self.store.tokens(self.check_name(admin) if admin else None)

    def revoke_token(self, caller: Caller, token_id: str) -> ApiToken:
        _may_change(caller)
        found = self.store.token((token_id or "").strip().lower())
        if found is None:
            raise NotFound(t("token: no API token {token!r}", token=token_id))
        token = found[0]
        if token.revoked_at is None:
            self.store.update_token(token.id, revoked_at=self.now())
            self.audit(caller.actor, "admin.token-revoke", token.admin, {"token": token.id})
        return self.store.token(token.id)[0]  # type: ignore[index]

    def check_token(self, presented: str) -> tuple[Admin, ApiToken]:
        """The account and token behind `Authorization: Bearer ...`; Unauthenticated if not
        valid (unknown, wrong secret, revoked, expired, account disabled)."""
        m = _TOKEN.fullmatch((presented or "").strip())
        found = self.store.token(m.group(1)) if m else None
        if m is None or found is None:
            raise Unauthenticated("token: unknown or malformed API token")
        token, digest = found
        if not hmac.compare_digest(digest, _digest(m.group(2))):
            raise Unauthenticated("token: unknown or malformed API token")
        now = self.now()
        if token.state(now) != "active":
            raise Unauthenticated(t("token: {token} is {state}", token=token.id,
                                    state=token.state(now)))
        acc = self.store.account(token.admin)
        if acc is None or not acc.admin.active:
            raise Unauthenticated(t("token: the account {name} is disabled",
                                    name=token.admin))
        if token.last_used_at is None or now - token.last_used_at > dt.timedelta(minutes=1):
            self.store.update_token(token.id, last_used_at=now)
        return acc.admin, token


def caller_for(admin: Admin, via: str, token: ApiToken | None = None) -> Caller:
    """The Caller an authenticated administrator (or their token) acts as."""
    actor = f"admin:{admin.name}" + (f" (token {token.id})" if token else "")
    return Caller(
        name=admin.name, role=admin.role, actor=actor, via=via,
        scopes=token.scopes if token else None,
    )
