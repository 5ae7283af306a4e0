"""The DMP feed: patients' shared records (documents with their XDS metadata) behind an interface.

    from gateway.dmp import Actor
    dmp = runtime.dmp                       # a DocumentRepository, from the process's root
    dmp.submit(metadata, cda_bytes, actor=Actor.gateway(), signature=dsg_bytes)
    dmp.find(ins, actor=Actor.from_mailbox(mailbox), class_codes=["42"])

`feed.file_package(dmp, package, actor=...)` files a checked XDM package (all or none).
`repository.py` is the interface (an XDS.b ITI-41 connector can implement it), `sqlite.py` the
embedded implementation, `access.py` the access rule. Every access is written to the audit log.
"""

from __future__ import annotations

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


def open_dmp(config: Config) -> DocumentRepository:
    """The configured DMP on its own, writing to the audit log (tests and tools; a process of
    the gateway takes its root's, `Runtime.dmp`; closing it closes its store)."""
    from gateway.runtime import storage_for

    storage = storage_for(config)
    return storage.records(storage.audit_log()).dmp


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
