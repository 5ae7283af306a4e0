"""`mssgw cda ...`: build a prescription from a doctor's mail form, validate, parse."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import enum
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.cli import add_command, command_group, config_of, print_json
from gateway.config import Config
from gateway.errors import GatewayError


def read_input(path: str, what: str = "file") -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise GatewayError(f"cannot read {what} {path}: {exc.strerror}") from None


def kit_paths(config: Config) -> tuple[Path, Path]:
    return config.path(config.documents.cda_schema), config.path(config.documents.schematron_dir)


def _drugs(config: Config) -> Any:
    """The drug reference when the database exists and holds one, else None."""
    from gateway.db import connect
    from gateway.drugs.store import DrugReference

    if not config.database_path.exists():
        return None
    ref = DrugReference(connect(config.database_path))
    return ref if ref.is_loaded() else None


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal | dt.date | dt.datetime):
        return str(value) if not isinstance(value, dt.date) else value.isoformat()
    return value


def cmd_validate(args: argparse.Namespace) -> int:
    from gateway.documents.validate import validate_document

    config = config_of(args)
    schema, schematrons = kit_paths(config)
    data = read_input(args.file, "document")
    report = validate_document(data, schema=schema, schematron_dir=schematrons,
                               drugs=_drugs(config))
    if args.json:
        print_json(report.as_dict())
    else:
        kind = report.kind or "unknown document"
        for layer in report.layers:
            note = f" ({layer.note})" if layer.note and layer.status == "skipped" else ""
            count = f", {len(layer.problems)} problem(s)" if layer.problems else ""
            print(f"{layer.name}: {layer.status}{note}{count}")
            for problem in layer.problems:
                print(f"  {problem.location}: {problem.message}")
        verdict = "valid" if report.ok else "NOT valid"
        print(f"{args.file}: {kind} {verdict}")
    return 0 if report.ok else 1


def cmd_parse(args: argparse.Namespace) -> int:
    from gateway.documents.parse import parse_document

    parsed = parse_document(read_input(args.file, "document"))
    model: Any = parsed.prescription or parsed.dispensation
    if args.json:
        print_json({"kind": parsed.kind, parsed.kind: to_jsonable(model),
                    "problems": [{"location": p.location, "message": p.message}
                                 for p in parsed.problems]})
    else:
        print(f"{parsed.kind}: {len(model.lines) if model else 0} line(s)")
        if model is not None:
            for n, line in enumerate(model.lines, start=1):
                print(f"  {n}. {line.product.label}")
        for p in parsed.problems:
            print(f"  problem: {p}")
    return 0


def register(sub: Any) -> None:
    group = command_group(sub, "cda", "CDA prescriptions and dispensations: build, validate, parse")
    p = add_command(group, "validate",
                    "check a CDA document: schema, volet schematron and our own rules"
                    " (exit 0 only when every layer passes)", cmd_validate, json_output=True)
    p.add_argument("file", metavar="FILE")
    p = add_command(group, "parse", "read a CDA prescription/dispensation into the model",
                    cmd_parse, json_output=True)
    p.add_argument("file", metavar="FILE")
