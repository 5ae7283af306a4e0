"""Validate a CDA prescription or dispensation in every layer the national validators run,
reporting every problem with its layer, location, text and severity.

Layers, in order:
1. `schema`: the CDA schema extended by the CI-SIS (CDA_extended.xsd, lxml);
2. `volet`: the volet's schematron of the version the document declares (its model templateId
   @extension: eP-MED-DM 2022.01, 2023.01 or 2024.01, eDISP-MED 2024.01, or any the kit has);
3. the four generic layers of the ANS tool: `IHE`, `ModelesDeContenusCDA`, `Modeles_ANS` and
   `StrucMin` (structuration minimale);
4. `rules`: the gateway's own rules on the parsed model, and what the parser found.
Schematrons go through the ANS ISO compile chain and Saxon-HE (`documents.schematron`).

Severities: `error` where the official specification makes the document wrong (a failed
schematron assert, a schema error, a wrong INS key or RPPS check digit, a malformed CIS, CIP13
or e-prescription identifier, a medicine unknown to the reference when the gateway must deliver
it); `warning` for the rest, which never refuses a document (an official one least of all);
`info` for how the document was read (what the gateway's model does not keep). A layer
"passed" has no error; "failed" has at least one; "skipped" could not run (a kit file is
missing), which is never valid.

The schema and the compiled schematrons are kept per process; validation itself is a pure,
synchronous function the servers run in a process pool (see docs/architecture.md for where
each layer runs and what it costs).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from lxml import etree

from gateway.documents import cda
from gateway.documents.model import Dispensation, DispensingKind, PatientInfo, Prescription, Product
from gateway.documents.parse import DocumentError, Kind, Problem, Severity, parse_tree
from gateway.errors import GatewayError, InvalidIdentifier
from gateway.identifiers import adeli, cip13, cis, ins, rpps
from gateway.xmlsafe import parse_xml

if TYPE_CHECKING:
    from gateway.config import Config

Status = Literal["passed", "failed", "skipped"]
SCHEMATRON_LAYERS = ("volet", "IHE", "ModelesDeContenusCDA", "Modeles_ANS", "StrucMin")
ALL_LAYERS = ("schema", *SCHEMATRON_LAYERS, "rules")
# What `mssgw cda build` checks before writing (the generic layers cost seconds to compile:
# the corpus test and `cda validate` run them; see docs/architecture.md).
FAST_LAYERS = ("schema", "volet", "rules")
MODEL_TEMPLATES = {"prescription": cda.PRESCRIPTION_TEMPLATE,
                   "dispensation": cda.DISPENSATION_TEMPLATE}
MODEL_NAMES = {"prescription": "eP-MED-DM", "dispensation": "eDISP-MED"}


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

    def count(self, severity: Severity) -> int:
        return sum(1 for p in self.problems if p.severity == severity)

    def as_dict(self) -> dict[str, object]:
        return {"layer": self.name, "status": self.status, "note": self.note,
                "errors": self.count("error"), "warnings": self.count("warning"),
                "problems": [{"location": p.location, "message": p.message,
                              "severity": p.severity} for p in self.problems]}


@dataclass
class ValidationReport:
    kind: Kind | None
    layers: list[LayerResult]
    version: str | None = None  # the model version the document declares

    @property
    def ok(self) -> bool:
        """True when every layer ran and none found an error (warnings do not count)."""
        return all(layer.status == "passed" for layer in self.layers)

    @property
    def problems(self) -> list[Problem]:
        return [p for layer in self.layers for p in layer.problems]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def layer(self, name: str) -> LayerResult:
        return next(layer for layer in self.layers if layer.name == name)

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "version": self.version, "valid": self.ok,
                "layers": [layer.as_dict() for layer in self.layers]}


class KitError(GatewayError):
    """The configured schema or schematron cannot be loaded."""


@dataclass(frozen=True)
class Kit:
    """The CI-SIS kit: the CDA schema, the schematron folder (volets, `profils/` with the
    generic layers, `moteur/` with the compile chain), and where compiled XSLT is cached."""

    schema: Path | None = None
    schematrons: Path | None = None
    cache: Path | None = None
    # Where the generic layers run when not in this process: (document, layer names) -> their
    # results (documents.validator.remote: the validator process).
    remote: Callable[[bytes, tuple[str, ...]], list[LayerResult]] | None = None

    @classmethod
    def of(cls, config: Config) -> Kit:
        """The kit the configuration names ([documents])."""
        docs = config.documents
        return cls(config.path(docs.cda_schema), config.path(docs.schematron_dir),
                   config.path(docs.schematron_cache))


@lru_cache(maxsize=4)
def load_schema(path: str) -> etree.XMLSchema:
    try:
        return etree.XMLSchema(etree.parse(path))
    except (OSError, etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        raise KitError(f"cannot load the CDA schema {path}: {exc}") from None


def _result(name: str, problems: list[Problem], note: str = "") -> LayerResult:
    failed = any(p.severity == "error" for p in problems)
    return LayerResult(name, "failed" if failed else "passed", problems, note)


def _schema_layer(tree: etree._ElementTree, schema_path: Path | None) -> LayerResult:
    if schema_path is None or not schema_path.is_file():
        return LayerResult("schema", "skipped", note=f"CDA schema not found at {schema_path}"
                           " (install the CI-SIS kit; config [documents] cda_schema)")
    schema = load_schema(str(schema_path))
    if schema.validate(tree):
        return LayerResult("schema", "passed")
    problems = [Problem(f"line {e.line}" + (f" {e.path}" if e.path else ""), e.message, "schema",
                        "error")
                for e in schema.error_log]  # type: ignore[attr-defined]
    return LayerResult("schema", "failed", problems)


def declared_version(root: etree._Element, kind: Kind) -> str | None:
    """The version the document's model templateId declares (@extension, e.g. 2024.01)."""
    for t in root.findall(f"{{{cda.NS}}}templateId"):
        if t.get("root") == MODEL_TEMPLATES[kind] and t.get("extension"):
            return str(t.get("extension"))
    return None


