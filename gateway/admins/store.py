"""Where administrator accounts, tokens, sessions and login links live.

`AdminStore` is what `AdminAccounts` uses; `SQLiteAdminStore` keeps them in the gateway's
database (component `admins`), shared by every worker process of `mssgw serve`, so a session
started on one worker is valid on all, and a lockout holds everywhere. Secrets handed to people
(session cookies, API tokens, login links) are stored as SHA-256 digests only: they are 256-bit
random strings, so a fast digest is enough, and the database alone opens nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gateway.admins.model import Admin, ApiToken, Role, Session
from gateway.db import connect, migrate, transaction

COMPONENT = "admins"
MIGRATIONS: list[str] = [
    """
    CREATE TABLE admins_account (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1,
        password_hash TEXT,
        totp_secret TEXT,
        totp_last_step INTEGER NOT NULL DEFAULT -1,
        cert_sha256 TEXT UNIQUE,
        created_at TEXT NOT NULL,
        last_login_at TEXT,
        failures INTEGER NOT NULL DEFAULT 0,
        first_failure_at TEXT,
        locked_until TEXT
    );
    CREATE TABLE admins_token (
        id TEXT PRIMARY KEY,
        secret_sha256 TEXT NOT NULL,
        admin TEXT NOT NULL REFERENCES admins_account(name) ON DELETE CASCADE,
        label TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        revoked_at TEXT,
        last_used_at TEXT
    );
    CREATE TABLE admins_session (
        secret_sha256 TEXT PRIMARY KEY,
        admin TEXT NOT NULL REFERENCES admins_account(name) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE TABLE admins_login_link (
        secret_sha256 TEXT PRIMARY KEY,
        admin TEXT NOT NULL REFERENCES admins_account(name) ON DELETE CASCADE,
        expires_at TEXT NOT NULL
    );
    """,
]


@dataclass(frozen=True)
class AccountSecrets:
    """An account with what only the login check may see."""

    admin: Admin
    password_hash: str | None
    totp_secret: str | None
    totp_last_step: int
    failures: int
    first_failure_at: dt.datetime | None


def _t(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


class AdminStore(Protocol):
    def add_account(
        self, name: str, role: Role, password_hash: str | None, totp_secret: str | None,
        cert_sha256: str | None, now: dt.datetime,
    ) -> None: ...
    def account(self, name: str) -> AccountSecrets | None: ...
    def account_by_certificate(self, sha256: str) -> AccountSecrets | None: ...
    def accounts(self) -> list[Admin]: ...
    def update_account(self, name: str, **fields: Any) -> None: ...
    def delete_account(self, name: str) -> None: ...
    def add_token(self, token: ApiToken, secret_sha256: str) -> None: ...
    def token(self, token_id: str) -> tuple[ApiToken, str] | None: ...
    def tokens(self, admin: str | None = None) -> list[ApiToken]: ...
    def update_token(self, token_id: str, **fields: Any) -> None: ...
    def add_session(self, secret_sha256: str, session: Session) -> None: ...
    def session(self, secret_sha256: str) -> Session | None: ...
    def touch_session(self, secret_sha256: str, expires_at: dt.datetime) -> None: ...
    def delete_session(self, secret_sha256: str) -> None: ...
    def delete_sessions(
        self, admin: str | None = None, *, before: dt.datetime | None = None
    ) -> int:
        ...
    def add_login_link(self, secret_sha256: str, admin: str, expires_at: dt.datetime) -> None: ...
    def take_login_link(self, secret_sha256: str, now: dt.datetime) -> str | None: ...
    def close(self) -> None: ...


_ACCOUNT_FIELDS = {
    "role", "active", "password_hash", "totp_secret", "totp_last_step", "cert_sha256",
    "last_login_at", "failures", "first_failure_at", "locked_until",
}
_TOKEN_FIELDS = {"revoked_at", "last_used_at"}


class SQLiteAdminStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._lock = threading.RLock()
        migrate(conn, COMPONENT, MIGRATIONS)

    @classmethod
    def open(cls, path: Path | str) -> SQLiteAdminStore:
        return cls(connect(path))

    def close(self) -> None:
        self.conn.close()

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        with self._lock, transaction(self.conn):
            return self.conn.execute(sql, params).rowcount

    def _one(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self.conn.execute(sql, params).fetchone()
            return row

    # --- accounts --------------------------------------------------------------------------
    @staticmethod
    def _admin(r: sqlite3.Row) -> Admin:
        return Admin(
            name=r["name"], role=Role(r["role"]), active=bool(r["active"]),
            created_at=dt.datetime.fromisoformat(r["created_at"]),
            has_password=r["password_hash"] is not None, has_totp=r["totp_secret"] is not None,
            certificate_sha256=r["cert_sha256"], last_login_at=_t(r["last_login_at"]),
            locked_until=_t(r["locked_until"]),
        )

    def _secrets(self, r: sqlite3.Row | None) -> AccountSecrets | None:
        if r is None:
            return None
        return AccountSecrets(
            self._admin(r), r["password_hash"], r["totp_secret"], r["totp_last_step"],
            r["failures"], _t(r["first_failure_at"]),
        )

    def add_account(
        self, name: str, role: Role, password_hash: str | None, totp_secret: str | None,
        cert_sha256: str | None, now: dt.datetime,
    ) -> None:
        self._write(
            "INSERT INTO admins_account(name, role, password_hash, totp_secret, cert_sha256,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (name, role.value, password_hash, totp_secret, cert_sha256, now.isoformat()),
        )

    def account(self, name: str) -> AccountSecrets | None:
        return self._secrets(self._one("SELECT * FROM admins_account WHERE name = ?", (name,)))

    def account_by_certificate(self, sha256: str) -> AccountSecrets | None:
        row = self._one("SELECT * FROM admins_account WHERE cert_sha256 = ?", (sha256,))
        return self._secrets(row)

    def accounts(self) -> list[Admin]:
        with self._lock:
            rows = self.conn.execute("SELECT * FROM admins_account ORDER BY name").fetchall()
        return [self._admin(r) for r in rows]

    def update_account(self, name: str, **fields: Any) -> None:
        assert set(fields) <= _ACCOUNT_FIELDS, fields
        values = tuple(
            _iso(v) if isinstance(v, dt.datetime) else v for v in fields.values()
        )
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._write(f"UPDATE admins_account SET {sets} WHERE name = ?", (*values, name))  # noqa: S608

    def delete_account(self, name: str) -> None:
        self._write("DELETE FROM admins_account WHERE name = ?", (name,))

    # --- tokens ----------------------------------------------------------------------------
    @staticmethod
    def _token(r: sqlite3.Row) -> ApiToken:
        return ApiToken(
            id=r["id"], admin=r["admin"], label=r["label"], scopes=tuple(json.loads(r["scopes"])),
            created_at=dt.datetime.fromisoformat(r["created_at"]), created_by=r["created_by"],
            expires_at=dt.datetime.fromisoformat(r["expires_at"]),
            revoked_at=_t(r["revoked_at"]), last_used_at=_t(r["last_used_at"]),
        )

    def add_token(self, token: ApiToken, secret_sha256: str) -> None:
        self._write(
            "INSERT INTO admins_token(id, secret_sha256, admin, label, scopes, created_at,"
            " created_by, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                token.id, secret_sha256, token.admin, token.label, json.dumps(list(token.scopes)),
                token.created_at.isoformat(), token.created_by, token.expires_at.isoformat(),
            ),
        )

    def token(self, token_id: str) -> tuple[ApiToken, str] | None:
        r = self._one("SELECT * FROM admins_token WHERE id = ?", (token_id,))
        return None if r is None else (self._token(r), r["secret_sha256"])

    def tokens(self, admin: str | None = None) -> list[ApiToken]:
        sql, params = "SELECT * FROM admins_token", ()
        if admin:
            sql, params = sql + " WHERE admin = ?", (admin,)  # type: ignore[assignment]
        with self._lock:
            rows = self.conn.execute(sql + " ORDER BY created_at DESC", params).fetchall()
        return [self._token(r) for r in rows]

    def update_token(self, token_id: str, **fields: Any) -> None:
        assert set(fields) <= _TOKEN_FIELDS, fields
        sets = ", ".join(f"{k} = ?" for k in fields)
        values = tuple(_iso(v) for v in fields.values())
        self._write(f"UPDATE admins_token SET {sets} WHERE id = ?", (*values, token_id))  # noqa: S608

    # --- sessions --------------------------------------------------------------------------
    def add_session(self, secret_sha256: str, session: Session) -> None:
        self._write(
            "INSERT INTO admins_session(secret_sha256, admin, csrf, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                secret_sha256, session.admin, session.csrf, session.created_at.isoformat(),
                session.expires_at.isoformat(),
            ),
        )

    def session(self, secret_sha256: str) -> Session | None:
        r = self._one("SELECT * FROM admins_session WHERE secret_sha256 = ?", (secret_sha256,))
        if r is None:
            return None
        return Session(
            admin=r["admin"], csrf=r["csrf"], created_at=dt.datetime.fromisoformat(r["created_at"]),
            expires_at=dt.datetime.fromisoformat(r["expires_at"]),
        )

    def touch_session(self, secret_sha256: str, expires_at: dt.datetime) -> None:
        self._write(
            "UPDATE admins_session SET expires_at = ? WHERE secret_sha256 = ?",
            (expires_at.isoformat(), secret_sha256),
        )

    def delete_session(self, secret_sha256: str) -> None:
        self._write("DELETE FROM admins_session WHERE secret_sha256 = ?", (secret_sha256,))

    def delete_sessions(
        self, admin: str | None = None, *, before: dt.datetime | None = None
    ) -> int:
        if admin is not None:
            return self._write("DELETE FROM admins_session WHERE admin = ?", (admin,))
        assert before is not None
        return self._write(
            "DELETE FROM admins_session WHERE expires_at < ?", (before.isoformat(),)
        )

    # --- one-time login links --------------------------------------------------------------
    def add_login_link(self, secret_sha256: str, admin: str, expires_at: dt.datetime) -> None:
        self._write(
            "INSERT INTO admins_login_link(secret_sha256, admin, expires_at) VALUES (?, ?, ?)",
            (secret_sha256, admin, expires_at.isoformat()),
        )

    def take_login_link(self, secret_sha256: str, now: dt.datetime) -> str | None:
        """The link's account, deleting the link (single use); None if unknown or expired."""
        with self._lock, transaction(self.conn):
            r = self.conn.execute(
                "SELECT admin, expires_at FROM admins_login_link WHERE secret_sha256 = ?",
                (secret_sha256,),
            ).fetchone()
            self.conn.execute(
                "DELETE FROM admins_login_link WHERE secret_sha256 = ? OR expires_at < ?",
                (secret_sha256, now.isoformat()),
            )
        if r is None or dt.datetime.fromisoformat(r["expires_at"]) <= now:
            return None
        return str(r["admin"])
