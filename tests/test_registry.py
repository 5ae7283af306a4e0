"""The e-prescription registry: transitions, refusals, idempotence, atomicity, concurrency."""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing
from decimal import Decimal

import pytest
from registry_fixtures import (
    DAY0,
    DOCTOR,
    NOT_PHARMACY,
    PATIENT,
    PHARMACY_ADDRESS,
    RPPS,
    prescription,
    report,
)

from gateway.documents.model import DispensingKind
from gateway.errors import GatewayError, InvalidIdentifier
from gateway.prescriptions.registry import (
    AlreadyRegistered,
    CancellationRefused,
    DispensationConflict,
    InvalidDispensation,
    InvalidPrescription,
    NotAPharmacy,
    NotPrescriber,
    OverDispensing,
    PrescriptionCancelled,
    PrescriptionExpired,
    PrescriptionFullyDispensed,
    PrescriptionNotFound,
    Status,
    UnknownLine,
    add_months,
)
from gateway.prescriptions.sqlite_registry import SQLiteRegistry

ADMIN = "admin:test"


class AuditSpy:
    """An `AuditLog` keeping its entries in memory."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, str, dict]] = []

    def record(self, actor: str, action: str, target: str, details: dict) -> None:
        self.entries.append((actor, action, target, details))

    __call__ = record

    @contextlib.contextmanager
    def held(self):
        yield

    def read(self, *, action=None, target=None):
        return iter(())

    def close(self) -> None:
        pass

    def actions(self) -> list[str]:
        return [e[1] for e in self.entries]


@pytest.fixture
def audit() -> AuditSpy:
    return AuditSpy()


@pytest.fixture
def reg(storage, audit: AuditSpy):
    """The registry of each storage backend (tests/conftest.py STORAGE_BACKENDS): this module
    is the registry's contract."""
    records = storage.records(audit)
    yield records.registry
    records.close()


def register(reg, **kw):
    return reg.register(
        prescription(**kw),
        prescriber_address=DOCTOR,
        patient_address=PATIENT,
        package=b"PK\x03\x04",
    )


def remaining(reg, ident):
    return [ln.remaining for ln in reg.remaining(ident, actor=ADMIN)]


def test_register_records_everything(reg, audit):
    rec = register(reg, lines=(("DOLIPRANE", "2", 1), ("AMOXICILLINE", "1", 0)))
    assert rec.status_at(DAY0) is Status.ACTIVE
    assert rec.prescriber_address == DOCTOR and rec.prescriber_rpps == RPPS
    assert rec.patient_ins == "279035121518989"
    assert rec.validity_end == dt.date(2026, 4, 15)  # 3 months
    assert rec.dispensable_until == dt.date(2027, 1, 15)  # renewals: 12 months
    assert [ln.allowed for ln in rec.lines] == [Decimal(4), Decimal(1)]  # 2 × (1 + 1 renewal)
    assert rec.has_package and reg.package(rec.identifier, actor=ADMIN) == b"PK\x03\x04"
    assert audit.actions()[0] == "prescription.register"
    got = reg.get(rec.identifier, actor="pharmacie@x")
    assert got == rec
    assert audit.entries[-1][:3] == ("pharmacie@x", "prescription.read", rec.identifier)


def test_register_twice_is_refused(reg):
    p = prescription()
    reg.register(p, prescriber_address=DOCTOR, patient_address=PATIENT)
    with pytest.raises(AlreadyRegistered, match="already registered"):
        reg.register(p, prescriber_address=DOCTOR, patient_address=PATIENT)


def test_register_refuses_bad_input(reg):
    from dataclasses import replace

    p = prescription()
    with pytest.raises(InvalidPrescription, match="check character"):
        reg.register(
            replace(p, identifier=p.identifier[:-1] + ("A" if p.identifier[-1] != "A" else "B")),
            prescriber_address=DOCTOR,
            patient_address=PATIENT,
        )
    with pytest.raises(InvalidPrescription, match="at least one line"):
        reg.register(replace(p, lines=()), prescriber_address=DOCTOR, patient_address=PATIENT)
    with pytest.raises(InvalidIdentifier, match="patient INS"):
        reg.register(
            replace(p, patient=replace(p.patient, ins="279035121518988")),
            prescriber_address=DOCTOR,
            patient_address=PATIENT,
        )
    for bad in ("0", "NaN", "-2"):
        with pytest.raises(InvalidPrescription, match="quantity must be positive"):
            register(reg, lines=(("DOLIPRANE", bad, 0),))
    assert reg.find(actor=ADMIN) == []


