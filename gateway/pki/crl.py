"""Certificate revocation lists: ours (published under certs/crl/) and imported peer CRLs.

Each of our CAs has one CRL, re-published on every revocation (inside the revocation's
transaction) and by `mssgw pki crl`; its nextUpdate is [pki] crl_days ahead. Verifiers read the
files (cached by modification time), so a revocation is seen by every process at once.
Peer operators' CRLs are imported with `import_crl` after their signature is checked against an
imported anchor.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from gateway.config import Config
from gateway.fileio import write_atomic
from gateway.pki import store
from gateway.pki.files import Layout, load_cached
from gateway.pki.kinds import CA
from gateway.texts import t


def publish(config: Config, conn: sqlite3.Connection, ca: CA) -> Path:
    """Sign and write the CRL of `ca` from the index (call inside a transaction to make the
    revocation and its publication one change)."""
    from gateway.pki.ca import REASONS, load_ca, now

    ca_cert, ca_key = load_ca(config, ca)
    key = f"crl_number:{ca.value}"
    number = int(store.get_state(conn, key) or 0) + 1
    store.set_state(conn, key, str(number))
    issued = now().replace(microsecond=0)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(issued)
        .next_update(issued + timedelta(days=config.pki.crl_days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    rows = conn.execute(
        "SELECT serial, revoked_at, reason FROM pki_certificates"
        " WHERE ca = ? AND revoked_at IS NOT NULL ORDER BY serial",
        (ca.value,),
    ).fetchall()
    for row in rows:
        entry = x509.RevokedCertificateBuilder().serial_number(int(row["serial"], 16))
        entry = entry.revocation_date(datetime.fromisoformat(row["revoked_at"]))
        reason = REASONS.get(row["reason"] or "unspecified", x509.ReasonFlags.unspecified)
        if reason is not x509.ReasonFlags.unspecified:  # RFC 5280: omit rather than unspecified
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(ca_key, hashes.SHA256())
    path = Layout.of(config).ca_crl(ca)
    write_atomic(path, crl.public_bytes(serialization.Encoding.PEM))
    store.share_files(config, conn, [path])
    return path


def publish_all(config: Config) -> list[Path]:
    from gateway import db

    with store.connection(config) as conn, db.transaction(conn):
        return [publish(config, conn, ca) for ca in CA]


def refresh_due(config: Config) -> list[Path]:
    """Publish the CRLs of our CAs that are missing or past half their lifetime (`mssgw init`
    does it; a long-running gateway should call it daily). Returns the paths written."""
    from gateway import db
    from gateway.pki.ca import now

    layout = Layout.of(config)
    margin = timedelta(days=config.pki.crl_days) / 2
    due = []
    for ca in CA:
        crl = _read(layout.ca_crl(ca))
        if crl is None or crl.next_update_utc is None or crl.next_update_utc - now() < margin:
            due.append(ca)
    if not due:
        return []
    with store.connection(config) as conn, db.transaction(conn):
        return [publish(config, conn, ca) for ca in due]


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL in PEM or DER (raises ValueError otherwise)."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def _read(path: Path) -> x509.CertificateRevocationList | None:
    try:
        return load_cached(path, load_crl)
    except (OSError, ValueError):
        return None


def all_crls(config: Config) -> list[x509.CertificateRevocationList]:
    """Every CRL a verifier should consult: ours and the imported peer CRLs."""
    layout = Layout.of(config)
    paths = [layout.ca_crl(ca) for ca in CA]
    if layout.peer_crls.is_dir():
        paths += sorted(layout.peer_crls.glob("*.crl.pem"))
    return [c for c in (_read(p) for p in paths) if c is not None]


def import_crl(config: Config, data: bytes) -> tuple[Path, x509.CertificateRevocationList]:
    """Import a peer CA's CRL. Its issuer must be an imported anchor (import the CA that signs
    the CRL, e.g. the peer's issuing CA) and its signature must check; a newer CRL of the same
    issuer replaces the older one."""
    from gateway.pki.anchors import anchor_certificates
    from gateway.pki.ca import PKIError

    try:
        crl = load_crl(data)
    except ValueError:
        raise PKIError("not a CRL (PEM or DER expected)") from None
    issuer = next(
        (
            c
            for c in anchor_certificates(config)
            if c.subject == crl.issuer and crl.is_signature_valid(c.public_key())  # type: ignore[arg-type]
        ),
        None,
    )
    if issuer is None:
        raise PKIError(t(
            "CRL issuer {issuer} is not a known CA, or its signature does not check: import its"
            " anchor first (`mssgw pki add-anchor`)", issuer=crl.issuer.rfc4514_string()))
    # Named like the issuer's anchor file (certs/anchors/<sha256 prefix>.pem).
    path = Layout.of(config).peer_crls / f"{issuer.fingerprint(hashes.SHA256()).hex()[:16]}.crl.pem"
    old = _read(path)
    if old is not None and old.last_update_utc > crl.last_update_utc:
        raise PKIError(t("a newer CRL of this issuer is already imported ({at})",
                         at=old.last_update_utc.isoformat()))
    write_atomic(path, crl.public_bytes(serialization.Encoding.PEM))
    return path, crl
