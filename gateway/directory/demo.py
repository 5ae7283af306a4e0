"""The demo population `mssgw init --demo` registers, with fixed addresses and identifiers.

Sample forms in examples/ and other parts' tests name these people: keep the values stable.
Addresses are `<local part>@<gateway domain>` (default domain mssgw.localhost, so the doctor is
dr.martin@mssgw.localhost); the patient is `<INS>@patient.<domain>`.
"""

from __future__ import annotations

import secrets
from datetime import date
from typing import TYPE_CHECKING

from gateway.directory.model import (
    Application,
    Organisation,
    OrganisationKind,
    Patient,
    Professional,
)

if TYPE_CHECKING:
    from gateway.runtime import Runtime

# The doctor: a general practitioner (médecin, qualified in general medicine).
DOCTOR_LOCAL = "dr.martin"
DOCTOR_RPPS = "10100123453"
DOCTOR_FAMILY_NAME = "MARTIN"
DOCTOR_GIVEN_NAME = "Jean"
DOCTOR_PROFESSION = "10"  # médecin
DOCTOR_SPECIALTY = "SM26"  # qualifié en médecine générale

# The doctor's practice (an ORG mailbox: the ordonnance needs the prescriber's postal address).
PRACTICE_LOCAL = "cabinet.martin"
PRACTICE_SIRET = "82512345000017"
PRACTICE_NAME = "Cabinet du Dr Martin"
PRACTICE_ADDRESS = "3 place Drouet d'Erlon\n51100 Reims"
PRACTICE_PHONE = "03 26 00 00 01"

# The pharmacy and its pharmacist.
PHARMACY_LOCAL = "pharmacie.centrale"
PHARMACY_FINESS = "510004567"
PHARMACY_NAME = "Pharmacie Centrale"
PHARMACY_ADDRESS = "12 rue de Vesle\n51100 Reims"
PHARMACY_PHONE = "03 26 00 00 02"
PHARMACIST_LOCAL = "ph.durand"
PHARMACIST_RPPS = "10100678902"
PHARMACIST_FAMILY_NAME = "DURAND"
PHARMACIST_GIVEN_NAME = "Claire"
PHARMACIST_PROFESSION = "21"  # pharmacien

# The patient: a valid test INS-NIR and its five identity traits (sex, year and month agree).
PATIENT_INS = "279035121518989"
PATIENT_BIRTH_NAME = "DUPONT"
PATIENT_GIVEN_NAMES = "Chloé Marie"
PATIENT_SEX = "F"
PATIENT_BIRTH_DATE = date(1979, 3, 15)
PATIENT_BIRTH_PLACE = "51215"

# The gateway's own robot mailbox (APP): it sends ordonnances and verification reports.
ROBOT_LOCAL = "ordonnances"
ROBOT_NAME = "Service ordonnances mssgw"


def doctor_address(domain: str) -> str:
    return f"{DOCTOR_LOCAL}@{domain}"


def practice_address(domain: str) -> str:
    return f"{PRACTICE_LOCAL}@{domain}"


def pharmacy_address(domain: str) -> str:
    return f"{PHARMACY_LOCAL}@{domain}"


def pharmacist_address(domain: str) -> str:
    return f"{PHARMACIST_LOCAL}@{domain}"


def patient_address(domain: str) -> str:
    """`domain` is the gateway domain: the patient is <INS>@patient.<domain>."""
    return f"{PATIENT_INS}@patient.{domain}"


def robot_address(domain: str) -> str:
    return f"{ROBOT_LOCAL}@{domain}"


def register(runtime: Runtime) -> list[str]:
    """DEMO_STEP of `mssgw init --demo`: add whatever demo mailbox is missing, with a password.

    Passwords are random and printed once, when the mailbox is created.
    """
    domain = runtime.config.gateway.domain.lower()
    directory = runtime.directory
    practice = Organisation(
        finess=None,
        siret=PRACTICE_SIRET,
        name=PRACTICE_NAME,
        kind=OrganisationKind.PRACTICE,
        address=PRACTICE_ADDRESS,
        phone=PRACTICE_PHONE,
    )
    pharmacy = Organisation(
        finess=PHARMACY_FINESS,
        siret=None,
        name=PHARMACY_NAME,
        kind=OrganisationKind.PHARMACY,
        address=PHARMACY_ADDRESS,
        phone=PHARMACY_PHONE,
    )
    doctor = Professional(
        rpps=DOCTOR_RPPS,
        adeli=None,
        family_name=DOCTOR_FAMILY_NAME,
        given_name=DOCTOR_GIVEN_NAME,
        profession=DOCTOR_PROFESSION,
        specialty=DOCTOR_SPECIALTY,
        structure=practice_address(domain),
        title="Dr",
        phone=PRACTICE_PHONE,
    )
    pharmacist = Professional(
        rpps=PHARMACIST_RPPS,
        adeli=None,
        family_name=PHARMACIST_FAMILY_NAME,
        given_name=PHARMACIST_GIVEN_NAME,
        profession=PHARMACIST_PROFESSION,
        structure=pharmacy_address(domain),
    )
    patient = Patient(
        ins=PATIENT_INS,
        birth_name=PATIENT_BIRTH_NAME,
        given_names=PATIENT_GIVEN_NAMES,
        sex=PATIENT_SEX,
        birth_date=PATIENT_BIRTH_DATE,
        birth_place=PATIENT_BIRTH_PLACE,
    )
    steps = [  # structures before the professionals who reference them
        ("practice", practice_address(domain), lambda a: directory.add_organisation(a, practice)),
        ("doctor", doctor_address(domain), lambda a: directory.add_professional(a, doctor)),
        ("pharmacy", pharmacy_address(domain), lambda a: directory.add_organisation(a, pharmacy)),
        (
            "pharmacist",
            pharmacist_address(domain),
            lambda a: directory.add_professional(a, pharmacist),
        ),
        ("patient", patient_address(domain), lambda a: directory.add_patient(patient)),
        (
            "robot",
            robot_address(domain),
            lambda a: directory.add_application(a, Application(ROBOT_NAME)),
        ),
    ]
    lines: list[str] = []
    existing: list[str] = []
    for label, address, add in steps:
        if directory.get(address) is not None:
            existing.append(address)
            continue
        mailbox = add(address)
        password = secrets.token_urlsafe(12)
        directory.set_password(address, password)
        lines.append(f"demo {label}: {address} ({mailbox.display_name}) password: {password}")
    if not lines:
        print(f"the demo population already exists ({len(existing)} mailboxes, e.g. "
              f"{doctor_address(domain)}); its passwords were printed when it was created")
    return lines
