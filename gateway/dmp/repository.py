"""The DMP feed's interface: an embedded registry + repository today, an XDS.b (ITI-41 to file,
ITI-18/43 to query and retrieve) connector to a national DMP behind the same calls later.

Every call takes the `actor` and writes the access, granted or refused, to the audit log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from gateway.dmp.model import (
    Actor,
    DocumentEntry,
    DocumentMetadata,
    DocumentStatus,
    StoredDocument,
    Submission,
)


class DocumentRepository(Protocol):
    def submit(
        self,
        metadata: DocumentMetadata,
        content: bytes,
        *,
        actor: Actor,
        signature: bytes | None = None,
        signature_format: str | None = None,
        replaces: str | None = None,
        hidden_from: Sequence[str] = (),
    ) -> DocumentEntry:
        """File a document (ITI-41). `replaces`: the uniqueId it replaces (RPLC), which is
        deprecated in the same transaction. `hidden_from`: addresses or national ids of
        professionals who may not see it (patient's objection)."""
        ...

    def submit_set(self, submissions: Sequence[Submission], *, actor: Actor) -> list[DocumentEntry]:
        """File a submission set (ITI-41 "Provide and Register Document Set"): all or none."""
        ...

    def find(
        self,
        patient_ins: str,
        *,
        actor: Actor,
        class_codes: Sequence[str] = (),
        type_codes: Sequence[str] = (),
        created_from: dt.datetime | None = None,
        created_to: dt.datetime | None = None,
        status: DocumentStatus | None = DocumentStatus.APPROVED,
    ) -> list[DocumentEntry]:
        """FindDocuments (ITI-18): a patient's entries, newest first. status None: any."""
        ...

    def entry(self, unique_id: str, *, actor: Actor) -> DocumentEntry: ...

    def retrieve(self, unique_id: str, *, actor: Actor) -> StoredDocument:
        """Retrieve Document Set (ITI-43): the bytes and the signature document."""
        ...

    def deprecate(self, unique_id: str, *, actor: Actor) -> bool:
        """Mark deprecated; False when it already was."""
        ...

    def delete(self, unique_id: str, *, actor: Actor) -> DocumentEntry: ...

    def close(self) -> None: ...
