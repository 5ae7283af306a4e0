"""What an administrator may do with the gateway's certificates, for the CLI, API and console.

`CertificateService` issues (only for an active mailbox whose kind fits, or a host with
`server`), lists, shows, revokes (re-publishing the CA's CRL at once) and publishes CRLs; every
issue, revocation and publication is written to the audit log under the caller's name. The PKI
itself (`ca.py`, `crl.py`) keeps its files and index; this layer adds who may, and the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509

from gateway.admins.model import Caller
from gateway.admins.paging import Page, check_window
from gateway.audit import Recorder
from gateway.config import Config
from gateway.directory.validate import InvalidField
from gateway.pki import ca, crl, store
from gateway.pki.identity import identity_for
from gateway.pki.kinds import CA, KINDS
from gateway.pki.store import CertRecord
from gateway.texts import t

EXPIRING_DAYS = 30  # the dashboard's "expiring soon"


def usages(cert: x509.Certificate) -> tuple[list[str], list[str], list[str]]:
    """Key usages, extended key usages and subject alternative names, as text."""
    ku: list[str] = []
    eku: list[str] = []
    san: list[str] = []
    for ext in cert.extensions:
        v = ext.value
        if isinstance(v, x509.KeyUsage):
            for flag in (
                "digital_signature", "content_commitment", "key_encipherment", "key_cert_sign",
                "crl_sign",
            ):
                if getattr(v, flag):
                    ku.append(flag)
        elif isinstance(v, x509.ExtendedKeyUsage):
            eku = [getattr(oid, "_name", oid.dotted_string) for oid in v]
        elif isinstance(v, x509.SubjectAlternativeName):
            san = [str(g.value) for g in v]
    return ku, eku, san


@dataclass(frozen=True)
class IssuedCertificate:
    record: CertRecord
    cert_path: str
    key_path: str


class CertificateService:
    resource = "pki"

    def __init__(self, config: Config, audit: Recorder, caller: Caller) -> None:
        self.config = config
        self.audit = audit
        self.caller = caller

    def issue(
        self, subject: str | None, kind: str | None, *, name: str | None = None,
        days: int | None = None, san: list[str] | tuple[str, ...] = (),
        ip: list[str] | tuple[str, ...] = (),
    ) -> IssuedCertificate:
        self.caller.require(self.resource, write=True)
        if not kind or kind not in KINDS:
            raise InvalidField(
                "kind", kind or "", t("a certificate kind is one of {kinds}",
                                      kinds=", ".join(KINDS))
            )
        if not subject or not subject.strip():
            raise InvalidField("subject", "", "give the mailbox address (or a host name)")
        if days is not None and not 1 <= days <= 36500:
            raise InvalidField("days", days, "out of range (1..36500)")
        ca.ca_certificate(self.config, KINDS[kind].ca)  # "run `mssgw init`" before anything
        email, common_name, identity, dns = identity_for(
            self.config, kind, subject.strip(), name
        )
        issued = ca.issue(
            self.config, kind, email, common_name, days=days,
            dns_names=tuple(dns + [s for s in san if s.strip()]),
            ip_addresses=tuple(a for a in ip if a.strip()), identity=identity,
        )
        self.audit(self.caller.actor, "pki.issue", email or subject.strip(),
                   {"serial": issued.serial, "kind": kind, "subject": issued.subject_dn})
        return IssuedCertificate(
            ca.get_certificate(self.config, issued.serial), str(issued.cert_path),
            str(issued.key_path),
        )

    def _find(
        self, email: str | None, kind: str | None, search: str | None, status: str | None,
        offset: int, limit: int,
    ) -> tuple[list[CertRecord], int]:
        self.caller.require(self.resource)
        if kind and kind not in KINDS:
            raise InvalidField("kind", kind, t("a certificate kind is one of {kinds}",
                                               kinds=", ".join(KINDS)))
        with store.connection(self.config) as conn:
            return store.find(
                conn, datetime.now(UTC), email=(email or "").strip() or None, kind=kind or None,
                search=search, status=status or None, offset=offset, limit=limit,
            )

    def page(
        self, *, email: str | None = None, kind: str | None = None, search: str | None = None,
        status: str | None = None, offset: int | None = None, limit: int | None = None,
    ) -> Page[CertRecord]:
        """Newest first, cut by the index. `search`: words in the subject, address or serial;
        `status`: valid, revoked, expired, not yet valid."""
        o, n = check_window(offset, limit)
        items, total = self._find(email, kind, search, status, o, n)
        return Page(items, total, o, n)

    def list_all(
        self, *, email: str | None = None, kind: str | None = None, search: str | None = None,
        status: str | None = None,
    ) -> list[CertRecord]:
        """Every match, newest first (the CLI's `pki list`, a mailbox's page)."""
        return self._find(email, kind, search, status, 0, store.NO_LIMIT)[0]

    def show(self, serial: str) -> dict[str, Any]:
        self.caller.require(self.resource)
        r = ca.get_certificate(self.config, serial)
        data = r.as_json(datetime.now(UTC))
        cert, _ = ca.load_issued(self.config, r.serial)
        data["key_usage"], data["extended_key_usage"], data["subject_alt_names"] = usages(cert)
        data["certificate"] = str(ca.Layout.of(self.config).cert(r.serial))
        return data

    def pem(self, serial: str) -> bytes:
        """The certificate and its CA chain (public: no key)."""
        self.caller.require(self.resource)
        return ca.export_pem(self.config, ca.get_certificate(self.config, serial).serial)

    def revoke(self, serial: str, reason: str | None = "unspecified") -> CertRecord:
        self.caller.require(self.resource, write=True)
        reason = reason or "unspecified"
        if reason not in ca.REASONS:
            raise InvalidField(
                "reason", reason, t("a revocation reason is one of {reasons}",
                                    reasons=", ".join(ca.REASONS))
            )
        r = ca.revoke(self.config, serial, reason)
        self.audit(self.caller.actor, "pki.revoke", r.email or r.subject_dn,
                   {"serial": r.serial, "reason": reason})
        return r

    def crl_path(self, which: CA) -> str:
        return str(ca.Layout.of(self.config).ca_crl(which))

    def crl(self, which: str) -> bytes:
        """The current CRL (PEM) of one of our CAs."""
        self.caller.require(self.resource)
        try:
            authority = CA(which)
        except ValueError:
            raise InvalidField(
                "ca", which, t("a CA is one of {cas}", cas=", ".join(c.value for c in CA))
            ) from None
        return ca.Layout.of(self.config).ca_crl(authority).read_bytes()

    def publish_crls(self) -> list[str]:
        self.caller.require(self.resource, write=True)
        paths = [str(p) for p in crl.publish_all(self.config)]
        self.audit(self.caller.actor, "pki.crl", "all CAs", {"published": len(paths)})
        return paths

    def expiring(self, days: int = EXPIRING_DAYS, limit: int = 50) -> Page[CertRecord]:
        """Valid certificates that expire within `days`, soonest first (the dashboard's
        warning): at most `limit` of them, and how many there are."""
        self.caller.require(self.resource)
        now = datetime.now(UTC)
        with store.connection(self.config) as conn:
            items, total = store.expiring(conn, now, now + timedelta(days=days), limit)
        return Page(items, total, 0, limit)
