"""METADATA.XML: write and read the ebRIM 3.0 SubmitObjectsRequest of an XDM submission set.

The writer mirrors the shape of the official ANS examples (RegistryPackage first, then one
ExtrinsicObject per document, then the associations). The reader is tolerant where real
packages are sloppy and strict where it matters: classifications are attached to the object
that contains them (official examples carry wrong `classifiedObject` values), while every slot
the gateway relies on must be present.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lxml import etree

from gateway.errors import GatewayError
from gateway.xdm import model as m
from gateway.xdm.model import Association, Author, Code, DocumentEntry, SubmissionSet
from gateway.xmlsafe import UnsafeXML, parse_xml

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
NSMAP = {"lcm": LCM, "rim": RIM}
MAX_METADATA_BYTES = 5 * 1024 * 1024


class InvalidMetadata(GatewayError):
    """METADATA.XML is unreadable or lacks what the XDM profile requires."""


def _rim(tag: str) -> str:
    return f"{{{RIM}}}{tag}"


# --- writing -------------------------------------------------------------------------------


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


def append_objects(metadata: bytes, objects: Sequence[etree._Element]) -> bytes:
    """METADATA.XML with `objects` (ExtrinsicObject, Association...) appended to the
    RegistryObjectList; everything already there is kept as it was."""
    tree = parse_xml(metadata, what="METADATA.XML", max_bytes=MAX_METADATA_BYTES)
    rol = tree.getroot().find(_rim("RegistryObjectList"))
    if rol is None:
        raise InvalidMetadata("METADATA.XML: RegistryObjectList is missing")
    for obj in objects:
        rol.append(obj)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")


# --- reading -------------------------------------------------------------------------------


def _slots(el: etree._Element) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for slot in el.findall(_rim("Slot")):
        path = f"{_rim('ValueList')}/{_rim('Value')}"
        values = [(v.text or "").strip() for v in slot.iterfind(path)]
        out.setdefault(slot.get("name", ""), []).extend(values)
    return out


def _one(slots: dict[str, list[str]], name: str) -> str | None:
    values = slots.get(name) or []
    return values[0] if values and values[0] else None


def _name(el: etree._Element, tag: str = "Name") -> str:
    ls = el.find(f"{_rim(tag)}/{_rim('LocalizedString')}")
    return (ls.get("value") or "").strip() if ls is not None else ""


def _classifications(el: etree._Element) -> dict[str, list[etree._Element]]:
    out: dict[str, list[etree._Element]] = {}
    for c in el.findall(_rim("Classification")):
        out.setdefault(c.get("classificationScheme", ""), []).append(c)
    return out


def _code_of(c: etree._Element) -> Code:
    return Code(
        (c.get("nodeRepresentation") or "").strip(),
        _one(_slots(c), "codingScheme") or "",
        _name(c),
    )


def _codes(cls: dict[str, list[etree._Element]], scheme: str) -> tuple[Code, ...]:
    return tuple(_code_of(c) for c in cls.get(scheme, []))


def _authors(cls: dict[str, list[etree._Element]], scheme: str) -> tuple[Author, ...]:
    out = []
    for c in cls.get(scheme, []):
        s = _slots(c)
        out.append(Author(_one(s, "authorPerson"), _one(s, "authorInstitution"),
                          _one(s, "authorSpecialty")))
    return tuple(out)


def _external(el: etree._Element, scheme: str) -> str | None:
    for e in el.findall(_rim("ExternalIdentifier")):
        if e.get("identificationScheme") == scheme:
            return (e.get("value") or "").strip() or None
    return None


def _required(value: str | None, what: str, where: str) -> str:
    if not value:
        raise InvalidMetadata(f"METADATA.XML: {where} has no {what}")
    return value


def _entry(eo: etree._Element) -> DocumentEntry:
    entry_id = eo.get("id") or ""
    where = f"document entry {entry_id or '(without id)'}"
    if not entry_id:
        raise InvalidMetadata("METADATA.XML: an ExtrinsicObject has no id")
    slots = _slots(eo)
    cls = _classifications(eo)
    size_text = _required(_one(slots, "size"), "size slot", where)
    if not size_text.isdigit():
        raise InvalidMetadata(f"METADATA.XML: {where}: size {size_text!r} is not a number")

    def single(scheme: str, what: str) -> Code:
        codes = _codes(cls, scheme)
        if not codes or not codes[0].code:
            raise InvalidMetadata(f"METADATA.XML: {where} has no {what}")
        return codes[0]

    return DocumentEntry(
        entry_id=entry_id,
        uri=_required(_one(slots, "URI"), "URI slot", where),
        unique_id=_required(_external(eo, m.DE_UNIQUE_ID), "uniqueId", where),
        patient_id=_required(_external(eo, m.DE_PATIENT_ID), "patientId", where),
        hash=_required(_one(slots, "hash"), "hash slot", where),
        size=int(size_text),
        mime_type=_required(eo.get("mimeType"), "mimeType", where),
        title=_name(eo),
        creation_time=_required(_one(slots, "creationTime"), "creationTime slot", where),
        language_code=_one(slots, "languageCode"),
        class_code=single(m.DE_CLASS_CODE, "classCode"),
        type_code=single(m.DE_TYPE_CODE, "typeCode"),
        format_code=single(m.DE_FORMAT_CODE, "formatCode"),
        confidentiality=(single(m.DE_CONFIDENTIALITY, "confidentialityCode"),
                         *_codes(cls, m.DE_CONFIDENTIALITY)[1:]),
        facility_type=next(iter(_codes(cls, m.DE_FACILITY_TYPE)), None),
        practice_setting=next(iter(_codes(cls, m.DE_PRACTICE_SETTING)), None),
        event_codes=_codes(cls, m.DE_EVENT_CODE),
        authors=_authors(cls, m.DE_AUTHOR),
        legal_authenticator=_one(slots, "legalAuthenticator"),
        service_start=_one(slots, "serviceStartTime"),
        service_stop=_one(slots, "serviceStopTime"),
        source_patient_id=_one(slots, "sourcePatientId"),
        source_patient_info=tuple(slots.get("sourcePatientInfo", [])),
    )


def read_metadata(
    data: bytes,
) -> tuple[SubmissionSet, tuple[DocumentEntry, ...], tuple[Association, ...]]:
    """Parse METADATA.XML (untrusted) into the submission set, entries and associations."""
    try:
        tree = parse_xml(data, what="METADATA.XML", max_bytes=MAX_METADATA_BYTES)
    except UnsafeXML as exc:
        raise InvalidMetadata(str(exc)) from None
    root = tree.getroot()
    if root.tag != f"{{{LCM}}}SubmitObjectsRequest":
        raise InvalidMetadata(
            f"METADATA.XML: the root element is {etree.QName(root).localname},"
            " not lcm:SubmitObjectsRequest"
        )
    packages = root.findall(f"{_rim('RegistryObjectList')}/{_rim('RegistryPackage')}")
    if len(packages) != 1:
        raise InvalidMetadata(
            f"METADATA.XML: expected one submission set (RegistryPackage), found {len(packages)}"
        )
    rp = packages[0]
    ss_id = _required(rp.get("id"), "id", "the submission set")
    cls = _classifications(rp)
    slots = _slots(rp)
    where = "the submission set"
    submission = SubmissionSet(
        entry_id=ss_id,
        unique_id=_required(_external(rp, m.SS_UNIQUE_ID), "uniqueId", where),
        source_id=_external(rp, m.SS_SOURCE_ID) or "",
        patient_id=_required(_external(rp, m.SS_PATIENT_ID), "patientId", where),
        submission_time=_required(_one(slots, "submissionTime"), "submissionTime", where),
        title=_name(rp),
        content_type=next(iter(_codes(cls, m.SS_CONTENT_TYPE)), None),
        authors=_authors(cls, m.SS_AUTHOR),
    )
    path = f"{_rim('RegistryObjectList')}/{_rim('ExtrinsicObject')}"
    entries = tuple(_entry(eo) for eo in root.iterfind(path))
    if not entries:
        raise InvalidMetadata("METADATA.XML: no document entry (ExtrinsicObject)")
    seen: set[str] = {ss_id}
    for e in entries:
        if e.entry_id in seen:
            raise InvalidMetadata(f"METADATA.XML: id {e.entry_id} is used twice")
        seen.add(e.entry_id)
    associations = tuple(
        Association(
            a.get("id", ""),
            a.get("associationType", ""),
            a.get("sourceObject", ""),
            a.get("targetObject", ""),
        )
        for a in root.iterfind(f"{_rim('RegistryObjectList')}/{_rim('Association')}")
    )
    members = {a.target for a in associations if a.type == m.HAS_MEMBER and a.source == ss_id}
    for e in entries:
        if e.entry_id not in members:
            raise InvalidMetadata(
                f"METADATA.XML: document entry {e.entry_id} is not a member of the submission set"
                " (no HasMember association)"
            )
    return submission, entries, associations
