"""Validate a CDA prescription or dispensation in three layers, reporting every problem.

1. `schema`: the CDA schema extended by the CI-SIS (CDA_extended.xsd);
2. `schematron`: the volet's official schematron (eP-MED-DM or eDISP-MED 2024.01), run with lxml's
   XSLT 1.0 ISO schematron after setting queryBinding="xslt" (these files use only XPath 1.0);
3. `rules`: our own rules on the parsed model (INS key, RPPS Luhn, CIS/CIP13 well-formed and known
   to the drug reference when it is loaded, dates and quantities coherent), plus everything the
   parser found missing. This layer needs no external file and always runs.

The schema and schematron come from the official kit that users install (config [documents]);
when a file is absent the layer is reported as skipped, never as passed. Compiling them is slow,
so each process compiles each file once (lru_cache); validation itself is a pure, synchronous
function the servers run in a process pool.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal, Protocol

from lxml import etree, isoschematron  # type: ignore[attr-defined]

from gateway.documents.model import Dispensation, PatientInfo, Prescription, Product
from gateway.documents.parse import DocumentError, Kind, Problem, parse_tree
from gateway.errors import GatewayError, InvalidIdentifier
from gateway.identifiers import adeli, cip13, cis, ins, rpps
from gateway.xmlsafe import parse_xml

SCHEMATRONS = {
    "prescription": "CI-SIS_EP-MED-DM_2024.01.sch",
    "dispensation": "CI-SIS_eDISP-MED_2024.01.sch",
}
SVRL = "{http://purl.oclc.org/dsdl/svrl}"
Status = Literal["passed", "failed", "skipped"]


class DrugLookup(Protocol):
    """What the rules need from the drug reference (gateway.drugs.store.DrugReference)."""

    def is_loaded(self) -> bool: ...
    def by_cis(self, cis: str) -> object | None: ...
    def by_cip13(self, cip13: str) -> object | None: ...


@dataclass
class LayerResult:
    name: str
    status: Status
    problems: list[Problem] = field(default_factory=list)
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"layer": self.name, "status": self.status, "note": self.note,
                "problems": [{"location": p.location, "message": p.message}
                             for p in self.problems]}


@dataclass
class ValidationReport:
    kind: Kind | None
    layers: list[LayerResult]

    @property
    def ok(self) -> bool:
        """True only when every layer ran and passed."""
        return all(layer.status == "passed" for layer in self.layers)

    @property
    def problems(self) -> list[Problem]:
        return [p for layer in self.layers for p in layer.problems]

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "valid": self.ok,
                "layers": [layer.as_dict() for layer in self.layers]}


class KitError(GatewayError):
    """The configured schema or schematron cannot be loaded."""


@lru_cache(maxsize=4)
def load_schema(path: str) -> etree.XMLSchema:
    try:
        return etree.XMLSchema(etree.parse(path))
    except (OSError, etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        raise KitError(f"cannot load the CDA schema {path}: {exc}") from None


@lru_cache(maxsize=8)
def load_schematron(path: str) -> isoschematron.Schematron:
    try:
        tree = etree.parse(path)
        # The files declare xslt2 but use only XPath 1.0; lxml runs XSLT 1.0.
        tree.getroot().set("queryBinding", "xslt")
        return isoschematron.Schematron(tree, validate_schema=False, store_report=True)
    except (OSError, etree.XMLSyntaxError, etree.SchematronParseError, etree.XSLTError) as exc:
        raise KitError(f"cannot load the schematron {path}: {exc}") from None


def _schema_layer(tree: etree._ElementTree, schema_path: Path | None) -> LayerResult:
    if schema_path is None or not schema_path.is_file():
        return LayerResult("schema", "skipped", note=f"CDA schema not found at {schema_path}"
                           " (install the CI-SIS kit; config [documents] cda_schema)")
    schema = load_schema(str(schema_path))
    if schema.validate(tree):
        return LayerResult("schema", "passed")
    problems = [Problem(f"line {e.line}" + (f" {e.path}" if e.path else ""), e.message, "schema")
                for e in schema.error_log]  # type: ignore[attr-defined]
    return LayerResult("schema", "failed", problems)


def _schematron_layer(tree: etree._ElementTree, kind: Kind, directory: Path | None
                      ) -> LayerResult:
    path = directory / SCHEMATRONS[kind] if directory else None
    if path is None or not path.is_file():
        return LayerResult("schematron", "skipped", note=f"schematron not found at {path}"
                           " (install the CI-SIS kit; config [documents] schematron_dir)")
    schematron = load_schematron(str(path))
    schematron.validate(tree)
    report = schematron.validation_report
    problems = [
        Problem(str(f.get("location")), " ".join("".join(f.itertext()).split()), "schematron")
        for f in report.iter(f"{SVRL}failed-assert")
    ]
    return LayerResult("schematron", "failed" if problems else "passed", problems,
                       note=path.name)


def validate_document(
    data: bytes,
    *,
    schema: Path | None = None,
    schematron_dir: Path | None = None,
    drugs: DrugLookup | None = None,
    today: dt.date | None = None,
) -> ValidationReport:
    """Run the three layers on `data`. Unsafe or non-XML input raises UnsafeXML; a document
    that is not a prescription/dispensation gets a failed rules layer and skipped others."""
    tree = parse_xml(data, what="CDA document")
    layers = [_schema_layer(tree, schema)]
    try:
        parsed = parse_tree(tree.getroot())
    except DocumentError as exc:
        layers.append(LayerResult("schematron", "skipped", note="unknown document model"))
        layers.append(LayerResult("rules", "failed", [Problem("/", str(exc), "rules")]))
        return ValidationReport(None, layers)
    layers.append(_schematron_layer(tree, parsed.kind, schematron_dir))
    rules = [Problem(p.location, p.message, "rules", p.severity) for p in parsed.problems]
    if parsed.prescription is not None:
        rules += prescription_rules(parsed.prescription, parsed.line_locations, drugs)
    if parsed.dispensation is not None:
        rules += dispensation_rules(parsed.dispensation, parsed.line_locations, drugs)
    failed = any(p.severity != "info" for p in rules)
    layers.append(LayerResult("rules", "failed" if failed else "passed", rules))
    return ValidationReport(parsed.kind, layers)


# --- our own rules ----------------------------------------------------------------------------

HEADER = "/ClinicalDocument"


def _check(problems: list[Problem], where: str, func: Callable[[str, str], str],
           value: str, field: str) -> None:
    try:
        func(value, field)
    except InvalidIdentifier as exc:
        problems.append(Problem(where, str(exc), "rules"))


def _patient_rules(p: PatientInfo, when: dt.date, out: list[Problem]) -> None:
    where = f"{HEADER}/recordTarget/patientRole"
    if p.ins:
        _check(out, where, ins, p.ins, "patient INS")
    if p.sex not in ("F", "M", "U"):
        out.append(Problem(where, f"patient sex {p.sex!r} is not F, M or U", "rules"))
    if p.birth_date > when:
        out.append(Problem(where, f"the patient's birth date {p.birth_date} is after the"
                           f" document date {when}", "rules"))


def _author_rules(national_id: str, where: str, what: str, out: list[Problem]) -> None:
    if national_id.startswith("8"):
        _check(out, where, rpps, national_id[1:], f"{what} RPPS")
    elif national_id.startswith("0"):
        _check(out, where, adeli, national_id[1:], f"{what} ADELI")
    elif national_id:
        out.append(Problem(where, f"{what} id {national_id!r} is neither '8'+RPPS nor"
                           " '0'+ADELI", "rules"))


def _product_rules(product: Product, where: str, n: int, drugs: DrugLookup | None,
                   out: list[Problem]) -> None:
    loaded = drugs is not None and drugs.is_loaded()
    if product.cis:
        try:
            cis(product.cis, f"line {n} CIS")
            if loaded and drugs is not None and drugs.by_cis(product.cis) is None:
                out.append(Problem(where, f"line {n}: CIS {product.cis} is not in the drug"
                                   " reference (BDPM)", "rules"))
        except InvalidIdentifier as exc:
            out.append(Problem(where, str(exc), "rules"))
    if product.cip13:
        try:
            cip13(product.cip13, f"line {n} CIP13")
            if loaded and drugs is not None and drugs.by_cip13(product.cip13) is None:
                out.append(Problem(where, f"line {n}: CIP13 {product.cip13} is not in the drug"
                                   " reference (BDPM)", "rules"))
        except InvalidIdentifier as exc:
            out.append(Problem(where, str(exc), "rules"))


def _identifier_rule(identifier: str | None, out: list[Problem]) -> None:
    # Shape only: identifiers issued by other software follow the national format, whose check
    # (if any) is not public; ours are checked by the registry with check_identifier.
    if identifier and not re.fullmatch(r"[0-9A-Z]{18}", identifier):
        out.append(Problem(f"{HEADER}/documentationOf/serviceEvent/id",
                           f"e-prescription identifier {identifier!r} is not 18 characters"
                           " 0-9/A-Z", "rules"))


def prescription_rules(p: Prescription, locations: list[str] | None = None,
                       drugs: DrugLookup | None = None) -> list[Problem]:
    out: list[Problem] = []
    day = p.date.date()
    _patient_rules(p.patient, day, out)
    _author_rules(p.author.national_id, f"{HEADER}/author/assignedAuthor", "prescriber", out)
    _identifier_rule(p.identifier, out)
    if p.validity_end and p.validity_end < day:
        out.append(Problem(f"{HEADER}/documentationOf/serviceEvent/effectiveTime",
                           f"the end of validity {p.validity_end} is before the prescription"
                           f" date {day}", "rules"))
    for n, line in enumerate(p.lines, start=1):
        where = locations[n - 1] if locations and len(locations) >= n else f"line {n}"
        _product_rules(line.product, where, n, drugs, out)
        if line.quantity is not None and line.quantity <= 0:
            out.append(Problem(where, f"line {n}: the quantity to dispense must be positive",
                               "rules"))
        if line.duration_days is not None and line.duration_days <= 0:
            out.append(Problem(where, f"line {n}: the duration must be at least one day",
                               "rules"))
        if line.dose is not None and line.dose.quantity <= 0:
            out.append(Problem(where, f"line {n}: the dose must be positive", "rules"))
        if line.frequency is not None and (line.frequency.times <= 0
                                           or line.frequency.period_value <= 0):
            out.append(Problem(where, f"line {n}: the frequency must be positive", "rules"))
        if line.renewals < 0 or line.renewals > 12:
            out.append(Problem(where, f"line {n}: {line.renewals} renewals is out of range"
                               " (0 to 12)", "rules"))
        if not line.substitutable and line.substitution_refusal is None:
            out.append(Problem(where, f"line {n}: 'non substituable' without its reason (MTE,"
                               " EFG or CIF)", "rules"))
        if (line.dose is None and line.frequency is None and not line.dosage_text):
            out.append(Problem(where, f"line {n}: no dosage (neither structured nor in words)",
                               "rules"))
    return out


def dispensation_rules(d: Dispensation, locations: list[str] | None = None,
                       drugs: DrugLookup | None = None) -> list[Problem]:
    out: list[Problem] = []
    _patient_rules(d.patient, d.date.date(), out)
    _author_rules(d.author.national_id, f"{HEADER}/author/assignedAuthor", "pharmacist", out)
    _identifier_rule(d.prescription_id, out)
    for n, line in enumerate(d.lines, start=1):
        where = locations[n - 1] if locations and len(locations) >= n else f"line {n}"
        _product_rules(line.product, where, n, drugs, out)
        if line.quantity < 0:
            out.append(Problem(where, f"line {n}: the dispensed quantity cannot be negative",
                               "rules"))
        if line.quantity == 0 and not line.not_delivered_reason:
            out.append(Problem(where, f"line {n}: nothing delivered but no reason given",
                               "rules"))
        if line.quantity > 0 and line.not_delivered_reason:
            out.append(Problem(where, f"line {n}: marked not delivered but a quantity of"
                               f" {line.quantity} was dispensed", "rules"))
    return out
