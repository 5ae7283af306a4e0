"""Real TLS handshakes on 127.0.0.1 with the contexts every listener uses."""

from __future__ import annotations

import ssl

import pytest
from pki_helpers import config_of, handshake

from gateway import pki
from gateway.pki.files import Layout
from gateway.pki.tls import (
    MSSANTE_TLS12_SUITES,
    client_context,
    reload_crls,
    server_context,
    verify_peer,
)
from gateway.server import WORKER_TASKS


@pytest.fixture
def config(gateway_home):
    return config_of(gateway_home)


@pytest.fixture
def strict(gateway_home):
    cfg = gateway_home / "config.toml"
    cfg.write_text(cfg.read_text() + '[tls]\nprofile = "strict"\n')
    return config_of(gateway_home)


def plain_client(config, *, version=None, ciphers=None, tls13_only=False) -> ssl.SSLContext:
    """A client that trusts our root but is not limited by our profiles."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(Layout.of(config).chain))
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    if tls13_only:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def test_default_profile_accepts_tls13(config):
    side, err, sock = handshake(server_context(config), client_context(config))
    assert err is None and side.error is None
    assert side.version == "TLSv1.3"


@pytest.mark.parametrize("suite", MSSANTE_TLS12_SUITES)
def test_default_profile_accepts_tls12_mssante_suites(config, suite):
    client = plain_client(config, version=ssl.TLSVersion.TLSv1_2, ciphers=suite)
    side, err, _ = handshake(server_context(config), client)
    assert err is None and side.error is None
    assert (side.version, side.cipher) == ("TLSv1.2", suite)


@pytest.mark.parametrize("profile", ["default", "strict"])
@pytest.mark.parametrize(
    "suite", ["ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-RSA-AES128-SHA", "AES256-GCM-SHA384"]
)
def test_tls12_suites_outside_the_list_are_refused(config, strict, profile, suite):
    cfg = strict if profile == "strict" else config
    client = plain_client(cfg, version=ssl.TLSVersion.TLSv1_2, ciphers=suite)
    side, err, _ = handshake(server_context(cfg), client)
    assert isinstance(side.error, ssl.SSLError)
    assert err is not None


def test_strict_profile_refuses_tls13(strict):
    side, err, _ = handshake(server_context(strict), plain_client(strict, tls13_only=True))
    assert isinstance(side.error, ssl.SSLError)
    assert err is not None


def test_strict_profile_speaks_tls12_with_listed_suite(strict):
    side, err, _ = handshake(server_context(strict), client_context(strict))
    assert err is None and side.error is None
    assert side.version == "TLSv1.2" and side.cipher in MSSANTE_TLS12_SUITES


def test_client_certificate_required_refuses_client_without_one(config):
    server = server_context(config, client_certs="required")
    side, err, _ = handshake(server, client_context(config, present_certificate=False))
    assert isinstance(side.error, ssl.SSLError)
    assert "certificate" in str(side.error).lower()
    assert err is not None


def test_client_certificate_optional_allows_none(config):
    server = server_context(config, client_certs="optional")
    side, err, _ = handshake(
        server,
        client_context(config, present_certificate=False),
        on_server=lambda conn: verify_peer(config, conn),
    )
    assert err is None and side.error is None
    assert side.result.ok is False and side.result.reason == "no certificate presented"


def test_application_client_certificate_then_revoked(config):
    issued = pki.issue(config, "org-client", "robot@test.localhost", "Robot")
    creds = pki.Credentials(issued.cert_path, issued.key_path, issued.serial)
    client = client_context(config, credentials=creds)
    before = server_context(config, client_certs="required")
    side, err, _ = handshake(before, client, on_server=lambda c: verify_peer(config, c))
    assert err is None and side.error is None
    assert side.result.ok and side.result.subject_dn == "CN=Robot,O=mssgw,C=FR"

    pki.revoke(config, issued.serial)
    # A context built before the revocation completes the handshake, but verify_peer (which
    # reads the current CRL) refuses the certificate.
    side, err, _ = handshake(before, client, on_server=lambda c: verify_peer(config, c))
    assert not side.result.ok and "revoked" in side.result.reason
    # A context built after it refuses the handshake itself (OpenSSL checks our CRLs).
    side, err, _ = handshake(server_context(config, client_certs="required"), client)
    assert isinstance(side.error, ssl.SSLError) and "revoked" in str(side.error)


def test_reloaded_crls_reach_a_context_built_before_them(config):
    """A worker's listeners keep their TLS context for weeks: `reload_crls` (run hourly in every
    worker by `mssgw serve`) gives OpenSSL the CRLs published since, so a revocation is refused
    at the handshake and a CRL past its nextUpdate is replaced before it expires."""
    issued = pki.issue(config, "org-client", "robot2@test.localhost", "Robot")
    client = client_context(config, credentials=pki.Credentials(issued.cert_path,
                                                                 issued.key_path, issued.serial))
    listener = server_context(config, client_certs="required")
    pki.revoke(config, issued.serial)
    side, err, _ = handshake(listener, client)
    assert side.error is None  # the context still has the CRL it was built with
    assert reload_crls(config) >= 1
    side, err, _ = handshake(listener, client)
    assert isinstance(side.error, ssl.SSLError) and "revoked" in str(side.error)


def test_serve_reloads_crls_in_every_worker():
    from gateway.pki import service

    assert service.keep_loaded in WORKER_TASKS


def test_signature_certificate_is_not_a_tls_client(config):
    issued = pki.issue(config, "personal-sign", "doc@test.localhost", "Doc")
    creds = pki.Credentials(issued.cert_path, issued.key_path, issued.serial)
    side, err, _ = handshake(
        server_context(config, client_certs="required"),
        client_context(config, credentials=creds),
    )
    assert side.error is not None  # OpenSSL refuses: EKU lacks clientAuth


def test_mutual_tls_between_operators(config, peer_home):
    """The relay: both sides present their server certificates; a peer's is accepted once its
    CA is an imported anchor, and its subject DN can be compared with the whitelist's."""
    peer = config_of(peer_home)
    relay = server_context(config, client_certs="required", peers=True)
    outgoing = client_context(peer, check_hostname=False)

    side, err, _ = handshake(relay, outgoing)
    assert side.error is not None  # peer CA unknown

    for path in (Layout.of(peer).ca_cert(pki.kinds.CA.SERVERS),):
        pki.add_anchor(config, path.read_bytes())
    pki.add_anchor(peer, Layout.of(config).ca_cert(pki.kinds.CA.ROOT).read_bytes())
    relay = server_context(config, client_certs="required", peers=True)
    outgoing = client_context(peer)
    side, err, sock = handshake(
        relay, outgoing, on_server=lambda c: verify_peer(config, c, "client")
    )
    assert err is None and side.error is None, (err, side.error)
    assert side.result.ok
    assert pki.dn_matches(side.result.subject_dn, "CN=mx.peer.localhost,O=Peer Operator,C=FR")
