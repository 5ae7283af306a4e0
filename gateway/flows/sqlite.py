"""`Records` on the gateway's SQLite database: the registry, the DMP and the flows' idempotence
keys on one connection, so a unit of work is one `BEGIN IMMEDIATE ... COMMIT` (one fsync) and
a failure in any part leaves none of it (the repositories' own changes are SAVEPOINTs inside
it, `gateway.db.atomic`)."""

from __future__ import annotations

import sqlite3
from contextlib import ExitStack
from types import TracebackType

from gateway.audit import AuditLog
from gateway.db import migrate
from gateway.dmp.sqlite import SQLiteDMP
from gateway.flows.records import AlreadyPrescribed
from gateway.prescriptions.sqlite_registry import SQLiteRegistry

COMPONENT = "flows"
MIGRATIONS = [
    """
    CREATE TABLE flows_prescribed (
        key TEXT PRIMARY KEY,          -- sha256(sender, Message-ID, patient)
        identifier TEXT NOT NULL
    );
    """,
]


class SQLitePrescribedKeys:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        migrate(conn, COMPONENT, MIGRATIONS)

    def identifier_for(self, key: str) -> str | None:
        row = self.conn.execute(
            "SELECT identifier FROM flows_prescribed WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else str(row[0])

    def add(self, key: str, identifier: str) -> None:
        try:
            self.conn.execute(
                "INSERT INTO flows_prescribed (key, identifier) VALUES (?, ?)", (key, identifier)
            )
        except sqlite3.IntegrityError:
            raise AlreadyPrescribed(key) from None


class SQLiteUnit:
    """One `BEGIN IMMEDIATE` transaction on the records' connection, the audit entries held
    until just before its COMMIT (or ROLLBACK: attempts are recorded too)."""

    def __init__(self, records: SQLiteRecords) -> None:
        self.records = records
        self.registry = records.registry
        self.dmp = records.dmp
        self.prescribed = records.prescribed
        self._stack: ExitStack | None = None

    def __enter__(self) -> SQLiteUnit:
        if self._stack is not None:
            raise RuntimeError("this unit of work has begun already")
        stack = ExitStack()
        stack.enter_context(self.records.audit.held())
        self.records.conn.execute("BEGIN IMMEDIATE")
        self._stack = stack
        return self

    def _end(self, statement: str) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        try:
            stack.close()  # the held audit entries, written and fsynced before the outcome
        except BaseException:
            self.records.conn.execute("ROLLBACK")  # a change is never unaudited
            raise
        self.records.conn.execute(statement)

    def commit(self) -> None:
        self._end("COMMIT")

    def rollback(self) -> None:
        self._end("ROLLBACK")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            self.commit()
        else:
            self.rollback()


class SQLiteRecords:
    def __init__(self, conn: sqlite3.Connection, audit: AuditLog) -> None:
        self.conn = conn
        self.audit = audit
        self.registry = SQLiteRegistry(conn, audit.record)
        self.dmp = SQLiteDMP(conn, audit.record)
        self.prescribed = SQLitePrescribedKeys(conn)

    def unit(self) -> SQLiteUnit:
        return SQLiteUnit(self)

    def close(self) -> None:
        self.conn.close()
