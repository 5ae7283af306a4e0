"""What the DMP feed stores and who asks: XDS document metadata, statuses, actors, refusals."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from gateway.errors import Conflict, GatewayError, NotFound
from gateway.texts import t

if TYPE_CHECKING:
    from gateway.directory.model import Mailbox

# XDS codes of the two documents the gateway files itself (cda.md).
CLASS_PRESCRIPTION = "42"
CLASS_DISPENSATION = "43"
FORMAT_PRESCRIPTION = "urn:ihe:pharm:pre:2010"
FORMAT_DISPENSATION = "urn:ihe:pharm:dis:2010"
TYPE_PRESCRIPTION = "57833-6"
TYPE_DISPENSATION = "60593-1"


class DocumentStatus(StrEnum):
    APPROVED = "approved"
    DEPRECATED = "deprecated"


@dataclass(frozen=True)
class DocumentMetadata:
    """The XDS DocumentEntry attributes we keep (from the XDM package's METADATA.XML).

    `hash` (upper-case SHA-1 hex) and `size` are over the exact bytes; when given they are
    checked against the bytes, when absent they are computed.
    """

    unique_id: str  # XDSDocumentEntry.uniqueId = the CDA ClinicalDocument/id
    patient_ins: str  # INS-NIR (qualified INS is mandatory in the DMP)
    class_code: str  # e.g. "42" prescription, "43" dispensation
    type_code: str  # LOINC of the document, e.g. "57833-6"
    format_code: str  # e.g. "urn:ihe:pharm:pre:2010"
    creation_time: dt.datetime  # naive means UTC
    title: str
    mime_type: str = "text/xml"
    author_id: str | None = None  # "8" + RPPS (national id of the author)
    # The author's mailbox: only when the directory says it is the author's (the author's
    # national id has it). Who filed the document is `submitter_address`: XDS keeps the
    # document's author (DocumentEntry.author) apart from the submission's (its source).
    author_address: str | None = None
    author_institution: str | None = None  # "1" + FINESS or the structure's mailbox
    set_id: str | None = None  # CDA setId: versions of one document share it
    version: int = 1
    confidentiality_code: str = "N"
    language_code: str = "fr-FR"
    prescription_id: str | None = None  # the e-prescription identifier it belongs to
    other_authors: tuple[str, ...] = ()  # further authors' national ids or addresses
    hash: str | None = None
    size: int | None = None
    # The mailbox that sent it to be filed (the XDS submission set's author: the prescriber who
    # mailed a lab report, the pharmacy whose mailbox sent its pharmacist's dispensation).
    submitter_address: str | None = None

    def author_keys(self) -> set[str]:
        """Every identity of the document's authors, lower case."""
        keys = (self.author_id, self.author_address, self.author_institution, *self.other_authors)
        return {k.strip().lower() for k in keys if k and k.strip()}

    def access_keys(self) -> set[str]:
        """Who the access rules count as having fed the record with this document: its authors
        and its submitter."""
        keys = self.author_keys()
        if self.submitter_address and self.submitter_address.strip():
            keys.add(self.submitter_address.strip().lower())
        return keys


@dataclass(frozen=True)
class DocumentEntry:
    """A stored document's metadata and state (no bytes)."""

    metadata: DocumentMetadata
    status: DocumentStatus
    submitted_at: dt.datetime
    submitted_by: str
    hash: str
    size: int
    has_signature: bool = False
    signature_format: str | None = None
    replaces: str | None = None  # uniqueId this version replaced (RPLC)
    replaced_by: str | None = None
    hidden_from: tuple[str, ...] = ()  # professionals' keys this document is hidden from

    @property
    def unique_id(self) -> str:
        return self.metadata.unique_id

    def as_dict(self) -> dict[str, Any]:
        m = self.metadata
        return {
            "unique_id": m.unique_id,
            "patient_ins": m.patient_ins,
            "class_code": m.class_code,
            "type_code": m.type_code,
            "format_code": m.format_code,
            "creation_time": m.creation_time.isoformat(),
            "title": m.title,
            "mime_type": m.mime_type,
            "author_id": m.author_id,
            "author_address": m.author_address,
            "author_institution": m.author_institution,
            "submitter_address": m.submitter_address,
            "set_id": m.set_id,
            "version": m.version,
            "confidentiality_code": m.confidentiality_code,
            "language_code": m.language_code,
            "prescription_id": m.prescription_id,
            "other_authors": list(m.other_authors),
            "hash": self.hash,
            "size": self.size,
            "status": self.status.value,
            "submitted_at": self.submitted_at.isoformat(),
            "submitted_by": self.submitted_by,
            "has_signature": self.has_signature,
            "signature_format": self.signature_format,
            "replaces": self.replaces,
            "replaced_by": self.replaced_by,
            "hidden_from": list(self.hidden_from),
        }


@dataclass(frozen=True)
class Submission:
    """One document to file: its metadata, exact bytes, and what goes with it."""

    metadata: DocumentMetadata
    content: bytes = field(repr=False)
    signature: bytes | None = field(default=None, repr=False)  # IHE DSG signature document
    signature_format: str | None = None
    replaces: str | None = None  # uniqueId of the version it replaces (RPLC)
    hidden_from: tuple[str, ...] = ()  # professionals (address or national id) kept out


@dataclass(frozen=True)
class StoredDocument:
    entry: DocumentEntry
    content: bytes
    signature: bytes | None = None  # the associated IHE DSG signature document


class ActorKind(StrEnum):
    PATIENT = "patient"
    PROFESSIONAL = "professional"  # a PER mailbox
    ORGANISATION = "organisation"  # an ORG mailbox (pharmacy, practice, hospital service)
    ADMIN = "admin"  # the local administrator (CLI)
    GATEWAY = "gateway"  # the gateway's own flows (filing what it handled)
    APPLICATION = "application"  # other software: no access by default


@dataclass(frozen=True)
class Actor:
    """Who asks. `name` goes to the audit log; the other fields are what the rules compare."""

    kind: ActorKind
    name: str  # mailbox address, the local OS user (administrator) or `gateway`
    ins: str | None = None  # set for a patient
    national_id: str | None = None  # "8" + RPPS, or "1" + FINESS for an organisation
    organisation: str | None = None  # the professional's structure mailbox

    @classmethod
    def admin(cls, user: str) -> Actor:
        return cls(ActorKind.ADMIN, user)

    @classmethod
    def gateway(cls) -> Actor:
        return cls(ActorKind.GATEWAY, "gateway")

    @classmethod
    def patient(cls, ins: str, address: str | None = None) -> Actor:
        return cls(ActorKind.PATIENT, address or ins, ins=ins)

    @classmethod
    def from_mailbox(cls, mailbox: Mailbox) -> Actor:
        """The actor behind a directory mailbox (the flows know who sent or reads)."""
        from gateway.directory.model import MailboxKind

        if mailbox.kind is MailboxKind.PATIENT and mailbox.patient is not None:
            return cls.patient(mailbox.patient.ins, mailbox.address)
        if mailbox.kind is MailboxKind.PER and mailbox.professional is not None:
            pro = mailbox.professional
            nid = "8" + pro.rpps if pro.rpps else ("0" + pro.adeli if pro.adeli else None)
            return cls(
                ActorKind.PROFESSIONAL, mailbox.address, national_id=nid, organisation=pro.structure
            )
        if mailbox.kind is MailboxKind.ORG and mailbox.organisation is not None:
            org = mailbox.organisation
            nid = "1" + org.finess if org.finess else ("3" + org.siret if org.siret else None)
            return cls(ActorKind.ORGANISATION, mailbox.address, national_id=nid)
        return cls(ActorKind.APPLICATION, mailbox.address)

    def keys(self) -> set[str]:
        """The identities that may appear as a document's author or institution."""
        return {
            k.strip().lower()
            for k in (self.name, self.national_id, self.organisation)
            if k and k.strip()
        }


class DMPError(GatewayError):
    code = "refused"


class AccessDenied(DMPError):
    code = "access-denied"


class DocumentNotFound(DMPError, NotFound):
    code = "unknown"

    def __init__(self, unique_id: str) -> None:
        super().__init__(t("document {unique_id}: not in the DMP", unique_id=unique_id))


class DuplicateDocument(DMPError, Conflict):
    code = "duplicate"

    def __init__(self, unique_id: str) -> None:
        super().__init__(t("document {unique_id}: already in the DMP", unique_id=unique_id))


class InvalidDocument(DMPError):
    code = "invalid"


class NotQualified(InvalidDocument):
    """The document's patient is not named by a qualified INS (an NIA, a local number): the
    DMP takes none of it."""

    code = "not-qualified"
