"""IHE DSG signatures with the gateway's real PKI: an untouched package verifies, every classic
attack is detected with its own reason."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree
from pki_helpers import config_of
from xdm_helpers import (
    EXAMPLES,
    LAB,
    PRESCRIPTION,
    entries,
    example_doc,
    example_zip,
    fix_metadata,
    register_practice,
    register_professional,
    rezip,
)

from gateway import pki
from gateway.config import Config
from gateway.errors import NotFound
from gateway.signature import sign_package, verify_package
from gateway.signature.dsg import DS, XADES
from gateway.signature.trust import pki_check, signer_for
from gateway.xdm import pack, read_package

META = "IHE_XDM/SUBSET01/METADATA.XML"
DOC1 = "IHE_XDM/SUBSET01/DOC0001.XML"
SIG = "IHE_XDM/SUBSET01/DOC0003.XML"
DOCTOR = "doc@test.localhost"


def _with_doctor(home: Path) -> Config:
    config = config_of(home)
    register_professional(config, DOCTOR)
    pki.issue(config, "personal-sign", DOCTOR, "Dr Romain PIOU")
    return config


@pytest.fixture(scope="module")
def config(tmp_path_factory, _gateway_template) -> Config:
    """One gateway for the tests that only add to it (issuing a key takes a while); tests that
    revoke or reconfigure use `fresh`."""
    home = tmp_path_factory.mktemp("signature") / "gw"
    shutil.copytree(_gateway_template, home, symlinks=True)
    return _with_doctor(home)


@pytest.fixture
def fresh(gateway_home) -> Config:
    return _with_doctor(gateway_home)


@pytest.fixture(scope="module")
def doctor(config):
    return signer_for(config, DOCTOR)


@pytest.fixture(scope="module")
def unsigned(shared_dir) -> bytes:
    return pack([example_doc(shared_dir, PRESCRIPTION), example_doc(shared_dir, LAB)])


@pytest.fixture(scope="module")
def signed(unsigned, doctor) -> bytes:
    return sign_package(unsigned, doctor)


def verify(config, data: bytes, **kw):
    return verify_package(data, pki_check(config), **kw)


def test_untouched_package_verifies(config, signed):
    result = verify(config, signed)
    assert result.valid, result.reason
    assert result.code == "valid"
    assert "CN=Dr Romain PIOU" in result.signer
    assert result.purpose == "1.2.840.10065.1.12.1.14"
    assert result.signed == (DOC1, "IHE_XDM/SUBSET01/DOC0002.XML")
    assert abs(result.signing_time - datetime.now(UTC)) < timedelta(minutes=1)


def test_signature_document_shape_and_metadata(signed):
    pkg = read_package(signed)
    (sig,) = pkg.signatures
    assert sig.path == SIG
    assert sig.entry.format_code.code == "http://www.w3.org/2000/09/xmldsig#"
    assert sig.entry.patient_id == pkg.submission_set.patient_id
    assert any(a.type == "urn:ihe:iti:2007:AssociationType:signs"
               and a.source == sig.entry.entry_id and a.target == pkg.submission_set.entry_id
               for a in pkg.associations)
    root = etree.fromstring(sig.data)
    assert root.tag == f"{{{DS}}}Signature"
    refs = root.findall(f".//{{{DS}}}Manifest/{{{DS}}}Reference")
    uids = [d.entry.unique_id for d in pkg.content]
    assert [r.get("URI") for r in refs] == [f"urn:oid:{u}" for u in uids]
    assert root.find(f".//{{{XADES}}}SigningTime") is not None
    assert root.find(f".//{{{XADES}}}SigningCertificateV2") is not None
    assert root.findtext(f".//{{{XADES}}}CommitmentTypeId/{{{XADES}}}Identifier") == (
        "urn:oid:1.2.840.10065.1.12.1.14"
    )
    # Nothing was put inside the CDA documents.
    for d in pkg.content:
        assert b"xmldsig" not in d.data


def test_key_info_and_signing_certificate_hold_the_chain(signed, doctor):
    """The KeyInfo and SigningCertificateV2 we write from per-process cached values are what
    signxml writes: each certificate of the chain, in order, as signxml encodes it."""
    from cryptography.hazmat.primitives.serialization import Encoding
    from signxml.util import strip_pem_header

    root = etree.fromstring(read_package(signed).signatures[0].data)
    texts = [e.text for e in root.iterfind(
        f"{{{DS}}}KeyInfo/{{{DS}}}X509Data/{{{DS}}}X509Certificate")]
    assert len(doctor.chain) >= 2
    assert texts == [strip_pem_header(c.public_bytes(Encoding.PEM)) for c in doctor.chain]
    digests = [e.text for e in root.iterfind(
        f".//{{{XADES}}}SigningCertificateV2/{{{XADES}}}Cert/{{{XADES}}}CertDigest"
        f"/{{{DS}}}DigestValue")]
    assert digests == [base64.b64encode(hashlib.sha256(c.public_bytes(Encoding.DER)).digest())
                       .decode() for c in doctor.chain]


@pytest.mark.parametrize("name", EXAMPLES)
def test_official_examples_can_be_signed_and_verified(config, doctor, shared_dir, name):
    original = example_zip(shared_dir, name)
    signed = sign_package(original, doctor)
    assert verify(config, signed).valid
    # The original entries are kept byte for byte.
    before, after = entries(original), entries(signed)
    assert all(after[k] == v for k, v in before.items() if not k.endswith("METADATA.XML"))


def test_unsigned_package_is_reported(config, unsigned):
    result = verify(config, unsigned)
    assert not result.valid and result.code == "missing-signature"


def test_one_byte_changed_in_a_document(config, signed):
    doc = entries(signed)[DOC1]
    changed = doc.replace(b"PAT-TROIS", b"PAT-TROIX", 1)
    # Without fixing the metadata, the package check already fails...
    assert verify(config, rezip(signed, {DOC1: changed})).code == "invalid-package"
    # ... and with hash and size fixed in METADATA.XML, the signature catches it.
    result = verify(config, fix_metadata(signed, DOC1, changed))
    assert result.code == "altered-document", result.reason
    assert "DOC0001.XML" in result.reason


def _replace_manifest_digest(sig: bytes, uri: str, data: bytes) -> bytes:
    import hashlib

    digest = base64.b64encode(hashlib.sha256(data).digest())
    pattern = re.compile(
        rb'(<ds:Reference URI="' + re.escape(uri.encode()) + rb'">.*?<ds:DigestValue>)'
        rb"[^<]*(</ds:DigestValue>)", re.S)
    out, n = pattern.subn(rb"\g<1>" + digest + rb"\g<2>", sig)
    assert n == 1
    return out


def test_document_and_its_manifest_entry_replaced(config, signed):
    pkg = read_package(signed)
    forged = pkg.documents[0].data.replace(b"PAT-TROIS", b"PAT-FORGE", 1)
    uri = f"urn:oid:{pkg.documents[0].entry.unique_id}"
    sig = _replace_manifest_digest(entries(signed)[SIG], uri, forged)
    attacked = fix_metadata(fix_metadata(signed, DOC1, forged), SIG, sig)
    result = verify(config, attacked)
    assert result.code == "altered-signature", result.reason


def _signature_tree(signed: bytes) -> etree._Element:
    return etree.fromstring(entries(signed)[SIG])


def _with_signature(signed: bytes, root: etree._Element) -> bytes:
    return fix_metadata(signed, SIG, etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def test_wrapping_moved_manifest(config, signed, shared_dir):
    """Move the signed Manifest into a wrapper and put a forged one where it was."""
    root = _signature_tree(signed)
    manifest = root.find(f".//{{{DS}}}Manifest")
    obj = manifest.getparent()
    forged = etree.fromstring(etree.tostring(manifest))
    wrapper = etree.SubElement(root, f"{{{DS}}}Object")
    wrapper.append(manifest)  # the signed one, moved away
    obj.append(forged)
    for ref in forged.findall(f"{{{DS}}}Reference"):
        ref.find(f"{{{DS}}}DigestValue").text = base64.b64encode(b"\0" * 32).decode()
    result = verify(config, _with_signature(signed, root))
    assert not result.valid and result.code == "wrapped", result.reason


def test_wrapping_duplicated_reference_id(config, signed):
    root = _signature_tree(signed)
    manifest = root.find(f".//{{{DS}}}Manifest")
    copy = etree.fromstring(etree.tostring(manifest))
    etree.SubElement(root, f"{{{DS}}}Object").append(copy)
    result = verify(config, _with_signature(signed, root))
    assert not result.valid and result.code == "wrapped", result.reason


def test_qualifying_properties_must_target_the_signature(config, signed):
    root = _signature_tree(signed)
    root.set("Id", "AnotherSignature")
    result = verify(config, _with_signature(signed, root))
    assert result.code == "wrapped" and "QualifyingProperties" in result.reason


def test_duplicated_manifest_reference(config, doctor, shared_dir):
    """A manifest naming the same document twice is refused even when properly signed."""
    from gateway.signature.dsg import signature_document

    pkg = read_package(pack([example_doc(shared_dir, PRESCRIPTION)]))
    data = signature_document([pkg.documents[0], pkg.documents[0]], doctor)
    signed = sign_package(pack([example_doc(shared_dir, PRESCRIPTION)]), doctor)
    result = verify(config, fix_metadata(signed, "IHE_XDM/SUBSET01/DOC0002.XML", data))
    assert result.code == "duplicated-reference", result.reason


def test_document_added_after_signing_is_not_covered(config, signed, shared_dir, doctor):
    """Graft the lab report (with proper metadata) onto a package signed without it."""
    from dataclasses import replace

    from gateway.xdm.metadata import append_objects, association, extrinsic_object
    from gateway.xdm.model import HAS_MEMBER, Association

    lab = read_package(signed).documents[1]
    one = sign_package(pack([example_doc(shared_dir, PRESCRIPTION)]), doctor)
    ss = read_package(one).submission_set.entry_id
    entry = replace(lab.entry, uri="DOC0009.XML")
    meta = append_objects(entries(one)[META], [
        extrinsic_object(entry, "Grafted"),
        association(Association("urn:uuid:1", HAS_MEMBER, ss, entry.entry_id)),
    ])
    grafted = rezip(one, {META: meta}, extra=[("IHE_XDM/SUBSET01/DOC0009.XML", lab.data)])
    result = verify(config, grafted)
    assert result.code == "uncovered-document", result.reason
    assert "DOC0009.XML" in result.reason


def test_signs_association_required(config, signed):
    meta = entries(signed)[META].replace(b"AssociationType:signs", b"AssociationType:other")
    result = verify(config, rezip(signed, {META: meta}))
    assert result.code == "not-linked"


def test_untrusted_signer(config, peer_home, unsigned):
    """A signature certificate from another operator's CA, not imported as an anchor."""
    peer = config_of(peer_home)
    register_professional(peer, "x@peer.localhost")
    pki.issue(peer, "personal-sign", "x@peer.localhost", "Dr Outsider")
    signed = sign_package(unsigned, signer_for(peer, "x@peer.localhost"))
    assert verify(peer, signed).valid  # its own gateway trusts it
    result = verify(config, signed)
    assert result.code == "unknown-signer", result.reason


