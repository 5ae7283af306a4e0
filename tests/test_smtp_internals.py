"""The aiosmtpd and asyncio internals the SMTP listener relies on (gateway.smtp.internals):
this fails loudly when a new aiosmtpd or Python no longer matches them, and the listener still
serves mail without them."""

from __future__ import annotations

import aiosmtpd.smtp
from smtp_helpers import DOCTOR, PHARMACIST, ServerThread, inbox, message, setup_gateway, submission

from gateway.smtp import internals


def test_the_internals_we_use_are_still_there():
    assert internals.problems() == [], (
        "aiosmtpd or asyncio changed: review gateway/smtp/internals.py against the new code, "
        "then add the version to TESTED_AIOSMTPD"
    )
    assert internals.OK
    assert isinstance(aiosmtpd.smtp.inspect, internals._CachedInspect)


def test_mail_is_served_without_them(gateway_home, monkeypatch):
    """What runs when problems() is not empty: aiosmtpd's own DATA, no held replies."""
    monkeypatch.setattr(internals, "OK", False)
    config = setup_gateway(gateway_home, "rate_limit_account = 0\nrate_limit_client = 0\n")
    body = "Bonjour.\n.dot-stuffed line\n" + "x" * 5000 + "\n"
    with ServerThread(config) as server, submission(config, server.ports["submission"]) as c:
        assert c.send_message(message(DOCTOR, PHARMACIST, "sans", body=body)) == {}
        # pipelined MAIL/RCPT/DATA still get their replies in order
        c.sock.sendall(f"MAIL FROM:<{DOCTOR}>\r\nRCPT TO:<{PHARMACIST}>\r\nDATA\r\n".encode())
        for code in (250, 250, 354):
            assert c.getreply()[0] == code
        c.sock.sendall(message(DOCTOR, PHARMACIST, "piped").as_bytes().replace(b"\n", b"\r\n")
                       + b"\r\n.\r\n")
        assert c.getreply()[0] == 250
    stored = inbox(config, PHARMACIST)
    assert len(stored) == 2
    # The two deliveries may be listed in either order.
    [sans] = [m for m in stored if b"Subject: sans" in m.data]
    assert b"\r\n.dot-stuffed line\r\n" in sans.data
