"""`mssgw cda ...`: build a prescription from a doctor's mail form, validate, parse."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import enum
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.cli import add_command, command_group, config_of, print_json
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.fileio import write_user_file


def read_input(path: str, what: str = "file") -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise GatewayError(f"cannot read {what} {path}: {exc.strerror}") from None


def kit_of(config: Config) -> Any:
    """The CI-SIS kit the configuration names ([documents]), with its compiled-XSLT cache."""
    from gateway.documents.validate import Kit

    return Kit.of(config)


def _drugs(config: Config) -> Any:
    """The drug reference when the database exists and holds one, else None."""
    from gateway.drugs.store import loaded_reference

    return loaded_reference(config.database_path)


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal | dt.date | dt.datetime):
        return str(value) if not isinstance(value, dt.date) else value.isoformat()
    return value


def _conditions_allow(config: Config, prescription: Any, drugs: Any, where: str) -> bool:
    """The drug database's prescribing conditions for the prescriber the directory knows (as
    the doctor's mail meets them): refusals are errors, warnings are printed."""
    from gateway.prescriptions import checks
    from gateway.prescriptions.prescriber import Prescriber

    directory = _people(config).directory
    key = prescription.author.email or prescription.author.rpps or ""
    mailbox = directory.get(key) if "@" in key else directory.find_by_rpps(key)
    if mailbox is None:
        return True
    structure = directory.get(mailbox.professional.structure) \
        if mailbox.professional and mailbox.professional.structure else None
    findings = checks.check_prescription(prescription, Prescriber.from_mailbox(mailbox, structure),
                                         drugs)
    for f in findings:
        level = "error" if f.severity is checks.Severity.REFUSE else "warning"
        print(f"mssgw: {level}: {where}: {f}", file=sys.stderr)
    return not checks.refusals(findings)


def _people(config: Config) -> Any:
    """The trust directory as the form's `People`."""
    from gateway.directory import open_directory
    from gateway.documents.people import DirectoryPeople

    return DirectoryPeople(open_directory(config), config.documents.patient_ins_root)