def test_self_signed_certificate(config, unsigned, doctor):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    from gateway.signature import Signer

    key = doctor.key
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Dr Romain PIOU")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    result = verify(config, sign_package(unsigned, Signer(key, (cert,))))
    assert result.code == "unknown-signer", result.reason


def test_revoked_signer(fresh, unsigned):
    signed = sign_package(unsigned, signer_for(fresh, DOCTOR))
    (record,) = pki.list_certificates(fresh, email=DOCTOR)
    assert verify(fresh, signed).valid
    pki.revoke(fresh, record.serial, "key-compromise")
    result = verify(fresh, signed)
    assert result.code == "revoked", result.reason
    with pytest.raises(NotFound, match="no valid personal-sign"):
        signer_for(fresh, DOCTOR)  # nobody signs with a revoked certificate


def test_signature_made_after_an_ordinary_revocation(fresh, unsigned):
    doctor = signer_for(fresh, DOCTOR)
    (record,) = pki.list_certificates(fresh, email=DOCTOR)
    before = sign_package(unsigned, doctor, signing_time=datetime.now(UTC) - timedelta(minutes=2))
    pki.revoke(fresh, record.serial, "superseded")
    after = sign_package(unsigned, doctor)
    assert verify(fresh, before).valid  # signed while the certificate was good
    assert verify(fresh, after).code == "revoked"