def _schematron_layers(tree: etree._ElementTree, kind: Kind, version: str | None, kit: Kit,
                       wanted: Collection[str]) -> list[LayerResult]:
    from gateway.documents import schematron

    names = [n for n in SCHEMATRON_LAYERS if n in wanted]
    folder = kit.schematrons
    if folder is None or not folder.is_dir():
        return [LayerResult(n, "skipped", note=f"schematron folder not found at {folder}"
                            " (install the CI-SIS kit; config [documents] schematron_dir)")
                for n in names]
    out: list[LayerResult] = []
    layers: list[tuple[str, schematron.Layer | None, str]] = []
    if "volet" in names:
        available = schematron.volet_versions(folder, kind)
        model = MODEL_NAMES[kind]
        if version is None and available:
            layers.append(("volet", schematron.volet_layer(kind, available[-1]),
                           f"{model} declares no version: checked against {available[-1]}"))
        elif version is None or version not in available:
            wanted_file = schematron.VOLET_FILES[kind].format(version=version or "?")
            layers.append(("volet", None, f"the kit has no schematron for {model} {version}"
                           f" ({wanted_file}; it has {', '.join(available) or 'none'}): point"
                           " [documents] schematron_dir at a kit that has it"))
        else:
            layers.append(("volet", schematron.volet_layer(kind, version), ""))
    layers += [(g.name, g, "") for g in schematron.GENERIC_LAYERS if g.name in names]
    engine = None
    document = None
    for name, layer, note in layers:
        if layer is None:
            out.append(LayerResult(name, "skipped", note=note))
            continue
        if not (folder / layer.path).is_file():
            out.append(LayerResult(name, "skipped", note=f"{folder / layer.path} not found"))
            continue
        try:
            if engine is None:
                engine = schematron.engine()
                document = engine.document(tree)
            problems = engine.run(folder, layer, document, kit.cache)
        except schematron.SchematronError as exc:
            out.append(LayerResult(name, "skipped", note=str(exc)))
            continue
        out.append(_result(name, problems, note or Path(layer.path).name))
    return out


