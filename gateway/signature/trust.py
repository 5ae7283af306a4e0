"""Bind signatures to the gateway's PKI: who signs for a mailbox, and which signers we trust.

Kept apart from the pure sign/verify code: these read the configuration, the certificate index
and key files. Worker processes call `pki_check(config)` once and pass the result to
`verify_package`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.config import Config
from gateway.directory import Directory
from gateway.errors import NotFound
from gateway.pki.store import CertificateIndex
from gateway.signature.dsg import Signer, SigningError, sign, sign_package
from gateway.signature.verify import CertificateCheck, Verification, verify_package
from gateway.xdm.model import Package
from gateway.xdm.package import Limits


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


def signing_mailbox(config: Config, email: str, directory: Directory | None = None
                    ) -> tuple[str, tuple[str, ...]]:
    """(address holding the signing certificate, acceptable kinds) for mailbox `email`.

    A professional signs with their personal signature certificate, or with their structure's
    seal when [xdm] sign_with_seal is set; a structure or application signs with its own seal.
    The mailbox must exist in the directory and be active; patients do not sign.
    """
    from gateway.directory import MailboxKind, open_directory

    address = email.strip().lower()
    mailbox = (directory or open_directory(config)).get(address)
    if mailbox is None:
        raise NotFound(f"{address}: no such mailbox in the directory")
    if not mailbox.active:
        raise SigningError(f"{address}: the mailbox is suspended and cannot sign")
    if mailbox.kind is MailboxKind.PATIENT:
        raise SigningError(f"{address}: a patient mailbox does not sign documents")
    if mailbox.kind is MailboxKind.PER:
        if not config.xdm.sign_with_seal:
            return address, ("personal-sign",)
        structure = mailbox.professional.structure if mailbox.professional else None
        if not structure:
            raise SigningError(
                f"{address}: [xdm] sign_with_seal is set but this professional has no structure"
            )
        return structure.lower(), ("org-seal",)
    return address, ("org-seal",)


def signer_for(config: Config, email: str, *, kinds: Sequence[str] | None = None,
               directory: Directory | None = None,
               index: CertificateIndex | None = None) -> Signer:
    """The signing key and chain for mailbox `email` (see `signing_mailbox`): the newest
    unrevoked, currently valid certificate of the right kind issued by our PKI. `kinds`
    overrides the directory's choice (tests, tools); `directory`, `index`: an open directory
    and certificate index (`gateway.pki.store.CertificateIndex`: the root's) to ask, else
    opened for the call.

    The index is read on every call, so a revocation or a new certificate counts at once; the
    certificate and key files of a serial, which never change, are parsed once per process."""
    from gateway.pki.files import Layout, load_cached
    from gateway.runtime.storage import storage_for

    holder, wanted = signing_mailbox(config, email, directory)
    if kinds is not None:
        wanted = tuple(kinds)
    now = dt.datetime.now(dt.UTC)
    opened = None if index is not None else storage_for(config).certificate_index()
    idx = index if index is not None else opened
    assert idx is not None
    with contextlib.closing(opened) if opened is not None else contextlib.nullcontext():
        records = [
            r
            for kind in wanted
            for r in idx.issued(email=holder, kind=kind)
            if r.revoked_at is None and r.not_before <= now < r.not_after
        ]
    if not records:
        raise NotFound(
            f"{holder}: no valid {' or '.join(wanted)} certificate issued by this gateway;"
            f" issue one with `mssgw pki issue {holder} --kind {wanted[0]}`"
        )
    record = max(records, key=lambda r: r.not_before)
    layout = Layout.of(config)
    if not layout.key(record.serial).exists():  # issued on another node of a shared database
        from gateway.pki.store import fetch_files

        fetch_files(config)
    try:
        cert, *chain = load_cached(layout.cert(record.serial), x509.load_pem_x509_certificates)
        # Our own key file (0600, written by our PKI): skipping cryptography's RSA consistency
        # check saves ~100 ms per signature; a bad key would still fail to sign or verify.
        key = load_cached(layout.key(record.serial), _load_key)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningError(
            f"{holder}: the certificate or key {record.serial} cannot be read: {exc}"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise SigningError(f"{holder}: certificate {record.serial} has an unsupported key type")
    return Signer(key, (cert, *chain))


def _load_key(data: bytes) -> object:
    return load_pem_private_key(data, None, unsafe_skip_rsa_key_validation=True)


# Top-level, picklable entry points for the servers' process pool:
#   await loop.run_in_executor(pool, check_package, config, data)


def check_package(config: Config, package: bytes) -> Verification:
    """Check a received package and its signature against our PKI, with [xdm] limits."""
    return verify_package(package, pki_check(config), limits=Limits.of(config))


def sign_as(config: Config, email: str, package: bytes) -> bytes:
    """`package` signed for mailbox `email` (see `signer_for`)."""
    return sign_package(package, signer_for(config, email), limits=Limits.of(config))


def signed_as(config: Config, email: str, package: Package,
              directory: Directory | None = None,
              index: CertificateIndex | None = None) -> Package:
    """`sign_as` on a package in memory (`gateway.xdm.package.build`): the flows build, sign
    and file it, then zip it once (`gateway.xdm.package.to_zip`); they pass their root's
    directory and certificate index."""
    return sign(package, signer_for(config, email, directory=directory, index=index))
