"""TLS contexts for every listener (SMTP submission and relay, IMAP) and for the relay client.

Profiles ([tls] profile in config.toml):
- `default`: TLS 1.2 or newer; TLS 1.2 limited to the four ECDHE-RSA suites of the MSSanté rules
  (Référentiel #2); TLS 1.3 with OpenSSL's default suites.
- `strict`: exactly TLS 1.2 with only those four suites, as Référentiel #2 demands.

Peer certificates are checked by OpenSSL during the handshake (chain to our CA, or to imported
peer anchors when `peers=True`, and dates). OpenSSL can check CRLs only when every issuer it may
meet has one loaded, which holds for our own CAs but not for peers without an imported CRL, and
a context keeps the CRLs it was given (`reload_crls` adds the current ones to every listener's
context: `mssgw serve` calls it in each worker, so a CRL past its nextUpdate never makes OpenSSL
refuse every certificate login of a long-running gateway); so callers always finish with
`verify_peer(...)`
after the handshake: it runs `verify_certificate` (current CRLs, key usage for the purpose) on
the presented certificate and returns a VerifyResult whose subject_dn is comparable with the
whitelist's expected DN (`gateway.pki.dn.dn_matches`).
"""

from __future__ import annotations

import logging
import ssl
import weakref
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.config import Config
from gateway.pki.anchors import anchor_certificates
from gateway.pki.ca import Credentials, server_credentials
from gateway.pki.files import Layout
from gateway.pki.kinds import CA, Purpose
from gateway.pki.verify import Failure, VerifyResult, verify_certificate

MSSANTE_TLS12_SUITES = (
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-SHA384",
    "ECDHE-RSA-AES128-SHA256",
)

ClientCerts = Literal["none", "optional", "required"]


def _profile(ctx: ssl.SSLContext, config: Config) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.tls.profile == "strict":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    # set_ciphers governs TLS 1.2 and below only; TLS 1.3 suites are all AEAD and stay default.
    ctx.set_ciphers(":".join(MSSANTE_TLS12_SUITES))
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION


def _trust(ctx: ssl.SSLContext, config: Config, peers: bool) -> None:
    layout = Layout.of(config)
    # Our issuing CAs are loaded too, so a client that sends only its leaf still verifies.
    ctx.load_verify_locations(cafile=str(layout.chain))
    if peers:
        pem = "".join(c.public_bytes(Encoding.PEM).decode()
                      for c in anchor_certificates(config, "relay"))
        if pem:
            ctx.load_verify_locations(cadata=pem)
    # Imported anchors may be issuing CAs rather than roots: accept them as chain ends.
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN


