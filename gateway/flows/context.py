"""What a flow needs, made by the process's root (`gateway.runtime.Runtime.flows`): a pipeline
pool process builds its root once from the pickled configuration and keeps it (connections,
caches) for every flow it runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.audit import AuditLog
from gateway.config import Config
from gateway.directory import Directory, Mailbox
from gateway.directory.demo import ROBOT_LOCAL
from gateway.dmp.repository import DocumentRepository
from gateway.documents.people import People
from gateway.flows.records import Records
from gateway.pki.store import CertificateIndex
from gateway.prescriptions.registry import PrescriptionRegistry

ACTOR = "gateway"


@dataclass
class Context:
    config: Config
    directory: Directory
    records: Records  # the registry, the DMP and the flows' keys; `records.unit()`: one commit
    audit: AuditLog
    people: People
    reference: Any  # gateway.drugs.store.DrugReference
    certificates: CertificateIndex  # the PKI's index, for the signers (gateway.pki.store)
    close: Callable[[], None] = field(default=lambda: None)  # the root's, in a pool process

    @property
    def registry(self) -> PrescriptionRegistry:
        return self.records.registry

    @property
    def dmp(self) -> DocumentRepository:
        return self.records.dmp

    @property
    def drugs(self) -> Any:
        """The drug reference, or None while none is imported (codes are then taken as given)."""
        return self.reference if self.reference.is_loaded() else None

    @property
    def robot(self) -> str:
        return f"{ROBOT_LOCAL}@{self.config.gateway.domain}"

    def mailbox(self, address: str) -> Mailbox | None:
        return self.directory.get(address.lower())

    def structure_of(self, mailbox: Mailbox) -> Mailbox | None:
        if mailbox.professional and mailbox.professional.structure:
            return self.mailbox(mailbox.professional.structure)
        return None


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
