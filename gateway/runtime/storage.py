"""The storage backend of a gateway: one object that makes each store from the configuration.

`Storage` is what a backend implements; `storage_for(config)` picks the configured one (the
embedded default: SQLite files, Maildir folders and the queue's files under the gateway's home,
`embedded.py`). Only the root (`gateway.runtime.Runtime`) and the conveniences that open one
store for a command or a test (`open_directory`, `open_registry`, `open_dmp`) call it; every
other caller receives the stores, typed by their interfaces.

Each method makes a new store that the caller owns (and closes): the root makes each one once
per process. A store made in a process is used in that process only (a SQLite connection, a
database session and an open Maildir index do not cross a fork).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from gateway.admins.store import AdminStore
from gateway.audit import AuditLog
from gateway.config import Config
from gateway.directory.repository import Directory
from gateway.directory.throttle import LoginThrottle
from gateway.flows.records import Records
from gateway.pki.store import CertificateIndex
from gateway.smtp.conversations import ConversationLog
from gateway.store.interfaces import Intake, MailStores, OutboundQueue


class Storage(Protocol):
    config: Config

    def initialise(self) -> list[str]:
        """`mssgw init`'s storage step: create what the stores need (idempotent); one line
        per thing created."""
        ...

    def directory(self, actor: str) -> Directory:
        """The trust directory; its changes are audited under `actor`."""
        ...

    def audit_log(self) -> AuditLog: ...

    def login_throttle(self) -> LoginThrottle: ...

    def conversations(self) -> ConversationLog: ...

    def records(self, audit: AuditLog) -> Records:
        """The registry, the DMP and the flows' keys, auditing to `audit`, one unit of work
        spanning them."""
        ...

    def mail_stores(self) -> MailStores: ...

    def outbound_queue(self) -> OutboundQueue: ...

    def intake(self, notes: Callable[[Sequence[Any]], None] | None = None) -> Intake:
        """The durable commit of accepted messages; `notes(notes)` is called with the notes
        of the messages being committed, inside the same commit."""
        ...

    def drug_reference(self) -> Any:
        """The BDPM drug reference (`gateway.drugs.store.DrugReference`), read only."""
        ...

    def admin_store(self) -> AdminStore:
        """Administrator accounts, their API tokens, console sessions and login links."""
        ...

    def certificate_index(self) -> CertificateIndex:
        """The PKI's index of issued certificates (`gateway.pki.store.CertificateIndex`): the
        signers' look-ups, and the PKI's own administration."""
        ...


def storage_for(config: Config) -> Storage:
    """The configured backend (`[storage] backend`): "embedded" (SQLite, Maildir and files
    under the gateway's home) or "postgresql" (`gateway.postgresql`: every node shares one
    database)."""
    if config.storage.backend == "postgresql":
        from gateway.postgresql.storage import PostgreSQLStorage

        return PostgreSQLStorage(config)
    from gateway.runtime.embedded import EmbeddedStorage

    return EmbeddedStorage(config)
