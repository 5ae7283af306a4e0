"""`mssgw pki ...`: issue, export, list, show, revoke, publish CRLs, verify, trust anchors."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.admins.model import Caller
from gateway.audit import local_actor
from gateway.cli import add_command, command_group, config_of, print_json, runtime_of
from gateway.fileio import write_atomic
from gateway.pki import ca, crl
from gateway.pki.admin import CertificateService
from gateway.pki.anchors import add_anchor, check_uses, list_anchors, load_certificates
from gateway.pki.ca import PKIError
from gateway.pki.files import write_private
from gateway.pki.kinds import KINDS, Purpose
from gateway.pki.verify import verify_certificate


def _read_input(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise PKIError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise PKIError(f"{path}: is a folder, not a {what} file") from None
    except OSError as exc:
        raise PKIError(f"{path}: cannot read: {exc.strerror}") from None


def _now() -> datetime:
    return datetime.now(UTC)


def _service(args: argparse.Namespace) -> CertificateService:
    config = config_of(args)
    return CertificateService(config, runtime_of(args).audit.record, Caller.local(local_actor()))


def cmd_issue(args: argparse.Namespace) -> int:
    done = _service(args).issue(
        args.subject, args.kind, name=args.name, days=args.days, san=args.san or [],
        ip=args.ip or [],
    )
    issued = done.record
    if args.json:
        print_json(
            {
                "serial": issued.serial,
                "kind": issued.kind,
                "subject": issued.subject_dn,
                "email": issued.email,
                "certificate": done.cert_path,
                "key": done.key_path,
                "not_after": issued.not_after.isoformat(),
            }
        )
    else:
        print(f"issued {issued.kind} certificate {issued.serial}: {issued.subject_dn}")
        print(f"  certificate: {done.cert_path}")
        print(f"  private key: {done.key_path} (mode 0600)")
        print(f"  valid until: {issued.not_after.isoformat()}")
    return 0


def _p12_password() -> bytes:
    """From stdin when it is not a terminal (first line), else prompted twice. Never argv."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise PKIError("PKCS#12 password: stdin gave an empty password")
        return line.encode()
    first = getpass.getpass("PKCS#12 password: ")
    if first != getpass.getpass("again: "):
        raise PKIError("PKCS#12 password: the two entries differ")
    if not first:
        raise PKIError("PKCS#12 password: must not be empty")
    return first.encode()


def cmd_export(args: argparse.Namespace) -> int:
    config = config_of(args)
    out = Path(args.output)
    if out.exists() and not args.force:
        raise PKIError(f"{out}: already exists (use --force to replace it)")
    if out.is_dir():
        raise PKIError(f"{out}: is a folder")
    if not out.parent.is_dir():
        raise PKIError(f"{out.parent}: no such folder")
    record = ca.get_certificate(config, args.serial)
    if args.format == "p12":
        write_private(out, ca.export_pkcs12(config, record.serial, _p12_password()))
    elif args.with_key:
        write_private(out, ca.export_pem(config, record.serial, with_key=True))
    else:
        write_atomic(out, ca.export_pem(config, record.serial))
    print(f"exported certificate {record.serial} ({args.format}) to {out}")
    return 0


def _record_line(r: Any, now: datetime) -> str:
    return (
        f"{r.serial}  {r.kind:<13}  {r.status(now):<13}  {r.not_after.date().isoformat()}  "
        f"{r.email or '-'}  {r.subject_dn}"
    )


def cmd_list(args: argparse.Namespace) -> int:
    records = list(reversed(_service(args).list_all(email=args.email, kind=args.kind)))
    now = _now()
    if args.json:
        print_json([r.as_json(now) for r in records])
        return 0
    if not records:
        print("no certificates")
    for r in records:
        print(_record_line(r, now))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    data = _service(args).show(args.serial)
    if args.json:
        print_json(data)
        return 0
    for key in (
        "serial",
        "kind",
        "status",
        "subject",
        "email",
        "not_before",
        "not_after",
        "sha256",
        "issued_at",
        "revoked_at",
        "reason",
        "certificate",
    ):
        if data.get(key) is not None:
            print(f"{key + ':':<20}{data[key]}")
    for key in ("key_usage", "extended_key_usage", "subject_alt_names"):
        print(f"{key + ':':<20}{', '.join(data[key])}")  # type: ignore[arg-type]
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    config = config_of(args)
    r = _service(args).revoke(args.serial, args.reason)
    print(
        f"revoked certificate {r.serial} ({r.reason}); CRL re-published: "
        f"{ca.Layout.of(config).ca_crl(ca.CA(r.ca))}"
    )
    return 0


