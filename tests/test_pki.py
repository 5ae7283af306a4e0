"""The PKI library: hierarchy, kinds, issue/verify/revoke, CRLs, anchors, exports, DNs."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from pki_helpers import config_of, leaf

from gateway import pki
from gateway.errors import Conflict, NotFound
from gateway.pki.files import Layout
from gateway.pki.kinds import CA

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def config(gateway_home):
    return config_of(gateway_home)


@pytest.fixture
def foreign(peer_home):
    return config_of(peer_home)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_hierarchy_with_private_permissions(config):
    layout = Layout.of(config)
    assert mode(layout.root) == 0o700
    assert mode(layout.private) == 0o700
    keys = list(layout.private.iterdir())
    assert len(keys) == 4  # three CAs and the gateway's server key
    assert all(mode(k) == 0o600 for k in keys)
    root = leaf(layout.ca_cert(CA.ROOT))
    assert root.subject == root.issuer
    assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "mssgw Root CA"
    for ca in (CA.SERVERS, CA.PERSONS):
        cert = leaf(layout.ca_cert(ca))
        assert cert.issuer == root.subject
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert bc.ca and bc.path_length == 0
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.key_cert_sign and ku.crl_sign
        assert cert.public_key().key_size == 3072
        crl = x509.load_pem_x509_crl(layout.ca_crl(ca).read_bytes())
        assert len(list(crl)) == 0 and crl.is_signature_valid(cert.public_key())


def test_server_certificate_names_the_gateway(config):
    creds = pki.server_credentials(config)
    cert = leaf(creds.cert_path)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {
        "mx.test.localhost",
        "test.localhost",
        "localhost",
    }
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert pki.subject_dn(cert.subject) == "CN=mx.test.localhost,O=mssgw,C=FR"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {EKU.SERVER_AUTH, EKU.CLIENT_AUTH}
    assert pki.verify_certificate(config, cert, purpose="server").ok
    assert pki.verify_certificate(config, cert, purpose="client").ok  # relay mutual TLS


def test_init_reissues_server_certificate_when_hostname_changes(gateway_home):
    from gateway.cli import main

    cfg = gateway_home / "config.toml"
    before = pki.server_credentials(config_of(gateway_home)).serial
    assert main(["init", "--config", str(cfg)]) == 0
    assert pki.server_credentials(config_of(gateway_home)).serial == before
    cfg.write_text(cfg.read_text().replace("mx.test.localhost", "mx2.test.localhost"))
    assert main(["init", "--config", str(cfg)]) == 0
    creds = pki.server_credentials(config_of(gateway_home))
    assert creds.serial != before
    assert "mx2.test.localhost" in pki.subject_dn(leaf(creds.cert_path).subject)


KIND_USAGES = {
    # kind: (digitalSignature, contentCommitment, keyEncipherment, EKUs, issuing CA)
    "server": (True, False, True, {EKU.SERVER_AUTH, EKU.CLIENT_AUTH}, CA.SERVERS),
    "org-client": (True, False, False, {EKU.CLIENT_AUTH}, CA.SERVERS),
    "org-seal": (True, True, False, {EKU.EMAIL_PROTECTION}, CA.SERVERS),
    "personal-auth": (True, False, False, {EKU.CLIENT_AUTH}, CA.PERSONS),
    "personal-sign": (True, True, False, {EKU.EMAIL_PROTECTION}, CA.PERSONS),
}


@pytest.mark.parametrize("kind", sorted(KIND_USAGES))
def test_extensions_per_kind(config, kind):
    ds, cc, ke, ekus, ca = KIND_USAGES[kind]
    subject = "host.test.localhost" if kind == "server" else "someone@test.localhost"
    issued = pki.issue(config, kind, subject, "Someone")
    assert mode(issued.key_path) == 0o600
    cert = leaf(issued.cert_path)
    ext = cert.extensions
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert (ku.value.digital_signature, ku.value.content_commitment, ku.value.key_encipherment) == (
        ds,
        cc,
        ke,
    )
    assert not ku.value.key_cert_sign
    assert set(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == ekus
    assert not ext.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.issuer == leaf(Layout.of(config).ca_cert(ca)).subject
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    if kind == "server":
        assert san.get_values_for_type(x509.DNSName) == ["host.test.localhost"]
    else:
        assert san.get_values_for_type(x509.RFC822Name) == ["someone@test.localhost"]
    assert cert.public_key().key_size == 2048
    rec = pki.get_certificate(config, issued.serial)
    assert (rec.kind, rec.ca, rec.email) == (
        kind,
        ca.value,
        None if kind == "server" else "someone@test.localhost",
    )


@pytest.mark.parametrize(
    ("kind", "fits"),
    [
        ("server", {"server", "client", "any"}),
        ("org-client", {"client", "any"}),
        ("org-seal", {"sign", "any"}),
        ("personal-auth", {"client", "any"}),
        ("personal-sign", {"sign", "any"}),
    ],
)
def test_purpose_must_fit_kind(config, kind, fits):
    issued = pki.issue(config, kind, "x.test.localhost" if kind == "server" else "a@b.fr", "A")
    cert = leaf(issued.cert_path)
    for purpose in ("server", "client", "sign", "any"):
        result = pki.verify_certificate(config, cert, purpose=purpose)
        assert result.ok == (purpose in fits), (purpose, result.reason)
        if not result.ok:
            assert result.reason.startswith("not ")
            assert result.failure is pki.Failure.WRONG_PURPOSE


def test_revoked_certificate_fails_verification(config):
    issued = pki.issue(config, "personal-auth", "doc@test.localhost", "Doc")
    cert = leaf(issued.cert_path)
    assert pki.verify_certificate(config, cert, purpose="client").reason == "valid"
    rec = pki.revoke(config, issued.serial, "key-compromise")
    assert rec.revoked and rec.reason == "key-compromise"
    result = pki.verify_certificate(config, cert, purpose="client")
    assert not result.ok and result.failure is pki.Failure.REVOKED
    assert "revoked" in result.reason and "key-compromise" in result.reason
    # The CRL on disk lists it, signed by the issuing CA.
    crl = x509.load_pem_x509_crl(Layout.of(config).ca_crl(CA.PERSONS).read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    with pytest.raises(Conflict, match="already revoked"):
        pki.revoke(config, issued.serial)
    # Other certificates are unaffected.
    assert pki.verify_certificate(config, leaf(pki.server_credentials(config).cert_path)).ok


def test_revocation_seen_by_a_fresh_process(gateway_home, tmp_path):
    config = config_of(gateway_home)
    issued = pki.issue(config, "org-client", "robot@test.localhost", "Robot")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "pki",
                "verify",
                str(issued.cert_path),
                "--purpose",
                "client",
                "--config",
                str(gateway_home / "config.toml"),
            ],
            capture_output=True,
            text=True,
            env=env,
        )

    assert verify().returncode == 0
    pki.revoke(config, issued.serial)
    r = verify()
    assert r.returncode == 1
    assert "revoked" in r.stderr and "Traceback" not in r.stderr


def test_revocation_after_signing_time_keeps_old_signatures_valid(config):
    issued = pki.issue(config, "personal-sign", "doc@test.localhost", "Doc")
    cert = leaf(issued.cert_path)
    signed_at = datetime.now(UTC)
    pki.revoke(config, issued.serial, "superseded")
    # Revoked for an ordinary reason after the signature: still valid at signing time.
    earlier = signed_at - timedelta(minutes=1)
    assert pki.verify_certificate(config, cert, purpose="sign", at=earlier).ok
    assert not pki.verify_certificate(config, cert, purpose="sign").ok


def test_expired_and_not_yet_valid(config):
    past = pki.issue(
        config,
        "personal-auth",
        "old@test.localhost",
        "Old",
        days=1,
        not_before=datetime.now(UTC) - timedelta(days=10),
    )
    result = pki.verify_certificate(config, leaf(past.cert_path), purpose="client")
    assert not result.ok and "expired" in result.reason
    assert result.failure is pki.Failure.EXPIRED
    future = pki.issue(
        config,
        "personal-auth",
        "new@test.localhost",
        "New",
        not_before=datetime.now(UTC) + timedelta(days=10),
    )
    result = pki.verify_certificate(config, leaf(future.cert_path), purpose="client")
    assert not result.ok and "not valid before" in result.reason
    assert result.failure is pki.Failure.NOT_YET_VALID
    # The same certificate checked at a time inside its validity passes.
    later = datetime.now(UTC) + timedelta(days=11)
    assert pki.verify_certificate(config, leaf(future.cert_path), at=later).ok
    assert not pki.verify_certificate(
        config, leaf(future.cert_path), at=datetime.now(UTC) + timedelta(days=20 * 365)
    ).ok


def test_foreign_certificate_needs_its_anchor(config, foreign):
    peer = pki.server_credentials(foreign)
    cert = leaf(peer.cert_path)
    result = pki.verify_certificate(config, cert, purpose="server")
    assert not result.ok and "untrusted issuer" in result.reason
    assert result.failure is pki.Failure.UNTRUSTED
    # Importing the peer's root: its issuing CA must then be presented as an intermediate.
    root = Layout.of(foreign).ca_cert(CA.ROOT).read_bytes()
    added = pki.add_anchor(config, root)
    assert [a.subject_dn for a in added] == ["CN=mssgw Root CA,O=Peer Operator,C=FR"]
    assert not pki.verify_certificate(config, cert, purpose="server").ok
    chain = x509.load_pem_x509_certificates(peer.cert_path.read_bytes())
    result = pki.verify_certificate(config, chain[0], chain[1:], purpose="server")
    assert result.ok, result.reason
    assert "no CRL imported" in result.reason
    assert pki.dn_matches(result.subject_dn, "CN=mx.peer.localhost, O=Peer Operator, C=FR")
    assert [a.fingerprint for a in pki.list_anchors(config)] == [added[0].fingerprint]
    with pytest.raises(Conflict):
        pki.add_anchor(config, root)


def test_peer_crl_import_makes_peer_revocation_visible(config, foreign):
    issuing = Layout.of(foreign).ca_cert(CA.SERVERS).read_bytes()
    pki.add_anchor(config, issuing)  # an issuing CA as anchor (partial chain)
    peer_cert = pki.issue(foreign, "org-client", "robot@peer.localhost", "Peer robot")
    cert = leaf(peer_cert.cert_path)
    assert pki.verify_certificate(config, cert, purpose="client").ok
    pki.revoke(foreign, peer_cert.serial)
    assert pki.verify_certificate(config, cert, purpose="client").ok  # we don't know yet
    crl_bytes = Layout.of(foreign).ca_crl(CA.SERVERS).read_bytes()
    pki.import_crl(config, crl_bytes)
    result = pki.verify_certificate(config, cert, purpose="client")
    assert not result.ok and "revoked" in result.reason
    # A CRL from an issuer we do not trust is refused.
    with pytest.raises(pki.PKIError, match="not a known CA"):
        pki.import_crl(config, Layout.of(foreign).ca_crl(CA.PERSONS).read_bytes())


def test_anchor_must_be_a_ca(config):
    issued = pki.issue(config, "org-client", "robot@test.localhost", "Robot")
    with pytest.raises(pki.PKIError, match="not a CA certificate"):
        pki.add_anchor(config, issued.cert_path.read_bytes())
    assert pki.list_anchors(config) == []


def test_pkcs12_export_readable_with_password(config):
    issued = pki.issue(config, "org-client", "robot@test.localhost", "Robot")
    blob = pki.export_pkcs12(config, issued.serial, b"s3cret")
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(blob, b"wrong")
    bundle = pkcs12.load_pkcs12(blob, b"s3cret")
    assert bundle.cert is not None and bundle.key is not None
    assert bundle.cert.certificate.serial_number == int(issued.serial, 16)
    assert len(bundle.additional_certs) == 2  # issuing CA and root
    assert b"PRIVATE KEY" not in pki.export_pem(config, issued.serial)
    assert b"PRIVATE KEY" in pki.export_pem(config, issued.serial, with_key=True)


def test_unknown_serial_and_bad_input(config):
    with pytest.raises(NotFound):
        pki.get_certificate(config, "ABCDEF")
    with pytest.raises(pki.PKIError, match="not a hexadecimal"):
        pki.revoke(config, "zz")
    with pytest.raises(pki.PKIError, match="kind"):
        pki.issue(config, "wizard", "a@b.fr", "A")
    with pytest.raises(pki.PKIError, match="e-mail"):
        pki.issue(config, "personal-auth", "not-an-address", "A")
    with pytest.raises(pki.PKIError, match="DNS name"):
        pki.issue(config, "server", "bad host!", "A")
    assert [r.kind for r in pki.list_certificates(config)] == ["server"]


def test_passphrase_protected_ca(tmp_path, monkeypatch):
    from gateway.cli import main

    home = tmp_path / "gw"
    home.mkdir()
    (home / "pass").write_text("correct horse\n")
    (home / "config.toml").write_text('[pki]\nca_key_bits = 2048\nca_passphrase_file = "pass"\n')
    assert main(["init", "--config", str(home / "config.toml")]) == 0
    config = config_of(home)
    key = Layout.of(config).ca_key(CA.ROOT).read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in key
    assert pki.issue(config, "org-seal", "lab@test.localhost", "Lab").serial
    (home / "config.toml").write_text("[pki]\nca_key_bits = 2048\n")
    config = config_of(home)
    with pytest.raises(pki.PKIError, match="passphrase-protected"):
        pki.issue(config, "org-seal", "lab@test.localhost", "Lab")
    monkeypatch.setenv("MSSGW_CA_PASSPHRASE", "wrong")
    with pytest.raises(pki.PKIError, match="wrong CA passphrase"):
        pki.issue(config, "org-seal", "lab@test.localhost", "Lab")
    monkeypatch.setenv("MSSGW_CA_PASSPHRASE", "correct horse")
    assert pki.issue(config, "org-seal", "lab@test.localhost", "Lab").serial


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (
            "CN=mss.x.fr,OU=1,O=ACME,ST=Paris (75),C=FR",
            "CN=mss.x.fr,OU=1,O=ACME,ST=Paris (75),C=FR",
            True,
        ),
        ("CN=mss.x.fr,OU=1,O=ACME,C=FR", "cn=MSS.X.FR, ou=1, o=acme, c=fr", True),
        ("CN=mss.x.fr,O=ACME  Corp,C=FR", "CN=mss.x.fr,O=ACME Corp,C=FR", True),
        ("CN=mss.x.fr,O=ACME,C=FR", "/C=FR/O=ACME/CN=mss.x.fr", True),
        ("CN=a\\,b,O=x", "CN=a\\2cb,O=x", True),
        ("CN=mss.x.fr,O=ACME,C=FR", "CN=mss.y.fr,O=ACME,C=FR", False),
        ("CN=mss.x.fr,O=ACME,C=FR", "O=ACME,CN=mss.x.fr,C=FR", False),
        ("CN=x", "garbage", False),
    ],
)
def test_dn_matching(a, b, same):
    assert pki.dn_matches(a, b) is same


def test_dn_matches_whitelist_entries(config, shared_dir):
    """Every DN of the national whitelist parses, and a certificate with the same subject renders
    to a string that matches it."""
    import re

    text = (shared_dir / "mssante" / "listeblanchemssante.xml").read_text(encoding="utf-8")
    dns = set(re.findall(r"<DNCertificatOperateur>([^<]+)</DNCertificatOperateur>", text))
    assert len(dns) > 10
    for dn in dns:
        pki.normalise_dn(dn)
    sample = "CN=mss.enovacom.fr,OU=344368557300034,O=ENOVACOM,ST=Bouches-du-Rhône (13),C=FR"
    assert sample in dns
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Bouches-du-Rhône (13)"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ENOVACOM"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "344368557300034"),
            x509.NameAttribute(NameOID.COMMON_NAME, "mss.enovacom.fr"),
        ]
    )
    assert pki.subject_dn(name) == sample
    assert pki.dn_matches(name, sample)


def test_revoke_mailbox_revokes_all_its_certificates(config):
    a = pki.issue(config, "personal-auth", "doc@test.localhost", "Doc")
    b = pki.issue(config, "personal-sign", "doc@test.localhost", "Doc")
    other = pki.issue(config, "personal-auth", "other@test.localhost", "Other")
    done = pki.revoke_mailbox(config, "Doc@test.localhost")
    assert {r.serial for r in done} == {a.serial, b.serial}
    assert all(r.reason == "cessation-of-operation" for r in done)
    for issued, purpose in ((a, "client"), (b, "sign")):
        assert not pki.verify_certificate(config, leaf(issued.cert_path), purpose=purpose).ok
    assert pki.verify_certificate(config, leaf(other.cert_path), purpose="client").ok
    assert pki.revoke_mailbox(config, "doc@test.localhost") == []
    # The key of a revoked certificate is not handed out any more.
    with pytest.raises(pki.PKIError, match="revoked"):
        pki.export_pkcs12(config, a.serial, b"pw")
    with pytest.raises(pki.PKIError, match="revoked"):
        pki.export_pem(config, a.serial, with_key=True)


def test_crls_are_refreshed_before_they_expire(gateway_home):
    from gateway.pki.crl import refresh_due

    config = config_of(gateway_home)
    path = Layout.of(config).ca_crl(CA.SERVERS)

    def number() -> int:
        crl = x509.load_pem_x509_crl(path.read_bytes())
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number

    first = number()
    assert refresh_due(config) == []  # fresh: 7 days left of 7
    cfg = gateway_home / "config.toml"
    cfg.write_text(cfg.read_text() + "[pki]\ncrl_days = 30\n")  # 7 days left < 15: due
    assert len(refresh_due(config_of(gateway_home))) == 3
    assert number() == first + 1
    assert refresh_due(config_of(gateway_home)) == []


def test_forged_certificate_claiming_our_issuer_fails(config):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa

    ours = leaf(Layout.of(config).ca_cert(CA.SERVERS))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.evil.example")]))
        .issuer_name(ours.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    result = pki.verify_certificate(config, forged, purpose="server")
    assert not result.ok and result.failure is pki.Failure.INVALID
    assert "signature" in result.reason


def test_ca_certificate_is_not_an_end_entity(config):
    issuing = leaf(Layout.of(config).ca_cert(CA.SERVERS))
    result = pki.verify_certificate(config, issuing, purpose="server")
    assert not result.ok and result.failure is pki.Failure.WRONG_PURPOSE
    assert pki.verify_certificate(config, issuing, purpose="any").ok


def test_demo_population_gets_certificates(gateway_home, capsys):
    from gateway.cli import main
    from gateway.directory import demo

    cfg = str(gateway_home / "config.toml")
    assert main(["init", "--demo", "--config", cfg]) == 0
    config = config_of(gateway_home)
    held = {(r.email, r.kind) for r in pki.list_certificates(config) if r.email}
    domain = config.gateway.domain
    assert held == {
        (demo.doctor_address(domain), "personal-sign"),
        (demo.pharmacist_address(domain), "personal-sign"),
        (demo.pharmacy_address(domain), "org-seal"),
        (demo.practice_address(domain), "org-seal"),
        (demo.robot_address(domain), "org-client"),
        (demo.robot_address(domain), "org-seal"),
    }
    doctor = pki.list_certificates(config, email=demo.doctor_address(domain))[0]
    assert f"UID=8{demo.DOCTOR_RPPS}" in doctor.subject_dn
    cert = leaf(Layout.of(config).cert(doctor.serial))
    assert pki.verify_certificate(config, cert, purpose="sign").ok
    capsys.readouterr()
    assert main(["init", "--demo", "--config", cfg]) == 0
    assert "issued" not in capsys.readouterr().out
    assert len(pki.list_certificates(config)) == 7


_DN_TEXT = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cs", "Cc"), include_characters=',+="\\<>;# '
    ),
    min_size=1,
    max_size=20,
).filter(lambda v: v.strip())


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["CN", "O", "OU", "ST", "L", "C"]), _DN_TEXT),
        min_size=1,
        max_size=5,
    )
)
def test_rendered_dn_parses_back(attributes):
    """Whatever a subject holds (commas, plus signs, quotes, backslashes, leading '#' or spaces,
    accents), subject_dn's rendering normalises to the attribute values themselves."""
    oids = {
        "CN": NameOID.COMMON_NAME,
        "O": NameOID.ORGANIZATION_NAME,
        "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
        "ST": NameOID.STATE_OR_PROVINCE_NAME,
        "L": NameOID.LOCALITY_NAME,
        "C": NameOID.COUNTRY_NAME,
    }
    attrs = [(k, v if k != "C" else "FR") for k, v in attributes]
    name = x509.Name([x509.NameAttribute(oids[k], v) for k, v in attrs])
    expected = ",".join(f"{k}={' '.join(v.split()).casefold()}" for k, v in reversed(attrs))
    assert pki.normalise_dn(pki.subject_dn(name)) == expected
    assert pki.dn_matches(name, pki.subject_dn(name))


