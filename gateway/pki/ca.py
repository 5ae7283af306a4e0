"""The gateway's certification authorities: hierarchy, issuing, revocation, CRLs, exports.

`initialise` (an `mssgw init` step) creates the root CA, the two issuing CAs, an empty CRL per CA
and the gateway's own server certificate. Every change to the index happens in one database
transaction together with the file it concerns (the CRL is re-published inside the revocation's
transaction), so a failure leaves the previous state whole.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from gateway.config import Config
from gateway.errors import Conflict, GatewayError, NotFound
from gateway.fileio import write_atomic
from gateway.pki import store
from gateway.pki.dn import subject_dn
from gateway.pki.files import Layout, load_cached, write_private
from gateway.pki.kinds import CA, CA_NAMES, KINDS, Kind
from gateway.texts import t

PASSPHRASE_ENV = "MSSGW_CA_PASSPHRASE"  # noqa: S105 (the name of a variable, not a secret)
ROOT_DAYS = 20 * 365
ISSUING_DAYS = 10 * 365
_BACKDATE = timedelta(minutes=5)  # tolerate small clock differences between gateways


class PKIError(GatewayError):
    """A PKI operation that cannot be done (missing CA, wrong passphrase, bad input)."""


@dataclass(frozen=True)
class Issued:
    serial: str
    kind: str
    cert_path: Path  # the certificate followed by its issuing CA (PEM)
    key_path: Path  # its private key (PEM, unencrypted, mode 0600)
    subject_dn: str
    email: str | None
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class Credentials:
    """A certificate chain file and its key, as `ssl.SSLContext.load_cert_chain` takes them."""

    cert_path: Path
    key_path: Path
    serial: str


def now() -> datetime:
    return datetime.now(UTC)


def serial_hex(serial: int) -> str:
    return f"{serial:X}"


def parse_serial(text: str) -> str:
    """A serial as typed by a user (hex, any case, optional colons or 0x) in index form."""
    s = text.strip().replace(":", "")
    if s.lower().startswith("0x"):
        s = s[2:]
    if not s or not re.fullmatch(r"[0-9A-Fa-f]{1,64}", s):
        raise PKIError(t("serial: {serial!r} is not a hexadecimal certificate serial number",
                         serial=text))
    return serial_hex(int(s, 16))


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


# --- CA keys -------------------------------------------------------------------------------


def ca_passphrase(config: Config) -> bytes | None:
    """$MSSGW_CA_PASSPHRASE, else the first line of [pki] ca_passphrase_file, else None."""
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env.encode()
    if config.pki.ca_passphrase_file:
        path = config.path(config.pki.ca_passphrase_file)
        try:
            line = path.read_text(encoding="utf-8").splitlines()[:1]
        except OSError as exc:
            raise PKIError(t("[pki] ca_passphrase_file {path}: {reason}", path=str(path),
                             reason=exc.strerror)) from None
        if not line or not line[0]:
            raise PKIError(t("[pki] ca_passphrase_file {path} is empty", path=str(path)))
        return line[0].encode()
    return None


def _new_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _key_pem(key: rsa.RSAPrivateKey, passphrase: bytes | None = None) -> bytes:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def load_ca(config: Config, ca: CA) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    layout = Layout.of(config)
    try:
        cert = x509.load_pem_x509_certificate(layout.ca_cert(ca).read_bytes())
        key_pem = layout.ca_key(ca).read_bytes()
    except FileNotFoundError:
        raise PKIError(t("the {ca} is missing under {path}: run `mssgw init`", ca=CA_NAMES[ca],
                         path=str(layout.root))) from None
    password = ca_passphrase(config) if b"ENCRYPTED" in key_pem else None
    if b"ENCRYPTED" in key_pem and password is None:
        raise PKIError(t("the CA keys are passphrase-protected: set {variable} or [pki]"
                         " ca_passphrase_file", variable=PASSPHRASE_ENV))
    try:
        key = serialization.load_pem_private_key(key_pem, password)
    except (ValueError, TypeError):
        raise PKIError(t("cannot open the {ca} key: wrong CA passphrase?",
                         ca=CA_NAMES[ca])) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PKIError(t("the {ca} key is not an RSA key", ca=CA_NAMES[ca]))
    return cert, key


def ca_certificate(config: Config, ca: CA) -> x509.Certificate:
    try:
        return load_cached(Layout.of(config).ca_cert(ca), x509.load_pem_x509_certificate)
    except FileNotFoundError:
        raise PKIError(t("the {ca} is missing: run `mssgw init`", ca=CA_NAMES[ca])) from None


# --- the hierarchy (mssgw init) ------------------------------------------------------------


def _ca_name(config: Config, ca: CA) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, config.pki.country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, config.pki.organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, CA_NAMES[ca]),
        ]
    )


def _make_ca(
    config: Config,
    ca: CA,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None,
    passphrase: bytes | None,
) -> None:
    key = _new_key(config.pki.ca_key_bits)
    start = now() - _BACKDATE
    name = _ca_name(config, ca)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=ROOT_DAYS if issuer is None else ISSUING_DAYS))
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), critical=True
        )
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), False
        )
        cdp = _distribution_point(config, CA.ROOT)  # an issuing CA is revoked on the root's CRL
        if cdp is not None:
            builder = builder.add_extension(cdp, critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    layout = Layout.of(config)
    # Key first: a certificate on disk always has its key.
    write_private(layout.ca_key(ca), _key_pem(key, passphrase))
    write_atomic(layout.ca_cert(ca), cert.public_bytes(serialization.Encoding.PEM))


def initialise(config: Config) -> list[str]:
    """`mssgw init` step: CAs, CRLs, the gateway's server certificate. Idempotent."""
    layout = Layout.of(config)
    layout.root.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.root, 0o700)
    layout.private.mkdir(mode=0o700, exist_ok=True)
    os.chmod(layout.private, 0o700)
    created: list[str] = []
    # Another node's certificates and CRLs first (a shared database): nothing issued twice.
    created += [f"fetched from the database: {p}" for p in store.fetch_files(config)]
    passphrase = ca_passphrase(config)
    if not layout.ca_cert(CA.ROOT).exists():
        _make_ca(config, CA.ROOT, None, passphrase)
        created.append(f"created {CA_NAMES[CA.ROOT]}: {layout.ca_cert(CA.ROOT)}")
    for ca in (CA.SERVERS, CA.PERSONS):
        if not layout.ca_cert(ca).exists():
            _make_ca(config, ca, load_ca(config, CA.ROOT), passphrase)
            created.append(f"created {CA_NAMES[ca]}: {layout.ca_cert(ca)}")
    chain = b"".join(layout.ca_cert(ca).read_bytes() for ca in (CA.SERVERS, CA.PERSONS, CA.ROOT))
    if not layout.chain.exists() or layout.chain.read_bytes() != chain:
        write_atomic(layout.chain, chain)
    from gateway.pki import crl

    created += [f"published CRL: {path}" for path in crl.refresh_due(config)]
    with store.connection(config) as conn:
        server = store.get_state(conn, "server_serial")
        external = store.get_state(conn, "server_source") == "external"
    hostname = config.gateway.hostname
    if external:
        # Imported from the health PKI (`mssgw pki import-server`): never replaced by ours.
        pass
    elif server is None or not _server_cert_fits(config, server):
        names, ips = _server_sans(config)
        issued = issue(config, "server", None, hostname, dns_names=names, ip_addresses=ips)
        from gateway import db

        with store.connection(config) as conn, db.transaction(conn):
            # Recorded after issuing: a crash in between leaves an unused certificate, and the
            # next `mssgw init` issues another.
            store.set_state(conn, "server_serial", issued.serial)
        created.append(f"issued server certificate for {hostname}: {issued.cert_path}")
    return created


