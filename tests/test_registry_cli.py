"""`mssgw prescriptions ...`: list, show, cancel, dispense, expire, purge; messages, exit codes."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from registry_fixtures import DOCTOR, PATIENT, plain_home, prescription, report

from gateway.cli import main
from gateway.prescriptions.identifier import new_identifier
from gateway.prescriptions.sqlite_registry import SQLiteRegistry

TODAY = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return plain_home(tmp_path)


def cli(home: Path, capsys, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--config", str(home / "config.toml")])
    out, err = capsys.readouterr()
    return code, out, err


def registered(home: Path, **kw) -> str:
    reg = SQLiteRegistry.open(home / "var" / "gateway.db")
    try:
        kw.setdefault("date", TODAY)
        kw.setdefault("lines", (("DOLIPRANE 1000 mg", "2", 1), ("AMOXICILLINE 500 mg", "1", 0)))
        rec = reg.register(prescription(**kw), prescriber_address=DOCTOR, patient_address=PATIENT)
        return rec.identifier
    finally:
        reg.close()


def audit_lines(home: Path) -> list[dict]:
    path = home / "var" / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_list_and_show(home, capsys):
    ident = registered(home)
    code, out, _ = cli(home, capsys, "prescriptions", "list")
    assert code == 0 and ident in out and "active" in out
    code, out, _ = cli(
        home, capsys, "prescriptions", "list", "--json", "--patient", "279035121518989"
    )
    assert code == 0 and [r["identifier"] for r in json.loads(out)] == [ident]
    code, out, _ = cli(home, capsys, "prescriptions", "list", "--status", "dispensed")
    assert code == 0 and "no prescription matches" in out
    code, out, _ = cli(home, capsys, "prescriptions", "show", ident)
    assert code == 0
    assert "DOLIPRANE 1000 mg: 2 boîte × 2 — delivered 0, remaining 4" in out
    code, out, _ = cli(home, capsys, "prescriptions", "show", ident, "--json")
    data = json.loads(out)
    assert data["status"] == "active" and data["lines"][0]["remaining"] == "4"
    reads = [e for e in audit_lines(home) if e["action"] == "prescription.read"]
    assert reads and reads[-1]["target"] == ident and reads[-1]["actor"]  # admin audited


def test_list_with_a_malformed_ins(home, capsys):
    code, _, err = cli(home, capsys, "prescriptions", "list", "--patient", "12345")
    assert code == 1 and "patient INS: '12345' is invalid" in err


def test_show_unknown_and_malformed(home, capsys):
    code, _, err = cli(home, capsys, "prescriptions", "show", new_identifier())
    assert code == 1 and "not in the registry" in err and err.count("\n") == 1
    code, _, err = cli(home, capsys, "prescriptions", "show", "NOPE")
    assert code == 1 and "18 characters" in err


def test_cancel(home, capsys):
    ident = registered(home)
    code, _, err = cli(home, capsys, "prescriptions", "cancel", ident, "--by", "x@test.localhost")
    assert code == 1 and "only its prescriber" in err
    code, out, _ = cli(
        home, capsys, "prescriptions", "cancel", ident, "--by", DOCTOR, "--reason", "erreur"
    )
    assert code == 0 and "cancelled" in out
    code, out, _ = cli(home, capsys, "prescriptions", "cancel", ident, "--by", DOCTOR)
    assert code == 0 and "already cancelled" in out
    code, out, _ = cli(home, capsys, "prescriptions", "show", ident)
    assert "status:       cancelled" in out and "erreur" in out
    cancels = [e for e in audit_lines(home) if e["action"] == "prescription.cancel"]
    assert [e["details"]["outcome"] for e in cancels] == ["refused", "cancelled", "unchanged"]


def test_expire_sweep(home, capsys):
    old = registered(home, date=TODAY - dt.timedelta(days=120))
    fresh = registered(home)
    code, out, _ = cli(home, capsys, "prescriptions", "expire", "--json")
    assert code == 0 and json.loads(out) == {"expired": [old]}
    code, out, _ = cli(home, capsys, "prescriptions", "expire")
    assert code == 0 and "0 prescription(s) expired" in out
    code, out, _ = cli(home, capsys, "prescriptions", "list", "--status", "active", "--json")
    assert [r["identifier"] for r in json.loads(out)] == [fresh]


def test_purge(home, capsys):
    old = registered(home, date=TODAY - dt.timedelta(days=5 * 366 + 2))
    keep = registered(home, date=TODAY - dt.timedelta(days=4 * 365))
    code, out, _ = cli(home, capsys, "prescriptions", "purge", "--dry-run")
    assert code == 0 and "would purge 1 prescription(s)" in out and old in out
    code, out, _ = cli(home, capsys, "prescriptions", "purge", "--json")
    assert json.loads(out)["purged"] == [old]
    code, out, _ = cli(home, capsys, "prescriptions", "list", "--json")
    assert [r["identifier"] for r in json.loads(out)] == [keep]
    code, out, _ = cli(home, capsys, "prescriptions", "purge", "--older-than-years", "3")
    assert code == 0 and keep in out


def test_dispense_refusal_reaches_the_user_as_one_line(home):
    """Through the real console entry point: a refused dispensation is one line, exit 1."""
    ident = registered(home)
    reg = SQLiteRegistry.open(home / "var" / "gateway.db")
    reg.dispense(report(ident, ("1", "4"), ("2", "1")), now=TODAY)
    reg.close()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "prescriptions",
            "show",
            ident,
            "--json",
            "--config",
            str(home / "config.toml"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "dispensed"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "prescriptions",
            "cancel",
            ident,
            "--by",
            DOCTOR,
            "--config",
            str(home / "config.toml"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert (
        r.stderr
        == f"mssgw: error: prescription {ident} is fully dispensed: too late to cancel it\n"
    )


PHARMACY_EMAIL = "pharmacie.centrale@test.localhost"


def directory_with_pharmacy(home: Path, capsys) -> None:
    for args in (
        ["trust", "add-domain", "test.localhost", "--own"],
        [
            "directory",
            "add-organisation",
            "--email",
            PHARMACY_EMAIL,
            "--finess",
            "750712184",
            "--name",
            "Pharmacie Centrale",
            "--kind",
            "pharmacy",
        ],
        [
            "directory",
            "add-organisation",
            "--email",
            "cabinet@test.localhost",
            "--finess",
            "750712184",
            "--name",
            "Cabinet",
            "--kind",
            "practice",
        ],
        [
            "directory",
            "add-professional",
            "--email",
            "ph.durand@test.localhost",
            "--rpps",
            "10000000017",
            "--family-name",
            "DURAND",
            "--given-name",
            "Anne",
            "--profession",
            "21",
            "--structure",
            PHARMACY_EMAIL,
        ],
    ):
        code, _, err = cli(home, capsys, *args)
        assert code == 0, err


def test_dispense_partial_then_rest_then_refused(home, capsys):
    directory_with_pharmacy(home, capsys)
    ident = registered(home)  # line 1: 2 × (1 + 1), line 2: 1
    code, out, err = cli(
        home,
        capsys,
        "prescriptions",
        "dispense",
        ident,
        "--pharmacy",
        PHARMACY_EMAIL,
        "1=2",
        "2=1",
        "--substituted",
        "2",
        "--id",
        "first",
    )
    assert code == 0, err
    assert "partially dispensed" in out and "line 1 (DOLIPRANE 1000 mg): remaining 2" in out
    # same report again: recorded once
    code, out, _ = cli(
        home,
        capsys,
        "prescriptions",
        "dispense",
        ident,
        "--pharmacy",
        PHARMACY_EMAIL,
        "1=2",
        "2=1",
        "--substituted",
        "2",
        "--id",
        "first",
    )
    assert code == 0 and "already recorded" in out and "nothing changed" in out
    # a pharmacist of the pharmacy dispenses the renewal
    code, out, err = cli(
        home,
        capsys,
        "prescriptions",
        "dispense",
        ident,
        "--pharmacy",
        "ph.durand@test.localhost",
        "1=2",
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["applied"] and data["status"] == "dispensed"
    code, _, err = cli(
        home, capsys, "prescriptions", "dispense", ident, "--pharmacy", PHARMACY_EMAIL, "1=1"
    )
    assert code == 1 and "already fully dispensed" in err and err.count("\n") == 1
    code, out, _ = cli(home, capsys, "prescriptions", "show", ident)
    assert "line 2: 1 AMOXICILLINE 500 mg (substituted)" in out
    assert f"{PHARMACY_EMAIL} (pharmacist ph.durand@test.localhost)" in out


def test_dispense_refusals(home, capsys):
    directory_with_pharmacy(home, capsys)
    ident = registered(home)

    def dispense(*args):
        return cli(home, capsys, "prescriptions", "dispense", ident, *args)

    code, _, err = dispense("--pharmacy", "cabinet@test.localhost", "1=1")
    assert code == 1 and "cabinet@test.localhost is not a pharmacy mailbox" in err
    code, _, err = dispense("--pharmacy", "nobody@test.localhost", "1=1")
    assert code == 1 and "nobody@test.localhost" in err
    code, _, err = dispense("--pharmacy", PHARMACY_EMAIL, "1=1", "2=5")
    assert code == 1 and "line 2 (AMOXICILLINE 500 mg): 5 boîte asked, only 1 remain" in err
    code, _, err = dispense("--pharmacy", PHARMACY_EMAIL, "1=deux")
    assert code == 1 and "'deux' is not a quantity" in err
    code, _, err = dispense("--pharmacy", PHARMACY_EMAIL, "1")
    assert code == 1 and "expected LINE=VALUE" in err
    code, out, _ = cli(home, capsys, "prescriptions", "show", ident, "--json")
    assert json.loads(out)["dispensations"] == []  # nothing of the refused reports
    code, out, _ = dispense("--pharmacy", PHARMACY_EMAIL, "2=0", "--not-delivered", "2=rupture")
    assert code == 0
    code, _, _ = cli(home, capsys, "prescriptions", "cancel", ident, "--by", DOCTOR)
    code, _, err = dispense("--pharmacy", PHARMACY_EMAIL, "1=1")
    assert code == 1 and "was cancelled by its prescriber" in err
