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
    DispensingKind,
    Dose,
    Frequency,
    Moment,
    PatientInfo,
    Phase,
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
Severity = Literal["error", "warning", "info"]


class DocumentError(GatewayError):
    """Not a CDA prescription or dispensation we can read."""


@dataclass(frozen=True)
class Problem:
    """Something a layer found. `severity`: "error" (the official specification makes the
    document wrong: the national validators refuse it), "warning" (worth a look, never a
    refusal), "info" (how the document was read)."""

    location: str  # XPath in the document, or "line N" for a form
    message: str
    layer: str = "document"
    severity: Severity = "warning"

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

    def problem(self, where: etree._Element | str, message: str,
                severity: Severity = "warning") -> None:
        location = where if isinstance(where, str) else self.where(where)
        self.problems.append(Problem(location, message, severity=severity))

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

    def document_date(self) -> tuple[dt.datetime, bool]:
        """The document's effectiveTime, and whether it gives the day alone."""
        el = self.first(self.root, "c:effectiveTime")
        day_only = el is not None and re.fullmatch(r"\s*\d{8}\s*", el.get("value") or "")
        return self.datetime_of(el, "document date"), bool(day_only)

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
            # The title is the suffix (JDV_J246: DR, PR...); documents written before the
            # CI-SIS rule had it as a prefix, where the civility (M, MME) belongs.
            for part in ("c:suffix", "c:prefix"):
                title_code = cda.title_code(_text(self.first(person, part)))
                if title_code is not None:
                    title = cda.TITLES[title_code]
                    break
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
        date, day_only = self.document_date()
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
            day_only=day_only,
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
        phases = self.posology(sa, f"line {n}")
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
        self.not_kept(sa, n)
        return PrescriptionLine(
            product=product,
            phases=phases,
            dosage_text=self.resolve(instructions) or None if instructions is not None else None,
            quantity=quantity,
            quantity_unit=cda.PACKAGING_LABEL.get(unit_code, unit_code or "boîte"),
            renewals=renewals,
            substitutable=substitutable,
            substitution_refusal=refusal,
            ald=ald_el is not None and ald_el.get("value") == "true",
            route=str(route.get("code")) if route is not None and route.get("code") else None,
            line_id=_ii(self.first(sa, "c:id")),
        )

    def not_kept(self, sa: etree._Element, n: int) -> None:
        """Say what the line holds that the gateway's model does not (the document keeps it;
        the registry, the PDF and the reports will not show it)."""
        for path, what in _NOT_KEPT:
            for el in self.x(sa, path):
                text = self.resolve(el) if etree.QName(el).localname in ("text", "criterion") \
                    else ""
                if text.strip(" -") or etree.QName(el).localname not in ("text", "criterion"):
                    self.problem(el, f"line {n}: {what} is not kept by the gateway's model",
                                 "info")
                    break

    # posology
    def posology(self, sa: etree._Element, what: str) -> tuple[Phase, ...]:
        """The phases of a substanceAdministration's posology: its own timing and dose (normal
        dosing), or its subordinate administrations (tapered doses: one phase per
        sequenceNumber, in order; split dosing: the times of day of one phase). What the
        model cannot hold is reported, never changed silently."""
        interval = self.first(sa, "c:effectiveTime[(@xsi:type='IVL_TS' or not(@xsi:type))"
                                  " and not(@operator='A')]")
        start, total = self.interval(interval, what)
        subs = self.x(sa, "c:entryRelationship[@typeCode='COMP']/c:substanceAdministration")
        if not subs:
            timing = self.timing(self.x(sa, "c:effectiveTime[@operator='A']"), what)
            phase = _phase(self.dose(self.first(sa, "c:doseQuantity"), what),
                           timing.frequency, tuple(timing.moments), total)
            return (phase,) if phase.structured else ()
        templates = {str(t.get("root")) for t in self.x(sa, "c:templateId")}
        groups: dict[str, list[etree._Element]] = {}
        for k, sub in enumerate(subs, start=1):
            seq = self.first(sub, "../c:sequenceNumber")
            key = str(seq.get("value")) if seq is not None and seq.get("value") else \
                ("1" if cda.MODE_SPLIT in templates and cda.MODE_TAPERED not in templates
                 else str(k))
            groups.setdefault(key, []).append(sub)
        ordered = sorted(groups.items(), key=lambda kv: _seq_key(kv[0]))
        phases: list[Phase] = []
        starts: list[dt.date | None] = []
        for k, (_, members) in enumerate(ordered, start=1):
            where = f"{what} phase {k}"
            moments: list[Moment] = []
            at: list[Dose | None] = []  # the dose given with each of `moments`
            frequency: Frequency | None = None
            dose: Dose | None = None  # a dose given without a time of day
            p_start: dt.date | None = None
            days: int | None = None
            for sub in members:
                times = self.x(sub, "c:effectiveTime")
                s_interval, comps = None, []
                for t in times:
                    kind = t.get(f"{{{cda.XSI}}}type")
                    if kind == "IVL_TS" or (kind is None and t.get("operator") != "A"):
                        s_interval = t
                    elif kind == "SXPR_TS":
                        for comp in self.x(t, "c:comp"):
                            if comp.get(f"{{{cda.XSI}}}type") == "IVL_TS":
                                s_interval = comp
                            else:
                                comps.append(comp)
                    else:
                        comps.append(t)
                if s_interval is not None:
                    p_start, days = self.interval(s_interval, where)
                timing = self.timing(comps, where)
                if timing.frequency is not None:
                    if frequency is not None and frequency != timing.frequency:
                        self.problem(sub, f"{where}: two frequencies in one phase; only the"
                                     " first is kept")
                    frequency = frequency or timing.frequency
                d = self.dose(self.first(sub, "c:doseQuantity"), where)
                for m in timing.moments:
                    if m not in moments:
                        moments.append(m)
                        at.append(d)
                    elif d != at[moments.index(m)]:
                        self.problem(sub, f"{where}: two doses at {cda.moment_words(m)}; only"
                                     " the first is kept")
                if not timing.moments:
                    if d is not None and dose is not None and d != dose:
                        self.problem(sub, f"{where}: two doses without a time of day in one"
                                     " phase; only the first is kept")
                    dose = dose or d
            phases.append(self.split(sa, where, dose, frequency, moments, at, days))
            starts.append(p_start)
        self.check_sequence(sa, what, start, phases, starts)
        return tuple(phases)

    def split(self, sa: etree._Element, where: str, dose: Dose | None,
              frequency: Frequency | None, moments: list[Moment], at: list[Dose | None],
              days: int | None) -> Phase:
        """A phase from its subordinates: one dose for every time of day, or a dose per time
        of day (split dosing) when they differ. What the model cannot hold (a time of day
        without its dose beside others with theirs, a dose beside them without a time) is
        reported, and the first dose is kept for all."""
        given = [d for d in at if d is not None]
        if not given:
            return _phase(dose, frequency, tuple(moments), days)
        if all(d == given[0] for d in at) and dose in (None, given[0]):
            return _phase(given[0], frequency, tuple(moments), days)
        if None in at or dose is not None:
            self.problem(sa, f"{where}: doses given for some times of day only cannot be held"
                         " by the gateway's model; the first dose is kept for all, the"
                         " narrative says the rest")
            return _phase(dose or given[0], frequency, tuple(moments), days)
        return _phase(None, frequency, tuple(moments), days,
                      tuple(d for d in at if d is not None))

    def check_sequence(self, sa: etree._Element, what: str, start: dt.date | None,
                       phases: list[Phase], starts: list[dt.date | None]) -> None:
        """The model's phases follow one another from the line's start: say so when the
        document's do not (a gap, an overlap, another start)."""
        day = start
        for k, (ph, s) in enumerate(zip(phases, starts, strict=True), start=1):
            if s is not None and day is not None and s != day:
                self.problem(sa, f"{what}: phase {k} starts on {s.isoformat()}, not"
                             f" {day.isoformat()} (right after the previous one); the gateway"
                             " keeps the phases one after the other")
            base = s or day
            day = base + dt.timedelta(days=ph.duration_days) if base and ph.duration_days \
                else None

    def interval(self, el: etree._Element | None, what: str
                 ) -> tuple[dt.date | None, int | None]:
        """(start, days) of an IVL_TS: low + width, or low..high (both days counted)."""
        if el is None:
            return None, None
        low = _as_date(self.when(self.first(el, "c:low"), f"{what} start"))
        width = self.first(el, "c:width")
        if width is not None and width.get("value"):
            d = self.decimal(width, "value", f"{what} duration")
            unit = str(width.get("unit") or "d")
            factor = {"d": 1, "wk": 7}.get(unit)
            if d is None:
                return low, None
            if factor is None or d * factor != int(d * factor):
                self.problem(el, f"{what}: a duration of {cda.num(d)} {unit} is not a whole"
                             " number of days; the gateway keeps durations in days and leaves"
                             " it out")
                return low, None
            return low, int(d * factor)
        high = _as_date(self.when(self.first(el, "c:high"), f"{what} end"))
        if low is not None and high is not None:
            if high < low:
                self.problem(el, f"{what}: the end {high} is before the start {low}")
                return low, None
            return low, (high - low).days + 1
        return low, None

    def timing(self, elements: list[etree._Element], what: str) -> _Timing:
        """Frequency and times of day of PIVL_TS / EIVL_TS / SXPR_TS elements (intersected or,
        operator I, united: the union of times of day is the list of moments)."""
        out = _Timing()
        for el in elements:
            kind = el.get(f"{{{cda.XSI}}}type")
            if kind == "SXPR_TS":
                inner = self.timing([c for c in self.x(el, "c:comp")
                                     if c.get(f"{{{cda.XSI}}}type") != "IVL_TS"], what)
                out.merge(inner, self, el, what)
            elif kind == "PIVL_TS":
                self.pivl(el, what, out)
            elif kind == "EIVL_TS":
                event = self.first(el, "c:event")
                code = str(event.get("code") or "") if event is not None else ""
                if not code:
                    self.problem(el, f"{what}: an event-related time without its event")
                    continue
                if self.first(el, "c:offset") is not None:
                    self.problem(el, f"{what}: the offset from the event ({code}) is not kept"
                                 " by the gateway's model")
                out.add_moment(Moment(event=code))
            elif kind not in ("IVL_TS", None):
                self.problem(el, f"{what}: timing of type {kind} is not read")
        return out

    def pivl(self, el: etree._Element, what: str, out: _Timing) -> None:
        period = self.first(el, "c:period")
        value = self.decimal(period, "value", f"{what} frequency")
        unit = str(period.get("unit") or "d") if period is not None else "d"
        low = self.first(el, "c:phase/c:low")
        clock = None
        if low is not None and low.get("value"):
            when = self.when(low, f"{what} time of day")
            if isinstance(when, dt.datetime):
                clock = when.time().replace(tzinfo=None)
        if clock is not None:
            out.add_moment(Moment(time=clock))
            if value is not None and value > 0 and (value, unit) not in _DAILY:
                out.set_frequency(cda.period_frequency(value, unit), self, el, what)
            return
        if value is None or value <= 0:
            self.problem(el, f"{what}: a periodic time without its period")
            return
        out.set_frequency(cda.period_frequency(value, unit), self, el, what)

    def dose(self, el: etree._Element | None, what: str) -> Dose | None:
        if el is None or el.get("nullFlavor"):
            return None
        low_el = el if el.get("value") else self.first(el, "c:low")
        high_el = None if el.get("value") else self.first(el, "c:high")
        low = self.decimal(low_el, "value", f"{what} dose")
        high = self.decimal(high_el, "value", f"{what} dose")
        if low is None:
            if high is None:
                return None
            low, low_el = high, high_el
        assert low_el is not None
        unit = str(low_el.get("unit") or "1")
        if high_el is not None and str(high_el.get("unit") or "1") != unit:
            self.problem(el, f"{what}: the dose range mixes units ({unit},"
                         f" {high_el.get('unit')}); only its low end is kept")
            high = None
        return Dose(quantity=low, unit=unit, high=None if high in (None, low) else high)

    # dispensation
    def dispensation(self) -> tuple[Dispensation, list[str]]:
        doc_id, set_id, version = self.header_ids()
        date, day_only = self.document_date()
        # The prescription: by its document id (inFulfillmentOf/order/id, the official link)
        # and by its e-prescription identifier (a second order id here; serviceEvent/id in the
        # gateway's documents before 2024.01 encoding fixes).
        pid_el = self.first(self.root, f"(c:inFulfillmentOf/c:order/c:id | c:documentationOf/"
                                       f"c:serviceEvent/c:id)[@root='{OID_PRESCRIPTION_ID}']")
        prescription_id = str(pid_el.get("extension") or "") if pid_el is not None else ""
        order = _ii(self.first(self.root, f"c:inFulfillmentOf/c:order/c:id[not(@root="
                                          f"'{OID_PRESCRIPTION_ID}')]"))
        if order is None and not prescription_id:
            self.problem("/ClinicalDocument", "the dispensed prescription is not named"
                         " (inFulfillmentOf/order/id: its document id or its e-prescription"
                         " identifier)")
        elif not prescription_id:
            self.problem("/ClinicalDocument", "the e-prescription identifier of the dispensed"
                         " prescription is not in the document: it is found from the"
                         " prescription's document id (inFulfillmentOf/order/id)", "info")
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
            author=self.author(self.pharmacist(), "pharmacist"),
            date=date,
            day_only=day_only,
            lines=tuple(lines),
            document_id=doc_id,
            set_id=set_id,
            version=version,
            notes=self.notes(),
        ), locations

    def pharmacist(self) -> etree._Element | None:
        """Who dispensed: the serviceEvent's performer (the official model, where the author
        may be a system such as the Dossier Pharmaceutique, or the pharmacy), else the
        document's author that is a person, else its first author."""
        for path in ("c:documentationOf/c:serviceEvent/c:performer/c:assignedEntity"
                     "[c:assignedPerson]", "c:author/c:assignedAuthor[c:assignedPerson]",
                     "c:author/c:assignedAuthor"):
            found = self.first(self.root, path)
            if found is not None:
                return found
        return None

    def dispensed_line(self, supply: etree._Element, n: int) -> DispensedLine:
        """A dispensed line and its kind: quantity 0 is not delivered; a substitution act
        (code other than N) substituted; a part-fill supply code partial; an adapted posology
        (FR-Traitement) adapted; else delivered. The reason is the pharmacist's notes after the
        kind's own words ("Non délivré : rupture de stock"), or the substitution's reason."""
        item = self.first(supply, f"c:entryRelationship[@typeCode='REFR']/c:substanceAdministration"
                                  f"[c:templateId/@root='{cda.PRESCRIPTION_ITEM_REF}']/c:id")
        line_ref = str(n)
        if item is not None:
            line_ref = str(item.get("extension") or item.get("root") or n)
        q_el = self.first(supply, "c:quantity")
        quantity = self.decimal(q_el, "value", f"line {n} quantity")
        if quantity is None:
            self.problem(supply, f"line {n}: the dispensed quantity is missing")
        unit_code = str(q_el.get("unit") or "") if q_el is not None else ""
        material = self.first(supply, "c:product/c:manufacturedProduct/c:manufacturedMaterial")
        product = self.product(material, self.resolve(self.first(supply, "c:text")))
        sub = self.first(supply, f"c:entryRelationship/c:act[c:templateId/@root="
                                 f"'{cda.SUBSTITUTION_DONE}']/c:code")
        code = self.first(supply, "c:code")
        adapted = self.first(supply, f"c:entryRelationship[@typeCode='COMP']/"
                                     f"c:substanceAdministration[c:templateId/@root="
                                     f"'{cda.DOSAGE_INSTRUCTIONS}']")
        note_el = self.first(supply, "c:entryRelationship/c:act[c:code/@code='FINSTRUCT']/c:text")
        note = self.resolve(note_el) if note_el is not None else ""
        kind = DispensingKind.DELIVERED
        refill = False
        if quantity == 0:
            kind = DispensingKind.NOT_DELIVERED
        elif sub is not None and sub.get("code") not in (None, "N"):
            kind = DispensingKind.SUBSTITUTED
        elif code is not None and code.get("code") in cda.PART_FILL_CODES:
            kind = DispensingKind.PARTIAL
        elif adapted is not None or _says(note, DispensingKind.ADAPTED):
            kind = DispensingKind.ADAPTED
        elif _says(note, DispensingKind.PARTIAL):
            kind = DispensingKind.PARTIAL
        if code is not None and str(code.get("code") or "").startswith("RF"):
            refill = True
        reason: str | None = None
        if kind is DispensingKind.SUBSTITUTED:
            reason = self.resolve(self.first(sub, "c:originalText")) or None \
                if sub is not None else None
            if reason == cda.DISPENSING_LABELS[kind]:
                reason = None
        else:
            label = cda.DISPENSING_LABELS[kind]
            if note.startswith(label + " :"):
                reason = note[len(label) + 2:].strip() or None
            elif note and note != label:
                reason = note
        phases = self.posology(adapted, f"line {n} adapted posology") \
            if adapted is not None else ()
        return DispensedLine(
            line_ref=line_ref,
            product=product,
            quantity=quantity if quantity is not None else Decimal(0),
            kind=kind,
            quantity_unit=cda.PACKAGING_LABEL.get(unit_code, "boîte"),
            reason=reason,
            phases=phases,
            refill=refill,
        )


