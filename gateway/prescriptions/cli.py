"""`mssgw prescriptions ...`: the identifier check and the registry's administration.

Administrative commands run as the local administrator (the OS user, in the audit log); the
mail flows call the registry directly with the sender's address as actor.
"""

from __future__ import annotations

import argparse
import datetime as dt
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.admins.model import Caller
from gateway.audit import local_actor
from gateway.cli import add_command, command_group, print_json, runtime_of
from gateway.documents.model import DispensedLine, DispensingKind, Product
from gateway.errors import GatewayError
from gateway.prescriptions.admin import PrescriptionService
from gateway.prescriptions.identifier import check_identifier, group
from gateway.prescriptions.registry import (
    RETENTION_YEARS,
    DispensationReport,
    Dispenser,
    PrescriptionRecord,
    PrescriptionRegistry,
    Status,
)


def cmd_check_id(args: argparse.Namespace) -> int:
    result = check_identifier(args.identifier)
    if args.json:
        print_json({"identifier": result.identifier, "valid": result.ok, "reason": result.reason})
    elif result.ok:
        print(f"{group(result.identifier)}: well-formed")
    else:
        print(f"{result.identifier}: not a valid identifier: {result.reason}")
    return 0 if result.ok else 1


def _registry(args: argparse.Namespace) -> PrescriptionRegistry:
    return runtime_of(args).registry


def _service(registry: PrescriptionRegistry) -> PrescriptionService:
    return PrescriptionService(registry, Caller.local(local_actor()))


def _summary(rec: PrescriptionRecord) -> str:
    return (
        f"{rec.identifier}  {rec.status_at().value:<19}  {rec.prescribed_at.date()}"
        f"  patient {rec.patient_ins}  by {rec.prescriber_address}  {len(rec.lines)} line(s)"
        + ("  (registered elsewhere)" if rec.registered_elsewhere else "")
    )


def cmd_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    records = _service(registry).find(
        patient=args.patient, prescriber=args.prescriber, status=args.status,
        limit=args.limit,
    )
    if args.json:
        print_json([r.as_dict() for r in records])
    elif not records:
        print("no prescription matches")
    else:
        for rec in records:
            print(_summary(rec))
    return 0


def _qty(value: Any) -> str:
    return "—" if value is None else str(value)


def cmd_show(args: argparse.Namespace) -> int:
    registry = _registry(args)
    rec = _service(registry).show(args.identifier)
    if args.json:
        print_json(rec.as_dict())
        return 0
    d = rec.as_dict()
    print(f"prescription {group(rec.identifier)} ({rec.identifier})")
    print(f"  status:       {d['status']}")
    if rec.registered_elsewhere:
        print("  registered:   by another operator; kept here from the signed document a patient"
              " forwarded (the status counts only what was dispensed here)")
    print(f"  prescriber:   {rec.prescriber_address} (RPPS {rec.prescriber_rpps or '—'})")
    print(f"  patient:      {rec.patient_address} (INS {rec.patient_ins})")
    print(f"  date:         {rec.prescribed_at.isoformat()}")
    print(f"  first dispensation by {rec.validity_end}; renewals until {rec.dispensable_until}")
    print(
        f"  objection to prescriber feedback: {'yes' if rec.patient_objects_to_feedback else 'no'}"
    )
    if rec.cancelled_at:
        why = rec.cancel_reason or "no reason given"
        print(f"  cancelled:    {rec.cancelled_at.isoformat()} by {rec.cancelled_by}: {why}")
    print("  lines:")
    for line in d["lines"]:
        print(
            f"    {line['line']}. {line['label']}: {_qty(line['quantity'])} {line['unit']}"
            f" × {1 + line['renewals']} — delivered {line['delivered']},"
            f" remaining {_qty(line['remaining'])}"
            + ("" if line["remaining"] is not None else f" ({line['deliveries_left']} deliveries)")
        )
    if rec.dispensations:
        print("  dispensations:")
    for disp in rec.dispensations:
        by = f" (pharmacist {disp.pharmacist})" if disp.pharmacist else ""
        print(f"    {disp.dispensed_at.date()} {disp.pharmacy}{by}, id {disp.dispensation_id}")
        for dl in disp.lines:
            note = dl.kind.replace("_", " ") + (f": {dl.reason}" if dl.reason else "")
            print(f"      line {dl.position}: {dl.quantity} {dl.label} ({note})")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    registry = _registry(args)
    result = _service(registry).cancel(args.identifier, by=args.by, reason=args.reason)
    print(result.message)
    return 0


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        ref, sep, value = item.partition("=")
        if not sep or not ref.strip() or not value.strip():
            raise GatewayError(f"{what}: expected LINE=VALUE, got {item!r}")
        out[ref.strip()] = value.strip()
    return out


def _dispenser(args: argparse.Namespace) -> Dispenser:
    """The pharmacy as the trust directory knows it (only pharmacies may dispense)."""
    directory = runtime_of(args).directory
    mailbox = directory.require(args.pharmacy)
    if not mailbox.active:
        raise GatewayError(f"{mailbox.address} is suspended: it cannot dispense")
    structure = None
    if mailbox.professional and mailbox.professional.structure:
        structure = directory.get(mailbox.professional.structure)
    return Dispenser.from_mailbox(mailbox, structure)


