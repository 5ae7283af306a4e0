"""`mssgw prescriptions ...`: the e-prescription identifier (and, later, the registry)."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli import add_command, command_group, print_json
from gateway.prescriptions.identifier import check_identifier, group


def cmd_check_id(args: argparse.Namespace) -> int:
    result = check_identifier(args.identifier)
    if args.json:
        print_json({"identifier": result.identifier, "valid": result.ok, "reason": result.reason})
    elif result.ok:
        print(f"{group(result.identifier)}: well-formed")
    else:
        print(f"{result.identifier}: not a valid identifier: {result.reason}")
    return 0 if result.ok else 1


def register(sub: Any) -> None:
    group_ = command_group(sub, "prescriptions", "e-prescription identifiers and registry")
    p = add_command(
        group_,
        "check-id",
        "say whether an identifier is well-formed",
        cmd_check_id,
        json_output=True,
    )
    p.add_argument("identifier", help="18 characters 0-9A-Z (spaces and hyphens ignored)")
