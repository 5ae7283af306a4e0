"""Where administrator accounts, API tokens, console sessions and login links live: the
`AdminStore` interface.

`AdminAccounts` (accounts.py) holds the rules and calls only this interface; a storage backend
makes one (`Storage.admin_store()`, gateway/runtime): the embedded default keeps them in the
gateway's SQLite database (`sqlite.py`, component `admins`), a PostgreSQL backend in its shared
database, so that a session opened on one worker (or node) is valid on all and a lockout holds
everywhere. The contract every implementation passes: tests/test_admin_store_contract.py.

Secrets handed to people (session cookies, API tokens, login links) reach the store as SHA-256
digests only: they are 256-bit random strings, so a fast digest is enough, and the database
alone opens nothing. Times are timezone-aware UTC datetimes.

Two calls are atomic read-and-writes, because workers (and nodes) serve logins concurrently:
`count_failure` (a burst of parallel wrong passwords must count every one of them towards the
lockout) and `take_totp_step` (the same TOTP code presented twice at once is accepted once).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.admins.model import Admin, ApiToken, Role, Session
from gateway.errors import Conflict
from gateway.texts import t

# The fields `update_account` may change (the others are set once, by `add_account`).
ACCOUNT_FIELDS = frozenset({
    "role", "active", "password_hash", "totp_secret", "totp_last_step", "cert_sha256",
    "last_login_at", "failures", "first_failure_at", "locked_until",
})
# The fields `update_token` may change.
TOKEN_FIELDS = frozenset({"revoked_at", "last_used_at"})


class DuplicateAdmin(Conflict):
    """`add_account` or `update_account`: the name, or the certificate, is already another
    account's (also when two administrators create the same account at the same moment)."""

    def __init__(self, field: str) -> None:
        self.field = field
        if field == "certificate":
            super().__init__("certificate: already bound to another administrator")
        else:
            super().__init__(t("{field}: this administrator already exists", field=field))


@dataclass(frozen=True)
class AccountSecrets:
    """An account with what only the login check may see."""

    admin: Admin
    password_hash: str | None
    totp_secret: str | None
    totp_last_step: int  # the last TOTP time step accepted (-1: none yet)
    failures: int  # failed logins counted since `first_failure_at`
    first_failure_at: dt.datetime | None


class AdminStore(Protocol):
    # --- accounts ---------------------------------------------------------------------------
    def add_account(
        self, name: str, role: Role, password_hash: str | None, totp_secret: str | None,
        cert_sha256: str | None, now: dt.datetime,
    ) -> None:
        """A new active account, no failures, no TOTP step used. DuplicateAdmin("name") or
        DuplicateAdmin("certificate") if either is taken; nothing is written then."""
        ...

    def account(self, name: str) -> AccountSecrets | None: ...

    def account_by_certificate(self, sha256: str) -> AccountSecrets | None:
        """The account a client certificate (its SHA-256, hex) is bound to."""
        ...

    def accounts(self) -> list[Admin]:
        """Every account, by name."""
        ...

    def update_account(self, name: str, **fields: Any) -> None:
        """Set `fields` (names in ACCOUNT_FIELDS; datetimes, None clears) of one account;
        `active` is a bool. DuplicateAdmin("certificate") when cert_sha256 is another's."""
        ...

    def delete_account(self, name: str) -> None:
        """The account, with its tokens, sessions and login links."""
        ...

    def count_failure(self, name: str, now: dt.datetime, window_start: dt.datetime) -> int:
        """Count one failed login, atomically: a failure count whose first failure is before
        `window_start` (or absent) starts again at 1 (first failure `now`), else it grows by 1.
        Returns the new count (0 for an unknown account)."""
        ...

    def take_totp_step(self, name: str, step: int) -> bool:
        """Record that the TOTP code of time step `step` was used, atomically, if `step` is
        after the last one recorded; False when it is not (the code was used already)."""
        ...

    # --- API tokens -------------------------------------------------------------------------
    def add_token(self, token: ApiToken, secret_sha256: str) -> None: ...

    def token(self, token_id: str) -> tuple[ApiToken, str] | None:
        """The token and the SHA-256 of its secret."""
        ...

    def tokens(self, admin: str | None = None) -> list[ApiToken]:
        """Every token (or `admin`'s), newest first."""
        ...

    def update_token(self, token_id: str, **fields: Any) -> None:
        """Set `fields` (names in TOKEN_FIELDS: datetimes) of one token."""
        ...

    # --- console sessions, keyed by the SHA-256 of their cookie ------------------------------
    def add_session(self, secret_sha256: str, session: Session) -> None: ...

    def session(self, secret_sha256: str) -> Session | None: ...

    def touch_session(self, secret_sha256: str, expires_at: dt.datetime) -> None: ...

    def delete_session(self, secret_sha256: str) -> None: ...

    def delete_sessions(
        self, admin: str | None = None, *, before: dt.datetime | None = None
    ) -> int:
        """Every session of `admin`, or (admin None) every session expiring before `before`;
        how many were deleted."""
        ...

    # --- one-time login links, keyed by the SHA-256 of their code ----------------------------
    def add_login_link(self, secret_sha256: str, admin: str, expires_at: dt.datetime) -> None: ...

    def take_login_link(self, secret_sha256: str, now: dt.datetime) -> str | None:
        """The link's account name, deleting the link (single use, atomically: two requests
        with the same link get it once) and every expired link; None if unknown or expired."""
        ...

    def close(self) -> None: ...
