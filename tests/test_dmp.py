"""The embedded DMP: filing, queries, replacement, deletion, access rule and audit entries."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
from registry_fixtures import plain_home

from gateway.cli import main
from gateway.dmp import (
    AccessDenied,
    Actor,
    ActorKind,
    DocumentMetadata,
    DocumentNotFound,
    DocumentStatus,
    DuplicateDocument,
    InvalidDocument,
)
from gateway.dmp.sqlite import SQLiteDMP
from gateway.errors import InvalidIdentifier

INS = "279035121518989"
OTHER_INS = "180017512345660"
GATEWAY = Actor.gateway()
DOCTOR = Actor(
    ActorKind.PROFESSIONAL,
    "dr.martin@test.localhost",
    national_id="810000000009",
    organisation="cabinet@test.localhost",
)
STRANGER = Actor(ActorKind.PROFESSIONAL, "dr.nobody@test.localhost", national_id="810000000017")
PHARMACY = Actor(ActorKind.ORGANISATION, "pharmacie@test.localhost", national_id="1750000001")
PHARMACIST = Actor(
    ActorKind.PROFESSIONAL, "ph.durand@test.localhost", organisation="pharmacie@test.localhost"
)
PATIENT = Actor.patient(INS, f"{INS}@patient.test.localhost")


class AuditSpy(list):
    """An `AuditLog` keeping its entries in memory."""

    def record(self, actor, action, target, details):
        self.append({"actor": actor, "action": action, "target": target, **details})

    __call__ = record

    @contextlib.contextmanager
    def held(self):
        yield

    def read(self, *, action=None, target=None):
        return iter(())

    def close(self):
        pass


@pytest.fixture
def audit():
    return AuditSpy()


@pytest.fixture
def dmp(storage, audit):
    """The DMP of each storage backend (tests/conftest.py STORAGE_BACKENDS): this module is the
    DMP's contract (but for the tests of the embedded implementation's own parts)."""
    records = storage.records(audit)
    yield records.dmp
    records.close()


def meta(uid: str, **kw) -> DocumentMetadata:
    base = DocumentMetadata(
        unique_id=uid,
        patient_ins=INS,
        class_code="42",
        type_code="57833-6",
        format_code="urn:ihe:pharm:pre:2010",
        creation_time=dt.datetime(2026, 1, 15, 9, 30, tzinfo=dt.UTC),
        title="Prescription de produits de santé",
        author_id="810000000009",
        author_address="dr.martin@test.localhost",
        set_id=f"set-{uid}",
    )
    return replace(base, **kw)


def prescription_doc(dmp, uid="1.2.3.1", **kw):
    return dmp.submit(
        meta(uid, **kw),
        f"<doc id='{uid}'/>".encode(),
        actor=GATEWAY,
        signature=b"<sig/>",
        signature_format="urn:ihe:iti:dsg:detached:2014",
    )


def dispensation_doc(dmp, uid="1.2.3.9"):
    return dmp.submit(
        meta(
            uid,
            class_code="43",
            type_code="60593-1",
            format_code="urn:ihe:pharm:dis:2010",
            title="Dispensation",
            author_id=None,
            author_address="ph.durand@test.localhost",
            author_institution="pharmacie@test.localhost",
            creation_time=dt.datetime(2026, 1, 20, 17, 0, tzinfo=dt.UTC),
        ),
        b"<disp/>",
        actor=GATEWAY,
    )


def test_submit_and_retrieve(dmp, audit):
    content = b"<doc id='1.2.3.1'/>"
    entry = prescription_doc(dmp)
    assert entry.status is DocumentStatus.APPROVED
    assert entry.hash == hashlib.sha1(content).hexdigest().upper() and entry.size == len(content)
    assert entry.has_signature
    doc = dmp.retrieve("1.2.3.1", actor=PATIENT)
    assert doc.content == content and doc.signature == b"<sig/>"
    assert doc.entry.metadata.creation_time == dt.datetime(2026, 1, 15, 9, 30, tzinfo=dt.UTC)
    assert audit[-1] == {
        "actor": PATIENT.name,
        "action": "dmp.retrieve",
        "target": "1.2.3.1",
        "outcome": "granted",
        "rule": "the patient's own record",
        "patient": INS,
    }
    assert audit[0]["action"] == "dmp.submit" and audit[0]["outcome"] == "filed"


def test_submit_checks(dmp):
    with pytest.raises(InvalidDocument, match="hash .* does not match"):
        dmp.submit(meta("a", hash="00" * 20), b"x", actor=GATEWAY)
    with pytest.raises(InvalidDocument, match="size 3 does not match"):
        dmp.submit(meta("a", size=3), b"x", actor=GATEWAY)
    with pytest.raises(InvalidIdentifier, match="patient INS"):
        dmp.submit(meta("a", patient_ins="279035121518988"), b"x", actor=GATEWAY)
    with pytest.raises(AccessDenied, match="only professionals and the gateway"):
        dmp.submit(meta("a"), b"x", actor=PATIENT)
    ok = dmp.submit(meta("a", hash=hashlib.sha1(b"x").hexdigest(), size=1), b"x", actor=GATEWAY)
    assert ok.size == 1
    with pytest.raises(DuplicateDocument, match="already in the DMP"):
        dmp.submit(meta("a"), b"y", actor=GATEWAY)
    assert dmp.retrieve("a", actor=GATEWAY).content == b"x"


def test_queries(dmp):
    prescription_doc(dmp, "p1")
    prescription_doc(dmp, "p2", creation_time=dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    dispensation_doc(dmp, "d1")
    dmp.submit(meta("other", patient_ins=OTHER_INS), b"o", actor=GATEWAY)

    def uids(**kw):
        return [e.unique_id for e in dmp.find(INS, actor=GATEWAY, **kw)]

    assert uids() == ["p2", "d1", "p1"]  # newest first, only this patient
    assert uids(class_codes=["42"]) == ["p2", "p1"]
    assert uids(type_codes=["60593-1"]) == ["d1"]
    assert uids(created_from=dt.datetime(2026, 1, 16), created_to=dt.datetime(2026, 2, 1)) == ["d1"]
    dmp.deprecate("p1", actor=GATEWAY)
    assert uids(class_codes=["42"]) == ["p2"]
    assert uids(status=DocumentStatus.DEPRECATED) == ["p1"]
    assert uids(status=None) == ["p2", "d1", "p1"]


def test_replacement_deprecates_the_old_version(dmp):
    prescription_doc(dmp, "v1")
    new = dmp.submit(meta("v2", set_id=None), b"<v2/>", actor=DOCTOR, replaces="v1")
    assert new.replaces == "v1" and new.metadata.version == 2
    assert new.metadata.set_id == "set-v1"  # the same document's next version
    old = dmp.entry("v1", actor=GATEWAY)
    assert old.status is DocumentStatus.DEPRECATED and old.replaced_by == "v2"
    assert [e.unique_id for e in dmp.find(INS, actor=GATEWAY)] == ["v2"]
    with pytest.raises(InvalidDocument, match="already deprecated"):
        dmp.submit(meta("v3"), b"<v3/>", actor=GATEWAY, replaces="v1")
    with pytest.raises(InvalidDocument, match="another patient"):
        dmp.submit(meta("v3", patient_ins=OTHER_INS), b"<v3/>", actor=GATEWAY, replaces="v2")
    with pytest.raises(AccessDenied, match="only the document's author"):
        dmp.submit(meta("v3"), b"<v3/>", actor=PHARMACY, replaces="v2")
    with pytest.raises(DocumentNotFound):
        dmp.submit(meta("v3"), b"<v3/>", actor=GATEWAY, replaces="nope")
    # nothing of the refused submissions was filed, v2 still current
    assert [e.unique_id for e in dmp.find(INS, actor=GATEWAY, status=None)] == ["v2", "v1"]


def test_deletion(dmp, audit):
    prescription_doc(dmp, "v1")
    dmp.submit(meta("v2"), b"<v2/>", actor=GATEWAY, replaces="v1")
    with pytest.raises(AccessDenied):
        dmp.delete("v2", actor=STRANGER)
    deleted = dmp.delete("v2", actor=PATIENT)  # a patient may delete their documents
    assert deleted.unique_id == "v2"
    with pytest.raises(DocumentNotFound, match="not in the DMP"):
        dmp.retrieve("v2", actor=GATEWAY)
    assert (
        dmp.conn.execute("SELECT count(*) FROM dmp_content WHERE unique_id='v2'").fetchone()[0] == 0
    )
    old = dmp.entry("v1", actor=GATEWAY)
    assert old.status is DocumentStatus.DEPRECATED and old.replaced_by is None
    assert [a["outcome"] for a in audit if a["action"] == "dmp.delete"] == ["refused", "granted"]
    assert audit[-1]["outcome"] == "granted"


def test_access_rule(dmp, audit):
    prescription_doc(dmp, "p1")  # authored by DOCTOR
    # the author reads; by address or by national id
    assert dmp.find(INS, actor=DOCTOR)
    assert dmp.find(INS, actor=Actor(ActorKind.PROFESSIONAL, "new@x", national_id="810000000009"))
    # a professional with no document for this patient is refused, and the refusal is audited
    with pytest.raises(AccessDenied, match="authored a document for this patient"):
        dmp.find(INS, actor=STRANGER)
    assert audit[-1]["outcome"] == "refused" and audit[-1]["actor"] == STRANGER.name
    with pytest.raises(AccessDenied):
        dmp.retrieve("p1", actor=PHARMACY)
    # the pharmacy that dispensed for the patient reads, as does its pharmacist
    dispensation_doc(dmp, "d1")
    assert len(dmp.find(INS, actor=PHARMACY)) == 2
    assert dmp.retrieve("p1", actor=PHARMACIST).content
    # the patient reads their own record only
    assert len(dmp.find(INS, actor=PATIENT)) == 2
    with pytest.raises(AccessDenied, match="only their own record"):
        dmp.find(INS, actor=Actor.patient(OTHER_INS))
    # software mailboxes never
    with pytest.raises(AccessDenied, match="software"):
        dmp.find(INS, actor=Actor(ActorKind.APPLICATION, "robot@x"))
    # only the author deprecates
    with pytest.raises(AccessDenied, match="author may deprecate"):
        dmp.deprecate("p1", actor=PHARMACY)
    assert dmp.deprecate("p1", actor=DOCTOR) and not dmp.deprecate("p1", actor=DOCTOR)
    queries = [a for a in audit if a["action"] == "dmp.query"]
    assert {q["outcome"] for q in queries} == {"granted", "refused"}
    assert all(q["target"] == INS for q in queries)


def test_unknown_document_is_audited(dmp, audit):
    with pytest.raises(DocumentNotFound):
        dmp.retrieve("nope", actor=DOCTOR)
    assert audit[-1]["outcome"] == "not-found" and audit[-1]["actor"] == DOCTOR.name


# ---- CLI ----


def cli(home: Path, capsys, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--config", str(home / "config.toml")])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli(capsys, tmp_path):
    gateway_home = plain_home(tmp_path)
    d = SQLiteDMP.open(gateway_home / "var" / "gateway.db")
    prescription_doc(d, "1.2.3.1")
    dispensation_doc(d, "1.2.3.9")
    d.close()
    code, out, _ = cli(gateway_home, capsys, "dmp", "list", "--patient", INS)
    assert code == 0 and "1.2.3.1" in out and "1.2.3.9" in out
    code, out, _ = cli(
        gateway_home, capsys, "dmp", "list", "--patient", INS, "--class", "43", "--json"
    )
    assert [e["unique_id"] for e in json.loads(out)] == ["1.2.3.9"]
    code, out, _ = cli(
        gateway_home, capsys, "dmp", "list", "--patient", INS, "--from", "2026-01-16"
    )
    assert "1.2.3.9" in out and "1.2.3.1" not in out
    code, out, _ = cli(gateway_home, capsys, "dmp", "show", "1.2.3.1", "--json")
    assert json.loads(out)["class_code"] == "42"
    target = tmp_path / "doc.xml"
    code, out, _ = cli(
        gateway_home,
        capsys,
        "dmp",
        "get",
        "1.2.3.1",
        "-o",
        str(target),
        "--signature",
        str(tmp_path / "sig.xml"),
    )
    assert code == 0 and target.read_bytes() == b"<doc id='1.2.3.1'/>"
    assert (tmp_path / "sig.xml").read_bytes() == b"<sig/>"
    code, out, _ = cli(gateway_home, capsys, "dmp", "deprecate", "1.2.3.1")
    assert code == 0 and "deprecated" in out
    code, out, _ = cli(
        gateway_home, capsys, "dmp", "list", "--patient", INS, "--status", "deprecated"
    )
    assert "1.2.3.1" in out and "1.2.3.9" not in out
    code, out, _ = cli(gateway_home, capsys, "dmp", "delete", "1.2.3.9")
    assert code == 0 and "deleted" in out
    code, _, err = cli(gateway_home, capsys, "dmp", "show", "1.2.3.9")
    assert code == 1 and err == "mssgw: error: document 1.2.3.9: not in the DMP\n"
    code, _, err = cli(gateway_home, capsys, "dmp", "list", "--patient", "123")
    assert code == 1 and "patient INS" in err
    code, _, err = cli(gateway_home, capsys, "dmp", "list", "--patient", INS, "--from", "yesterday")
    assert code == 1 and "a date is YYYY-MM-DD" in err
    log = [json.loads(x) for x in (gateway_home / "var" / "audit.log").read_text().splitlines()]
    log = [e for e in log if e["action"].startswith("dmp.")]  # init audits the directory too
    assert [e["action"] for e in log] == [
        "dmp.query",
        "dmp.query",
        "dmp.query",
        "dmp.entry",
        "dmp.retrieve",
        "dmp.deprecate",
        "dmp.query",
        "dmp.delete",
        "dmp.entry",
    ]
    from gateway.audit import local_actor

    assert {e["actor"] for e in log} == {local_actor()}


def test_registry_and_dmp_in_one_unit_of_work(storage, audit):
    """A flow registers and files in one commit; a failure in either leaves neither."""
    from registry_fixtures import DOCTOR as DOCTOR_ADDRESS
    from registry_fixtures import PATIENT as PATIENT_ADDRESS
    from registry_fixtures import prescription

    from gateway.prescriptions.registry import PrescriptionNotFound

    records = storage.records(audit)
    registry, dmp = records.registry, records.dmp
    prescription_doc(dmp, "already-there")
    p = prescription()
    with pytest.raises(DuplicateDocument), records.unit() as uow:
        uow.registry.register(p, prescriber_address=DOCTOR_ADDRESS,
                              patient_address=PATIENT_ADDRESS)
        uow.dmp.submit(meta("already-there"), b"<x/>", actor=GATEWAY)
    with pytest.raises(PrescriptionNotFound):
        registry.get(p.identifier, actor="admin:test")
    with records.unit() as uow:
        uow.registry.register(p, prescriber_address=DOCTOR_ADDRESS,
                              patient_address=PATIENT_ADDRESS)
        uow.dmp.submit(meta("new", prescription_id=p.identifier), b"<x/>", actor=GATEWAY)
    assert registry.get(p.identifier, actor="admin:test").identifier == p.identifier
    assert dmp.entry("new", actor=GATEWAY).metadata.prescription_id == p.identifier
    records.close()


def test_atomic_part_failure_undoes_only_that_part(tmp_path):
    from gateway.db import atomic, connect, transaction

    conn = connect(tmp_path / "gateway.db")
    dmp = SQLiteDMP(conn)
    with transaction(conn):
        prescription_doc(dmp, "kept")
        with pytest.raises(RuntimeError), atomic(conn):
            prescription_doc(dmp, "undone")
            raise RuntimeError("this part fails")
    assert [e.unique_id for e in dmp.find(INS, actor=GATEWAY)] == ["kept"]
    conn.close()


def test_dispensation_hidden_from_the_prescriber(dmp, audit):
    """The patient objected to prescriber feedback: the flow files the dispensation hidden from
    the prescriber, who still sees their own prescription."""
    prescription_doc(dmp, "p1")
    dmp.submit(
        meta(
            "d1",
            class_code="43",
            author_id=None,
            author_address="ph.durand@test.localhost",
            author_institution="pharmacie@test.localhost",
        ),
        b"<disp/>",
        actor=GATEWAY,
        hidden_from=["DR.MARTIN@test.localhost", "810000000009"],
    )
    assert [e.unique_id for e in dmp.find(INS, actor=DOCTOR)] == ["p1"]
    with pytest.raises(AccessDenied, match="hidden this document"):
        dmp.retrieve("d1", actor=DOCTOR)
    assert audit[-1]["outcome"] == "refused" and audit[-1]["target"] == "d1"
    assert dmp.retrieve("d1", actor=PHARMACY).content == b"<disp/>"
    assert dmp.retrieve("d1", actor=PATIENT).content == b"<disp/>"
    assert len(dmp.find(INS, actor=PATIENT)) == 2
    entry = dmp.entry("d1", actor=GATEWAY)
    assert entry.hidden_from == ("810000000009", "dr.martin@test.localhost")


def test_actors_and_dispensers_from_directory_mailboxes():
    from gateway.directory.model import (
        Mailbox,
        MailboxKind,
        Organisation,
        OrganisationKind,
        Patient,
        Professional,
    )
    from gateway.prescriptions.registry import Dispenser

    pharmacy = Mailbox(
        "pharmacie@x",
        MailboxKind.ORG,
        "Pharmacie",
        organisation=Organisation("750712184", None, "Pharmacie", OrganisationKind.PHARMACY),
    )
    practice = Mailbox(
        "cabinet@x",
        MailboxKind.ORG,
        "Cabinet",
        organisation=Organisation("750712184", None, "Cabinet", OrganisationKind.PRACTICE),
    )
    pharmacist = Mailbox(
        "ph@x",
        MailboxKind.PER,
        "Anne Durand",
        professional=Professional(
            "10000000017", None, "DURAND", "Anne", "21", structure="pharmacie@x"
        ),
    )
    patient = Mailbox(
        f"{INS}@patient.x",
        MailboxKind.PATIENT,
        "Marie",
        patient=Patient(INS, "DUPONT", "Marie", "F", dt.date(1979, 3, 5), "51215"),
    )
    assert Dispenser.from_mailbox(pharmacy).is_pharmacy
    assert not Dispenser.from_mailbox(practice).is_pharmacy
    assert Dispenser.from_mailbox(pharmacist, pharmacy) == Dispenser("pharmacie@x", True, "ph@x")
    assert not Dispenser.from_mailbox(pharmacist, practice).is_pharmacy
    a = Actor.from_mailbox(pharmacist)
    assert a.kind is ActorKind.PROFESSIONAL and a.keys() == {"ph@x", "810000000017", "pharmacie@x"}
    assert Actor.from_mailbox(pharmacy).keys() == {"pharmacie@x", "1750712184"}
    assert Actor.from_mailbox(patient) == Actor.patient(INS, f"{INS}@patient.x")
