"""`mssgw backup` / `mssgw restore` on each backend: a running installation's state copied out
(SQLite online backup + Maildir and files; pg_dump), then brought back into an empty
installation, where the mail, the registry and the DMP read back as they were."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from registry_fixtures import DOCTOR, PATIENT, prescription

from gateway.cli import main
from gateway.config import load_config
from gateway.dmp.model import Actor, DocumentMetadata
from gateway.runtime import storage_for

MAIL = b"From: dr.martin@test.localhost\r\nSubject: sauvegarde\r\n\r\nBonjour.\r\n"
BOX = "ph.durand@test.localhost"


def installation(home: Path, dsn: str | None) -> Path:
    cfg = home / "config.toml"
    if dsn:
        cfg.write_text(cfg.read_text() + f'\n[storage]\nbackend = "postgresql"\ndsn = "{dsn}"\n')
        assert main(["init", "--config", str(cfg)]) == 0
    return cfg


@pytest.mark.parametrize("backend", ["embedded", "postgresql"])
def test_backup_then_restore_into_an_empty_installation(backend, gateway_home, tmp_path,
                                                        request, capsys):
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgresql" else None
    cfg = installation(gateway_home, dsn)
    config = load_config(cfg)
    storage = storage_for(config)
    intake = storage.intake()
    intake.store([(BOX, MAIL)])
    intake.close()
    p = prescription()
    records = storage.records(storage.audit_log())
    with records.unit() as uow:
        uow.registry.register(p, prescriber_address=DOCTOR, patient_address=PATIENT,
                              package=b"PK\x03\x04", actor=DOCTOR)
        uow.dmp.submit(DocumentMetadata(
            unique_id="1.2.250.1.999.1", patient_ins="279035121518989", class_code="42",
            type_code="57833-6", format_code="urn:ihe:pharm:pre:2010",
            creation_time=p.date, title="Prescription", author_address=DOCTOR,
            prescription_id=p.identifier), b"<cda/>", actor=Actor.gateway())
    records.close()

    saved = tmp_path / "backup"
    assert main(["backup", str(saved), "--config", str(cfg)]) == 0
    assert main(["backup", str(saved), "--config", str(cfg)]) == 1  # never over a backup
    assert "is not empty" in capsys.readouterr().err

    # An empty installation: the same configuration, nothing else (a new, empty database).
    other = tmp_path / "restored"
    other.mkdir()
    shutil.copy(gateway_home / "config.toml", other / "config.toml")
    if dsn:
        server = request.getfixturevalue("postgres_server")
        text = (other / "config.toml").read_text().replace(dsn, server.dsn(
            server.create_database()))
        (other / "config.toml").write_text(text)
    ocfg = other / "config.toml"
    assert main(["restore", str(saved), "--config", str(ocfg)]) == 0
    assert main(["restore", str(saved), "--config", str(ocfg)]) == 1  # not empty any more
    assert main(["init", "--config", str(ocfg)]) == 0  # finds everything there

    restored = storage_for(load_config(ocfg))
    stores = restored.mail_stores()
    try:
        store = stores.acquire(BOX)
        inbox = store.folder("INBOX")
        assert inbox is not None
        names = store.arrivals(inbox)
        if names:
            store.adopt(inbox, names)
        view = store.view(inbox)
        [info] = store.infos(inbox, view.uids).values()
        assert store.read(inbox, info.base) == MAIL
    finally:
        stores.close()
    records = restored.records(restored.audit_log())
    try:
        got = records.registry.get(p.identifier, actor="test")
        assert got.patient_ins == "279035121518989" and got.has_package
        doc = records.dmp.retrieve("1.2.250.1.999.1", actor=Actor.gateway())
        assert doc.content == b"<cda/>"
    finally:
        records.close()
    assert (other / "certs" / "ca" / "root.pem").read_bytes() == (
        gateway_home / "certs" / "ca" / "root.pem").read_bytes()
