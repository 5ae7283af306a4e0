"""Certificate kinds, modelled on the health PKI (IGC-Santé) families.

Each kind fixes which issuing CA signs it, its key usages and extended key usages, and what it is
good for (`purposes`, as checked by `verify_certificate`). IGC-Santé names are given for reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID


class Purpose(StrEnum):
    """What a presented certificate is used for; `verify_certificate` checks the fit."""

    SERVER = "server"  # TLS server (and, between operators, the relay's TLS client)
    CLIENT = "client"  # TLS client authentication
    SIGN = "sign"  # document signature / seal (non-repudiation)
    ANY = "any"  # chain, dates and revocation only


class CA(StrEnum):
    """Our certification authorities: the root and two issuing CAs (as IGC-Santé separates
    structures from persons)."""

    ROOT = "root"
    SERVERS = "servers"  # servers and organisations
    PERSONS = "persons"  # professionals (personal authentication and signature)


CA_NAMES: dict[CA, str] = {
    CA.ROOT: "mssgw Root CA",
    CA.SERVERS: "mssgw Servers and Organisations CA",
    CA.PERSONS: "mssgw Persons CA",
}


@dataclass(frozen=True)
class Kind:
    name: str
    igc_sante: str  # the IGC-Santé family this mimics
    ca: CA
    digital_signature: bool
    content_commitment: bool
    key_encipherment: bool
    eku: tuple[x509.ObjectIdentifier, ...]
    purposes: tuple[Purpose, ...]
    description: str

    def key_usage(self) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=self.digital_signature,
            content_commitment=self.content_commitment,
            key_encipherment=self.key_encipherment,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        )


_SERVER = ExtendedKeyUsageOID.SERVER_AUTH
_CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH
# Signature certificates carry an EKU too, so they can never be used for TLS: emailProtection is
# what S/MIME and document-signing tools expect; IGC-Santé signature certificates carry no TLS EKU.
_EMAIL = ExtendedKeyUsageOID.EMAIL_PROTECTION

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "server",
            "SERV_SSL",
            CA.SERVERS,
            True,
            False,
            True,
            # Operators relay to each other over mutual TLS with their server certificates.
            (_SERVER, _CLIENT),
            (Purpose.SERVER, Purpose.CLIENT),
            "TLS server (and relay client) certificate of a host",
        ),
        Kind(
            "org-client",
            "ORG_AUTH_CLI",
            CA.SERVERS,
            True,
            False,
            False,
            (_CLIENT,),
            (Purpose.CLIENT,),
            "TLS client certificate of a structure or application mailbox",
        ),
        Kind(
            "org-seal",
            "ORG_SIGN",
            CA.SERVERS,
            True,
            True,
            False,
            (_EMAIL,),
            (Purpose.SIGN,),
            "seal (signature) certificate of a structure or application",
        ),
        Kind(
            "personal-auth",
            "CPS authentication",
            CA.PERSONS,
            True,
            False,
            False,
            (_CLIENT,),
            (Purpose.CLIENT,),
            "TLS client certificate of a professional",
        ),
        Kind(
            "personal-sign",
            "CPS signature",
            CA.PERSONS,
            True,
            True,
            False,
            (_EMAIL,),
            (Purpose.SIGN,),
            "signature certificate of a professional",
        ),
    )
}
