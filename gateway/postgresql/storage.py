"""`Storage` on PostgreSQL: every gateway node configured with the same `[storage] dsn` shares
the directory, the throttle, the registry, the DMP, the audit log, the conversations, the PKI's
index, the mail (bodies included) and the outbound queue, and nothing else. What stays on each
node's disk is deployed, not state: config.toml, the CA and TLS files under `certs/`, and the
BDPM drug reference (public, read-only data each node imports with `mssgw drugs import`).

Each store gets its own connection (a store is used by one process; the directory's and the
throttle's are shared by the process's threads under their own locks); the mail store and the
queue, used from many threads at once, draw from a pool (`[storage] pool_size` per process).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gateway.admins.sqlite import SQLiteAdminStore
from gateway.audit import AuditLog
from gateway.config import Config
from gateway.pki.store import SQLCertificateIndex
from gateway.postgresql import schema
from gateway.postgresql.connection import connect
from gateway.postgresql.mail import PostgreSQLIntake, PostgreSQLMailStores
from gateway.postgresql.queue import PostgreSQLQueue
from gateway.postgresql.sql import Connection
from gateway.postgresql.stores import (
    PostgreSQLAuditLog,
    PostgreSQLDirectory,
    PostgreSQLRecords,
    PostgreSQLThrottle,
)
from gateway.smtp.conversations import Conversations


class PostgreSQLStorage:
    def __init__(self, config: Config) -> None:
        self.config = config

    def connection(self) -> Connection:
        """A new connection in the repositories' dialect (`gateway.postgresql.sql`)."""
        return Connection(connect(self.config))

    def initialise(self) -> list[str]:
        created: list[str] = []
        for label, path in (
            ("certificates", self.config.certs_path),
            ("data folder", self.config.database_path.parent),
        ):
            if not path.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                created.append(f"created {label}: {path}")
        self.config.certs_path.chmod(0o700)
        conn = self.connection()
        try:
            created += schema.migrate_all(conn)
        finally:
            conn.close()
        return created

    def admin_store(self) -> SQLiteAdminStore:
        # The embedded class over this backend's connection: its SQL is the shared dialect,
        # its two atomic calls single UPDATE ... RETURNING statements (gateway/admins/sqlite.py).
        return SQLiteAdminStore(self.connection())  # type: ignore[arg-type]

    def directory(self, actor: str) -> PostgreSQLDirectory:
        c = self.config
        return PostgreSQLDirectory(
            self.connection(),  # type: ignore[arg-type]
            patient_domain=c.gateway.patient_domain,
            actor=actor,
            min_password_length=c.auth.min_password_length,
        )

    def audit_log(self) -> PostgreSQLAuditLog:
        return PostgreSQLAuditLog(self.connection())

    def login_throttle(self) -> PostgreSQLThrottle:
        return PostgreSQLThrottle(self.connection())  # type: ignore[arg-type]

    def conversations(self) -> Conversations:
        return Conversations(self.connection())  # type: ignore[arg-type]

    def records(self, audit: AuditLog) -> PostgreSQLRecords:
        return PostgreSQLRecords(self.connection(), audit)

    def mail_stores(self) -> PostgreSQLMailStores:
        return PostgreSQLMailStores(self.config)

    def outbound_queue(self) -> PostgreSQLQueue:
        return PostgreSQLQueue(self.config)

    def intake(self, notes: Callable[[Sequence[Any]], None] | None = None) -> PostgreSQLIntake:
        return PostgreSQLIntake(self.config, notes=notes)

    def drug_reference(self) -> Any:
        # Public, read-only reference data: each node keeps its own copy (mssgw drugs import).
        from gateway.db import connect as sqlite_connect
        from gateway.drugs.store import open_reference

        return open_reference(sqlite_connect(self.config.database_path))

    def certificate_index(self) -> SQLCertificateIndex:
        conn = self.connection()
        conn.require_schema("pki")
        return SQLCertificateIndex(conn)  # type: ignore[arg-type]
