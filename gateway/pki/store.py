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
from datetime import datetime

from gateway import db
from gateway.config import Config

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
]


def open_index(config: Config) -> sqlite3.Connection:
    """A connection to the index (migrated) for its owner to keep: the root of a process that
    looks up the signer of each prescription opens one (`Runtime.certificates`), where opening
    and migrating per look-up costs more than the query."""
    conn = db.connect(config.database_path)
    db.migrate(conn, "pki", MIGRATIONS)
    return conn


@contextmanager
def connection(config: Config) -> Iterator[sqlite3.Connection]:
    """A connection to the index of the configured storage backend (the embedded one:
    `open_index`; PostgreSQL: the shared database, so every node sees every certificate
    issued and revoked), closed at the end of the block."""
    from gateway.runtime.storage import storage_for

    conn: sqlite3.Connection = storage_for(config).certificate_index()
    try:
        yield conn
    finally:
        conn.close()


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


def get_state(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute("SELECT value FROM pki_state WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None


def set_state(conn: sqlite3.Connection, name: str, value: str) -> None:
    conn.execute(
        "INSERT INTO pki_state(name, value) VALUES (?, ?)"
        " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        (name, value),
    )
