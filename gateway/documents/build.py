"""Build eP-MED-DM 2024.01 prescriptions and eDISP-MED 2024.01 dispensations from the model.

Pure and synchronous (model + PDF + QR image -> CDA bytes), so the servers run it in a process
pool. The fixed structure lives in `cda_templates/*.xml`; this module generates the variable
blocks (patient, author, lines...) and the human-readable narrative from the same data, so what a
person reads and what software reads cannot disagree.

The blocks are written as markup (`_e`: every value escaped, a character XML cannot hold
refused) into the template's text; the flow gets the header's tree for the XDS metadata by
parsing that part of the finished bytes. Making the ~230 elements one by one with lxml (a
Python call, a new libxml2 document and a namespace fix-up per element) then serialising
them cost 1.3 ms per prescription (2.2 at a slow moment of the VM); the markup ~0.4 ms. The
bytes are those lxml wrote (tests/test_documents_pinned.py holds them byte for byte).

Identifiers: `assign_ids` gives a model its e-prescription identifier (when it has none), a fresh
document id and set id; call it first when you also need the ids elsewhere (the PDF prints the
identifier), `build_prescription` calls it anyway.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import importlib.resources
import re
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache

from lxml import etree

from gateway.documents import cda
from gateway.documents.model import (
    AuthorInfo,
    Dispensation,
    DispensedLine,
    DispensingKind,
    Dose,
    PatientInfo,
    Phase,
    Prescription,
    PrescriptionLine,
    Product,
)
from gateway.errors import GatewayError
from gateway.identifiers import (
    OID_CIP13,
    OID_CIS,
    OID_PRESCRIPTION_ID,
    OID_RPPS_ADELI,
    OID_STRUCTURE,
)
from gateway.prescriptions.identifier import new_identifier

MIMETYPE_PDF = "application/pdf"
MIMETYPE_PNG = "image/png"
XML_DECLARATION = "<?xml version='1.0' encoding='UTF-8'?>\n"  # as lxml writes it


class BuildError(GatewayError):
    """The model cannot be written as a valid document (says which field)."""


class _Xml(str):
    """Markup written by `_e` (or known to be markup): inserted as it is. Any other str given
    to `_e` is text and is escaped, so a value from the model can never become markup."""

    __slots__ = ()


# The escapes lxml's serialiser writes (the output stays byte for byte what it was): in text
# & < > and CR (which a parser would otherwise turn into LF); in attributes also the quote and
# the whitespace that attribute-value normalisation would turn into spaces.
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTR_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;",
                               '"': "&quot;", "\n": "&#10;", "\t": "&#9;"})
# What XML 1.0 cannot hold at all (C0 controls but tab, CR and LF; surrogates; U+FFFE/F):
# lxml refused it when the elements were made one by one; the same search that finds what to
# escape finds it here, so checking costs nothing.
_NOT_XML = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
_TEXT_SPECIAL = re.compile(f"[&<>\r{_NOT_XML}]").search
_ATTR_SPECIAL = re.compile(f'[&<>\r"\n\t{_NOT_XML}]').search
_NOT_XML_CHAR = re.compile(f"[{_NOT_XML}]").search
_ATTR_NAMES = {"xsi_type": "xsi:type"}


def _escaped(tag: str, value: str, escapes: dict[int, str]) -> str:
    if bad := _NOT_XML_CHAR(value):
        raise BuildError(f"<{tag}>: a field holds a character an XML document cannot hold"
                         f" (U+{ord(bad.group()):04X})")
    return value.translate(escapes)


def _e(tag: str, *children: str | None, **attrs: str | None) -> _Xml:
    """An element in the CDA namespace (the template root's default one; "pharm:x" for the
    IHE pharmacy one); children are elements (`_Xml`) or text; None children and attrs are
    dropped. Written as lxml writes it: `<x/>` when empty, `<x></x>` for an empty text."""
    head = "<" + tag
    for key, value in attrs.items():
        if value is not None:
            if _ATTR_SPECIAL(value):
                value = _escaped(tag, value, _ATTR_ESCAPES)
            head += f' {_ATTR_NAMES.get(key, key)}="{value}"'
    if not children:
        return _Xml(head + "/>")
    content = [c if type(c) is _Xml or not _TEXT_SPECIAL(c) else _escaped(tag, c, _TEXT_ESCAPES)
               for c in children if c is not None]
    if not content:
        return _Xml(head + "/>")
    return _Xml(f"{head}>{''.join(content)}</{tag}>")


def _pharm(tag: str, *children: str | None, **attrs: str | None) -> _Xml:
    return _e(f"pharm:{tag}", *children, **attrs)


_PLACEHOLDER = re.compile(r"<\?mssgw\s+([^?\s]+)\s*\?>")
Block = _Xml | list[_Xml | None] | Callable[[], _Xml] | None


@lru_cache(maxsize=4)
def _template(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The template as lxml writes it (no comments, no blank text), cut at its placeholders:
    (text before the first, between..., after the last) and the placeholders' names."""
    data = importlib.resources.files("cda_templates").joinpath(name).read_bytes()
    parser = etree.XMLParser(remove_blank_text=True, remove_comments=True, resolve_entities=False,
                             no_network=True)
    pieces = _PLACEHOLDER.split(etree.tostring(etree.fromstring(data, parser), encoding="unicode"))
    return tuple(pieces[0::2]), tuple(pieces[1::2])


def _fill(name: str, blocks: dict[str, Block]) -> bytes:
    """Template `name` with each <?mssgw NAME?> replaced by blocks[NAME] (markup, a list of
    markup, or a callable giving fresh markup per occurrence), as UTF-8 bytes."""
    texts, names = _template(name)
    out = [XML_DECLARATION, texts[0]]
    for placeholder, after in zip(names, texts[1:], strict=True):
        if placeholder not in blocks:
            raise RuntimeError(f"template placeholder {placeholder!r} has no value")
        value = blocks[placeholder]
        if callable(value):
            value = value()
        if isinstance(value, list):
            out += [item for item in value if item is not None]
        elif value is not None:
            out.append(value)
        out.append(after)
    return "".join(out).encode("utf-8")


_BODY = b"<component><structuredBody>"  # only markup can hold "<": the first is the body's
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


