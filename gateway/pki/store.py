"""The index of issued certificates and imported anchors, in the gateway's database (SQLite, or
PostgreSQL with `gateway.postgresql`: the same SQL).

Certificates and keys themselves are files under `certs/` (see `files.Layout`); the index says
what was issued to whom, and which certificates are revoked (the CRLs are built from it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from gateway import db
from gateway.config import Config
from gateway.directory.validate import InvalidField
from gateway.texts import t

MIGRATIONS = [
    """
    CREATE TABLE pki_certificates (
        serial      TEXT PRIMARY KEY,          -- upper-case hex, no separators
        kind        TEXT NOT NULL,
        ca          TEXT NOT NULL,             -- the issuing CA (kinds.CA value)
        subject_dn  TEXT NOT NULL,             -- RFC 4514, as dn.subject_dn renders it
        common_name TEXT NOT NULL,
        email       TEXT,                      -- lower-case; NULL for server certificates
        not_before  TEXT NOT NULL,             -- ISO 8601 UTC
        not_after   TEXT NOT NULL,
        fingerprint TEXT NOT NULL,             -- SHA-256, hex
        issued_at   TEXT NOT NULL,
        revoked_at  TEXT,
        reason      TEXT
    );
    CREATE INDEX pki_certificates_email ON pki_certificates(email);
    CREATE TABLE pki_anchors (
        fingerprint TEXT PRIMARY KEY,          -- SHA-256, hex
        subject_dn  TEXT NOT NULL,
        not_after   TEXT NOT NULL,
        added_at    TEXT NOT NULL
    );
    CREATE TABLE pki_state (
        name  TEXT PRIMARY KEY,                -- 'server_serial', 'crl_number:<ca>'
        value TEXT NOT NULL
    );
    """,
    # Listings page in the database, newest first, and the dashboard's "expiring soon".
    """
    CREATE INDEX pki_certificates_issued ON pki_certificates(issued_at, serial);
    CREATE INDEX pki_certificates_not_after ON pki_certificates(not_after);
    """,
]


class CertificateIndex(Protocol):
    """The PKI's index in the backend's database (SQLite, or PostgreSQL through
    `gateway.postgresql.sql`: the same SQL): what the signers ask (`issued`), and the
    connection the PKI's own administration (`gateway.pki.ca`, `crl`, `anchors`) runs its
    transactions on."""

    connection: sqlite3.Connection

    def issued(self, *, email: str | None = None, kind: str | None = None) -> list[CertRecord]:
        """Certificates issued (to `email`, of `kind`), oldest first, revoked ones included."""
        ...

    def close(self) -> None: ...


class SQLCertificateIndex:
    """`CertificateIndex` over one connection of either backend."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def issued(self, *, email: str | None = None, kind: str | None = None) -> list[CertRecord]:
        where, params = [], []
        if email:
            where.append("email = ?")
            params.append(email.lower())
        if kind:
            where.append("kind = ?")
            params.append(kind)
        sql = "SELECT * FROM pki_certificates"  # noqa: S608 - fixed fragments, bound values
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.connection.execute(sql + " ORDER BY issued_at, serial", params).fetchall()
        return [record_of(r) for r in rows]

    def close(self) -> None:
        self.connection.close()


def open_index(config: Config) -> SQLCertificateIndex:
    """A connection to the index (migrated) for its owner to keep: the root of a process that
    looks up the signer of each prescription opens one (`Runtime.certificates`), where opening
    and migrating per look-up costs more than the query."""
    conn = db.connect(config.database_path)
    db.migrate(conn, "pki", MIGRATIONS)
    return SQLCertificateIndex(conn)


@contextmanager
def connection(config: Config) -> Iterator[sqlite3.Connection]:
    """A connection to the index of the configured storage backend (the embedded one:
    `open_index`; PostgreSQL: the shared database, so every node sees every certificate
    issued and revoked), closed at the end of the block."""
    from gateway.runtime.storage import storage_for

    index = storage_for(config).certificate_index()
    try:
        yield index.connection
    finally:
        index.close()


@dataclass(frozen=True)
class CertRecord:
    serial: str
    kind: str
    ca: str
    subject_dn: str
    common_name: str
    email: str | None
    not_before: datetime
    not_after: datetime
    fingerprint: str
    issued_at: datetime
    revoked_at: datetime | None
    reason: str | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if now > self.not_after:
            return "expired"
        if now < self.not_before:
            return "not yet valid"
        return "valid"

    def as_json(self, now: datetime) -> dict[str, object]:
        return {
            "serial": self.serial,
            "kind": self.kind,
            "ca": self.ca,
            "subject": self.subject_dn,
            "common_name": self.common_name,
            "email": self.email,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "sha256": self.fingerprint,
            "issued_at": self.issued_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "reason": self.reason,
            "status": self.status(now),
        }


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def record_of(row: sqlite3.Row) -> CertRecord:
    return CertRecord(
        serial=row["serial"],
        kind=row["kind"],
        ca=row["ca"],
        subject_dn=row["subject_dn"],
        common_name=row["common_name"],
        email=row["email"],
        not_before=datetime.fromisoformat(row["not_before"]),
        not_after=datetime.fromisoformat(row["not_after"]),
        fingerprint=row["fingerprint"],
        issued_at=datetime.fromisoformat(row["issued_at"]),
        revoked_at=_dt(row["revoked_at"]),
        reason=row["reason"],
    )


STATUSES = ("valid", "revoked", "expired", "not yet valid")
NO_LIMIT = 1 << 62  # `find` without a limit (PostgreSQL refuses SQLite's -1)


