"""`mssgw directory ...` end to end: identifier rules, every error path, list/show/update."""

from __future__ import annotations

import pytest
from directory_cli import Cli

from gateway import audit
from gateway.config import load_config
from gateway.directory import open_directory

D = "test.localhost"
RPPS = "10003829917"
RPPS2 = "10101234564"
FINESS = "750712184"
INS = "279035121518989"


@pytest.fixture
def cli(gateway_home, capsys):
    return Cli(gateway_home, capsys)


def add_pharmacy(cli, email=f"pharma@{D}", finess=FINESS):
    return cli.ok(
        "directory", "add-organisation", "--email", email, "--finess", finess,
        "--name", "Pharmacie du Port", "--kind", "pharmacy",
    )


def add_doctor(cli, email=f"dr.house@{D}", rpps=RPPS, *extra):
    return cli.ok(
        "directory", "add-professional", "--email", email, "--rpps", rpps,
        "--family-name", "House", "--given-name", "Gregory", "--profession", "10",
        "--specialty", "SM26", *extra,
    )


def add_patient(cli, ins=INS, *, sex="F", birth_date="1979-03-15", place="51215"):
    return cli(
        "directory", "add-patient", "--ins", ins, "--birth-name", "Dupont",
        "--given-names", "Marie Anne", "--sex", sex, "--birth-date", birth_date,
        "--birth-place", place,
    )


def test_add_and_show_professional_with_structure(cli):
    add_pharmacy(cli)
    r = add_doctor(cli, f"Dr.House@{D.upper()}", RPPS, "--structure", f"pharma@{D}")
    assert r.out.strip() == f"dr.house@{D}"
    shown = cli.ok("directory", "show", f"dr.house@{D}", "--json").json()
    assert shown["kind"] == "PER"
    assert shown["professional"]["rpps"] == RPPS
    assert shown["professional"]["structure"] == f"pharma@{D}"
    assert shown["professional"]["profession"] == "10"
    assert shown["state"] == "active"
    human = cli.ok("directory", "show", f"dr.house@{D}").out
    assert "10 (Médecin)" in human and "password:     not set" in human


def test_add_professional_with_adeli(cli):
    from gateway.identifiers import luhn_valid

    adeli = next(f"75123456{d}" for d in range(10) if luhn_valid(f"75123456{d}"))
    cli.ok(
        "directory", "add-professional", "--email", f"inf@{D}", "--adeli", adeli,
        "--family-name", "Roux", "--given-name", "Léa", "--profession", "60",
    )
    shown = cli.ok("directory", "show", f"inf@{D}", "--json").json()
    assert shown["professional"]["adeli"] == adeli


@pytest.mark.parametrize(
    "rpps,rule",
    [
        ("1000382991", "an RPPS number is 11 digits"),
        ("1000382991A", "an RPPS number is 11 digits"),
        ("10003829916", "the RPPS check digit (Luhn) does not match"),
    ],
)
def test_invalid_rpps_refused(cli, rpps, rule):
    cli.fails(
        "directory", "add-professional", "--email", f"x@{D}", "--rpps", rpps,
        "--family-name", "X", "--given-name", "Y", "--profession", "10",
        match=f"rpps: {rpps!r} is invalid: {rule}",
    )


def test_invalid_adeli_refused(cli):
    cli.fails(
        "directory", "add-professional", "--email", f"x@{D}", "--adeli", "12345",
        "--family-name", "X", "--given-name", "Y", "--profession", "60",
        match="adeli: '12345' is invalid: an ADELI number is 9 digits",
    )


def test_professional_needs_an_identifier(cli):
    cli.fails(
        "directory", "add-professional", "--email", f"x@{D}",
        "--family-name", "X", "--given-name", "Y", "--profession", "10",
        match="rpps: give an RPPS number",
    )


@pytest.mark.parametrize(
    "finess,rule",
    [
        ("75071218", "a FINESS number is 9 characters"),
        ("750712185", "the FINESS check digit (Luhn) does not match"),
    ],
)
def test_invalid_finess_refused(cli, finess, rule):
    cli.fails(
        "directory", "add-organisation", "--email", f"o@{D}", "--finess", finess,
        "--name", "P", "--kind", "pharmacy", match=f"finess: {finess!r} is invalid: {rule}",
    )


