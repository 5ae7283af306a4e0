"""`mssgw drugs ...`: import the BDPM, search it, show one speciality."""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.cli import add_command, command_group, config_of, print_json
from gateway.db import connect
from gateway.drugs.conditions import classify
from gateway.drugs.store import DrugReference, import_directory, open_reference
from gateway.errors import GatewayError, NotFound

MAX_PROBLEMS_SHOWN = 20


@contextlib.contextmanager
def _reference(args: argparse.Namespace) -> Iterator[DrugReference]:
    conn = connect(config_of(args).database_path)
    try:
        ref = open_reference(conn)
        if not ref.is_loaded():
            raise GatewayError("the drug reference is empty: run `mssgw drugs import DIR` first")
        yield ref
    finally:
        conn.close()


def cmd_import(args: argparse.Namespace) -> int:
    conn: sqlite3.Connection = connect(config_of(args).database_path)
    try:
        if args.if_empty and open_reference(conn).is_loaded():
            # `make run` calls this every time: loading 60,000 rows again would only cost time.
            print("drug reference already loaded: nothing to do")
            return 0
        report = import_directory(conn, Path(args.directory))
    finally:
        conn.close()
    if args.json:
        print_json(report.as_dict())
        return 0
    for name, count in report.counts.items():
        print(f"{name}: {count} rows ({report.encodings[name]})")
    for name in report.missing:
        print(f"{name}: not present (optional)")
    if report.problems:
        print(f"{len(report.problems)} lines not loaded:")
        for problem in report.problems[:MAX_PROBLEMS_SHOWN]:
            print(f"  {problem}")
        if len(report.problems) > MAX_PROBLEMS_SHOWN:
            print(f"  ... and {len(report.problems) - MAX_PROBLEMS_SHOWN} more (--json lists all)")
    for text in report.unrecognised_conditions:
        print(f"condition not recognised (prescribers will be warned): {text}")
    print(f"drug reference replaced from {report.source}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    with _reference(args) as ref:
        found = ref.search(args.text, limit=args.limit)
    if args.json:
        print_json([s.as_dict() for s in found])
        return 0 if found else 1
    if not found:
        print(f"no speciality matches {args.text!r}")
        return 1
    for s in found:
        state = "" if s.marketed else "  (non commercialisé)"
        print(f"{s.cis}  {s.name}{state}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with _reference(args) as ref:
        spec = ref.lookup(args.code)
    if spec is None:
        raise NotFound(f"no speciality with CIS/CIP code {args.code!r}")
    if args.json:
        print_json(spec.as_dict())
        return 0
    print(f"{spec.name}")
    print(f"  CIS {spec.cis}; form: {spec.form}; routes: {', '.join(spec.routes)}")
    print(f"  {spec.amm_status}; {'commercialisé' if spec.marketed else 'non commercialisé'}")
    if spec.atc:
        print(f"  ATC {spec.atc}")
    for sub in spec.substances:
        print(f"  substance: {sub}")
    for cond in spec.conditions:
        print(f"  condition: {cond}  [{classify(cond).kind}]")
    for p in spec.presentations:
        price = "" if p.price_cents is None else f", {p.price_cents / 100:.2f} EUR"
        rate = f", remboursé {p.reimbursement_rate}" if p.reimbursement_rate else ""
        print(f"  CIP13 {p.cip13}: {p.label}{rate}{price}")
    return 0


def register(sub: Any) -> None:
    group = command_group(sub, "drugs", "the drug reference (BDPM): import, search, show")
    p = add_command(
        group, "import", "replace the drug reference with the BDPM files of DIR", cmd_import,
        json_output=True,
    )
    p.add_argument("directory", metavar="DIR", help="folder holding CIS_bdpm.txt, ...")
    p.add_argument(
        "--if-empty",
        action="store_true",
        help="import only when no drug reference is loaded yet (idempotent; used by make run)",
    )
    p = add_command(
        group, "search", "find specialities by name (accents and case ignored)", cmd_search,
        json_output=True,
    )
    p.add_argument("text", metavar="TEXT")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    p = add_command(group, "show", "one speciality by CIS, CIP13 or CIP7", cmd_show,
                    json_output=True)
    p.add_argument("code", metavar="CODE")