def _header_tree(data: bytes) -> etree._Element:
    """The header of a document this module wrote (ClinicalDocument without its body), as a
    tree: what the XDS metadata are read from. The whole document's parse cost ~0.35 ms in the
    flow, the header's ~0.05."""
    return etree.fromstring(data[:data.index(_BODY)] + b"</ClinicalDocument>", _PARSER)


# --- header blocks --------------------------------------------------------------------------


def _patient(p: PatientInfo) -> _Xml:
    name = _e("name", _e("family", p.birth_name, qualifier="BR"), _e("given", p.given_names),
              _e("given", p.given_names.split()[0] if p.given_names.split() else p.given_names,
                 qualifier="BR"),
              _e("family", p.used_name, qualifier="CL") if p.used_name else None)
    addr = _e("addr", *_address_lines(p.address)) if p.address else _e("addr", nullFlavor="NASK")
    patient = _e(
        "patient",
        name,
        _e("administrativeGenderCode", code=p.sex,
           displayName={"F": "Féminin", "M": "Masculin"}.get(p.sex, "Inconnu"),
           codeSystem="2.16.840.1.113883.5.1"),
        _e("birthTime", value=cda.ts_date(p.birth_date)),
        # The birth place (INSEE code) is an INS trait: StrucMin wants it said, unknown or not.
        _e("birthplace", _e("place", _e("addr", _e("county", p.birth_place) if p.birth_place
                                                else _e("county", nullFlavor="UNK")))),
        classCode="PSN",
    )
    return _e("recordTarget", _e("patientRole", _e("id", root=p.ins_oid, extension=p.ins), addr,
                                 _e("telecom", nullFlavor="NASK"), patient))


def _address_lines(address: str | None) -> list[_Xml]:
    if not address:
        return []
    return [_e("streetAddressLine", line.strip()) for line in address.splitlines() if line.strip()]


def _profession(author: AuthorInfo) -> _Xml:
    code = f"G15_{author.profession}" + (f"/{author.specialty}" if author.specialty else "")
    label = cda.PROFESSIONS.get(author.profession, "Professionnel")
    return _e("code", code=code, displayName=label, codeSystem=cda.OID_PROFESSION)


def _person(author: AuthorInfo, tag: str = "assignedPerson") -> _Xml:
    # The civility (prefix: M, MME) is not in the model; the title goes in the suffix (DR).
    title = cda.title_code(author.title)
    return _e(tag, _e("name", _e("given", author.given_name), _e("family", author.family_name),
                      _e("suffix", title) if title else None))


# A doctor's (or pharmacist's) own blocks: the same in every document they sign, three times
# in each (author, legal authenticator, performer; custodian): written once per process and
# author (a bounded cache; ~40 elements, a fifth of a two-line prescription's).
@lru_cache(maxsize=256)
def _organisation(author: AuthorInfo, tag: str = "representedOrganization",
                  practice_setting: bool = False) -> _Xml:
    s = author.structure
    if s is None:  # _check_author refused it before: CI-SIS documents name the structure
        raise BuildError(_NO_STRUCTURE.format(author=author))
    parts = [_e("id", root=OID_STRUCTURE, extension=s.national_id), _e("name", s.name)]
    if s.phone:
        parts.append(_e("telecom", value=f"tel:{s.phone.replace(' ', '')}", use="WP"))
    if s.address:
        parts.append(_e("addr", *_address_lines(s.address)))
    if practice_setting:
        parts.append(_e("standardIndustryClassCode", code="AMBULATOIRE",
                        displayName="Ambulatoire", codeSystem="1.2.250.1.213.1.1.4.9"))
    return _e(tag, *parts)


@lru_cache(maxsize=256)
def _entity(author: AuthorInfo, tag: str, class_code: str | None = None) -> _Xml:
    return _e(
        tag,
        _e("id", root=OID_RPPS_ADELI, extension=author.national_id),
        _profession(author),
        _e("telecom", value=f"tel:{author.phone.replace(' ', '')}", use="WP")
        if author.phone else None,
        _e("telecom", value=f"mailto:{author.email}") if author.email else None,
        _person(author),
        _organisation(author, practice_setting=tag == "assignedEntity"),
        classCode=class_code,
    )


def _author(author: AuthorInfo, stamp: str) -> _Xml:
    return _e("author", _e("time", value=stamp),
              _entity(author, "assignedAuthor", class_code="ASSIGNED"))


def _custodian(author: AuthorInfo) -> _Xml:
    org = _organisation(author, "representedCustodianOrganization")
    return _e("custodian", _e("assignedCustodian", org))


def _legal(author: AuthorInfo, stamp: str) -> _Xml:
    return _e("legalAuthenticator", _e("time", value=stamp), _e("signatureCode", code="S"),
              _entity(author, "assignedEntity"))


def _encounter(author: AuthorInfo, stamp: str, facility: tuple[str, str]) -> _Xml:
    loc = _e("healthCareFacility",
             _e("id", root=OID_STRUCTURE, extension=author.structure.national_id)
             if author.structure else None,
             _e("code", code=facility[0], displayName=facility[1],
                codeSystem="1.2.250.1.71.4.2.4"))
    code = _e("code", code="AMB", displayName="Ambulatoire (hors établissement)",
              codeSystem="2.16.840.1.113883.5.4")
    return _e("componentOf", _e("encompassingEncounter", code,
                                _e("effectiveTime", _e("high", value=stamp)),
                                _e("location", loc)))


def _media(data: bytes, mediatype: str) -> _Xml:
    # Base64's alphabet needs no escaping: markup as it is (the PDF is 44 KB of it).
    return _e("value", _Xml(base64.b64encode(data).decode("ascii")), mediaType=mediatype,
              representation="B64")


def _header(*, doc_id: str, set_id: str, version: int, stamp: str) -> dict[str, Block]:
    """The blocks every document has; `stamp`: its time as written (cda.ts, once per document)."""
    return {
        "id": _e("id", root=doc_id),
        "effectiveTime": _e("effectiveTime", value=stamp),
        "setId": _e("setId", root=set_id),
        "versionNumber": _e("versionNumber", value=str(version)),
        "section-id": lambda: _e("id", root=cda.new_uuid()),
    }


# --- prescription ---------------------------------------------------------------------------


