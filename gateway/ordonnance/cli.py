"""`mssgw ordonnance ...`: render the paper ordonnance of a prescription CDA, or its QR code."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.cli import add_command, command_group, config_of, print_json
from gateway.documents.model import Prescription
from gateway.documents.parse import parse_prescription
from gateway.errors import GatewayError
from gateway.fileio import write_user_file
from gateway.ordonnance.pdf import Notice, render_pdf
from gateway.ordonnance.qr import checked_identifier, qr_png


def read_prescription(path: str) -> Prescription:
    """The Prescription in a CDA file (the documents package's reader; its errors are
    one-line GatewayErrors: not XML, DTD refused, not a prescription...)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise GatewayError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_prescription(data)


def _notice(args: argparse.Namespace, prescription: Prescription) -> Notice | None:
    """What the drug reference adds to the patient's notice (stupéfiants, fractions), as the
    gateway printed it: without a loaded reference, nothing."""
    from gateway.drugs.store import loaded_reference
    from gateway.prescriptions.checks import patient_notice

    try:
        config = config_of(args)
    except GatewayError:
        return None
    drugs = loaded_reference(config.database_path)
    try:
        return patient_notice(prescription, drugs)
    finally:
        if drugs is not None:
            drugs.conn.close()


def cmd_pdf(args: argparse.Namespace) -> int:
    if args.json and args.output == "-":
        raise GatewayError("--json and -o - would both write to standard output: choose one")
    prescription = read_prescription(args.document)
    data = render_pdf(prescription, _notice(args, prescription))
    write_user_file(args.output, data)
    if args.json:
        print_json({"output": args.output, "identifier": prescription.identifier,
                    "bytes": len(data)})  # fmt: skip
    elif args.output != "-":
        print(f"{args.output}: ordonnance {prescription.identifier} ({len(data)} bytes)")
    return 0


def cmd_qr(args: argparse.Namespace) -> int:
    ident = checked_identifier(args.identifier)
    data = qr_png(ident, scale=args.scale)
    write_user_file(args.output, data)
    if args.output != "-":
        print(f"{args.output}: QR code of {ident} ({len(data)} bytes)")
    return 0


def register(sub: Any) -> None:
    group = command_group(sub, "ordonnance", "the paper ordonnance (PDF with QR code)")
    p = add_command(
        group, "pdf", "render the ordonnance PDF of a prescription CDA", cmd_pdf, json_output=True
    )
    p.add_argument("document", metavar="DOC.xml", help="prescription CDA (eP-MED-DM)")
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE.pdf", help="PDF to write (- for stdout)"
    )
    p = add_command(group, "qr", "write the QR code of an identifier as a PNG", cmd_qr)
    p.add_argument("identifier", help="e-prescription identifier (spaces and hyphens ignored)")
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE.png", help="PNG to write (- for stdout)"
    )
    p.add_argument("--scale", type=int, default=8, help="pixels per QR module (default 8)")
