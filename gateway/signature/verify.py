"""Verify the IHE DSG signature of an XDM package and say precisely why it fails.

Order of the checks (each failure stops with its own `code`):
1. the package itself (ZIP safety, metadata, hash and size of every document);
2. a signature document is present and linked to the submission set by a `signs` association;
3. structure: exactly one ds:Signature (the root) and one ds:Manifest — a second copy of
   either is a wrapping attempt — and XAdES properties that target this signature;
4. the signer's certificate, through the PKI's verifier (chain to a trust anchor, validity at
   the signing time, key usage for signatures, revocation);
5. signxml verifies the signature value and the digests of the Manifest, the XAdES
   SignedProperties and the KeyInfo (exactly these three references), and the
   SigningCertificateV2 digest;
6. every Manifest reference — read from what signxml returns as signed, never from the raw
   document — names one document of the package and its digest matches the document's exact
   bytes; no document is named twice and every document is covered.
Pure function of (package bytes, certificate check, now): callable from a process pool.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography import x509
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature
from signxml.xades import XAdESSignatureConfiguration, XAdESVerifier

from gateway.errors import GatewayError
from gateway.signature.dsg import DIGESTS, DS, MANIFEST_TYPE, XADES
from gateway.xdm import model as m
from gateway.xdm.model import Document, Package
from gateway.xdm.package import Limits, read_package
from gateway.xmlsafe import parse_xml

# (certificate, intermediates, at) -> (ok, reason). The gateway passes the PKI's verifier
# (gateway.signature.trust.pki_check); the reason text is the PKI's.
CertificateCheck = Callable[[x509.Certificate, Sequence[x509.Certificate], dt.datetime],
                            tuple[bool, str]]

CLOCK_SKEW = dt.timedelta(minutes=5)

_ALLOWED = XAdESSignatureConfiguration(
    expect_references=3,
    location="./",
    signature_methods=frozenset(
        s for s in SignatureMethod
        if s.name.startswith(("RSA_SHA", "ECDSA_SHA", "SHA")) and "SHA1" not in s.name
        and "SHA224" not in s.name
    ),
    digest_algorithms=frozenset(
        d for d in DigestAlgorithm if d.name in ("SHA256", "SHA384", "SHA512")
    ),
)


@dataclass(frozen=True)
class Verification:
    """The outcome: `valid`, and otherwise `code` + `reason` saying what failed.

    Codes: valid, invalid-package, missing-signature, not-linked, malformed, wrapped,
    unknown-signer, expired, revoked, wrong-usage, bad-certificate, bad-signature,
    altered-signature, altered-document, unknown-reference, duplicated-reference,
    uncovered-document, future-signing-time.
    """

    valid: bool
    code: str
    reason: str
    signer: str | None = None  # subject DN of the signing certificate
    signing_time: dt.datetime | None = None
    purpose: str | None = None
    signed: tuple[str, ...] = ()  # the documents covered (paths in the package)
    checks: tuple[str, ...] = field(default=())  # what was checked, in order, for people

    def __bool__(self) -> bool:
        return self.valid

    def as_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "code": self.code,
            "reason": self.reason,
            "signer": self.signer,
            "signing_time": self.signing_time.isoformat() if self.signing_time else None,
            "purpose": self.purpose,
            "signed": list(self.signed),
            "checks": list(self.checks),
        }


class _Fail(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _cert_code(reason: str) -> str:
    r = reason.lower()
    if "revoked" in r:
        return "revoked"
    if "expired" in r or "not valid before" in r or "not yet valid" in r:
        return "expired"
    if "not a signature certificate" in r or "key usage" in r or "end-entity" in r:
        return "wrong-usage"
    if "untrusted" in r or "self-signed" in r or "issuer" in r or "anchor" in r:
        return "unknown-signer"
    return "bad-certificate"


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _parse_time(text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _Fail("malformed", f"SigningTime {text!r} is not an xsd:dateTime") from None
    if when.tzinfo is None:
        raise _Fail("malformed", f"SigningTime {text!r} has no time zone")
    return when.astimezone(dt.UTC)


class _Checker:
    def __init__(self, pkg: Package, check_certificate: CertificateCheck, now: dt.datetime):
        self.pkg = pkg
        self.check_certificate = check_certificate
        self.now = now
        self.checks: list[str] = []

    def signature_doc(self) -> Document:
        sigs = self.pkg.signatures
        if not sigs:
            raise _Fail("missing-signature", "the package holds no signature document")
        if len(sigs) > 1:
            raise _Fail("malformed", f"{len(sigs)} signature documents: expected one")
        sig = sigs[0]
        ss = self.pkg.submission_set.entry_id
        if not any(a.type == m.SIGNS and a.source == sig.entry.entry_id and a.target == ss
                   for a in self.pkg.associations):
            raise _Fail(
                "not-linked",
                f"signature {sig.entry.uri} is not linked to the submission set by a 'signs'"
                " association",
            )
        self.checks.append(f"signature document {sig.entry.uri} linked to the submission set")
        return sig

    def structure(self, sig: Document) -> etree._Element:
        try:
            root = parse_xml(sig.data, what=f"signature {sig.entry.uri}").getroot()
        except GatewayError as exc:
            raise _Fail("malformed", str(exc)) from None
        if root.tag != _q(DS, "Signature"):
            raise _Fail("malformed", "the signature document's root is not ds:Signature")
        signatures = root.findall(f".//{_q(DS, 'Signature')}")
        manifests = root.findall(f".//{_q(DS, 'Manifest')}")
        if signatures:
            raise _Fail("wrapped", "a ds:Signature nested inside the signature (wrapping)")
        if len(manifests) != 1:
            raise _Fail(
                "wrapped",
                f"{len(manifests)} ds:Manifest elements: exactly one is expected (wrapping or"
                " duplicated manifest)",
            )
        # XAdES binds its properties to the signature through Target (the Id of ds:Signature,
        # which is itself not signed): properties lifted from another signature do not count.
        qualifying = root.findall(f"{_q(DS, 'Object')}/{_q(XADES, 'QualifyingProperties')}")
        if len(qualifying) != 1 or not root.get("Id") or (
            qualifying[0].get("Target") != f"#{root.get('Id')}"
        ):
            raise _Fail("wrapped", "the XAdES QualifyingProperties do not target this signature")
        self.checks.append("one ds:Signature, one ds:Manifest, its XAdES properties")
        return root

    def certificate(self, root: etree._Element) -> tuple[x509.Certificate, list[x509.Certificate],
                                                          dt.datetime]:
        path = f"{_q(DS, 'KeyInfo')}/{_q(DS, 'X509Data')}/{_q(DS, 'X509Certificate')}"
        certs = root.findall(path)
        if not certs:
            raise _Fail("unknown-signer", "no signing certificate in KeyInfo/X509Data")
        try:
            chain = [
                x509.load_der_x509_certificate(base64.b64decode("".join((c.text or "").split())))
                for c in certs
            ]
        except ValueError as exc:
            raise _Fail("bad-certificate", f"unreadable certificate in KeyInfo: {exc}") from None
        times = root.findall(f".//{_q(XADES, 'SigningTime')}")
        if len(times) != 1:
            raise _Fail("malformed", f"{len(times)} xades:SigningTime elements: expected one")
        when = _parse_time(times[0].text or "")
        if when > self.now + CLOCK_SKEW:
            raise _Fail("future-signing-time", f"signing time {when.isoformat()} is in the future")
        ok, reason = self.check_certificate(chain[0], chain[1:], when)
        if not ok:
            raise _Fail(_cert_code(reason), f"signing certificate: {reason}")
        self.checks.append(f"signing certificate valid at signing time {when.isoformat()}")
        return chain[0], chain[1:], when

    def signed_manifest(self, root: etree._Element, cert: x509.Certificate,
                        when: dt.datetime) -> etree._Element:
        config = replace(_ALLOWED, verification_time=when)
        try:
            results = XAdESVerifier().verify(root, x509_cert=cert, expect_config=config)
        except InvalidDigest as exc:
            raise _Fail(
                "altered-signature",
                f"a signed part of the signature was changed (manifest, signed properties or"
                f" key info): {exc}",
            ) from None
        except InvalidCertificate as exc:
            raise _Fail(_cert_code(str(exc)), f"signing certificate: {exc}") from None
        except InvalidSignature as exc:
            raise _Fail("bad-signature", f"signature value does not verify: {exc}") from None
        except (InvalidInput, etree.DocumentInvalid, ValueError) as exc:
            text = str(exc)
            code = "wrapped" if "Ambiguous" in text or "references" in text else "malformed"
            raise _Fail(code, f"signature structure refused: {text}") from None
        signed_info = root.find(_q(DS, "SignedInfo"))
        assert signed_info is not None  # signxml found it
        refs = signed_info.findall(_q(DS, "Reference"))
        manifests = [
            r.signed_xml for ref, r in zip(refs, results, strict=False)
            if ref.get("Type") == MANIFEST_TYPE and r.signed_xml is not None
            and r.signed_xml.tag == _q(DS, "Manifest")
        ]
        if len(manifests) != 1:
            raise _Fail("malformed", "the signature does not sign exactly one ds:Manifest")
        # The verified SigningTime must be the one the certificate was checked at.
        props = [getattr(r, "signed_properties", None) for r in results]
        signed_times = [p.findtext(_q(XADES, "SigningTime")) for p in props if p is not None]
        if len(signed_times) != 1 or _parse_time(signed_times[0] or "") != when:
            raise _Fail("wrapped", "the signed SigningTime is not the one presented")
        self.checks.append("signature value and signed properties verified (XAdES-BES)")
        return manifests[0]

    def manifest(self, manifest: etree._Element, sig: Document) -> tuple[str, ...]:
        content = [d for d in self.pkg.documents if d is not sig]
        by_uri: dict[str, Document] = {}
        for d in content:  # a document is named by urn:oid:<uniqueId> or by its file name
            by_uri[f"urn:oid:{d.entry.unique_id}"] = d
            by_uri[d.entry.uri] = d
            by_uri[d.path] = d
        covered: list[Document] = []
        seen: set[str] = set()
        for ref in manifest.findall(_q(DS, "Reference")):
            uri = ref.get("URI") or ""
            if uri in seen:
                raise _Fail("duplicated-reference", f"manifest names {uri} twice")
            seen.add(uri)
            doc = by_uri.get(uri)
            if doc is None:
                raise _Fail("unknown-reference",
                            f"manifest names {uri!r}, which is not a document of the package")
            if any(c is doc for c in covered):
                raise _Fail("duplicated-reference",
                            f"manifest names document {doc.entry.uri} twice")
            if ref.find(_q(DS, "Transforms")) is not None:
                raise _Fail("malformed", f"manifest reference {uri}: transforms are not allowed")
            method = ref.find(_q(DS, "DigestMethod"))
            algorithm = method.get("Algorithm") if method is not None else None
            if algorithm not in DIGESTS:
                raise _Fail("malformed", f"manifest reference {uri}: digest {algorithm} refused")
            value = ref.findtext(_q(DS, "DigestValue")) or ""
            expected = base64.b64decode("".join(value.split()))
            if DIGESTS[algorithm](doc.data).digest() != expected:
                raise _Fail(
                    "altered-document",
                    f"document {doc.entry.uri} ({doc.entry.unique_id}) was changed after signing:"
                    " its digest does not match the signed manifest",
                )
            covered.append(doc)
        for d in content:
            if not any(c is d for c in covered):
                raise _Fail("uncovered-document",
                            f"document {d.entry.uri} ({d.entry.unique_id}) is not covered by the"
                            " signature")
        self.checks.append(f"{len(covered)} document(s) match the signed manifest")
        return tuple(d.path for d in covered)


def _purpose(root: etree._Element) -> str | None:
    ident = root.find(f".//{_q(XADES, 'CommitmentTypeId')}/{_q(XADES, 'Identifier')}")
    return (ident.text or "").strip().removeprefix("urn:oid:") if ident is not None else None


def _subject(cert: x509.Certificate) -> str:
    # As the PKI names subjects everywhere else (GN/SN spelled out, comparable with dn_matches).
    from gateway.pki.dn import subject_dn

    return subject_dn(cert.subject)


def verify_package(
    package: bytes | Package,
    check_certificate: CertificateCheck,
    *,
    limits: Limits | None = None,
    now: dt.datetime | None = None,
) -> Verification:
    """Check an XDM package and its DSG signature; never raises for bad input."""
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    checks: list[str] = []
    try:
        pkg = package if isinstance(package, Package) else read_package(package, limits)
    except GatewayError as exc:
        return Verification(False, "invalid-package", str(exc))
    checks.append(f"package: {len(pkg.documents)} document(s), hashes and sizes match")
    checker = _Checker(pkg, check_certificate, now)
    checker.checks = checks
    signer: str | None = None
    when: dt.datetime | None = None
    purpose: str | None = None
    try:
        sig = checker.signature_doc()
        root = checker.structure(sig)
        purpose = _purpose(root)
        cert, _intermediates, when = checker.certificate(root)
        signer = _subject(cert)
        manifest = checker.signed_manifest(root, cert, when)
        signed = checker.manifest(manifest, sig)
    except _Fail as fail:
        return Verification(False, fail.code, fail.reason, signer, when, purpose,
                            checks=tuple(checks))
    except Exception as exc:  # noqa: BLE001 - hostile input must give a result, not a crash
        # signxml and lxml raise many types on malformed signatures; the fuzz tests found none
        # escaping the handlers above, this is the last line of defence.
        return Verification(False, "malformed",
                            f"signature cannot be processed: {type(exc).__name__}: {exc}",
                            signer, when, purpose, checks=tuple(checks))
    return Verification(True, "valid", "valid", signer, when, purpose, signed, tuple(checks))