def _kinds(args: argparse.Namespace) -> dict[str, tuple[DispensingKind, str | None]]:
    """Each line's kind and reason from the options (delivered when none names it)."""
    kinds: dict[str, tuple[DispensingKind, str | None]] = {}
    for option, kind in (("not_delivered", DispensingKind.NOT_DELIVERED),
                         ("adjusted", DispensingKind.ADAPTED),
                         ("partial", DispensingKind.PARTIAL)):
        for ref, reason in _pairs(getattr(args, option), f"--{option.replace('_', '-')}"
                                  ).items():
            if ref in kinds:
                raise GatewayError(f"line {ref}: one kind per line (it is already"
                                   f" {kinds[ref][0].value})")
            kinds[ref] = (kind, reason)
    for ref in args.substituted or []:
        if ref in kinds:
            raise GatewayError(f"line {ref}: one kind per line (it is already"
                               f" {kinds[ref][0].value})")
        kinds[ref] = (DispensingKind.SUBSTITUTED, None)
    return kinds


def _dispense_with_document(args: argparse.Namespace, quantities: dict[str, Decimal],
                            kinds: dict[str, tuple[DispensingKind, str | None]]) -> Any:
    """As a pharmacy's mail does (gateway.flows.dispense): the eDISP built from the registered
    prescription, signed with the pharmacist's certificate (the pharmacy's seal for its own
    mailbox), recorded and filed in the DMP in one transaction. None when the registry holds
    no document for this prescription (recorded then without an eDISP)."""
    from gateway.documents.model import Dispensation
    from gateway.flows import dispense as flow
    from gateway.flows.context import now

    ctx = runtime_of(args).flows
    actor = local_actor()
    prescription = flow.registered_prescription(ctx, args.identifier, actor)
    if prescription is None:
        return None
    who = args.pharmacist or args.pharmacy
    author = ctx.people.professional(who)
    if author is None:
        raise GatewayError(f"{who} is not a pharmacist in the directory: the eDISP names who"
                           " dispensed (give --pharmacist EMAIL|RPPS for a pharmacy mailbox)")
    lines = []
    for ref, qty in quantities.items():
        position = int(ref) if ref.isdigit() else None
        prescribed = next((ln for i, ln in enumerate(prescription.lines, start=1)
                           if i == position or ln.line_id == ref), None)
        if prescribed is None:
            raise GatewayError(f"line {ref}: the prescription has no such line (it has"
                               f" {len(prescription.lines)})")
        kind, reason = kinds.get(ref, (DispensingKind.DELIVERED, None))
        lines.append(DispensedLine(line_ref=prescribed.line_id or ref,
                                   product=prescribed.product, quantity=qty, kind=kind,
                                   quantity_unit=prescribed.quantity_unit, reason=reason))
    d = Dispensation(prescription_id=args.identifier,
                     prescription_document_id=prescription.document_id or "",
                     patient=prescription.patient, author=author, date=now(),
                     lines=tuple(lines))
    key = args.id or f"cli-{uuid.uuid4()}"
    record, applied, _package, in_dmp, warnings = flow.record_dispensation(
        ctx, d, args.pharmacy.lower(), key)
    ctx.audit.record(actor, "prescription.dispense.cli", args.identifier,
                     {"pharmacy": args.pharmacy, "dispensation": key, "applied": applied})
    message = (f"dispensation {key} recorded" if applied else
               f"dispensation {key} already recorded: nothing changed")
    return record, applied, message, in_dmp, warnings


def cmd_dispense(args: argparse.Namespace) -> int:
    quantities_text = _pairs(args.lines, "line")
    kinds = _kinds(args)
    for ref, (kind, _) in kinds.items():
        if ref not in quantities_text and kind is not DispensingKind.NOT_DELIVERED:
            raise GatewayError(f"line {ref}: give its quantity as {ref}=QTY")
    quantities: dict[str, Decimal] = {}
    for ref in {**quantities_text, **{r: "0" for r, (k, _) in kinds.items()
                                      if k is DispensingKind.NOT_DELIVERED}}:
        qty_text = quantities_text.get(ref, "0")
        try:
            quantities[ref] = Decimal(qty_text.replace(",", "."))
        except InvalidOperation:
            raise GatewayError(f"line {ref}: {qty_text!r} is not a quantity") from None
    dispenser = _dispenser(args)
    with_document = _dispense_with_document(args, quantities, kinds)
    if with_document is not None:
        record, applied, message, in_dmp, warnings = with_document
        return _print_dispensed(args, record, applied, message, in_dmp, warnings)
    registry = _registry(args)
    record = registry.get(args.identifier, actor=local_actor())
    lines = []
    for ref, qty in quantities.items():
        label = next((ln.label for ln in record.lines if ln.matches(ref)), "?")
        kind, reason = kinds.get(ref, (DispensingKind.DELIVERED, None))
        lines.append(DispensedLine(line_ref=ref, product=Product(label=label),
                                   quantity=qty, kind=kind, reason=reason))
    report = DispensationReport(
        dispensation_id=args.id or f"cli-{uuid.uuid4()}",
        prescription_id=args.identifier,
        dispenser=dispenser,
        date=dt.datetime.now(dt.UTC),
        lines=tuple(lines),
    )
    result = registry.dispense(report)
    return _print_dispensed(args, result.record, result.applied,
                            result.message + " (no document registered for it: no eDISP)",
                            None, ())


