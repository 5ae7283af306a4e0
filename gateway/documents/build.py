"""Build eP-MED-DM 2024.01 prescriptions and eDISP-MED 2024.01 dispensations from the model.

Pure and synchronous (model + PDF + QR image -> CDA bytes), so the servers run it in a process
pool. The fixed structure lives in `cda_templates/*.xml`; this module generates the variable
blocks (patient, author, lines...) and the human-readable narrative from the same data, so what a
person reads and what software reads cannot disagree.

Identifiers: `assign_ids` gives a model its e-prescription identifier (when it has none), a fresh
document id and set id; call it first when you also need the ids elsewhere (the PDF prints the
identifier), `build_prescription` calls it anyway.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import importlib.resources
from functools import lru_cache
from typing import Any

from lxml import etree

from gateway.documents import cda
from gateway.documents.cda import NS, XSI
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


class BuildError(GatewayError):
    """The model cannot be written as a valid document (says which field)."""


@lru_cache(maxsize=4)
def _template(name: str) -> etree._ElementTree:
    data = importlib.resources.files("cda_templates").joinpath(name).read_bytes()
    parser = etree.XMLParser(remove_blank_text=True, remove_comments=True, resolve_entities=False,
                             no_network=True)
    return etree.ElementTree(etree.fromstring(data, parser))


def _e(tag: str, *children: Any, **attrs: str | None) -> etree._Element:
    """An element in the CDA namespace; children may be elements or text; None attrs dropped."""
    # No nsmap here: lxml reuses the template root's declarations when the element is attached,
    # and building 400+ elements per document is 3x faster without one on each.
    el = etree.Element(f"{{{NS}}}{tag}")
    for key, value in attrs.items():
        if value is None:
            continue
        if key == "xsi_type":
            el.set(f"{{{XSI}}}type", value)
        else:
            el.set(key.rstrip("_"), value)
    for child in children:
        if child is None:
            continue
        if isinstance(child, str):
            if len(el):
                el[-1].tail = (el[-1].tail or "") + child
            else:
                el.text = (el.text or "") + child
        else:
            el.append(child)
    return el


def _pharm(tag: str, *children: Any, **attrs: str) -> etree._Element:
    el = _e("x", *children, **attrs)
    el.tag = f"{{{cda.PHARM}}}{tag}"
    return el


def _fill(root: etree._Element, blocks: dict[str, Any]) -> None:
    """Replace each <?mssgw NAME?> by blocks[NAME] (an element, a list, or a callable giving a
    fresh element per occurrence)."""
    for pi in list(root.iter(etree.ProcessingInstruction)):
        if getattr(pi, "target", None) != "mssgw":
            continue
        name = (pi.text or "").strip()
        if name not in blocks:
            raise RuntimeError(f"template placeholder {name!r} has no value")
        value = blocks[name]
        if callable(value):
            value = value()
        items = value if isinstance(value, list) else [value]
        parent = pi.getparent()
        assert parent is not None
        index = parent.index(pi)
        parent.remove(pi)
        for offset, item in enumerate(i for i in items if i is not None):
            parent.insert(index + offset, item)


# --- header blocks --------------------------------------------------------------------------


def _patient(p: PatientInfo) -> etree._Element:
    name = _e("name", _e("family", p.birth_name, qualifier="BR"), _e("given", p.given_names),
              _e("given", p.given_names.split()[0] if p.given_names.split() else p.given_names,
                 qualifier="BR"))
    if p.used_name:
        name.append(_e("family", p.used_name, qualifier="CL"))
    addr = _e("addr", *_address_lines(p.address)) if p.address else _e("addr", nullFlavor="NASK")
    patient = _e(
        "patient",
        name,
        _e("administrativeGenderCode", code=p.sex,
           displayName={"F": "Féminin", "M": "Masculin"}.get(p.sex, "Inconnu"),
           codeSystem="2.16.840.1.113883.5.1"),
        _e("birthTime", value=cda.ts_date(p.birth_date)),
        classCode="PSN",
    )
    if p.birth_place:
        patient.append(_e("birthplace", _e("place", _e("addr", _e("county", p.birth_place)))))
    return _e("recordTarget", _e("patientRole", _e("id", root=p.ins_oid, extension=p.ins), addr,
                                 _e("telecom", nullFlavor="NASK"), patient))


def _address_lines(address: str | None) -> list[etree._Element]:
    if not address:
        return []
    return [_e("streetAddressLine", line.strip()) for line in address.splitlines() if line.strip()]


def _profession(author: AuthorInfo) -> etree._Element:
    code = f"G15_{author.profession}" + (f"/{author.specialty}" if author.specialty else "")
    label = cda.PROFESSIONS.get(author.profession, "Professionnel")
    return _e("code", code=code, displayName=label, codeSystem=cda.OID_PROFESSION)


def _person(author: AuthorInfo, tag: str = "assignedPerson") -> etree._Element:
    name = _e("name")
    if author.title:
        name.append(_e("prefix", author.title))
    name.append(_e("given", author.given_name))
    name.append(_e("family", author.family_name))
    return _e(tag, name)


def _organisation(author: AuthorInfo, tag: str = "representedOrganization",
                  practice_setting: bool = False) -> etree._Element:
    s = author.structure
    if s is None:
        org = _e(tag, _e("id", nullFlavor="NAV"),
                 _e("name", f"Cabinet de {author.given_name} {author.family_name}"))
    else:
        org = _e(tag, _e("id", root=OID_STRUCTURE, extension=s.national_id), _e("name", s.name))
        if s.phone:
            org.append(_e("telecom", value=f"tel:{s.phone.replace(' ', '')}", use="WP"))
        if s.address:
            org.append(_e("addr", *_address_lines(s.address)))
    if practice_setting:
        org.append(_e("standardIndustryClassCode", code="AMBULATOIRE", displayName="Ambulatoire",
                      codeSystem="1.2.250.1.213.1.1.4.9"))
    return org


def _entity(author: AuthorInfo, tag: str) -> etree._Element:
    el = _e(tag, _e("id", root=OID_RPPS_ADELI, extension=author.national_id), _profession(author))
    if author.phone:
        el.append(_e("telecom", value=f"tel:{author.phone.replace(' ', '')}", use="WP"))
    if author.email:
        el.append(_e("telecom", value=f"mailto:{author.email}"))
    el.append(_person(author))
    el.append(_organisation(author, practice_setting=tag == "assignedEntity"))
    return el


def _author(author: AuthorInfo, when: dt.datetime) -> etree._Element:
    assigned = _entity(author, "assignedAuthor")
    assigned.set("classCode", "ASSIGNED")
    return _e("author", _e("time", value=cda.ts(when)), assigned)


def _custodian(author: AuthorInfo) -> etree._Element:
    org = _organisation(author, "representedCustodianOrganization")
    return _e("custodian", _e("assignedCustodian", org))


def _legal(author: AuthorInfo, when: dt.datetime) -> etree._Element:
    return _e("legalAuthenticator", _e("time", value=cda.ts(when)), _e("signatureCode", code="S"),
              _entity(author, "assignedEntity"))


def _encounter(author: AuthorInfo, when: dt.datetime, facility: tuple[str, str]
               ) -> etree._Element:
    loc = _e("healthCareFacility")
    if author.structure:
        loc.append(_e("id", root=OID_STRUCTURE, extension=author.structure.national_id))
    loc.append(_e("code", code=facility[0], displayName=facility[1],
                  codeSystem="1.2.250.1.71.4.2.4"))
    code = _e("code", code="AMB", displayName="Ambulatoire (hors établissement)",
              codeSystem="2.16.840.1.113883.5.4")
    return _e("componentOf", _e("encompassingEncounter", code,
                                _e("effectiveTime", _e("high", value=cda.ts(when))),
                                _e("location", loc)))


def _media(data: bytes, mediatype: str) -> etree._Element:
    return _e("value", base64.b64encode(data).decode("ascii"), mediaType=mediatype,
              representation="B64")


def _header(*, doc_id: str, set_id: str, version: int,
            when: dt.datetime) -> dict[str, Any]:
    return {
        "id": _e("id", root=doc_id),
        "effectiveTime": _e("effectiveTime", value=cda.ts(when)),
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


def _prescription_narrative(p: Prescription) -> etree._Element:
    head = ["Médicament", "Posologie", "Quantité", "Renouvellements", "Substitution", "ALD"]

    def table(lines: list[tuple[int, PrescriptionLine]], caption: str | None) -> etree._Element:
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
        t = _e("table", border="0")
        if caption:
            t.append(_e("caption", caption))
        t.append(_e("thead", _e("tr", *[_e("th", h) for h in head])))
        t.append(_e("tbody", *rows))
        return t

    numbered = list(enumerate(p.lines, start=1))
    text = _e("text")
    if p.bizone:
        ald = [x for x in numbered if x[1].ald]
        other = [x for x in numbered if not x[1].ald]
        if ald:
            text.append(table(ald, "Prescriptions relatives au traitement de l'affection de"
                              " longue durée reconnue (liste ou hors liste)"))
        if other:
            text.append(table(other, "Prescriptions sans rapport avec l'affection de longue"
                              " durée"))
    else:
        text.append(table(numbered, None))
    if p.notes:
        text.append(_e("paragraph", _e("content", p.notes, ID="notes")))
    return text


def _product(product: Product, ref: str) -> etree._Element:
    if product.cis or product.cip13:
        # CIS is the code when known (required codeSystem when coded), CIP13 its translation.
        value, system, system_name = (product.cis, OID_CIS, "CIS") if product.cis else \
            (product.cip13, OID_CIP13, "CIP")
        code = _e("code", _e("originalText", _e("reference", value=f"#{ref}")), code=value,
                  codeSystem=system, displayName=product.label, codeSystemName=system_name)
        if product.cis and product.cip13:
            code.append(_e("translation", code=product.cip13, codeSystem=OID_CIP13,
                           codeSystemName="CIP"))
    else:
        # NA: a magistral preparation has no code; UNK: a product named only in words.
        code = _e("code", _e("originalText", _e("reference", value=f"#{ref}")),
                  nullFlavor="NA" if product.magistral else "UNK")
    material = _e("manufacturedMaterial", _e("templateId", root="1.3.6.1.4.1.19376.1.9.1.3.1"),
                  code, _e("name", product.label), classCode="MMAT", determinerCode="KIND")
    if product.atc:
        material.append(_pharm("asSpecializedKind", _pharm(
            "generalizedMedicineClass", _pharm("code", code=product.atc, codeSystem=cda.OID_ATC,
                                               codeSystemName="ATC"), classCode="MMAT"),
            classCode="GRIC"))
    return _e("manufacturedProduct",
              _e("templateId", root="2.16.840.1.113883.10.20.1.53"),
              _e("templateId", root="1.3.6.1.4.1.19376.1.5.3.1.4.7.2"),
              _e("templateId", root="1.2.250.1.213.1.1.3.43"),
              material, classCode="MANU")


@lru_cache(maxsize=32)
def _flag_prototype(template: str, code: str, label: str, with_text: bool) -> etree._Element:
    """The constant part of a flag observation; `_flag_observation` copies it and fills in the
    id, reference, time and value (a copy is made in C: five flags per line, built element by
    element, were a quarter of the CDA's build time)."""
    return _e("entryRelationship", _e(
        "observation",
        _e("templateId", root="1.3.6.1.4.1.19376.1.5.3.1.4.13"),
        _e("templateId", root="1.2.250.1.213.1.1.3.48"),
        _e("templateId", root=template),
        _e("id"),
        _e("code", code=code, displayName=label, codeSystem=cda.OID_FLAGS),
        _e("text", _e("reference")) if with_text else None,
        _e("statusCode", code="completed"),
        _e("effectiveTime"),
        _e("value", xsi_type="BL"),
        classCode="OBS", moodCode="EVN"), typeCode="COMP")


def _flag_observation(template: str, code: str, label: str, value: bool, when: dt.datetime,
                      ref: str | None) -> etree._Element:
    relationship = copy.deepcopy(_flag_prototype(template, code, label, ref is not None))
    observation = relationship[0]
    observation[3].set("root", cda.new_uuid())
    if ref:
        observation[5][0].set("value", f"#{ref}")
    observation[-2].set("value", cda.ts(when))
    observation[-1].set("value", "true" if value else "false")
    return relationship


def _prescription_entry(p: Prescription, i: int, line: PrescriptionLine) -> etree._Element:
    ref = f"med-{i}"
    start = p.date.date()
    sa = _e("substanceAdministration", classCode="SBADM", moodCode="INT")
    for root in ("2.16.840.1.113883.10.20.1.24", "1.3.6.1.4.1.19376.1.5.3.1.4.7",
                 "1.3.6.1.4.1.19376.1.9.1.3.2", cda.PRESCRIBED_ITEM,
                 "1.3.6.1.4.1.19376.1.9.1.3.6", "1.3.6.1.4.1.19376.1.5.3.1.4.7.1"):
        sa.append(_e("templateId", root=root))
    sa.append(_e("id", root=line.line_id or cda.new_uuid()))
    sa.append(_e("code", code="DRUG", displayName="Médicament", codeSystem="2.16.840.1.113883.5.4"))
    sa.append(_e("text", _e("reference", value=f"#{ref}-posologie")))
    sa.append(_e("statusCode", code="completed"))
    period = _e("effectiveTime", _e("low", value=cda.ts_date(start)), xsi_type="IVL_TS")
    if line.duration_days:
        period.append(_e("width", value=str(line.duration_days), unit="d"))
    sa.append(period)
    if line.frequency:
        value, unit = cda.frequency_period(line.frequency)
        sa.append(_e("effectiveTime", _e("period", value=cda.num(value), unit=unit),
                     xsi_type="PIVL_TS", institutionSpecified="false", operator="A"))
    sa.append(_e("repeatNumber", value=str(line.renewals)))
    if line.route:
        sa.append(_e("routeCode", code=line.route, codeSystem=cda.OID_EDQM, codeSystemName="EDQM",
                     displayName=cda.ROUTES.get(line.route)))
    if line.dose:
        sa.append(_e("doseQuantity", value=cda.num(line.dose.quantity), unit=line.dose.unit))
    sa.append(_e("consumable", _product(line.product, ref)))
    if line.dosage_text:
        sa.append(_e("entryRelationship", _e(
            "act",
            _e("templateId", root="2.16.840.1.113883.10.20.1.49"),
            _e("templateId", root="1.3.6.1.4.1.19376.1.5.3.1.4.3"),
            _e("templateId", root="1.2.250.1.213.1.1.3.33"),
            _e("code", code="PINSTRUCT", codeSystem="1.3.6.1.4.1.19376.1.5.3.2",
               codeSystemName="IHEActCode"),
            _e("text", line.dosage_text),
            _e("statusCode", code="completed"),
            classCode="ACT", moodCode="INT"), typeCode="SUBJ", inversionInd="true"))
    if line.quantity is not None:
        sa.append(_e("entryRelationship", _e(
            "supply",
            _e("templateId", root="1.3.6.1.4.1.19376.1.9.1.3.8"),
            _e("templateId", root="1.2.250.1.213.1.1.3.86"),
            _e("independentInd", value="false"),
            _e("quantity", value=cda.num(line.quantity),
               unit=cda.PACKAGING.get(line.quantity_unit, cda.PACKAGING["boîte"])),
            classCode="SPLY", moodCode="RQO"), typeCode="COMP"))
    if line.substitutable:
        sub_code = _e("code", code="E", displayName="Substitution possible",
                      codeSystem=cda.OID_SUBSTITUTION)
    else:
        sub_code = _e("code", _e("originalText", line.substitution_refusal or ""), code="N",
                      displayName="Aucune substitution permise", codeSystem=cda.OID_SUBSTITUTION)
    sa.append(_e("entryRelationship", _e(
        "act",
        _e("templateId", root=cda.SUBSTITUTION_PERMISSION),
        _e("templateId", root="1.2.250.1.213.1.1.3.87"),
        sub_code,
        _e("statusCode", code="completed"),
        classCode="ACT", moodCode="DEF"), typeCode="COMP"))
    when = p.date
    sa.append(_flag_observation(cda.ALD_OBSERVATION, "MED-574", "En rapport avec une ALD",
                                line.ald, when, f"{ref}-ald"))
    sa.append(_flag_observation("1.2.250.1.213.1.1.3.48.14", "GEN-180",
                                "En rapport avec un accident du travail ou une maladie"
                                " professionnelle", False, when, None))
    sa.append(_flag_observation("1.2.250.1.213.1.1.3.48.34", "GEN-295",
                                "En rapport avec la prévention", False, when, None))
    sa.append(_flag_observation("1.2.250.1.213.1.1.3.48.15", "GEN-181", "Non remboursable", False,
                                when, None))
    sa.append(_flag_observation("1.2.250.1.213.1.1.3.48.12", "GEN-179",
                                "Hors Autorisation de Mise sur le Marché (AMM)", False, when, None))
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
    """`build_prescription`, with the tree its bytes were written from: a flow that packs the
    document next reads the XDS metadata from it (`gateway.xdm.package.build(trees=...)`)
    instead of parsing the bytes it just wrote."""
    _check_prescription(p)
    p = assign_ids(p)
    assert p.identifier and p.document_id and p.set_id
    root = copy.deepcopy(_template("prescription.xml").getroot())
    author = p.author
    event = _e("serviceEvent",
               _e("id", root=OID_PRESCRIPTION_ID, extension=p.identifier),
               _e("code", code="57833-6", displayName="Prescription de produits de santé",
                  codeSystem=cda.OID_LOINC),
               _e("effectiveTime", _e("low", value=cda.ts(p.date)),
                  _e("high", value=cda.ts_date(_validity_end(p)))),
               _e("performer", _entity(author, "assignedEntity"), typeCode="PRF"),
               classCode="ACT")
    flags = [
        _e("documentationOf", _e("serviceEvent", _e("code", code=code, displayName=label,
                                                    codeSystem=cda.OID_FLAGS), classCode="INFO"))
        for on, code, label in (
            (p.bizone, cda.FLAG_BIZONE, "Prescription bizone"),
            (p.exception_drugs, cda.FLAG_EXCEPTION, "Prescription médicaments d'exception"),
            (p.secured, cda.FLAG_SECURED, "Ordonnance sécurisée"),
        )
        if on
    ]
    blocks = _header(doc_id=p.document_id, set_id=p.set_id, version=p.version, when=p.date)
    blocks.update({
        "title": _e("title", p.title),
        "recordTarget": _patient(p.patient),
        "author": _author(author, p.date),
        "custodian": _custodian(author),
        "legalAuthenticator": _legal(author, p.date),
        "serviceEvent": _e("documentationOf", event),
        "flags": flags,
        "componentOf": _encounter(author, p.date, ("SA07", "Cabinet individuel")),
        "qr": _media(qr_png, MIMETYPE_PNG),
        "pdf": _media(pdf, MIMETYPE_PDF),
        "narrative": _prescription_narrative(p),
        "entries": [_prescription_entry(p, i, line) for i, line in enumerate(p.lines, start=1)],
    })
    _fill(root, blocks)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8"), root


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


def _dispensation_narrative(d: Dispensation) -> etree._Element:
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
    text = _e("text", _e("paragraph", f"Prescription {d.prescription_id}"),
              _e("table", _e("thead", _e("tr", *[_e("th", h) for h in head])),
                 _e("tbody", *rows), border="0"))
    if d.notes:
        text.append(_e("paragraph", _e("content", d.notes, ID="notes")))
    return text


def _dispensation_entry(d: Dispensation, i: int, line: DispensedLine) -> etree._Element:
    ref = f"disp-{i}"
    supply = _e("supply", classCode="SPLY", moodCode="EVN")
    for root in ("2.16.840.1.113883.10.20.1.34", "1.3.6.1.4.1.19376.1.5.3.1.4.7.3",
                 cda.DISPENSED_ITEM, "1.2.250.1.213.1.1.3.204"):
        supply.append(_e("templateId", root=root))
    supply.append(_e("id", root=cda.new_uuid()))
    supply.append(_e("text", _e("reference", value=f"#{ref}")))
    supply.append(_e("quantity", value=cda.num(line.quantity)))
    product = _product(line.product, ref)
    product.tag = f"{{{NS}}}manufacturedProduct"
    supply.append(_e("product", product))
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
    supply.append(_e("entryRelationship", item, typeCode="REFR", inversionInd="false"))
    notes = [text for text in (
        f"Non délivré : {line.not_delivered_reason}" if line.not_delivered_reason else None,
        f"Adaptation : {line.adjustment_reason}" if line.adjustment_reason else None,
    ) if text]
    if notes:
        supply.append(_e("entryRelationship", _e(
            "act",
            _e("templateId", root="2.16.840.1.113883.10.20.1.43"),
            _e("templateId", root="1.3.6.1.4.1.19376.1.5.3.1.4.3.1"),
            _e("templateId", root="1.2.250.1.213.1.1.3.207"),
            _e("code", code="FINSTRUCT", codeSystem="1.3.6.1.4.1.19376.1.5.3.2",
               codeSystemName="IHEActCode"),
            _e("text", " | ".join(notes)),
            _e("statusCode", code="completed"),
            classCode="ACT", moodCode="INT"), typeCode="SUBJ", inversionInd="true"))
    if line.substituted:
        code = _e("code", code="G", displayName="Substitution par un produit générique",
                  codeSystem=cda.OID_SUBSTITUTION)
        if line.substitution_reason:
            code.append(_e("originalText", line.substitution_reason))
        supply.append(_e("entryRelationship", _e(
            "act",
            _e("templateId", root=cda.SUBSTITUTION_DONE),
            _e("templateId", root="1.2.250.1.213.1.1.3.206"),
            code,
            _e("statusCode", code="completed"),
            classCode="ACT", moodCode="EVN"), typeCode="COMP"))
    return _e("entry", supply)


def build_dispensation(d: Dispensation) -> bytes:
    """The eDISP-MED 2024.01 CDA of `d`."""
    if not d.lines:
        raise BuildError("a dispensation needs at least one line")
    d = assign_dispensation_ids(d)
    assert d.document_id and d.set_id
    root = copy.deepcopy(_template("dispensation.xml").getroot())
    author = d.author
    blocks = _header(doc_id=d.document_id, set_id=d.set_id, version=d.version, when=d.date)
    event = _e("serviceEvent",
               _e("id", root=OID_PRESCRIPTION_ID, extension=d.prescription_id),
               _e("code", code="60593-1", displayName="Dispensation médicamenteuse",
                  codeSystem=cda.OID_LOINC),
               _e("effectiveTime", _e("low", value=cda.ts(d.date))),
               _e("performer", _entity(author, "assignedEntity"), typeCode="PRF"))
    blocks.update({
        "recordTarget": _patient(d.patient),
        "author": _author(author, d.date),
        "custodian": _custodian(author),
        "legalAuthenticator": _legal(author, d.date),
        "inFulfillmentOf": _e("inFulfillmentOf", _e("order",
                                                    _e("id", root=d.prescription_document_id))),
        "serviceEvent": _e("documentationOf", event),
        "componentOf": _encounter(author, d.date, ("SA33", "Pharmacie d'officine")),
        "narrative": _dispensation_narrative(d),
        "entries": [_dispensation_entry(d, i, line) for i, line in enumerate(d.lines, start=1)],
    })
    _fill(root, blocks)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
