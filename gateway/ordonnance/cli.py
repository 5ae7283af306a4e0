"""`mssgw ordonnance ...`: render the paper ordonnance of a prescription CDA, or its QR code."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.cli import add_command, command_group, print_json
from gateway.documents.model import Prescription
from gateway.documents.parse import parse_prescription
from gateway.errors import GatewayError
from gateway.fileio import write_user_file
from gateway.ordonnance.pdf import render_pdf
from gateway.ordonnance.qr import checked_identifier, qr_png


def read_prescription(path: str) -> Prescription:
    """The Prescription in a CDA file (the documents package's reader; its errors are
    one-line GatewayErrors: not XML, DTD refused, not a prescription...)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise GatewayError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_prescription(data)


def cmd_pdf(args: argparse.Namespace) -> int:
    if args.json and args.output == "-":
        raise GatewayError("--json and -o - would both write to standard output: choose one")
    prescription = read_prescription(args.document)
    data = render_pdf(prescription)
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
