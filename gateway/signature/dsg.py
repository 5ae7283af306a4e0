"""IHE DSG detached signatures of XDM packages: make the signature document, add it to a package.

The signature document is a XAdES-BES `ds:Signature` whose SignedInfo references
1. a `ds:Manifest` (Type ...#Manifest) listing each signed document by `urn:oid:<uniqueId>` (or
   its file name when the uniqueId is not an OID) with the SHA-256 digest of its exact bytes,
2. the XAdES SignedProperties (SigningTime, SigningCertificateV2, DataObjectFormat and the
   purpose of signature as a CommitmentTypeIndication),
3. the KeyInfo carrying the certificate chain.
signxml does the canonicalisation, digests and signature over these three; we only build the
Manifest element (signxml has no Manifest API) and let signxml sign it like any referenced
element. Nothing is ever put inside a CDA document.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from signxml import SignatureConstructionMethod, SignatureReference
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.util import strip_pem_header
from signxml.xades import XAdESDataObjectFormat, XAdESSigner

from gateway.errors import GatewayError
from gateway.xdm import model as m
from gateway.xdm.header import sha1_hex
from gateway.xdm.metadata import append_objects, association, extrinsic_object, write_metadata
from gateway.xdm.model import Code, Document, DocumentEntry, Package
from gateway.xdm.package import (
    Limits,
    doc_name,
    new_id,
    new_oid,
    read_package,
    to_zip,
    xds_time,
)

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
MANIFEST_TYPE = "http://www.w3.org/2000/09/xmldsig#Manifest"
# signxml's XAdES references to SignedProperties and KeyInfo carry no Transform, so verifiers
# canonicalise them with the default (inclusive) method: we use it throughout.
C14N = CanonicalizationMethod.CANONICAL_XML_1_1
# Manifest digests: SHA-256 of the document bytes, no transform (they are files, not XML nodes).
DIGESTS = {
    "http://www.w3.org/2001/04/xmlenc#sha256": hashlib.sha256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": hashlib.sha384,
    "http://www.w3.org/2001/04/xmlenc#sha512": hashlib.sha512,
}
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"

# ASTM E1762 / ISO 17090 purposes of signature (IHE DSG); "source" = the author signs.
PURPOSE_AUTHOR = "1.2.840.10065.1.12.1.1"
PURPOSE_SOURCE = "1.2.840.10065.1.12.1.14"
PURPOSE_NAMES = {PURPOSE_AUTHOR: "Author's Signature", PURPOSE_SOURCE: "Source Signature"}

# Metadata of the signature document (IHE DSG; formatCode from the DMP value set).
SIGNATURE_CLASS = Code("urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1", "URN", "Digital Signature")
SIGNATURE_TYPE = Code("E1762", "ASTM", "Full Document")
SIGNATURE_FORMAT = Code("http://www.w3.org/2000/09/xmldsig#", "URN", "Default Signature Style")

_OID = re.compile(r"[0-2](\.(0|[1-9]\d*))+")


class SigningError(GatewayError):
    """The package cannot be signed (bad key/certificate, nothing to sign...)."""


@dataclass(frozen=True)
class Signer:
    """A private key and its certificate chain (signing certificate first)."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]


def reference_uri(doc: Document) -> str:
    """How the manifest names a document: urn:oid:<uniqueId> when it is an OID, else its URI."""
    uid = doc.entry.unique_id
    return f"urn:oid:{uid}" if _OID.fullmatch(uid) else doc.entry.uri


def _manifest(documents: Sequence[Document], manifest_id: str) -> etree._Element:
    # Same namespace declarations as the ds:Signature it will sit in: inclusive c14n of the
    # Manifest then gives the same bytes here (where signxml digests it) and in place.
    obj = etree.Element(f"{{{DS}}}Object", nsmap={"ds": DS, "xades": XADES})
    manifest = etree.SubElement(obj, f"{{{DS}}}Manifest", Id=manifest_id)
    for doc in documents:
        ref = etree.SubElement(manifest, f"{{{DS}}}Reference", URI=reference_uri(doc))
        etree.SubElement(ref, f"{{{DS}}}DigestMethod", Algorithm=SHA256)
        etree.SubElement(ref, f"{{{DS}}}DigestValue").text = base64.b64encode(
            hashlib.sha256(doc.data).digest()
        ).decode()
    return obj