def test_corsican_finess_accepted(cli):
    from gateway.identifiers import luhn_valid

    # a 2A FINESS whose key, computed as for department 20, is valid
    finess = next(f"2A000001{d}" for d in range(10) if luhn_valid(f"20000001{d}"))
    cli.ok(
        "directory", "add-organisation", "--email", f"ajaccio@{D}", "--finess", finess,
        "--name", "Pharmacie d'Ajaccio", "--kind", "pharmacy",
    )
    assert cli.ok("directory", "list", "--search", "ajaccio", "--json").json()[0][
        "organisation"]["finess"] == finess


def test_siret_rules(cli):
    cli.ok(
        "directory", "add-organisation", "--email", f"cab@{D}", "--siret", "73282932000074",
        "--name", "Cabinet", "--kind", "practice",
    )
    cli.fails(
        "directory", "add-organisation", "--email", f"cab2@{D}", "--siret", "73282932000075",
        "--name", "Cabinet", "--kind", "practice",
        match="siret: '73282932000075' is invalid: the SIRET check digit (Luhn) does not match",
    )
    cli.fails(
        "directory", "add-organisation", "--email", f"cab3@{D}", "--siret", "7328293200007",
        "--name", "Cabinet", "--kind", "practice", match="a SIRET number is 14 digits",
    )


def test_organisation_needs_an_identifier(cli):
    cli.fails(
        "directory", "add-organisation", "--email", f"o@{D}", "--name", "P", "--kind", "other",
        match="finess: give a FINESS number",
    )


def test_add_patient_prints_address(cli):
    r = add_patient(cli)
    assert r.code == 0, r.err
    assert r.out.strip() == f"{INS}@patient.{D}"
    p = cli.ok("directory", "show", f"{INS}@patient.{D}", "--json").json()
    assert p["kind"] == "PATIENT"
    assert p["patient"]["birth_date"] == "1979-03-15"
    assert p["patient"]["given_names"] == "Marie Anne"


def test_patient_with_corsican_ins(cli):
    from gateway.identifiers import ins_key

    body = "185022A123456"
    ins = f"{body}{ins_key(body):02d}"
    r = add_patient(cli, ins, sex="M", birth_date="1985-02-01", place="2A004")
    assert r.code == 0, r.err
    assert r.out.strip() == f"{ins.lower()}@patient.{D}"
    assert cli.ok("directory", "list", "--kind", "PATIENT", "--json").json()[0]["patient"][
        "ins"] == ins


@pytest.mark.parametrize(
    "ins,rule",
    [
        ("279035121518988", "the INS key does not match"),
        ("27903512151898", "an INS is 15 characters"),
        ("579035121518989", "an INS is 15 characters"),
        ("279135121518989", "is not a valid INS month"),
    ],
)
def test_invalid_ins_refused(cli, ins, rule):
    r = add_patient(cli, ins)
    assert r.code == 1 and f"ins: {ins!r} is invalid" in r.err and rule in r.err
    assert cli.ok("directory", "list", "--json").json() == []


@pytest.mark.parametrize(
    "kwargs,rule",
    [
        ({"sex": "M"}, "contradicts sex M"),
        ({"birth_date": "1980-03-15"}, "contradicts the birth date"),
        ({"birth_date": "1979-04-15"}, "birth month 03 contradicts"),
        ({"sex": "X"}, "sex: 'X' is invalid: sex is F or M"),
        ({"birth_date": "15/03/1979"}, "birth-date: '15/03/1979' is invalid: a date is YYYY-MM-DD"),
        ({"place": "5121"}, "birth-place: '5121' is invalid: an INSEE commune code"),
    ],
)
def test_patient_traits_checked(cli, kwargs, rule):
    r = add_patient(cli, **kwargs)
    assert r.code == 1, r.out
    assert rule in r.err
    assert cli.ok("directory", "list", "--json").json() == []


def test_add_application(cli):
    r = cli.ok("directory", "add-application", "--email", f"robot@{D}", "--name", "Robot")
    assert r.out.strip() == f"robot@{D}"
    assert cli.ok("directory", "list", "--kind", "APP", "--json").json()[0]["application"] == {
        "name": "Robot"
    }


def test_duplicates_refused(cli):
    add_pharmacy(cli)
    add_doctor(cli)
    add_patient(cli)
    cli.fails(
        "directory", "add-application", "--email", f"dr.house@{D}", "--name", "R",
        match=f"email: 'dr.house@{D}' is already registered",
    )
    cli.fails(
        "directory", "add-professional", "--email", f"other@{D}", "--rpps", RPPS,
        "--family-name", "X", "--given-name", "Y", "--profession", "10",
        match=f"rpps: '{RPPS}' is already registered (mailbox dr.house@{D})",
    )
    r = add_patient(cli)
    assert r.code == 1 and f"email: '{INS}@patient.{D}' is already registered" in r.err


