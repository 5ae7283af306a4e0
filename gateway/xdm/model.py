"""What an XDM package says: the submission set, its document entries and their associations.

Pure, frozen dataclasses shared by the CDA header extractor, the METADATA.XML writer and reader,
the ZIP packer and reader, and the signature. Values keep the HL7 v2 encodings the XDS metadata
uses (XCN for persons, XON for organisations, CX for identifiers) because that is what a
receiving system compares.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# XDS classification schemes and identification schemes (ITI TF-3 4.2.5).
DOCUMENT_ENTRY_TYPE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_EVENT_CODE = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
DE_FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_FACILITY_TYPE = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE_SETTING = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SS_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"

HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
SIGNS = "urn:ihe:iti:2007:AssociationType:signs"
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"


@dataclass(frozen=True)
class Code:
    """A coded value as XDS carries it: nodeRepresentation, codingScheme, display name."""

    code: str
    scheme: str
    display: str = ""

    def __str__(self) -> str:
        return f"{self.code} ({self.display or '-'}, {self.scheme})"


@dataclass(frozen=True)
class Author:
    person: str | None = None  # XCN: id^FAMILY^Given^^^^^^&OID&ISO^D^^^IDNPS
    institution: str | None = None  # XON: name^^^^^&OID&ISO^IDNST^^^id
    specialty: str | None = None  # code^display^scheme


@dataclass(frozen=True)
class DocumentEntry:
    """One XDSDocumentEntry (an ExtrinsicObject) and the file it describes."""

    entry_id: str  # urn:uuid:...
    uri: str  # file name relative to the submission set folder, e.g. DOC0001.XML
    unique_id: str  # the CDA id: root, or root^extension
    patient_id: str  # CX: INS^^^&OID&ISO^NH
    hash: str  # upper-case SHA-1 hex of the file's exact bytes
    size: int
    mime_type: str = "text/xml"
    title: str = ""
    creation_time: str | None = None  # YYYYMMDDhhmmss, UTC
    language_code: str | None = None
    class_code: Code | None = None
    type_code: Code | None = None
    format_code: Code | None = None
    confidentiality: tuple[Code, ...] = ()
    facility_type: Code | None = None
    practice_setting: Code | None = None
    event_codes: tuple[Code, ...] = ()
    authors: tuple[Author, ...] = ()
    legal_authenticator: str | None = None
    service_start: str | None = None
    service_stop: str | None = None
    source_patient_id: str | None = None
    source_patient_info: tuple[str, ...] = ()

    @property
    def is_signature(self) -> bool:
        return self.format_code is not None and self.format_code.code in SIGNATURE_FORMATS


SIGNATURE_FORMATS = ("http://www.w3.org/2000/09/xmldsig#", "urn:ihe:iti:dsg:detached:2014")


@dataclass(frozen=True)
class SubmissionSet:
    entry_id: str
    unique_id: str
    source_id: str
    patient_id: str
    submission_time: str
    title: str = ""
    content_type: Code | None = None
    authors: tuple[Author, ...] = ()


@dataclass(frozen=True)
class Association:
    id: str
    type: str  # HAS_MEMBER, SIGNS...
    source: str
    target: str


@dataclass(frozen=True)
class Document:
    """A document entry with the exact bytes of its file and its path in the ZIP."""

    entry: DocumentEntry
    path: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Package:
    """A read, checked package. `files` holds every file of the ZIP by path (exact bytes)."""

    submission_set: SubmissionSet
    documents: tuple[Document, ...]
    associations: tuple[Association, ...]
    subset: str  # e.g. IHE_XDM/SUBSET01
    metadata_path: str  # e.g. IHE_XDM/SUBSET01/METADATA.XML
    files: dict[str, bytes] = field(repr=False, default_factory=dict)

    def document(self, entry_id: str) -> Document | None:
        return next((d for d in self.documents if d.entry.entry_id == entry_id), None)

    @property
    def signatures(self) -> tuple[Document, ...]:
        return tuple(d for d in self.documents if d.entry.is_signature)

    @property
    def content(self) -> tuple[Document, ...]:
        """The documents that are not signatures."""
        return tuple(d for d in self.documents if not d.entry.is_signature)