def test_the_index_pages_searches_and_filters_by_status(config):
    """The certificate listings (API, console) are cut, searched and counted by the index:
    newest first, words in subject, address or serial, status as `CertRecord.status` says."""
    from gateway.admins.model import Caller
    from gateway.audit import no_record
    from gateway.directory.validate import InvalidField
    from gateway.pki import store
    from gateway.pki.admin import CertificateService

    now = datetime.now(UTC).replace(microsecond=0)

    def row(i: int, *, start: int = -10, end: int = 300, revoked: bool = False) -> tuple:
        return (f"{i:08X}", "personal-auth", "persons", f"CN=Médecin {i},O=Test,C=FR",
                f"Médecin {i}", f"dr.{i}@test.localhost", (now + timedelta(days=start)).isoformat(),
                (now + timedelta(days=end)).isoformat(), "00" * 32,
                (now + timedelta(seconds=i)).isoformat(), now.isoformat() if revoked else None)

    rows = [row(i) for i in range(1, 21)]  # serials in hexadecimal: 0x12 is the 18th
    rows[2] = row(3, revoked=True)
    rows[4] = row(5, start=-400, end=-1)  # expired
    rows[6] = row(7, start=2)  # not yet valid
    rows[8] = row(9, end=10)  # expires within 30 days
    with store.connection(config) as conn:
        conn.executemany(
            "INSERT INTO pki_certificates(serial, kind, ca, subject_dn, common_name, email,"
            " not_before, not_after, fingerprint, issued_at, revoked_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    service = CertificateService(config, no_record, Caller.local("test"))
    page = service.page(search="médecin", limit=3, offset=2)
    assert [r.serial for r in page.items] == ["00000012", "00000011", "00000010"]
    assert page.total == 20 and page.has_next
    assert [r.serial for r in service.page(status="revoked").items] == ["00000003"]
    assert [r.serial for r in service.page(status="expired").items] == ["00000005"]
    assert [r.serial for r in service.page(status="not yet valid").items] == ["00000007"]
    valid = service.page(status="valid", search="médecin", limit=500)
    assert valid.total == 17 and all(r.status(datetime.now(UTC)) == "valid" for r in valid.items)
    assert [r.serial for r in service.page(search="dr.1@").items] == ["00000001"]
    assert service.page(search="dr.1_").total == 0  # LIKE's wildcards are literal
    assert [r.serial for r in service.page(email="DR.9@test.localhost").items] == ["00000009"]
    assert [r.serial for r in service.expiring().items] == ["00000009"]
    assert service.expiring().total == 1
    with pytest.raises(InvalidField, match="status: 'lost' is invalid"):
        service.page(status="lost")
    assert len(service.list_all()) == len(pki.ca.list_certificates(config))  # the server's too