@functools.lru_cache(maxsize=64)
def _certificate_texts(cert: x509.Certificate) -> tuple[str, str]:
    """(ds:X509Certificate text, base64 SHA-256 of the DER) of a certificate: the same values
    signxml computes, once per process for a signer's chain instead of on every signature
    (encoding the certificates and stripping the PEM armour cost ~0.1 ms per signature). The
    Certificate objects come from `gateway.pki.files.load_cached`; 64 of them at most."""
    der = cert.public_bytes(Encoding.DER)
    text = strip_pem_header(cert.public_bytes(Encoding.PEM))
    return text, base64.b64encode(hashlib.sha256(der).digest()).decode()


def _key_info(chain: Sequence[x509.Certificate]) -> etree._Element:
    """The ds:KeyInfo signxml would write (X509Data with the chain), from `_certificate_texts`."""
    key_info = etree.Element(f"{{{DS}}}KeyInfo", nsmap={"ds": DS, "xades": XADES})
    data = etree.SubElement(key_info, f"{{{DS}}}X509Data")
    for cert in chain:
        etree.SubElement(data, f"{{{DS}}}X509Certificate").text = _certificate_texts(cert)[0]
    return key_info


class _DSGSigner(XAdESSigner):
    """XAdESSigner with our SigningTime, the purpose of signature and the Manifest object."""

    def __init__(self, key: Any, signing_time: dt.datetime, purpose: str,
                 manifest: etree._Element) -> None:
        alg = SignatureMethod.ECDSA_SHA256 if isinstance(key, ec.EllipticCurvePrivateKey) \
            else SignatureMethod.RSA_SHA256
        super().__init__(
            method=SignatureConstructionMethod.detached,
            signature_algorithm=alg,
            digest_algorithm=DigestAlgorithm.SHA256,
            c14n_algorithm=C14N,
            data_object_format=XAdESDataObjectFormat(
                Description="IHE DSG manifest of the signed documents", MimeType="text/xml"
            ),
        )
        self._signing_time = signing_time
        self._purpose = purpose
        self._manifest = manifest
        self.signed_data_object_properties_annotators.append(
            self._add_commitment  # type: ignore[arg-type]
        )
        self.signature_annotators.append(self._add_manifest)

    def add_signing_time(self, signed_signature_properties: Any, sig_root: Any,
                         signing_settings: Any) -> None:
        el = etree.SubElement(signed_signature_properties, f"{{{XADES}}}SigningTime")
        el.text = self._signing_time.astimezone(dt.UTC).isoformat(timespec="seconds")

    def add_signing_certificate(self, signed_signature_properties: Any, sig_root: Any,
                                signing_settings: Any) -> None:
        # signxml's SigningCertificateV2 (one Cert per certificate of the chain), with the
        # digests from `_certificate_texts`.
        v2 = etree.SubElement(signed_signature_properties, f"{{{XADES}}}SigningCertificateV2")
        for cert in signing_settings.cert_chain:
            digest = etree.SubElement(etree.SubElement(v2, f"{{{XADES}}}Cert"),
                                      f"{{{XADES}}}CertDigest")
            etree.SubElement(digest, f"{{{DS}}}DigestMethod", Algorithm=SHA256)
            etree.SubElement(digest, f"{{{DS}}}DigestValue").text = _certificate_texts(cert)[1]

    def _add_commitment(self, props: Any, sig_root: Any, signing_settings: Any) -> None:
        cti = etree.SubElement(props, f"{{{XADES}}}CommitmentTypeIndication")
        cid = etree.SubElement(cti, f"{{{XADES}}}CommitmentTypeId")
        ident = etree.SubElement(cid, f"{{{XADES}}}Identifier", Qualifier="OIDAsURN")
        ident.text = f"urn:oid:{self._purpose}"
        etree.SubElement(cid, f"{{{XADES}}}Description").text = PURPOSE_NAMES.get(
            self._purpose, "purpose of signature"
        )
        etree.SubElement(cti, f"{{{XADES}}}AllSignedDataObjects")

    def _add_manifest(self, sig_root: Any, signing_settings: Any) -> None:
        # Runs before SignedInfo is canonicalised and signed: the Type attribute is signed too.
        first_ref = sig_root.find(f"{{{DS}}}SignedInfo/{{{DS}}}Reference")
        first_ref.set("Type", MANIFEST_TYPE)
        sig_root.append(self._manifest)