def server_context(
    config: Config,
    *,
    client_certs: ClientCerts = "none",
    peers: bool = False,
    credentials: Credentials | None = None,
) -> ssl.SSLContext:
    """A server-side context presenting our server certificate (or `credentials`).

    client_certs: "none" (users authenticate by password/token), "optional" (APP mailboxes may
    present a certificate), "required" (e.g. the relay: peers must present one).
    peers: also accept client certificates chaining to imported peer anchors (the relay
    listener); without it only certificates of our own CA are accepted and, those CAs always
    having CRLs, OpenSSL also checks the client certificate against them.
    """
    if client_certs not in ("none", "optional", "required"):
        raise ValueError(f"client_certs must be none|optional|required, not {client_certs!r}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _profile(ctx, config)
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    creds = credentials or server_credentials(config)
    ctx.load_cert_chain(str(creds.cert_path), str(creds.key_path))
    if client_certs != "none":
        ctx.verify_mode = ssl.CERT_REQUIRED if client_certs == "required" else ssl.CERT_OPTIONAL
        _trust(ctx, config, peers)
        if not peers:
            layout = Layout.of(config)
            for ca in (CA.SERVERS, CA.PERSONS):
                ctx.load_verify_locations(cafile=str(layout.ca_crl(ca)))
            # External CAs imported for client certificates (`add-anchor --for client`), with
            # their fetched CRLs: OpenSSL checks those leaves as ours (no CRL: refused).
            clients = anchor_certificates(config, "client")
            if clients:
                ctx.load_verify_locations(
                    cadata="".join(c.public_bytes(Encoding.PEM).decode() for c in clients))
                _load_peer_crls(ctx, layout)
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
            _checking_crls.add(ctx)
    return ctx


def _load_peer_crls(ctx: ssl.SSLContext, layout: Layout) -> None:
    if layout.peer_crls.is_dir():
        for path in sorted(layout.peer_crls.glob("*.crl.pem")):
            try:
                ctx.load_verify_locations(cafile=str(path))
            except (OSError, ssl.SSLError) as exc:
                log.warning("could not load the CRL %s: %s", path.name, exc)


# Contexts whose OpenSSL checks our CRLs, so that `reload_crls` can keep them current.
_checking_crls: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()
log = logging.getLogger("mssgw.pki")


def reload_crls(config: Config) -> int:
    """Add our CAs' current CRLs to every context made by `server_context` that checks them;
    returns how many contexts were updated. OpenSSL keeps the CRLs it had and prefers a current
    one, and ignores one it already has. A CRL that cannot be read is logged and skipped: the
    context keeps what it had, and `verify_peer` still reads the files on every login."""
    layout = Layout.of(config)
    updated = 0
    for ctx in list(_checking_crls):
        for ca in (CA.SERVERS, CA.PERSONS):
            try:
                ctx.load_verify_locations(cafile=str(layout.ca_crl(ca)))
            except (OSError, ssl.SSLError) as exc:
                log.warning("could not load the CRL of %s: %s", ca.value, exc)
        _load_peer_crls(ctx, layout)  # the fetched CRLs of external CAs (gateway.pki.external)
        updated += 1
    return updated


def client_context(
    config: Config,
    *,
    credentials: Credentials | None = None,
    present_certificate: bool = True,
    check_hostname: bool = True,
    peers: bool = True,
) -> ssl.SSLContext:
    """A client-side context (the relay to other operators, tests, tools).

    Presents our server certificate (or `credentials`) for mutual TLS unless
    `present_certificate` is False; trusts our CA and, when `peers`, imported anchors.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _profile(ctx, config)
    _trust(ctx, config, peers)
    ctx.check_hostname = check_hostname
    if present_certificate:
        creds = credentials or server_credentials(config)
        ctx.load_cert_chain(str(creds.cert_path), str(creds.key_path))
    return ctx


def peer_certificate(
    conn: ssl.SSLSocket | ssl.SSLObject,
) -> tuple[x509.Certificate | None, list[x509.Certificate]]:
    """The certificate the peer presented, and the rest of its chain when Python exposes it."""
    der = conn.getpeercert(binary_form=True)
    if not der:
        return None, []
    chain: list[x509.Certificate] = []
    unverified = getattr(conn, "get_unverified_chain", None)  # Python 3.13+
    if unverified is not None:
        for item in (unverified() or [])[1:]:
            raw = item if isinstance(item, bytes) else item.public_bytes(Encoding.DER)
            chain.append(x509.load_der_x509_certificate(raw))
    return x509.load_der_x509_certificate(der), chain


def verify_peer(
    config: Config,
    conn: ssl.SSLSocket | ssl.SSLObject,
    purpose: Purpose | str = Purpose.CLIENT,
) -> VerifyResult:
    """Verify the peer's certificate after the handshake (asyncio: the transport's
    `get_extra_info("ssl_object")`). Purpose `client` for a connecting client, `server` when
    we are the client."""
    cert, chain = peer_certificate(conn)
    if cert is None:
        return VerifyResult(False, "no certificate presented", "", (), Failure.NO_CERTIFICATE)
    return verify_certificate(config, cert, chain, purpose)
