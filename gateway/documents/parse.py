"""Read eP-MED-DM prescriptions and eDISP-MED dispensations back into the model.

Documents come from our builder and from other software (the official examples were not made by
us), so the parser is lenient where the standard allows variants (split dosing, narrative
references, CIP13-only products) and reports, with an XPath location, everything that is missing
or invalid instead of stopping at the first problem. It raises only when the input is not a CDA
prescription or dispensation at all. Untrusted XML goes through gateway.xmlsafe.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Literal

from lxml import etree

from gateway.documents import cda
from gateway.documents.cda import XP
from gateway.documents.model import (
    AuthorInfo,
    Dispensation,
    DispensedLine,
    Dose,
    Frequency,
    PatientInfo,
    Prescription,
    PrescriptionLine,
    Product,
    StructureInfo,
    SubstitutionRefusal,
)
from gateway.errors import GatewayError
from gateway.identifiers import (
    OID_CIP13,
    OID_CIS,
    OID_INS_DEMO,
    OID_INS_NIA,
    OID_INS_NIR,
    OID_INS_TEST,
    OID_PRESCRIPTION_ID,
)
from gateway.xmlsafe import parse_xml

INS_OIDS = (OID_INS_NIR, OID_INS_NIA, OID_INS_TEST, OID_INS_DEMO)
Kind = Literal["prescription", "dispensation"]


class DocumentError(GatewayError):
    """Not a CDA prescription or dispensation we can read."""


@dataclass(frozen=True)
class Problem:
    location: str  # XPath in the document, or "line N" for a form
    message: str
    layer: str = "document"

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass
class ParsedDocument:
    kind: Kind
    prescription: Prescription | None = None
    dispensation: Dispensation | None = None
    problems: list[Problem] = field(default_factory=list)
    # XPath of each line's entry, in order: own-rules problems point there.
    line_locations: list[str] = field(default_factory=list)


def document_kind(root: etree._Element) -> Kind:
    if root.tag != f"{{{cda.NS}}}ClinicalDocument":
        raise DocumentError("not a CDA document (the root element is not ClinicalDocument)")
    templates = {str(t.get("root")) for t in root.findall(f"{{{cda.NS}}}templateId")}
    if cda.PRESCRIPTION_TEMPLATE in templates:
        return "prescription"
    if cda.DISPENSATION_TEMPLATE in templates:
        return "dispensation"
    raise DocumentError(
        "neither a prescription (eP-MED-DM, templateId 1.2.250.1.213.1.1.1.39) nor a"
        " dispensation (eDISP-MED, templateId 1.2.250.1.213.1.1.1.54)"
    )


def parse_document(data: bytes) -> ParsedDocument:
    tree = parse_xml(data, what="CDA document")
    return parse_tree(tree.getroot())


def parse_prescription(data: bytes) -> Prescription:
    """The prescription in a CDA document (problems are tolerated; see parse_document)."""
    parsed = parse_document(data)
    if parsed.prescription is None:
        raise DocumentError(f"this CDA document is a {parsed.kind}, not a prescription")
    return parsed.prescription


def parse_dispensation(data: bytes) -> Dispensation:
    """The dispensation in a CDA document (problems are tolerated; see parse_document)."""
    parsed = parse_document(data)
    if parsed.dispensation is None:
        raise DocumentError(f"this CDA document is a {parsed.kind}, not a dispensation")
    return parsed.dispensation


def parse_tree(root: etree._Element) -> ParsedDocument:
    kind = document_kind(root)
    reader = _Reader(root)
    if kind == "prescription":
        prescription, locations = reader.prescription()
        return ParsedDocument(kind, prescription=prescription, problems=reader.problems,
                              line_locations=locations)
    dispensation, locations = reader.dispensation()
    return ParsedDocument(kind, dispensation=dispensation, problems=reader.problems,
                          line_locations=locations)


@lru_cache(maxsize=512)
def _xpath(path: str) -> etree.XPath:
    """Compiled once per process: compiling dominates evaluating on documents this small."""
    return etree.XPath(path, namespaces=XP)


def _text(el: etree._Element | None) -> str:
    """Text of a narrative element, <br/> read as a space, whitespace collapsed."""
    if el is None:
        return ""
    parts: list[str] = []

    def walk(e: etree._Element) -> None:
        if e.text:
            parts.append(e.text)
        for child in e:
            if isinstance(child.tag, str):
                if etree.QName(child).localname == "br":
                    parts.append(" ")
                else:
                    walk(child)
            if child.tail:
                parts.append(child.tail)

    walk(el)
    return " ".join("".join(parts).split())


def _ii(el: etree._Element | None) -> str | None:
    """An instance identifier as text: root, or root^extension."""
    if el is None or el.get("root") is None:
        return None
    ext = el.get("extension")
    return f"{el.get('root')}^{ext}" if ext else el.get("root")


class _Reader:
    def __init__(self, root: etree._Element) -> None:
        self.root = root
        self.problems: list[Problem] = []
        self.narrative: dict[str, etree._Element] = {
            str(e.get("ID")): e for e in self.x(root, "//c:text//*[@ID]")
        }

    # helpers
    def x(self, context: etree._Element, path: str) -> list[etree._Element]:
        result = _xpath(path)(context)
        assert isinstance(result, list)
        return [r for r in result if isinstance(r, etree._Element)]

    def first(self, context: etree._Element, path: str) -> etree._Element | None:
        found = self.x(context, path)
        return found[0] if found else None

    def where(self, el: etree._Element) -> str:
        """/ClinicalDocument/component/structuredBody/component[2]/section/entry[1]/...: an
        XPath a person can follow (lxml's getpath writes /*/*[26] for namespaced elements)."""
        steps: list[str] = []
        node: etree._Element | None = el
        while node is not None:
            name = etree.QName(node).localname
            parent = node.getparent()
            if parent is None:
                steps.append(name)
            else:
                same = [c for c in parent if isinstance(c.tag, str) and c.tag == node.tag]
                steps.append(name if len(same) == 1 else f"{name}[{same.index(node) + 1}]")
            node = parent
        return "/" + "/".join(reversed(steps))

    def problem(self, where: etree._Element | str, message: str) -> None:
        location = where if isinstance(where, str) else self.where(where)
        self.problems.append(Problem(location, message))

    def resolve(self, el: etree._Element | None) -> str:
        """Text of an ED element: its reference into the narrative when it has one."""
        if el is None:
            return ""
        ref = self.first(el, "c:reference")
        own = _text(el)
        if ref is not None and ref.get("value"):
            target = self.narrative.get(str(ref.get("value")).lstrip("#"))
            if target is not None:
                return _text(target)
        return own

    def when(self, el: etree._Element | None, what: str) -> dt.datetime | dt.date | None:
        if el is None or el.get("value") is None:
            return None
        try:
            return cda.parse_ts(str(el.get("value")))
        except ValueError:
            self.problem(el, f"{what}: {el.get('value')!r} is not a valid date/time")
            return None

    def datetime_of(self, el: etree._Element | None, what: str) -> dt.datetime:
        value = self.when(el, what)
        if value is None:
            self.problem(el if el is not None else "/ClinicalDocument", f"{what} is missing")
            return dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        if isinstance(value, dt.datetime):
            return value
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)

    def decimal(self, el: etree._Element | None, attr: str, what: str) -> Decimal | None:
        if el is None or el.get(attr) is None:
            return None
        try:
            return Decimal(str(el.get(attr)))
        except InvalidOperation:
            self.problem(el, f"{what}: {el.get(attr)!r} is not a number")
            return None

    # header
    def patient(self) -> PatientInfo:
        role = self.first(self.root, "c:recordTarget/c:patientRole")
        if role is None:
            self.problem("/ClinicalDocument", "the patient (recordTarget/patientRole) is missing")
            return PatientInfo("", OID_INS_NIR, "", "", "", dt.date(1970, 1, 1))
        ins_el = None
        for el in self.x(role, "c:id"):
            if el.get("root") in INS_OIDS:
                ins_el = el
                break
        if ins_el is None:
            self.problem(role, "the patient has no INS (id with root 1.2.250.1.213.1.4.8/9/10/11)")
        person = self.first(role, "c:patient")
        name = self.first(person, "c:name") if person is not None else None
        family = given = ""
        used = None
        if name is not None:
            fam = self.first(name, "c:family[@qualifier='BR']")
            family = _text(fam if fam is not None else self.first(name, "c:family"))
            g = self.first(name, "c:given[not(@qualifier)]")
            given = _text(g if g is not None else self.first(name, "c:given[@qualifier='BR']"))
            cl = self.first(name, "c:family[@qualifier='CL']")
            used = _text(cl) or None
        if not family:
            self.problem(role, "the patient's birth name is missing")
        sex_el = self.first(person, "c:administrativeGenderCode") if person is not None else None
        birth = self.when(self.first(person, "c:birthTime") if person is not None else None,
                          "birth date")
        if birth is None:
            self.problem(role, "the patient's birth date is missing")
        place = self.first(role, "c:patient/c:birthplace/c:place/c:addr/c:county")
        return PatientInfo(
            ins=str(ins_el.get("extension") or "") if ins_el is not None else "",
            ins_oid=str(ins_el.get("root")) if ins_el is not None else OID_INS_NIR,
            birth_name=family,
            given_names=given,
            sex=str(sex_el.get("code") or "") if sex_el is not None else "",
            birth_date=birth if isinstance(birth, dt.date) and not isinstance(birth, dt.datetime)
            else (birth.date() if isinstance(birth, dt.datetime) else dt.date(1970, 1, 1)),
            birth_place=_text(place) or None,
            used_name=used,
            address=self.address(self.first(role, "c:addr")),
        )

    def address(self, addr: etree._Element | None) -> str | None:
        if addr is None or addr.get("nullFlavor"):
            return None
        lines = [_text(e) for e in self.x(addr, "c:streetAddressLine")]
        if lines:
            return "\n".join(lines)
        return _text(addr) or None

    def telecoms(self, el: etree._Element) -> tuple[str | None, str | None]:
        phone = email = None
        for t in self.x(el, "c:telecom"):
            value = str(t.get("value") or "")
            if value.startswith("tel:") and phone is None:
                phone = value[4:]
            elif value.startswith("mailto:") and email is None:
                email = value[7:]
        return phone, email

    def author(self, base: etree._Element | None, what: str) -> AuthorInfo:
        if base is None:
            self.problem("/ClinicalDocument", f"the {what} (author/assignedAuthor) is missing")
            return AuthorInfo("", "", "", "")
        id_el = self.first(base, "c:id")
        national_id = str(id_el.get("extension") or "") if id_el is not None else ""
        if not national_id:
            self.problem(base, f"the {what} has no national identifier (RPPS)")
        code = self.first(base, "c:code")
        profession, specialty = "", None
        if code is not None:
            value = str(code.get("code") or "")
            value = value[4:] if value.startswith("G15_") else value
            profession, _, spec = value.partition("/")
            specialty = spec or None
        else:
            self.problem(base, f"the {what}'s profession (code) is missing")
        person = self.first(base, "c:assignedPerson/c:name")
        given = family = ""
        title = None
        if person is not None:
            given = _text(self.first(person, "c:given"))
            family = _text(self.first(person, "c:family"))
            title = _text(self.first(person, "c:prefix")) or None
        phone, email = self.telecoms(base)
        org = self.first(base, "c:representedOrganization")
        structure = None
        if org is not None:
            org_id = self.first(org, "c:id")
            if org_id is not None and org_id.get("extension"):
                org_phone, _ = self.telecoms(org)
                structure = StructureInfo(
                    national_id=str(org_id.get("extension")),
                    name=_text(self.first(org, "c:name")),
                    address=self.address(self.first(org, "c:addr")),
                    phone=org_phone,
                )
        return AuthorInfo(national_id=national_id, family_name=family, given_name=given,
                          profession=profession, specialty=specialty, title=title, phone=phone,
                          email=email, structure=structure)

    def header_ids(self) -> tuple[str | None, str | None, int]:
        doc_id = _ii(self.first(self.root, "c:id"))
        if doc_id is None:
            self.problem("/ClinicalDocument", "the document id is missing")
        set_id = _ii(self.first(self.root, "c:setId"))
        version_el = self.first(self.root, "c:versionNumber")
        version = 1
        if version_el is not None:
            try:
                version = int(str(version_el.get("value")))
            except ValueError:
                self.problem(version_el, "versionNumber is not a whole number")
        return doc_id, set_id, version

    def notes(self) -> str | None:
        el = self.narrative.get("notes")
        return _text(el) or None if el is not None else None

    def product(self, material: etree._Element | None, ref_text: str) -> Product:
        if material is None:
            return Product(label=ref_text)
        code = self.first(material, "c:code")
        cis = cip13 = None
        magistral = False
        if code is not None:
            system = code.get("codeSystem")
            if system == OID_CIS:
                cis = code.get("code")
            elif system == OID_CIP13:
                cip13 = code.get("code")
            magistral = code.get("nullFlavor") == "NA"
            for tr in self.x(code, "c:translation"):
                if tr.get("codeSystem") == OID_CIP13 and cip13 is None:
                    cip13 = tr.get("code")
        name = self.first(material, "c:name")
        label = _text(name) if name is not None and not name.get("nullFlavor") else ""
        if not label and code is not None:
            label = self.resolve(self.first(code, "c:originalText")) or \
                str(code.get("displayName") or "")
        if not label and not ref_text:
            self.problem(material, "the medicine's name is missing (no name, and no narrative"
                         " text the code refers to)")
            label = "Préparation magistrale" if magistral else ""
        atc = self.first(material, ".//pharm:code[@codeSystem='2.16.840.1.113883.6.73']")
        form = self.first(material, "pharm:formCode")
        return Product(
            label=label or ref_text,
            cis=str(cis) if cis else None,
            cip13=str(cip13) if cip13 else None,
            atc=str(atc.get("code")) if atc is not None else None,
            form=str(form.get("displayName")) if form is not None and form.get("displayName")
            else None,
            magistral=magistral,
        )

    # prescription
    def prescription(self) -> tuple[Prescription, list[str]]:
        doc_id, set_id, version = self.header_ids()
        date = self.datetime_of(self.first(self.root, "c:effectiveTime"), "document date")
        event = self.first(self.root, f"c:documentationOf/c:serviceEvent[c:id/@root="
                                      f"'{OID_PRESCRIPTION_ID}']")
        if event is None:
            event = self.first(self.root, "c:documentationOf/c:serviceEvent[not(@classCode="
                                          "'INFO')]")
        identifier = None
        validity_end = None
        if event is not None:
            id_el = self.first(event, f"c:id[@root='{OID_PRESCRIPTION_ID}']")
            identifier = str(id_el.get("extension")) if id_el is not None and \
                id_el.get("extension") else None
            high = self.when(self.first(event, "c:effectiveTime/c:high"), "end of validity")
            if isinstance(high, dt.datetime):
                validity_end = high.date()
            elif isinstance(high, dt.date):
                validity_end = high
        if identifier is None:
            self.problem(event if event is not None else "/ClinicalDocument",
                         "the e-prescription identifier (documentationOf/serviceEvent/id root"
                         f" {OID_PRESCRIPTION_ID}) is missing")
        flags = {str(c.get("code")) for c in
                 self.x(self.root, "c:documentationOf/c:serviceEvent/c:code")}
        section = self.first(self.root, f"c:component/c:structuredBody/c:component/c:section"
                                        f"[c:templateId/@root='{cda.SECTION_PRESCRIPTION}']")
        lines: list[PrescriptionLine] = []
        locations: list[str] = []
        if section is None:
            self.problem("/ClinicalDocument", "the medicines section (FR-Prescription-medicaments,"
                                              f" {cda.SECTION_PRESCRIPTION}) is missing")
        else:
            entries = self.x(section, f"c:entry/c:substanceAdministration[c:templateId/@root="
                                      f"'{cda.PRESCRIBED_ITEM}']")
            if not entries:
                self.problem(section, "the prescription has no medicine line")
            for sa in entries:
                lines.append(self.prescription_line(sa, len(lines) + 1))
                locations.append(self.where(sa))
        title = self.first(self.root, "c:title")
        return Prescription(
            patient=self.patient(),
            author=self.author(self.first(self.root, "c:author/c:assignedAuthor"), "prescriber"),
            date=date,
            lines=tuple(lines),
            validity_end=validity_end,
            identifier=identifier,
            bizone=cda.FLAG_BIZONE in flags,
            exception_drugs=cda.FLAG_EXCEPTION in flags,
            secured=cda.FLAG_SECURED in flags,
            document_id=doc_id,
            set_id=set_id,
            version=version,
            title=_text(title) if title is not None else Prescription.title,
            notes=self.notes(),
        ), locations

    def prescription_line(self, sa: etree._Element, n: int) -> PrescriptionLine:
        ivl = self.first(sa, "c:effectiveTime[@xsi:type='IVL_TS' or not(@xsi:type)]")
        duration = None
        if ivl is not None:
            width = self.first(ivl, "c:width")
            if width is not None and width.get("value"):
                d = self.decimal(width, "value", f"line {n} duration")
                unit = width.get("unit") or "d"
                factor = {"d": 1, "wk": 7, "mo": 30}.get(str(unit), 1)
                duration = int(d * factor) if d is not None else None
            else:
                low = self.when(self.first(ivl, "c:low"), f"line {n} start")
                high = self.when(self.first(ivl, "c:high"), f"line {n} end")
                if low is not None and high is not None:
                    lo = low.date() if isinstance(low, dt.datetime) else low
                    hi = high.date() if isinstance(high, dt.datetime) else high
                    duration = (hi - lo).days + 1
        # Split dosing (official example): the first sub-administration carries dose/frequency.
        dosing = self.first(sa, "c:entryRelationship[@typeCode='COMP']/c:substanceAdministration")
        frequency = self.frequency(sa) or (self.frequency(dosing) if dosing is not None else None)
        dose_el = self.first(sa, "c:doseQuantity")
        if dose_el is None and dosing is not None:
            dose_el = self.first(dosing, "c:doseQuantity")
        dose = None
        if dose_el is not None:
            q_el = dose_el if dose_el.get("value") else self.first(dose_el, "c:low")
            q = self.decimal(q_el, "value", f"line {n} dose")
            if q is not None and q_el is not None:
                dose = Dose(quantity=q, unit=str(q_el.get("unit") or "1"))
        repeat = self.first(sa, "c:repeatNumber")
        renewals = 0
        if repeat is not None:
            r = self.decimal(repeat, "value", f"line {n} renewals")
            renewals = int(r) if r is not None else 0
        route = self.first(sa, "c:routeCode")
        supply = self.first(sa, "c:entryRelationship/c:supply[@moodCode='RQO']/c:quantity")
        quantity = self.decimal(supply, "value", f"line {n} quantity")
        unit_code = str(supply.get("unit") or "") if supply is not None else ""
        instructions = self.first(sa, "c:entryRelationship/c:act[c:code/@code='PINSTRUCT']/c:text")
        material = self.first(sa, "c:consumable/c:manufacturedProduct/c:manufacturedMaterial")
        product = self.product(material, self.resolve(self.first(sa, "c:text")))
        if not product.label and not product.cis and not product.cip13:
            self.problem(sa, f"line {n}: the medicine is neither coded nor named")
        substitutable, refusal = True, None
        sub = self.first(sa, f"c:entryRelationship/c:act[c:templateId/@root="
                             f"'{cda.SUBSTITUTION_PERMISSION}']/c:code")
        if sub is None:
            self.problem(sa, f"line {n}: the substitution permission is missing")
        elif sub.get("code") == "N":
            substitutable = False
            refusal = _refusal(self.resolve(self.first(sub, "c:originalText")))
        ald_el = self.first(sa, f"c:entryRelationship/c:observation[c:templateId/@root="
                                f"'{cda.ALD_OBSERVATION}']/c:value")
        if ald_el is None:
            self.problem(sa, f"line {n}: 'related to ALD' (FR-En-rapport-avec-ALD) is missing")
        return PrescriptionLine(
            product=product,
            dose=dose,
            frequency=frequency,
            dosage_text=self.resolve(instructions) or None if instructions is not None else None,
            duration_days=duration,
            quantity=quantity,
            quantity_unit=cda.PACKAGING_LABEL.get(unit_code, unit_code or "boîte"),
            renewals=renewals,
            substitutable=substitutable,
            substitution_refusal=refusal,
            ald=ald_el is not None and ald_el.get("value") == "true",
            route=str(route.get("code")) if route is not None and route.get("code") else None,
            line_id=_ii(self.first(sa, "c:id")),
        )

    def frequency(self, sa: etree._Element) -> Frequency | None:
        period = self.first(sa, ".//c:effectiveTime[@xsi:type='PIVL_TS']/c:period | "
                                ".//c:comp[@xsi:type='PIVL_TS']/c:period")
        if period is None:
            return None
        value = self.decimal(period, "value", "frequency")
        if value is None or value <= 0:
            return None
        return cda.period_frequency(value, str(period.get("unit") or "d"))

    # dispensation
    def dispensation(self) -> tuple[Dispensation, list[str]]:
        doc_id, set_id, version = self.header_ids()
        date = self.datetime_of(self.first(self.root, "c:effectiveTime"), "document date")
        pid_el = self.first(self.root, f"c:documentationOf/c:serviceEvent/c:id[@root="
                                       f"'{OID_PRESCRIPTION_ID}']")
        prescription_id = str(pid_el.get("extension") or "") if pid_el is not None else ""
        if not prescription_id:
            self.problem("/ClinicalDocument", "the e-prescription identifier of the dispensed"
                         f" prescription (serviceEvent/id root {OID_PRESCRIPTION_ID}) is missing")
        order = _ii(self.first(self.root, "c:inFulfillmentOf/c:order/c:id"))
        if order is None:
            self.problem("/ClinicalDocument", "the prescription document reference"
                                              " (inFulfillmentOf/order/id) is missing")
        section = self.first(self.root, f"c:component/c:structuredBody/c:component/c:section"
                                        f"[c:templateId/@root='{cda.SECTION_DISPENSATION}']")
        lines: list[DispensedLine] = []
        locations: list[str] = []
        if section is None:
            self.problem("/ClinicalDocument", "the dispensed medicines section"
                                              f" ({cda.SECTION_DISPENSATION}) is missing")
        else:
            for supply in self.x(section, f"c:entry/c:supply[c:templateId/@root="
                                          f"'{cda.DISPENSED_ITEM}']"):
                lines.append(self.dispensed_line(supply, len(lines) + 1))
                locations.append(self.where(supply))
            if not lines:
                self.problem(section, "the dispensation has no dispensed line")
        return Dispensation(
            prescription_id=prescription_id,
            prescription_document_id=order or "",
            patient=self.patient(),
            author=self.author(self.first(self.root, "c:author/c:assignedAuthor"), "pharmacist"),
            date=date,
            lines=tuple(lines),
            document_id=doc_id,
            set_id=set_id,
            version=version,
            notes=self.notes(),
        ), locations

    def dispensed_line(self, supply: etree._Element, n: int) -> DispensedLine:
        item = self.first(supply, f"c:entryRelationship[@typeCode='REFR']/c:substanceAdministration"
                                  f"[c:templateId/@root='{cda.PRESCRIPTION_ITEM_REF}']/c:id")
        line_ref = str(n)
        if item is not None:
            line_ref = str(item.get("extension") or item.get("root") or n)
        quantity = self.decimal(self.first(supply, "c:quantity"), "value", f"line {n} quantity")
        if quantity is None:
            self.problem(supply, f"line {n}: the dispensed quantity is missing")
        material = self.first(supply, "c:product/c:manufacturedProduct/c:manufacturedMaterial")
        product = self.product(material, self.resolve(self.first(supply, "c:text")))
        sub = self.first(supply, f"c:entryRelationship/c:act[c:templateId/@root="
                                 f"'{cda.SUBSTITUTION_DONE}']/c:code")
        substituted = sub is not None and sub.get("code") not in (None, "N")
        reason = None
        if sub is not None and self.first(sub, "c:originalText") is not None:
            reason = self.resolve(self.first(sub, "c:originalText")) or None
        not_delivered = adjustment = None
        note = self.first(supply, "c:entryRelationship/c:act[c:code/@code='FINSTRUCT']/c:text")
        for part in (_text(note) if note is not None else "").split(" | "):
            m = re.match(r"(Non délivré|Adaptation) : (.*)", part)
            if m and m.group(1) == "Non délivré":
                not_delivered = m.group(2)
            elif m:
                adjustment = m.group(2)
        return DispensedLine(
            line_ref=line_ref,
            product=product,
            quantity=quantity if quantity is not None else Decimal(0),
            substituted=substituted,
            substitution_reason=reason,
            adjustment_reason=adjustment,
            not_delivered_reason=not_delivered,
        )


def _refusal(text: str) -> SubstitutionRefusal | None:
    """MTE / EFG / CIF from a code or from the narrative ('Marge thérapeutique étroite')."""
    upper = text.upper()
    for reason in SubstitutionRefusal:
        if re.search(rf"\b{reason.value}\b", upper):
            return reason
    lowered = text.lower()
    for code, words in cda.SUBSTITUTION_REASONS.items():
        if words.lower() in lowered:
            return SubstitutionRefusal(code)
    if "marge" in lowered:
        return SubstitutionRefusal.MTE
    if "enfant" in lowered:
        return SubstitutionRefusal.EFG
    if "excipient" in lowered:
        return SubstitutionRefusal.CIF
    return None