def assign_ids(p: Prescription) -> Prescription:
    """The same prescription with what the document fixes filled in: e-prescription identifier,
    document id, set id, line ids and end of validity (3 months by default)."""
    return dataclasses.replace(
        p,
        validity_end=_validity_end(p),
        identifier=p.identifier or new_identifier(),
        document_id=p.document_id or cda.new_oid(),
        set_id=p.set_id or cda.new_oid(),
        lines=tuple(
            line if line.line_id else dataclasses.replace(line, line_id=cda.new_uuid())
            for line in p.lines
        ),
    )


def posology(line: PrescriptionLine) -> str:
    """The structured dosage in words: '1 comprimé 3 fois par jour pendant 5 jours', every
    phase in order. A phase that only says how long is left out when the line has its
    instructions in words (they say it: "2 applications par jour pendant 10 jours")."""
    phases = tuple(ph for ph in line.phases
                   if ph.dose or ph.frequency or ph.moments or not line.dosage_text)
    return cda.phases_words(phases)


def _validity_end(p: Prescription) -> dt.date:
    # A first dispensation must happen within 3 months of the prescription date.
    return p.validity_end or cda.add_months(p.day, 3)


def _substitution_text(line: PrescriptionLine) -> str:
    if line.substitutable:
        return "Oui"
    reason = line.substitution_refusal
    return f"Non substituable ({reason}: {cda.SUBSTITUTION_REASONS[reason]})" if reason else \
        "Non substituable"


def _quantity_text(line: PrescriptionLine) -> str:
    if line.quantity is None:
        return "-"
    unit = line.quantity_unit
    plural = unit if unit.endswith(("s", "x")) or line.quantity <= 1 else unit + "s"
    return f"{cda.num(line.quantity).replace('.', ',')} {plural}"


# The line flags every prescription item carries (CI-SIS: the ALD one [1..1], the others
# [0..1], written with their narrative cell so that each has its text/reference).
_FLAGS = (
    # (template, code, label, narrative suffix, column heading)
    (cda.ALD_OBSERVATION, "MED-574", "En rapport avec une ALD", "ald", "ALD"),
    ("1.2.250.1.213.1.1.3.48.14", "GEN-180",
     "En rapport avec un accident du travail ou une maladie professionnelle", "atmp", "AT/MP"),
    ("1.2.250.1.213.1.1.3.48.34", "GEN-295", "En rapport avec la prévention", "prev",
     "Prévention"),
    ("1.2.250.1.213.1.1.3.48.15", "GEN-181", "Non remboursable", "nonremb", "Non remboursable"),
    ("1.2.250.1.213.1.1.3.48.12", "GEN-179", "Hors Autorisation de Mise sur le Marché (AMM)",
     "horsamm", "Hors AMM"),
)

_NARRATIVE_HEAD = _e("thead", _e("tr", *[_e("th", h) for h in (
    "Médicament", "Posologie", "Quantité", "Renouvellements", "Substitution",
    *(flag[4] for flag in _FLAGS))]))


def _flag_values(line: PrescriptionLine) -> tuple[bool, ...]:
    return (line.ald, False, False, False, False)


def _posology_cell(i: int, line: PrescriptionLine) -> _Xml:
    """The posology in words (content med-i-posologie, what the entry's text refers to), each
    phase of a multi-phase posology in its own content (med-i-phase-k, the subordinate
    administrations' text), and the instructions in words (med-i-instructions)."""
    words = posology(line)
    parts: list[str | None] = []
    if len(line.phases) > 1:
        phases = [_e("content", cda.phase_words(ph) or "-", ID=f"med-{i}-phase-{k}")
                  for k, ph in enumerate(line.phases, start=1)]
        body: list[str | None] = []
        for k, ph in enumerate(phases):
            body += [_Xml(", puis ") if k else None, ph]
        parts.append(_e("content", *body, ID=f"med-{i}-posologie"))
    elif words:
        parts.append(_e("content", words, ID=f"med-{i}-posologie"))
    if line.dosage_text:
        if parts:
            parts.append(_e("br"))
        parts.append(_e("content", line.dosage_text, ID=f"med-{i}-instructions"))
    if not parts:
        parts.append(_e("content", "-", ID=f"med-{i}-posologie"))
    return _e("td", *parts)


def _prescription_narrative(p: Prescription) -> _Xml:

    def table(lines: list[tuple[int, PrescriptionLine]], caption: str | None) -> _Xml:
        rows = []
        for i, line in lines:
            label = ("Préparation magistrale : " if line.product.magistral else "") + \
                line.product.label
            flags = [_e("td", _e("content", "Oui" if value else "Non", ID=f"med-{i}-{flag[3]}"))
                     for flag, value in zip(_FLAGS, _flag_values(line), strict=True)]
            rows.append(_e(
                "tr",
                _e("td", _e("content", label, ID=f"med-{i}")),
                _posology_cell(i, line),
                _e("td", _quantity_text(line)),
                _e("td", str(line.renewals)),
                _e("td", _e("content", _substitution_text(line), ID=f"med-{i}-substitution")),
                *flags,
            ))
        return _e("table", _e("caption", caption) if caption else None,
                  _NARRATIVE_HEAD, _e("tbody", *rows), border="0")

    numbered = list(enumerate(p.lines, start=1))
    tables: list[_Xml] = []
    if p.bizone:
        ald = [x for x in numbered if x[1].ald]
        other = [x for x in numbered if not x[1].ald]
        if ald:
            tables.append(table(ald, "Prescriptions relatives au traitement de l'affection de"
                                " longue durée reconnue (liste ou hors liste)"))
        if other:
            tables.append(table(other, "Prescriptions sans rapport avec l'affection de longue"
                                " durée"))
    else:
        tables.append(table(numbered, None))
    return _e("text", *tables,
              _e("paragraph", _e("content", p.notes, ID="notes")) if p.notes else None)


# The constant elements of a line, written once (a fifth of a line's elements).
_PRODUCT_TEMPLATES = tuple(_e("templateId", root=root) for root in (
    "2.16.840.1.113883.10.20.1.53", "1.3.6.1.4.1.19376.1.5.3.1.4.7.2", "1.2.250.1.213.1.1.3.43"))
