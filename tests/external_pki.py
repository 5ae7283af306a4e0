"""A separate "external" CA hierarchy playing the health PKI (IGC-Santé) in the tests: a root,
an issuing CA for organisations, certificates for our gateway and a peer's, CRLs, and a plain
HTTP server on 127.0.0.1 serving the CRLs at the distribution points the certificates name."""

from __future__ import annotations

import datetime as dt
import http.server
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC)


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "IGC-SANTE TEST"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _crldp(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        [x509.UniformResourceIdentifier(url)], None, None, None)])


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class CRLServer:
    """Plain HTTP on 127.0.0.1: `files[path] = bytes`; `status` forces an error answer."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.status: int | None = None
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                status = outer.status or (200 if body is not None else 404)
                self.send_response(status)
                self.send_header("Content-Type", "application/pkix-crl")
                self.end_headers()
                if status == 200 and body is not None:
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class HealthPKI:
    server: CRLServer
    root_key: rsa.RSAPrivateKey = field(default_factory=_key)
    ca_key: rsa.RSAPrivateKey = field(default_factory=_key)

    def __post_init__(self) -> None:
        self.root = (
            x509.CertificateBuilder().subject_name(_name("IGC-SANTE TEST RACINE"))
            .issuer_name(_name("IGC-SANTE TEST RACINE")).public_key(self.root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(self.root_key, hashes.SHA256())
        )
        self.ca = (
            x509.CertificateBuilder().subject_name(_name("IGC-SANTE TEST ORGANISATIONS"))
            .issuer_name(self.root.subject).public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=3000))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(_crldp(self.server.url("/racine.crl")), critical=False)
            .sign(self.root_key, hashes.SHA256())
        )
        self.revoked: list[int] = []
        self.publish()

    def server_certificate(
        self, host: str, *, days: int = 1095, client_auth: bool = True
    ) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        key = _key()
        usages = [ExtendedKeyUsageOID.SERVER_AUTH]
        if client_auth:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        cert = (
            x509.CertificateBuilder().subject_name(x509.Name([
                x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Operateur de test"),
                x509.NameAttribute(NameOID.COMMON_NAME, host),
            ])).issuer_name(self.ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(hours=1))
            .not_valid_after(NOW + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(_crldp(self.server.url("/organisations.crl")), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        return cert, key

    def crl(self, revoked: list[int], *, signer: rsa.RSAPrivateKey | None = None,
            issuer: x509.Certificate | None = None, at: dt.datetime | None = None) -> bytes:
        issuer = issuer or self.ca
        when = at or dt.datetime.now(dt.UTC)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
                   .last_update(when).next_update(when + dt.timedelta(days=2)))
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(when - dt.timedelta(minutes=5)).build())
        return builder.sign(signer or self.ca_key, hashes.SHA256()).public_bytes(
            serialization.Encoding.DER)

    def publish(self, at: dt.datetime | None = None) -> None:
        """The CRLs at their distribution points (DER, as IGC-Santé publishes them)."""
        self.server.files["/organisations.crl"] = self.crl(self.revoked, at=at)
        self.server.files["/racine.crl"] = self.crl([], signer=self.root_key, issuer=self.root,
                                                    at=at)

    def write(self, folder: Path, name: str, data: bytes) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path
