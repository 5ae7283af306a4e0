"""The trust directory's objects: mailboxes (PER, ORG, APP, patient) and trust-space domains.

Plain frozen dataclasses, shared by every capability (SMTP and IMAP authenticate against them,
documents take author and patient from them). The repository lives beside this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class MailboxKind(StrEnum):
    PER = "PER"  # one professional
    ORG = "ORG"  # a structure (pharmacy team, practice, hospital service)
    APP = "APP"  # software, e.g. the gateway's own robot mailbox
    PATIENT = "PATIENT"


class MailboxState(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class OrganisationKind(StrEnum):
    PHARMACY = "pharmacy"
    PRACTICE = "practice"
    HOSPITAL = "hospital"
    OTHER = "other"


@dataclass(frozen=True)
class Professional:
    rpps: str | None  # 11 digits, Luhn; or
    adeli: str | None  # 9 digits
    family_name: str
    given_name: str
    profession: str  # code from 1.2.250.1.213.1.1.4.5, e.g. "10" médecin, "21" pharmacien
    specialty: str | None = None  # e.g. "SM26" (médecine générale)
    structure: str | None = None  # address of the ORG mailbox they practise in
    title: str | None = None  # e.g. "Dr"
    phone: str | None = None
    # Further savoir-faire the RPPS records beside the specialty (JDV_J107 codes: competences
    # "C35" cancérologie, capacities "CAPA06" gérontologie, FST "SST24" sommeil...): what the
    # drug database's "prescription réservée aux ..." conditions are checked against.
    savoir_faire: tuple[str, ...] = ()


@dataclass(frozen=True)
class Organisation:
    finess: str | None  # 9 characters; or
    siret: str | None  # 14 digits
    name: str
    kind: OrganisationKind
    address: str | None = None  # postal address, one line per "\n"
    phone: str | None = None


@dataclass(frozen=True)
class Patient:
    ins: str  # INS-NIR, 15 characters, key checked
    birth_name: str
    given_names: str  # birth first names, space-separated, the first one first
    sex: str  # "F" | "M"
    birth_date: date
    birth_place: str  # INSEE code of the birth commune ("99xxx" abroad)
    objects_to_prescriber_feedback: bool = False


@dataclass(frozen=True)
class Application:
    name: str


@dataclass(frozen=True)
class Mailbox:
    address: str  # lower-case e-mail address, unique
    kind: MailboxKind
    display_name: str
    state: MailboxState = MailboxState.ACTIVE
    professional: Professional | None = None  # set for PER
    organisation: Organisation | None = None  # set for ORG
    patient: Patient | None = None  # set for PATIENT
    application: Application | None = None  # set for APP
    created_at: datetime | None = None
    updated_at: datetime | None = None
    has_password: bool = False

    @property
    def active(self) -> bool:
        return self.state is MailboxState.ACTIVE

    @property
    def is_pharmacy(self) -> bool:
        return self.organisation is not None and self.organisation.kind is OrganisationKind.PHARMACY


@dataclass(frozen=True)
class TrustDomain:
    """A mail domain we exchange with. `ours` for our own domains; peers carry the expected
    subject DN of their operator's certificate (the whitelist model)."""

    name: str
    ours: bool = False
    operator_dn: str | None = None
    description: str | None = None
    contacts: dict[str, str] = field(default_factory=dict)
    updated: str | None = None  # DateMAJ from the whitelist
    # Every DN the domain's operator may present (a domain served by several servers is listed
    # once per certificate); operator_dn is the most recent of them.
    operator_dns: tuple[str, ...] = ()
    source: str = "manual"  # "own" (ours), "whitelist" (imported) or "manual" (trust add-domain)


class RemoteKind(StrEnum):
    """What a mailbox hosted by another operator is, as far as the patient rules care."""

    PROFESSIONAL = "professional"  # a professional's personal mailbox (PER)
    PHARMACY = "pharmacy"  # a pharmacy's mailbox (ORG): patients may send it prescriptions
    STRUCTURE = "structure"  # any other structure's mailbox (ORG: practice, hospital, lab...)


@dataclass(frozen=True)
class RemoteEntry:
    """A professional's or structure's mailbox hosted by another operator of the trust space.

    The directory knows them so the patient rules can tell a pharmacy from anyone else (a
    patient may send a prescription to any pharmacy of the trust space) and the flows can name
    who they write to. A remote entry never logs in and holds no mail here: it is not a
    `Mailbox`. `source`: "manual" (`mssgw directory add-remote`) or "annuaire" (imported from
    the national directory's list of MSSanté mailboxes); a manual entry is never replaced or
    removed by an import."""

    address: str
    kind: RemoteKind
    name: str
    rpps: str | None = None
    adeli: str | None = None
    finess: str | None = None
    siret: str | None = None
    profession: str | None = None  # TRE_G15 code, e.g. "10" médecin, "21" pharmacien
    specialty: str | None = None  # TRE_R38 savoir-faire code, e.g. "SM26"
    organisation: str | None = None  # the structure's name (raison sociale)
    source: str = "manual"
    updated_at: datetime | None = None

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    @property
    def takes_prescriptions(self) -> bool:
        """A patient may send it a prescription without its having written first: a pharmacy,
        or a pharmacist (profession 21) in person."""
        return self.kind is RemoteKind.PHARMACY or self.profession == "21"