_MATERIAL_TEMPLATE = _e("templateId", root="1.3.6.1.4.1.19376.1.9.1.3.1")
_COMPLETED = _e("statusCode", code="completed")
_DRUG = _e("code", code="DRUG", displayName="Médicament", codeSystem="2.16.840.1.113883.5.4")


def _instructions_head(code: str, *templates: str) -> tuple[_Xml, ...]:
    """An IHE instructions act's templateIds and code (PINSTRUCT: to the patient, FINSTRUCT:
    to or from the pharmacist)."""
    return (*(_e("templateId", root=t) for t in templates),
            _e("code", code=code, codeSystem="1.3.6.1.4.1.19376.1.5.3.2",
               codeSystemName="IHEActCode"))


_INSTRUCTIONS_HEAD = _instructions_head(  # FR-Instructions-au-patient
    "PINSTRUCT", "2.16.840.1.113883.10.20.1.49", "1.3.6.1.4.1.19376.1.5.3.1.4.3",
    "1.2.250.1.213.1.1.3.33")
_SUPPLY_HEAD = (
    _e("templateId", root="1.3.6.1.4.1.19376.1.9.1.3.8"),
    _e("templateId", root="1.2.250.1.213.1.1.3.86"),
    _e("independentInd", value="false"))
_PERMISSION_TEMPLATES = (_e("templateId", root=cda.SUBSTITUTION_PERMISSION),
                         _e("templateId", root="1.2.250.1.213.1.1.3.87"))
# JDV_HL7_ActSubstanceAdminSubstitutionCode-CISIS holds two codes: N (none) and G (generic).
_SUBSTITUTABLE = (cda.SUBSTITUTION_ALLOWED, "Substitution autorisée par un produit générique")
# A product in a subordinate administration (one phase of a posology): the line's own.
_NO_PRODUCT = _e("consumable", _e(
    "manufacturedProduct", *_PRODUCT_TEMPLATES,
    _e("manufacturedMaterial", _MATERIAL_TEMPLATE, _e("code", nullFlavor="NA"),
       _e("name", nullFlavor="NA"), classCode="MMAT", determinerCode="KIND"),
    classCode="MANU"), typeCode="CSM")


def _product(product: Product, ref: str) -> _Xml:
    original = _e("originalText", _e("reference", value=f"#{ref}"))
    if product.cis:
        # CIS is the code when known (FR-Produit-de-sante: coded in CIS), CIP13 a translation.
        code = _e("code", original,
                  _e("translation", code=product.cip13, codeSystem=OID_CIP13,
                     codeSystemName="CIP", displayName=product.label) if product.cip13 else None,
                  code=product.cis, codeSystem=OID_CIS, displayName=product.label,
                  codeSystemName="CIS")
    elif product.cip13:
        # Known by its box only: the code names no system (it must be CIS when it does), the
        # CIP13 is its translation, as in the official eDISP example.
        code = _e("code", original, _e("translation", code=product.cip13, codeSystem=OID_CIP13,
                                       codeSystemName="CIP", displayName=product.label))
    else:
        # NA: a magistral preparation has no code; UNK: a product named only in words.
        code = _e("code", original, nullFlavor="NA" if product.magistral else "UNK")
    kind = _pharm("asSpecializedKind", _pharm(
        "generalizedMedicineClass", _pharm("code", code=product.atc, codeSystem=cda.OID_ATC,
                                           codeSystemName="ATC"), classCode="MMAT"),
        classCode="GRIC") if product.atc else None
    material = _e("manufacturedMaterial", _MATERIAL_TEMPLATE, code, _e("name", product.label),
                  kind, classCode="MMAT", determinerCode="KIND")
    return _e("manufacturedProduct", *_PRODUCT_TEMPLATES, material, classCode="MANU")


_HOLE = "@hole@"  # marks a value to fill in (the rest of a flag is this module's constants)


@lru_cache(maxsize=32)
def _flag_pieces(template: str, code: str, label: str) -> tuple[str, ...]:
    """A flag observation's markup cut where its values go (id, reference, time, value).
    Ten per two-line prescription, the same but for those values: written once per process,
    joined per line (made element by element they were a third of the markup's time)."""
    return tuple(_e("entryRelationship", _e(
        "observation",
        _e("templateId", root="1.3.6.1.4.1.19376.1.5.3.1.4.13"),
        _e("templateId", root="1.2.250.1.213.1.1.3.48"),
        _e("templateId", root=template),
        _e("id", root=_HOLE),
        _e("code", code=code, displayName=label, codeSystem=cda.OID_FLAGS),
        _e("text", _e("reference", value=_HOLE)),
        _e("statusCode", code="completed"),
        _e("effectiveTime", value=_HOLE),
        _e("value", xsi_type="BL", value=_HOLE),
        classCode="OBS", moodCode="EVN"), typeCode="COMP").split(_HOLE))


def _flag_observation(template: str, code: str, label: str, value: bool, stamp: str,
                      ref: str) -> _Xml:
    pieces = _flag_pieces(template, code, label)
    values = (cda.new_uuid(), f"#{ref}", stamp, "true" if value else "false")
    out = [pieces[0]]
    for filled, piece in zip(values, pieces[1:], strict=True):
        out += (filled, piece)
    return _Xml("".join(out))


_LINE_TEMPLATES = tuple(_e("templateId", root=root) for root in (
    "2.16.840.1.113883.10.20.1.24", "1.3.6.1.4.1.19376.1.5.3.1.4.7", "1.3.6.1.4.1.19376.1.9.1.3.2",
    cda.PRESCRIBED_ITEM))
_STRUCTURED = _e("templateId", root=cda.DOSAGE_INSTRUCTIONS)  # IHE PHARM: structured posology
_MODES = {mode: _e("templateId", root=mode) for mode in (
    cda.MODE_NORMAL, cda.MODE_TAPERED, cda.MODE_SPLIT)}


# --- posology -------------------------------------------------------------------------------
# One phase with at most one time of day is "normal dosing": the line's own effectiveTime[2]
# says how often (PIVL_TS period, or PIVL_TS phase for a clock time, or EIVL_TS for an event),
# doseQuantity how much. Several phases are "tapered doses", several times of day in a phase
# "split dosing": one subordinate administration (FR-Traitement-prescrit-subordonnee) per phase
# and time of day, each with its interval, its timing and its dose, the phases numbered by
# their sequenceNumber (the times of one phase share it). Timing inside the interval is an
# SXPR_TS (interval A timing) as in the official example; an event cannot be an SXPR_TS
# component (StrucMin), so it is a second effectiveTime (operator A) beside the interval.


