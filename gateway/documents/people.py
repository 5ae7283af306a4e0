"""Who the forms name: patients by INS, professionals by RPPS or e-mail address.

`People` is the small interface the form parser needs; `DirectoryPeople` answers from the trust
directory (gateway.directory), `StaticPeople` from given records (tests, and callers that
already hold the records, such as the pipeline with the authenticated sender).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.directory.model import Mailbox
from gateway.documents.model import AuthorInfo, PatientInfo, StructureInfo
from gateway.identifiers import OID_INS_NIR, OID_INS_TEST

PHARMACIEN = "21"  # TRE_G15


class People(Protocol):
    def patient(self, ins: str) -> PatientInfo | None: ...

    def professional(self, key: str) -> AuthorInfo | None:
        """`key` is an RPPS number (11 digits) or a mailbox address."""
        ...

    def pharmacists_of(self, address: str) -> list[AuthorInfo] | None:
        """The pharmacists of the pharmacy whose mailbox is `address`, or None when `address`
        is not a pharmacy's mailbox (a pharmacy's team shares its mailbox)."""
        ...


@dataclass
class StaticPeople:
    patients: dict[str, PatientInfo] = field(default_factory=dict)  # by INS
    professionals: dict[str, AuthorInfo] = field(default_factory=dict)  # by RPPS and by address

    @classmethod
    def of(cls, patients: Iterable[PatientInfo], professionals: Iterable[AuthorInfo]
           ) -> StaticPeople:
        people = cls()
        for p in patients:
            people.patients[p.ins] = p
        for a in professionals:
            if a.rpps:
                people.professionals[a.rpps] = a
            if a.email:
                people.professionals[a.email.lower()] = a
        return people

    def patient(self, ins: str) -> PatientInfo | None:
        return self.patients.get(ins)

    def professional(self, key: str) -> AuthorInfo | None:
        return self.professionals.get(key.lower())

    def pharmacists_of(self, address: str) -> list[AuthorInfo] | None:
        return None


def _phone(value: str | None) -> str | None:
    # tel: URIs allow no spaces (RFC 3966): keep the digits (and a leading +).
    return "".join(c for c in value if c.isdigit() or c == "+") or None if value else None


def patient_info(mailbox: Mailbox, ins_oid: str = OID_INS_TEST) -> PatientInfo | None:
    p = mailbox.patient
    if p is None:
        return None
    return PatientInfo(ins=p.ins, ins_oid=ins_oid, birth_name=p.birth_name,
                       given_names=p.given_names, sex=p.sex, birth_date=p.birth_date,
                       birth_place=p.birth_place)


def author_info(mailbox: Mailbox, structure: Mailbox | None) -> AuthorInfo | None:
    pro = mailbox.professional
    if pro is None:
        return None
    national_id = "8" + pro.rpps if pro.rpps else "0" + (pro.adeli or "")
    info = None
    org = structure.organisation if structure is not None else None
    if org is not None:
        info = StructureInfo(
            national_id="1" + org.finess if org.finess else "3" + (org.siret or ""),
            name=org.name, address=org.address, phone=_phone(org.phone))
    return AuthorInfo(national_id=national_id, family_name=pro.family_name,
                      given_name=pro.given_name, profession=pro.profession,
                      specialty=pro.specialty, title=pro.title, phone=_phone(pro.phone),
                      email=mailbox.address, structure=info)


class DirectoryPeople:
    """People from the trust directory (any object with get/find_by_rpps/find_by_ins).

    `ins_oid`: the gateway registers real patients under INS-NIR; the demo and test gateways
    use the test root (config decides, default: test)."""

    def __init__(self, directory: Any, ins_oid: str = OID_INS_TEST) -> None:
        self.directory = directory
        self.ins_oid = ins_oid if ins_oid else OID_INS_NIR

    def patient(self, ins: str) -> PatientInfo | None:
        mailbox = self.directory.find_by_ins(ins)
        return patient_info(mailbox, self.ins_oid) if mailbox is not None else None

    def professional(self, key: str) -> AuthorInfo | None:
        mailbox = self.directory.get(key) if "@" in key else self.directory.find_by_rpps(key)
        if mailbox is None or mailbox.professional is None:
            return None
        structure_address = mailbox.professional.structure
        structure = self.directory.get(structure_address) if structure_address else None
        return author_info(mailbox, structure)

    def pharmacists_of(self, address: str) -> list[AuthorInfo] | None:
        pharmacy = self.directory.get(address)
        if pharmacy is None or not pharmacy.is_pharmacy:
            return None
        team = [m for m in self.directory.members_of(pharmacy.address)
                if m.active and m.professional is not None
                and m.professional.profession == PHARMACIEN]
        return [a for a in (author_info(m, pharmacy) for m in team) if a is not None]
