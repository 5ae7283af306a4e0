"""Filing XDM packages in the DMP: metadata from METADATA.XML, signature kept, all or none."""

from __future__ import annotations

import datetime as dt

import pytest
from xdm_helpers import DISPENSATION, LAB, PRESCRIPTION, example_doc, example_zip

from gateway.dmp import AccessDenied, Actor, ActorKind, DuplicateDocument
from gateway.dmp.feed import file_package, qualified_ins, xds_time
from gateway.dmp.model import InvalidDocument, NotQualified
from gateway.dmp.sqlite import SQLiteDMP
from gateway.xdm import pack, read_package

INS = "279035121518989"


@pytest.fixture
def dmp(tmp_path):
    d = SQLiteDMP.open(tmp_path / "gateway.db")
    yield d
    d.close()


def signed(package: bytes) -> bytes:
    """Sign with a throw-away key: the DMP keeps the signature document as opaque bytes."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from gateway.signature import Signer, sign_package

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Dr Romain PIOU")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return sign_package(package, Signer(key, (cert,)))


def test_official_prescription_package(dmp, shared_dir):
    package = read_package(signed(example_zip(shared_dir, PRESCRIPTION)))
    (entry,) = file_package(
        dmp,
        package,
        actor=Actor.gateway(),
        author_address="dr.piou@test.localhost",
        prescription_id="01S2TBPZ2JCNZZYGHZ",
    )
    m = entry.metadata
    assert (m.unique_id, m.patient_ins, m.class_code, m.type_code, m.format_code) == (
        "1.2.250.1.213.1.1.1.39.2024.2.1",
        INS,
        "42",
        "57833-6",
        "urn:ihe:pharm:pre:2010",
    )
    assert m.creation_time == dt.datetime(2023, 12, 1, 8, 30, tzinfo=dt.UTC)
    assert (m.author_id, m.author_institution) == ("801234567897", "1750512345")
    assert entry.has_signature and entry.signature_format in (
        "http://www.w3.org/2000/09/xmldsig#",
        "urn:ihe:iti:dsg:detached:2014",
    )
    doc = dmp.retrieve(m.unique_id, actor=Actor.patient(INS))
    assert doc.content == example_doc(shared_dir, PRESCRIPTION)  # exact bytes, BOM and CRLF
    assert doc.signature == package.signatures[0].data
    # the author reads the record by national id (from the package) or by mailbox
    rpps_only = Actor(ActorKind.PROFESSIONAL, "other-box@x", national_id="801234567897")
    assert dmp.find(INS, actor=rpps_only)
    assert dmp.find(INS, actor=Actor(ActorKind.PROFESSIONAL, "dr.piou@test.localhost"))
    assert dmp.find(INS, class_codes=["42"], actor=Actor.gateway())[0].metadata.prescription_id


def test_dispensation_package_authors(dmp, shared_dir):
    (entry,) = file_package(
        dmp, read_package(example_zip(shared_dir, DISPENSATION)), actor=Actor.gateway()
    )
    assert entry.metadata.class_code == "43" and not entry.has_signature
    assert "1750512345" in entry.metadata.other_authors  # the pharmacy, second author
    pharmacy = Actor(ActorKind.ORGANISATION, "pharmacie@x", national_id="1750512345")
    assert dmp.find(entry.metadata.patient_ins, actor=pharmacy)
    with pytest.raises(AccessDenied):
        dmp.find(entry.metadata.patient_ins, actor=Actor(ActorKind.ORGANISATION, "other@x"))


def test_a_package_is_filed_whole_or_not_at_all(dmp, shared_dir):
    lab = read_package(example_zip(shared_dir, LAB))
    file_package(dmp, lab, actor=Actor.gateway())
    both = read_package(pack([example_doc(shared_dir, PRESCRIPTION), example_doc(shared_dir, LAB)]))
    with pytest.raises(DuplicateDocument):
        file_package(dmp, both, actor=Actor.gateway())
    assert [e.metadata.class_code for e in dmp.find(INS, actor=Actor.gateway())] == ["10"]


def test_qualified_ins():
    assert qualified_ins(f"{INS}^^^&1.2.250.1.213.1.4.8&ISO^NH")  # INS-NIR
    assert qualified_ins(f"{INS}^^^&1.2.250.1.213.1.4.10&ISO^NH")  # test INS
    assert not qualified_ins(f"{INS}^^^&1.2.250.1.213.1.4.9&ISO^NH")  # INS-NIA: provisional
    assert not qualified_ins("1234567890121^^^&1.2.3.4.567.8.9.10&ISO^PI")  # a local number
    assert not qualified_ins(INS) and not qualified_ins("") and not qualified_ins("^^^&&ISO")


def test_a_patient_without_qualified_ins_is_not_filed(dmp, shared_dir):
    """The DMP takes documents only for a qualified INS: the same package with the patient
    named by an NIA is refused whole, and nothing is filed."""
    nia = example_doc(shared_dir, LAB).replace(b'root="1.2.250.1.213.1.4.10"',
                                               b'root="1.2.250.1.213.1.4.9"')
    assert nia != example_doc(shared_dir, LAB)
    with pytest.raises(NotQualified, match="not named by a qualified INS"):
        file_package(dmp, read_package(pack([nia])), actor=Actor.gateway())
    assert dmp.find(INS, actor=Actor.gateway()) == []


def test_xds_time():
    assert xds_time("20231201083000") == dt.datetime(2023, 12, 1, 8, 30, tzinfo=dt.UTC)
    assert xds_time("20231201") == dt.datetime(2023, 12, 1, tzinfo=dt.UTC)
    with pytest.raises(InvalidDocument, match="not an XDS date-time"):
        xds_time("2023-12-01")


def test_cli_import(tmp_path, capsys, shared_dir):
    from registry_fixtures import plain_home

    from gateway.cli import main

    home = plain_home(tmp_path)
    zip_path = tmp_path / "IHE_XDM.zip"
    zip_path.write_bytes(example_zip(shared_dir, PRESCRIPTION))
    config = ["--config", str(home / "config.toml")]
    assert (
        main(["dmp", "import", str(zip_path), "--author", "dr.piou@test.localhost", *config]) == 0
    )
    out = capsys.readouterr().out
    assert f"filed 1.2.250.1.213.1.1.1.39.2024.2.1 (class 42) for {INS}" in out
    assert main(["dmp", "import", str(zip_path), *config]) == 1
    assert "already in the DMP" in capsys.readouterr().err
    assert main(["dmp", "import", str(tmp_path / "none.zip"), *config]) == 1
    assert "cannot read: No such file" in capsys.readouterr().err
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    assert main(["dmp", "import", str(tmp_path / "bad.zip"), *config]) == 1
    assert capsys.readouterr().err.count("\n") == 1