def _server_sans(config: Config) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names = [config.gateway.hostname, config.gateway.domain, "localhost"]
    return tuple(dict.fromkeys(names)), ("127.0.0.1", "::1")


def _server_cert_fits(config: Config, serial: str) -> bool:
    """Whether the recorded server certificate still names our host names and is usable."""
    layout = Layout.of(config)
    try:
        cert = x509.load_pem_x509_certificate(layout.cert(serial).read_bytes())
    except (FileNotFoundError, ValueError):
        return False
    if not layout.key(serial).exists():
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    dns = set(san.get_values_for_type(x509.DNSName))
    return set(_server_sans(config)[0]) <= dns and cert.not_valid_after_utc > now()


def server_credentials(config: Config) -> Credentials:
    """The gateway's own server certificate (chain file) and key, for TLS servers and relay."""
    with store.connection(config) as conn:
        serial = store.get_state(conn, "server_serial")
    if serial is None:
        raise PKIError("the gateway has no server certificate yet: run `mssgw init`")
    layout = Layout.of(config)
    return Credentials(layout.cert(serial), layout.key(serial), serial)


# --- issuing -------------------------------------------------------------------------------


def _subject(config: Config, common_name: str, extra: list[x509.NameAttribute]) -> x509.Name:
    # Encoded most general first; rendered (RFC 4514) most specific first, as the whitelist does.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, config.pki.country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, config.pki.organisation),
            *extra,
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass(frozen=True)
class Identity:
    """What goes into a certificate about its holder, beyond CN and e-mail address."""

    surname: str | None = None
    given_name: str | None = None
    # National identifier (`8`+RPPS for a professional, `1`+FINESS or `3`+SIRET for a structure),
    # put in the UID attribute — our choice, close to what IGC-Santé certificates carry.
    national_id: str | None = None
    organisational_unit: str | None = None

    def attributes(self) -> list[x509.NameAttribute]:
        out = []
        if self.organisational_unit:
            out.append(
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, self.organisational_unit)
            )
        if self.national_id:
            out.append(x509.NameAttribute(NameOID.USER_ID, self.national_id))
        if self.surname:
            out.append(x509.NameAttribute(NameOID.SURNAME, self.surname))
        if self.given_name:
            out.append(x509.NameAttribute(NameOID.GIVEN_NAME, self.given_name))
        return out