def test_prescription_registered_elsewhere_is_kept_and_dispensed_here(reg, audit):
    """Another operator's prescription, kept with the signed package a patient forwarded:
    lines and validity from the document, dispensed like ours, marked as registered elsewhere
    (the national status is not known here)."""
    p = prescription(lines=(("DOLIPRANE 1000 mg", "2", 1),))
    rec = reg.record_external(p, prescriber_address="Dr.House@Peer.localhost",
                              patient_address="179035121518942@patient.peer.localhost",
                              package=b"PK\x03\x04 signed", actor=PHARMACY_ADDRESS, now=DAY0)
    assert rec.registered_elsewhere and rec.as_dict(DAY0)["registered_elsewhere"] is True
    assert rec.prescriber_address == "dr.house@peer.localhost" and rec.prescriber_rpps == RPPS
    assert rec.validity_end == dt.date(2026, 4, 15) and rec.lines[0].allowed == Decimal(4)
    assert reg.package(rec.identifier, actor=ADMIN) == b"PK\x03\x04 signed"
    assert audit.entries[0][:3] == (PHARMACY_ADDRESS, "prescription.record-external",
                                    rec.identifier)
    assert reg.get(rec.identifier, actor=ADMIN) == rec
    done = reg.dispense(report(rec.identifier, ("1", "2")), now=DAY0)
    assert done.applied and done.record.registered_elsewhere
    assert done.record.status_at(DAY0) is Status.PARTIALLY_DISPENSED
    with pytest.raises(AlreadyRegistered):
        reg.record_external(p, prescriber_address=DOCTOR, patient_address=PATIENT,
                            package=b"PK\x03\x04")
    ours = register(reg)
    assert not ours.registered_elsewhere
    with pytest.raises(InvalidPrescription, match="signed package"):
        reg.record_external(prescription(), prescriber_address=DOCTOR, patient_address=PATIENT,
                            package=b"")


def test_partial_then_full_then_refused(reg):
    ident = register(reg, lines=(("DOLIPRANE", "2", 1), ("AMOX", "1", 0))).identifier
    r1 = reg.dispense(report(ident, ("1", "2"), dispensation_id="d1"), now=DAY0)
    assert r1.applied and r1.record.status_at(DAY0) is Status.PARTIALLY_DISPENSED
    assert remaining(reg, ident) == [Decimal(2), Decimal(1)]
    r2 = reg.dispense(report(ident, ("L1", "2"), ("L2", "1"), dispensation_id="d2"), now=DAY0)
    assert r2.record.status_at(DAY0) is Status.DISPENSED
    assert "fully dispensed" in r2.message
    assert remaining(reg, ident) == [Decimal(0), Decimal(0)]
    with pytest.raises(PrescriptionFullyDispensed, match="cannot be used again"):
        reg.dispense(report(ident, ("1", "1"), dispensation_id="d3"), now=DAY0)
    rec = reg.get(ident, actor=ADMIN)
    assert [d.dispensation_id for d in rec.dispensations] == ["d1", "d2"]
    assert rec.dispensations[0].pharmacy == "pharmacie.centrale@test.localhost"


def test_dispensation_details_are_kept(reg):
    ident = register(reg, lines=(("DOLIPRANE", "2", 0), ("AMOX", "1", 0))).identifier
    reg.dispense(
        report(
            ident,
            ("1", "2"),
            kind=DispensingKind.SUBSTITUTED,
            reason="générique",
        ),
        now=DAY0,
    )
    reg.dispense(
        report(ident, ("2", "0"), dispensation_id="d2", kind=DispensingKind.NOT_DELIVERED,
               reason="rupture de stock"),
        now=DAY0,
    )
    rec = reg.get(ident, actor=ADMIN)
    first, second = rec.dispensations
    assert first.lines[0].substituted and first.lines[0].substitution_reason == "générique"
    assert second.lines[0].not_delivered_reason == "rupture de stock"
    assert rec.status_at(DAY0) is Status.PARTIALLY_DISPENSED  # line 2 still to deliver