def _dose(dose: Dose | None) -> _Xml | None:
    if dose is None:
        return None
    high = dose.quantity if dose.high is None else dose.high
    return _e("doseQuantity", _e("low", value=cda.num(dose.quantity), unit=dose.unit),
              _e("high", value=cda.num(high), unit=dose.unit))


def _clock(time: dt.time) -> str:
    """A time of day as the phase of a daily PIVL_TS: that time on 1970-01-01 (the anchor
    carries no meaning but the time; institutionSpecified says 'about then')."""
    return f"19700101{time.strftime('%H%M')}"


def _period(value: Decimal, unit: str) -> _Xml:
    return _e("period", value=cda.num(value), unit=unit)


def _timings(phase: Phase) -> list[tuple[str, _Xml]]:
    """The timing components of a phase: [(xsi type, (tag-less) children markup)] as PIVL_TS
    or EIVL_TS contents, one per time of day, or one for the frequency alone."""
    freq = cda.frequency_period(phase.frequency) if phase.frequency else None
    if not phase.moments:
        return [("PIVL_TS", _period(*freq))] if freq else []
    out: list[tuple[str, _Xml]] = []
    single = len(phase.moments) == 1
    for m in phase.moments:
        if m.time is not None:
            # A lone clock time keeps the frequency's period ("2 fois par semaine, le matin").
            period = freq if single and freq else (Decimal(1), "d")
            out.append(("PIVL_TS", _Xml(_e("phase", _e("low", value=_clock(m.time)))
                                        + _period(*period))))
        else:
            out.append(("EIVL_TS", _e("event", code=m.event)))
            if single and freq and not _daily_once(phase):
                out.append(("PIVL_TS", _period(*freq)))
    return out


def _daily_once(phase: Phase) -> bool:
    return phase.frequency is None or cda.per_day(phase.frequency) == 1


def _timing_element(tag: str, kind: str, content: _Xml, **attrs: str | None) -> _Xml:
    # institutionSpecified: a clock time means "about then" (the ward's morning round); a
    # frequency alone ("every 8 hours") means exactly that interval.
    specified = None if kind != "PIVL_TS" else ("true" if "<phase>" in content else "false")
    return _e(tag, content, xsi_type=kind, institutionSpecified=specified, **attrs)


def _interval(start: dt.date, days: int | None, tag: str = "effectiveTime",
              **attrs: str | None) -> _Xml:
    """[start, start + days - 1]; an open end is 'high UNK' (low alone is not an interval
    the PCC Medications entry accepts)."""
    end = _e("high", value=cda.ts_date(start + dt.timedelta(days=days - 1))) if days else \
        _e("high", nullFlavor="UNK")
    return _e(tag, _e("low", value=cda.ts_date(start)), end, xsi_type="IVL_TS", **attrs)


def _check_phases(where: str, phases: tuple[Phase, ...]) -> None:
    for k, ph in enumerate(phases, start=1):
        if k < len(phases) and not ph.duration_days:
            raise BuildError(f"{where}: phase {k} has no duration (only the last phase of a"
                             " posology may go on without one)")
        if len(ph.moments) > 1 and ph.frequency is not None and \
                cda.per_day(ph.frequency) != len(ph.moments):
            raise BuildError(f"{where}: phase {k} says {cda.frequency_words(ph.frequency)}"
                             f" but gives {len(ph.moments)} times of day")
        if ph.duration_days is not None and ph.duration_days <= 0:
            raise BuildError(f"{where}: phase {k} lasts {ph.duration_days} days")
        if ph.doses and (ph.dose is not None or len(ph.doses) != len(ph.moments)):
            raise BuildError(f"{where}: phase {k} gives {len(ph.doses)} doses for"
                             f" {len(ph.moments)} times of day" if ph.dose is None else
                             f"{where}: phase {k} gives both one dose and a dose per time of"
                             " day")


def _subordinates(phases: tuple[Phase, ...], start: dt.date, ref: str) -> list[_Xml]:
    out: list[_Xml] = []
    day = start
    for k, ph in enumerate(phases, start=1):
        timings = _timings(ph)
        # One administration per time of day when there are several, else one for the phase.
        intakes = [[t] for t in timings] if len(ph.moments) > 1 else [timings]
        for i, intake in enumerate(intakes):
            if intake and intake[0][0] == "PIVL_TS":
                times = [_e("effectiveTime", _interval(day, ph.duration_days, "comp",
                                                       operator="A"),
                            _timing_element("comp", *intake[0], operator="A"),
                            xsi_type="SXPR_TS")]
                rest = intake[1:]
            else:
                times, rest = [_interval(day, ph.duration_days)], intake
            times += [_timing_element("effectiveTime", *t, operator="A") for t in rest]
            text = f"#{ref}-phase-{k}" if len(phases) > 1 else f"#{ref}-posologie"
            out.append(_e("entryRelationship", _e("sequenceNumber", value=str(k)), _e(
                "substanceAdministration",
                _e("templateId", root=cda.SUBORDINATE_ITEM),
                _e("id", root=cda.new_uuid()),
                _e("text", _e("reference", value=text)),
                _COMPLETED, *times, _dose(ph.dose_at(i)), _NO_PRODUCT,
                classCode="SBADM", moodCode="INT"), typeCode="COMP"))
        if ph.duration_days:
            day += dt.timedelta(days=ph.duration_days)
    return out


