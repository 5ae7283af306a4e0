"""`mssgw pki ...`: every command, and every error path (one-line message, exit code)."""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12
from pki_helpers import config_of

from gateway.cli import main
from gateway.pki.files import Layout
from gateway.pki.kinds import CA


@pytest.fixture
def mssgw(gateway_home, capsys):
    """Run `mssgw ... --config <home>` in-process: (exit code, stdout, stderr)."""

    def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        try:
            code = main([*args, "--config", str(gateway_home / "config.toml")])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        finally:
            sys.stdin = sys.__stdin__
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(autouse=True)
def mailboxes(gateway_home):
    """A professional, a pharmacy, an application and a patient in the directory."""
    from datetime import date

    from gateway.directory import open_directory
    from gateway.directory.model import (
        Application,
        Organisation,
        OrganisationKind,
        Patient,
        Professional,
    )

    directory = open_directory(config_of(gateway_home), actor="test")
    try:
        directory.add_professional(
            "dr.who@test.localhost",
            Professional(
                rpps="10100123453",
                adeli=None,
                family_name="SMITH",
                given_name="John",
                profession="10",
            ),
        )
        directory.add_organisation(
            "lab@test.localhost",
            Organisation(
                finess="510004567",
                siret=None,
                name="Pharmacie du Lab",
                kind=OrganisationKind.PHARMACY,
            ),
        )
        directory.add_application("robot@test.localhost", Application(name="Robot"))
        patient = directory.add_patient(
            Patient(
                ins="279035121518989",
                birth_name="DUPONT",
                given_names="Chloé",
                sex="F",
                birth_date=date(1979, 3, 15),
                birth_place="51215",
            )
        )
    finally:
        directory.close()
    return {"patient": patient.address}


def one_line_error(err: str, text: str) -> None:
    assert err.startswith("mssgw: error:"), err
    assert err.strip().count("\n") == 0, err
    assert text in err, err
    assert "Traceback" not in err


def issue(mssgw, *args: str) -> str:
    code, out, err = mssgw("pki", "issue", *args, "--json")
    assert code == 0, err
    return json.loads(out)["serial"]


def test_issue_list_show(mssgw):
    code, out, _ = mssgw(
        "pki",
        "issue",
        "dr.who@test.localhost",
        "--kind",
        "personal-auth",
        "--name",
        "John Smith",
        "--days",
        "30",
    )
    assert code == 0
    assert "issued personal-auth certificate" in out and "CN=John Smith," in out
    assert "UID=810100123453" in out and "SN=SMITH" in out
    assert "PRIVATE KEY" not in out
    code, out, _ = mssgw("pki", "list", "--json")
    records = json.loads(out)
    assert [r["kind"] for r in records] == ["server", "personal-auth"]
    serial = records[1]["serial"]
    assert records[1]["status"] == "valid" and records[1]["email"] == "dr.who@test.localhost"
    code, out, _ = mssgw("pki", "list", "--email", "DR.WHO@test.localhost")
    assert code == 0 and out.count("\n") == 1 and serial in out
    code, out, _ = mssgw("pki", "list", "--kind", "org-seal")
    assert code == 0 and out.strip() == "no certificates"
    code, out, _ = mssgw("pki", "show", serial.lower(), "--json")
    shown = json.loads(out)
    assert shown["extended_key_usage"] == ["clientAuth"]
    assert shown["key_usage"] == ["digital_signature"]
    assert shown["subject_alt_names"] == ["dr.who@test.localhost"]
    code, out, _ = mssgw("pki", "show", serial)
    assert code == 0 and "status:" in out and "valid" in out


def test_issue_takes_names_from_the_directory(mssgw, mailboxes, gateway_home):
    code, out, err = mssgw("pki", "issue", "LAB@test.localhost", "--kind", "org-seal", "--json")
    assert code == 0, err
    issued = json.loads(out)
    assert issued["subject"] == "CN=Pharmacie du Lab,UID=1510004567,O=mssgw,C=FR"
    assert issued["email"] == "lab@test.localhost"
    code, _, err = mssgw("pki", "issue", mailboxes["patient"], "--kind", "org-client")
    assert code == 1
    one_line_error(err, "cannot hold a org-client certificate (it may hold none)")
    assert mssgw("directory", "suspend", "lab@test.localhost")[0] == 0
    code, _, err = mssgw("pki", "issue", "lab@test.localhost", "--kind", "org-seal")
    assert code == 1
    one_line_error(err, "lab@test.localhost: the mailbox is suspended")


