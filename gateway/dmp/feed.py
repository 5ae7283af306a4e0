"""From an XDM package (as `gateway.xdm.read_package` checked it) to DMP submissions.

The XDM METADATA.XML carries the same XDS metadata the DMP wants (ITI-41 uses them as they are):
each content document becomes one `Submission` with its exact bytes, and the package's IHE DSG
signature document (which signs the whole submission set) goes with each of them. Pure: filing
is `DocumentRepository.submit_set`, all documents or none.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from gateway.dmp.model import (
    Actor,
    DocumentEntry,
    DocumentMetadata,
    InvalidDocument,
    NotQualified,
    Submission,
)
from gateway.dmp.repository import DocumentRepository
from gateway.errors import GatewayError
from gateway.identifiers import OID_INS_DEMO, OID_INS_NIR, OID_INS_TEST
from gateway.xdm import Author, Package
from gateway.xdm import DocumentEntry as XdsEntry

# A national id ("8" + RPPS, "1" + FINESS...) -> its mailbox in the directory, or None.
MailboxOf = Callable[[str], str | None]


def directory_mailbox_of(directory: Any) -> MailboxOf:
    """`MailboxOf` over the trust directory: professionals by RPPS, structures by FINESS."""

    def mailbox_of(national_id: str) -> str | None:
        kind, number = national_id[:1], national_id[1:]
        try:
            if kind == "8":
                found = directory.find_by_rpps(number)
                return found.address if found is not None else None
            if kind == "1":
                found_all = directory.find_by_finess(number)
                return found_all[0].address if len(found_all) == 1 else None
        except GatewayError:  # not a well-formed number: no mailbox
            return None
        return None

    return mailbox_of


def ins_of(patient_id: str) -> str:
    """`INS^^^&1.2.250.1.213.1.4.8&ISO^NH` (an HL7 CX) -> `INS`."""
    return patient_id.split("^", 1)[0].strip()


# The qualified INS: the INS-NIR, and the test and demo roots that stand for it. An INS-NIA
# (1.2.250.1.213.1.4.9, a provisional number while the identity is not verified) or any local
# identifier is not one, and the DMP takes documents only for a qualified INS.
QUALIFIED_INS_ROOTS = (OID_INS_NIR, OID_INS_TEST, OID_INS_DEMO)


def qualified_ins(patient_id: str) -> bool:
    """Whether an XDS patientId (`INS^^^&OID&ISO^NH`) names the patient by a qualified INS."""
    parts = patient_id.split("^")
    authority = parts[3].split("&") if len(parts) > 3 else []
    return bool(parts[0].strip()) and len(authority) > 1 and authority[1] in QUALIFIED_INS_ROOTS


_DTM_FORMATS = {
    4: "%Y",
    6: "%Y%m",
    8: "%Y%m%d",
    10: "%Y%m%d%H",
    12: "%Y%m%d%H%M",
    14: "%Y%m%d%H%M%S",
}


def xds_time(value: str | None) -> dt.datetime | None:
    """XDS DTM (`YYYY[MM[DD[hh[mm[ss]]]]]`, UTC) -> an aware datetime."""
    if not value:
        return None
    fmt = _DTM_FORMATS.get(len(value))
    try:
        if fmt is None:
            raise ValueError(value)
        return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.UTC)
    except ValueError:
        raise InvalidDocument(f"creationTime {value!r} is not an XDS date-time") from None


def _person_id(author: Author) -> str | None:
    """XCN `id^FAMILY^Given^...`: the national id ("8" + RPPS...) is the first component."""
    return (author.person or "").split("^", 1)[0].strip() or None


def _institution_id(author: Author) -> str | None:
    """XON `name^^^^^&OID&ISO^IDNST^^^id`: the structure's national id is the 10th component."""
    parts = (author.institution or "").split("^")
    return parts[9].strip() if len(parts) > 9 and parts[9].strip() else None


