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
from functools import lru_cache

from lxml import etree

from gateway.documents import cda
from gateway.documents.model import (
    AuthorInfo,
    Dispensation,
    DispensedLine,
    PatientInfo,
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
        _e("birthplace", _e("place", _e("addr", _e("county", p.birth_place))))
        if p.birth_place else None,
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
    return _e(tag, _e("name", _e("prefix", author.title) if author.title else None,
                      _e("given", author.given_name), _e("family", author.family_name)))


# A doctor's (or pharmacist's) own blocks: the same in every document they sign, three times
# in each (author, legal authenticator, performer; custodian): written once per process and
# author (a bounded cache; ~40 elements, a fifth of a two-line prescription's).
@lru_cache(maxsize=256)
def _organisation(author: AuthorInfo, tag: str = "representedOrganization",
                  practice_setting: bool = False) -> _Xml:
    s = author.structure
    if s is None:
        parts = [_e("id", nullFlavor="NAV"),
                 _e("name", f"Cabinet de {author.given_name} {author.family_name}")]
    else:
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
    """The dosage in words: '1 comprimé 3 fois par jour pendant 5 jours'."""
    parts: list[str] = []
    if line.dose:
        parts.append(cda.dose_words(line.dose.quantity, line.dose.unit))
    if line.frequency:
        parts.append(cda.frequency_words(line.frequency))
    if line.duration_days:
        parts.append(f"pendant {line.duration_days} jour{'s' if line.duration_days > 1 else ''}")
    text = " ".join(parts)
    if line.dosage_text:
        text = f"{text}. {line.dosage_text}" if text else line.dosage_text
    return text or "-"


def _validity_end(p: Prescription) -> dt.date:
    # A first dispensation must happen within 3 months of the prescription date.
    return p.validity_end or cda.add_months(p.date.date(), 3)


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


_NARRATIVE_HEAD = _e("thead", _e("tr", *[_e("th", h) for h in (
    "Médicament", "Posologie", "Quantité", "Renouvellements", "Substitution", "ALD")]))


def _prescription_narrative(p: Prescription) -> _Xml:

    def table(lines: list[tuple[int, PrescriptionLine]], caption: str | None) -> _Xml:
        rows = []
        for i, line in lines:
            label = ("Préparation magistrale : " if line.product.magistral else "") + \
                line.product.label
            rows.append(_e(
                "tr",
                _e("td", _e("content", label, ID=f"med-{i}")),
                _e("td", _e("content", posology(line), ID=f"med-{i}-posologie")),
                _e("td", _quantity_text(line)),
                _e("td", str(line.renewals)),
                _e("td", _e("content", _substitution_text(line), ID=f"med-{i}-substitution")),
                _e("td", _e("content", "Oui" if line.ald else "Non", ID=f"med-{i}-ald")),
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
_INSTRUCTIONS_HEAD = (
    _e("templateId", root="2.16.840.1.113883.10.20.1.49"),
    _e("templateId", root="1.3.6.1.4.1.19376.1.5.3.1.4.3"),
    _e("templateId", root="1.2.250.1.213.1.1.3.33"),
    _e("code", code="PINSTRUCT", codeSystem="1.3.6.1.4.1.19376.1.5.3.2",
       codeSystemName="IHEActCode"))
_SUPPLY_HEAD = (
    _e("templateId", root="1.3.6.1.4.1.19376.1.9.1.3.8"),
    _e("templateId", root="1.2.250.1.213.1.1.3.86"),
    _e("independentInd", value="false"))
_PERMISSION_TEMPLATES = (_e("templateId", root=cda.SUBSTITUTION_PERMISSION),
                         _e("templateId", root="1.2.250.1.213.1.1.3.87"))
_SUBSTITUTABLE = _e("code", code="E", displayName="Substitution possible",
                    codeSystem=cda.OID_SUBSTITUTION)


def _product(product: Product, ref: str) -> _Xml:
    original = _e("originalText", _e("reference", value=f"#{ref}"))
    if product.cis or product.cip13:
        # CIS is the code when known (required codeSystem when coded), CIP13 its translation.
        value, system, system_name = (product.cis, OID_CIS, "CIS") if product.cis else \
            (product.cip13, OID_CIP13, "CIP")
        code = _e("code", original,
                  _e("translation", code=product.cip13, codeSystem=OID_CIP13,
                     codeSystemName="CIP") if product.cis and product.cip13 else None,
                  code=value, codeSystem=system, displayName=product.label,
                  codeSystemName=system_name)
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
def _flag_pieces(template: str, code: str, label: str, with_text: bool) -> tuple[str, ...]:
    """A flag observation's markup cut where its values go (id, [reference,] time, value).
    Ten per two-line prescription, the same but for those values: written once per process,
    joined per line (made element by element they were a third of the markup's time)."""
    return tuple(_e("entryRelationship", _e(
        "observation",
        _e("templateId", root="1.3.6.1.4.1.19376.1.5.3.1.4.13"),
        _e("templateId", root="1.2.250.1.213.1.1.3.48"),
        _e("templateId", root=template),
        _e("id", root=_HOLE),
        _e("code", code=code, displayName=label, codeSystem=cda.OID_FLAGS),
        _e("text", _e("reference", value=_HOLE)) if with_text else None,
        _e("statusCode", code="completed"),
        _e("effectiveTime", value=_HOLE),
        _e("value", xsi_type="BL", value=_HOLE),
        classCode="OBS", moodCode="EVN"), typeCode="COMP").split(_HOLE))


def _flag_observation(template: str, code: str, label: str, value: bool, stamp: str,
                      ref: str | None) -> _Xml:
    pieces = _flag_pieces(template, code, label, ref is not None)
    values = (cda.new_uuid(), *((f"#{ref}",) if ref else ()), stamp,
              "true" if value else "false")
    out = [pieces[0]]
    for filled, piece in zip(values, pieces[1:], strict=True):
        out += (filled, piece)
    return _Xml("".join(out))


_LINE_TEMPLATES = tuple(_e("templateId", root=root) for root in (
    "2.16.840.1.113883.10.20.1.24", "1.3.6.1.4.1.19376.1.5.3.1.4.7", "1.3.6.1.4.1.19376.1.9.1.3.2",
    cda.PRESCRIBED_ITEM, "1.3.6.1.4.1.19376.1.9.1.3.6", "1.3.6.1.4.1.19376.1.5.3.1.4.7.1"))


def _prescription_entry(p: Prescription, i: int, line: PrescriptionLine, stamp: str) -> _Xml:
    """Line `i`; `stamp`: the prescription's time as written (cda.ts, once per document)."""
    ref = f"med-{i}"
    start = p.date.date()
    frequency = cda.frequency_period(line.frequency) if line.frequency else None
    if line.substitutable:
        sub_code = _SUBSTITUTABLE
    else:
        sub_code = _e("code", _e("originalText", line.substitution_refusal or ""), code="N",
                      displayName="Aucune substitution permise", codeSystem=cda.OID_SUBSTITUTION)
    sa = _e(
        "substanceAdministration",
        *_LINE_TEMPLATES,
        _e("id", root=line.line_id or cda.new_uuid()),
        _DRUG,
        _e("text", _e("reference", value=f"#{ref}-posologie")),
        _COMPLETED,
        _e("effectiveTime", _e("low", value=cda.ts_date(start)),
           _e("width", value=str(line.duration_days), unit="d") if line.duration_days else None,
           xsi_type="IVL_TS"),
        _e("effectiveTime", _e("period", value=cda.num(frequency[0]), unit=frequency[1]),
           xsi_type="PIVL_TS", institutionSpecified="false", operator="A")
        if frequency else None,
        _e("repeatNumber", value=str(line.renewals)),
        _e("routeCode", code=line.route, codeSystem=cda.OID_EDQM, codeSystemName="EDQM",
           displayName=cda.ROUTES.get(line.route)) if line.route else None,
        _e("doseQuantity", value=cda.num(line.dose.quantity), unit=line.dose.unit)
        if line.dose else None,
        _e("consumable", _product(line.product, ref)),
        _e("entryRelationship", _e(
            "act", *_INSTRUCTIONS_HEAD, _e("text", line.dosage_text), _COMPLETED,
            classCode="ACT", moodCode="INT"), typeCode="SUBJ", inversionInd="true")
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
        _flag_observation(cda.ALD_OBSERVATION, "MED-574", "En rapport avec une ALD", line.ald,
                          stamp, f"{ref}-ald"),
        _flag_observation("1.2.250.1.213.1.1.3.48.14", "GEN-180",
                          "En rapport avec un accident du travail ou une maladie"
                          " professionnelle", False, stamp, None),
        _flag_observation("1.2.250.1.213.1.1.3.48.34", "GEN-295",
                          "En rapport avec la prévention", False, stamp, None),
        _flag_observation("1.2.250.1.213.1.1.3.48.15", "GEN-181", "Non remboursable", False,
                          stamp, None),
        _flag_observation("1.2.250.1.213.1.1.3.48.12", "GEN-179",
                          "Hors Autorisation de Mise sur le Marché (AMM)", False, stamp, None),
        classCode="SBADM", moodCode="INT")
    return _e("entry", sa)


def _check_prescription(p: Prescription) -> None:
    if not p.lines:
        raise BuildError("a prescription needs at least one line")
    for i, line in enumerate(p.lines, start=1):
        if not line.product.label.strip():
            raise BuildError(f"line {i}: the medicine has no name")
        if not line.substitutable and line.substitution_refusal is None:
            raise BuildError(f"line {i}: 'non substituable' needs a reason (MTE, EFG or CIF)")


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
    stamp = cda.ts(p.date)
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


def _dispensed_status(line: DispensedLine) -> str:
    if line.not_delivered_reason:
        return f"Non délivré : {line.not_delivered_reason}"
    if line.substituted:
        reason = f" ({line.substitution_reason})" if line.substitution_reason else ""
        return f"Substitution{reason}"
    return "Délivré tel que prescrit"


def _dispensation_narrative(d: Dispensation) -> _Xml:
    rows = []
    for i, line in enumerate(d.lines, start=1):
        notes = line.adjustment_reason or "-"
        rows.append(_e(
            "tr",
            _e("td", line.line_ref),
            _e("td", _e("content", line.product.label, ID=f"disp-{i}")),
            _e("td", _e("content", cda.num(line.quantity).replace(".", ","), ID=f"disp-{i}-qty")),
            _e("td", _e("content", _dispensed_status(line), ID=f"disp-{i}-status")),
            _e("td", _e("content", notes, ID=f"disp-{i}-notes")),
        ))
    head = ["Ligne prescrite", "Médicament délivré", "Quantité délivrée", "Délivrance",
            "Adaptation"]
    return _e("text", _e("paragraph", f"Prescription {d.prescription_id}"),
              _e("table", _e("thead", _e("tr", *[_e("th", h) for h in head])),
                 _e("tbody", *rows), border="0"),
              _e("paragraph", _e("content", d.notes, ID="notes")) if d.notes else None)


_DISPENSED_TEMPLATES = tuple(_e("templateId", root=root) for root in (
    "2.16.840.1.113883.10.20.1.34", "1.3.6.1.4.1.19376.1.5.3.1.4.7.3", cda.DISPENSED_ITEM,
    "1.2.250.1.213.1.1.3.204"))


def _dispensation_entry(d: Dispensation, i: int, line: DispensedLine) -> _Xml:
    ref = f"disp-{i}"
    item = _e(
        "substanceAdministration",
        _e("templateId", root=cda.PRESCRIPTION_ITEM_REF),
        _e("templateId", root="1.2.250.1.213.1.1.3.90"),
        _e("id", root=d.prescription_document_id, extension=line.line_ref),
        _e("code", code="PREItem", displayName="Prescription Item",
           codeSystem="1.3.6.1.4.1.19376.1.9.2.2"),
        _e("consumable", _e("manufacturedProduct", _e("manufacturedMaterial",
                                                      _e("name", nullFlavor="NA"),
                                                      nullFlavor="NA"))),
        _e("reference", _e("externalDocument", _e("id", root=d.prescription_document_id)),
           typeCode="XCRPT"),
        classCode="SBADM", moodCode="INT")
    notes = [text for text in (
        f"Non délivré : {line.not_delivered_reason}" if line.not_delivered_reason else None,
        f"Adaptation : {line.adjustment_reason}" if line.adjustment_reason else None,
    ) if text]
    instructions = _e("entryRelationship", _e(
        "act",
        _e("templateId", root="2.16.840.1.113883.10.20.1.43"),
        _e("templateId", root="1.3.6.1.4.1.19376.1.5.3.1.4.3.1"),
        _e("templateId", root="1.2.250.1.213.1.1.3.207"),
        _e("code", code="FINSTRUCT", codeSystem="1.3.6.1.4.1.19376.1.5.3.2",
           codeSystemName="IHEActCode"),
        _e("text", " | ".join(notes)),
        _e("statusCode", code="completed"),
        classCode="ACT", moodCode="INT"), typeCode="SUBJ", inversionInd="true") if notes else None
    substitution = _e("entryRelationship", _e(
        "act",
        _e("templateId", root=cda.SUBSTITUTION_DONE),
        _e("templateId", root="1.2.250.1.213.1.1.3.206"),
        _e("code", _e("originalText", line.substitution_reason)
           if line.substitution_reason else None,
           code="G", displayName="Substitution par un produit générique",
           codeSystem=cda.OID_SUBSTITUTION),
        _e("statusCode", code="completed"),
        classCode="ACT", moodCode="EVN"), typeCode="COMP") if line.substituted else None
    return _e("entry", _e(
        "supply",
        *_DISPENSED_TEMPLATES,
        _e("id", root=cda.new_uuid()),
        _e("text", _e("reference", value=f"#{ref}")),
        _e("quantity", value=cda.num(line.quantity)),
        _e("product", _product(line.product, ref)),
        _e("entryRelationship", item, typeCode="REFR", inversionInd="false"),
        instructions,
        substitution,
        classCode="SPLY", moodCode="EVN"))


def build_dispensation(d: Dispensation) -> bytes:
    """The eDISP-MED 2024.01 CDA of `d`."""
    if not d.lines:
        raise BuildError("a dispensation needs at least one line")
    d = assign_dispensation_ids(d)
    assert d.document_id and d.set_id
    author = d.author
    stamp = cda.ts(d.date)
    blocks = _header(doc_id=d.document_id, set_id=d.set_id, version=d.version, stamp=stamp)
    event = _e("serviceEvent",
               _e("id", root=OID_PRESCRIPTION_ID, extension=d.prescription_id),
               _e("code", code="60593-1", displayName="Dispensation médicamenteuse",
                  codeSystem=cda.OID_LOINC),
               _e("effectiveTime", _e("low", value=stamp)),
               _e("performer", _entity(author, "assignedEntity"), typeCode="PRF"))
    blocks.update({
        "recordTarget": _patient(d.patient),
        "author": _author(author, stamp),
        "custodian": _custodian(author),
        "legalAuthenticator": _legal(author, stamp),
        "inFulfillmentOf": _e("inFulfillmentOf", _e("order",
                                                    _e("id", root=d.prescription_document_id))),
        "serviceEvent": _e("documentationOf", event),
        "componentOf": _encounter(author, stamp, ("SA33", "Pharmacie d'officine")),
        "narrative": _dispensation_narrative(d),
        "entries": [_dispensation_entry(d, i, line) for i, line in enumerate(d.lines, start=1)],
    })
    return _fill("dispensation.xml", blocks)
