"""The clinical data model: what a prescription and a dispensation say, independent of CDA.

The CDA builder and parser, the doctor's mail form, the ordonnance PDF, the registry and the DMP
all speak this model. Pure, frozen dataclasses; quantities are Decimal (never float) so that
build -> parse round-trips exactly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum


class SubstitutionRefusal(StrEnum):
    """Why a line is 'non substituable' (public health code)."""

    MTE = "MTE"  # narrow therapeutic margin
    EFG = "EFG"  # child under 6 without a suitable generic
    CIF = "CIF"  # contraindication to an excipient of known effect


@dataclass(frozen=True)
class PatientInfo:
    ins: str  # INS-NIR, 15 characters
    ins_oid: str  # 1.2.250.1.213.1.4.8 (NIR), .9 (NIA), .10 (test), .11 (demo)
    birth_name: str
    given_names: str
    sex: str  # "F" | "M"
    birth_date: dt.date
    birth_place: str | None = None  # INSEE code
    used_name: str | None = None
    address: str | None = None


@dataclass(frozen=True)
class StructureInfo:
    national_id: str  # "1" + FINESS or "3" + SIRET (root 1.2.250.1.71.4.2.2)
    name: str
    address: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class AuthorInfo:
    national_id: str  # "8" + RPPS or "0" + ADELI (root 1.2.250.1.71.4.2.1)
    family_name: str
    given_name: str
    profession: str  # e.g. "10" médecin, "21" pharmacien
    specialty: str | None = None  # e.g. "SM26"
    title: str | None = None
    phone: str | None = None
    email: str | None = None
    structure: StructureInfo | None = None

    @property
    def rpps(self) -> str | None:
        return self.national_id[1:] if self.national_id.startswith("8") else None


@dataclass(frozen=True)
class Product:
    """A medicine: coded by CIS (and/or CIP13), or free text (magistral preparation)."""

    label: str
    cis: str | None = None
    cip13: str | None = None
    atc: str | None = None
    form: str | None = None  # e.g. "comprimé"
    magistral: bool = False


@dataclass(frozen=True)
class Dose:
    quantity: Decimal
    unit: str  # UCUM or a plain unit label, e.g. "{comprime}", "mg"


@dataclass(frozen=True)
class Frequency:
    """'n times per period': e.g. 3 per 1 day."""

    times: int
    period_value: Decimal = Decimal(1)
    period_unit: str = "d"  # UCUM: h, d, wk, mo


@dataclass(frozen=True)
class PrescriptionLine:
    product: Product
    dose: Dose | None = None  # structured dosage, or
    frequency: Frequency | None = None
    dosage_text: str | None = None  # free-text dosage instructions (always rendered if present)
    duration_days: int | None = None
    quantity: Decimal | None = None  # number of packs (boxes) to dispense
    quantity_unit: str = "boîte"
    renewals: int = 0  # "à renouveler N fois"
    substitutable: bool = True
    substitution_refusal: SubstitutionRefusal | None = None  # required when not substitutable
    ald: bool = False  # related to the long-term illness (bizone upper zone)
    route: str | None = None  # EDQM route code, e.g. "20053000" oral
    line_id: str | None = None  # stable id of the line inside the document


@dataclass(frozen=True)
class Prescription:
    patient: PatientInfo
    author: AuthorInfo
    date: dt.datetime  # when it was written (document effectiveTime)
    lines: tuple[PrescriptionLine, ...]
    validity_end: dt.date | None = None  # default: 3 months after the date
    identifier: str | None = None  # e-prescription id, 18 chars (documentationOf/serviceEvent/id)
    bizone: bool = False  # ALD layout (MED-1096)
    exception_drugs: bool = False  # MED-1097
    secured: bool = False  # MED-1098
    document_id: str | None = None  # ClinicalDocument/id (uuid-based OID or root^extension)
    set_id: str | None = None
    version: int = 1
    title: str = "Prescription de produits de santé"
    notes: str | None = None


@dataclass(frozen=True)
class DispensedLine:
    line_ref: str  # PrescriptionLine.line_id, or its 1-based position as text
    product: Product  # what was actually delivered
    quantity: Decimal
    substituted: bool = False
    substitution_reason: str | None = None
    adjustment_reason: str | None = None  # dose adjusted with the prescriber's agreement
    not_delivered_reason: str | None = None


@dataclass(frozen=True)
class Dispensation:
    prescription_id: str  # e-prescription identifier
    prescription_document_id: str  # the prescription's ClinicalDocument/id (inFulfillmentOf)
    patient: PatientInfo
    author: AuthorInfo  # the pharmacist
    date: dt.datetime
    lines: tuple[DispensedLine, ...]
    document_id: str | None = None
    set_id: str | None = None
    version: int = 1
    notes: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
