"""`mssgw audit list`: read the audit log (who changed or read what, when)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.admins.model import Caller
from gateway.audit import AuditService, entry_dict, local_actor
from gateway.cli import add_command, command_group, print_json, runtime_of


def cmd_list(args: argparse.Namespace) -> None:
    service = AuditService(runtime_of(args).audit, Caller.local(local_actor()))
    filters = {"action": args.action, "target": args.target, "actor": args.actor,
               "since": args.since, "search": args.search}
    # --last: the newest, found through the log's index, without reading the whole log.
    entries = service.last(args.last, **filters) if args.last else service.query(**filters)
    if args.json:
        print_json([entry_dict(e) for e in entries])
        return
    for e in entries:
        details = json.dumps(e.details, ensure_ascii=False, sort_keys=True) if e.details else ""
        print(f"{e.at.isoformat(timespec='seconds')}  {e.actor}  {e.action}  {e.target}  {details}")


def register(sub: Any) -> None:
    group = command_group(sub, "audit", "the audit log: who changed or read what, when")
    p = add_command(group, "list", "list audit entries, oldest first", cmd_list, json_output=True)
    p.add_argument("--action", help='an action ("directory.add") or a prefix ending in "."')
    p.add_argument("--target", help="only entries about this target (address, INS, domain...)")
    p.add_argument("--actor", help="only entries by this user")
    p.add_argument("--since", help="only entries at or after this date/time (ISO 8601)")
    p.add_argument("--search", help="only entries holding these words (anywhere)")
    p.add_argument("--last", type=int, metavar="N", help="only the N most recent entries")