def test_over_dispensing_counts_renewals(reg):
    ident = register(reg, lines=(("DOLIPRANE", "2", 2),)).identifier  # 6 in all
    with pytest.raises(OverDispensing, match="7 boîte asked, only 6 remain"):
        reg.dispense(report(ident, ("1", "7")), now=DAY0)
    reg.dispense(report(ident, ("1", "5")), now=DAY0)
    with pytest.raises(OverDispensing, match="only 1 remain"):
        reg.dispense(report(ident, ("1", "2"), dispensation_id="d2"), now=DAY0)


def test_line_without_quantity_counts_deliveries(reg):
    ident = register(reg, lines=(("PRÉPARATION", None, 1),)).identifier
    reg.dispense(report(ident, ("1", "1"), dispensation_id="a"), now=DAY0)
    rec = reg.dispense(report(ident, ("1", "3"), dispensation_id="b"), now=DAY0).record
    assert rec.status_at(DAY0) is Status.DISPENSED


def test_same_report_twice_changes_nothing(reg):
    ident = register(reg, lines=(("DOLIPRANE", "2", 0),)).identifier
    first = reg.dispense(report(ident, ("1", "2")), now=DAY0)
    assert first.applied
    again = reg.dispense(report(ident, ("1", "2")), now=DAY0)  # now fully dispensed: still a replay
    assert not again.applied and "already recorded" in again.message
    assert again.record == first.record
    assert len(reg.get(ident, actor=ADMIN).dispensations) == 1
    with pytest.raises(DispensationConflict, match="different content"):
        reg.dispense(report(ident, ("1", "1")), now=DAY0)


def test_refused_report_is_refused_whole(reg, audit):
    ident = register(reg, lines=(("DOLIPRANE", "2", 0), ("AMOX", "1", 0))).identifier
    before = reg.get(ident, actor=ADMIN)
    with pytest.raises(OverDispensing):
        reg.dispense(report(ident, ("1", "1"), ("2", "5")), now=DAY0)  # line 1 fine, line 2 not
    with pytest.raises(UnknownLine, match="no line '9'"):
        reg.dispense(report(ident, ("1", "1"), ("9", "1")), now=DAY0)
    with pytest.raises(InvalidDispensation, match="reason"):
        reg.dispense(report(ident, ("1", "0")), now=DAY0)
    for bad in ("NaN", "-1", "Infinity"):
        with pytest.raises(InvalidDispensation, match="is not a quantity"):
            reg.dispense(report(ident, ("1", bad)), now=DAY0)
    after = reg.get(ident, actor=ADMIN)
    assert after == before and after.dispensations == ()
    refusals = [e for e in audit.entries if e[3].get("outcome") == "refused"]
    assert len(refusals) == 6
    # the id of a refused report is not burnt: the corrected report goes through
    assert reg.dispense(report(ident, ("1", "1"), ("2", "1")), now=DAY0).applied


def test_not_a_pharmacy(reg):
    ident = register(reg).identifier
    with pytest.raises(NotAPharmacy, match="not a pharmacy"):
        reg.dispense(report(ident, ("1", "1"), dispenser=NOT_PHARMACY), now=DAY0)


def test_expiry_at_three_months(reg):
    ident = register(reg).identifier
    last_day = dt.datetime(2026, 4, 15, 23, 0, tzinfo=dt.UTC)
    assert reg.get(ident, actor=ADMIN).status_at(last_day) is Status.ACTIVE
    day_after = last_day + dt.timedelta(hours=2)
    assert reg.get(ident, actor=ADMIN).status_at(day_after) is Status.EXPIRED
    # computed at the check, before any sweep
    assert [r.identifier for r in reg.find(actor=ADMIN, status=Status.EXPIRED, now=day_after)] == [
        ident
    ]
    with pytest.raises(PrescriptionExpired, match="expired on 2026-04-15"):
        reg.dispense(report(ident, ("1", "1")), now=day_after)
    assert reg.expire(actor=ADMIN, now=last_day) == []
    assert reg.expire(actor=ADMIN, now=day_after) == [ident]
    assert reg.get(ident, actor=ADMIN).stored_status is Status.EXPIRED
    assert reg.expire(actor=ADMIN, now=day_after) == []


