"""`mssgw audit list`: read the audit log (who changed or read what, when)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from gateway.cli import add_command, command_group, print_json, runtime_of
from gateway.errors import GatewayError


def _since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise GatewayError(f"since: {value!r} is invalid: a date is YYYY-MM-DD[THH:MM]") from None
    return when if when.tzinfo else when.astimezone()


def cmd_list(args: argparse.Namespace) -> None:
    since = _since(args.since)
    entries = [
        e
        for e in runtime_of(args).audit.read(action=args.action, target=args.target)
        if (since is None or e.at >= since) and (not args.actor or e.actor == args.actor)
    ]
    if args.last:
        entries = entries[-args.last :]
    if args.json:
        print_json(
            [
                {"at": e.at.isoformat(), "actor": e.actor, "action": e.action,
                 "target": e.target, "details": e.details}
                for e in entries
            ]
        )
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
    p.add_argument("--last", type=int, metavar="N", help="only the N most recent entries")
