"""The one certificate verifier every part of the gateway uses.

`verify_certificate` checks, at a given time (now, or e.g. a signature's signing time):
1. the chain, to our root CA or to an imported peer anchor (OpenSSL's verifier through
   pyOpenSSL, partial chains allowed so an imported issuing CA is a valid anchor); our issuing
   CAs are always offered as intermediates, so a bare leaf of ours verifies;
2. the validity dates of every certificate in the chain at that time;
3. that the leaf is an end-entity certificate whose key usage / extended key usage fit the
   purpose (server, client, sign);
4. revocation: each certificate of the chain below the anchor is looked up in the CRL of its
   issuer (ours, always published, or an imported peer CRL). A certificate of ours without a
   CRL is refused (our CRLs always exist); a peer certificate whose issuer has no imported CRL
   passes with a note in `reason`, since nothing better is known.
   A certificate revoked after the verification time passes unless the reason is a key or CA
   compromise (a signature made before an ordinary revocation stays valid).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import crypto

from gateway.config import Config
from gateway.pki.anchors import anchor_certificates
from gateway.pki.ca import ca_certificate
from gateway.pki.crl import all_crls
from gateway.pki.dn import subject_dn
from gateway.pki.kinds import CA, Purpose

_COMPROMISE = {
    x509.ReasonFlags.key_compromise,
    x509.ReasonFlags.ca_compromise,
    x509.ReasonFlags.aa_compromise,
}


class Failure(StrEnum):
    """Why a certificate was refused, for callers that map it to their own codes."""

    NONE = ""  # valid
    UNTRUSTED = "untrusted"  # no chain to our root or an imported anchor
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    WRONG_PURPOSE = "wrong-purpose"  # key usage / EKU / CA certificate as leaf
    REVOKED = "revoked"
    REVOCATION_UNKNOWN = "revocation-unknown"  # our CA without a CRL
    INVALID = "invalid"  # bad signature, malformed chain...
    NO_CERTIFICATE = "no-certificate"


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    reason: str  # "valid", "valid (…note…)", or why not, for people
    subject_dn: str  # RFC 4514, comparable with dn.dn_matches / the whitelist
    chain: tuple[x509.Certificate, ...] = field(default=(), repr=False)  # leaf first, anchor last
    failure: Failure = Failure.NONE  # why not, for programs

    def __bool__(self) -> bool:
        return self.ok

    @property
    def certificate(self) -> x509.Certificate | None:
        return self.chain[0] if self.chain else None


# Which anchors vouch for each purpose. A relay peer is a TLS client too (it presents its
# server certificate): `client` purpose accepts relay anchors; the listeners' handshakes are
# what keep relay-only CAs from logging users in (pki/tls.py loads only `client` anchors there).
_ANCHOR_USE: dict[Purpose, tuple[str, ...]] = {
    Purpose.SERVER: ("relay",), Purpose.CLIENT: ("relay", "client"), Purpose.SIGN: ("sign",),
}


def verify_certificate(
    config: Config,
    cert: x509.Certificate,
    intermediates: Sequence[x509.Certificate] = (),
    purpose: Purpose | str = Purpose.ANY,
    at: datetime | None = None,
) -> VerifyResult:
    """Whether `cert` is acceptable for `purpose` at time `at` (default now; naive = UTC)."""
    purpose = Purpose(purpose)
    at = at or datetime.now(UTC)
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    name = subject_dn(cert.subject)

    # Imported anchors vouch only for what they were imported for (anchors.py).
    use = _ANCHOR_USE.get(purpose)
    trusted = [ca_certificate(config, CA.ROOT), *anchor_certificates(config, use)]
    ours = [ca_certificate(config, CA.SERVERS), ca_certificate(config, CA.PERSONS)]
    st = crypto.X509Store()
    for anchor in trusted:
        st.add_cert(crypto.X509.from_cryptography(anchor))
    st.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
    st.set_time(at.replace(tzinfo=None))
    pool = [crypto.X509.from_cryptography(c) for c in (*intermediates, *ours)]
    try:
        ctx = crypto.X509StoreContext(st, crypto.X509.from_cryptography(cert), pool)
        chain = tuple(c.to_cryptography() for c in ctx.get_verified_chain())
    except crypto.X509StoreContextError as exc:
        failure, why = _chain_error(exc, cert, at)
        return VerifyResult(False, why, name, (cert,), failure)

    problem = _purpose_problem(cert, purpose)
    if problem:
        return VerifyResult(False, problem, name, chain, Failure.WRONG_PURPOSE)

    notes: list[str] = []
    ours_fp = {c.fingerprint(hashes.SHA256()) for c in (*ours, trusted[0])}
    crls = all_crls(config)
    for depth, (child, issuer) in enumerate(zip(chain, chain[1:], strict=False)):
        crl = _crl_for(crls, issuer)
        if crl is None:
            if issuer.fingerprint(hashes.SHA256()) in ours_fp:
                return VerifyResult(
                    False,
                    f"revocation unknown: no CRL published for {subject_dn(issuer.subject)}",
                    name,
                    chain,
                    Failure.REVOCATION_UNKNOWN,
                )
            notes.append(f"no CRL imported for {subject_dn(issuer.subject)}")
            continue
        if crl.next_update_utc is not None and crl.next_update_utc < datetime.now(UTC):
            # Référentiel #2: keep using the last CRL; say that it is out of date.
            notes.append(
                f"CRL of {subject_dn(issuer.subject)} out of date since "
                f"{crl.next_update_utc.isoformat()}"
            )
        entry = crl.get_revoked_certificate_by_serial_number(child.serial_number)
        if entry is None:
            continue
        reason = _reason(entry)
        when = entry.revocation_date_utc
        if when <= at or reason in _COMPROMISE:
            who = "certificate" if depth == 0 else f"CA {subject_dn(child.subject)}"
            label = reason.name.replace("_", "-") if reason else "unspecified"
            return VerifyResult(
                False,
                f"{who} revoked on {when.isoformat()} ({label})",
                name,
                chain,
                Failure.REVOKED,
            )
        notes.append(f"revoked later, on {when.isoformat()}")
    return VerifyResult(True, "valid" + (f" ({'; '.join(notes)})" if notes else ""), name, chain)


def _reason(entry: x509.RevokedCertificate) -> x509.ReasonFlags | None:
    try:
        value = entry.extensions.get_extension_for_class(x509.CRLReason).value
    except x509.ExtensionNotFound:
        return None
    return value.reason


def _crl_for(
    crls: Sequence[x509.CertificateRevocationList], issuer: x509.Certificate
) -> x509.CertificateRevocationList | None:
    """The newest CRL issued by `issuer` whose signature checks with its key."""
    best: x509.CertificateRevocationList | None = None
    for crl in crls:
        if crl.issuer != issuer.subject:
            continue
        try:
            if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                continue
        except TypeError:
            continue
        if best is None or crl.last_update_utc > best.last_update_utc:
            best = crl
    return best


def _chain_error(
    exc: crypto.X509StoreContextError, cert: x509.Certificate, at: datetime
) -> tuple[Failure, str]:
    code = exc.errors[0] if exc.errors else None
    message = str(exc.errors[2]) if len(exc.errors) > 2 else str(exc)
    depth = exc.errors[1] if len(exc.errors) > 1 else 0
    failing = exc.certificate.to_cryptography() if exc.certificate is not None else cert
    who = "certificate" if depth == 0 else f"CA {subject_dn(failing.subject)}"
    if code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
        when = failing.not_valid_after_utc.isoformat()
        return Failure.EXPIRED, f"{who} expired on {when} (at {at.isoformat()})"
    if code == 9:  # X509_V_ERR_CERT_NOT_YET_VALID
        when = failing.not_valid_before_utc.isoformat()
        return Failure.NOT_YET_VALID, f"{who} not valid before {when} (at {at.isoformat()})"
    if code in (2, 20, 21):  # unable to get (local) issuer certificate
        return (
            Failure.UNTRUSTED,
            f"untrusted issuer {subject_dn(cert.issuer)}: not our CA nor an imported anchor",
        )
    if code in (18, 19):  # self-signed
        return Failure.UNTRUSTED, "self-signed certificate, not a trust anchor"
    return Failure.INVALID, f"{message} ({who})"


def _purpose_problem(cert: x509.Certificate, purpose: Purpose) -> str | None:
    ext = cert.extensions
    try:
        bc = ext.get_extension_for_class(x509.BasicConstraints).value
        if bc.ca and purpose is not Purpose.ANY:
            return "a CA certificate, not an end-entity certificate"
    except x509.ExtensionNotFound:
        pass
    if purpose is Purpose.ANY:
        return None
    try:
        ku: x509.KeyUsage | None = ext.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    try:
        eku: list[x509.ObjectIdentifier] | None = list(
            ext.get_extension_for_class(x509.ExtendedKeyUsage).value
        )
    except x509.ExtensionNotFound:
        eku = None

    def eku_allows(oid: x509.ObjectIdentifier) -> bool:
        # RFC 5280: no EKU extension means no restriction.
        return eku is None or oid in eku or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku

    if purpose is Purpose.SERVER:
        if not eku_allows(ExtendedKeyUsageOID.SERVER_AUTH):
            return "not for TLS servers: extended key usage lacks serverAuth"
        if ku is not None and not (ku.digital_signature or ku.key_encipherment):
            return "not for TLS servers: key usage lacks digitalSignature/keyEncipherment"
    elif purpose is Purpose.CLIENT:
        if not eku_allows(ExtendedKeyUsageOID.CLIENT_AUTH):
            return "not for TLS client authentication: extended key usage lacks clientAuth"
        if ku is not None and not ku.digital_signature:
            return "not for TLS client authentication: key usage lacks digitalSignature"
    elif purpose is Purpose.SIGN and (ku is None or not ku.content_commitment):
        return "not a signature certificate: key usage lacks nonRepudiation (contentCommitment)"
    return None