def metadata_of(
    entry: XdsEntry, *, author_address: str | None = None, prescription_id: str | None = None,
    submitter_address: str | None = None, mailbox_of: MailboxOf | None = None,
) -> DocumentMetadata:
    """Our DocumentMetadata for one XDS entry. `submitter_address`: the mailbox that sent the
    package to be filed; `author_address`: the author's mailbox, when the caller knows it (else
    `mailbox_of(national id)` finds it in the directory). The two are kept apart: a doctor who
    mails a lab report is its submitter, not its author."""
    missing = [
        name
        for name, value in (
            ("classCode", entry.class_code),
            ("typeCode", entry.type_code),
            ("formatCode", entry.format_code),
            ("creationTime", entry.creation_time),
        )
        if not value
    ]
    if missing:
        raise InvalidDocument(f"document {entry.unique_id}: no {', '.join(missing)} in metadata")
    assert entry.class_code and entry.type_code and entry.format_code  # for the type checker
    ids = [(_person_id(a), _institution_id(a)) for a in entry.authors]
    first_person, first_institution = ids[0] if ids else (None, None)
    others = tuple(
        k for pair in ids[1:] for k in pair if k and k not in (first_person, first_institution)
    )
    created = xds_time(entry.creation_time)
    assert created is not None
    return DocumentMetadata(
        unique_id=entry.unique_id,
        patient_ins=ins_of(entry.patient_id),
        class_code=entry.class_code.code,
        type_code=entry.type_code.code,
        format_code=entry.format_code.code,
        creation_time=created,
        title=entry.title or entry.type_code.display or entry.type_code.code,
        mime_type=entry.mime_type,
        author_id=first_person,
        author_address=author_address or (
            mailbox_of(first_person) if mailbox_of is not None and first_person else None),
        submitter_address=submitter_address,
        author_institution=first_institution,
        confidentiality_code=entry.confidentiality[0].code if entry.confidentiality else "N",
        language_code=entry.language_code or "fr-FR",
        prescription_id=prescription_id,
        other_authors=others,
        hash=entry.hash,
        size=entry.size,
    )


def submissions_of(
    package: Package,
    *,
    author_address: str | None = None,
    prescription_id: str | None = None,
    hidden_from: Sequence[str] = (),
    submitter_address: str | None = None,
    mailbox_of: MailboxOf | None = None,
) -> list[Submission]:
    """One submission per content document, each with the package's signature document."""
    if not package.content:
        raise InvalidDocument("the package holds no document to file (only signatures)")
    signatures = package.signatures
    signature = signatures[0] if signatures else None
    return [
        Submission(
            metadata=metadata_of(
                doc.entry, author_address=author_address, prescription_id=prescription_id,
                submitter_address=submitter_address, mailbox_of=mailbox_of,
            ),
            content=doc.data,
            signature=signature.data if signature else None,
            signature_format=(
                signature.entry.format_code.code
                if signature and signature.entry.format_code
                else None
            ),
            hidden_from=tuple(hidden_from),
        )
        for doc in package.content
    ]


def file_package(
    dmp: DocumentRepository,
    package: Package,
    *,
    actor: Actor,
    author_address: str | None = None,
    prescription_id: str | None = None,
    hidden_from: Sequence[str] = (),
    submitter_address: str | None = None,
    mailbox_of: MailboxOf | None = None,
) -> list[DocumentEntry]:
    """File every document of a checked XDM package in the patient's record, all or none.
    Refused (InvalidDocument, nothing filed) when a document does not name its patient by a
    qualified INS: the DMP's rule (cda.md, "DMP")."""
    for doc in package.content:
        if not qualified_ins(doc.entry.patient_id or ""):
            raise NotQualified(
                f"document {doc.entry.unique_id}: the patient ({doc.entry.patient_id or 'none'})"
                " is not named by a qualified INS; the DMP takes documents only for one"
            )
    subs = submissions_of(
        package,
        author_address=author_address,
        prescription_id=prescription_id,
        hidden_from=hidden_from,
        submitter_address=submitter_address,
        mailbox_of=mailbox_of,
    )
    return dmp.submit_set(subs, actor=actor)