def _posology_parts(phases: tuple[Phase, ...], start: dt.date, ref: str
                    ) -> tuple[list[_Xml], list[_Xml], _Xml | None, list[_Xml]]:
    """(templateIds, effectiveTimes, doseQuantity, subordinate entryRelationships) of a line
    whose posology is `phases`, starting on `start`."""
    total = sum(ph.duration_days or 0 for ph in phases) \
        if phases and all(ph.duration_days for ph in phases) else None
    times = [_interval(start, total)]
    structured = [ph for ph in phases if ph.structured]
    if not structured:
        return [_MODES[cda.MODE_NORMAL]], times, None, []
    if len(phases) == 1 and len(phases[0].moments) <= 1:
        phase = phases[0]
        times += [_timing_element("effectiveTime", kind, content, operator="A")
                  for kind, content in _timings(phase)]
        return [_STRUCTURED, _MODES[cda.MODE_NORMAL]], times, _dose(phase.dose_at(0)), []
    modes = [_MODES[cda.MODE_TAPERED]] if len(phases) > 1 else []
    if any(len(ph.moments) > 1 for ph in phases):
        modes.append(_MODES[cda.MODE_SPLIT])
    return [_STRUCTURED, *modes], times, None, _subordinates(phases, start, ref)


def _prescription_entry(p: Prescription, i: int, line: PrescriptionLine, stamp: str) -> _Xml:
    """Line `i`; `stamp`: the prescription's time as written (cda.ts, once per document)."""
    ref = f"med-{i}"
    modes, times, dose, subordinates = _posology_parts(line.phases, p.day, ref)
    if line.substitutable:
        sub_code = _e("code", code=_SUBSTITUTABLE[0], displayName=_SUBSTITUTABLE[1],
                      codeSystem=cda.OID_SUBSTITUTION)
    else:
        sub_code = _e("code", _e("originalText", _e("reference", value=f"#{ref}-substitution")),
                      code="N", displayName="Aucune substitution permise",
                      codeSystem=cda.OID_SUBSTITUTION)
    sa = _e(
        "substanceAdministration",
        *_LINE_TEMPLATES,
        *modes,
        _e("id", root=line.line_id or cda.new_uuid()),
        _DRUG,
        _e("text", _e("reference", value=f"#{ref}-posologie")),
        _COMPLETED,
        *times,
        _e("repeatNumber", value=str(line.renewals)),
        _e("routeCode", code=line.route, codeSystem=cda.OID_EDQM, codeSystemName="EDQM",
           displayName=cda.ROUTES.get(line.route)) if line.route else None,
        dose,
        _e("consumable", _product(line.product, ref)),
        *subordinates,
        _e("entryRelationship", _e(
            "act", *_INSTRUCTIONS_HEAD, _e("text", _e("reference", value=f"#{ref}-instructions")),
            _COMPLETED, classCode="ACT", moodCode="INT"), typeCode="SUBJ", inversionInd="true")
        if line.dosage_text else None,
        _e("entryRelationship", _e(
            "supply",
            *_SUPPLY_HEAD,
            _e("quantity", value=cda.num(line.quantity),
               unit=cda.PACKAGING.get(line.quantity_unit, cda.PACKAGING["boîte"])),
            classCode="SPLY", moodCode="RQO"), typeCode="COMP")
        if line.quantity is not None else None,
        _e("entryRelationship", _e(
            "act", *_PERMISSION_TEMPLATES, sub_code, _COMPLETED,
            classCode="ACT", moodCode="DEF"), typeCode="COMP"),
        *[_flag_observation(flag[0], flag[1], flag[2], value, stamp, f"{ref}-{flag[3]}")
          for flag, value in zip(_FLAGS, _flag_values(line), strict=True)],
        classCode="SBADM", moodCode="INT")
    return _e("entry", sa)


_NO_STRUCTURE = ("{author.given_name} {author.family_name} has no structure (FINESS or SIRET)"
                 " in the directory: a CI-SIS document names the author's structure and its"
                 " custodian by their national id")


def _check_author(author: AuthorInfo) -> None:
    if author.structure is None or not author.structure.national_id:
        raise BuildError(_NO_STRUCTURE.format(author=author))


def _check_prescription(p: Prescription) -> None:
    _check_author(p.author)
    if not p.lines:
        raise BuildError("a prescription needs at least one line")
    for i, line in enumerate(p.lines, start=1):
        if not line.product.label.strip():
            raise BuildError(f"line {i}: the medicine has no name")
        if not line.substitutable and line.substitution_refusal is None:
            raise BuildError(f"line {i}: 'non substituable' needs a reason (MTE, EFG or CIF)")
        _check_phases(f"line {i}", line.phases)


def build_prescription(p: Prescription, pdf: bytes, qr_png: bytes) -> bytes:
    """The eP-MED-DM 2024.01 CDA of `p`, with the ordonnance PDF and its QR code embedded."""
    return prescription_document(p, pdf, qr_png)[0]


def prescription_document(p: Prescription, pdf: bytes, qr_png: bytes
                          ) -> tuple[bytes, etree._Element]:
    """`build_prescription`, with the tree of its header (ClinicalDocument with everything but
    its body): a flow that packs the document next reads the XDS metadata from it
    (`gateway.xdm.package.build(trees=...)`, which reads the header only) instead of parsing
    the bytes again."""
    _check_prescription(p)
    p = assign_ids(p)
    assert p.identifier and p.document_id and p.set_id
    author = p.author
    stamp = cda.ts_date(p.day) if p.day_only else cda.ts(p.date)
    event = _e("serviceEvent",
               _e("id", root=OID_PRESCRIPTION_ID, extension=p.identifier),
               _e("code", code="57833-6", displayName="Prescription de produits de santé",
                  codeSystem=cda.OID_LOINC),
               _e("effectiveTime", _e("low", value=stamp),
                  _e("high", value=cda.ts_date(_validity_end(p)))),
               _e("performer", _entity(author, "assignedEntity"), typeCode="PRF"),
               classCode="ACT")
    flags: list[_Xml | None] = [
        _e("documentationOf", _e("serviceEvent", _e("code", code=code, displayName=label,
                                                    codeSystem=cda.OID_FLAGS), classCode="INFO"))
        for on, code, label in (
            (p.bizone, cda.FLAG_BIZONE, "Prescription bizone"),
            (p.exception_drugs, cda.FLAG_EXCEPTION, "Prescription médicaments d'exception"),
            (p.secured, cda.FLAG_SECURED, "Ordonnance sécurisée"),
        )
        if on
    ]
    blocks = _header(doc_id=p.document_id, set_id=p.set_id, version=p.version, stamp=stamp)
    blocks.update({
        "title": _e("title", p.title),
        "recordTarget": _patient(p.patient),
        "author": _author(author, stamp),
        "custodian": _custodian(author),
        "legalAuthenticator": _legal(author, stamp),
        "serviceEvent": _e("documentationOf", event),
        "flags": flags,
        "componentOf": _encounter(author, stamp, ("SA07", "Cabinet individuel")),
        "qr": _media(qr_png, MIMETYPE_PNG),
        "pdf": _media(pdf, MIMETYPE_PDF),
        "narrative": _prescription_narrative(p),
        "entries": [_prescription_entry(p, i, line, stamp)
                    for i, line in enumerate(p.lines, start=1)],
    })
    data = _fill("prescription.xml", blocks)
    return data, _header_tree(data)