def issue(
    config: Config,
    kind: str,
    email: str | None,
    common_name: str,
    *,
    days: int | None = None,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    identity: Identity | None = None,
    not_before: datetime | None = None,
) -> Issued:
    """Issue a certificate of `kind` (see kinds.KINDS) and record it in the index.

    `email` is the mailbox address (subjectAltName rfc822Name); for `server` certificates pass
    the host name as `email` or in `dns_names` (it becomes a dNSName). `not_before` exists for
    tests and back-dating; the validity is `days` (default [pki] days) from it. Every
    certificate names the CRL distribution point of its CA ([pki] crl_base_url).
    """
    spec = _kind(kind)
    if not common_name.strip():
        raise PKIError("common name: must not be empty")
    if len(common_name.strip()) > 64:
        raise PKIError(t("common name: {name!r} is longer than 64 characters",
                         name=common_name.strip()))
    if days is not None and not 1 <= days <= 36500:
        raise PKIError(t("days: {days} is out of range (1..36500)", days=days))
    sans: list[x509.GeneralName] = []
    mail: str | None = None
    if spec.name == "server":
        names = list(dns_names) or ([email] if email else [])
        if not names:
            raise PKIError("a server certificate needs a host name")
    else:
        if not email or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            raise PKIError(t("email: {email!r} is not an e-mail address", email=email))
        mail = email.lower()
        sans.append(x509.RFC822Name(mail))
        names = list(dns_names)
    for n in names:
        if not re.fullmatch(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", n):
            raise PKIError(t("host name: {name!r} is not a DNS name", name=n))
        sans.append(x509.DNSName(n.lower()))
    for ip in ip_addresses:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise PKIError(t("IP address: {ip!r} is not an IP address", ip=ip)) from None

    ca_cert, ca_key = load_ca(config, spec.ca)
    key = _new_key(config.pki.key_bits)
    start = (not_before or now() - _BACKDATE).astimezone(UTC).replace(microsecond=0)
    end = start + timedelta(days=days or config.pki.days)
    ca_end = ca_cert.not_valid_after_utc
    if end > ca_end:
        end = ca_end  # never outlive the issuing CA
    try:
        subject = _subject(config, common_name.strip(), (identity or Identity()).attributes())
    except ValueError as exc:  # e.g. an attribute longer than X.520 allows
        raise PKIError(t("subject: {reason}", reason=str(exc))) from None
    serial = x509.random_serial_number()
    cert: Any = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(spec.key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(spec.eku)), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    cdp = _distribution_point(config, spec.ca)
    if cdp is not None:
        cert = cert.add_extension(cdp, critical=False)
    cert = cert.sign(ca_key, hashes.SHA256())
    sid = serial_hex(serial)
    layout = Layout.of(config)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    chain = pem + ca_cert.public_bytes(serialization.Encoding.PEM)
    issued_at = now()
    with store.connection(config) as conn:
        from gateway import db

        try:
            with db.transaction(conn):
                conn.execute(
                    "INSERT INTO pki_certificates(serial, kind, ca, subject_dn, common_name,"
                    " email, not_before, not_after, fingerprint, issued_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        sid,
                        spec.name,
                        spec.ca.value,
                        subject_dn(subject),
                        common_name.strip(),
                        mail,
                        start.isoformat(),
                        end.isoformat(),
                        fingerprint(cert),
                        issued_at.isoformat(),
                    ),
                )
                # Files inside the transaction: if writing fails, the index is rolled back.
                write_private(layout.key(sid), _key_pem(key))
                write_atomic(layout.cert(sid), chain)
                store.share_files(config, conn, [layout.key(sid), layout.cert(sid)])
        except BaseException:
            layout.key(sid).unlink(missing_ok=True)
            layout.cert(sid).unlink(missing_ok=True)
            raise
    return Issued(
        sid, spec.name, layout.cert(sid), layout.key(sid), subject_dn(subject), mail, start, end
    )