def signature_document(
    documents: Sequence[Document],
    signer: Signer,
    *,
    signing_time: dt.datetime | None = None,
    purpose: str = PURPOSE_SOURCE,
) -> bytes:
    """The bytes of an IHE DSG detached signature over `documents`."""
    if not documents:
        raise SigningError("nothing to sign: the package holds no document")
    when = (signing_time or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    manifest_id = f"Manifest-{new_id()[9:]}"
    obj = _manifest(documents, manifest_id)
    signer_impl = _DSGSigner(signer.key, when, purpose, obj)
    try:
        sig = signer_impl.sign(
            obj,
            key=signer.key,
            cert=list(signer.chain),
            reference_uri=[SignatureReference(URI=f"#{manifest_id}")],
            key_info=_key_info(signer.chain),
            always_add_key_value=False,
        )
    except (ValueError, TypeError) as exc:
        raise SigningError(f"cannot sign: {exc}") from None
    return etree.tostring(sig, xml_declaration=True, encoding="UTF-8")


def _signature_entry(data: bytes, package: Package, uri: str, signer: Signer,
                     when: dt.datetime) -> DocumentEntry:
    first = package.content[0].entry if package.content else None
    cert = signer.certificate
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    person = first.authors[0] if first and first.authors else None
    return DocumentEntry(
        entry_id=new_id(),
        uri=uri,
        unique_id=new_oid(),
        patient_id=package.submission_set.patient_id,
        hash=sha1_hex(data),
        size=len(data),
        mime_type="text/xml",
        title="Signature " + (str(cn[0].value) if cn else ""),
        creation_time=xds_time(when),
        language_code=first.language_code if first else None,
        class_code=SIGNATURE_CLASS,
        type_code=SIGNATURE_TYPE,
        format_code=SIGNATURE_FORMAT,
        confidentiality=first.confidentiality if first else (Code("N", "2.16.840.1.113883.5.25",
                                                                   "Normal"),),
        facility_type=first.facility_type if first else None,
        practice_setting=first.practice_setting if first else None,
        authors=(person,) if person else (),
        source_patient_id=first.source_patient_id if first else None,
        source_patient_info=first.source_patient_info if first else (),
    )


def sign_package(
    package: bytes,
    signer: Signer,
    *,
    signing_time: dt.datetime | None = None,
    purpose: str = PURPOSE_SOURCE,
    limits: Limits | None = None,
) -> bytes:
    """`package` with one more document: a DSG signature over all its (non-signature)
    documents, with its metadata and a `signs` association to the submission set.
    Existing entries are kept byte for byte."""
    pkg = sign(read_package(package, limits), signer, signing_time=signing_time, purpose=purpose)
    return to_zip(pkg)


def sign(
    pkg: Package,
    signer: Signer,
    *,
    signing_time: dt.datetime | None = None,
    purpose: str = PURPOSE_SOURCE,
) -> Package:
    """`sign_package` on a package in memory (read, or built by `gateway.xdm.package.build`):
    the signed Package, whose `files` are the new ZIP's (`to_zip`)."""
    if pkg.signatures:
        # One signature per package is what verifiers (ours included) accept.
        raise SigningError(
            f"the package is already signed ({pkg.signatures[0].entry.uri}): sign the unsigned"
            " package instead"
        )
    when = (signing_time or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    data = signature_document(pkg.content, signer, signing_time=when, purpose=purpose)
    taken = {d.path.rsplit("/", 1)[-1].upper() for d in pkg.documents} | {
        p.rsplit("/", 1)[-1].upper() for p in pkg.files
    }
    n = 1
    while doc_name(n) in taken:
        n += 1
    entry = _signature_entry(data, pkg, doc_name(n), signer, when)
    ss = pkg.submission_set.entry_id
    added = (m.Association(new_id(), m.HAS_MEMBER, ss, entry.entry_id),
             m.Association(new_id(), m.SIGNS, entry.entry_id, ss))
    if pkg.metadata_path in pkg.files:  # kept as it is, with the signature's objects added
        objects = [extrinsic_object(entry, f"Signature{n:02d}"), *map(association, added)]
        metadata = append_objects(pkg.files[pkg.metadata_path], objects)
    else:  # gateway.xdm.package.build(metadata=False): written once, signature included
        metadata = write_metadata(pkg.submission_set, [*(d.entry for d in pkg.documents), entry],
                                  [*pkg.associations, *added])
    path = f"{pkg.subset}/{entry.uri}"
    files = {p: d for p, d in pkg.files.items() if p != pkg.metadata_path}
    files[path] = data
    files[pkg.metadata_path] = metadata
    return dataclasses.replace(
        pkg, documents=(*pkg.documents, Document(entry, path, data)),
        associations=(*pkg.associations, *added), files=files)
