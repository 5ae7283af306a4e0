"""`mssgw init --demo`: the demo population, created once, passwords printed once."""

from __future__ import annotations

import re
import stat
import subprocess
import sys

from gateway.config import load_config
from gateway.directory import demo, open_directory
from gateway.directory.model import MailboxKind, OrganisationKind


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=120
    )


def test_init_demo_is_idempotent(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[gateway]\ndomain = "demo.localhost"\n')
    first = run("init", "--demo", "--config", str(cfg))
    assert first.returncode == 0, first.stderr
    passwords = dict(re.findall(r"demo \w+: (\S+) \(.*?\) password: (\S+)", first.stdout))
    assert set(passwords) == {
        demo.doctor_address("demo.localhost"),
        demo.practice_address("demo.localhost"),
        demo.pharmacy_address("demo.localhost"),
        demo.pharmacist_address("demo.localhost"),
        demo.patient_address("demo.localhost"),
        demo.robot_address("demo.localhost"),
    }
    assert "dr.martin@demo.localhost" in passwords
    assert "279035121518989@patient.demo.localhost" in passwords
    second = run("init", "--demo", "--config", str(cfg))
    assert second.returncode == 0, second.stderr
    assert "demo population already exists" in second.stdout
    assert "nothing to do" in second.stdout
    assert "password:" not in second.stdout

    config = load_config(cfg)
    assert stat.S_IMODE(config.database_path.stat().st_mode) == 0o600
    directory = open_directory(config)
    assert len(directory.list_mailboxes()) == 6
    for address, password in passwords.items():
        assert directory.verify_password(address, password), address
    doctor = directory.find_by_rpps(demo.DOCTOR_RPPS)
    assert doctor is not None and doctor.kind is MailboxKind.PER
    assert doctor.professional is not None
    assert doctor.professional.profession == "10" and doctor.professional.specialty == "SM26"
    pharmacist = directory.find_by_rpps(demo.PHARMACIST_RPPS)
    assert pharmacist is not None and pharmacist.professional is not None
    assert pharmacist.professional.profession == "21"
    assert pharmacist.professional.structure == demo.pharmacy_address("demo.localhost")
    (pharmacy,) = directory.find_by_finess(demo.PHARMACY_FINESS)
    assert pharmacy.is_pharmacy and pharmacy.organisation is not None
    assert pharmacy.organisation.kind is OrganisationKind.PHARMACY
    patient = directory.find_by_ins(demo.PATIENT_INS)
    assert patient is not None and patient.patient is not None
    assert patient.address == demo.patient_address("demo.localhost")
    assert patient.patient.birth_date == demo.PATIENT_BIRTH_DATE
    robot = directory.get(demo.robot_address("demo.localhost"))
    assert robot is not None and robot.kind is MailboxKind.APP