def _remote_layers(kit: Kit, data: bytes, layers: Collection[str]) -> list[LayerResult]:
    """The generic layers asked for, from `kit.remote`; the others (volet) stay here."""
    names = tuple(n for n in SCHEMATRON_LAYERS[1:] if n in layers)
    if not names or kit.remote is None:
        return []
    try:
        return kit.remote(data, names)
    except GatewayError as exc:
        return [LayerResult(n, "skipped", note=str(exc)) for n in names]


def validate_document(
    data: bytes,
    *,
    kit: Kit | None = None,
    schema: Path | None = None,
    schematron_dir: Path | None = None,
    cache: Path | None = None,
    layers: Collection[str] = ALL_LAYERS,
    drugs: DrugLookup | None = None,
    deliver: bool = False,
    today: dt.date | None = None,
) -> ValidationReport:
    """Run `layers` (default: all) on `data`. Unsafe or non-XML input raises UnsafeXML; a
    document that is not a prescription/dispensation gets a failed rules layer and its other
    layers skipped. `deliver`: the gateway must deliver what the document names (a medicine
    unknown to the drug reference is then an error)."""
    if kit is None:
        kit = Kit(schema, schematron_dir, cache)
    tree = parse_xml(data, what="CDA document")
    results = [_schema_layer(tree, kit.schema)] if "schema" in layers else []
    try:
        parsed = parse_tree(tree.getroot())
    except DocumentError as exc:
        results += [LayerResult(n, "skipped", note="unknown document model")
                    for n in SCHEMATRON_LAYERS if n in layers]
        if "rules" in layers:
            results.append(LayerResult("rules", "failed", [Problem("/", str(exc), "rules",
                                                                   "error")]))
        return ValidationReport(None, results)
    version = declared_version(tree.getroot(), parsed.kind)
    here = [n for n in layers if n == "volet" or kit.remote is None]
    if any(n in here for n in SCHEMATRON_LAYERS):
        results += _schematron_layers(tree, parsed.kind, version, kit, here)
    results += _remote_layers(kit, data, layers)
    if "rules" in layers:
        rules = [Problem(p.location, p.message, "rules", p.severity) for p in parsed.problems]
        if parsed.prescription is not None:
            rules += prescription_rules(parsed.prescription, parsed.line_locations, drugs,
                                        deliver=deliver)
        if parsed.dispensation is not None:
            rules += dispensation_rules(parsed.dispensation, parsed.line_locations, drugs,
                                        deliver=deliver)
        results.append(_result("rules", rules))
    return ValidationReport(parsed.kind, results, version)