def test_custom_validity(reg):
    ident = register(reg, validity_end=dt.date(2026, 1, 31)).identifier
    with pytest.raises(PrescriptionExpired):
        reg.dispense(report(ident, ("1", "1")), now=dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    with pytest.raises(InvalidPrescription, match="before the prescription date"):
        register(reg, validity_end=dt.date(2025, 12, 1))


def test_renewals_continue_after_first_validity(reg):
    ident = register(reg, lines=(("DOLIPRANE", "1", 2),)).identifier
    reg.dispense(report(ident, ("1", "1"), dispensation_id="a"), now=DAY0)
    in_june = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)  # past the 3 months, within 12
    assert reg.dispense(report(ident, ("1", "1"), dispensation_id="b"), now=in_june).applied
    next_year = dt.datetime(2027, 1, 16, tzinfo=dt.UTC)
    with pytest.raises(PrescriptionExpired, match="renewals end 12 months"):
        reg.dispense(report(ident, ("1", "1"), dispensation_id="c"), now=next_year)


def test_cancel_by_prescriber_only(reg):
    ident = register(reg).identifier
    with pytest.raises(NotPrescriber, match="only its prescriber"):
        reg.cancel(ident, by="dr.other@test.localhost")
    result = reg.cancel(ident, by=DOCTOR.upper(), reason="erreur de posologie", now=DAY0)
    assert result.applied and result.record.status_at() is Status.CANCELLED
    assert result.record.cancel_reason == "erreur de posologie"
    assert not reg.cancel(ident, by=DOCTOR, now=DAY0).applied  # twice: says so, changes nothing
    with pytest.raises(PrescriptionCancelled, match="cancelled by its prescriber on 2026-01-15"):
        reg.dispense(report(ident, ("1", "1")), now=DAY0)
    other = register(reg).identifier
    assert reg.cancel(other, by="someone@else", by_rpps=RPPS, now=DAY0).applied  # by RPPS


def test_cannot_cancel_fully_dispensed(reg):
    ident = register(reg).identifier
    reg.dispense(report(ident, ("1", "2")), now=DAY0)
    with pytest.raises(CancellationRefused, match="too late"):
        reg.cancel(ident, by=DOCTOR, now=DAY0)


def test_unknown_and_malformed_identifiers(reg):
    from gateway.prescriptions.identifier import new_identifier

    with pytest.raises(PrescriptionNotFound, match="not in the registry"):
        reg.get(new_identifier(), actor=ADMIN)
    with pytest.raises(InvalidPrescription, match="18 characters"):
        reg.get("ABC", actor=ADMIN)
    with pytest.raises(GatewayError):
        reg.dispense(report("ABC", ("1", "1")))


def test_find_filters(reg):
    a = register(reg).identifier
    b = register(reg).identifier
    reg.dispense(report(b, ("1", "1")), now=DAY0)
    assert {r.identifier for r in reg.find(actor=ADMIN, patient_ins="279035121518989")} == {a, b}
    assert {r.identifier for r in reg.find(actor=ADMIN, prescriber=RPPS)} == {a, b}
    assert {r.identifier for r in reg.find(actor=ADMIN, prescriber=DOCTOR.upper())} == {a, b}
    assert reg.find(actor=ADMIN, prescriber="nobody@x") == []
    part = reg.find(actor=ADMIN, status=Status.PARTIALLY_DISPENSED, now=DAY0)
    assert [r.identifier for r in part] == [b]


def test_find_pages_newest_first_and_count_says_how_many(reg, audit):
    """The administrators' listing: one page at a time (offset, limit), newest first, counted
    apart; only the patients of the page read are audited, a count reads nobody's data."""
    ids = [register(reg, date=DAY0 + dt.timedelta(days=i)).identifier for i in range(5)]
    newest_first = list(reversed(ids))
    assert [r.identifier for r in reg.find(actor=ADMIN, limit=2)] == newest_first[:2]
    assert [r.identifier for r in reg.find(actor=ADMIN, limit=2, offset=2)] == newest_first[2:4]
    assert [r.identifier for r in reg.find(actor=ADMIN, limit=2, offset=4)] == newest_first[4:]
    assert reg.find(actor=ADMIN, limit=2, offset=5) == []
    assert reg.count() == 5
    assert reg.count(prescriber=RPPS, patient_ins="279035121518989") == 5
    reg.dispense(report(ids[0], ("1", "1")), now=DAY0)
    assert reg.count(status=Status.PARTIALLY_DISPENSED, now=DAY0) == 1
    assert reg.count(prescriber="nobody@x") == 0
    audit.entries.clear()
    reg.count()
    assert audit.entries == []
    (page,) = [r for r in reg.find(actor=ADMIN, limit=1, offset=1)]
    (entry,) = audit.entries
    assert entry[:3] == (ADMIN, "prescription.list", "*")
    assert entry[3]["count"] == 1 and entry[3]["patients"] == [page.patient_ins]


