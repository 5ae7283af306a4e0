"""The relay listener with a simulated peer operator (its own CA, imported as a trust anchor),
and AUTH EXTERNAL for applicative mailboxes at submission."""

from __future__ import annotations

import smtplib
import ssl
from email.policy import SMTP

import pytest
from pki_helpers import config_of
from smtp_helpers import (
    DOCTOR,
    ROBOT,
    ServerThread,
    client_context,
    inbox,
    message,
    setup_gateway,
)

from gateway import pki
from gateway.directory import open_directory
from gateway.pki.files import Layout
from gateway.pki.kinds import CA
from gateway.pki.tls import client_context as pki_client_context

PEER_DN = "CN=mx.peer.localhost,O=Peer Operator,C=FR"
HOUSE = "dr.house@peer.localhost"


@pytest.fixture
def relay(gateway_home, peer_home):
    config = setup_gateway(gateway_home)
    peer = config_of(peer_home)
    # Each operator trusts the other's CA (as both trust IGC-Santé in real life).
    # The peer's issuing CA too: on Python < 3.13 the verifier only sees the peer's leaf.
    for ca in (CA.ROOT, CA.SERVERS):
        pki.add_anchor(config, Layout.of(peer).ca_cert(ca).read_bytes())
    pki.add_anchor(peer, Layout.of(config).ca_cert(CA.ROOT).read_bytes())
    open_directory(config, actor="test").add_domain("peer.localhost", [PEER_DN])
    with ServerThread(config) as server:
        yield config, peer, server


def peer_client(peer, port, **kw) -> smtplib.SMTP:
    c = smtplib.SMTP("127.0.0.1", port, timeout=30)
    c.starttls(context=pki_client_context(peer, check_hostname=False, **kw))
    c.ehlo("mx.peer.localhost")
    return c


def test_peer_delivers_to_our_mailbox(relay):
    config, peer, server = relay
    with peer_client(peer, server.ports["relay"]) as c:
        assert "auth" not in c.esmtp_features
        assert c.send_message(message(HOUSE, DOCTOR, "Avis")) == {}
    [stored] = inbox(config, DOCTOR)
    assert b"with ESMTPS id" in stored.data and b"Subject: Avis" in stored.data


def test_peer_may_send_bounces(relay):
    config, peer, server = relay
    with peer_client(peer, server.ports["relay"]) as c:
        bounce = message("mailer-daemon@peer.localhost", DOCTOR).as_bytes(policy=SMTP)
        c.sendmail("<>", [DOCTOR], bounce)
    assert len(inbox(config, DOCTOR)) == 1


def refused(peer, port, sender, rcpt=DOCTOR, **kw):
    with peer_client(peer, port, **kw) as c:
        assert c.mail(sender)[0] == 250
        return c.rcpt(rcpt)


def test_wrong_dn_refused(relay):
    config, peer, server = relay
    directory = open_directory(config, actor="test")
    directory.remove_domain("peer.localhost")
    directory.add_domain("peer.localhost", ["CN=mx.peer.localhost,O=Somebody Else,C=FR"])
    code, text = refused(peer, server.ports["relay"], HOUSE)
    assert code == 550 and b"5.7.1" in text and b"Peer Operator" in text
    assert b"Somebody Else" in text
    assert inbox(config, DOCTOR) == []


def test_unknown_domain_refused(relay):
    config, peer, server = relay
    code, text = refused(peer, server.ports["relay"], "someone@elsewhere.localhost")
    assert code == 550 and b"trust space" in text


def test_missing_certificate_refused(relay):
    config, peer, server = relay
    code, text = refused(peer, server.ports["relay"], HOUSE, present_certificate=False)
    assert code == 550 and b"no TLS client certificate" in text


def test_revoked_certificate_refused(relay):
    """A peer certificate of our own CA, listed in the whitelist, then revoked."""
    config, peer, server = relay
    issued = pki.issue(config, "server", None, "mx.other.localhost",
                       dns_names=("mx.other.localhost",))
    open_directory(config, actor="test").add_domain("other.localhost", [issued.subject_dn])
    creds = pki.Credentials(issued.cert_path, issued.key_path, issued.serial)
    code, _ = refused(config, server.ports["relay"], "a@other.localhost", credentials=creds)
    assert code == 250
    pki.revoke(config, issued.serial)
    code, text = refused(config, server.ports["relay"], "a@other.localhost", credentials=creds)
    assert code == 550 and b"revoked" in text


def test_unknown_ca_fails_the_handshake(gateway_home, peer_home):
    """A certificate from a CA we never imported: OpenSSL refuses it during the handshake."""
    config = setup_gateway(gateway_home)
    peer = config_of(peer_home)
    pki.add_anchor(peer, Layout.of(config).ca_cert(CA.ROOT).read_bytes())
    errors = (ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)
    with ServerThread(config) as server, pytest.raises(errors):  # noqa: SIM117
        with peer_client(peer, server.ports["relay"]) as c:
            c.mail(HOUSE)
            c.rcpt(DOCTOR)
    assert inbox(config, DOCTOR) == []


def test_no_open_relay(relay):
    config, peer, server = relay
    code, text = refused(peer, server.ports["relay"], HOUSE, rcpt="someone@gmail.com")
    assert code == 550 and b"relaying denied" in text
    code, text = refused(peer, server.ports["relay"], HOUSE, rcpt="dr.who@peer.localhost")
    assert code == 550 and b"relaying denied" in text


def test_relay_requires_starttls_and_offers_no_auth(relay):
    config, peer, server = relay
    with smtplib.SMTP("127.0.0.1", server.ports["relay"], timeout=10) as c:
        c.ehlo()
        code, _ = c.mail(HOUSE)
        assert code == 530
    with peer_client(peer, server.ports["relay"]) as c:
        code, text = c.docmd("AUTH", "PLAIN AGEAYg==")
        assert code == 502 and b"certificate" in text


def test_external_auth_for_an_application_mailbox(relay):
    config, peer, server = relay
    issued = pki.issue(config, "org-client", ROBOT, "Service ordonnances")
    ctx = client_context(config, (issued.cert_path, issued.key_path))
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as c:
        c.starttls(context=ctx)
        c.ehlo()
        assert "EXTERNAL" in c.esmtp_features["auth"]
        code, _ = c.auth("EXTERNAL", lambda challenge=None: "")
        assert code == 235
        c.send_message(message(ROBOT, DOCTOR, "Ordonnance numérique"))
    assert len(inbox(config, DOCTOR)) == 1


def test_external_auth_refused_for_a_person_or_without_certificate(relay):
    config, peer, server = relay
    issued = pki.issue(config, "personal-auth", DOCTOR, "Jean MARTIN")
    ctx = client_context(config, (issued.cert_path, issued.key_path))
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as c:
        c.starttls(context=ctx)
        c.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            c.auth("EXTERNAL", lambda challenge=None: "")
        assert b"APP" in err.value.smtp_error
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as c:
        c.starttls(context=client_context(config))
        c.ehlo()
        assert "EXTERNAL" not in c.esmtp_features["auth"]
