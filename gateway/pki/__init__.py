"""The gateway's PKI: CAs modelled on IGC-Santé, certificates, CRLs, anchors, verifier, TLS.

Public API (see docs/architecture.md, section "PKI"):
- `issue`, `revoke`, `revoke_mailbox`, `list_certificates`, `get_certificate`, `export_pem`,
  `export_pkcs12`, `server_credentials` (gateway.pki.ca);
- `refresh_due` (gateway.pki.crl): re-publish our CRLs before they expire (daily);
- `publish_all`, `import_crl` (gateway.pki.crl); `add_anchor`, `list_anchors` (anchors);
- `verify_certificate`, `VerifyResult` (verify); `subject_dn`, `dn_matches`, `normalise_dn` (dn);
- `server_context`, `client_context`, `verify_peer` (gateway.pki.tls).
"""

from gateway.pki.anchors import Anchor, add_anchor, list_anchors
from gateway.pki.ca import (
    Credentials,
    Identity,
    Issued,
    PKIError,
    export_pem,
    export_pkcs12,
    get_certificate,
    issue,
    list_certificates,
    revoke,
    revoke_mailbox,
    server_credentials,
)
from gateway.pki.crl import import_crl, publish_all
from gateway.pki.dn import dn_matches, normalise_dn, subject_dn
from gateway.pki.kinds import KINDS, Purpose
from gateway.pki.store import CertRecord
from gateway.pki.verify import Failure, VerifyResult, verify_certificate

__all__ = [
    "KINDS",
    "Anchor",
    "CertRecord",
    "Credentials",
    "Failure",
    "Identity",
    "Issued",
    "PKIError",
    "Purpose",
    "VerifyResult",
    "add_anchor",
    "dn_matches",
    "export_pem",
    "export_pkcs12",
    "get_certificate",
    "import_crl",
    "issue",
    "list_anchors",
    "list_certificates",
    "normalise_dn",
    "publish_all",
    "revoke",
    "revoke_mailbox",
    "server_credentials",
    "subject_dn",
    "verify_certificate",
]
