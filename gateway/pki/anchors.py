"""Imported trust anchors: the CA certificates of peer operators (e.g. IGC-Santé's CAs).

An anchor is trusted as the end of a chain even when it is not self-signed (partial-chain
verification), so an operator may import just the issuing CA it relies on. Files live in
certs/anchors/<sha256-prefix>.pem; the index (subject, expiry, when added) is in the database.

What an anchor vouches for (`uses`): `relay` (other operators' servers, both ways of the
relay), `client` (client certificates of people and software: AUTH EXTERNAL, the listeners'
handshakes), `sign` (document signatures). Default `relay` and `sign`, what anchors always did:
`client` is asked for explicitly, since a CA trusted for it can log people in. The uses and any
CRL distribution points given at import (`crl_urls`, beside those the certificates name) are
written as comment lines at the top of the anchor's file: the verifiers read them with the
certificate, from one file that is replaced atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
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

USES = ("relay", "client", "sign")
DEFAULT_USES = ("relay", "sign")
_USES_LINE = "# mssgw-anchor-for: "
_CRL_LINE = "# mssgw-crl-url: "


@dataclass(frozen=True)
class Anchor:
    fingerprint: str
    subject_dn: str
    not_after: datetime
    added_at: datetime
    uses: tuple[str, ...] = DEFAULT_USES
    crl_urls: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        return {
            "sha256": self.fingerprint,
            "subject": self.subject_dn,
            "not_after": self.not_after.isoformat(),
            "added_at": self.added_at.isoformat(),
            "for": list(self.uses),
            "crl_urls": list(self.crl_urls),
        }


@dataclass(frozen=True)
class AnchorFile:
    uses: tuple[str, ...]
    crl_urls: tuple[str, ...]
    certificates: tuple[x509.Certificate, ...]


def parse_anchor_file(data: bytes) -> AnchorFile:
    uses: tuple[str, ...] = DEFAULT_USES
    urls: list[str] = []
    for line in data.decode("ascii", "replace").splitlines():
        if line.startswith(_USES_LINE):
            uses = tuple(u for u in line[len(_USES_LINE):].split(",") if u in USES)
        elif line.startswith(_CRL_LINE):
            urls.append(line[len(_CRL_LINE):].strip())
        elif line.startswith("-----BEGIN"):
            break
    return AnchorFile(uses, tuple(urls), tuple(x509.load_pem_x509_certificates(data)))


def check_uses(uses: Sequence[str]) -> tuple[str, ...]:
    from gateway.pki.ca import PKIError

    wrong = [u for u in uses if u not in USES]
    if wrong or not uses:
        raise PKIError(f"anchor uses must be among {', '.join(USES)}, not {', '.join(wrong)}")
    return tuple(u for u in USES if u in uses)


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Certificates from PEM (one or more) or DER; ValueError when there are none."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def add_anchor(config: Config, data: bytes, uses: Sequence[str] = DEFAULT_USES,
               crl_urls: Sequence[str] = ()) -> list[Anchor]:
    """Import the CA certificate(s) in `data` as trust anchors (PEM bundle or DER), trusted
    for `uses`; `crl_urls`: distribution points of their CRLs, beside those they name."""
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
            anchor = Anchor(fp, subject_dn(cert.subject), cert.not_valid_after_utc, now(),
                            check_uses(uses), tuple(crl_urls))
            conn.execute(
                "INSERT INTO pki_anchors(fingerprint, subject_dn, not_after, added_at)"
                " VALUES (?, ?, ?, ?)",
                (fp, anchor.subject_dn, anchor.not_after.isoformat(), anchor.added_at.isoformat()),
            )
            header = _USES_LINE + ",".join(anchor.uses) + "\n" + "".join(
                f"{_CRL_LINE}{url}\n" for url in anchor.crl_urls)
            path = Layout.of(config).anchors / f"{fp[:16]}.pem"
            write_atomic(path, header.encode() + cert.public_bytes(serialization.Encoding.PEM))
            store.share_files(config, conn, [path])
            added.append(anchor)
    return added


def list_anchors(config: Config) -> list[Anchor]:
    with store.connection(config) as conn:
        rows = conn.execute("SELECT * FROM pki_anchors ORDER BY added_at").fetchall()
    folder = Layout.of(config).anchors
    out = []
    for r in rows:
        try:
            info = load_cached(folder / f"{r['fingerprint'][:16]}.pem", parse_anchor_file)
            uses, urls = info.uses, info.crl_urls
        except (OSError, ValueError):
            uses, urls = (), ()
        out.append(Anchor(r["fingerprint"], r["subject_dn"],
                          datetime.fromisoformat(r["not_after"]),
                          datetime.fromisoformat(r["added_at"]), uses, urls))
    return out


def _anchor_files(config: Config) -> list[AnchorFile]:
    folder = Layout.of(config).anchors
    if not folder.is_dir():
        return []
    return [load_cached(path, parse_anchor_file) for path in sorted(folder.glob("*.pem"))]


def anchor_certificates(
    config: Config, use: str | Sequence[str] | None = None
) -> list[x509.Certificate]:
    """The imported peer anchors (files under certs/anchors); only those trusted for `use`
    (relay, client, sign; or any of several) when given."""
    wanted = None if use is None else {use} if isinstance(use, str) else set(use)
    out: list[x509.Certificate] = []
    for f in _anchor_files(config):
        if wanted is None or wanted & set(f.uses):
            out += f.certificates
    return out


def anchor_crl_urls(config: Config) -> list[str]:
    """The CRL distribution points given when anchors were imported."""
    return [url for f in _anchor_files(config) for url in f.crl_urls]
