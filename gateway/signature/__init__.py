"""IHE DSG signatures of XDM packages (XAdES-BES detached signature with a manifest).

Public API (pure, synchronous; see docs/architecture.md, section "XDM packages and signatures"):
- `sign_package(package, signer, signing_time=, purpose=) -> bytes` — adds the signature document;
- `signature_document(documents, signer, ...) -> bytes` — the signature alone;
- `verify_package(package, check_certificate, now=) -> Verification` — never raises for bad input;
- `Signer(key, chain)`; `CertificateCheck`; `Verification(valid, code, reason, signer, ...)`.
The gateway binds `check_certificate` to its PKI with `gateway.signature.trust.pki_check(config)`
and finds a mailbox's signer with `gateway.signature.trust.signer_for(config, email)`; the
picklable `trust.check_package(config, data)` and `trust.sign_as(config, email, data)` are what
the servers run in their process pool.
"""

from gateway.signature.dsg import (
    PURPOSE_AUTHOR,
    PURPOSE_SOURCE,
    Signer,
    SigningError,
    sign_package,
    signature_document,
)
from gateway.signature.verify import CertificateCheck, Verification, verify_package

__all__ = [
    "PURPOSE_AUTHOR",
    "PURPOSE_SOURCE",
    "CertificateCheck",
    "Signer",
    "SigningError",
    "Verification",
    "sign_package",
    "signature_document",
    "verify_package",
]