def cmd_build(args: argparse.Namespace) -> int:
    from gateway.documents.build import assign_ids, build_prescription
    from gateway.documents.form import FormError, parse_prescription_form
    from gateway.documents.validate import ALL_LAYERS, FAST_LAYERS, validate_document
    from gateway.ordonnance import qr_png, render_pdf
    from gateway.prescriptions.checks import patient_notice
    from gateway.prescriptions.identifier import group

    config = config_of(args)
    raw = read_input(args.form, "form")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")  # forms saved by older Windows editors
    drugs = _drugs(config)
    try:
        prescription = parse_prescription_form(text, people=_people(config), drugs=drugs,
                                               sender=args.sender)
    except FormError as exc:
        for problem in exc.problems:
            where = f"{args.form}:{problem.line}" if problem.line else args.form
            extra = f" {'; '.join(problem.candidates)}" if problem.candidates else ""
            print(f"mssgw: error: {where}: {problem.message}{extra}", file=sys.stderr)
        return 1
    if not _conditions_allow(config, prescription, drugs, args.form):
        return 1
    prescription = assign_ids(prescription)
    assert prescription.identifier is not None
    document = build_prescription(prescription,
                                  render_pdf(prescription, patient_notice(prescription, drugs)),
                                  qr_png(prescription.identifier))
    report = validate_document(document, kit=kit_of(config), drugs=drugs, deliver=True,
                               layers=ALL_LAYERS if args.all_layers else FAST_LAYERS)
    if report.errors:
        first = report.errors[0]
        raise GatewayError(f"the document built from {args.form} is not valid ({first.layer}):"
                           f" {first} (+{len(report.errors) - 1} more)"
                           if len(report.errors) > 1 else
                           f"the document built from {args.form} is not valid ({first.layer}):"
                           f" {first}")
    write_user_file(args.output, document)
    if args.json:
        print_json({"output": args.output, "identifier": prescription.identifier,
                    "document_id": prescription.document_id,
                    "lines": len(prescription.lines),
                    "layers": {layer.name: layer.status for layer in report.layers}})
    else:
        p = prescription.patient
        print(f"{args.output}: prescription {group(prescription.identifier)} for"
              f" {p.given_names} {p.birth_name}, {len(prescription.lines)} line(s)")
        for layer in report.layers:
            if layer.status == "skipped":
                print(f"  {layer.name} check skipped: {layer.note}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from gateway.documents import validator
    from gateway.documents.validate import ALL_LAYERS, FAST_LAYERS, validate_document

    config = config_of(args)
    data = read_input(args.file, "document")
    kit = kit_of(config)
    # The gateway's validator process, when one runs, has the generic layers compiled: the
    # answer in a second instead of compiling them here (StrucMin: 10-25 s, ~600 MB).
    address = validator.Address(config.path(config.documents.validator_socket))
    if not args.fast and validator.running(address):
        kit = validator.remote(address, kit)
    report = validate_document(data, kit=kit, drugs=_drugs(config),
                               layers=FAST_LAYERS if args.fast else ALL_LAYERS)
    warnings = [p for p in report.problems if p.severity == "warning"]
    ok = report.ok and not (args.strict and warnings)
    if args.json:
        print_json({**report.as_dict(), "valid": ok})
    else:
        kind: str = report.kind or "unknown document"
        if report.version:
            kind += f" {report.version}"
        for layer in report.layers:
            counts = [f"{n} {what}(s)" for n, what in ((layer.count("error"), "error"),
                                                      (layer.count("warning"), "warning"),
                                                      (layer.count("info"), "note")) if n]
            detail = f" ({layer.note})" if layer.note else ""
            print(f"{layer.name}: {layer.status}{detail}"
                  + (f", {', '.join(counts)}" if counts else ""))
            for problem in layer.problems:
                if problem.severity != "info" or args.verbose:
                    print(f"  [{problem.severity}] {problem.location}: {problem.message}")
        verdict = "valid" if ok else "NOT valid"
        if ok and warnings:
            verdict += f" ({len(warnings)} warning(s))"
        print(f"{args.file}: {kind} {verdict}")
    return 0 if ok else 1


def cmd_parse(args: argparse.Namespace) -> int:
    from gateway.documents.parse import parse_document

    parsed = parse_document(read_input(args.file, "document"))
    model: Any = parsed.prescription or parsed.dispensation
    if args.json:
        print_json({"kind": parsed.kind, parsed.kind: to_jsonable(model),
                    "problems": [{"location": p.location, "message": p.message}
                                 for p in parsed.problems]})
    else:
        print(f"{parsed.kind}: {len(model.lines) if model else 0} line(s)")
        if model is not None:
            for n, line in enumerate(model.lines, start=1):
                print(f"  {n}. {line.product.label}")
        for p in parsed.problems:
            print(f"  problem: {p}")
    return 0


def register(sub: Any) -> None:
    group = command_group(sub, "cda", "CDA prescriptions and dispensations: build, validate, parse")
    p = add_command(group, "build",
                    "build a prescription CDA (with its ordonnance PDF and QR code) from a"
                    " doctor's mail form", cmd_build, json_output=True)
    p.add_argument("form", metavar="FORM.txt", help="the form (see examples/prescription.txt)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.xml")
    p.add_argument("--sender", metavar="EMAIL",
                   help="the prescriber when the form names none (the mail's sender)")
    p.add_argument("--all-layers", action="store_true",
                   help="also run the four generic CI-SIS layers before writing (compiling"
                        " them takes seconds; by default: schema, volet and own rules)")
    p = add_command(group, "validate",
                    "check a CDA document in every layer the national validators run: CDA"
                    " schema, the volet schematron of its declared version, the generic"
                    " layers (IHE, ModelesDeContenusCDA, Modeles_ANS, StrucMin), the gateway's"
                    " own rules (exit 0 when no layer finds an error)", cmd_validate,
                    json_output=True)
    p.add_argument("file", metavar="FILE")
    p.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    p.add_argument("--fast", action="store_true",
                   help="schema, volet and own rules only (skip the generic layers)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also list the notes (what the gateway's model does not keep)")
    p = add_command(group, "parse", "read a CDA prescription/dispensation into the model",
                    cmd_parse, json_output=True)
    p.add_argument("file", metavar="FILE")