def _distribution_point(config: Config, ca: CA) -> x509.CRLDistributionPoints | None:
    """Where verifiers find the CRL of `ca` (RFC 5280 4.2.1.13), when a base URL is set."""
    from gateway.pki.crlhttp import crl_url

    url = crl_url(config, ca)
    if url is None:
        return None
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)], relative_name=None, reasons=None,
        crl_issuer=None)])


def _kind(kind: str) -> Kind:
    try:
        return KINDS[kind]
    except KeyError:
        raise PKIError(t("kind: {kind!r} is not a certificate kind (one of: {kinds})",
                         kind=kind, kinds=", ".join(KINDS))) from None


# --- the index -----------------------------------------------------------------------------


def list_certificates(
    config: Config, *, email: str | None = None, kind: str | None = None,
    conn: sqlite3.Connection | None = None,
) -> list[store.CertRecord]:
    """Issued certificates, oldest first; `conn`: an open connection to use (else one is
    opened for this call)."""
    where, params = [], []
    if email:
        where.append("email = ?")
        params.append(email.lower())
    if kind:
        _kind(kind)
        where.append("kind = ?")
        params.append(kind)
    sql = "SELECT * FROM pki_certificates"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if conn is not None:
        rows = conn.execute(sql + " ORDER BY issued_at, serial", params).fetchall()
    else:
        with store.connection(config) as own:
            rows = own.execute(sql + " ORDER BY issued_at, serial", params).fetchall()
    return [store.record_of(r) for r in rows]


def get_certificate(config: Config, serial: str) -> store.CertRecord:
    sid = parse_serial(serial)
    with store.connection(config) as conn:
        row = conn.execute("SELECT * FROM pki_certificates WHERE serial = ?", (sid,)).fetchone()
    if row is None:
        raise NotFound(t("certificate {serial}: no such certificate issued by this gateway",
                         serial=sid))
    return store.record_of(row)