# --- dispensation ---------------------------------------------------------------------------


def assign_dispensation_ids(d: Dispensation) -> Dispensation:
    return dataclasses.replace(d, document_id=d.document_id or cda.new_oid(),
                               set_id=d.set_id or cda.new_oid())


def dispensed_status(line: DispensedLine) -> str:
    """What happened to the line, in words, with the pharmacist's reason: the narrative cell
    the line's notes (FR-Notes-du-dispensateur) refer to."""
    label = cda.DISPENSING_LABELS[line.kind]
    if line.kind is DispensingKind.SUBSTITUTED:
        return f"{label} par {line.product.label}" + (f" ({line.reason})" if line.reason else "")
    return f"{label} : {line.reason}" if line.reason else label


def _dispensation_narrative(d: Dispensation) -> _Xml:
    rows = []
    for i, line in enumerate(d.lines, start=1):
        posology = cda.phases_words(line.phases) if line.phases else "-"
        rows.append(_e(
            "tr",
            _e("td", line.line_ref),
            _e("td", _e("content", line.product.label, ID=f"disp-{i}")),
            _e("td", _e("content", _dispensed_quantity(line), ID=f"disp-{i}-qty")),
            _e("td", _e("content", dispensed_status(line), ID=f"disp-{i}-status")),
            _e("td", _e("content", line.reason or cda.DISPENSING_LABELS[line.kind],
                        ID=f"disp-{i}-substitution")
               if line.kind is DispensingKind.SUBSTITUTED else "-"),
            _e("td", _e("content", posology, ID=f"disp-{i}-posologie") if line.phases else "-"),
        ))
    head = ["Ligne prescrite", "Médicament délivré", "Quantité délivrée", "Délivrance",
            "Motif de la substitution", "Posologie adaptée"]
    return _e("text", _e("paragraph", f"Prescription {d.prescription_id}")
              if d.prescription_id else None,
              _e("table", _e("thead", _e("tr", *[_e("th", h) for h in head])),
                 _e("tbody", *rows), border="0"),
              _e("paragraph", _e("content", d.notes, ID="notes")) if d.notes else None)


def _dispensed_quantity(line: DispensedLine) -> str:
    unit = line.quantity_unit
    plural = unit if unit.endswith(("s", "x")) or line.quantity <= 1 else unit + "s"
    return f"{cda.num(line.quantity).replace('.', ',')} {plural}"


_DISPENSED_TEMPLATES = tuple(_e("templateId", root=root) for root in (
    "2.16.840.1.113883.10.20.1.34", "1.3.6.1.4.1.19376.1.5.3.1.4.7.3", cda.DISPENSED_ITEM,
    "1.2.250.1.213.1.1.3.204"))
_NOTES_HEAD = _instructions_head(  # FR-Notes-du-dispensateur
    "FINSTRUCT", "2.16.840.1.113883.10.20.1.43", "1.3.6.1.4.1.19376.1.5.3.1.4.3.1",
    "1.2.250.1.213.1.1.3.207")
_ITEM_REF_HEAD = (
    _e("templateId", root=cda.PRESCRIPTION_ITEM_REF),
    _e("templateId", root="1.2.250.1.213.1.1.3.90"))
_ITEM_REF_CODE = _e("code", code="PREItem", displayName="Prescription Item",
                    codeSystem="1.3.6.1.4.1.19376.1.9.2.2")
_NA_MATERIAL = _e("consumable", _e("manufacturedProduct", _e("manufacturedMaterial",
                                                             _e("name", nullFlavor="NA"),
                                                             nullFlavor="NA")))
_ADAPTED_TEMPLATES = tuple(_e("templateId", root=root) for root in (  # FR-Traitement: posology
    "2.16.840.1.113883.10.20.1.24", "1.3.6.1.4.1.19376.1.5.3.1.4.7", "1.2.250.1.213.1.1.3.42",
    cda.DOSAGE_INSTRUCTIONS, cda.MODE_NORMAL))
_NA_PRODUCT = _e("consumable", _e(
    "manufacturedProduct", *_PRODUCT_TEMPLATES,
    _e("manufacturedMaterial", _MATERIAL_TEMPLATE, _e("code", nullFlavor="NA"),
       _e("name", nullFlavor="NA"), nullFlavor="NA")))


def _item_reference(d: Dispensation, line: DispensedLine) -> _Xml:
    """FR-Reference-item-prescription: the prescribed line's own id (its substanceAdministration
    id, a UUID or OID, as in the official example), or the prescription document's id with the
    line's position as extension when only the position is known."""
    if _II_ROOT.fullmatch(line.line_ref):
        ref_id = _e("id", root=line.line_ref)
    else:
        ref_id = _e("id", root=d.prescription_document_id or cda.new_uuid(),
                    extension=line.line_ref)
    return _e("entryRelationship", _e(
        "substanceAdministration", *_ITEM_REF_HEAD, ref_id, _ITEM_REF_CODE, _NA_MATERIAL,
        _e("reference", _e("externalDocument", _e("id", root=d.prescription_document_id)),
           typeCode="XCRPT") if d.prescription_document_id else None,
        classCode="SBADM", moodCode="INT"), typeCode="REFR", inversionInd="false")


_II_ROOT = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
                      r"|[0-2](\.(0|[1-9][0-9]*))+")


