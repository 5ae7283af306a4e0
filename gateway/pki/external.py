"""Certificates from an external PKI (in the trust space: the health PKI, IGC-Santé).

- `import_server`: the gateway's server certificate issued by someone else, with its key and
  chain. It replaces the one our own CA issued at `mssgw init` (which never replaces it back);
  the listeners load it when they start. Checked before anything is written: the key matches,
  the certificate names [gateway] hostname, is valid now, fits a TLS server (serverAuth; an
  RSA key, the MSSanté TLS 1.2 suites being ECDHE-RSA) and chains to a trust anchor (import the
  IGC-Santé CAs first), since peers will check the same.
- The CRLs of external CAs: `crl_sources` lists the distribution points (CRLDP) named by the
  anchors, the server certificate's chain and [pki] crl_urls, plus those given when an anchor
  was imported; `refresh_crls` fetches each (HTTP or HTTPS, bounded in time and size), checks
  it against its anchor (`crl.import_crl`) and keeps it. A distribution point that cannot be
  reached, or answers something that is not a valid, newer CRL, changes nothing: the last valid
  CRL stays in use (Référentiel #2), and the result says why. `mssgw serve` runs it at start
  and every [pki] crl_refresh_hours (the PKI singleton); `mssgw pki refresh-crls` on demand.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway import db
from gateway.config import Config
from gateway.fileio import write_atomic
from gateway.pki import store
from gateway.pki.anchors import anchor_certificates, anchor_crl_urls, load_certificates
from gateway.pki.ca import PKIError, serial_hex
from gateway.pki.dn import subject_dn
from gateway.pki.files import Layout, write_private

SERVER_SOURCE = "server_source"  # pki_state: "external" once a server certificate is imported
MAX_CRL_BYTES = 50 * 1024 * 1024  # IGC-Santé's largest CRLs are a few MB
FETCH_TIMEOUT = 30.0


@dataclass(frozen=True)
class ImportedServer:
    serial: str
    subject: str
    issuer: str
    not_after: datetime
    warnings: tuple[str, ...] = ()


def _names_host(cert: x509.Certificate, hostname: str) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    host = hostname.lower().rstrip(".")
    for name in san.get_values_for_type(x509.DNSName):
        name = name.lower().rstrip(".")
        if name == host:
            return True
        # RFC 6125: a wildcard stands for exactly one left-most label.
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def _usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    try:
        return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return set()


def import_server(
    config: Config, cert_pem: bytes, key_pem: bytes, chain_pem: bytes = b"",
    *, key_passphrase: bytes | None = None,
) -> ImportedServer:
    """Make an externally issued certificate the gateway's server certificate (see above)."""
    from gateway.pki.verify import verify_certificate

    try:
        certs = load_certificates(cert_pem)
        extra = load_certificates(chain_pem) if chain_pem.strip() else []
    except ValueError:
        raise PKIError("not a certificate (PEM or DER expected)") from None
    leaf, chain = certs[0], [*certs[1:], *extra]
    try:
        key = serialization.load_pem_private_key(key_pem, key_passphrase)
    except (ValueError, TypeError) as exc:
        raise PKIError(f"the private key cannot be read: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PKIError("the key is not RSA: the MSSanté TLS 1.2 suites are ECDHE-RSA")
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, pub) != \
            leaf.public_key().public_bytes(serialization.Encoding.DER, pub):
        raise PKIError("the private key does not belong to this certificate")
    subject = subject_dn(leaf.subject)
    now = datetime.now(UTC)
    if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc:
        raise PKIError(f"{subject} is valid from {leaf.not_valid_before_utc.date()} to "
                       f"{leaf.not_valid_after_utc.date()}, not now")
    if not _names_host(leaf, config.gateway.hostname):
        raise PKIError(f"{subject} does not name [gateway] hostname {config.gateway.hostname}"
                       " in its subjectAltName")
    usages = _usages(leaf)
    if ExtendedKeyUsageOID.SERVER_AUTH not in usages:
        raise PKIError(f"{subject} is not a TLS server certificate (no serverAuth usage)")
    warnings = []
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        warnings.append("no clientAuth usage: peers that require mutual TLS on the relay "
                        "will refuse this certificate when the gateway relays to them")
    result = verify_certificate(config, leaf, chain, "server")
    if not result.ok:
        raise PKIError(f"{subject}: {result.reason} (import the CAs that issued it first: "
                       "`mssgw pki add-anchor`)")
    if "no CRL" in result.reason or "out of date" in result.reason:
        warnings.append(result.reason)
    serial = serial_hex(leaf.serial_number)
    layout = Layout.of(config)
    # The chain the listeners send: the certificate, then its intermediates (a root is left
    # out: peers have it).
    sent = [leaf, *(c for c in result.chain[1:] if c.subject != c.issuer)]
    # Key first: a certificate on disk always has its key. Then the switch, in one commit.
    write_private(layout.key(serial), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    write_atomic(layout.cert(serial),
                 b"".join(c.public_bytes(serialization.Encoding.PEM) for c in sent))
    with store.connection(config) as conn, db.transaction(conn):
        store.set_state(conn, "server_serial", serial)
        store.set_state(conn, SERVER_SOURCE, "external")
    return ImportedServer(serial, subject, subject_dn(leaf.issuer), leaf.not_valid_after_utc,
                          tuple(warnings))


def server_is_external(config: Config) -> bool:
    with store.connection(config) as conn:
        return store.get_state(conn, SERVER_SOURCE) == "external"


# --- CRLs of external CAs --------------------------------------------------------------------


def distribution_points(cert: x509.Certificate) -> list[str]:
    """The HTTP(S) URLs of the CRL distribution points a certificate names (LDAP ones are left
    out: the gateway does not speak LDAP)."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    urls = []
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier) and \
                    name.value.lower().startswith(("http://", "https://")):
                urls.append(name.value)
    return urls


def crl_sources(config: Config) -> list[str]:
    """Every distribution point to fetch, once each, in a stable order."""
    from gateway.pki.ca import server_credentials

    urls: list[str] = list(config.pki.crl_urls)
    certs: list[x509.Certificate] = list(anchor_certificates(config))
    try:
        creds = server_credentials(config)
        certs += x509.load_pem_x509_certificates(creds.cert_path.read_bytes())
    except (PKIError, OSError, ValueError):
        pass
    own = {c.subject for c in _own_cas(config)}
    for cert in certs:
        if cert.issuer in own:  # our CA publishes its CRLs itself (crl.refresh_due)
            continue
        urls += distribution_points(cert)
    urls += anchor_crl_urls(config)
    return list(dict.fromkeys(urls))


def _own_cas(config: Config) -> Iterable[x509.Certificate]:
    from gateway.pki.ca import ca_certificate
    from gateway.pki.kinds import CA

    for ca in CA:
        try:
            yield ca_certificate(config, ca)
        except (PKIError, OSError, ValueError):
            continue


@dataclass(frozen=True)
class Refreshed:
    url: str
    ok: bool
    detail: str  # "updated (...)", "unchanged", or why the last CRL stays

    def as_json(self) -> dict[str, object]:
        return {"url": self.url, "ok": self.ok, "detail": self.detail}


def fetch(url: str, timeout: float = FETCH_TIMEOUT, limit: int = MAX_CRL_BYTES) -> bytes:
    if not url.lower().startswith(("http://", "https://")):
        raise PKIError(f"{url}: only http and https distribution points are fetched")
    # The scheme is checked above (no file: or ftp: from a certificate's extension).
    request = urllib.request.Request(url, headers={"User-Agent": "mssgw"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        data: bytes = response.read(limit + 1)
    if len(data) > limit:
        raise PKIError(f"{url}: larger than {limit // 2**20} MB")
    return data


def refresh_crls(config: Config, urls: Sequence[str] | None = None) -> list[Refreshed]:
    """Fetch and import each distribution point's CRL; never raises for one that fails."""
    from gateway.pki.crl import import_crl, load_crl

    out = []
    for url in crl_sources(config) if urls is None else urls:
        try:
            data = fetch(url)
            crl = load_crl(data)
        except (OSError, urllib.error.URLError, ValueError, PKIError) as exc:
            out.append(Refreshed(url, False, f"kept the last CRL: {_why(exc)}"))
            continue
        held = _held(config, crl)
        der = serialization.Encoding.DER
        if held is not None and held.public_bytes(der) == crl.public_bytes(der):
            out.append(Refreshed(url, True, "unchanged"))
            continue
        try:  # checks the signature against the anchors, refuses one older than ours
            _, imported = import_crl(config, data)
        except PKIError as exc:
            out.append(Refreshed(url, False, f"kept the last CRL: {exc}"))
            continue
        nxt = imported.next_update_utc.isoformat() if imported.next_update_utc else "-"
        out.append(Refreshed(url, True, f"updated: {subject_dn(crl.issuer)}, "
                                        f"{len(list(crl))} revoked, next update {nxt}"))
    return out


def _held(config: Config, crl: x509.CertificateRevocationList
          ) -> x509.CertificateRevocationList | None:
    """The CRL of the same issuer already imported, if any."""
    from gateway.pki.crl import all_crls

    return next((c for c in all_crls(config) if c.issuer == crl.issuer), None)


def _why(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"unreachable: {exc.reason}"
    if isinstance(exc, ValueError):
        return "not a CRL (PEM or DER expected)"
    return str(exc)


__all__ = ["ImportedServer", "Refreshed", "crl_sources", "distribution_points", "fetch",
           "import_server", "refresh_crls", "server_is_external"]
