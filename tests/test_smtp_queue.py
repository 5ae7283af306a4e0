"""Remote delivery through the durable queue to a fake peer operator: success, retries with
back-off, DSN after the queue lifetime or a permanent failure, and `mssgw queue`."""

from __future__ import annotations

import email
import json
import time

import pytest
from pki_helpers import config_of
from smtp_helpers import (
    DOCTOR,
    FakePeer,
    ServerThread,
    inbox,
    message,
    setup_gateway,
    submission,
)

from gateway import pki
from gateway.cli import main
from gateway.directory import open_directory
from gateway.pki.files import Layout
from gateway.pki.kinds import CA
from gateway.pki.tls import server_context
from gateway.store.queue import Queue

PEER_DN = "CN=mx.peer.localhost,O=Peer Operator,C=FR"
HOUSE = "dr.house@peer.localhost"


@pytest.fixture
def peer(peer_home, gateway_home):
    """The other operator, trusting our CA (before its listener's TLS context is built)."""
    peer = config_of(peer_home)
    pki.add_anchor(peer, (gateway_home / "certs" / "ca" / "root.pem").read_bytes())
    return peer


def gateway_towards(gateway_home, peer, port, dn=PEER_DN):
    config = setup_gateway(gateway_home, f'routes = {{ "peer.localhost" = "127.0.0.1:{port}" }}\n')
    # The peer's issuing CA too: on Python < 3.13 the verifier only sees the peer's leaf.
    for ca in (CA.ROOT, CA.SERVERS):
        pki.add_anchor(config, Layout.of(peer).ca_cert(ca).read_bytes())
    open_directory(config, actor="test").add_domain("peer.localhost", [dn])
    return config


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def send(config, server, to=HOUSE, subject="Avis"):
    with submission(config, server.ports["submission"]) as c:
        c.send_message(message(DOCTOR, to, subject))


def test_delivered_to_peer_with_our_client_certificate(gateway_home, peer):
    with FakePeer(server_context(peer, client_certs="optional", peers=True)) as fake:
        config = gateway_towards(gateway_home, peer, fake.port)
        with ServerThread(config, runner=True) as server:
            send(config, server)
            assert wait_for(lambda: fake.received)
            assert wait_for(lambda: not Queue(config.queue_path).ids())
    sender, rcpts, data = fake.received[0]
    assert (sender, rcpts) == (DOCTOR, [HOUSE])
    assert b"Subject: Avis" in data
    assert fake.peer_certs[0]  # we presented our certificate
    assert inbox(config, DOCTOR) == []  # no DSN


def test_temporary_failures_retry_then_dsn(gateway_home, peer):
    with FakePeer(server_context(peer), reply="451 4.3.0 try later") as fake:
        config = gateway_towards(gateway_home, peer, fake.port)
        with ServerThread(config, runner=True) as server:
            send(config, server, subject="Urgent")
            queue = Queue(config.queue_path)
            assert wait_for(lambda: queue.ids() and queue.records()[0].recipients[0].attempts >= 1)
            rec = queue.records()[0].recipients[0]
            assert rec.state == "pending" and "451" in rec.last_error
            assert wait_for(lambda: inbox(config, DOCTOR), timeout=20)
            assert wait_for(lambda: not queue.ids())
    assert fake.attempts >= 2  # retried with back-off before giving up
    [dsn] = inbox(config, DOCTOR)
    msg = email.message_from_bytes(dsn.data)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = [p.get_content_type() for p in msg.walk()]
    assert "message/delivery-status" in parts and "text/rfc822-headers" in parts
    assert b"Final-Recipient: rfc822; dr.house@peer.localhost" in dsn.data
    assert b"Status: 4.4.7" in dsn.data and b"Action: failed" in dsn.data
    assert b"Subject: Urgent" in dsn.data


def test_permanent_failure_dsn_at_once(gateway_home, peer):
    with FakePeer(server_context(peer), rcpt_reply="550 5.1.1 no such user") as fake:
        config = gateway_towards(gateway_home, peer, fake.port)
        with ServerThread(config, runner=True) as server:
            send(config, server)
            assert wait_for(lambda: inbox(config, DOCTOR))
    assert fake.attempts == 1
    [dsn] = inbox(config, DOCTOR)
    assert b"Status: 5.1.1" in dsn.data and b"550 5.1.1 no such user" in dsn.data


def test_peer_with_wrong_certificate_is_not_trusted(gateway_home, peer):
    with FakePeer(server_context(peer)) as fake:
        config = gateway_towards(gateway_home, peer, fake.port,
                                 dn="CN=mx.peer.localhost,O=Another Operator,C=FR")
        with ServerThread(config, runner=True) as server:
            send(config, server)
            queue = Queue(config.queue_path)
            assert wait_for(lambda: queue.ids() and queue.records()[0].recipients[0].attempts)
            rec = queue.records()[0].recipients[0]
    assert fake.received == [] and "Another Operator" in rec.last_error


def test_queue_commands(gateway_home, peer, capsys):
    # No listener on the route: the message waits in the queue.
    config = gateway_towards(gateway_home, peer, 9)
    cfg = str(config.source)
    with ServerThread(config) as server:
        send(config, server)
    [qid] = Queue(config.queue_path).ids()
    capsys.readouterr()
    assert main(["queue", "list", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert qid in out and HOUSE in out
    assert main(["queue", "list", "--json", "--config", cfg]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert item["id"] == qid and item["recipients"][0]["state"] == "pending"
    assert main(["queue", "show", qid, "--config", cfg]) == 0
    assert "Subject: Avis" in capsys.readouterr().out
    assert main(["queue", "retry", qid, "--config", cfg]) == 0
    assert main(["queue", "show", "../../etc/passwd", "--config", cfg]) == 1
    assert "not a queue id" in capsys.readouterr().err
    assert main(["queue", "delete", qid, "--config", cfg]) == 0
    assert Queue(config.queue_path).ids() == []
    assert main(["queue", "show", qid, "--config", cfg]) == 1
    assert "no message" in capsys.readouterr().err
