"""The DMP feed: patients' shared records (documents with their XDS metadata) behind an interface.

    from gateway.dmp import open_dmp, Actor
    dmp = open_dmp(config)
    dmp.submit(metadata, cda_bytes, actor=Actor.gateway(), signature=dsg_bytes)
    dmp.find(ins, actor=Actor.from_mailbox(mailbox), class_codes=["42"])

`feed.file_package(dmp, package, actor=...)` files a checked XDM package (all or none).
`repository.py` is the interface (an XDS.b ITI-41 connector can implement it), `sqlite.py` the
embedded implementation, `access.py` the access rule. Every access is written to the audit log.
"""

from __future__ import annotations

import sqlite3

from gateway.config import Config
from gateway.dmp.model import (
    AccessDenied,
    Actor,
    ActorKind,
    DocumentEntry,
    DocumentMetadata,
    DocumentNotFound,
    DocumentStatus,
    DuplicateDocument,
    InvalidDocument,
    StoredDocument,
    Submission,
)
from gateway.dmp.repository import DocumentRepository


def open_dmp(config: Config, conn: sqlite3.Connection | None = None) -> DocumentRepository:
    """The configured DMP (embedded, in the gateway's database), writing to the audit log.
    `conn`: share a connection with the registry so that a flow commits both at once."""
    from gateway.audit import recorder
    from gateway.dmp.sqlite import SQLiteDMP

    if conn is not None:
        return SQLiteDMP(conn, audit=recorder(config))
    return SQLiteDMP.open(config.database_path, audit=recorder(config))


__all__ = [
    "AccessDenied",
    "Actor",
    "ActorKind",
    "DocumentEntry",
    "DocumentMetadata",
    "DocumentNotFound",
    "DocumentRepository",
    "DocumentStatus",
    "DuplicateDocument",
    "InvalidDocument",
    "StoredDocument",
    "Submission",
    "open_dmp",
]
