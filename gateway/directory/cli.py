"""`mssgw directory ...`: register and manage mailboxes (PER, ORG, APP, patients)."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import sys
from typing import Any

from gateway.admins.model import Caller
from gateway.audit import local_actor
from gateway.cli import add_command, command_group, print_json, runtime_of
from gateway.directory.admin import MailboxService, identifier_of, mailbox_dict, plain
from gateway.directory.codes import PROFESSIONS, SAVOIR_FAIRE
from gateway.directory.model import Mailbox, MailboxKind, MailboxState, OrganisationKind
from gateway.errors import GatewayError

KIND_CHOICES = [k.value for k in OrganisationKind]


def _service(args: argparse.Namespace) -> MailboxService:
    rt = runtime_of(args)  # its directory audits changes under the local user
    return MailboxService(rt.directory, rt.audit.record, Caller.local(local_actor()))


def _print_added(args: argparse.Namespace, m: Mailbox) -> None:
    if getattr(args, "json", False):
        print_json(mailbox_dict(m))
    else:
        print(m.address)


# --- add ------------------------------------------------------------------------------------


def cmd_add_professional(args: argparse.Namespace) -> None:
    m = _service(args).add_professional(
        email=args.email, rpps=args.rpps, adeli=args.adeli, family_name=args.family_name,
        given_name=args.given_name, profession=args.profession, specialty=args.specialty,
        structure=args.structure, title=args.title, phone=args.phone,
        display_name=args.display_name, savoir_faire=args.savoir_faire,
    )
    _print_added(args, m)


def cmd_add_organisation(args: argparse.Namespace) -> None:
    m = _service(args).add_organisation(
        email=args.email, finess=args.finess, siret=args.siret, name=args.name, kind=args.kind,
        address=args.address, phone=args.phone, display_name=args.display_name,
    )
    _print_added(args, m)


def cmd_add_patient(args: argparse.Namespace) -> None:
    m = _service(args).add_patient(
        ins=args.ins, birth_name=args.birth_name, given_names=args.given_names, sex=args.sex,
        birth_date=args.birth_date, birth_place=args.birth_place,
        objects_to_prescriber_feedback=args.objects_to_prescriber_feedback,
    )
    _print_added(args, m)


def cmd_add_application(args: argparse.Namespace) -> None:
    _print_added(args, _service(args).add_application(email=args.email, name=args.name))


# --- read -----------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> None:
    found = _service(args).list_all(
        kind=args.kind, domain=args.domain, search=args.search, state=args.state
    )
    if args.json:
        print_json([mailbox_dict(m) for m in found])
        return
    if not found:
        print("no mailbox matches", file=sys.stderr)
        return
    width = max(len(m.address) for m in found)
    for m in found:
        state_mark = "" if m.active else "  [suspended]"
        print(
            f"{m.address:<{width}}  {m.kind.value:<7}  {m.display_name}  ({identifier_of(m)})"
            f"{state_mark}"
        )


def cmd_show(args: argparse.Namespace) -> None:
    m = _service(args).show(args.email)
    if args.json:
        print_json(mailbox_dict(m))
        return
    print(f"address:      {m.address}")
    print(f"kind:         {m.kind.value}")
    print(f"display name: {m.display_name}")
    print(f"state:        {m.state.value}")
    print(f"password:     {'set' if m.has_password else 'not set'}")
    identity = m.professional or m.organisation or m.patient or m.application
    if identity is not None:
        for f in dataclasses.fields(identity):
            value = plain(getattr(identity, f.name))
            if value in (None, ""):
                continue
            if f.name == "profession":
                value = f"{value} ({PROFESSIONS.get(str(value), '?')})"
            elif f.name in ("specialty", "savoir_faire"):
                codes = [value] if isinstance(value, str) else list(value)
                value = ", ".join(f"{c} ({SAVOIR_FAIRE[c]})" if c in SAVOIR_FAIRE else str(c)
                                  for c in codes)
            label = f.name.replace("_", " ") + ":"
            print(f"{label:<14}{str(value).replace(chr(10), ' / ')}")
    print(f"created:      {plain(m.created_at)}")
    print(f"updated:      {plain(m.updated_at)}")


# --- change ---------------------------------------------------------------------------------

_UPDATE_FIELDS = [
    # (option, attribute, help)
    ("--display-name", "display_name", "name shown in mail clients"),
    ("--rpps", "rpps", "PER: RPPS number"),
    ("--adeli", "adeli", "PER: ADELI number"),
    ("--family-name", "family_name", "PER: family name"),
    ("--given-name", "given_name", "PER: given name"),
    ("--profession", "profession", "PER: TRE_G15 profession code"),
    ("--specialty", "specialty", "PER: TRE_R38 specialty code ('' clears it)"),
    ("--savoir-faire", "savoir_faire",
     "PER: JDV_J107 codes beyond the specialty, e.g. C35,CAPA06 ('' clears them)"),
    ("--structure", "structure", "PER: address of the ORG mailbox ('' clears it)"),
    ("--title", "title", "PER: title, e.g. Dr ('' clears it)"),
    ("--finess", "finess", "ORG: FINESS number"),
    ("--siret", "siret", "ORG: SIRET number"),
    ("--name", "name", "ORG/APP: name"),
    ("--kind", "kind", "ORG: pharmacy, practice, hospital or other"),
    ("--address", "address", "ORG: postal address (lines separated by \\n)"),
    ("--phone", "phone", "PER/ORG: phone number"),
    ("--birth-name", "birth_name", "patient: birth name"),
    ("--given-names", "given_names", "patient: birth given names"),
    ("--sex", "sex", "patient: F or M"),
    ("--birth-date", "birth_date", "patient: YYYY-MM-DD"),
    ("--birth-place", "birth_place", "patient: INSEE code of the birth commune"),
]


def cmd_update(args: argparse.Namespace) -> None:
    changes: dict[str, Any] = {}
    for _, attr, _ in _UPDATE_FIELDS:
        value = getattr(args, attr)
        if value is not None:
            changes[attr] = value
    if args.feedback_objection is not None:
        changes["objects_to_prescriber_feedback"] = args.feedback_objection == "yes"
    m = _service(args).update(args.email, changes)
    print(f"updated {m.address}")


def cmd_suspend(args: argparse.Namespace) -> None:
    m = _service(args).suspend(args.email)
    print(f"suspended {m.address}: it can no longer log in or receive mail")


def cmd_resume(args: argparse.Namespace) -> None:
    m = _service(args).resume(args.email)
    print(f"resumed {m.address}")


def cmd_delete(args: argparse.Namespace) -> None:
    print(f"deleted {_service(args).delete(args.email)}")


def _read_password() -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.removesuffix("\n").removesuffix("\r")
    first = getpass.getpass("new password: ")
    second = getpass.getpass("again: ")
    if first != second:
        raise GatewayError("password: the two entries differ; nothing changed")
    return first


def cmd_set_password(args: argparse.Namespace) -> None:
    service = _service(args)
    address = service.directory.require(args.email).address  # fail before asking
    print(f"password set for {service.set_password(address, _read_password())}")


def register(sub: Any) -> None:
    group = command_group(sub, "directory", "the trust directory's mailboxes")

    p = add_command(
        group, "add-professional", "add a professional's personal mailbox (PER)",
        cmd_add_professional, json_output=True,
    )
    p.add_argument("--email", required=True, help="the mailbox address, in one of our domains")
    ident = p.add_mutually_exclusive_group()
    ident.add_argument("--rpps", help="RPPS number (11 digits, Luhn)")
    ident.add_argument("--adeli", help="ADELI number (9 digits), for professions without RPPS")
    p.add_argument("--family-name", required=True)
    p.add_argument("--given-name", required=True)
    p.add_argument(
        "--profession", required=True,
        help="TRE_G15 code: 10 médecin, 21 pharmacien, 60 infirmier...",
    )
    p.add_argument("--specialty", help="TRE_R38 code, e.g. SM26 (médecine générale)")
    p.add_argument(
        "--savoir-faire", metavar="CODES",
        help="further savoir-faire of the RPPS (JDV_J107 codes, comma-separated): competences"
        " (C35 cancérologie), capacities (CAPA06 gérontologie), FST (SST24 sommeil)...",
    )
    p.add_argument("--structure", help="address of the ORG mailbox they practise in")
    p.add_argument("--title", help="e.g. Dr")
    p.add_argument("--phone")
    p.add_argument("--display-name", help="default: [title] given-name family-name")

    p = add_command(
        group, "add-organisation", "add a structure's mailbox (ORG): pharmacy, practice...",
        cmd_add_organisation, json_output=True,
    )
    p.add_argument("--email", required=True)
    ident = p.add_mutually_exclusive_group()
    ident.add_argument("--finess", help="FINESS number (9 characters)")
    ident.add_argument("--siret", help="SIRET number (14 digits)")
    p.add_argument("--name", required=True)
    p.add_argument("--kind", required=True, choices=KIND_CHOICES)
    p.add_argument("--address", help="postal address; separate lines with \\n")
    p.add_argument("--phone")
    p.add_argument("--display-name", help="default: the name")

    p = add_command(
        group, "add-patient", "add a patient's mailbox; prints its address <INS>@patient.<domain>",
        cmd_add_patient, json_output=True,
    )
    p.add_argument("--ins", required=True, help="INS-NIR: 15 characters with its key")
    p.add_argument("--birth-name", required=True)
    p.add_argument("--given-names", required=True, help='birth given names, e.g. "Marie Anne"')
    p.add_argument("--sex", required=True, help="F or M")
    p.add_argument("--birth-date", required=True, help="YYYY-MM-DD")
    p.add_argument("--birth-place", required=True, help="INSEE code of the birth commune")
    p.add_argument(
        "--objects-to-prescriber-feedback", action="store_true",
        help="the patient objects to the prescriber being told what was dispensed",
    )

    p = add_command(
        group, "add-application", "add a software mailbox (APP), e.g. a robot",
        cmd_add_application, json_output=True,
    )
    p.add_argument("--email", required=True)
    p.add_argument("--name", required=True)

    p = add_command(
        group, "set-password", "set a mailbox's password (stdin when not a terminal, else prompt)",
        cmd_set_password,
    )
    p.add_argument("email")

    p = add_command(group, "list", "list mailboxes", cmd_list, json_output=True)
    p.add_argument("--kind", choices=[k.value for k in MailboxKind] + ["patient"])
    p.add_argument("--domain", help="only addresses in this domain")
    p.add_argument("--state", choices=[s.value for s in MailboxState])
    p.add_argument("--search", help="words found in the address, names or identifiers")

    p = add_command(group, "show", "show one mailbox", cmd_show, json_output=True)
    p.add_argument("email")

    p = add_command(group, "update", "change fields of a mailbox", cmd_update)
    p.add_argument("email")
    for option, attr, help_text in _UPDATE_FIELDS:
        p.add_argument(option, dest=attr, help=help_text)
    p.add_argument(
        "--feedback-objection", choices=["yes", "no"],
        help="patient: objects to the prescriber being told what was dispensed",
    )

    for name, handler, help_text in (
        ("suspend", cmd_suspend, "suspend a mailbox: no login, no delivery"),
        ("resume", cmd_resume, "make a suspended mailbox active again"),
        ("delete", cmd_delete, "delete a mailbox from the directory"),
    ):
        p = add_command(group, name, help_text, handler)
        p.add_argument("email")

    from gateway.directory import remote_cli  # other operators' professionals and structures

    remote_cli.register(group)