def _like(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _filter(
    now: datetime, email: str | None, kind: str | None, search: str | None,
    status: str | None,
) -> tuple[str, list[object]]:
    """The WHERE of a listing. Times are compared as the index stores them (ISO 8601 UTC)."""
    where: list[str] = []
    params: list[object] = []
    if email:
        where.append("email = ?")
        params.append(email.strip().lower())
    if kind:
        where.append("kind = ?")
        params.append(kind)
    for word in (search or "").lower().split():
        where.append("lower(subject_dn || ' ' || coalesce(email, '') || ' ' || serial)"
                     " LIKE ? ESCAPE '\\'")
        params.append(_like(word))
    at = now.astimezone(UTC).isoformat()
    if status == "revoked":
        where.append("revoked_at IS NOT NULL")
    elif status == "expired":
        where.append("revoked_at IS NULL AND not_after < ?")
        params.append(at)
    elif status == "valid":
        where.append("revoked_at IS NULL AND not_after >= ? AND not_before <= ?")
        params += [at, at]
    elif status == "not yet valid":
        where.append("revoked_at IS NULL AND not_after >= ? AND not_before > ?")
        params += [at, at]
    elif status:
        raise InvalidField("status", status, t("a status is one of {statuses}",
                                               statuses=", ".join(STATUSES)))
    return (" WHERE " + " AND ".join(where)) if where else "", params


def find(
    conn: sqlite3.Connection, now: datetime, *, email: str | None = None,
    kind: str | None = None, search: str | None = None, status: str | None = None,
    offset: int = 0, limit: int = 50,
) -> tuple[list[CertRecord], int]:
    """One window of the matching certificates, newest first, and how many match. `search`:
    every word is in the subject, the address or the serial; `status` as `CertRecord.status`."""
    where, params = _filter(now, email, kind, search, status)
    rows = conn.execute(
        "SELECT * FROM pki_certificates" + where  # noqa: S608 (built from fixed fragments)
        + " ORDER BY issued_at DESC, serial DESC LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    if len(rows) < limit and (rows or offset == 0):
        total = offset + len(rows)  # the last page: no need to count
    else:
        total = int(conn.execute("SELECT count(*) FROM pki_certificates" + where,  # noqa: S608
                                 params).fetchone()[0])
    return [record_of(r) for r in rows], total


def expiring(
    conn: sqlite3.Connection, now: datetime, until: datetime, limit: int
) -> tuple[list[CertRecord], int]:
    """Valid certificates whose end is before `until`, soonest first (at most `limit`), and
    how many there are."""
    where = " WHERE revoked_at IS NULL AND not_after >= ? AND not_after < ? AND not_before <= ?"
    params = [now.astimezone(UTC).isoformat(), until.astimezone(UTC).isoformat(),
              now.astimezone(UTC).isoformat()]
    rows = conn.execute("SELECT * FROM pki_certificates" + where  # noqa: S608
                        + " ORDER BY not_after, serial LIMIT ?", [*params, limit]).fetchall()
    total = len(rows) if len(rows) < limit else int(conn.execute(
        "SELECT count(*) FROM pki_certificates" + where, params).fetchone()[0])  # noqa: S608
    return [record_of(r) for r in rows], total


# --- files every node needs, kept in a shared database -------------------------------------
# On the embedded backend `certs/` is the one copy. On a shared database (PostgreSQL), the
# files the PKI writes while the gateway runs — issued certificates and their keys, our CRLs,
# imported anchors — are also kept in the table `pki_files`, written in the same transaction
# as the index, and every node writes the ones it lacks into its own `certs/`
# (`fetch_files`: at `mssgw init` and `serve`, hourly in each worker, and when a signer's
# file is missing). The CAs' own certificates and keys, and the configuration, stay deployed
# files: CA keys never enter the database.


def _shared(config: Config) -> bool:
    return config.storage.backend == "postgresql"


def share_files(config: Config, conn: sqlite3.Connection, paths: list[Path]) -> None:
    """Keep `paths` (under certs/) in the shared database, inside the caller's transaction."""
    if not _shared(config):
        return
    root = config.certs_path
    for path in paths:
        conn.execute(
            "INSERT INTO pki_files (path, data, mode) VALUES (?, ?, ?) ON CONFLICT (path)"
            " DO UPDATE SET data = excluded.data, mode = excluded.mode,"
            " version = nextval('pki_files_version')",
            (str(path.relative_to(root)), path.read_bytes(), path.stat().st_mode & 0o777),
        )


def fetch_files(config: Config) -> list[Path]:
    """Write into this node's certs/ the shared files it lacks or has older; the paths written.
    A watermark (`certs/.shared-version`) makes the next call read only what changed since."""
    if not _shared(config):
        return []
    from gateway.fileio import write_atomic

    root = config.certs_path
    mark = root / ".shared-version"
    try:
        since = int(mark.read_text())
    except (OSError, ValueError):
        since = 0
    with connection(config) as conn:
        rows = conn.execute(
            "SELECT path, data, mode, version FROM pki_files WHERE version > ? ORDER BY version",
            (since,),
        ).fetchall()
    written: list[Path] = []
    for rel, data, mode, version in rows:
        target = (root / rel).resolve()
        if root.resolve() not in target.parents:  # a path of ours, never elsewhere
            continue
        data = bytes(data)
        if not target.exists() or target.read_bytes() != data:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(target, data, int(mode))
            written.append(target)
        since = max(since, int(version))
    if rows:
        write_atomic(mark, str(since).encode())
    return written


def get_state(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute("SELECT value FROM pki_state WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None


def set_state(conn: sqlite3.Connection, name: str, value: str) -> None:
    conn.execute(
        "INSERT INTO pki_state(name, value) VALUES (?, ?)"
        " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        (name, value),
    )
