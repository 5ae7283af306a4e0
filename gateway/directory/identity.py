"""The rules every Directory implementation applies to an identity before storing it.

`normalise(kind, identity)` checks each field (identifiers through gateway.identifiers, the rest
through validate) and returns the cleaned identity, or raises a GatewayError naming the field and
the rule; add and update go through it, so both refuse the same input.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway import identifiers as ids
from gateway.directory import validate as v
from gateway.directory.model import (
    Application,
    MailboxKind,
    Organisation,
    OrganisationKind,
    Patient,
    Professional,
    RemoteEntry,
    RemoteKind,
)
from gateway.errors import InvalidIdentifier
from gateway.texts import t

KIND_FIELD = {
    MailboxKind.PER: "professional",
    MailboxKind.ORG: "organisation",
    MailboxKind.PATIENT: "patient",
    MailboxKind.APP: "application",
}
KIND_CLASS: dict[MailboxKind, type] = {
    MailboxKind.PER: Professional,
    MailboxKind.ORG: Organisation,
    MailboxKind.PATIENT: Patient,
    MailboxKind.APP: Application,
}


def _professional(p: Professional) -> Professional:
    rpps = ids.rpps(p.rpps) if p.rpps else None
    adeli = ids.adeli(p.adeli) if p.adeli else None
    if not rpps and not adeli:
        raise InvalidIdentifier("rpps", "", "a professional needs an RPPS (or ADELI) number")
    return dataclasses.replace(
        p,
        rpps=rpps,
        adeli=adeli,
        family_name=v.text(p.family_name, "family-name"),
        given_name=v.text(p.given_name, "given-name"),
        profession=v.profession(p.profession),
        specialty=v.specialty(p.specialty),
        structure=v.address(p.structure, "structure") if p.structure else None,
        title=v.text(p.title, "title", required=False, max_len=20) or None,
        phone=v.phone(p.phone),
        savoir_faire=v.savoir_faire(p.savoir_faire),
    )


def _organisation(o: Organisation) -> Organisation:
    finess = ids.finess(o.finess) if o.finess else None
    siret = ids.siret(o.siret) if o.siret else None
    if not finess and not siret:
        raise InvalidIdentifier("finess", "", "a structure needs a FINESS (or SIRET) number")
    try:
        kind = OrganisationKind(str(o.kind).strip().lower())
    except ValueError:
        raise v.InvalidField(
            "kind", o.kind, t("one of {choices}",
                              choices=", ".join(k.value for k in OrganisationKind))
        ) from None
    return dataclasses.replace(
        o,
        finess=finess,
        siret=siret,
        name=v.text(o.name, "name"),
        kind=kind,
        address=v.multiline(o.address, "address"),
        phone=v.phone(o.phone),
    )


def _patient(p: Patient) -> Patient:
    ins = ids.ins(p.ins)
    sex = v.sex(p.sex)
    born = v.birth_date(p.birth_date)
    v.ins_matches_traits(ins, sex, born)
    return dataclasses.replace(
        p,
        ins=ins,
        birth_name=v.text(p.birth_name, "birth-name"),
        given_names=v.text(p.given_names, "given-names"),
        sex=sex,
        birth_date=born,
        birth_place=v.birth_place(p.birth_place),
        objects_to_prescriber_feedback=bool(p.objects_to_prescriber_feedback),
    )


def _application(a: Application) -> Application:
    return dataclasses.replace(a, name=v.text(a.name, "name"))


NORMALISE: dict[MailboxKind, Any] = {
    MailboxKind.PER: _professional,
    MailboxKind.ORG: _organisation,
    MailboxKind.PATIENT: _patient,
    MailboxKind.APP: _application,
}


def default_display_name(identity: Any) -> str:
    if isinstance(identity, Professional):
        title = f"{identity.title} " if identity.title else ""
        return f"{title}{identity.given_name} {identity.family_name}"
    if isinstance(identity, Patient):
        return f"{identity.given_names.split()[0]} {identity.birth_name}"
    return str(identity.name)


def normalise(kind: MailboxKind, identity: Any) -> Any:
    return NORMALISE[kind](identity)


def normalise_remote(entry: RemoteEntry) -> RemoteEntry:
    """A remote entry's fields checked as a local mailbox's are (identifiers by their check
    digit): a professional needs an RPPS or ADELI number, a pharmacy or structure a FINESS or
    SIRET number. The address's domain is the repository's to check (not ours)."""
    try:
        kind = RemoteKind(str(entry.kind).strip().lower())
    except ValueError:
        raise v.InvalidField(
            "kind", entry.kind,
            t("one of {choices}", choices=", ".join(k.value for k in RemoteKind))
        ) from None
    rpps = ids.rpps(entry.rpps) if entry.rpps else None
    adeli = ids.adeli(entry.adeli) if entry.adeli else None
    finess = ids.finess(entry.finess) if entry.finess else None
    siret = ids.siret(entry.siret) if entry.siret else None
    if kind is RemoteKind.PROFESSIONAL and not (rpps or adeli):
        raise InvalidIdentifier("rpps", "", "a professional needs an RPPS (or ADELI) number")
    if kind is not RemoteKind.PROFESSIONAL and not (finess or siret):
        raise InvalidIdentifier("finess", "", t("a {kind} needs a FINESS (or SIRET) number",
                                                kind=kind.value))
    profession = (entry.profession or "").strip() or None
    if profession is not None and not profession.isdigit():
        raise v.InvalidField("profession", profession, "a TRE_G15 code is digits (e.g. 10, 21)")
    return dataclasses.replace(
        entry,
        address=v.address(entry.address),
        kind=kind,
        name=v.text(entry.name, "name"),
        rpps=rpps,
        adeli=adeli,
        finess=finess,
        siret=siret,
        profession=profession,
        specialty=v.specialty(entry.specialty),
        organisation=v.text(entry.organisation, "organisation", required=False) or None,
        source=entry.source if entry.source in ("manual", "annuaire") else "manual",
    )
