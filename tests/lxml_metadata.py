"""The METADATA.XML writer as it was built with lxml's element API, kept for the tests: the
text writer in gateway.xdm.metadata must give the same bytes (see test_xdm_metadata.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lxml import etree

from gateway.xdm import model as m
from gateway.xdm.metadata import LCM, NSMAP, RIM
from gateway.xdm.model import Association, Author, Code, DocumentEntry, SubmissionSet


def _rim(tag: str) -> str:
    return f"{{{RIM}}}{tag}"


def _slot(parent: etree._Element, name: str, values: Iterable[str | None]) -> None:
    vals = [v for v in values if v]
    if not vals:
        return
    slot = etree.SubElement(parent, _rim("Slot"), name=name)
    vlist = etree.SubElement(slot, _rim("ValueList"))
    for v in vals:
        etree.SubElement(vlist, _rim("Value")).text = v


def _localized(parent: etree._Element, tag: str, value: str) -> None:
    el = etree.SubElement(parent, _rim(tag))
    ls = etree.SubElement(el, _rim("LocalizedString"), value=value)
    ls.set("{http://www.w3.org/XML/1998/namespace}lang", "FR")
    ls.set("charset", "UTF8")


def _classification(
    parent: etree._Element, obj: str, scheme: str, code: Code, ident: str
) -> None:
    c = etree.SubElement(
        parent,
        _rim("Classification"),
        id=ident,
        classificationScheme=scheme,
        classifiedObject=obj,
        nodeRepresentation=code.code,
    )
    _slot(c, "codingScheme", [code.scheme])
    _localized(c, "Name", code.display)


def _author(parent: etree._Element, obj: str, scheme: str, author: Author, ident: str) -> None:
    c = etree.SubElement(
        parent,
        _rim("Classification"),
        id=ident,
        classificationScheme=scheme,
        classifiedObject=obj,
        nodeRepresentation="",
    )
    _slot(c, "authorInstitution", [author.institution])
    _slot(c, "authorPerson", [author.person])
    _slot(c, "authorSpecialty", [author.specialty])


def _external_id(parent: etree._Element, obj: str, scheme: str, value: str, name: str,
                 ident: str) -> None:
    e = etree.SubElement(
        parent,
        _rim("ExternalIdentifier"),
        id=ident,
        identificationScheme=scheme,
        registryObject=obj,
        value=value,
    )
    _localized(e, "Name", name)


class _Ids:
    """Local ids for classifications/identifiers: unique within the document, readable."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"{self.prefix}_{self.n:03d}"


def extrinsic_object(entry: DocumentEntry, prefix: str) -> etree._Element:
    """The ExtrinsicObject element of one document entry."""
    eo = etree.Element(
        _rim("ExtrinsicObject"),
        nsmap={"rim": RIM},
        id=entry.entry_id,
        mimeType=entry.mime_type,
        objectType=m.DOCUMENT_ENTRY_TYPE,
        status=m.APPROVED,
    )
    ids = _Ids(prefix)
    obj = entry.entry_id
    _slot(eo, "hash", [entry.hash])
    _slot(eo, "size", [str(entry.size)])
    _slot(eo, "URI", [entry.uri])
    _slot(eo, "creationTime", [entry.creation_time])
    _slot(eo, "languageCode", [entry.language_code])
    _slot(eo, "legalAuthenticator", [entry.legal_authenticator])
    _slot(eo, "serviceStartTime", [entry.service_start])
    _slot(eo, "serviceStopTime", [entry.service_stop])
    _slot(eo, "sourcePatientId", [entry.source_patient_id])
    _slot(eo, "sourcePatientInfo", entry.source_patient_info)
    _localized(eo, "Name", entry.title)
    _localized(eo, "Description", "")
    for code in entry.event_codes:
        _classification(eo, obj, m.DE_EVENT_CODE, code, ids())
    for author in entry.authors:
        _author(eo, obj, m.DE_AUTHOR, author, ids())
    for scheme, value in (
        (m.DE_CLASS_CODE, entry.class_code),
        *((m.DE_CONFIDENTIALITY, c) for c in entry.confidentiality),
        (m.DE_FORMAT_CODE, entry.format_code),
        (m.DE_FACILITY_TYPE, entry.facility_type),
        (m.DE_PRACTICE_SETTING, entry.practice_setting),
        (m.DE_TYPE_CODE, entry.type_code),
    ):
        if value is not None:
            _classification(eo, obj, scheme, value, ids())
    _external_id(eo, obj, m.DE_PATIENT_ID, entry.patient_id, "XDSDocumentEntry.patientId", ids())
    _external_id(eo, obj, m.DE_UNIQUE_ID, entry.unique_id, "XDSDocumentEntry.uniqueId", ids())
    return eo


def association(assoc: Association) -> etree._Element:
    a = etree.Element(
        _rim("Association"),
        nsmap={"rim": RIM},
        id=assoc.id,
        associationType=assoc.type,
        sourceObject=assoc.source,
        targetObject=assoc.target,
    )
    if assoc.type == m.HAS_MEMBER:
        _slot(a, "SubmissionSetStatus", ["Original"])
    return a


def write_metadata(
    submission: SubmissionSet,
    entries: Sequence[DocumentEntry],
    associations: Sequence[Association],
) -> bytes:
    """The METADATA.XML bytes (UTF-8, with declaration)."""
    root = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap=NSMAP)
    rol = etree.SubElement(root, _rim("RegistryObjectList"))
    rp = etree.SubElement(rol, _rim("RegistryPackage"), id=submission.entry_id, status=m.APPROVED)
    ids = _Ids("SubmissionSet01")
    obj = submission.entry_id
    _slot(rp, "submissionTime", [submission.submission_time])
    _localized(rp, "Name", submission.title)
    _localized(rp, "Description", "")
    etree.SubElement(
        rp, _rim("Classification"), id=ids(), classificationNode=m.SS_NODE, classifiedObject=obj
    )
    for author in submission.authors:
        _author(rp, obj, m.SS_AUTHOR, author, ids())
    if submission.content_type is not None:
        _classification(rp, obj, m.SS_CONTENT_TYPE, submission.content_type, ids())
    _external_id(rp, obj, m.SS_PATIENT_ID, submission.patient_id,
                 "XDSSubmissionSet.patientId", ids())
    _external_id(rp, obj, m.SS_SOURCE_ID, submission.source_id, "XDSSubmissionSet.sourceId", ids())
    _external_id(rp, obj, m.SS_UNIQUE_ID, submission.unique_id, "XDSSubmissionSet.uniqueId", ids())
    for i, entry in enumerate(entries, 1):
        kind = "Signature" if entry.is_signature else "Document"
        rol.append(extrinsic_object(entry, f"{kind}{i:02d}"))
    for assoc in associations:
        rol.append(association(assoc))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