def test_expired_signer(config, unsigned):
    pki.issue(config, "personal-sign", "old@test.localhost", "Dr Old", days=1,
              not_before=datetime.now(UTC) - timedelta(days=3))
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from gateway.pki.ca import load_issued
    from gateway.pki.files import Layout
    from gateway.signature import Signer

    (record,) = pki.list_certificates(config, email="old@test.localhost")
    cert, chain = load_issued(config, record.serial)
    key = load_pem_private_key(Layout.of(config).key(record.serial).read_bytes(), None)
    signer = Signer(key, (cert, *chain))
    result = verify(config, sign_package(unsigned, signer))
    assert result.code == "expired", result.reason
    assert "expired" in result.reason


def test_authentication_certificate_cannot_sign(config, unsigned):
    register_professional(config, "auth@test.localhost", 2)
    pki.issue(config, "personal-auth", "auth@test.localhost", "Dr Auth")
    signer = signer_for(config, "auth@test.localhost", kinds=("personal-auth",))
    result = verify(config, sign_package(unsigned, signer))
    assert result.code == "wrong-usage", result.reason


def test_future_signing_time(config, unsigned, doctor):
    later = datetime.now(UTC) + timedelta(hours=2)
    assert verify(config, sign_package(unsigned, doctor, signing_time=later)).code == (
        "future-signing-time"
    )


