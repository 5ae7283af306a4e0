"""The PostgreSQL implementations of the directory, the login throttle, the conversations, the
registry, the DMP, the flows' keys (with their unit of work) and the audit log.

The first six are the embedded classes over `gateway.postgresql.sql.Connection` (their rules,
validation and audit written once); what PostgreSQL needs differently is here:
- the registry locks the prescription it is about to change (`SELECT ... FOR UPDATE`): SQLite
  had one writer at a time, PostgreSQL lets two nodes dispense at once, and the row lock makes
  the second wait and re-read, so the last boxes are dispensed once;
- the directory writes its audit entries in the table `audit_log`, inside the change's own
  transaction (a change and its entry commit together);
- the throttle's upsert and the directory's JSON query use PostgreSQL's syntax.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from gateway.audit import AuditEntry, AuditLog
from gateway.audit_index import AuditFilter
from gateway.db import transaction
from gateway.directory.auth import SQLiteThrottle
from gateway.directory.sqlite import SQLiteDirectory, _normalised_dn
from gateway.dmp.sqlite import SQLiteDMP
from gateway.flows.sqlite import SQLitePrescribedKeys, SQLiteRecords
from gateway.pki.dn import subject_dn
from gateway.postgresql.sql import Connection
from gateway.prescriptions.registry import PrescriptionRecord
from gateway.prescriptions.sqlite_registry import SQLiteRegistry

_AUDIT_INSERT = (
    "INSERT INTO audit_log (at, actor, action, target, details) VALUES (?, ?, ?, ?, ?)"
)


def _audit_row(actor: str, action: str, target: str, details: dict[str, Any]) -> tuple[Any, ...]:
    return (
        datetime.now(UTC),
        actor,
        action,
        target,
        json.dumps(details, ensure_ascii=False, sort_keys=True, default=str),
    )


class PostgreSQLDirectory(SQLiteDirectory):
    def _audit(self, action: str, target: str, **details: Any) -> None:
        # Inside the change's transaction: both commit, or neither.
        self.conn.execute(_AUDIT_INSERT, _audit_row(self.actor, action, target, details))

    def is_trust_space_operator(self, subject: Any) -> bool:
        text = subject_dn(subject) if isinstance(subject, x509.Name) else str(subject)
        key = _normalised_dn(text)
        if key is None:
            return False
        rows = self._read(
            "SELECT DISTINCT j.value FROM directory_domain AS d,"
            " jsonb_array_elements_text(d.operator_dns::jsonb) AS j(value) WHERE d.ours = 0"
        )
        return any(_normalised_dn(r[0]) == key for r in rows)


class PostgreSQLThrottle(SQLiteThrottle):
    def add_verified(self, key: bytes, hash_digest: bytes, expires: float, now: float) -> None:
        with self._lock, transaction(self.conn):
            self.conn.execute("DELETE FROM auth_verified WHERE expires <= ?", (now,))
            self.conn.execute(
                "INSERT INTO auth_verified (key, hash_digest, expires) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET hash_digest = excluded.hash_digest,"
                " expires = excluded.expires",
                (key, hash_digest, expires),
            )


class PostgreSQLRegistry(SQLiteRegistry):
    def _load(self, identifier: str) -> PrescriptionRecord:
        if getattr(self.conn, "writing", False):  # a transition: hold it until the commit
            self.conn.execute(
                "SELECT 1 FROM prescriptions WHERE identifier = ? FOR UPDATE", (identifier,)
            )
        return super()._load(identifier)


class PostgreSQLRecords(SQLiteRecords):
    """The registry, the DMP and the flows' keys on one connection: a unit of work is one
    PostgreSQL transaction (`BEGIN ... COMMIT`), the repositories' own changes SAVEPOINTs."""

    def __init__(self, conn: Connection, audit: AuditLog) -> None:  # noqa: D107
        self.conn = conn  # type: ignore[assignment]
        self.audit = audit
        self.registry = PostgreSQLRegistry(conn, audit.record)  # type: ignore[arg-type]
        self.dmp = SQLiteDMP(conn, audit.record)  # type: ignore[arg-type]
        self.prescribed = SQLitePrescribedKeys(conn)  # type: ignore[arg-type]