_NOT_KEPT = (
    ("(. | c:entryRelationship/c:substanceAdministration)/c:rateQuantity",
     "the rate of administration (rateQuantity)"),
    ("(. | c:entryRelationship/c:substanceAdministration)/c:maxDoseQuantity",
     "the maximum dose (maxDoseQuantity)"),
    ("c:approachSiteCode", "the site of administration (approachSiteCode)"),
    ("c:precondition/c:criterion/c:text", "the precondition"),
    ("c:entryRelationship/c:act[c:code/@code='FINSTRUCT']/c:text",
     "the instructions to the pharmacist (FR-Instructions-au-dispensateur)"),
)
_DAILY = {(Decimal(1), "d"), (Decimal(24), "h"), (Decimal(1440), "min")}


def _says(note: str, kind: DispensingKind) -> bool:
    """The pharmacist's notes start with the kind's own words ("Adaptation : accord du Dr")."""
    label = cda.DISPENSING_LABELS[kind]
    return note == label or note.startswith(label + " :")


def _phase(dose: Dose | None, frequency: Frequency | None, moments: tuple[Moment, ...],
           days: int | None, doses: tuple[Dose, ...] = ()) -> Phase:
    """A phase in the model's canonical form: with times of day, no frequency when it only
    says "once per time of day" (the times say it)."""
    if moments and frequency is not None and cda.per_day(frequency) == len(moments):
        frequency = None
    return Phase(dose=dose, frequency=frequency, moments=moments, duration_days=days,
                 doses=doses)


def _as_date(value: dt.datetime | dt.date | None) -> dt.date | None:
    return value.date() if isinstance(value, dt.datetime) else value


def _seq_key(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (1 << 30, value)


@dataclass
class _Timing:
    """What timing elements say: how often, and at which times of day."""

    frequency: Frequency | None = None
    moments: list[Moment] = field(default_factory=list)

    def add_moment(self, m: Moment) -> None:
        if m not in self.moments:
            self.moments.append(m)

    def set_frequency(self, f: Frequency, reader: _Reader, el: etree._Element, what: str
                      ) -> None:
        if self.frequency is not None and self.frequency != f:
            reader.problem(el, f"{what}: two frequencies ({cda.frequency_words(self.frequency)},"
                           f" {cda.frequency_words(f)}); only the first is kept")
            return
        self.frequency = f

    def merge(self, other: _Timing, reader: _Reader, el: etree._Element, what: str) -> None:
        for m in other.moments:
            self.add_moment(m)
        if other.frequency is not None:
            self.set_frequency(other.frequency, reader, el, what)


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

