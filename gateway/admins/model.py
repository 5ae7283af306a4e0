"""Administrator accounts, API tokens and the `Caller` every application service is given."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from gateway.errors import GatewayError
from gateway.texts import t


class Role(StrEnum):
    ADMINISTRATOR = "administrator"  # reads and changes everything
    AUDITOR = "auditor"  # reads everything (patient data reads are audited), changes nothing


# What a token's scopes name: "<resource>:read" or "<resource>:write" (write implies read), or
# "*:read" / "*:write" for every resource.
RESOURCES = ("mailboxes", "trust", "pki", "prescriptions", "dmp", "audit", "queue", "status")
SCOPE_CHOICES = [f"{r}:{m}" for r in ("*", *RESOURCES) for m in ("read", "write")]


class Unauthenticated(GatewayError):
    """No valid credentials (HTTP 401)."""


class Forbidden(GatewayError):
    """Authenticated, but not allowed to do this (HTTP 403)."""


class LockedOut(Unauthenticated):
    """Too many failed logins: the account is locked for a while."""


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for raw in scopes:
        for s in raw.replace(",", " ").split():
            s = s.strip().lower()
            if s not in SCOPE_CHOICES:
                raise GatewayError(
                    t("scope: {scope!r} is invalid: a scope is RESOURCE:read or"
                      " RESOURCE:write, RESOURCE one of *, {resources}", scope=s,
                      resources=", ".join(RESOURCES))
                )
            if s not in out:
                out.append(s)
    if not out:
        raise GatewayError("scope: give at least one scope, e.g. *:read")
    return tuple(out)


@dataclass(frozen=True)
class Caller:
    """Who is asking an application service, and what they may do.

    `actor` is the name written to the audit log: the local OS user for the command line (as
    before the HTTP faces existed), `admin:NAME` for an administrator account, with the token's
    id when the API is called with a token. `scopes` (None: all of the role's rights) narrows an
    API token to some resources."""

    name: str
    role: Role
    actor: str
    via: str = "cli"  # cli, console, api
    scopes: tuple[str, ...] | None = None

    @classmethod
    def local(cls, user: str) -> Caller:
        return cls(name=user, role=Role.ADMINISTRATOR, actor=user, via="cli")

    @property
    def can_write(self) -> bool:
        return self.role is Role.ADMINISTRATOR

    def allows(self, resource: str, *, write: bool = False) -> bool:
        if write and self.role is not Role.ADMINISTRATOR:
            return False
        if self.scopes is None:
            return True
        wanted = {f"{resource}:write", "*:write"}
        if not write:
            wanted |= {f"{resource}:read", "*:read"}
        return bool(wanted & set(self.scopes))

    def require(self, resource: str, *, write: bool = False) -> None:
        if self.allows(resource, write=write):
            return
        if write and self.role is not Role.ADMINISTRATOR:
            raise Forbidden(t("role: {name} is an auditor: read-only, no changes",
                              name=self.name))
        need = f"{resource}:{'write' if write else 'read'}"
        raise Forbidden(t("scope: this token does not grant {scope}", scope=need))


@dataclass(frozen=True)
class Admin:
    name: str
    role: Role
    active: bool
    created_at: dt.datetime
    has_password: bool = False
    has_totp: bool = False
    certificate_sha256: str | None = None  # a client certificate bound to the account
    last_login_at: dt.datetime | None = None
    locked_until: dt.datetime | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "role": self.role.value,
            "active": self.active,
            "created_at": self.created_at.isoformat(),
            "password": self.has_password,
            "totp": self.has_totp,
            "certificate_sha256": self.certificate_sha256,
            "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None,
            "locked_until": self.locked_until.isoformat() if self.locked_until else None,
        }


@dataclass(frozen=True)
class ApiToken:
    id: str  # public part, shown in lists and the audit log
    admin: str
    label: str
    scopes: tuple[str, ...]
    created_at: dt.datetime
    expires_at: dt.datetime
    created_by: str
    revoked_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None

    def state(self, now: dt.datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if now >= self.expires_at else "active"

    def as_dict(self, now: dt.datetime) -> dict[str, object]:
        return {
            "id": self.id,
            "admin": self.admin,
            "label": self.label,
            "scopes": list(self.scopes),
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "expires_at": self.expires_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "state": self.state(now),
        }


@dataclass(frozen=True)
class Session:
    """A console session: the cookie holds `secret`; the store keeps its SHA-256 only."""

    admin: str
    csrf: str
    created_at: dt.datetime
    expires_at: dt.datetime  # moved on by activity, never past `created_at + session_max`
    secret: str = field(default="", repr=False)
