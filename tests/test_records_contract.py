"""The flows' `Records` contract: the registry, the DMP and the idempotence keys changed in one
unit of work (gateway/flows/records.py), for each storage backend (tests/conftest.py
STORAGE_BACKENDS). The registry's and the DMP's own contracts are tests/test_registry.py and
tests/test_dmp.py."""

from __future__ import annotations

import contextlib

import pytest
from registry_fixtures import DOCTOR, PATIENT, prescription

from gateway.dmp.model import Actor, DocumentMetadata, DuplicateDocument
from gateway.flows.records import AlreadyPrescribed
from gateway.prescriptions.registry import AlreadyRegistered, PrescriptionNotFound

ADMIN = "admin:test"
GATEWAY = Actor.gateway()


class HeldAudit:
    """An `AuditLog` that says when entries were written: held inside `held()`."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.pending: list[str] | None = None
        self.flushes = 0

    def record(self, actor, action, target, details) -> None:
        (self.pending if self.pending is not None else self.written).append(action)

    @contextlib.contextmanager
    def held(self):
        self.pending = []
        try:
            yield
        finally:
            self.written += self.pending
            self.pending = None
            self.flushes += 1

    def read(self, *, action=None, target=None):
        return iter(())

    def close(self) -> None:
        pass


@pytest.fixture
def audit() -> HeldAudit:
    return HeldAudit()


@pytest.fixture
def records(storage, audit):
    r = storage.records(audit)
    yield r
    r.close()


def doc(uid: str, identifier: str | None = None) -> DocumentMetadata:
    return DocumentMetadata(
        unique_id=uid, patient_ins="279035121518989", class_code="42", type_code="57833-6",
        format_code="urn:ihe:pharm:pre:2010", creation_time=prescription().date,
        title="Prescription", author_address=DOCTOR, prescription_id=identifier,
    )


def register(uow_or_records, p) -> None:
    uow_or_records.registry.register(p, prescriber_address=DOCTOR, patient_address=PATIENT,
                                     package=b"PK\x03\x04", actor=DOCTOR)


def test_a_unit_commits_all_of_it(records, audit):
    p = prescription()
    with records.unit() as uow:
        register(uow, p)
        uow.dmp.submit(doc("1.2.3.1", p.identifier), b"<cda/>", actor=GATEWAY)
        uow.prescribed.add("key-1", p.identifier)
        assert audit.written == []  # held until the end of the unit
    assert audit.written == ["prescription.register", "dmp.submit"] and audit.flushes == 1
    assert records.registry.get(p.identifier, actor=ADMIN).identifier == p.identifier
    assert records.dmp.entry("1.2.3.1", actor=GATEWAY).metadata.prescription_id == p.identifier
    assert records.prescribed.identifier_for("key-1") == p.identifier
    assert records.prescribed.identifier_for("key-2") is None


def test_an_exception_rolls_back_every_part(records, audit):
    p = prescription()
    records.dmp.submit(doc("1.2.3.1"), b"<cda/>", actor=GATEWAY)
    with pytest.raises(DuplicateDocument), records.unit() as uow:
        register(uow, p)
        uow.prescribed.add("key-1", p.identifier)
        uow.dmp.submit(doc("1.2.3.1", p.identifier), b"<cda/>", actor=GATEWAY)
    with pytest.raises(PrescriptionNotFound):
        records.registry.get(p.identifier, actor=ADMIN)
    assert records.prescribed.identifier_for("key-1") is None
    assert "prescription.register" in audit.written  # attempts are recorded too


def test_explicit_commit_and_rollback(records):
    a, b = prescription(), prescription()
    unit = records.unit()
    with unit:
        register(unit, a)
        unit.commit()  # ends it: the exit has nothing left to do
    with records.unit() as uow:
        register(uow, b)
        uow.rollback()
    assert records.registry.get(a.identifier, actor=ADMIN)
    with pytest.raises(PrescriptionNotFound):
        records.registry.get(b.identifier, actor=ADMIN)


def test_a_failed_part_inside_a_unit_refuses_and_leaves_the_rest(records):
    """A repository refusal inside the unit (a registration under a known identifier) raises
    and the whole unit rolls back: nothing of the second filing either."""
    p = prescription()
    register(records, p)
    with pytest.raises(AlreadyRegistered), records.unit() as uow:
        uow.dmp.submit(doc("1.2.3.7", p.identifier), b"<cda/>", actor=GATEWAY)
        register(uow, p)
    assert records.dmp.find("279035121518989", actor=GATEWAY) == []


def test_prescribed_keys_are_unique(records):
    p = prescription()
    with records.unit() as uow:
        register(uow, p)
        uow.prescribed.add("key-1", p.identifier)
    with pytest.raises(AlreadyPrescribed), records.unit() as uow:
        uow.prescribed.add("key-1", "another")
    assert records.prescribed.identifier_for("key-1") == p.identifier


def test_another_process_sees_what_a_unit_committed(storage, records):
    """Two processes of the gateway (or two gateways) on one store: what one commits, the other
    reads; nothing of a unit in progress is seen before its commit."""
    from gateway.runtime import storage_for

    other_storage = storage_for(storage.config)
    other = other_storage.records(other_storage.audit_log())
    try:
        p = prescription()
        with records.unit() as uow:
            register(uow, p)
            uow.prescribed.add("key-1", p.identifier)
        assert other.registry.get(p.identifier, actor=ADMIN).identifier == p.identifier
        assert other.prescribed.identifier_for("key-1") == p.identifier
    finally:
        other.close()
