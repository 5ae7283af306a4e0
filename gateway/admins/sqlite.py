"""`AdminStore` in the gateway's SQLite database (component `admins`): the embedded default.

Shared by every worker process of `mssgw serve` through the database file (WAL). One
connection per store, used by the request threads of a worker under a lock. The SQL is plain
enough for a PostgreSQL connection in the repositories' dialect; the atomic calls are single
statements (`UPDATE ... RETURNING`, `DELETE ... RETURNING`), atomic in both.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from gateway.admins.model import Admin, ApiToken, Role, Session
from gateway.admins.store import ACCOUNT_FIELDS, TOKEN_FIELDS, AccountSecrets, DuplicateAdmin
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


def _t(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _iso(value: dt.datetime | None) -> str | None:
    # One width for every stored time (isoformat() drops zero microseconds), so that the text
    # comparisons (`expires_at < ?`) order them as times.
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds") if value else None


def _duplicate(exc: sqlite3.IntegrityError | Exception) -> DuplicateAdmin:
    return DuplicateAdmin("certificate" if "cert_sha256" in str(exc) else "name")


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

    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        with self._lock:
            return self.conn.execute(sql, params).fetchone()

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    # --- accounts --------------------------------------------------------------------------
    @staticmethod
    def _admin(r: Any) -> Admin:
        return Admin(
            name=r["name"], role=Role(r["role"]), active=bool(r["active"]),
            created_at=dt.datetime.fromisoformat(r["created_at"]),
            has_password=r["password_hash"] is not None, has_totp=r["totp_secret"] is not None,
            certificate_sha256=r["cert_sha256"], last_login_at=_t(r["last_login_at"]),
            locked_until=_t(r["locked_until"]),
        )

    def _secrets(self, r: Any) -> AccountSecrets | None:
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
        try:
            self._write(
                "INSERT INTO admins_account(name, role, password_hash, totp_secret,"
                " cert_sha256, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (name, role.value, password_hash, totp_secret, cert_sha256, _iso(now)),
            )
        except sqlite3.IntegrityError as exc:
            raise _duplicate(exc) from None

    def account(self, name: str) -> AccountSecrets | None:
        return self._secrets(self._one("SELECT * FROM admins_account WHERE name = ?", (name,)))

    def account_by_certificate(self, sha256: str) -> AccountSecrets | None:
        row = self._one("SELECT * FROM admins_account WHERE cert_sha256 = ?", (sha256,))
        return self._secrets(row)

    def accounts(self) -> list[Admin]:
        return [self._admin(r) for r in self._all("SELECT * FROM admins_account ORDER BY name")]

    def update_account(self, name: str, **fields: Any) -> None:
        unknown = set(fields) - ACCOUNT_FIELDS
        if unknown:
            raise ValueError(f"not account fields: {sorted(unknown)}")
        values = tuple(
            _iso(v) if isinstance(v, dt.datetime) else int(v) if isinstance(v, bool) else v
            for v in fields.values()
        )
        sets = ", ".join(f"{k} = ?" for k in fields)  # names checked against ACCOUNT_FIELDS
        try:
            self._write(f"UPDATE admins_account SET {sets} WHERE name = ?",  # noqa: S608
                        (*values, name))
        except sqlite3.IntegrityError as exc:
            raise _duplicate(exc) from None

    def delete_account(self, name: str) -> None:
        self._write("DELETE FROM admins_account WHERE name = ?", (name,))

    def count_failure(self, name: str, now: dt.datetime, window_start: dt.datetime) -> int:
        with self._lock, transaction(self.conn):
            row = self.conn.execute(
                "UPDATE admins_account SET"
                " failures = CASE WHEN first_failure_at IS NULL OR first_failure_at < ?"
                "   THEN 1 ELSE failures + 1 END,"
                " first_failure_at = CASE WHEN first_failure_at IS NULL OR first_failure_at < ?"
                "   THEN ? ELSE first_failure_at END"
                " WHERE name = ? RETURNING failures",
                (_iso(window_start), _iso(window_start), _iso(now), name),
            ).fetchall()  # all: the statement finished before the COMMIT
        return int(row[0][0]) if row else 0

    def take_totp_step(self, name: str, step: int) -> bool:
        return self._write(
            "UPDATE admins_account SET totp_last_step = ? WHERE name = ? AND totp_last_step < ?",
            (step, name, step),
        ) == 1

    # --- tokens ----------------------------------------------------------------------------
    @staticmethod
    def _token(r: Any) -> ApiToken:
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
                _iso(token.created_at), token.created_by, _iso(token.expires_at),
            ),
        )

    def token(self, token_id: str) -> tuple[ApiToken, str] | None:
        r = self._one("SELECT * FROM admins_token WHERE id = ?", (token_id,))
        return None if r is None else (self._token(r), r["secret_sha256"])

    def tokens(self, admin: str | None = None) -> list[ApiToken]:
        if admin:
            rows = self._all("SELECT * FROM admins_token WHERE admin = ?"
                             " ORDER BY created_at DESC, id", (admin,))
        else:
            rows = self._all("SELECT * FROM admins_token ORDER BY created_at DESC, id")
        return [self._token(r) for r in rows]

    def update_token(self, token_id: str, **fields: Any) -> None:
        unknown = set(fields) - TOKEN_FIELDS
        if unknown:
            raise ValueError(f"not token fields: {sorted(unknown)}")
        sets = ", ".join(f"{k} = ?" for k in fields)  # names checked against TOKEN_FIELDS
        values = tuple(_iso(v) for v in fields.values())
        self._write(f"UPDATE admins_token SET {sets} WHERE id = ?",  # noqa: S608
                    (*values, token_id))

    # --- sessions --------------------------------------------------------------------------
    def add_session(self, secret_sha256: str, session: Session) -> None:
        self._write(
            "INSERT INTO admins_session(secret_sha256, admin, csrf, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (secret_sha256, session.admin, session.csrf, _iso(session.created_at),
             _iso(session.expires_at)),
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
            (_iso(expires_at), secret_sha256),
        )

    def delete_session(self, secret_sha256: str) -> None:
        self._write("DELETE FROM admins_session WHERE secret_sha256 = ?", (secret_sha256,))

    def delete_sessions(
        self, admin: str | None = None, *, before: dt.datetime | None = None
    ) -> int:
        if admin is not None:
            return self._write("DELETE FROM admins_session WHERE admin = ?", (admin,))
        if before is None:
            raise ValueError("delete_sessions: give an administrator or a time")
        return self._write("DELETE FROM admins_session WHERE expires_at < ?", (_iso(before),))

    # --- one-time login links --------------------------------------------------------------
    def add_login_link(self, secret_sha256: str, admin: str, expires_at: dt.datetime) -> None:
        self._write(
            "INSERT INTO admins_login_link(secret_sha256, admin, expires_at) VALUES (?, ?, ?)",
            (secret_sha256, admin, _iso(expires_at)),
        )

    def take_login_link(self, secret_sha256: str, now: dt.datetime) -> str | None:
        with self._lock, transaction(self.conn):
            r = self.conn.execute(
                "DELETE FROM admins_login_link WHERE secret_sha256 = ?"
                " RETURNING admin, expires_at",
                (secret_sha256,),
            ).fetchall()
            self.conn.execute("DELETE FROM admins_login_link WHERE expires_at < ?", (_iso(now),))
        if not r or dt.datetime.fromisoformat(r[0]["expires_at"]) <= now:
            return None
        return str(r[0]["admin"])
