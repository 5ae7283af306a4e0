"""`mssgw xdm ...`: pack CDA documents into IHE_XDM.zip, sign, verify and list packages."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.cli import add_command, command_group, config_of, print_json
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.fileio import write_user_file
from gateway.xdm.model import Code, DocumentEntry, Package
from gateway.xdm.package import Limits, Sender, pack, read_package


class FileError(GatewayError):
    """A file named on the command line cannot be read or written."""


def limits_of(config: Config) -> Limits:
    """The [xdm] limits (kept here for callers; same as `Limits.of(config)`)."""
    return Limits.of(config)


def _read(path: str, what: str, limit: int) -> bytes:
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > limit:
            raise FileError(f"{path}: {size} bytes, over the limit of {limit} for a {what}")
        return p.read_bytes()
    except FileNotFoundError:
        raise FileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FileError(f"{path}: is a directory, not a {what}") from None
    except OSError as exc:
        raise FileError(f"{path}: cannot read: {exc.strerror}") from None


def _sender(config: Config, email: str | None) -> Sender:
    return Sender(name=email or "", organisation=config.gateway.domain,
                  product=config.gateway.product, vendor="mssgw")


def cmd_pack(args: argparse.Namespace) -> int:
    config = config_of(args)
    limits = Limits.of(config)
    docs = [_read(p, "CDA document", limits.max_package_bytes) for p in args.documents]
    data = pack(docs, sender=_sender(config, args.sign_as))
    if args.sign_as:
        from gateway.signature.trust import sign_as

        data = sign_as(config, args.sign_as, data)
    write_user_file(args.output, data)
    pkg = read_package(data, limits)
    if args.json:
        print_json(_package_json(pkg))
    else:
        signed = f", signed by {args.sign_as}" if args.sign_as else ""
        print(f"{args.output}: {len(pkg.content)} document(s){signed}, patient "
              f"{pkg.submission_set.patient_id.split('^')[0]}")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    config = config_of(args)
    limits = Limits.of(config)
    from gateway.signature.trust import sign_as

    data = sign_as(config, args.sign_as, _read(args.package, "package", limits.max_package_bytes))
    write_user_file(args.output, data)
    print(f"{args.output}: signed by {args.sign_as}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from gateway.signature.trust import check_package

    config = config_of(args)
    result = check_package(
        config, _read(args.package, "package", Limits.of(config).max_package_bytes)
    )
    if args.json:
        print_json({"package": args.package, **result.as_json()})
    else:
        for line in result.checks:
            print(f"ok: {line}")
        if result.valid:
            print(f"{args.package}: valid signature by {result.signer}"
                  f" at {result.signing_time.isoformat() if result.signing_time else '?'}")
        else:
            print(f"{args.package}: INVALID ({result.code}): {result.reason}")
    return 0 if result.valid else 1


def _code(c: Code | None) -> str | None:
    return f"{c.code}^{c.display}^{c.scheme}" if c else None


def _entry_json(e: DocumentEntry, path: str) -> dict[str, Any]:
    return {
        "path": path,
        "uri": e.uri,
        "entry_id": e.entry_id,
        "unique_id": e.unique_id,
        "title": e.title,
        "patient_id": e.patient_id,
        "mime_type": e.mime_type,
        "size": e.size,
        "hash": e.hash,
        "creation_time": e.creation_time,
        "language_code": e.language_code,
        "class_code": _code(e.class_code),
        "type_code": _code(e.type_code),
        "format_code": _code(e.format_code),
        "confidentiality": [_code(c) for c in e.confidentiality],
        "facility_type": _code(e.facility_type),
        "practice_setting": _code(e.practice_setting),
        "event_codes": [_code(c) for c in e.event_codes],
        "authors": [a.person for a in e.authors],
        "legal_authenticator": e.legal_authenticator,
        "signature": e.is_signature,
    }


def _package_json(pkg: Package) -> dict[str, Any]:
    ss = pkg.submission_set
    return {
        "submission_set": {
            "entry_id": ss.entry_id,
            "unique_id": ss.unique_id,
            "source_id": ss.source_id,
            "patient_id": ss.patient_id,
            "submission_time": ss.submission_time,
            "title": ss.title,
        },
        "documents": [_entry_json(d.entry, d.path) for d in pkg.documents],
        "associations": [
            {"type": a.type.rsplit(":", 1)[-1], "source": a.source, "target": a.target}
            for a in pkg.associations
        ],
    }


def cmd_list(args: argparse.Namespace) -> int:
    config = config_of(args)
    limits = Limits.of(config)
    pkg = read_package(_read(args.package, "package", limits.max_package_bytes), limits)
    if args.json:
        print_json(_package_json(pkg))
        return 0
    ss = pkg.submission_set
    print(f"submission set {ss.unique_id} ({ss.title}), patient {ss.patient_id},"
          f" submitted {ss.submission_time}")
    for d in pkg.documents:
        e = d.entry
        kind = "signature" if e.is_signature else (e.type_code.display if e.type_code else "")
        print(f"{d.path}  {e.size} bytes  {kind}")
        print(f"    uniqueId {e.unique_id}  created {e.creation_time}  "
              f"class {_code(e.class_code)}  format {e.format_code.code if e.format_code else '-'}")
        if e.authors and e.authors[0].person:
            print(f"    author {e.authors[0].person}")
    return 0


def register(sub: Any) -> None:
    group = command_group(sub, "xdm", "IHE XDM packages (IHE_XDM.zip): pack, sign, verify, list")
    p = add_command(group, "pack", "pack CDA documents into an IHE_XDM.zip", cmd_pack,
                    json_output=True)
    p.add_argument("documents", nargs="+", metavar="DOC.xml", help="CDA documents, same patient")
    p.add_argument("-o", "--output", required=True, metavar="IHE_XDM.zip", help="package to write")
    p.add_argument("--sign-as", metavar="EMAIL",
                   help="sign with this mailbox's signature certificate (or its structure seal)")
    p = add_command(group, "sign", "add an IHE DSG signature to a package", cmd_sign)
    p.add_argument("package", metavar="IHE_XDM.zip")
    p.add_argument("--sign-as", required=True, metavar="EMAIL", help="the signing mailbox")
    p.add_argument("-o", "--output", required=True, metavar="OUT.zip", help="package to write")
    p = add_command(
        group, "verify",
        "check a package and its signature (exit 0 only when both check)", cmd_verify,
        json_output=True,
    )
    p.add_argument("package", metavar="IHE_XDM.zip")
    p = add_command(group, "list", "list the documents of a package and their metadata",
                    cmd_list, json_output=True)
    p.add_argument("package", metavar="IHE_XDM.zip")
