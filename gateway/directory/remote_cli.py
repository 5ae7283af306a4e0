"""`mssgw directory add-remote|list-remote|show-remote|remove-remote|import-remote`: the
professionals and structures other operators of the trust space host.

The patient rules need to know that an address elsewhere is a pharmacy (a patient may send a
prescription to any pharmacy of the trust space) and the flows name who they write to. Entries
are added by hand or imported from the national directory's daily list of MSSanté mailboxes
(`directory/annuaire.py` reads its layout). They never log in and hold no mail here.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from gateway.cli import add_command, print_json, runtime_of
from gateway.directory.annuaire import read_annuaire
from gateway.directory.codes import PROFESSIONS
from gateway.directory.model import RemoteEntry, RemoteKind
from gateway.directory.repository import UnknownMailbox
from gateway.errors import GatewayError

SHOWN_PROBLEMS = 10  # skipped lines printed (all of them, up to 1,000, with --json)


def entry_dict(e: RemoteEntry) -> dict[str, Any]:
    data = {k: v for k, v in dataclasses.asdict(e).items() if v is not None}
    data["kind"] = e.kind.value
    data["takes_prescriptions"] = e.takes_prescriptions
    if e.updated_at is not None:
        data["updated_at"] = e.updated_at.isoformat()
    return data


def _identifier(e: RemoteEntry) -> str:
    for label, value in (("RPPS", e.rpps), ("ADELI", e.adeli), ("FINESS", e.finess),
                         ("SIRET", e.siret)):
        if value:
            return f"{label} {value}"
    return "-"


def cmd_add(args: argparse.Namespace) -> None:
    directory = runtime_of(args).directory
    entry = directory.add_remote(RemoteEntry(
        address=args.email, kind=args.kind, name=args.name, rpps=args.rpps, adeli=args.adeli,
        finess=args.finess, siret=args.siret, profession=args.profession,
        specialty=args.specialty, organisation=args.organisation))
    if args.json:
        print_json(entry_dict(entry))
    else:
        print(entry.address)


def cmd_list(args: argparse.Namespace) -> None:
    found = runtime_of(args).directory.list_remote(
        kind=RemoteKind(args.kind) if args.kind else None, domain=args.domain,
        search=args.search, source=args.source, limit=args.limit + 1 if args.limit else None)
    more = bool(args.limit) and len(found) > args.limit
    found = found[:args.limit] if args.limit else found
    if args.json:
        print_json([entry_dict(e) for e in found])
        return
    if not found:
        print("no remote entry matches", file=sys.stderr)
        return
    width = max(len(e.address) for e in found)
    for e in found:
        print(f"{e.address:<{width}}  {e.kind.value:<12}  {e.name}  ({_identifier(e)})"
              f"{'  [manual]' if e.source == 'manual' else ''}")
    if more:
        print(f"(first {args.limit} shown: narrow with --search, --domain or --kind, or raise"
              " --limit)", file=sys.stderr)


def cmd_show(args: argparse.Namespace) -> None:
    e = runtime_of(args).directory.get_remote(args.email)
    if e is None:
        raise UnknownMailbox(args.email.strip().lower())
    if args.json:
        print_json(entry_dict(e))
        return
    rows = [("address", e.address), ("kind", e.kind.value), ("name", e.name),
            ("rpps", e.rpps), ("adeli", e.adeli), ("finess", e.finess), ("siret", e.siret),
            ("profession", f"{e.profession} ({PROFESSIONS.get(e.profession, '?')})"
             if e.profession else None),
            ("specialty", e.specialty), ("organisation", e.organisation),
            ("prescriptions", "a patient may send it prescriptions" if e.takes_prescriptions
             else "only in reply (a patient writes back to who wrote first)"),
            ("source", "added by hand" if e.source == "manual" else "national directory"),
            ("updated", e.updated_at.isoformat() if e.updated_at else None)]
    for label, value in rows:
        if value:
            print(f"{label + ':':<15}{value}")
    print("hosted by another operator: it never logs in here and holds no mail here")


def cmd_remove(args: argparse.Namespace) -> None:
    runtime_of(args).directory.remove_remote(args.email)
    print(f"removed {args.email.strip().lower()}")


def cmd_import(args: argparse.Namespace) -> None:
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GatewayError(f"{path}: cannot read it: {exc.strerror}") from None
    rt = runtime_of(args)
    listed = read_annuaire(data)
    change = rt.directory.import_remote(
        listed.entries, source_name=path.name, allow_removals=args.allow_removals,
        max_removed_share=rt.config.trust.max_removed_share)
    if args.json:
        print_json({"file": str(path), "lines": listed.lines, "skipped": listed.skipped,
                    "duplicates": listed.duplicates,
                    "problems": [str(p) for p in listed.problems], **change.as_dict()})
        return
    print(f"read {path.name}: {listed.lines} lines, {change.entries} addresses"
          f" ({listed.duplicates} lines repeat an address, {listed.skipped} skipped)")
    for problem in listed.problems[:SHOWN_PROBLEMS]:
        print(f"  skipped {problem}")
    if listed.skipped > SHOWN_PROBLEMS:
        print(f"  ... and {listed.skipped - SHOWN_PROBLEMS} more (--json lists up to 1,000)")
    print(f"added {change.added}, updated {change.updated}, removed {change.removed},"
          f" unchanged {change.unchanged}")
    if change.manual:
        print(f"kept {change.manual} entries added by hand (`mssgw directory add-remote`)")
    if change.ours:
        print(f"ignored {change.ours} addresses in our own domains (our mailboxes are the"
              " directory's)")
    if change.outside_trust_space:
        print(f"note: {change.outside_trust_space} addresses are in domains that are not (yet)"
              " trust-space peers: mail to them is refused until the whitelist lists them")


def register(group: Any) -> None:
    """Add the remote-entry commands to `mssgw directory`."""
    p = add_command(
        group, "add-remote", "add a professional or structure hosted by another operator"
        " (never logs in, holds no mail here)", cmd_add, json_output=True)
    p.add_argument("--email", required=True, help="its address, in a trust-space peer's domain")
    p.add_argument("--kind", required=True, choices=[k.value for k in RemoteKind],
                   help="pharmacy: patients may send it prescriptions")
    p.add_argument("--name", required=True, help="name shown, e.g. 'Pharmacie du Port'")
    ident = p.add_mutually_exclusive_group()
    ident.add_argument("--rpps", help="professional: RPPS number (11 digits, Luhn)")
    ident.add_argument("--adeli", help="professional: ADELI number (9 digits)")
    ident.add_argument("--finess", help="pharmacy or structure: FINESS number")
    ident.add_argument("--siret", help="pharmacy or structure: SIRET number")
    p.add_argument("--profession", help="professional: TRE_G15 code (10 médecin, 21 pharmacien)")
    p.add_argument("--specialty", help="professional: TRE_R38 code, e.g. SM26")
    p.add_argument("--organisation", help="the structure's name")

    p = add_command(group, "list-remote", "list entries hosted by other operators", cmd_list,
                    json_output=True)
    p.add_argument("--kind", choices=[k.value for k in RemoteKind])
    p.add_argument("--domain", help="only addresses in this domain")
    p.add_argument("--source", choices=["manual", "annuaire"],
                   help="added by hand, or imported from the national list")
    p.add_argument("--search", help="words found in the address, name or identifiers")
    p.add_argument("--limit", type=int, default=200,
                   help="at most this many (default 200; 0: all)")

    p = add_command(group, "show-remote", "show one entry hosted by another operator", cmd_show,
                    json_output=True)
    p.add_argument("email")

    p = add_command(group, "remove-remote", "remove an entry hosted by another operator",
                    cmd_remove)
    p.add_argument("email")

    p = add_command(
        group, "import-remote", "import the national directory's list of MSSanté mailboxes"
        " (Extraction_Correspondance_MSSante: its ZIP or text)", cmd_import, json_output=True)
    p.add_argument("file")
    p.add_argument("--allow-removals", action="store_true",
                   help="import even if it removes more than [trust] max_removed_share of the"
                   " entries imported before")