def cmd_crl(args: argparse.Namespace) -> int:
    for path in _service(args).publish_crls():
        print(path)
    return 0


def cmd_import_crl(args: argparse.Namespace) -> int:
    config = config_of(args)
    path, imported = crl.import_crl(config, _read_input(args.file, "CRL"))
    print(
        f"imported CRL of {imported.issuer.rfc4514_string()} "
        f"({len(list(imported))} revoked): {path}"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    config = config_of(args)
    data = _read_input(args.file, "certificate")
    try:
        certs = load_certificates(data)
    except ValueError:
        raise PKIError(f"{args.file}: not a certificate (PEM or DER expected)") from None
    at = None
    if args.at:
        try:
            at = datetime.fromisoformat(args.at)
        except ValueError:
            raise PKIError(f"--at: {args.at!r} is not an ISO 8601 date/time") from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
    result = verify_certificate(config, certs[0], certs[1:], args.purpose, at)
    if args.json:
        print_json(
            {
                "ok": result.ok,
                "reason": result.reason,
                "subject": result.subject_dn,
                "purpose": args.purpose,
            }
        )
        return 0 if result.ok else 1
    if not result.ok:
        raise PKIError(f"{args.file}: invalid: {result.reason} ({result.subject_dn})")
    print(f"{args.file}: {result.reason}: {result.subject_dn} (purpose {args.purpose})")
    return 0


def cmd_add_anchor(args: argparse.Namespace) -> int:
    config = config_of(args)
    uses = [u.strip() for u in args.uses.split(",") if u.strip()]
    for url in args.crl_url or []:
        if not url.lower().startswith(("http://", "https://")):
            raise PKIError(f"--crl-url {url}: only http:// and https:// are fetched")
    for a in add_anchor(config, _read_input(args.file, "certificate"), check_uses(uses),
                        args.crl_url or ()):
        print(
            f"added trust anchor {a.subject_dn} (sha256 {a.fingerprint[:16]}…, "
            f"until {a.not_after.date().isoformat()}) for {', '.join(a.uses)}"
        )
    print("restart `mssgw serve` for its listeners to use the new anchors")
    return 0


def cmd_import_server(args: argparse.Namespace) -> int:
    from gateway.pki.external import import_server

    config = config_of(args)
    passphrase = None
    if args.key_passphrase_file:
        passphrase = Path(args.key_passphrase_file).read_bytes().splitlines()[0]
    done = import_server(
        config, _read_input(args.cert, "certificate"), _read_input(args.key, "key"),
        _read_input(args.chain, "chain") if args.chain else b"", key_passphrase=passphrase)
    print(f"server certificate {done.serial}: {done.subject}, issued by {done.issuer}, "
          f"until {done.not_after.date().isoformat()}")
    for warning in done.warnings:
        print(f"warning: {warning}")
    print("restart `mssgw serve` for its listeners to present it")
    return 0


def cmd_refresh_crls(args: argparse.Namespace) -> int:
    from gateway.pki.external import refresh_crls

    results = refresh_crls(config_of(args))
    if args.json:
        print_json([r.as_json() for r in results])
    elif not results:
        print("no CRL distribution point to fetch (no external CA: import one with "
              "`mssgw pki add-anchor`, or list URLs in [pki] crl_urls)")
    for r in results if not args.json else []:
        print(f"{'ok' if r.ok else 'FAILED':6} {r.url}: {r.detail}")
    return 0 if all(r.ok for r in results) else 1


def cmd_anchors(args: argparse.Namespace) -> int:
    config = config_of(args)
    anchors = list_anchors(config)
    if args.json:
        print_json([a.as_json() for a in anchors])
        return 0
    if not anchors:
        print("no imported trust anchors (our own root CA is always trusted)")
    for a in anchors:
        print(f"{a.fingerprint[:16]}  {a.not_after.date().isoformat()}  "
              f"{','.join(a.uses):17}  {a.subject_dn}")
        for url in a.crl_urls:
            print(f"{'':18}CRL: {url}")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if not 1 <= value <= 36500:
        raise argparse.ArgumentTypeError(f"{value} is out of range (1..36500)")
    return value


def register(sub: Any) -> None:
    pki = command_group(sub, "pki", "the gateway's certificate authority and trust anchors")

    kinds_help = "; ".join(f"{k.name}: {k.description} ({k.igc_sante})" for k in KINDS.values())
    p = add_command(
        pki,
        "issue",
        "issue a certificate for a mailbox (or a host: --kind server)",
        cmd_issue,
        json_output=True,
    )
    p.add_argument(
        "subject", metavar="EMAIL", help="the mailbox address (for --kind server: the host name)"
    )
    p.add_argument("--kind", required=True, choices=list(KINDS), help=kinds_help)
    p.add_argument("--name", help="common name (default: the mailbox's display name)")
    p.add_argument("--days", type=_positive, help="validity in days (default: [pki] days)")
    p.add_argument("--san", action="append", metavar="DNS", help="extra DNS name (repeatable)")
    p.add_argument("--ip", action="append", metavar="ADDR", help="IP address SAN (repeatable)")

    p = add_command(
        pki, "export", "export a certificate as PEM or password-protected PKCS#12", cmd_export
    )
    p.add_argument("serial", metavar="SERIAL")
    p.add_argument("--format", choices=["pem", "p12"], default="pem")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument(
        "--with-key", action="store_true", help="PEM: include the private key (file written 0600)"
    )
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.epilog = "The PKCS#12 password is read from stdin (first line) or prompted for."

    p = add_command(pki, "list", "list issued certificates", cmd_list, json_output=True)
    p.add_argument("--email", help="only this mailbox's certificates")
    p.add_argument("--kind", choices=list(KINDS))

    p = add_command(pki, "show", "show one issued certificate", cmd_show, json_output=True)
    p.add_argument("serial", metavar="SERIAL")

    p = add_command(pki, "revoke", "revoke a certificate and re-publish its CA's CRL", cmd_revoke)
    p.add_argument("serial", metavar="SERIAL")
    p.add_argument("--reason", default="unspecified", choices=list(ca.REASONS))

    add_command(pki, "crl", "re-publish every CA's CRL (prints their paths)", cmd_crl)

    p = add_command(
        pki, "import-crl", "import a peer CA's CRL (its anchor must be imported)", cmd_import_crl
    )
    p.add_argument("file", metavar="FILE")

    p = add_command(
        pki,
        "verify",
        "verify a certificate (PEM chain or DER); exit 0 when valid",
        cmd_verify,
        json_output=True,
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--purpose", choices=[x.value for x in Purpose], default="any")
    p.add_argument("--at", metavar="DATETIME", help="verify at this time (ISO 8601; UTC default)")

    p = add_command(pki, "add-anchor", "trust a peer operator's CA certificate", cmd_add_anchor)
    p.add_argument("file", metavar="FILE", help="CA certificate(s): PEM bundle or DER")
    p.add_argument(
        "--for", dest="uses", default="relay,sign", metavar="USES",
        help="what it vouches for, among relay (other operators' servers), client (client"
        " certificates: people, software), sign (document signatures); default relay,sign",
    )
    p.add_argument("--crl-url", action="append", metavar="URL",
                   help="a distribution point of its CRL, beside those the certificates name"
                   " (repeatable)")

    p = add_command(
        pki, "import-server",
        "make an externally issued certificate (IGC-Santé) the gateway's server certificate",
        cmd_import_server,
    )
    p.add_argument("--cert", required=True, metavar="FILE",
                   help="the certificate (PEM; may be followed by its chain)")
    p.add_argument("--key", required=True, metavar="FILE", help="its private key (PEM)")
    p.add_argument("--chain", metavar="FILE", help="the issuing CA certificate(s) (PEM)")
    p.add_argument("--key-passphrase-file", metavar="FILE",
                   help="a file whose first line decrypts the key")

    add_command(
        pki, "refresh-crls",
        "fetch the external CAs' CRLs from their distribution points now (exit 1 if one fails)",
        cmd_refresh_crls, json_output=True,
    )

    add_command(pki, "anchors", "list imported trust anchors", cmd_anchors, json_output=True)
