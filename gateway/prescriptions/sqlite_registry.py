"""The registry in the gateway's SQLite database (component "prescriptions").

Every transition runs in one `BEGIN IMMEDIATE` transaction: the record is read, the pure rules of
`registry.py` decide, and the writes follow, so two processes dispensing the last boxes at the
same time are serialised and exactly one wins. The signed package is a BLOB in its own table
(committed with the record under synchronous=FULL: durable, and never half-written).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway import identifiers
from gateway.audit import Recorder, no_record
from gateway.db import atomic, connect, migrate, snapshot
from gateway.documents.model import DispensingKind, Prescription
from gateway.prescriptions.registry import (
    RETENTION_YEARS,
    AlreadyRegistered,
    CancellationRefused,
    CancelResult,
    DispensationConflict,
    DispensationRecord,
    DispensationReport,
    DispensedLineRecord,
    DispenseResult,
    InvalidPrescription,
    LineRecord,
    NotPrescriber,
    PrescriptionNotFound,
    PrescriptionRecord,
    Status,
    add_months,
    checked_identifier,
    is_prescriber,
    lines_from_prescription,
    plan_dispensation,
    status_after,
    utcnow,
    validity_of,
)
from gateway.texts import t

COMPONENT = "prescriptions"

MIGRATIONS = [
    """
    CREATE TABLE prescriptions (
        identifier TEXT PRIMARY KEY,
        prescriber_address TEXT NOT NULL,
        prescriber_rpps TEXT,
        patient_ins TEXT NOT NULL,
        patient_address TEXT NOT NULL,
        prescribed_at TEXT NOT NULL,
        prescribed_on TEXT NOT NULL,
        validity_end TEXT NOT NULL,
        dispensable_until TEXT NOT NULL,
        status TEXT NOT NULL,
        objects_to_feedback INTEGER NOT NULL DEFAULT 0,
        document_id TEXT,
        registered_at TEXT NOT NULL,
        cancelled_at TEXT,
        cancelled_by TEXT,
        cancel_reason TEXT
    );
    CREATE INDEX prescriptions_patient ON prescriptions(patient_ins);
    CREATE INDEX prescriptions_prescriber ON prescriptions(prescriber_address);
    CREATE INDEX prescriptions_rpps ON prescriptions(prescriber_rpps);
    CREATE INDEX prescriptions_date ON prescriptions(prescribed_on);
    CREATE INDEX prescriptions_status ON prescriptions(status, validity_end);
    CREATE TABLE prescription_lines (
        identifier TEXT NOT NULL REFERENCES prescriptions(identifier) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        line_id TEXT,
        label TEXT NOT NULL,
        cis TEXT,
        quantity TEXT,
        quantity_unit TEXT NOT NULL,
        renewals INTEGER NOT NULL,
        substitutable INTEGER NOT NULL,
        delivered TEXT NOT NULL DEFAULT '0',
        deliveries INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (identifier, position)
    );
    CREATE TABLE prescription_packages (
        identifier TEXT PRIMARY KEY REFERENCES prescriptions(identifier) ON DELETE CASCADE,
        package BLOB NOT NULL
    );
    CREATE TABLE dispensations (
        dispensation_id TEXT PRIMARY KEY,
        identifier TEXT NOT NULL REFERENCES prescriptions(identifier) ON DELETE CASCADE,
        document_id TEXT UNIQUE,
        pharmacy TEXT NOT NULL,
        pharmacist TEXT,
        dispensed_at TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        fingerprint TEXT NOT NULL
    );
    CREATE INDEX dispensations_prescription ON dispensations(identifier);
    CREATE TABLE dispensed_lines (
        dispensation_id TEXT NOT NULL
            REFERENCES dispensations(dispensation_id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        position INTEGER NOT NULL,
        quantity TEXT NOT NULL,
        label TEXT NOT NULL,
        cis TEXT,
        substituted INTEGER NOT NULL,
        substitution_reason TEXT,
        adjustment_reason TEXT,
        not_delivered_reason TEXT,
        PRIMARY KEY (dispensation_id, seq)
    );
    """,
    # Partial delivery, substitution, adaptation and non-delivery recorded each as itself
    # (rows written before: kind NULL, read from the other columns).
    """
    ALTER TABLE dispensed_lines ADD COLUMN kind TEXT;
    ALTER TABLE dispensed_lines ADD COLUMN partial_reason TEXT;
    """,
    # Prescriptions another operator registered, kept to dispense them here (issue 20).
    """
    ALTER TABLE prescriptions ADD COLUMN registered_elsewhere INTEGER NOT NULL DEFAULT 0;
    """,
    # The administrators' listing, newest first, one page at a time (find's ORDER BY).
    """
    CREATE INDEX prescriptions_newest ON prescriptions(prescribed_at DESC, identifier);
    """,
]


def _kind_before(row: sqlite3.Row) -> str:
    """The kind of a line recorded before kinds were (partial deliveries were then written as
    adaptations "délivrance partielle")."""
    if row["substituted"]:
        return DispensingKind.SUBSTITUTED.value
    if row["not_delivered_reason"]:
        return DispensingKind.NOT_DELIVERED.value
    if row["adjustment_reason"] == "délivrance partielle":
        return DispensingKind.PARTIAL.value
    if row["adjustment_reason"]:
        return DispensingKind.ADAPTED.value
    return DispensingKind.DELIVERED.value


def _dt(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


def _req_dt(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


class SQLiteRegistry:
    """`PrescriptionRegistry` over one SQLite connection (one per process or thread)."""

    def __init__(self, conn: sqlite3.Connection, audit: Recorder = no_record) -> None:
        self.conn = conn
        self.audit = audit
        migrate(conn, COMPONENT, MIGRATIONS)

    @classmethod
    def open(cls, path: Path | str, audit: Recorder = no_record) -> SQLiteRegistry:
        return cls(connect(path), audit)

    def close(self) -> None:
        self.conn.close()

    # ---- reading ----

    def _load(self, identifier: str) -> PrescriptionRecord:
        row = self.conn.execute(
            "SELECT p.*, EXISTS(SELECT 1 FROM prescription_packages k"
            " WHERE k.identifier = p.identifier) AS has_package"
            " FROM prescriptions p WHERE p.identifier = ?",
            (identifier,),
        ).fetchone()
        if row is None:
            raise PrescriptionNotFound(identifier)
        return self._record(row)

    def _record(self, row: sqlite3.Row) -> PrescriptionRecord:
        ident = row["identifier"]
        lines = tuple(
            LineRecord(
                position=r["position"],
                line_id=r["line_id"],
                label=r["label"],
                cis=r["cis"],
                quantity=None if r["quantity"] is None else Decimal(r["quantity"]),
                quantity_unit=r["quantity_unit"],
                renewals=r["renewals"],
                substitutable=bool(r["substitutable"]),
                delivered=Decimal(r["delivered"]),
                deliveries=r["deliveries"],
            )
            for r in self.conn.execute(
                "SELECT * FROM prescription_lines WHERE identifier = ? ORDER BY position", (ident,)
            )
        )
        by_disp: dict[str, list[DispensedLineRecord]] = {}
        for r in self.conn.execute(
            "SELECT l.* FROM dispensed_lines l JOIN dispensations d USING (dispensation_id)"
            " WHERE d.identifier = ? ORDER BY l.dispensation_id, l.seq",
            (ident,),
        ):
            by_disp.setdefault(r["dispensation_id"], []).append(
                DispensedLineRecord(
                    position=r["position"],
                    quantity=Decimal(r["quantity"]),
                    label=r["label"],
                    cis=r["cis"],
                    substituted=bool(r["substituted"]),
                    substitution_reason=r["substitution_reason"],
                    adjustment_reason=r["adjustment_reason"],
                    not_delivered_reason=r["not_delivered_reason"],
                    kind=r["kind"] or _kind_before(r),
                    partial_reason=r["partial_reason"],
                )
            )
        dispensations = tuple(
            DispensationRecord(
                dispensation_id=r["dispensation_id"],
                pharmacy=r["pharmacy"],
                pharmacist=r["pharmacist"],
                dispensed_at=_req_dt(r["dispensed_at"]),
                recorded_at=_req_dt(r["recorded_at"]),
                document_id=r["document_id"],
                lines=tuple(by_disp.get(r["dispensation_id"], ())),
            )
            for r in self.conn.execute(
                "SELECT * FROM dispensations WHERE identifier = ? ORDER BY recorded_at, rowid",
                (ident,),
            )
        )
        return PrescriptionRecord(
            identifier=ident,
            prescriber_address=row["prescriber_address"],
            prescriber_rpps=row["prescriber_rpps"],
            patient_ins=row["patient_ins"],
            patient_address=row["patient_address"],
            prescribed_at=_req_dt(row["prescribed_at"]),
            validity_end=dt.date.fromisoformat(row["validity_end"]),
            dispensable_until=dt.date.fromisoformat(row["dispensable_until"]),
            stored_status=Status(row["status"]),
            registered_at=_req_dt(row["registered_at"]),
            lines=lines,
            dispensations=dispensations,
            patient_objects_to_feedback=bool(row["objects_to_feedback"]),
            document_id=row["document_id"],
            has_package=bool(row["has_package"]),
            cancelled_at=_dt(row["cancelled_at"]),
            cancelled_by=row["cancelled_by"],
            cancel_reason=row["cancel_reason"],
            registered_elsewhere=bool(row["registered_elsewhere"]),
        )

    def _audited_read(self, actor: str, action: str, identifier: str) -> PrescriptionRecord:
        ident = checked_identifier(identifier)
        try:
            with snapshot(self.conn):
                record = self._load(ident)
        except PrescriptionNotFound:
            self.audit(actor, action, ident, {"outcome": "not-found"})
            raise
        self.audit(actor, action, ident, {"outcome": "granted", "patient": record.patient_ins})
        return record

    def get(self, identifier: str, *, actor: str) -> PrescriptionRecord:
        return self._audited_read(actor, "prescription.read", identifier)

    def remaining(self, identifier: str, *, actor: str) -> tuple[LineRecord, ...]:
        return self._audited_read(actor, "prescription.remaining", identifier).lines

    def package(self, identifier: str, *, actor: str) -> bytes | None:
        self._audited_read(actor, "prescription.package", identifier)
        row = self.conn.execute(
            "SELECT package FROM prescription_packages WHERE identifier = ?",
            (checked_identifier(identifier),),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _where(
        self, patient_ins: str | None, prescriber: str | None, status: Status | None,
        now: dt.datetime | None,
    ) -> tuple[str, dict[str, Any]]:
        """The WHERE clause of find and count (fixed fragments; every value a bound parameter)."""
        today = (now or utcnow()).date().isoformat()
        # The status as of today, without waiting for the sweep (same rule as status_at).
        effective = (
            "CASE WHEN p.status = 'active' AND p.validity_end < :today THEN 'expired'"
            " WHEN p.status = 'partially_dispensed' AND p.dispensable_until < :today"
            " THEN 'expired' ELSE p.status END"
        )
        where: list[str] = []
        params: dict[str, Any] = {}
        if patient_ins:
            where.append("p.patient_ins = :ins")
            params["ins"] = identifiers.ins(patient_ins, "patient INS")
        if prescriber:
            where.append("(p.prescriber_address = :who OR p.prescriber_rpps = :who)")
            params["who"] = prescriber.strip().lower()
        if status:
            where.append(f"{effective} = :status")
            params["status"] = status.value
            params["today"] = today
        return (" WHERE " + " AND ".join(where) if where else ""), params

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
        where, params = self._where(patient_ins, prescriber, status, now)
        # Newest first, through the index prescriptions_newest (one page of a registry of
        # millions reads the page's rows, not the table).
        sql = (
            "SELECT p.*, EXISTS(SELECT 1 FROM prescription_packages k"  # noqa: S608
            " WHERE k.identifier = p.identifier) AS has_package FROM prescriptions p"
            + where + " ORDER BY p.prescribed_at DESC, p.identifier"
            " LIMIT :limit OFFSET :offset"
        )
        params.update(limit=limit, offset=max(offset, 0))
        with snapshot(self.conn):
            records = [self._record(row) for row in self.conn.execute(sql, params).fetchall()]
        filters = {"patient": patient_ins, "prescriber": prescriber, "status": status}
        self.audit(
            actor,
            "prescription.list",
            patient_ins or "*",
            {
                "filters": {k: str(v) for k, v in filters.items() if v},
                "patients": sorted({r.patient_ins for r in records}),
                "count": len(records),
            },
        )
        return records

    def count(
        self,
        *,
        patient_ins: str | None = None,
        prescriber: str | None = None,
        status: Status | None = None,
        now: dt.datetime | None = None,
    ) -> int:
        """How many prescriptions `find` would list without a limit (a number: not a read of
        anyone's data, so not audited)."""
        where, params = self._where(patient_ins, prescriber, status, now)
        row = self.conn.execute(
            "SELECT count(*) FROM prescriptions p" + where, params  # noqa: S608
        ).fetchone()
        return int(row[0])

    # ---- transitions ----

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
    ) -> PrescriptionRecord:
        return self._insert(prescription, prescriber_address, patient_address, package,
                            patient_objects_to_feedback, actor, now, elsewhere=False)

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
        if not package:
            raise InvalidPrescription("a prescription registered elsewhere is kept with its"
                                      " signed package")
        return self._insert(prescription, prescriber_address, patient_address, package,
                            patient_objects_to_feedback, actor, now, elsewhere=True)

    def _insert(
        self,
        prescription: Prescription,
        prescriber_address: str,
        patient_address: str,
        package: bytes | None,
        patient_objects_to_feedback: bool,
        actor: str | None,
        now: dt.datetime | None,
        *,
        elsewhere: bool,
    ) -> PrescriptionRecord:
        if not prescription.identifier:
            raise InvalidPrescription("the prescription has no identifier")
        ident = checked_identifier(prescription.identifier)
        patient_ins = identifiers.ins(prescription.patient.ins, "patient INS")
        lines = lines_from_prescription(prescription)
        validity_end, dispensable_until = validity_of(prescription)
        prescriber = prescriber_address.strip().lower()
        registered_at = (now or utcnow()).isoformat()
        with atomic(self.conn):
            try:
                self.conn.execute(
                    "INSERT INTO prescriptions (identifier, prescriber_address, prescriber_rpps,"
                    " patient_ins, patient_address, prescribed_at, prescribed_on, validity_end,"
                    " dispensable_until, status, objects_to_feedback, document_id, registered_at,"
                    " registered_elsewhere) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        ident,
                        prescriber,
                        prescription.author.rpps,
                        patient_ins,
                        patient_address.strip().lower(),
                        prescription.date.isoformat(),
                        prescription.day.isoformat(),
                        validity_end.isoformat(),
                        dispensable_until.isoformat(),
                        Status.ACTIVE.value,
                        int(patient_objects_to_feedback),
                        prescription.document_id,
                        registered_at,
                        int(elsewhere),
                    ),
                )
            except sqlite3.IntegrityError:
                raise AlreadyRegistered(ident) from None
            self.conn.executemany(
                "INSERT INTO prescription_lines (identifier, position, line_id, label, cis,"
                " quantity, quantity_unit, renewals, substitutable) VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        ident,
                        ln.position,
                        ln.line_id,
                        ln.label,
                        ln.cis,
                        None if ln.quantity is None else str(ln.quantity),
                        ln.quantity_unit,
                        ln.renewals,
                        int(ln.substitutable),
                    )
                    for ln in lines
                ],
            )
            if package is not None:
                self.conn.execute(
                    "INSERT INTO prescription_packages (identifier, package) VALUES (?, ?)",
                    (ident, package),
                )
            record = self._load(ident)
        self.audit(
            actor or prescriber,
            "prescription.record-external" if elsewhere else "prescription.register",
            ident,
            {"patient": record.patient_ins, "lines": len(lines)}
            | ({"prescriber": prescriber} if elsewhere else {}),
        )
        return record

    def dispense(
        self, report: DispensationReport, *, now: dt.datetime | None = None
    ) -> DispenseResult:
        ident = checked_identifier(report.prescription_id)
        now = now or utcnow()
        fingerprint = report.fingerprint()
        actor = report.dispenser.address
        try:
            with atomic(self.conn):
                record = self._load(ident)
                prior = self.conn.execute(
                    "SELECT dispensation_id, identifier, fingerprint FROM dispensations"
                    " WHERE dispensation_id = ? OR (? IS NOT NULL AND document_id = ?)",
                    (report.dispensation_id, report.document_id, report.document_id),
                ).fetchone()
                if prior is not None:
                    if prior["fingerprint"] != fingerprint or prior["identifier"] != ident:
                        raise DispensationConflict(
                            t(
                                "dispensation {value} was already recorded with different "
                                "content: nothing changed", value=prior['dispensation_id'])
                        )
                    result = DispenseResult(
                        record,
                        applied=False,
                        message=f"dispensation {prior['dispensation_id']} was already"
                        f" recorded for {ident}: nothing changed",
                    )
                else:
                    result = self._apply(record, report, fingerprint, now)
        except Exception as exc:
            self.audit(
                actor,
                "prescription.dispense",
                ident,
                {"outcome": "refused", "reason": str(exc), "dispensation": report.dispensation_id},
            )
            raise
        self.audit(
            actor,
            "prescription.dispense",
            ident,
            {
                "outcome": "recorded" if result.applied else "replay",
                "dispensation": report.dispensation_id,
                "patient": result.record.patient_ins,
                "status": result.record.stored_status.value,
            },
        )
        return result

    def _apply(
        self,
        record: PrescriptionRecord,
        report: DispensationReport,
        fingerprint: str,
        now: dt.datetime,
    ) -> DispenseResult:
        plan = plan_dispensation(record, report, now)
        ident = record.identifier
        self.conn.execute(
            "INSERT INTO dispensations (dispensation_id, identifier, document_id, pharmacy,"
            " pharmacist, dispensed_at, recorded_at, fingerprint) VALUES (?,?,?,?,?,?,?,?)",
            (
                report.dispensation_id,
                ident,
                report.document_id,
                report.dispenser.address.lower(),
                report.dispenser.pharmacist,
                report.date.isoformat(),
                now.isoformat(),
                fingerprint,
            ),
        )
        for seq, line in enumerate(report.lines, start=1):
            pos = next(r.position for r in record.lines if r.matches(line.line_ref))
            self.conn.execute(
                "INSERT INTO dispensed_lines (dispensation_id, seq, position, quantity, label,"
                " cis, substituted, substitution_reason, adjustment_reason,"
                " not_delivered_reason, kind, partial_reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    report.dispensation_id,
                    seq,
                    pos,
                    str(line.quantity),
                    line.product.label,
                    line.product.cis,
                    int(line.substituted),
                    line.substitution_reason,
                    line.adjustment_reason,
                    line.not_delivered_reason,
                    line.kind.value,
                    line.partial_reason,
                ),
            )
        new_lines = list(record.lines)
        for step in plan:
            old = new_lines[step.position - 1]
            new = LineRecord(
                **{
                    **old.__dict__,
                    "delivered": old.delivered + step.quantity,
                    "deliveries": old.deliveries + int(step.counts),
                }
            )
            new_lines[step.position - 1] = new
            self.conn.execute(
                "UPDATE prescription_lines SET delivered = ?, deliveries = ?"
                " WHERE identifier = ? AND position = ?",
                (str(new.delivered), new.deliveries, ident, step.position),
            )
        delivered_any = any(ln.deliveries for ln in new_lines)
        status = status_after(new_lines, delivered_any)
        self.conn.execute(
            "UPDATE prescriptions SET status = ? WHERE identifier = ?", (status.value, ident)
        )
        updated = self._load(ident)
        word = {
            Status.DISPENSED: "now fully dispensed",
            Status.PARTIALLY_DISPENSED: "partially dispensed",
        }.get(status, status.value)
        return DispenseResult(
            updated,
            applied=True,
            message=f"dispensation {report.dispensation_id} recorded: {ident} is {word}",
        )

    def cancel(
        self,
        identifier: str,
        *,
        by: str,
        by_rpps: str | None = None,
        reason: str | None = None,
        actor: str | None = None,
        now: dt.datetime | None = None,
    ) -> CancelResult:
        ident = checked_identifier(identifier)
        now = now or utcnow()
        actor = actor or by
        try:
            with atomic(self.conn):
                record = self._load(ident)
                if not is_prescriber(record, by, by_rpps):
                    raise NotPrescriber(
                        t(
                            "prescription {ident}: only its prescriber ({prescriber_address}) may "
                            "cancel it, not {by}",
                            ident=ident, prescriber_address=record.prescriber_address, by=by)
                    )
                status = record.status_at(now)
                if status is Status.CANCELLED:
                    result = CancelResult(
                        record, False, f"prescription {ident} was already cancelled"
                    )
                elif status is Status.DISPENSED:
                    raise CancellationRefused(
                        t(
                            "prescription {ident} is fully dispensed: too late to cancel it",
                            ident=ident)
                    )
                else:
                    self.conn.execute(
                        "UPDATE prescriptions SET status = 'cancelled', cancelled_at = ?,"
                        " cancelled_by = ?, cancel_reason = ? WHERE identifier = ?",
                        (now.isoformat(), by.strip().lower(), reason, ident),
                    )
                    result = CancelResult(
                        self._load(ident), True, f"prescription {ident} cancelled"
                    )
        except Exception as exc:
            self.audit(
                actor, "prescription.cancel", ident, {"outcome": "refused", "reason": str(exc)}
            )
            raise
        self.audit(
            actor,
            "prescription.cancel",
            ident,
            {
                "outcome": "cancelled" if result.applied else "unchanged",
                "by": by,
                "reason": reason,
                "patient": result.record.patient_ins,
            },
        )
        return result

    def set_feedback_objection(self, identifier: str, objects: bool, *, actor: str) -> bool:
        """Record the patient's objection (or its withdrawal); True when it changed."""
        ident = checked_identifier(identifier)
        with atomic(self.conn):
            record = self._load(ident)
            changed = record.patient_objects_to_feedback != objects
            if changed:
                self.conn.execute(
                    "UPDATE prescriptions SET objects_to_feedback = ? WHERE identifier = ?",
                    (int(objects), ident),
                )
        self.audit(
            actor,
            "prescription.objection",
            ident,
            {"objects": objects, "changed": changed, "patient": record.patient_ins},
        )
        return changed

    def expire(self, *, actor: str, now: dt.datetime | None = None) -> list[str]:
        """Write down the expiry of every prescription past its date; the identifiers."""
        today = (now or utcnow()).date().isoformat()
        with atomic(self.conn):
            rows = self.conn.execute(
                "UPDATE prescriptions SET status = 'expired'"
                " WHERE (status = 'active' AND validity_end < :t)"
                " OR (status = 'partially_dispensed' AND dispensable_until < :t)"
                " RETURNING identifier",
                {"t": today},
            ).fetchall()
        expired = sorted(r[0] for r in rows)
        self.audit(actor, "prescription.expire", "*", {"expired": expired})
        return expired

    def purge(
        self,
        *,
        actor: str,
        older_than_years: int = RETENTION_YEARS,
        dry_run: bool = False,
        now: dt.datetime | None = None,
    ) -> list[str]:
        """Delete records (lines, dispensations, package) prescribed before the cut-off date."""
        if older_than_years < 0:
            raise InvalidPrescription("--older-than-years cannot be negative")
        cutoff = add_months((now or utcnow()).date(), -12 * older_than_years).isoformat()
        with atomic(self.conn):
            idents = [
                r[0]
                for r in self.conn.execute(
                    "SELECT identifier FROM prescriptions WHERE prescribed_on < ?"
                    " ORDER BY identifier",
                    (cutoff,),
                )
            ]
            if not dry_run:
                self.conn.execute("DELETE FROM prescriptions WHERE prescribed_on < ?", (cutoff,))
        details: dict[str, Any] = {"before": cutoff, "dry_run": dry_run, "identifiers": idents}
        self.audit(actor, "prescription.purge", "*", details)
        return idents
