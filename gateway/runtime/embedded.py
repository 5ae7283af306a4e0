"""The embedded default backend: the gateway's SQLite database (WAL), the users' Maildir++
folders with their SQLite indexes, the outbound queue's files and the audit log's JSON lines,
all under the gateway's home. `make run` needs nothing else.

This module (with `storage.py`) is the one place that names the concrete implementations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gateway.admins.sqlite import SQLiteAdminStore
from gateway.audit import AuditFile, AuditLog
from gateway.config import Config
from gateway.db import connect
from gateway.directory.auth import SQLiteThrottle
from gateway.directory.sqlite import SQLiteDirectory
from gateway.flows.sqlite import SQLiteRecords
from gateway.pki.store import SQLCertificateIndex
from gateway.smtp.conversations import Conversations
from gateway.store.commit import MaildirIntake
from gateway.store.mailstore import StorePool
from gateway.store.queue import Queue


class EmbeddedStorage:
    def __init__(self, config: Config) -> None:
        self.config = config

    def initialise(self) -> list[str]:
        from gateway.storage_layout import initialise

        return initialise(self.config)

    def directory(self, actor: str) -> SQLiteDirectory:
        c = self.config
        return SQLiteDirectory.open(
            c.database_path,
            patient_domain=c.gateway.patient_domain,
            audit_path=c.audit_log_path,
            actor=actor,
            min_password_length=c.auth.min_password_length,
        )

    def audit_log(self) -> AuditFile:
        return AuditFile(self.config.audit_log_path)

    def login_throttle(self) -> SQLiteThrottle:
        return SQLiteThrottle.open(self.config.database_path)

    def conversations(self) -> Conversations:
        return Conversations.open(self.config.database_path)

    def records(self, audit: AuditLog) -> SQLiteRecords:
        # One connection for the registry, the DMP and the flows' keys: a unit of work is one
        # SQLite transaction (one commit, one fsync).
        return SQLiteRecords(connect(self.config.database_path), audit)

    def mail_stores(self) -> StorePool:
        return StorePool(self.config.mailboxes_path)

    def outbound_queue(self) -> Queue:
        return Queue(self.config.queue_path)

    def intake(self, notes: Callable[[Sequence[Any]], None] | None = None) -> MaildirIntake:
        return MaildirIntake(self.config.mailboxes_path, Queue(self.config.queue_path).ensure(),
                             notes=notes)

    def drug_reference(self) -> Any:
        from gateway.drugs.store import open_reference

        return open_reference(connect(self.config.database_path))

    def admin_store(self) -> SQLiteAdminStore:
        return SQLiteAdminStore.open(self.config.database_path)

    def certificate_index(self) -> SQLCertificateIndex:
        from gateway.pki.store import open_index

        return open_index(self.config)
