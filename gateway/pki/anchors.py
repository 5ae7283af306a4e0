"""Imported trust anchors: the CA certificates of peer operators (e.g. IGC-Santé's CAs).

An anchor is trusted as the end of a chain even when it is not self-signed (partial-chain
verification), so an operator may import just the issuing CA it relies on. Files live in
certs/anchors/<sha256-prefix>.pem; the index (subject, expiry, when added) is in the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway import db
from gateway.config import Config
from gateway.errors import Conflict
from gateway.fileio import write_atomic
from gateway.pki import store
from gateway.pki.dn import subject_dn
from gateway.pki.files import Layout, load_cached


@dataclass(frozen=True)
class Anchor:
    fingerprint: str
    subject_dn: str
    not_after: datetime
    added_at: datetime

    def as_json(self) -> dict[str, str]:
        return {
            "sha256": self.fingerprint,
            "subject": self.subject_dn,
            "not_after": self.not_after.isoformat(),
            "added_at": self.added_at.isoformat(),
        }


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Certificates from PEM (one or more) or DER; ValueError when there are none."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def add_anchor(config: Config, data: bytes) -> list[Anchor]:
    """Import the CA certificate(s) in `data` as trust anchors (PEM bundle or DER)."""
    from gateway.pki.ca import PKIError, fingerprint, now

    try:
        certs = load_certificates(data)
    except ValueError:
        raise PKIError("not a certificate (PEM or DER expected)") from None
    added: list[Anchor] = []
    with store.connection(config) as conn, db.transaction(conn):
        for cert in certs:
            try:
                bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            except x509.ExtensionNotFound:
                bc = None
            if bc is None or not bc.ca:
                raise PKIError(
                    f"{subject_dn(cert.subject)} is not a CA certificate"
                    " (basicConstraints CA:TRUE is required of a trust anchor)"
                )
            if cert.not_valid_after_utc < now():
                raise PKIError(
                    f"{subject_dn(cert.subject)} expired on "
                    f"{cert.not_valid_after_utc.date().isoformat()}"
                )
            fp = fingerprint(cert)
            if conn.execute("SELECT 1 FROM pki_anchors WHERE fingerprint = ?", (fp,)).fetchone():
                raise Conflict(f"anchor {subject_dn(cert.subject)} ({fp[:16]}) is already imported")
            anchor = Anchor(fp, subject_dn(cert.subject), cert.not_valid_after_utc, now())
            conn.execute(
                "INSERT INTO pki_anchors(fingerprint, subject_dn, not_after, added_at)"
                " VALUES (?, ?, ?, ?)",
                (fp, anchor.subject_dn, anchor.not_after.isoformat(), anchor.added_at.isoformat()),
            )
            path = Layout.of(config).anchors / f"{fp[:16]}.pem"
            write_atomic(path, cert.public_bytes(serialization.Encoding.PEM))
            store.share_files(config, conn, [path])
            added.append(anchor)
    return added


def list_anchors(config: Config) -> list[Anchor]:
    with store.connection(config) as conn:
        rows = conn.execute("SELECT * FROM pki_anchors ORDER BY added_at").fetchall()
    return [
        Anchor(
            r["fingerprint"],
            r["subject_dn"],
            datetime.fromisoformat(r["not_after"]),
            datetime.fromisoformat(r["added_at"]),
        )
        for r in rows
    ]


def anchor_certificates(config: Config) -> list[x509.Certificate]:
    """The imported peer anchors (files under certs/anchors)."""
    folder = Layout.of(config).anchors
    if not folder.is_dir():
        return []
    out: list[x509.Certificate] = []
    for path in sorted(folder.glob("*.pem")):
        out += load_cached(path, x509.load_pem_x509_certificates)
    return out