def test_address_rules(cli):
    cli.fails(
        "directory", "add-application", "--email", "not-an-address", "--name", "R",
        match="email: 'not-an-address' is invalid: an address is local@domain",
    )
    cli.fails(
        "directory", "add-application", "--email", "robot@gmail.com", "--name", "R",
        match="email: 'robot@gmail.com' is invalid: gmail.com is not one of our domains",
    )
    cli.fails(
        "directory", "add-application", "--email", f"robot@patient.{D}", "--name", "R",
        match=f"patient.{D} holds patients' mailboxes only",
    )


def test_structure_must_be_an_existing_org(cli):
    cli.fails(
        "directory", "add-professional", "--email", f"x@{D}", "--rpps", RPPS,
        "--family-name", "X", "--given-name", "Y", "--profession", "10",
        "--structure", f"nowhere@{D}",
        match=f"structure: 'nowhere@{D}' is invalid: must be the address of an organisation",
    )
    cli.ok("directory", "add-application", "--email", f"robot@{D}", "--name", "R")
    cli.fails(
        "directory", "add-professional", "--email", f"x@{D}", "--rpps", RPPS,
        "--family-name", "X", "--given-name", "Y", "--profession", "10",
        "--structure", f"robot@{D}", match="must be the address of an organisation (ORG)",
    )


def test_profession_and_specialty_rules(cli):
    cli.fails(
        "directory", "add-professional", "--email", f"x@{D}", "--rpps", RPPS,
        "--family-name", "X", "--given-name", "Y", "--profession", "99",
        match="profession: '99' is invalid: a profession is a TRE_G15 code",
    )
    cli.fails(
        "directory", "add-professional", "--email", f"x@{D}", "--rpps", RPPS,
        "--family-name", "X", "--given-name", "Y", "--profession", "10",
        "--specialty", "médecine générale", match="specialty: 'médecine générale' is invalid",
    )
    cli.fails(
        "directory", "add-professional", "--email", f"x@{D}", "--rpps", RPPS,
        "--family-name", "  ", "--given-name", "Y", "--profession", "10",
        match="family-name: '  ' is invalid: must not be empty",
    )


def test_unknown_mailbox_errors(cli):
    for command in ("show", "suspend", "resume", "delete", "update", "set-password"):
        extra = ["--given-name", "Z"] if command == "update" else []
        cli.fails(
            "directory", command, f"ghost@{D}", *extra, stdin="a-long-enough-password\n",
            match=f"email: no mailbox 'ghost@{D}' in the directory",
        )


def test_usage_errors_exit_2(cli, capsys):
    with pytest.raises(SystemExit) as exc:
        cli("directory", "add-organisation", "--email", f"o@{D}", "--finess", FINESS,
            "--name", "P", "--kind", "castle")
    assert exc.value.code == 2


def test_list_filters(cli):
    add_pharmacy(cli)
    add_doctor(cli, f"dr.house@{D}", RPPS, "--structure", f"pharma@{D}")
    add_patient(cli)
    cli.ok("directory", "add-application", "--email", f"robot@{D}", "--name", "Robot Hélène")
    every = cli.ok("directory", "list", "--json").json()
    assert len(every) == 4
    assert [m["address"] for m in cli.ok("directory", "list", "--kind", "PER", "--json").json()] \
        == [f"dr.house@{D}"]
    assert [m["address"] for m in cli.ok("directory", "list", "--domain", f"patient.{D}",
                                         "--json").json()] == [f"{INS}@patient.{D}"]
    # free text: names, identifiers, accents folded
    assert [m["address"] for m in cli.ok("directory", "list", "--search", "gregory",
                                         "--json").json()] == [f"dr.house@{D}"]
    assert [m["address"] for m in cli.ok("directory", "list", "--search", FINESS,
                                         "--json").json()] == [f"pharma@{D}"]
    assert [m["address"] for m in cli.ok("directory", "list", "--search", "helene",
                                         "--json").json()] == [f"robot@{D}"]
    assert cli.ok("directory", "list", "--search", "100%", "--json").json() == []
    text = cli.ok("directory", "list").out
    assert f"dr.house@{D}" in text and "RPPS 10003829917" in text


