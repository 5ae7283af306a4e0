"""QUOTA: a storage quota per kind of mailbox ([quota]), enforced when SMTP accepts mail (452
4.2.2 while full, 552 5.2.2 for a message larger than the whole quota) and by IMAP APPEND and
COPY (NO [OVERQUOTA]), shown to IMAP clients (RFC 9208) - imaplib, aioimaplib, smtplib over
real TLS."""

from __future__ import annotations

import imaplib
import re
import smtplib

import pytest
from smtp_helpers import (
    DOCTOR,
    PASSWORD,
    PATIENT,
    PHARMACIST,
    ServerThread,
    client_context,
    message,
    setup_gateway,
    submission,
)

QUOTA = 6000  # octets, for a professional's mailbox (kind PER) in these tests


@pytest.fixture
def quota_gateway(gateway_home):
    cfg = gateway_home / "config.toml"
    cfg.write_text(cfg.read_text() + f"\n[quota]\nper = {QUOTA}\npatient = 0\n")
    config = setup_gateway(gateway_home)
    with ServerThread(config, imap=True) as server:
        yield config, server


def _imap(config, server) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap starttls"], timeout=30)
    client.starttls(ssl_context=client_context(config))
    client.login(PHARMACIST, PASSWORD)
    return client


def test_smtp_refuses_mail_beyond_the_quota(quota_gateway):
    config, server = quota_gateway
    port = server.ports["submission"]
    with submission(config, port) as c:
        c.send_message(message(DOCTOR, PHARMACIST, "first", "x" * 3000 + "\n"))
        # SIZE= larger than the whole quota: it will never fit
        c.mail(DOCTOR, ["SIZE=7000"])
        code, text = c.rcpt(PHARMACIST)
        assert code == 552 and text.startswith(b"5.2.2 ")
        c.rset()
        # SIZE= that does not fit now: try later
        c.mail(DOCTOR, ["SIZE=4000"])
        code, text = c.rcpt(PHARMACIST)
        assert code == 452 and text.startswith(b"4.2.2 ")
        c.rset()
        # smtplib declares SIZE= itself: refused at RCPT
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            c.send_message(message(DOCTOR, PHARMACIST, "second", "y" * 4000 + "\n"))
        # without SIZE=: refused at DATA, once its size is known
        assert c.mail(DOCTOR)[0] == 250 and c.rcpt(PHARMACIST)[0] == 250
        code, text = c.data(message(DOCTOR, PHARMACIST, "second", "y" * 4000 + "\n")
                            .as_bytes().replace(b"\n", b"\r\n"))
        assert code == 452 and text.startswith(b"4.2.2 ")
        # a kind without quota (patient = 0) takes it
        c.send_message(message(DOCTOR, PATIENT, "third", "y" * 8000 + "\n"))

    client = _imap(config, server)
    assert "QUOTA" in client.capabilities and "QUOTA=RES-STORAGE" in client.capabilities
    typ, data = client.getquotaroot("INBOX")
    assert typ == "OK" and data[0] == [b'"INBOX" ""']
    used, limit = map(int, re.fullmatch(rb'"" \(STORAGE (\d+) (\d+)\)', data[1][0]).groups())
    assert limit == QUOTA // 1024 and 3 <= used <= 4
    assert client.getquota('""')[1] == data[1]
    assert client.getquota("other")[0] == "NO"
    assert client.setquota('""', "(STORAGE 100000)")[0] == "NO"
    # APPEND beyond the quota: NO [OVERQUOTA]; nothing is stored
    typ, data = client.append("INBOX", None, None, b"Subject: big\r\n\r\n" + b"z" * 4000)
    assert typ == "NO" and b"[OVERQUOTA]" in data[0]
    client.select("INBOX")
    assert client.search(None, "ALL")[1] == [b"1"]
    # expunged, the room comes back for IMAP and for SMTP
    client.store("1", "+FLAGS", "\\Deleted")
    client.expunge()
    assert client.getquotaroot("INBOX")[1][1] == [b'"" (STORAGE 0 5)']
    client.logout()
    with submission(config, port) as c:
        c.send_message(message(DOCTOR, PHARMACIST, "fits again", "y" * 4000 + "\n"))


async def test_aioimaplib_reads_the_quota(quota_gateway):
    import aioimaplib

    config, server = quota_gateway
    client = aioimaplib.IMAP4_SSL("127.0.0.1", server.ports["imap tls"],
                                  ssl_context=client_context(config), timeout=15)
    await client.wait_hello_from_server()
    await client.login(PHARMACIST, PASSWORD)
    response = await client.getquotaroot("INBOX")
    assert response.result == "OK"
    assert b'"" (STORAGE 0 5)' in response.lines  # aioimaplib keeps the QUOTA line
    await client.logout()
