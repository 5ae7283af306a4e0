"""TLS to the database: `[storage] sslmode` and `sslrootcert` reach libpq. A PostgreSQL server
with a certificate from the test's own CA: verify-full with that CA connects over TLS (the
session says so), the same with another CA is refused with one line."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.config import config_from_dict
from gateway.errors import GatewayError


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def _server(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "db.test")]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


@pytest.fixture(scope="module")
def tls_server(postgres_server):  # noqa: ANN001, ANN201 - needs the binaries, as the other one
    from tests.postgres_server import PostgresServer

    ca, ca_key = _ca("database test CA")
    server = PostgresServer(tls=_server(ca, ca_key)).start()
    try:
        yield server, ca.public_bytes(serialization.Encoding.PEM)
    finally:
        server.stop()


def test_verify_full_with_the_servers_ca_connects_over_tls(tls_server, tmp_path):
    from gateway.postgresql.connection import connect

    server, ca_pem = tls_server
    (tmp_path / "db-ca.pem").write_bytes(ca_pem)
    (tmp_path / "db-password").write_text(server.password + "\n")
    config = config_from_dict({"storage": {
        "backend": "postgresql", "dsn": server.dsn_without_password(),
        "password_file": "db-password", "sslmode": "verify-full", "sslrootcert": "db-ca.pem",
    }}, tmp_path)
    with connect(config) as conn:
        row = conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                           ).fetchone()
    assert row is not None and row[0] is True and str(row[1]).startswith("TLSv1.")

    other, _ = _ca("another CA")
    (tmp_path / "other-ca.pem").write_bytes(other.public_bytes(serialization.Encoding.PEM))
    wrong = config_from_dict({"storage": {
        "backend": "postgresql", "dsn": server.dsn_without_password(),
        "password_file": "db-password", "sslmode": "verify-full", "sslrootcert": "other-ca.pem",
    }}, tmp_path)
    with pytest.raises(GatewayError, match="cannot connect") as exc:
        connect(wrong)
    assert "\n" not in str(exc.value)  # one line for the operator


def test_storage_settings_are_checked(tmp_path):
    from gateway.errors import ConfigError
    from gateway.postgresql.connection import conninfo

    for storage, says in (
        ({"backend": "mysql"}, "backend must be one of embedded, postgresql"),
        ({"backend": "postgresql"}, "needs dsn"),
        ({"backend": "postgresql", "dsn": "postgresql://x@h/db", "sslmode": "maybe"},
         "sslmode must be one of"),
    ):
        with pytest.raises(ConfigError, match=says):
            config_from_dict({"storage": storage}, tmp_path)
    config = config_from_dict({"storage": {"backend": "postgresql", "dsn": "postgresql://x@h/db",
                                           "password_file": "missing"}}, tmp_path)
    with pytest.raises(ConfigError, match="password_file"):
        conninfo(config)
    (tmp_path / "pw").write_text("s3cret\n")
    config = config_from_dict({"storage": {"backend": "postgresql", "dsn": "postgresql://x@h/db",
                                           "password_file": "pw"}}, tmp_path)
    assert "password=s3cret" in conninfo(config)