def test_issue_server_certificate_with_sans(mssgw):
    code, out, err = mssgw(
        "pki",
        "issue",
        "smtp.test.localhost",
        "--kind",
        "server",
        "--san",
        "imap.test.localhost",
        "--ip",
        "127.0.0.1",
        "--json",
    )
    assert code == 0, err
    serial = json.loads(out)["serial"]
    code, out, _ = mssgw("pki", "show", serial, "--json")
    assert json.loads(out)["subject_alt_names"] == [
        "smtp.test.localhost",
        "imap.test.localhost",
        "127.0.0.1",
    ]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["pki", "issue", "lab@test.localhost", "--kind", "wizard"], 2, "invalid choice"),
        (["pki", "issue", "lab@test.localhost"], 2, "--kind"),
        (["pki", "issue", "nobody", "--kind", "personal-auth"], 1, "no such mailbox"),
        (
            ["pki", "issue", "ghost@test.localhost", "--kind", "personal-auth"],
            1,
            "no such mailbox in the directory",
        ),
        (
            ["pki", "issue", "robot@test.localhost", "--kind", "personal-sign"],
            1,
            "a APP mailbox cannot hold a personal-sign certificate",
        ),
        (
            ["pki", "issue", "dr.who@test.localhost", "--kind", "org-seal"],
            1,
            "(it may hold: personal-auth, personal-sign)",
        ),
        (["pki", "issue", "bad host", "--kind", "server"], 1, "is not a DNS name"),
        (
            ["pki", "issue", "h.fr", "--kind", "server", "--ip", "300.1.1.1"],
            1,
            "is not an IP address",
        ),
        (
            ["pki", "issue", "lab@test.localhost", "--kind", "org-seal", "--days", "0"],
            2,
            "out of range",
        ),
        (
            ["pki", "issue", "lab@test.localhost", "--kind", "org-seal", "--days", "x"],
            2,
            "whole number",
        ),
        (
            ["pki", "issue", "lab@test.localhost", "--kind", "org-seal", "--name", " "],
            1,
            "common name: must not be empty",
        ),
        (
            ["pki", "issue", "lab@test.localhost", "--kind", "org-seal", "--name", "x" * 65],
            1,
            "longer than 64 characters",
        ),
        (
            ["pki", "issue", "lab@test.localhost", "--kind", "org-seal", "--san", "bad_host!"],
            1,
            "is not a DNS name",
        ),
        (["pki", "show", "ABC123"], 1, "no such certificate"),
        (["pki", "show", "xyz"], 1, "is not a hexadecimal certificate serial"),
        (["pki", "revoke", "ABC123"], 1, "no such certificate"),
        (["pki", "revoke", "ABC123", "--reason", "boredom"], 2, "invalid choice"),
        (["pki", "export", "ABC123", "-o", "/tmp/never-written.pem"], 1, "no such certificate"),
        (["pki", "export", "ABC123"], 2, "-o"),
        (["pki", "verify", "/nonexistent.pem"], 1, "no such file"),
        (["pki", "verify", "/nonexistent.pem", "--purpose", "mail"], 2, "invalid choice"),
        (["pki", "add-anchor", "/nonexistent.pem"], 1, "no such file"),
        (["pki", "import-crl", "/nonexistent.crl"], 1, "no such file"),
        (["pki", "list", "--kind", "wizard"], 2, "invalid choice"),
    ],
)
def test_error_paths(mssgw, args, code, message):
    before = mssgw("pki", "list", "--json")[1]
    got, out, err = mssgw(*args)
    assert got == code, (out, err)
    if code == 1:
        one_line_error(err, message)
    else:
        assert message in err
    assert mssgw("pki", "list", "--json")[1] == before  # nothing changed