def _print_dispensed(args: argparse.Namespace, record: PrescriptionRecord, applied: bool,
                     message: str, in_dmp: bool | None, warnings: tuple[str, ...]) -> int:
    if args.json:
        print_json(
            {
                "applied": applied,
                "message": message,
                "status": record.status_at().value,
                "edisp": in_dmp is not None,
                "filed_in_dmp": bool(in_dmp),
                "warnings": list(warnings),
                "remaining": [ln.as_dict() for ln in record.lines],
            }
        )
    else:
        print(message)
        if in_dmp is not None:
            print("  eDISP signed" + (" and filed in the patient's DMP" if in_dmp else
                                      " (not filed: the patient has no qualified INS)"))
        for warning in warnings:
            print(f"  warning: {warning}")
        for ln in record.lines:
            print(f"  line {ln.position} ({ln.label}): remaining {_qty(ln.as_dict()['remaining'])}")
    return 0


def cmd_expire(args: argparse.Namespace) -> int:
    registry = _registry(args)
    expired = registry.expire(actor=local_actor())
    if args.json:
        print_json({"expired": expired})
    else:
        print(
            f"{len(expired)} prescription(s) expired"
            + (": " + ", ".join(expired) if expired else "")
        )
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    registry = _registry(args)
    idents = registry.purge(
        actor=local_actor(), older_than_years=args.older_than_years, dry_run=args.dry_run
    )
    if args.json:
        print_json(
            {
                "purged": [] if args.dry_run else idents,
                "would_purge": idents if args.dry_run else [],
            }
        )
    else:
        verb = "would purge" if args.dry_run else "purged"
        print(f"{verb} {len(idents)} prescription(s) older than {args.older_than_years} years")
        for ident in idents:
            print(f"  {ident}")
    return 0


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

    p = add_command(group_, "list", "list registered prescriptions", cmd_list, json_output=True)
    p.add_argument("--patient", metavar="INS", help="only this patient's prescriptions")
    p.add_argument("--prescriber", metavar="RPPS|EMAIL", help="only this prescriber's")
    p.add_argument("--status", choices=[s.value for s in Status], help="status as of today")
    p.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")

    p = add_command(
        group_,
        "show",
        "show one prescription: lines, remaining, dispensations",
        cmd_show,
        json_output=True,
    )
    p.add_argument("identifier")

    p = add_command(
        group_, "cancel", "cancel a prescription on its prescriber's behalf", cmd_cancel
    )
    p.add_argument("identifier")
    p.add_argument("--by", required=True, metavar="EMAIL", help="the prescriber's address")
    p.add_argument("--reason", help="why (kept in the record)")

    p = add_command(
        group_,
        "dispense",
        "record a dispensation as a pharmacy's mail does (eDISP built, signed, recorded, filed"
        " in the DMP): ID --pharmacy EMAIL LINE=QTY...",
        cmd_dispense,
        json_output=True,
    )
    p.add_argument("identifier")
    # nargs="+": with "*" argparse would match an empty list right after ID and then refuse the
    # LINE=QTY given after the options.
    p.add_argument(
        "lines", nargs="+", metavar="LINE=QTY", help="line number (or id) = quantity (0 if none)"
    )
    p.add_argument("--pharmacy", required=True, metavar="EMAIL",
                   help="the pharmacy's mailbox, or its pharmacist's (whose certificate signs"
                        " the eDISP; the pharmacy's seal for the pharmacy's own mailbox)")
    p.add_argument("--pharmacist", metavar="EMAIL|RPPS",
                   help="who dispensed, named in the eDISP (default: --pharmacy when it is a"
                        " pharmacist's mailbox)")
    p.add_argument("--id", help="dispensation id (same id twice = recorded once)")
    p.add_argument("--substituted", action="append", metavar="LINE", help="generic substitution")
    p.add_argument("--adjusted", action="append", metavar="LINE=REASON",
                   help="adapted with the prescriber's agreement")
    p.add_argument("--partial", action="append", metavar="LINE=REASON",
                   help="delivered in part, the rest later")
    p.add_argument(
        "--not-delivered",
        action="append",
        metavar="LINE=REASON",
        help="why LINE=0 was not delivered",
    )

    p = add_command(
        group_,
        "expire",
        "mark prescriptions past their validity expired",
        cmd_expire,
        json_output=True,
    )

    p = add_command(
        group_,
        "purge",
        f"delete records older than the retention period ({RETENTION_YEARS} years)",
        cmd_purge,
        json_output=True,
    )
    p.add_argument("--older-than-years", type=int, default=RETENTION_YEARS, metavar="N")
    p.add_argument("--dry-run", action="store_true", help="only list what would be purged")
