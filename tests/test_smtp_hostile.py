"""Hostile input on the SMTP listeners gets a precise, final answer (issue 12, section 3)."""

from __future__ import annotations

import pytest
from smtp_helpers import DOCTOR, PHARMACIST, ServerThread, inbox, message, setup_gateway, submission
from test_smtp_relay import HOUSE, peer_client, relay  # noqa: F401 - the relay fixture

from gateway.smtp.checks import MAX_MIME_DEPTH, mime_depth


def nested(sender: str, rcpt: str, depth: int) -> bytes:
    """A message whose multiparts nest `depth` deep around one text part."""
    lines = [f"From: {sender}", f"To: {rcpt}", "Subject: nested", "MIME-Version: 1.0"]
    for i in range(depth):
        lines += [f'Content-Type: multipart/mixed; boundary="b{i}"', "", f"--b{i}"]
    lines += ["Content-Type: text/plain", "", "Bonjour."]
    lines += [f"--b{i}--" for i in reversed(range(depth))]
    return ("\r\n".join(lines) + "\r\n").encode()


@pytest.fixture
def gw(gateway_home):
    config = setup_gateway(gateway_home, "rate_limit_account = 0\nrate_limit_client = 0\n")
    with ServerThread(config) as server:
        yield config, server


def test_mime_depth_counts_levels_not_parts():
    assert mime_depth(nested("a@b", "c@d", 3), limit=2) == 3
    assert mime_depth(nested("a@b", "c@d", 1000)) > MAX_MIME_DEPTH
    assert mime_depth(nested("a@b", "c@d", MAX_MIME_DEPTH)) <= MAX_MIME_DEPTH
    # many sibling parts, each one level down: two levels, whatever their number
    siblings = "".join(
        f'--o\r\nContent-Type: multipart/alternative; boundary="i{i}"\r\n\r\n'
        f"--i{i}\r\nContent-Type: text/plain\r\n\r\nx\r\n--i{i}--\r\n" for i in range(200)
    )
    flat = f'Content-Type: multipart/mixed; boundary="o"\r\n\r\n{siblings}--o--\r\n'.encode()
    assert mime_depth(flat) == 2
    # an embedded message is a level too
    inner = b"Content-Type: message/rfc822\r\n\r\n" * 60 + b"Subject: x\r\n\r\nhi\r\n"
    assert mime_depth(inner) > MAX_MIME_DEPTH


def test_deeply_nested_message_is_refused_for_good_on_submission(gw, caplog):
    config, server = gw
    with submission(config, server.ports["submission"]) as c:
        code, text = _send_raw(c, DOCTOR, PHARMACIST, nested(DOCTOR, PHARMACIST, 1000))
        assert code == 554, text
        assert b"5.6.0" in text and f"more than {MAX_MIME_DEPTH} levels".encode() in text
        # the most the limit allows is stored
        code, text = _send_raw(c, DOCTOR, PHARMACIST, nested(DOCTOR, PHARMACIST, MAX_MIME_DEPTH))
        assert code == 250, text
    assert len(inbox(config, PHARMACIST)) == 1
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text


def test_deeply_nested_message_is_refused_for_good_on_the_relay(relay, caplog):  # noqa: F811
    config, peer, server = relay
    with peer_client(peer, server.ports["relay"]) as c:
        code, text = _send_raw(c, HOUSE, DOCTOR, nested(HOUSE, DOCTOR, 1000))
    assert code == 554 and b"5.6.0" in text
    assert inbox(config, DOCTOR) == []
    assert "Traceback" not in caplog.text


def _send_raw(c, sender, rcpt, data):
    assert c.mail(sender)[0] == 250
    assert c.rcpt(rcpt)[0] == 250
    return c.data(data)