def _adapted_posology(d: Dispensation, i: int, line: DispensedLine) -> _Xml | None:
    """FR-Traitement (IHE PHARM DIS dosage instructions): the posology as the pharmacist
    adapted it. The eDISP volet wants its frequency as an SXPR_TS (interval A timing)."""
    if not line.phases:
        return None
    where = f"dispensed line {i}"
    if line.kind in (DispensingKind.DELIVERED, DispensingKind.NOT_DELIVERED):
        # The volet gives a dispensed line a posology only when it changed.
        raise BuildError(f"{where}: a posology of its own on a line {line.kind.value}: mark it"
                         " adapted (or substituted, partial) or leave the posology out")
    if len(line.phases) > 1 or len(line.phases[0].moments) > 1:
        raise BuildError(f"{where}: an adapted posology of several phases or times of day"
                         " cannot be written in an eDISP line; say it in the reason")
    phase = line.phases[0]
    _check_phases(where, line.phases)
    start = d.day
    timings = _timings(phase)
    if not timings:
        raise BuildError(f"{where}: an adapted posology says how often or when (the eDISP"
                         " volet requires its frequency); say the rest in the reason")
    # The volet's SXPR_TS needs a periodic component: "every day" when the timing is only an
    # event (which StrucMin does not allow inside an SXPR_TS: it stays beside it).
    periodic = [t for t in timings if t[0] == "PIVL_TS"]
    first = periodic[0] if periodic else ("PIVL_TS", _period(Decimal(1), "d"))
    rest = [t for t in timings if t is not first]
    times = [_interval(start, phase.duration_days),
             _e("effectiveTime", _interval(start, phase.duration_days, "comp", operator="A"),
                _timing_element("comp", *first, operator="A"), xsi_type="SXPR_TS",
                operator="A"),
             *[_timing_element("effectiveTime", *t, operator="A") for t in rest]]
    return _e("entryRelationship", _e(
        "substanceAdministration", *_ADAPTED_TEMPLATES, _e("id", root=cda.new_uuid()),
        _e("text", _e("reference", value=f"#disp-{i}-posologie")), _COMPLETED, *times,
        _dose(phase.dose_at(0)), _NA_PRODUCT, classCode="SBADM", moodCode="INT"), typeCode="COMP")


def _dispensation_entry(d: Dispensation, i: int, line: DispensedLine) -> _Xml:
    """A dispensed line; its kind is written as itself: PARTIAL as the supply's code (HL7
    ActPharmacySupplyType "part fill"), SUBSTITUTED as the substitution act (FR-Acte-
    substitution), ADAPTED as the adapted posology (FR-Traitement) when there is one,
    NOT_DELIVERED as a quantity of 0; each with the pharmacist's notes saying it in words."""
    ref = f"disp-{i}"
    supply_code = None
    if line.kind is DispensingKind.PARTIAL:
        code, label = cda.PART_FILL[line.refill]
        supply_code = _e("code", code=code, displayName=label, codeSystem=cda.OID_ACT_CODE,
                         codeSystemName="ActCode")
    notes = _e("entryRelationship", _e(
        "act", *_NOTES_HEAD, _e("text", _e("reference", value=f"#{ref}-status")), _COMPLETED,
        classCode="ACT", moodCode="INT"), typeCode="SUBJ", inversionInd="true")
    substitution = _e("entryRelationship", _e(
        "act",
        _e("templateId", root=cda.SUBSTITUTION_DONE),
        _e("templateId", root="1.2.250.1.213.1.1.3.206"),
        _e("code", _e("originalText", _e("reference", value=f"#{ref}-substitution")),
           code=cda.SUBSTITUTION_ALLOWED, displayName="Substitution par un produit générique",
           codeSystem=cda.OID_SUBSTITUTION),
        _COMPLETED,
        classCode="ACT", moodCode="EVN"), typeCode="COMP") \
        if line.kind is DispensingKind.SUBSTITUTED else None
    return _e("entry", _e(
        "supply",
        *_DISPENSED_TEMPLATES,
        _e("id", root=cda.new_uuid()),
        supply_code,
        _e("text", _e("reference", value=f"#{ref}")),
        _e("quantity", value=cda.num(line.quantity),
           unit=cda.PACKAGING.get(line.quantity_unit, cda.PACKAGING["boîte"])),
        _e("product", _product(line.product, ref)),
        _item_reference(d, line),
        notes,
        _adapted_posology(d, i, line),
        substitution,
        classCode="SPLY", moodCode="EVN"))


def build_dispensation(d: Dispensation) -> bytes:
    """The eDISP-MED 2024.01 CDA of `d`: the prescription linked by inFulfillmentOf (its
    document id, and its e-prescription identifier in a second inFulfillmentOf), the
    dispensation's own id in serviceEvent/id, the pharmacist as author and performer."""
    _check_author(d.author)
    if not d.lines:
        raise BuildError("a dispensation needs at least one line")
    d = assign_dispensation_ids(d)
    assert d.document_id and d.set_id
    author = d.author
    stamp = cda.ts_date(d.day) if d.day_only else cda.ts(d.date)
    blocks = _header(doc_id=d.document_id, set_id=d.set_id, version=d.version, stamp=stamp)
    event = _e("serviceEvent",
               _e("id", root=d.set_id),
               _e("code", code="60593-1", displayName="Dispensation médicamenteuse",
                  codeSystem=cda.OID_LOINC),
               _e("effectiveTime", _e("low", value=stamp)),
               _e("performer", _entity(author, "assignedEntity"), typeCode="PRF"))
    # The prescription by its document id, and by its e-prescription identifier: one order id
    # each (StrucMin allows one id per order; inFulfillmentOf is [0..*]).
    orders = [_e("inFulfillmentOf", _e("order", _e("id", root=d.prescription_document_id)))
              if d.prescription_document_id else None,
              _e("inFulfillmentOf", _e("order", _e("id", root=OID_PRESCRIPTION_ID,
                                                   extension=d.prescription_id)))
              if d.prescription_id else None]
    blocks.update({
        "recordTarget": _patient(d.patient),
        "author": _author(author, stamp),
        "custodian": _custodian(author),
        "legalAuthenticator": _legal(author, stamp),
        "inFulfillmentOf": orders,
        "serviceEvent": _e("documentationOf", event),
        "componentOf": _encounter(author, stamp, ("SA33", "Pharmacie d'officine")),
        "narrative": _dispensation_narrative(d),
        "entries": [_dispensation_entry(d, i, line) for i, line in enumerate(d.lines, start=1)],
    })
    return _fill("dispensation.xml", blocks)