class PostgreSQLAuditLog:
    """`AuditLog` in the table `audit_log`. Each entry is committed when `record` returns;
    inside `held()` (per thread) the entries go in one INSERT, one commit, when the block ends.
    Thread-safe (one lock around one connection)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        conn.require_schema("audit")
        self._lock = threading.Lock()
        self._local = threading.local()

    def record(self, actor: str, action: str, target: str, details: dict[str, Any]) -> None:
        row = _audit_row(actor, action, target, details)
        held: list[tuple[Any, ...]] | None = getattr(self._local, "held", None)
        if held is not None:
            held.append(row)
        else:
            self._write([row])

    __call__ = record

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        with self._lock:
            self.conn.executemany(_AUDIT_INSERT, rows)

    @contextmanager
    def held(self) -> Iterator[None]:
        if getattr(self._local, "held", None) is not None:
            yield
            return
        self._local.held = []
        try:
            yield
        finally:
            rows, self._local.held = self._local.held, None
            if rows:
                self._write(rows)

    def _entries(self, where: str, params: tuple[Any, ...]) -> list[AuditEntry]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT at, actor, action, target, details FROM audit_log"  # noqa: S608
                + where + " ORDER BY id",
                params,
            ).fetchall()
        return [AuditEntry(at=r[0], actor=r[1], action=r[2], target=r[3], details=r[4] or {})
                for r in rows]

    def read(
        self, *, action: str | None = None, target: str | None = None
    ) -> Iterator[AuditEntry]:
        where: list[str] = []
        params: list[Any] = []
        if action:
            if action.endswith("."):
                where.append("starts_with(action, ?)")
            else:
                where.append("action = ?")
            params.append(action)
        if target:
            where.append("target = ?")
            params.append(target)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        return iter(self._entries(clause, tuple(params)))

    def since(self, start: datetime) -> list[AuditEntry]:
        return self._entries(" WHERE at >= ?", (start,))

    def query(
        self, f: AuditFilter, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[AuditEntry], int | None]:
        """One page newest first, and the count: the indexes on (action, id), (actor, id),
        target and at serve the filters; words are matched in the entry's text (ILIKE)."""
        where: list[str] = []
        params: list[Any] = []
        if f.action and f.action.endswith("."):
            where.append("action >= ? AND action < ?")  # a range the index on action serves
            params += [f.action, f.action[:-1] + "/"]
        elif f.action:
            where.append("action = ?")
            params.append(f.action)
        for column, value in (("target", f.target), ("actor", f.actor)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if f.since is not None:
            where.append("at >= ?")
            params.append(f.since)
        for word in f.words:
            where.append("lower(actor || ' ' || action || ' ' || target || ' ' || details::text)"
                         " LIKE ? ESCAPE '\\'")
            params.append("%" + word.replace("\\", "\\\\").replace("%", "\\%")
                          .replace("_", "\\_") + "%")
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        with self._lock:
            rows = self.conn.execute(
                "SELECT at, actor, action, target, details FROM audit_log"  # noqa: S608
                + clause + " ORDER BY id DESC LIMIT ? OFFSET ?", (*params, limit, offset),
            ).fetchall()
            if len(rows) < limit and (rows or offset == 0):
                total = offset + len(rows)
            else:
                total = int(self.conn.execute(
                    "SELECT count(*) FROM audit_log" + clause, tuple(params)  # noqa: S608
                ).fetchone()[0])
        entries = [AuditEntry(at=r[0], actor=r[1], action=r[2], target=r[3],
                              details=r[4] or {}) for r in rows]
        return entries, total

    def close(self) -> None:
        self.conn.close()