@pytest.mark.parametrize("header", ["From", "Sender"])
def test_peer_cannot_claim_one_of_our_addresses(relay, header):  # noqa: F811
    config, peer, server = relay
    msg = message(HOUSE, DOCTOR, "Avis")
    if header == "From":
        msg.replace_header("From", "Dr House <dr.martin@TEST.localhost>")
    else:
        msg["Sender"] = f"secretariat <{PHARMACIST}>"
    with peer_client(peer, server.ports["relay"]) as c:
        code, text = _send_raw(c, HOUSE, DOCTOR, msg.as_bytes().replace(b"\n", b"\r\n"))
    assert code == 550 and b"5.7.1" in text, text
    assert f"{header}: <".encode() in text and b"our own domains" in text
    assert inbox(config, DOCTOR) == []
    # the peer's own addresses are fine
    with peer_client(peer, server.ports["relay"]) as c:
        assert c.send_message(message(HOUSE, DOCTOR, "Avis")) == {}


def test_null_sender_after_auth_gets_a_readable_refusal(gw):
    config, server = gw
    with submission(config, server.ports["submission"]) as c:
        code, text = c.docmd("MAIL FROM:<>")
    assert code == 553
    assert b"<<>>" not in text
    assert b"null sender <> is reserved for delivery reports" in text
    assert f"send as <{DOCTOR}>".encode() in text


def _starttls_then(port: int, payload: bytes) -> int:
    """STARTTLS, then `payload` instead of a ClientHello; the client's own port."""
    import socket
    import time

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.recv(1000)
        s.sendall(b"EHLO scanner.test\r\n")
        _read_reply(s)
        s.sendall(b"STARTTLS\r\n")
        assert _read_reply(s).startswith(b"220")
        s.sendall(payload)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and s.recv(1000):  # until the server closes
            pass
        return s.getsockname()[1]


def _read_reply(s) -> bytes:
    data = b""
    while not data.endswith(b"\r\n") or data.split(b"\r\n")[-2][3:4] == b"-":
        data += s.recv(1000)
    return data


def test_failed_tls_handshake_is_one_log_line(relay, caplog):  # noqa: F811
    import logging
    import time

    caplog.set_level(logging.INFO)
    config, peer, server = relay
    seen = []
    for port in (server.ports["submission"], server.ports["relay"]):
        client = _starttls_then(port, b"GET / HTTP/1.0\r\n\r\n")
        seen.append((client, port, "HTTP_REQUEST"))
        client = _starttls_then(port, b"\x16\x03\x01\x00\x05hello")
        seen.append((client, port, None))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and \
            sum("TLS handshake failed" in r.getMessage() for r in caplog.records) < len(seen):
        time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if "TLS handshake failed" in r.getMessage()]
    assert len(lines) == len(seen), lines
    for client, port, reason in seen:
        [line] = [x for x in lines if f"peer=127.0.0.1:{client} " in x]
        assert f" port={port} reason=" in line
        if reason:
            assert line.endswith(f"reason={reason}")
    assert "Traceback" not in caplog.text
    assert not any(r.exc_info for r in caplog.records)


def test_no_auth_without_tls_warning_on_the_implicit_tls_port(gw, caplog):
    import logging

    caplog.set_level(logging.INFO)
    config, server = gw
    with submission(config, server.ports["submission-tls"], implicit=True) as c:
        assert c.noop()[0] == 250
    assert "auth_require_tls" not in caplog.text


def test_a_message_stuck_in_the_pool_gets_a_temporary_failure(gateway_home, monkeypatch, caplog):
    from pool_helpers import hang_step

    from gateway.flows import steps

    cfg = gateway_home / "config.toml"
    cfg.write_text(cfg.read_text().replace("workers = 1", "workers = 1\npool_call_timeout = 2"))
    monkeypatch.setattr(steps, "STEPS", (*steps.STEPS, hang_step))
    config = setup_gateway(gateway_home, "rate_limit_account = 0\nrate_limit_client = 0\n")
    with ServerThread(config) as server, submission(config, server.ports["submission"]) as c:
        stuck = message(DOCTOR, PHARMACIST, "stuck", X_Test_Hang="yes")
        code, text = _send_raw(c, DOCTOR, PHARMACIST, stuck.as_bytes().replace(b"\n", b"\r\n"))
        assert code == 451 and b"4.3.0" in text and b"retry" in text, text
        # the pool still serves: the stuck process was replaced
        assert c.send_message(message(DOCTOR, PHARMACIST, "next")) == {}
    assert [b"Subject: next" in m.data for m in inbox(config, PHARMACIST)] == [True]
    assert "not processed in time" in caplog.text and "Traceback" not in caplog.text