def test_update(cli):
    add_pharmacy(cli)
    add_doctor(cli)
    cli.ok("directory", "update", f"dr.house@{D}", "--family-name", "Housse",
           "--structure", f"pharma@{D}")
    m = cli.ok("directory", "show", f"dr.house@{D}", "--json").json()
    assert m["professional"]["family_name"] == "Housse"
    assert m["display_name"] == "Gregory Housse"  # the automatic name follows
    assert m["professional"]["structure"] == f"pharma@{D}"
    cli.ok("directory", "update", f"dr.house@{D}", "--structure", "")
    assert cli.ok("directory", "show", f"dr.house@{D}", "--json").json()["professional"][
        "structure"] is None
    cli.fails("directory", "update", f"dr.house@{D}", "--rpps", "10003829916",
              match="the RPPS check digit (Luhn) does not match")
    cli.fails("directory", "update", f"dr.house@{D}", "--birth-name", "X",
              match="birth-name: 'X' is invalid: does not apply to a PER mailbox")
    cli.fails("directory", "update", f"dr.house@{D}", match="nothing to change")
    cli.fails("directory", "update", f"pharma@{D}", "--kind", "castle",
              match="kind: 'castle' is invalid: one of pharmacy, practice, hospital, other")


def test_update_patient_cannot_change_ins(cli):
    add_patient(cli)
    addr = f"{INS}@patient.{D}"
    cli.ok("directory", "update", addr, "--feedback-objection", "yes")
    assert cli.ok("directory", "show", addr, "--json").json()["patient"][
        "objects_to_prescriber_feedback"] is True


def test_suspend_resume_delete(cli):
    add_pharmacy(cli)
    add_doctor(cli, f"dr.house@{D}", RPPS, "--structure", f"pharma@{D}")
    cli.ok("directory", "suspend", f"dr.house@{D}")
    assert cli.ok("directory", "show", f"dr.house@{D}", "--json").json()["state"] == "suspended"
    cli.fails("directory", "suspend", f"dr.house@{D}", match="is already suspended")
    assert "[suspended]" in cli.ok("directory", "list").out
    cli.ok("directory", "resume", f"dr.house@{D}")
    cli.fails("directory", "resume", f"dr.house@{D}", match="is already active")
    cli.fails("directory", "delete", f"pharma@{D}",
              match=f"structure: pharma@{D} is the structure of 1 professional(s)")
    cli.ok("directory", "delete", f"dr.house@{D}")
    cli.ok("directory", "delete", f"pharma@{D}")
    assert cli.ok("directory", "list", "--json").json() == []


def test_set_password_from_stdin(cli, gateway_home):
    add_doctor(cli)
    cli.ok("directory", "set-password", f"dr.house@{D}", stdin="correct horse battery\n")
    config = load_config(gateway_home / "config.toml")
    directory = open_directory(config)
    assert directory.verify_password(f"dr.house@{D}", "correct horse battery")
    assert not directory.verify_password(f"dr.house@{D}", "correct horse battery ")
    cli.fails("directory", "set-password", f"dr.house@{D}", stdin="short\n",
              match="password: too short: at least 12 characters")
    cli.fails("directory", "set-password", f"dr.house@{D}", stdin="",
              match="password: too short")
    assert directory.verify_password(f"dr.house@{D}", "correct horse battery")
    # the stored form is a self-describing scrypt hash, never the password
    import sqlite3

    with sqlite3.connect(gateway_home / "var" / "gateway.db") as db:
        (stored,) = db.execute("SELECT password_hash FROM directory_mailbox").fetchone()
    assert stored.startswith("$scrypt$ln=14,r=8,p=1$") and "horse" not in stored


def test_set_password_is_not_an_option(cli):
    with pytest.raises(SystemExit):
        cli("directory", "set-password", f"dr.house@{D}", "--password", "x")


def test_changes_are_audited(cli, gateway_home):
    add_pharmacy(cli)
    add_doctor(cli)
    cli.ok("directory", "update", f"dr.house@{D}", "--given-name", "Greg")
    cli.ok("directory", "set-password", f"dr.house@{D}", stdin="correct horse battery\n")
    cli.ok("directory", "suspend", f"dr.house@{D}")
    cli.ok("directory", "resume", f"dr.house@{D}")
    cli.ok("directory", "delete", f"dr.house@{D}")
    add_patient(cli, "279035121518988")  # refused: no entry
    config = load_config(gateway_home / "config.toml")
    entries = [e for e in audit.read(config, action="directory.") if e.target == f"dr.house@{D}"]
    assert [e.action for e in entries] == [
        "directory.add", "directory.update", "directory.set-password", "directory.suspend",
        "directory.resume", "directory.delete",
    ]
    assert entries[1].details["changes"] == {"given_name": "Greg", "display_name": "Greg House"}
    assert all(e.actor == audit.local_actor() for e in entries)
    assert "correct horse" not in (gateway_home / "var" / "audit.log").read_text()
    assert not [e for e in audit.read(config) if "279035121518988" in e.target]