def test_purge_after_five_years(reg, audit):
    old = register(reg, date=dt.datetime(2020, 3, 1, tzinfo=dt.UTC)).identifier
    reg.dispense(report(old, ("1", "1")), now=dt.datetime(2020, 3, 2, tzinfo=dt.UTC))
    recent = register(reg, date=dt.datetime(2021, 6, 1, tzinfo=dt.UTC)).identifier
    now = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    assert reg.purge(actor=ADMIN, dry_run=True, now=now) == [old]
    reg.get(old, actor=ADMIN)  # dry run kept it
    assert reg.purge(actor=ADMIN, now=now) == [old]
    with pytest.raises(PrescriptionNotFound):
        reg.get(old, actor=ADMIN)
    assert reg.get(recent, actor=ADMIN)
    assert audit.entries[-3][1] == "prescription.purge"
    assert reg.package(recent, actor=ADMIN) is not None
    if isinstance(reg, SQLiteRegistry):  # nothing of it is left behind
        left = reg.conn.execute("SELECT count(*) FROM dispensations").fetchone()[0]
        assert left == 0  # dispensations, lines and the package went with it
        assert reg.conn.execute("SELECT count(*) FROM prescription_packages").fetchone()[0] == 1


def test_feedback_objection(reg):
    ident = register(reg).identifier
    assert reg.set_feedback_objection(ident, True, actor=PATIENT)
    assert not reg.set_feedback_objection(ident, True, actor=PATIENT)
    assert reg.get(ident, actor=ADMIN).patient_objects_to_feedback


def test_add_months_clamps():
    assert add_months(dt.date(2025, 11, 30), 3) == dt.date(2026, 2, 28)
    assert add_months(dt.date(2026, 1, 31), -2) == dt.date(2025, 11, 30)
    assert add_months(dt.date(2024, 2, 29), -60) == dt.date(2019, 2, 28)


def _dispense_last(config, ident: str, disp_id: str, start, results) -> None:
    """Another process of the gateway, on the same store (built from the configuration)."""
    from gateway.runtime import storage_for

    storage = storage_for(config)
    records = storage.records(storage.audit_log())
    reg = records.registry
    start.wait()
    try:
        reg.dispense(report(ident, ("1", "1"), dispensation_id=disp_id), now=DAY0)
        results.put("won")
    except (OverDispensing, PrescriptionFullyDispensed):
        results.put("refused")
    except Exception as exc:  # anything else is a failure of the test
        results.put(f"error: {exc!r}")
    finally:
        records.close()


def test_two_processes_dispensing_the_last_unit(reg, storage):
    ident = register(reg).identifier  # 2 boxes
    reg.dispense(report(ident, ("1", "1"), dispensation_id="first"), now=DAY0)
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_dispense_last, args=(storage.config, ident, f"p{i}", start, results))
        for i in range(2)
    ]
    for p in procs:
        p.start()
    start.set()
    outcomes = sorted(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert outcomes == ["refused", "won"]
    rec = reg.get(ident, actor=ADMIN)
    assert rec.lines[0].delivered == 2 and rec.stored_status is Status.DISPENSED


def test_report_from_a_parsed_dispensation(reg):
    from gateway.documents.model import Dispensation
    from gateway.prescriptions.registry import DispensationReport

    p = prescription(lines=(("DOLIPRANE", "2", 0),))
    reg.register(p, prescriber_address=DOCTOR, patient_address=PATIENT)
    one = report(p.identifier, ("L1", "2"))
    disp = Dispensation(
        prescription_id=p.identifier,
        prescription_document_id=p.document_id,
        patient=p.patient,
        author=p.author,
        date=DAY0,
        lines=one.lines,
        document_id="1.2.250.1.999.2.77",
    )
    rep = DispensationReport.from_dispensation(disp, one.dispenser)
    assert rep.dispensation_id == rep.document_id == "1.2.250.1.999.2.77"
    assert reg.dispense(rep, now=DAY0).applied
    assert not reg.dispense(rep, now=DAY0).applied  # the eDISP document id is the key
    with pytest.raises(InvalidDispensation, match="needs an id"):
        DispensationReport.from_dispensation(
            Dispensation(**{**disp.__dict__, "document_id": None}), one.dispenser
        )
