"""`mssgw xdm pack|sign|verify|list`: outputs, exit codes and one-line errors."""

from __future__ import annotations

import json

import pytest
from pki_helpers import config_of
from xdm_helpers import (
    LAB,
    PRESCRIPTION,
    entries,
    example_doc,
    example_zip,
    register_professional,
    rezip,
)

from gateway import pki
from gateway.cli import main

DOCTOR = "doc@test.localhost"


@pytest.fixture
def mssgw(gateway_home, capsys):
    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main([*args, "--config", str(gateway_home / "config.toml")])
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def docs(tmp_path, shared_dir) -> list[str]:
    out = []
    for name in (PRESCRIPTION, LAB):
        p = tmp_path / f"{name}.xml"
        p.write_bytes(example_doc(shared_dir, name))
        out.append(str(p))
    return out


@pytest.fixture
def doctor(gateway_home):
    register_professional(config_of(gateway_home), DOCTOR)
    pki.issue(config_of(gateway_home), "personal-sign", DOCTOR, "Dr Romain PIOU")
    return DOCTOR


def one_line_error(code: int, err: str, text: str) -> None:
    assert code == 1
    assert err.startswith("mssgw: error:"), err
    assert err.strip().count("\n") == 0, err
    assert text in err, err


def test_pack_sign_verify_list(mssgw, docs, doctor, tmp_path):
    out = tmp_path / "IHE_XDM.zip"
    code, stdout, err = mssgw("xdm", "pack", *docs, "-o", str(out), "--sign-as", doctor)
    assert code == 0, err
    assert "2 document(s), signed by doc@test.localhost" in stdout
    code, stdout, _ = mssgw("xdm", "verify", str(out))
    assert code == 0
    assert "valid signature by" in stdout and "CN=Dr Romain PIOU" in stdout
    assert "ok: 2 document(s) match the signed manifest" in stdout
    code, stdout, _ = mssgw("xdm", "verify", str(out), "--json")
    data = json.loads(stdout)
    assert code == 0 and data["valid"] and data["code"] == "valid"
    assert len(data["signed"]) == 2
    code, stdout, _ = mssgw("xdm", "list", str(out))
    assert code == 0
    assert "IHE_XDM/SUBSET01/DOC0001.XML" in stdout and "signature" in stdout
    assert "1.2.250.1.213.1.1.1.39.2024.2.1" in stdout
    code, stdout, _ = mssgw("xdm", "list", str(out), "--json")
    data = json.loads(stdout)
    assert [d["signature"] for d in data["documents"]] == [False, False, True]
    assert data["documents"][0]["class_code"].startswith("42^Prescription")


def test_pack_then_sign(mssgw, docs, doctor, tmp_path):
    plain = tmp_path / "plain.zip"
    signed = tmp_path / "signed.zip"
    assert mssgw("xdm", "pack", docs[0], "-o", str(plain))[0] == 0
    code, stdout, _ = mssgw("xdm", "verify", str(plain))
    assert code == 1 and "INVALID (missing-signature)" in stdout
    code, stdout, err = mssgw("xdm", "sign", str(plain), "--sign-as", doctor, "-o", str(signed))
    assert code == 0, err
    assert mssgw("xdm", "verify", str(signed))[0] == 0
    code, _, err = mssgw("xdm", "sign", str(signed), "--sign-as", doctor, "-o", str(plain))
    one_line_error(code, err, "already signed (DOC0002.XML)")


def test_verify_reports_the_attack(mssgw, docs, doctor, tmp_path):
    out = tmp_path / "p.zip"
    assert mssgw("xdm", "pack", docs[0], "-o", str(out), "--sign-as", doctor)[0] == 0
    data = out.read_bytes()
    doc = entries(data)["IHE_XDM/SUBSET01/DOC0001.XML"]
    out.write_bytes(rezip(data, {"IHE_XDM/SUBSET01/DOC0001.XML": doc.replace(b"PIOU", b"PIOT")}))
    code, stdout, err = mssgw("xdm", "verify", str(out))
    assert code == 1 and "INVALID (invalid-package)" in stdout and "SHA-1" in stdout


def test_revoked_signer_fails_from_the_cli(mssgw, gateway_home, docs, doctor, tmp_path):
    out = tmp_path / "p.zip"
    assert mssgw("xdm", "pack", docs[0], "-o", str(out), "--sign-as", doctor)[0] == 0
    config = config_of(gateway_home)
    (record,) = pki.list_certificates(config, email=DOCTOR)
    pki.revoke(config, record.serial, "key-compromise")
    code, stdout, _ = mssgw("xdm", "verify", str(out), "--json")
    data = json.loads(stdout)
    assert code == 1 and data["code"] == "revoked" and "revoked" in data["reason"]


def test_official_example_lists_and_is_unsigned(mssgw, shared_dir):
    path = shared_dir / "xdm-examples" / PRESCRIPTION / "IHE_XDM.ZIP"
    code, stdout, _ = mssgw("xdm", "list", str(path))
    assert code == 0 and "Prescription de produits de santé" in stdout
    code, stdout, _ = mssgw("xdm", "verify", str(path))
    assert code == 1 and "missing-signature" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pack", "/nonexistent.xml", "-o", "x.zip"], "/nonexistent.xml: no such file"),
        (["list", "/nonexistent.zip"], "no such file"),
        (["verify", "/"], "is a directory"),
        (["sign", "/nonexistent.zip", "--sign-as", DOCTOR, "-o", "x.zip"], "no such file"),
    ],
)
def test_file_errors(mssgw, args, message):
    code, _, err = mssgw("xdm", *args)
    one_line_error(code, err, message)


def test_bad_inputs(mssgw, docs, tmp_path, shared_dir):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"junk")
    code, _, err = mssgw("xdm", "list", str(junk))
    one_line_error(code, err, "not a ZIP file")
    bad = tmp_path / "bad.xml"
    bad.write_bytes(b"<ClinicalDocument><unclosed>")
    code, _, err = mssgw("xdm", "pack", str(bad), "-o", str(tmp_path / "o.zip"))
    one_line_error(code, err, "not well-formed")
    assert not (tmp_path / "o.zip").exists()
    code, _, err = mssgw("xdm", "pack", docs[0], "-o", str(tmp_path / "o.zip"),
                         "--sign-as", "nobody@test.localhost")
    one_line_error(code, err, "nobody@test.localhost: no such mailbox in the directory")
    assert not (tmp_path / "o.zip").exists()  # nothing half-written
    evil = tmp_path / "evil.zip"
    evil.write_bytes(rezip(example_zip(shared_dir, PRESCRIPTION), extra=[("../x", b"x")]))
    code, stdout, _ = mssgw("xdm", "verify", str(evil))
    assert code == 1 and "'..'" in stdout


def test_limits_come_from_the_configuration(gateway_home, shared_dir, capsys):
    cfg = gateway_home / "config.toml"
    cfg.write_text(cfg.read_text() + "[xdm]\nmax_entries = 3\n")
    path = shared_dir / "xdm-examples" / PRESCRIPTION / "IHE_XDM.ZIP"
    assert main(["xdm", "list", str(path), "--config", str(cfg)]) == 1
    assert "6 entries in the ZIP, over the limit of 3" in capsys.readouterr().err


def test_help(mssgw):
    code, stdout, _ = mssgw("xdm", "--help")
    assert code == 0
    for command in ("pack", "sign", "verify", "list"):
        assert command in stdout
    code, stdout, _ = mssgw("xdm", "pack", "--help")
    assert code == 0 and "--sign-as EMAIL" in stdout
