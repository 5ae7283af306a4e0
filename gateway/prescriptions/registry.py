"""The e-prescription registry: one authoritative record per prescription and its life cycle.

The paper or PDF ordonnance only carries the identifier; this record decides whether it may still
be dispensed (eprescription.md §6). This module holds the types, the refusals and the pure rules;
storage sits behind `PrescriptionRegistry` (SQLite implementation in `sqlite_registry.py`, a
PostgreSQL one can follow) and applies the rules inside one transaction.

Rules (our choices where the texts are silent):
- Validity: the first dispensation must happen on or before `validity_end` (the document's
  `serviceEvent/effectiveTime/high`, else the prescription date + 3 calendar months).
- Renewals ("à renouveler N fois"): a line may deliver `quantity × (1 + renewals)` in total, in as
  many dispensations as the pharmacies need; a line without a stated quantity allows `1 + renewals`
  deliveries. Total tracking rather than per-renewal periods: pharmacies split boxes freely, and a
  total is what the pharmacist is told ("remaining").
- Once dispensing has started, the remaining renewals stay dispensable until `dispensable_until`
  = the later of `validity_end` and the prescription date + 12 months (a prescription covers at
  most 12 months of treatment, public health code R5132-21).
- Status is computed at the time of each check (an active prescription past its date is expired
  even before the `expire` sweep writes it down).
- Only the prescriber (same address or RPPS) cancels; a fully dispensed prescription cannot be
  cancelled. Records are kept 5 years from the prescription date, then purged.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from gateway.documents.model import Dispensation, DispensedLine, DispensingKind, Prescription
from gateway.errors import Conflict, GatewayError, NotFound
from gateway.prescriptions.identifier import check_identifier
from gateway.texts import t

if TYPE_CHECKING:

    from gateway.config import Config
    from gateway.directory.model import Mailbox

FIRST_DISPENSATION_MONTHS = 3
TREATMENT_MAX_MONTHS = 12
RETENTION_YEARS = 5


class Status(StrEnum):
    ACTIVE = "active"
    PARTIALLY_DISPENSED = "partially_dispensed"
    DISPENSED = "dispensed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


# ---- refusals: each says precisely why, and carries a short `code` for headers and JSON ----


class RegistryError(GatewayError):
    """`str(error)` is for administrators (the CLI, logs); `french` is the same refusal for
    the people the mail flows answer (pharmacists, patients) and the console: the wording
    given where it is raised (`french_wording`: numbers and dates the French way, what to
    write in a reply), else the French of its message (gateway/french.py)."""

    code = "refused"

    def __init__(self, message: str, french: str | None = None) -> None:
        super().__init__(message)
        self.french_wording = french

    @property
    def french(self) -> str:
        if self.french_wording:
            return self.french_wording
        from gateway.french import french

        return french(self.text) or str(self)


class PrescriptionNotFound(RegistryError, NotFound):
    code = "unknown"

    def __init__(self, identifier: str) -> None:
        super().__init__(t("prescription {identifier}: not in the registry", identifier=identifier))


class AlreadyRegistered(RegistryError, Conflict):
    code = "duplicate"

    def __init__(self, identifier: str) -> None:
        super().__init__(t("prescription {identifier}: already registered", identifier=identifier))


class InvalidPrescription(RegistryError):
    code = "invalid"


class DispensationRefused(RegistryError):
    """The dispensation report was refused whole: nothing was recorded."""


class NotAPharmacy(DispensationRefused):
    code = "not-a-pharmacy"

    def __init__(self, address: str) -> None:
        super().__init__(
            t("{address} is not a pharmacy mailbox: only pharmacies dispense", address=address),
            f"{address} n'est ni une pharmacie ni un pharmacien d'une pharmacie"
            " dans l'annuaire : seules les pharmacies délivrent")


class PrescriptionExpired(DispensationRefused):
    code = "expired"


class PrescriptionCancelled(DispensationRefused):
    code = "cancelled"


class PrescriptionFullyDispensed(DispensationRefused):
    code = "fully-dispensed"


class OverDispensing(DispensationRefused):
    code = "over-dispensing"


class UnknownLine(DispensationRefused):
    code = "unknown-line"


class InvalidDispensation(DispensationRefused):
    code = "invalid-dispensation"


class DispensationConflict(DispensationRefused, Conflict):
    """The same dispensation id was already recorded with different content."""

    code = "conflict"


class CancellationRefused(RegistryError):
    code = "cancel-refused"


class NotPrescriber(CancellationRefused):
    code = "not-prescriber"


# ---- records ----


@dataclass(frozen=True)
class LineRecord:
    position: int  # 1-based
    line_id: str | None
    label: str
    cis: str | None
    quantity: Decimal | None  # per delivery, as prescribed; None when not stated
    quantity_unit: str
    renewals: int
    substitutable: bool
    delivered: Decimal = Decimal(0)  # total delivered so far
    deliveries: int = 0  # dispensations that delivered something on this line

    @property
    def allowed(self) -> Decimal | None:
        return None if self.quantity is None else self.quantity * (1 + self.renewals)

    @property
    def remaining(self) -> Decimal | None:
        allowed = self.allowed
        return None if allowed is None else max(allowed - self.delivered, Decimal(0))

    @property
    def deliveries_left(self) -> int:
        return max(1 + self.renewals - self.deliveries, 0)

    @property
    def complete(self) -> bool:
        remaining = self.remaining
        return self.deliveries_left == 0 if remaining is None else remaining == 0

    def matches(self, ref: str) -> bool:
        ref = ref.strip()
        return ref == str(self.position) or (self.line_id is not None and ref == self.line_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.position,
            "line_id": self.line_id,
            "label": self.label,
            "cis": self.cis,
            "quantity": _num(self.quantity),
            "unit": self.quantity_unit,
            "renewals": self.renewals,
            "allowed": _num(self.allowed),
            "delivered": _num(self.delivered),
            "remaining": _num(self.remaining),
            "deliveries": self.deliveries,
            "deliveries_left": self.deliveries_left,
            "complete": self.complete,
        }


@dataclass(frozen=True)
class DispensedLineRecord:
    position: int
    quantity: Decimal
    label: str
    cis: str | None = None
    substituted: bool = False
    substitution_reason: str | None = None
    adjustment_reason: str | None = None
    not_delivered_reason: str | None = None
    # What the pharmacist did: delivered, partial, substituted, adapted or not_delivered
    # (documents.model.DispensingKind), four different facts besides "as prescribed".
    kind: str = DispensingKind.DELIVERED.value
    partial_reason: str | None = None

    @property
    def reason(self) -> str | None:
        return (self.substitution_reason or self.adjustment_reason or self.partial_reason
                or self.not_delivered_reason)

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.position,
            "quantity": _num(self.quantity),
            "label": self.label,
            "cis": self.cis,
            "kind": self.kind,
            "substituted": self.substituted,
            "substitution_reason": self.substitution_reason,
            "adjustment_reason": self.adjustment_reason,
            "partial_reason": self.partial_reason,
            "not_delivered_reason": self.not_delivered_reason,
        }


@dataclass(frozen=True)
class DispensationRecord:
    dispensation_id: str
    pharmacy: str
    dispensed_at: dt.datetime
    recorded_at: dt.datetime
    lines: tuple[DispensedLineRecord, ...]
    document_id: str | None = None
    pharmacist: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "dispensation_id": self.dispensation_id,
            "document_id": self.document_id,
            "pharmacy": self.pharmacy,
            "pharmacist": self.pharmacist,
            "dispensed_at": self.dispensed_at.isoformat(),
            "recorded_at": self.recorded_at.isoformat(),
            "lines": [line.as_dict() for line in self.lines],
        }


@dataclass(frozen=True)
class PrescriptionRecord:
    identifier: str
    prescriber_address: str
    prescriber_rpps: str | None
    patient_ins: str
    patient_address: str
    prescribed_at: dt.datetime
    validity_end: dt.date
    dispensable_until: dt.date
    stored_status: Status
    registered_at: dt.datetime
    lines: tuple[LineRecord, ...]
    dispensations: tuple[DispensationRecord, ...] = ()
    patient_objects_to_feedback: bool = False
    document_id: str | None = None
    has_package: bool = False
    cancelled_at: dt.datetime | None = None
    cancelled_by: str | None = None
    cancel_reason: str | None = None
    # Registered by another operator's gateway: this record holds the signed document a patient
    # forwarded to one of our pharmacies and what was dispensed here, not the national status
    # (a cancellation or a dispensation elsewhere is not known here).
    registered_elsewhere: bool = False

    def status_at(self, now: dt.datetime | None = None) -> Status:
        today = _today(now)
        if self.stored_status in (Status.CANCELLED, Status.DISPENSED, Status.EXPIRED):
            return self.stored_status
        if self.stored_status is Status.ACTIVE and today > self.validity_end:
            return Status.EXPIRED
        if self.stored_status is Status.PARTIALLY_DISPENSED and today > self.dispensable_until:
            return Status.EXPIRED
        return self.stored_status

    @property
    def retention_end(self) -> dt.date:
        return add_months(self.prescribed_at.date(), 12 * RETENTION_YEARS)

    def as_dict(self, now: dt.datetime | None = None) -> dict[str, Any]:
        return {
            "identifier": self.identifier,
            "status": self.status_at(now).value,
            "prescriber": self.prescriber_address,
            "prescriber_rpps": self.prescriber_rpps,
            "patient_ins": self.patient_ins,
            "patient": self.patient_address,
            "prescribed_at": self.prescribed_at.isoformat(),
            "validity_end": self.validity_end.isoformat(),
            "dispensable_until": self.dispensable_until.isoformat(),
            "retention_end": self.retention_end.isoformat(),
            "registered_at": self.registered_at.isoformat(),
            "patient_objects_to_feedback": self.patient_objects_to_feedback,
            "document_id": self.document_id,
            "has_package": self.has_package,
            "cancelled_at": self.cancelled_at.isoformat() if self.cancelled_at else None,
            "cancelled_by": self.cancelled_by,
            "cancel_reason": self.cancel_reason,
            "registered_elsewhere": self.registered_elsewhere,
            "lines": [line.as_dict() for line in self.lines],
            "dispensations": [d.as_dict() for d in self.dispensations],
        }


@dataclass(frozen=True)
class Dispenser:
    """Who sends a dispensation: the mailbox address and whether the directory says pharmacy."""

    address: str
    is_pharmacy: bool
    pharmacist: str | None = None  # the pharmacist's own address or RPPS, when known

    @classmethod
    def from_mailbox(cls, mailbox: Mailbox, structure: Mailbox | None = None) -> Dispenser:
        """A pharmacy's ORG mailbox, or a pharmacist's PER mailbox whose structure is one (the
        pharmacy is then recorded as the dispenser, the pharmacist beside it)."""
        if mailbox.is_pharmacy:
            return cls(address=mailbox.address, is_pharmacy=True)
        if structure is not None and structure.is_pharmacy:
            return cls(address=structure.address, is_pharmacy=True, pharmacist=mailbox.address)
        return cls(address=mailbox.address, is_pharmacy=False)


@dataclass(frozen=True)
class DispensationReport:
    """What a pharmacy reports it dispensed. `dispensation_id` makes the report idempotent (the
    eDISP document id when there is one)."""

    dispensation_id: str
    prescription_id: str
    dispenser: Dispenser
    date: dt.datetime
    lines: tuple[DispensedLine, ...]
    document_id: str | None = None

    @classmethod
    def from_dispensation(
        cls, dispensation: Dispensation, dispenser: Dispenser, dispensation_id: str | None = None
    ) -> DispensationReport:
        ident = dispensation_id or dispensation.document_id
        if not ident:
            raise InvalidDispensation("a dispensation needs an id (its document id)")
        return cls(
            dispensation_id=ident,
            prescription_id=dispensation.prescription_id,
            dispenser=dispenser,
            date=dispensation.date,
            lines=dispensation.lines,
            document_id=dispensation.document_id,
        )

    def fingerprint(self) -> str:
        """Stable digest of the content, to tell a replay from a different report."""
        lines = [
            [
                ln.line_ref.strip(),
                str(ln.quantity.normalize()),
                ln.kind.value,
                ln.substituted,
                ln.substitution_reason,
                ln.adjustment_reason,
                ln.not_delivered_reason,
                ln.product.cis,
            ]
            for ln in self.lines
        ]
        data = [self.prescription_id, self.dispenser.address.lower(), self.document_id, lines]
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()


@dataclass(frozen=True)
class DispenseResult:
    record: PrescriptionRecord
    applied: bool  # False: the same report was already recorded, nothing changed
    message: str


@dataclass(frozen=True)
class CancelResult:
    record: PrescriptionRecord
    applied: bool
    message: str


class PrescriptionRegistry(Protocol):
    """The registry's storage-independent interface. `actor` (an address, or the OS user) is
    written to the audit log with every access to patient data."""

    def register(
        self,
        prescription: Prescription,
        *,
        prescriber_address: str,
        patient_address: str,
        package: bytes | None = None,
        patient_objects_to_feedback: bool = False,
        actor: str | None = None,
        now: dt.datetime | None = None,
    ) -> PrescriptionRecord: ...

    def record_external(
        self,
        prescription: Prescription,
        *,
        prescriber_address: str,
        patient_address: str,
        package: bytes,
        patient_objects_to_feedback: bool = False,
        actor: str | None = None,
        now: dt.datetime | None = None,
    ) -> PrescriptionRecord:
        """Keep a prescription another operator's gateway registered (its signed package, as a
        patient forwarded it to one of our pharmacies), so that our pharmacies dispense against
        it: a record like `register`'s, marked `registered_elsewhere`, whose lines and validity
        come from the signed document. `AlreadyRegistered` when the identifier is known."""
        ...

    def get(self, identifier: str, *, actor: str) -> PrescriptionRecord: ...

    def remaining(self, identifier: str, *, actor: str) -> tuple[LineRecord, ...]: ...

    def package(self, identifier: str, *, actor: str) -> bytes | None: ...

    def find(
        self,
        *,
        actor: str,
        patient_ins: str | None = None,
        prescriber: str | None = None,
        status: Status | None = None,
        now: dt.datetime | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[PrescriptionRecord]:
        """Newest first; the patients listed are audited as read by `actor`."""
        ...

    def count(
        self,
        *,
        patient_ins: str | None = None,
        prescriber: str | None = None,
        status: Status | None = None,
        now: dt.datetime | None = None,
    ) -> int:
        """How many `find` would list (a number, not audited)."""
        ...

    def dispense(
        self, report: DispensationReport, *, now: dt.datetime | None = None
    ) -> DispenseResult: ...

    def cancel(
        self,
        identifier: str,
        *,
        by: str,
        by_rpps: str | None = None,
        reason: str | None = None,
        actor: str | None = None,
        now: dt.datetime | None = None,
    ) -> CancelResult: ...

    def set_feedback_objection(self, identifier: str, objects: bool, *, actor: str) -> bool: ...

    def expire(self, *, actor: str, now: dt.datetime | None = None) -> list[str]: ...

    def purge(
        self,
        *,
        actor: str,
        older_than_years: int = RETENTION_YEARS,
        dry_run: bool = False,
        now: dt.datetime | None = None,
    ) -> list[str]: ...

    def close(self) -> None: ...


def open_registry(config: Config) -> PrescriptionRegistry:
    """The configured registry on its own, writing to the audit log (tests and tools; a process
    of the gateway takes its root's, `Runtime.registry`; closing it closes its store)."""
    from gateway.runtime import storage_for

    storage = storage_for(config)
    return storage.records(storage.audit_log()).registry


# ---- pure rules ----


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _today(now: dt.datetime | None) -> dt.date:
    return (now or utcnow()).date()


def add_months(day: dt.date, months: int) -> dt.date:
    """Calendar months, clamped to the month's last day (30 November + 3 months = 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _fr(value: Decimal | None) -> str:
    return "-" if value is None else format(value.normalize(), "f").replace(".", ",")


def _fr_unit(value: Decimal, unit: str) -> str:
    return unit + "s" if value >= 2 and not unit.endswith(("s", "x")) else unit


def _num(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def lines_from_prescription(prescription: Prescription) -> tuple[LineRecord, ...]:
    """Registry lines for a prescription, refusing what cannot be tracked."""
    if not prescription.lines:
        raise InvalidPrescription("a prescription needs at least one line")
    out: list[LineRecord] = []
    seen: set[str] = set()
    for pos, line in enumerate(prescription.lines, start=1):
        if line.quantity is not None and not (line.quantity.is_finite() and line.quantity > 0):
            raise InvalidPrescription(t("line {pos}: the quantity must be positive", pos=pos))
        if line.renewals < 0:
            raise InvalidPrescription(t("line {pos}: renewals cannot be negative", pos=pos))
        if line.line_id is not None:
            if line.line_id in seen:
                raise InvalidPrescription(t(
                    "line {pos}: line id {line_id!r} is repeated", pos=pos, line_id=line.line_id))
            seen.add(line.line_id)
        out.append(
            LineRecord(
                position=pos,
                line_id=line.line_id,
                label=line.product.label,
                cis=line.product.cis,
                quantity=line.quantity,
                quantity_unit=line.quantity_unit,
                renewals=line.renewals,
                substitutable=line.substitutable,
            )
        )
    return tuple(out)


def validity_of(prescription: Prescription) -> tuple[dt.date, dt.date]:
    """(validity_end, dispensable_until) for a prescription."""
    start = prescription.day
    end = prescription.validity_end or add_months(start, FIRST_DISPENSATION_MONTHS)
    if end < start:
        raise InvalidPrescription(t(
            "the validity end {end} is before the prescription date", end=end))
    return end, max(end, add_months(start, TREATMENT_MAX_MONTHS))


def checked_identifier(text: str) -> str:
    check = check_identifier(text)
    if not check.ok:
        raise InvalidPrescription(t(
            "identifier {identifier!r}: {reason}",
            identifier=check.identifier, reason=check.reason))
    return check.identifier


def refuse_unless_dispensable(record: PrescriptionRecord, now: dt.datetime | None) -> None:
    status = record.status_at(now)
    ident = record.identifier
    if status is Status.CANCELLED:
        when = t(" on {date}", date=record.cancelled_at.date()) if record.cancelled_at else ""
        le = f" le {record.cancelled_at:%d/%m/%Y}" if record.cancelled_at else ""
        raise PrescriptionCancelled(
            t("prescription {ident} was cancelled by its prescriber{when}", ident=ident,
              when=when),
            f"l'ordonnance {ident} a été annulée par son prescripteur{le}")
    if status is Status.DISPENSED:
        raise PrescriptionFullyDispensed(
            t("prescription {ident} is already fully dispensed: it cannot be used again",
              ident=ident),
            f"l'ordonnance {ident} est déjà entièrement délivrée : elle ne peut plus servir")
    if status is Status.EXPIRED:
        if record.dispensations:
            raise PrescriptionExpired(
                t("prescription {ident} expired on {dispensable_until} (renewals end 12 months"
                  " after the prescription)", ident=ident,
                  dispensable_until=record.dispensable_until),
                f"l'ordonnance {ident} a expiré le {record.dispensable_until:%d/%m/%Y} (les"
                " renouvellements s'arrêtent 12 mois après sa date)")
        raise PrescriptionExpired(
            t("prescription {ident} expired on {validity_end}: the first dispensation must"
              " happen within its validity", ident=ident, validity_end=record.validity_end),
            f"l'ordonnance {ident} a expiré le {record.validity_end:%d/%m/%Y} : la première"
            " délivrance doit avoir lieu avant")


@dataclass(frozen=True)
class LineDelivery:
    position: int
    quantity: Decimal
    counts: bool  # a delivery (quantity > 0), as opposed to "not delivered, because..."


def plan_dispensation(
    record: PrescriptionRecord, report: DispensationReport, now: dt.datetime | None = None
) -> list[LineDelivery]:
    """Check a report against the record; the per-line totals to add, or a refusal (whole)."""
    if not report.dispenser.is_pharmacy:
        raise NotAPharmacy(report.dispenser.address)
    refuse_unless_dispensable(record, now)
    if not report.lines:
        raise InvalidDispensation(t(
            "dispensation {dispensation_id} has no line", dispensation_id=report.dispensation_id))
    totals: dict[int, Decimal] = {}
    for line in report.lines:
        match = [r for r in record.lines if r.matches(line.line_ref)]
        if not match:
            known = ", ".join(str(r.position) for r in record.lines)
            raise UnknownLine(
                t("prescription {identifier} has no line {line_ref!r} (lines: {known})",
                  identifier=record.identifier, line_ref=line.line_ref, known=known),
                f"l'ordonnance {record.identifier} n'a pas de ligne {line.line_ref} (lignes :"
                f" {known})")
        if not line.quantity.is_finite() or line.quantity < 0:
            raise InvalidDispensation(
                t(
                    "line {line_ref}: {quantity} is not a quantity (0 or more)",
                    line_ref=line.line_ref, quantity=line.quantity)
            )
        if line.quantity == 0 and not line.not_delivered_reason:
            raise InvalidDispensation(
                t("line {line_ref}: nothing delivered needs the reason why",
                  line_ref=line.line_ref),
                f"ligne {line.line_ref} : rien n'est délivré, donnez-en le motif"
                " (« non délivré ; motif : ... »)")
        pos = match[0].position
        totals[pos] = totals.get(pos, Decimal(0)) + line.quantity
    plan: list[LineDelivery] = []
    for pos, qty in sorted(totals.items()):
        rec = record.lines[pos - 1]
        if qty > 0 and rec.complete:
            raise PrescriptionFullyDispensed(
                t("prescription {identifier} line {pos} ({label}) is already fully dispensed",
                  identifier=record.identifier, pos=pos, label=rec.label),
                f"ligne {pos} ({rec.label}) : déjà entièrement délivrée")
        remaining = rec.remaining
        if remaining is not None and qty > remaining:
            raise OverDispensing(
                t("prescription {identifier} line {pos} ({label}): {value} {quantity_unit}"
                  " asked, only {value2} remain ({value3} × {value4} prescribed, {value5}"
                  " delivered)",
                  identifier=record.identifier, pos=pos, label=rec.label, value=_num(qty),
                  quantity_unit=rec.quantity_unit, value2=_num(remaining),
                  value3=_num(rec.quantity), value4=1 + rec.renewals, value5=_num(rec.delivered)),
                f"ligne {pos} ({rec.label}) : il ne reste que {_fr(remaining)}"
                f" {_fr_unit(remaining, rec.quantity_unit)} à délivrer, pas {_fr(qty)}"
                f" (prescrit : {_fr(rec.quantity)} × {1 + rec.renewals} ; déjà délivré :"
                f" {_fr(rec.delivered)})")
        plan.append(LineDelivery(pos, qty, qty > 0))
    return plan


def status_after(lines: Sequence[LineRecord], dispensed_any: bool) -> Status:
    if all(line.complete for line in lines):
        return Status.DISPENSED
    return Status.PARTIALLY_DISPENSED if dispensed_any else Status.ACTIVE


def is_prescriber(record: PrescriptionRecord, address: str, rpps: str | None = None) -> bool:
    if address and address.strip().lower() == record.prescriber_address.lower():
        return True
    return bool(rpps and record.prescriber_rpps and rpps == record.prescriber_rpps)