def load_issued(config: Config, serial: str) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The certificate with this serial and the CA certificates that follow it in its file."""
    rec = get_certificate(config, serial)
    try:
        certs = x509.load_pem_x509_certificates(Layout.of(config).cert(rec.serial).read_bytes())
    except FileNotFoundError:
        raise PKIError(t("certificate {serial}: its file is missing from certs/",
                         serial=rec.serial)) from None
    return certs[0], certs[1:]


# --- revocation ----------------------------------------------------------------------------

REASONS = {
    r.name.replace("_", "-"): r
    for r in x509.ReasonFlags
    if r not in (x509.ReasonFlags.remove_from_crl,)
}


def revoke(config: Config, serial: str, reason: str = "unspecified") -> store.CertRecord:
    """Revoke an issued certificate and re-publish its CA's CRL, in one transaction."""
    from gateway import db
    from gateway.pki import crl

    if reason not in REASONS:
        raise PKIError(t("reason: {reason!r} is not a revocation reason (one of: {reasons})",
                         reason=reason, reasons=", ".join(REASONS)))
    rec = get_certificate(config, serial)
    if rec.revoked_at is not None:
        raise Conflict(t("certificate {serial} is already revoked ({reason}, {at})",
                         serial=rec.serial, reason=rec.reason, at=rec.revoked_at.isoformat()))
    with store.connection(config) as conn, db.transaction(conn):
        changed = conn.execute(
            "UPDATE pki_certificates SET revoked_at = ?, reason = ?"
            " WHERE serial = ? AND revoked_at IS NULL",
            (now().replace(microsecond=0).isoformat(), reason, rec.serial),
        ).rowcount
        if not changed:
            raise Conflict(t("certificate {serial} is already revoked", serial=rec.serial))
        crl.publish(config, conn, CA(rec.ca))
    return get_certificate(config, rec.serial)


def revoke_mailbox(
    config: Config, email: str, reason: str = "cessation-of-operation"
) -> list[store.CertRecord]:
    """Revoke every unrevoked certificate issued to `email` (e.g. when its mailbox is deleted
    or suspended); returns the revoked records. One transaction, CRLs re-published."""
    from gateway import db
    from gateway.pki import crl

    if reason not in REASONS:
        raise PKIError(t("reason: {reason!r} is not a revocation reason", reason=reason))
    stamp = now().replace(microsecond=0).isoformat()
    with store.connection(config) as conn, db.transaction(conn):
        rows = conn.execute(
            "SELECT serial, ca FROM pki_certificates WHERE email = ? AND revoked_at IS NULL",
            (email.lower(),),
        ).fetchall()
        conn.executemany(
            "UPDATE pki_certificates SET revoked_at = ?, reason = ? WHERE serial = ?",
            [(stamp, reason, r["serial"]) for r in rows],
        )
        for ca in sorted({r["ca"] for r in rows}):
            crl.publish(config, conn, CA(ca))
    return [get_certificate(config, r["serial"]) for r in rows]


# --- exports -------------------------------------------------------------------------------


def export_pem(config: Config, serial: str, *, with_key: bool = False) -> bytes:
    """The certificate, its issuing CA and the root (and its key when asked), PEM."""
    cert, chain = load_issued(config, serial)
    out = cert.public_bytes(serialization.Encoding.PEM)
    out += b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    out += ca_certificate(config, CA.ROOT).public_bytes(serialization.Encoding.PEM)
    if with_key:
        if get_certificate(config, serial).revoked_at is not None:
            raise PKIError(t("certificate {serial} is revoked: its key is not exported",
                             serial=cert_serial(cert)))
        out = Layout.of(config).key(cert_serial(cert)).read_bytes() + out
    return out


def cert_serial(cert: x509.Certificate) -> str:
    return serial_hex(cert.serial_number)


def export_pkcs12(config: Config, serial: str, password: bytes) -> bytes:
    """A password-protected PKCS#12 (certificate, key, CA chain) for mail clients."""
    if not password:
        raise PKIError("PKCS#12 password: must not be empty")
    rec = get_certificate(config, serial)
    if rec.revoked_at is not None:
        raise PKIError(t("certificate {serial} is revoked: its key is not exported",
                         serial=rec.serial))
    cert, chain = load_issued(config, serial)
    try:
        key = serialization.load_pem_private_key(
            Layout.of(config).key(cert_serial(cert)).read_bytes(), None
        )
    except FileNotFoundError:
        raise PKIError(t("certificate {serial}: its private key is missing",
                         serial=cert_serial(cert))) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PKIError("unexpected key type")
    cas = [*chain, ca_certificate(config, CA.ROOT)]
    name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    friendly = str(name[0].value).encode() if name else None
    return pkcs12.serialize_key_and_certificates(
        friendly, key, cert, cas, serialization.BestAvailableEncryption(password)
    )