class Refused(GatewayError):
    """A document from outside is not a valid instance of its model: `problems` are its
    errors (schema, volet, own rules), each with its layer and location."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(f"{problems[0].layer}: {problems[0]}"
                         + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))

    def report(self) -> str:
        return "\n".join(f"- [{p.layer}] {p.location} : {p.message}" for p in self.problems)


def check_incoming(data: bytes, kit: Kit, drugs: DrugLookup | None = None, *,
                   deliver: bool = True, generic: Callable[[bytes], ValidationReport] | None
                   = None) -> ValidationReport:
    """What the flows run on every document from outside (a doctor's software's prescription,
    a pharmacy's eDISP) before using it. Here, in the flow's process: the schema, the volet of
    its declared version and the own rules; an error in any refuses it (`Refused`: the
    document is not a valid instance of its model). Then `generic(data)` (the validator
    process: `documents.validator`) runs the four generic layers; what they find is reported,
    never a refusal: the official examples do not all pass them (the eDISP's spouse name), and
    they check the generic CDA profile, not what the gateway reads. A validator that cannot
    be reached leaves those layers "skipped", with the reason."""
    report = validate_document(data, kit=kit, layers=FAST_LAYERS, drugs=drugs,
                               deliver=deliver)
    if report.errors:
        raise Refused(report.errors)
    if generic is not None:
        try:
            report.layers[2:2] = generic(data).layers
        except GatewayError as exc:
            report.layers[2:2] = [LayerResult(n, "skipped", note=str(exc))
                                  for n in SCHEMATRON_LAYERS[1:]]
    return report


def national_findings(report: ValidationReport) -> tuple[str, ...]:
    """What the generic layers found (or why they did not run), one line each, for the sender:
    what the national validators (DMP, pharmacy software) will say of the document."""
    out: list[str] = []
    for layer in report.layers:
        if layer.name not in SCHEMATRON_LAYERS[1:]:
            continue
        if layer.status == "skipped":
            out.append(f"{layer.name} : non vérifié ({layer.note})")
        out += [f"{layer.name} [{p.severity}] {p.location} : {p.message}"
                for p in layer.problems if p.severity != "info"]
    return tuple(out)


# --- our own rules ----------------------------------------------------------------------------

HEADER = "/ClinicalDocument"


def _error(where: str, message: str) -> Problem:
    return Problem(where, message, "rules", "error")


def _warning(where: str, message: str) -> Problem:
    return Problem(where, message, "rules", "warning")


def _check(problems: list[Problem], where: str, func: Callable[[str, str], str],
           value: str, field: str, severity: Severity = "error") -> None:
    try:
        func(value, field)
    except InvalidIdentifier as exc:
        problems.append(Problem(where, str(exc), "rules", severity))


def _patient_rules(p: PatientInfo, when: dt.date, out: list[Problem]) -> None:
    where = f"{HEADER}/recordTarget/patientRole"
    if p.ins:
        _check(out, where, ins, p.ins, "patient INS")  # the INS key is the INS's own rule
    if p.sex not in ("F", "M", "U"):
        out.append(_warning(where, f"patient sex {p.sex!r} is not F, M or U"))
    if p.birth_date > when:
        out.append(_warning(where, f"the patient's birth date {p.birth_date} is after the"
                            f" document date {when}"))


def _author_rules(national_id: str, where: str, what: str, out: list[Problem]) -> None:
    """RPPS (8...) and ADELI (0...) have check digits; a wrong one is worth a look, not a
    refusal: the volets do not check it and the official eDISP example's pharmacist
    (807505123456) fails it. Other ids are the official model's too (a system such as the
    Dossier Pharmaceutique, a structure): a note."""
    if national_id.startswith("8"):
        _check(out, where, rpps, national_id[1:], f"{what} RPPS", "warning")
    elif national_id.startswith("0"):
        _check(out, where, adeli, national_id[1:], f"{what} ADELI", "warning")
    elif national_id:
        out.append(Problem(where, f"{what} id {national_id!r} is neither '8'+RPPS nor"
                           " '0'+ADELI (a system or a structure?)", "rules", "info"))


def _product_rules(product: Product, where: str, n: int, drugs: DrugLookup | None,
                   deliver: bool, out: list[Problem]) -> None:
    loaded = drugs is not None and drugs.is_loaded()
    unknown = _error if deliver else _warning
    if product.cis:
        try:
            cis(product.cis, f"line {n} CIS")
            if loaded and drugs is not None and drugs.by_cis(product.cis) is None:
                out.append(unknown(where, f"line {n}: CIS {product.cis} is not in the drug"
                                   " reference (BDPM)"))
        except InvalidIdentifier as exc:
            out.append(_error(where, str(exc)))
    if product.cip13:
        try:
            cip13(product.cip13, f"line {n} CIP13")
            if loaded and drugs is not None and drugs.by_cip13(product.cip13) is None:
                out.append(unknown(where, f"line {n}: CIP13 {product.cip13} is not in the"
                                   " drug reference (BDPM)"))
        except InvalidIdentifier as exc:
            out.append(_error(where, str(exc)))


def _identifier_rule(identifier: str | None, out: list[Problem]) -> None:
    # Shape only: identifiers issued by other software follow the national format, whose check
    # (if any) is not public; ours are checked by the registry with check_identifier.
    if identifier and not re.fullmatch(r"[0-9A-Z]{18}", identifier):
        out.append(_error(f"{HEADER}/documentationOf/serviceEvent/id",
                          f"e-prescription identifier {identifier!r} is not 18 characters"
                          " 0-9/A-Z"))


def prescription_rules(p: Prescription, locations: list[str] | None = None,
                       drugs: DrugLookup | None = None, *, deliver: bool = False
                       ) -> list[Problem]:
    out: list[Problem] = []
    day = p.day
    _patient_rules(p.patient, day, out)
    _author_rules(p.author.national_id, f"{HEADER}/author/assignedAuthor", "prescriber", out)
    _identifier_rule(p.identifier, out)
    if p.validity_end and p.validity_end < day:
        out.append(_warning(f"{HEADER}/documentationOf/serviceEvent/effectiveTime",
                            f"the end of validity {p.validity_end} is before the prescription"
                            f" date {day}"))
    for n, line in enumerate(p.lines, start=1):
        where = locations[n - 1] if locations and len(locations) >= n else f"line {n}"
        _product_rules(line.product, where, n, drugs, deliver, out)
        if line.quantity is not None and line.quantity <= 0:
            out.append(_warning(where, f"line {n}: the quantity to dispense must be positive"))
        for k, phase in enumerate(line.phases, start=1):
            what = f"line {n}" + (f" phase {k}" if len(line.phases) > 1 else "")
            if phase.duration_days is not None and phase.duration_days <= 0:
                out.append(_warning(where, f"{what}: the duration must be at least one day"))
            if any(dose.quantity <= 0 for dose in phase.all_doses):
                out.append(_warning(where, f"{what}: the dose must be positive"))
            if phase.frequency is not None and (phase.frequency.times <= 0
                                                or phase.frequency.period_value <= 0):
                out.append(_warning(where, f"{what}: the frequency must be positive"))
        if line.renewals < 0 or line.renewals > 12:
            out.append(_warning(where, f"line {n}: {line.renewals} renewals is out of range"
                                " (0 to 12)"))
        if not line.substitutable and line.substitution_refusal is None:
            out.append(_warning(where, f"line {n}: 'non substituable' without its reason (MTE,"
                                " EFG or CIF)"))
        if not line.phases and not line.dosage_text:
            out.append(_warning(where, f"line {n}: no dosage (neither structured nor in"
                                " words)"))
    return out


def dispensation_rules(d: Dispensation, locations: list[str] | None = None,
                       drugs: DrugLookup | None = None, *, deliver: bool = False
                       ) -> list[Problem]:
    out: list[Problem] = []
    _patient_rules(d.patient, d.day, out)
    _author_rules(d.author.national_id, f"{HEADER}/documentationOf/serviceEvent/performer",
                  "pharmacist", out)
    _identifier_rule(d.prescription_id, out)
    for n, line in enumerate(d.lines, start=1):
        where = locations[n - 1] if locations and len(locations) >= n else f"line {n}"
        _product_rules(line.product, where, n, drugs, deliver, out)
        if line.quantity < 0:
            out.append(_error(where, f"line {n}: the dispensed quantity cannot be negative"))
        if line.kind is DispensingKind.NOT_DELIVERED and not line.reason:
            out.append(_warning(where, f"line {n}: nothing delivered but no reason given"))
        if line.quantity > 0 and line.kind is DispensingKind.NOT_DELIVERED:
            out.append(_warning(where, f"line {n}: marked not delivered but a quantity of"
                                f" {line.quantity} was dispensed"))
    return out
