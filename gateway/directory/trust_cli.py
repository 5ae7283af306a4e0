"""`mssgw trust ...`: the trust-space domains (ours, and peers with their operator's DN)."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.admins.model import Caller
from gateway.audit import local_actor
from gateway.cli import add_command, command_group, print_json, runtime_of
from gateway.directory.admin import TrustService, domain_dict, whitelist_report


def _service(args: argparse.Namespace) -> TrustService:
    rt = runtime_of(args)  # its directory audits changes under the local user
    return TrustService(
        rt.directory, Caller.local(local_actor()),
        max_removed_share=rt.config.trust.max_removed_share,
    )


def cmd_import(args: argparse.Namespace) -> None:
    change = _service(args).import_whitelist(
        args.file, allow_older=args.allow_older, allow_removals=args.allow_removals
    )
    if args.json:
        print_json(change.as_dict())
        return
    for line in whitelist_report(change, args.file):
        print(line)


def cmd_list(args: argparse.Namespace) -> None:
    ours = True if args.own else False if args.peers else None
    service = _service(args)
    found = service.list_all(search=args.search, ours=ours)
    if args.json:
        print_json([domain_dict(d) for d in found])
        return
    for d in found:
        if d.ours:
            print(f"{d.name}  (ours)")
        else:
            more = f" (+{len(d.operator_dns) - 1} more)" if len(d.operator_dns) > 1 else ""
            print(f"{d.name}  {d.source}  {d.operator_dn}{more}")
    generated = service.whitelist_generated()
    if generated and not args.own:
        print(f"({len(found)} domains; national whitelist generated {generated})")


def cmd_show(args: argparse.Namespace) -> None:
    d = _service(args).show(args.name)
    if args.json:
        print_json(domain_dict(d))
        return
    print(f"domain:       {d.name}")
    print(f"ours:         {'yes' if d.ours else 'no'}")
    print(f"source:       {d.source}")
    if d.description:
        print(f"description:  {d.description}")
    for dn in d.operator_dns:
        print(f"operator DN:  {dn}")
    for key, value in sorted(d.contacts.items()):
        print(f"{key + ':':<14}{value}")
    if d.updated:
        print(f"updated:      {d.updated}")


def cmd_add_domain(args: argparse.Namespace) -> None:
    d = _service(args).add(args.name, args.dn or [], ours=args.own, description=args.description)
    print(f"added {'our own' if d.ours else 'peer'} domain {d.name}")


def cmd_remove_domain(args: argparse.Namespace) -> None:
    print(f"removed domain {_service(args).remove(args.name)}")


def register(sub: Any) -> None:
    group = command_group(sub, "trust", "trust-space domains: ours and our peers")

    p = add_command(
        group, "import-whitelist", "import (or re-import) the national MSSanté whitelist XML",
        cmd_import, json_output=True,
    )
    p.add_argument("file", help="listeblanchemssante.xml")
    p.add_argument(
        "--allow-older", action="store_true",
        help="accept a list generated before the one already imported",
    )
    p.add_argument(
        "--allow-removals", action="store_true",
        help="accept a list that removes more than [trust] max_removed_share (default 10%%) of"
        " the peer domains imported before",
    )

    p = add_command(group, "list", "list trust-space domains", cmd_list, json_output=True)
    p.add_argument("--search", help="words in the name, description or operator DN")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--own", action="store_true", help="only our own domains")
    which.add_argument("--peers", action="store_true", help="only peer domains")

    p = add_command(group, "show", "show one domain", cmd_show, json_output=True)
    p.add_argument("name")

    p = add_command(
        group, "add-domain", "add a peer domain with its operator's certificate DN (or --own)",
        cmd_add_domain,
    )
    p.add_argument("name")
    p.add_argument(
        "--dn", action="append",
        help="subject DN of the peer operator's server certificate (repeat for several)",
    )
    p.add_argument("--own", action="store_true", help="a domain this gateway hosts mailboxes for")
    p.add_argument("--description")

    p = add_command(
        group, "remove-domain", "remove a domain from the trust space", cmd_remove_domain
    )
    p.add_argument("name")