def test_garbage_files_are_refused(mssgw, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    code, _, err = mssgw("pki", "verify", str(junk))
    assert code == 1
    one_line_error(err, "not a certificate")
    code, _, err = mssgw("pki", "add-anchor", str(junk))
    one_line_error(err, "not a certificate")
    code, _, err = mssgw("pki", "import-crl", str(junk))
    one_line_error(err, "not a CRL")
    code, _, err = mssgw("pki", "verify", str(tmp_path))
    one_line_error(err, "is a folder")
    assert code == 1


def test_revoke_then_verify(mssgw, gateway_home, tmp_path):
    serial = issue(mssgw, "robot@test.localhost", "--kind", "org-client", "--name", "Robot")
    pem = tmp_path / "robot.pem"
    code, out, _ = mssgw("pki", "export", serial, "-o", str(pem))
    assert code == 0 and b"PRIVATE KEY" not in pem.read_bytes()
    code, out, _ = mssgw("pki", "verify", str(pem), "--purpose", "client")
    assert code == 0 and "valid" in out and "CN=Robot" in out
    code, _, err = mssgw("pki", "verify", str(pem), "--purpose", "server")
    assert code == 1
    one_line_error(err, "lacks serverAuth")
    code, _, err = mssgw("pki", "verify", str(pem), "--at", "2001-01-01")
    one_line_error(err, "not valid before")
    code, _, err = mssgw("pki", "verify", str(pem), "--at", "yesterday")
    one_line_error(err, "--at: 'yesterday' is not an ISO 8601")

    code, out, _ = mssgw("pki", "revoke", serial, "--reason", "cessation-of-operation")
    assert code == 0 and "revoked certificate" in out and "servers.crl.pem" in out
    code, _, err = mssgw("pki", "revoke", serial)
    assert code == 1
    one_line_error(err, "already revoked")
    code, out, err = mssgw("pki", "verify", str(pem), "--json")
    assert code == 1
    result = json.loads(out)
    assert result["ok"] is False and "revoked" in result["reason"]
    code, out, _ = mssgw("pki", "list", "--json")
    assert json.loads(out)[-1]["status"] == "revoked"

    code, out, _ = mssgw("pki", "crl")
    paths = out.split()
    assert code == 0 and len(paths) == 3
    assert all(p.startswith(str(gateway_home)) for p in paths)


def test_export_pem_with_key_and_p12(mssgw, tmp_path):
    serial = issue(mssgw, "robot@test.localhost", "--kind", "org-client")
    keyed = tmp_path / "robot-key.pem"
    code, _, _ = mssgw("pki", "export", serial, "-o", str(keyed), "--with-key")
    assert code == 0 and b"PRIVATE KEY" in keyed.read_bytes()
    assert stat.S_IMODE(keyed.stat().st_mode) == 0o600
    code, _, err = mssgw("pki", "export", serial, "-o", str(keyed))
    one_line_error(err, "already exists")
    assert code == 1
    code, _, err = mssgw("pki", "export", serial, "-o", str(tmp_path / "no" / "such.pem"))
    one_line_error(err, "no such folder")
    assert code == 1 and not (tmp_path / "no").exists()

    p12 = tmp_path / "robot.p12"
    code, _, err = mssgw("pki", "export", serial, "--format", "p12", "-o", str(p12), stdin="\n")
    one_line_error(err, "empty password")
    assert not p12.exists()
    code, out, err = mssgw(
        "pki", "export", serial, "--format", "p12", "-o", str(p12), stdin="pass word\n"
    )
    assert code == 0, err
    assert "pass word" not in out
    assert stat.S_IMODE(p12.stat().st_mode) == 0o600
    bundle = pkcs12.load_pkcs12(p12.read_bytes(), b"pass word")
    assert bundle.key is not None and bundle.cert is not None


def test_anchors(mssgw, peer_home):
    code, out, _ = mssgw("pki", "anchors")
    assert code == 0 and "no imported trust anchors" in out
    peer_root = Layout.of(config_of(peer_home)).ca_cert(CA.ROOT)
    code, out, _ = mssgw("pki", "add-anchor", str(peer_root))
    assert code == 0 and "added trust anchor CN=mssgw Root CA,O=Peer Operator,C=FR" in out
    code, _, err = mssgw("pki", "add-anchor", str(peer_root))
    assert code == 1
    one_line_error(err, "already imported")
    code, out, _ = mssgw("pki", "anchors", "--json")
    assert [a["subject"] for a in json.loads(out)] == ["CN=mssgw Root CA,O=Peer Operator,C=FR"]
    # A peer CRL signed by a CA that is not an anchor is refused.
    peer_crl = Layout.of(config_of(peer_home)).ca_crl(CA.SERVERS)
    code, _, err = mssgw("pki", "import-crl", str(peer_crl))
    one_line_error(err, "not a known CA")
    root_crl = Layout.of(config_of(peer_home)).ca_crl(CA.ROOT)
    code, out, _ = mssgw("pki", "import-crl", str(root_crl))
    assert code == 0 and "imported CRL" in out


def test_pki_commands_before_init(tmp_path):
    (tmp_path / "config.toml").write_text("")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "pki",
            "issue",
            "lab@test.localhost",
            "--kind",
            "org-seal",
            "--config",
            str(tmp_path / "config.toml"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    one_line_error(r.stderr, "run `mssgw init`")


def test_help_lists_pki_commands():
    r = subprocess.run(
        [sys.executable, "-m", "gateway", "pki", "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0
    for name in (
        "issue",
        "export",
        "list",
        "show",
        "revoke",
        "crl",
        "verify",
        "add-anchor",
        "anchors",
        "import-crl",
    ):
        assert name in r.stdout