def test_reading_patients_is_audited(cli, gateway_home):
    add_patient(cli)
    add_pharmacy(cli)
    config = load_config(gateway_home / "config.toml")
    cli.ok("directory", "show", f"pharma@{D}")
    assert list(audit.read(config, action="directory.show")) == []
    cli.ok("directory", "show", f"{INS}@patient.{D}")
    (entry,) = audit.read(config, action="directory.show")
    assert entry.target == f"{INS}@patient.{D}" and entry.actor == audit.local_actor()
    cli.ok("directory", "list", "--kind", "ORG")
    assert list(audit.read(config, action="directory.list")) == []
    cli.ok("directory", "list", "--json")
    (entry,) = audit.read(config, action="directory.list")
    assert entry.details["patients"] == [f"{INS}@patient.{D}"]


def _on_terminal(home, *answers: str) -> tuple[int, str]:
    """Run `mssgw directory set-password` on a real pseudo-terminal, answering the prompts."""
    import os
    import pty
    import select
    import signal
    import sys
    import time

    pid, fd = pty.fork()
    if pid == 0:  # child: the pty is its controlling terminal, as for an administrator
        try:
            os.execv(sys.executable, [
                sys.executable, "-m", "gateway", "directory", "set-password", f"dr.house@{D}",
                "--config", str(home / "config.toml"),
            ])
        finally:
            os._exit(127)
    output, seen = b"", 0
    pending = list(answers)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                break  # the child exited and closed the terminal
            if not chunk:
                break
            output += chunk
            # answer each prompt once, when it has been written in full
            if pending and output.count(b":") > seen and output.rstrip().endswith(b":"):
                seen = output.count(b":")
                os.write(fd, pending.pop(0).encode() + b"\n")
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_set_password_prompts_twice_on_a_terminal(cli, gateway_home):
    add_doctor(cli)
    code, out = _on_terminal(gateway_home, "terminal password 1", "terminal password 2")
    assert code == 1 and "the two entries differ" in out and "terminal password" not in out
    code, out = _on_terminal(gateway_home, "terminal password 1", "terminal password 1")
    assert code == 0, out
    assert "new password:" in out and "again:" in out and "terminal password" not in out
    directory = open_directory(load_config(gateway_home / "config.toml"))
    assert directory.verify_password(f"dr.house@{D}", "terminal password 1")


def test_uninitialised_gateway_says_run_init(tmp_path, capsys):
    from gateway.cli import main

    (tmp_path / "config.toml").write_text('[gateway]\ndomain = "new.localhost"\n')
    code = main(["directory", "add-application", "--email", "r@new.localhost", "--name", "R",
                 "--config", str(tmp_path / "config.toml")])
    assert code == 1
    assert "run `mssgw init` first" in capsys.readouterr().err


def test_savoir_faire_beyond_the_specialty(cli):
    add_doctor(cli, f"dr.house@{D}", RPPS, "--savoir-faire", "c35, CAPA06")
    shown = cli.ok("directory", "show", f"dr.house@{D}", "--json").json()
    assert shown["professional"]["savoir_faire"] == ["C35", "CAPA06"]
    human = cli.ok("directory", "show", f"dr.house@{D}").out
    assert "C35 (Cancérologie (C))" in human
    assert "SM26 (Qualifié en Médecine générale (SM))" in human
    r = cli("directory", "update", f"dr.house@{D}", "--savoir-faire", "C35,XX99")
    assert r.code == 1 and "savoir-faire: 'XX99' is invalid: a savoir-faire is a JDV_J107" in r.err
    cli.ok("directory", "update", f"dr.house@{D}", "--savoir-faire", "SST24")
    shown = cli.ok("directory", "show", f"dr.house@{D}", "--json").json()
    assert shown["professional"]["savoir_faire"] == ["SST24"]
    cli.ok("directory", "update", f"dr.house@{D}", "--savoir-faire", "")
    shown = cli.ok("directory", "show", f"dr.house@{D}", "--json").json()
    assert "savoir_faire" not in shown["professional"] or not shown["professional"]["savoir_faire"]
