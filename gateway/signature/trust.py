"""Bind signatures to the gateway's PKI: who signs for a mailbox, and which signers we trust.

Kept apart from the pure sign/verify code: these read the configuration, the certificate index
and key files. Worker processes call `pki_check(config)` once and pass the result to
`verify_package`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.config import Config
from gateway.errors import NotFound
from gateway.signature.dsg import Signer, SigningError
from gateway.signature.verify import CertificateCheck


def pki_check(config: Config) -> CertificateCheck:
    """The PKI's verifier for signature certificates: chain to our root or an imported anchor,
    validity at the signing time, key usage (nonRepudiation), revocation by CRL."""
    from gateway.pki import Purpose, verify_certificate

    def check(
        cert: x509.Certificate, intermediates: Sequence[x509.Certificate], at: dt.datetime
    ) -> tuple[bool, str]:
        result = verify_certificate(config, cert, intermediates, Purpose.SIGN, at)
        return result.ok, result.reason

    return check


def signer_for(config: Config, email: str, *, kinds: Sequence[str] | None = None) -> Signer:
    """The signing key and chain of mailbox `email`: its newest unrevoked, unexpired personal
    signature certificate, or its structure seal (`org-seal`) when it has no personal one or
    when [xdm] sign_with_seal is set."""
    from gateway.pki import list_certificates
    from gateway.pki.ca import load_issued
    from gateway.pki.files import Layout

    wanted = tuple(kinds or (("org-seal",) if config.xdm.sign_with_seal
                             else ("personal-sign", "org-seal")))
    now = dt.datetime.now(dt.UTC)
    for kind in wanted:
        records = [
            r for r in list_certificates(config, email=email, kind=kind)
            if r.revoked_at is None and r.not_before <= now < r.not_after
        ]
        if not records:
            continue
        record = max(records, key=lambda r: r.not_before)
        cert, chain = load_issued(config, record.serial)
        try:
            key = load_pem_private_key(Layout.of(config).key(record.serial).read_bytes(), None)
        except (OSError, ValueError, TypeError) as exc:
            raise SigningError(
                f"{email}: the key of certificate {record.serial} cannot be read: {exc}"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise SigningError(f"{email}: certificate {record.serial} has an unsupported key type")
        return Signer(key, (cert, *chain))
    raise NotFound(
        f"{email}: no valid signature certificate ({' or '.join(wanted)}) issued by this"
        " gateway; issue one with `mssgw pki issue`"
    )