def test_tampered_signature_value_and_signed_properties(config, signed):
    sig = entries(signed)[SIG]
    root = etree.fromstring(sig)
    value = root.find(f"{{{DS}}}SignatureValue")
    raw = bytearray(base64.b64decode(value.text))
    raw[10] ^= 1
    value.text = base64.b64encode(bytes(raw)).decode()
    assert verify(config, _with_signature(signed, root)).code == "bad-signature"
    root = etree.fromstring(sig)
    purpose = root.find(f".//{{{XADES}}}CommitmentTypeId/{{{XADES}}}Identifier")
    purpose.text = "urn:oid:1.2.840.10065.1.12.1.1"
    assert verify(config, _with_signature(signed, root)).code == "altered-signature"


def test_garbage_signature_document(config, signed):
    for junk in (b"not xml", b"<x/>", b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'):
        result = verify(config, fix_metadata(signed, SIG, junk))
        assert not result.valid and result.code == "malformed", (junk, result.reason)


def test_no_signing_certificate_for_mailbox(config):
    with pytest.raises(NotFound, match="nobody@test.localhost: no such mailbox"):
        signer_for(config, "nobody@test.localhost")
    register_professional(config, "nocert@test.localhost", 3)
    with pytest.raises(NotFound, match="no valid personal-sign certificate.*mssgw pki issue"):
        signer_for(config, "nocert@test.localhost")


def test_suspended_or_patient_mailbox_cannot_sign(fresh):
    from gateway.directory import Patient, open_directory
    from gateway.signature import SigningError

    directory = open_directory(fresh)
    directory.suspend(DOCTOR)
    with pytest.raises(SigningError, match="suspended"):
        signer_for(fresh, DOCTOR)
    directory.resume(DOCTOR)
    assert signer_for(fresh, DOCTOR).certificate is not None
    patient = directory.add_patient(Patient(
        ins="279035121518989", birth_name="PAT-TROIS", given_names="DOMINIQUE", sex="F",
        birth_date=datetime(1979, 3, 28).date(), birth_place="51215"))
    with pytest.raises(SigningError, match="patient"):
        signer_for(fresh, patient.address)


def test_seal_when_configured(gateway_home, unsigned):
    text = (gateway_home / "config.toml").read_text() + "[xdm]\nsign_with_seal = true\n"
    (gateway_home / "config.toml").write_text(text)
    config = config_of(gateway_home)
    practice = "cabinet@test.localhost"
    register_practice(config, practice)
    register_professional(config, DOCTOR, structure=practice)
    pki.issue(config, "personal-sign", DOCTOR, "Dr Romain PIOU")
    with pytest.raises(NotFound, match="cabinet@test.localhost: no valid org-seal"):
        signer_for(config, DOCTOR)
    pki.issue(config, "org-seal", practice, "Cabinet du Dr JOLI")
    result = verify(config, sign_package(unsigned, signer_for(config, DOCTOR)))
    assert result.valid and "Cabinet du Dr JOLI" in result.signer
    # A structure mailbox signs with its own seal.
    assert "JOLI" in str(signer_for(config, practice).certificate.subject)


def test_document_without_oid_unique_id_is_named_by_its_file(config, doctor, shared_dir):
    doc = example_doc(shared_dir, PRESCRIPTION).replace(
        b'<id root="1.2.250.1.213.1.1.1.39.2024.2.1"/>',
        b'<id root="1.2.250.1.213.1.1.1.39.2024.2" extension="DOC-1"/>', 1)
    signed = sign_package(pack([doc]), doctor)
    pkg = read_package(signed)
    assert pkg.documents[0].entry.unique_id == "1.2.250.1.213.1.1.1.39.2024.2^DOC-1"
    root = etree.fromstring(pkg.signatures[0].data)
    (ref,) = root.findall(f".//{{{DS}}}Manifest/{{{DS}}}Reference")
    assert ref.get("URI") == "DOC0001.XML"
    assert verify(config, signed).valid


def test_dsg_detached_format_code_is_accepted(config, signed):
    meta = entries(signed)[META].replace(
        b'nodeRepresentation="http://www.w3.org/2000/09/xmldsig#"',
        b'nodeRepresentation="urn:ihe:iti:dsg:detached:2014"')
    result = verify(config, rezip(signed, {META: meta}))
    assert result.valid, result.reason


def test_documents_built_by_the_gateway_pack_sign_and_verify(config, doctor):
    """The CDA builder's prescription and dispensation carry every header field XDS needs."""
    from gateway.documents.build import build_dispensation, build_prescription
    from gateway.documents.samples import dispensation, prescription, sample_pdf, sample_png

    for cda, class_code in ((build_prescription(prescription(), sample_pdf(), sample_png()), "42"),
                            (build_dispensation(dispensation()), "43")):
        signed = sign_package(pack([cda]), doctor)
        result = verify(config, signed)
        assert result.valid, result.reason
        entry = read_package(signed).content[0].entry
        assert entry.class_code.code == class_code
        assert entry.patient_id == "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"


def test_built_without_metadata_then_signed_writes_it_once(config, doctor):
    """The flows' path: build(metadata=False) then sign writes METADATA.XML once, the
    signature's entry included; what it says is exactly the signed Package in memory (what the
    flows file in the DMP), and the package verifies."""
    from gateway.documents.build import build_prescription
    from gateway.documents.samples import prescription, sample_pdf, sample_png
    from gateway.signature.dsg import sign
    from gateway.xdm.package import InvalidPackage, build, to_zip

    cda = build_prescription(prescription(), sample_pdf(), sample_png())
    draft = build([cda], metadata=False)
    with pytest.raises(InvalidPackage, match="no METADATA.XML"):
        to_zip(draft)
    pkg = sign(draft, doctor)
    data = to_zip(pkg)
    result = verify(config, data)
    assert result.valid, result.reason
    back = read_package(data)
    assert back.files == pkg.files
    assert back.submission_set == pkg.submission_set
    assert [d.entry for d in back.documents] == [d.entry for d in pkg.documents]
    assert sorted(back.associations, key=str) == sorted(pkg.associations, key=str)
    (sig,) = back.signatures
    assert sig.path == "IHE_XDM/SUBSET01/DOC0002.XML"
    assert b'id="Signature02_001"' in back.files[META]
