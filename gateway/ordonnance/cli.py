"""`mssgw ordonnance ...`: render the paper ordonnance of a prescription CDA, or its QR code."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from gateway.cli import add_command, command_group, print_json
from gateway.documents.model import Prescription
from gateway.documents.parse import parse_prescription
from gateway.errors import GatewayError
from gateway.ordonnance.pdf import render_pdf
from gateway.ordonnance.qr import checked_identifier, qr_png


def write_output(target: str, data: bytes) -> None:
    """Write atomically (temporary file + rename): a failure leaves no half-written file.
    `-` writes to standard output."""
    if target == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = Path(target)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise GatewayError(f"{target}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise GatewayError(f"{target}: cannot write: {exc.strerror}") from exc


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
    write_output(args.output, data)
    if args.json:
        print_json({"output": args.output, "identifier": prescription.identifier,
                    "bytes": len(data)})  # fmt: skip
    elif args.output != "-":
        print(f"{args.output}: ordonnance {prescription.identifier} ({len(data)} bytes)")
    return 0


def cmd_qr(args: argparse.Namespace) -> int:
    ident = checked_identifier(args.identifier)
    data = qr_png(ident, scale=args.scale)
    write_output(args.output, data)
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
