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
from zoneinfo import ZoneInfo

# The calendar prescriptions are dated in: a moment's day is the day a French reader reads
# (00:30 in Paris is still 23:30 UTC the day before).
FRANCE = ZoneInfo("Europe/Paris")


def french_day(moment: dt.datetime) -> dt.date:
    """The day `moment` falls on in France (a naive moment is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(FRANCE).date()


def on_day(day: dt.date) -> dt.datetime:
    """The moment a document dated `day` alone is held as: 00:00 UTC, which falls on `day` in
    France too (with `day_only`, no time is written)."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


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
    """How much at each intake: `quantity`, or a range from `quantity` to `high` ("1 à 2
    comprimés"; CDA doseQuantity low/high)."""

    quantity: Decimal
    unit: str  # UCUM or a plain unit label, e.g. "{tablet}", "mg"
    high: Decimal | None = None  # None: exactly `quantity`


@dataclass(frozen=True)
class Frequency:
    """'n times per period': e.g. 3 per 1 day."""

    times: int
    period_value: Decimal = Decimal(1)
    period_unit: str = "d"  # UCUM: h, d, wk, mo


@dataclass(frozen=True)
class Moment:
    """A time of day at which a dose is taken, once a day: either an HL7 TimingEvent (`event`:
    "HS" at bedtime, "C" with meals, "CM" breakfast, "ACM" before breakfast, "WAKE"...; CDA
    EIVL_TS) or a clock time, meant approximately (`time`: 08:00 "le matin"; CDA PIVL_TS with
    a phase, institutionSpecified). The words for the usual ones are in `documents.cda`
    (MOMENTS, moment_words)."""

    event: str | None = None
    time: dt.time | None = None

    def __post_init__(self) -> None:
        if (self.event is None) == (self.time is None):
            raise ValueError("a Moment is either an event or a clock time")


@dataclass(frozen=True)
class Phase:
    """One period of a posology: the dose of each intake, how often, at which times of day,
    for how long. `moments` say when (and so how many intakes a day: one per moment);
    `frequency` says how often when no time of day is given (both may be given when they agree,
    e.g. 2 per day, morning and evening). A line's posology is one phase, or several one after
    the other (doses progressives: 3 a day for 2 days, then 2 a day for 4 days).

    Different doses at different times of day ("1 comprimé le matin, 2 le soir": split dosing)
    are `doses`, one per moment in the order of `moments`, with `dose` None; the canonical form
    (what the form and the parser return) uses `doses` only when they differ. `dose_at(i)` is
    the dose at the i-th moment either way; `intakes()` pairs them."""

    dose: Dose | None = None
    frequency: Frequency | None = None
    moments: tuple[Moment, ...] = ()
    duration_days: int | None = None
    doses: tuple[Dose, ...] = ()  # split dosing: the dose at each of `moments`, in order

    @property
    def structured(self) -> bool:
        return bool(self.dose or self.frequency or self.moments or self.duration_days
                    or self.doses)

    def dose_at(self, i: int) -> Dose | None:
        """The dose taken at `moments[i]` (the phase's own `dose` unless split)."""
        return self.doses[i] if self.doses else self.dose

    def intakes(self) -> tuple[tuple[Moment, Dose | None], ...]:
        """(time of day, dose) for each of `moments`."""
        return tuple((m, self.dose_at(i)) for i, m in enumerate(self.moments))

    @property
    def all_doses(self) -> tuple[Dose, ...]:
        """Every dose the phase names (the common one, or each split one): what checks read."""
        return self.doses if self.doses else ((self.dose,) if self.dose else ())


@dataclass(frozen=True)
class PrescriptionLine:
    product: Product
    phases: tuple[Phase, ...] = ()  # the structured posology (none: free text only)
    dosage_text: str | None = None  # free-text dosage instructions (always rendered if present)
    quantity: Decimal | None = None  # number of packs (boxes) to dispense
    quantity_unit: str = "boîte"
    renewals: int = 0  # "à renouveler N fois"
    substitutable: bool = True
    substitution_refusal: SubstitutionRefusal | None = None  # required when not substitutable
    ald: bool = False  # related to the long-term illness (bizone upper zone)
    route: str | None = None  # EDQM route code, e.g. "20053000" oral
    line_id: str | None = None  # stable id of the line inside the document

    # Readers of a one-phase posology (the PDF, the rules): the phase's values; with several
    # phases `dose` and `frequency` are None (read `phases`) and `duration_days` is the total.
    @property
    def dose(self) -> Dose | None:
        return self.phases[0].dose if len(self.phases) == 1 else None

    @property
    def frequency(self) -> Frequency | None:
        return self.phases[0].frequency if len(self.phases) == 1 else None

    @property
    def moments(self) -> tuple[Moment, ...]:
        return self.phases[0].moments if len(self.phases) == 1 else ()

    @property
    def duration_days(self) -> int | None:
        """The treatment's length: the phases' durations added (None when one is not said)."""
        days = [p.duration_days for p in self.phases]
        if not days or any(d is None for d in days):
            return None
        return sum(d for d in days if d is not None)


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
    # The prescriber dated it by the day alone (a form's "Date :" other than the day it was
    # sent; a document whose effectiveTime has no time): `date` is that day (`on_day`) and the
    # document says the day, never a clock time nobody wrote.
    day_only: bool = False

    @property
    def day(self) -> dt.date:
        """The prescription's date, as the ordonnance prints it (validity and treatment start
        count from it)."""
        return self.date.date() if self.day_only else french_day(self.date)


class DispensingKind(StrEnum):
    """What the pharmacist did with a prescribed line: five different facts, each recorded and
    encoded as itself in the eDISP document (see build._dispensation_entry)."""

    DELIVERED = "delivered"  # délivré tel que prescrit
    PARTIAL = "partial"  # délivré partiellement: part now, the rest at a later visit
    SUBSTITUTED = "substituted"  # substitué: another medicine (a generic) in its place
    ADAPTED = "adapted"  # adapté (posology or quantity) with the prescriber's agreement
    NOT_DELIVERED = "not_delivered"  # non délivré (quantity 0)


@dataclass(frozen=True)
class DispensedLine:
    line_ref: str  # PrescriptionLine.line_id, or its 1-based position as text
    product: Product  # what was actually delivered
    quantity: Decimal
    kind: DispensingKind = DispensingKind.DELIVERED
    quantity_unit: str = "boîte"
    reason: str | None = None  # the pharmacist's why: motive, agreement, what is missing...
    # The posology when it changed: ADAPTED (or with a substitute, or a part fill); the eDISP
    # gives a line one only then (FR-Traitement, "uniquement si la posologie a été modifiée").
    phases: tuple[Phase, ...] = ()
    refill: bool = False  # delivered against a renewal ("à renouveler"), not the first fill

    # Readers written before `kind` (registry, reports): each fact with its reason.
    @property
    def substituted(self) -> bool:
        return self.kind is DispensingKind.SUBSTITUTED

    @property
    def substitution_reason(self) -> str | None:
        return self.reason if self.kind is DispensingKind.SUBSTITUTED else None

    @property
    def adjustment_reason(self) -> str | None:
        return self.reason if self.kind is DispensingKind.ADAPTED else None

    @property
    def partial_reason(self) -> str | None:
        return self.reason if self.kind is DispensingKind.PARTIAL else None

    @property
    def not_delivered_reason(self) -> str | None:
        return self.reason if self.kind is DispensingKind.NOT_DELIVERED else None


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
    day_only: bool = False  # as Prescription.day_only

    @property
    def day(self) -> dt.date:
        return self.date.date() if self.day_only else french_day(self.date)
