"""`mssgw dmp ...`: read and administer the embedded DMP, as the audited local administrator."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.admins.model import Caller
from gateway.audit import local_actor
from gateway.cli import add_command, command_group, config_of, print_json, runtime_of
from gateway.dmp import Actor, DocumentRepository
from gateway.dmp.admin import STATUS_CHOICES, DmpService
from gateway.errors import GatewayError
from gateway.fileio import write_user_file


def _admin() -> Actor:
    return Actor.admin(local_actor())


def _dmp(args: argparse.Namespace) -> DocumentRepository:
    return runtime_of(args).dmp


def _service(dmp: DocumentRepository) -> DmpService:
    return DmpService(dmp, Caller.local(local_actor()))


def cmd_list(args: argparse.Namespace) -> int:
    dmp = _dmp(args)
    entries = _service(dmp).find(
        args.patient,
        class_codes=args.class_code or (),
        type_codes=args.type_code or (),
        date_from=args.date_from,
        date_to=args.date_to,
        status=args.status,
    )
    if args.json:
        print_json([e.as_dict() for e in entries])
    elif not entries:
        print("no document matches")
    else:
        for e in entries:
            m = e.metadata
            print(
                f"{m.unique_id}  {e.status.value:<10}  {m.creation_time:%Y-%m-%d %H:%M}"
                f"  class {m.class_code}  {m.title}  ({e.size} bytes)"
            )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    dmp = _dmp(args)
    entry = _service(dmp).show(args.unique_id)
    data = entry.as_dict()
    if args.json:
        print_json(data)
    else:
        width = max(len(k) for k in data)
        for key, value in data.items():
            if value is not None:
                print(f"{key:<{width}}  {value}")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    dmp = _dmp(args)
    doc = _service(dmp).get(args.unique_id)
    write_user_file(args.output, doc.content, mode=0o600)
    print(f"wrote {args.output} ({len(doc.content)} bytes, SHA-1 {doc.entry.hash})")
    if args.signature:
        if doc.signature is None:
            raise GatewayError(f"document {args.unique_id} has no signature document")
        write_user_file(args.signature, doc.signature, mode=0o600)
        print(f"wrote {args.signature} (signature, {len(doc.signature)} bytes)")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from gateway.dmp.feed import directory_mailbox_of, file_package
    from gateway.xdm import read_package
    from gateway.xdm.cli import limits_of

    config = config_of(args)
    limits = limits_of(config)
    path = Path(args.package)
    try:
        if path.stat().st_size > limits.max_package_bytes:
            raise GatewayError(f"{path}: over the limit of {limits.max_package_bytes} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise GatewayError(f"{path}: cannot read: {exc.strerror}") from None
    package = read_package(data, limits)
    dmp = runtime_of(args).dmp
    entries = file_package(
        dmp,
        package,
        actor=_admin(),
        submitter_address=args.submitter,
        prescription_id=args.prescription,
        mailbox_of=directory_mailbox_of(runtime_of(args).directory),
    )
    for e in entries:
        sig = " with its signature" if e.has_signature else ""
        print(
            f"filed {e.unique_id} (class {e.metadata.class_code}) for {e.metadata.patient_ins}{sig}"
        )
    return 0


def cmd_deprecate(args: argparse.Namespace) -> int:
    dmp = _dmp(args)
    changed = dmp.deprecate(args.unique_id, actor=_admin())
    print(f"document {args.unique_id} " + ("deprecated" if changed else "was already deprecated"))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    dmp = _dmp(args)
    entry = dmp.delete(args.unique_id, actor=_admin())
    print(f"document {args.unique_id} deleted (patient {entry.metadata.patient_ins})")
    return 0


def register(sub: Any) -> None:
    group = command_group(sub, "dmp", "patients' shared records (documents filed by the gateway)")
    p = add_command(group, "list", "list a patient's documents", cmd_list, json_output=True)
    p.add_argument("--patient", required=True, metavar="INS", help="the patient's INS")
    p.add_argument(
        "--class",
        dest="class_code",
        action="append",
        metavar="CODE",
        help="XDS classCode, e.g. 42 prescription, 43 dispensation (repeatable)",
    )
    p.add_argument(
        "--type",
        dest="type_code",
        action="append",
        metavar="CODE",
        help="XDS typeCode (LOINC), repeatable",
    )
    p.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="created on or after")
    p.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="created on or before")
    p.add_argument(
        "--status",
        choices=STATUS_CHOICES,
        default="approved",
        help="approved (default), deprecated or all",
    )

    p = add_command(group, "show", "show a document's metadata", cmd_show, json_output=True)
    p.add_argument("unique_id", metavar="UNIQUEID")

    p = add_command(group, "get", "write a document's bytes to a file", cmd_get)
    p.add_argument("unique_id", metavar="UNIQUEID")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument("--signature", metavar="FILE", help="also write its signature document")

    p = add_command(
        group, "import", "file every document of an IHE_XDM.zip in its patient's record", cmd_import
    )
    p.add_argument("package", metavar="IHE_XDM.zip")
    p.add_argument(
        "--submitter", "--author", dest="submitter", metavar="EMAIL",
        help="the mailbox that submits the package (XDS submission author); the documents'"
        " authors are read from the package and found in the directory by their national id"
        " (--author is the former name of this option)",
    )
    p.add_argument("--prescription", metavar="ID", help="the e-prescription identifier")

    p = add_command(group, "deprecate", "mark a document deprecated", cmd_deprecate)
    p.add_argument("unique_id", metavar="UNIQUEID")

    p = add_command(group, "delete", "delete a document and its signature", cmd_delete)
    p.add_argument("unique_id", metavar="UNIQUEID")
