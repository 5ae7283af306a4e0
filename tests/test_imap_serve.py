"""`mssgw serve` with two worker processes: IMAP on both listeners, sessions in different
processes seeing each other's changes through the shared index."""

from __future__ import annotations

import imaplib
import os
import signal
import time

from imap_helpers import message
from smtp_helpers import DOCTOR, PASSWORD, setup_gateway
from test_smtp_crash import start_serve

from gateway.pki.tls import client_context
from gateway.server import GRACE_SECONDS
from gateway.store.maildir import deliver, mailbox_path


def test_serve_runs_imap_in_every_worker(gateway_home):
    cfg = gateway_home / "config.toml"
    cfg.write_text(cfg.read_text().replace("workers = 1", "workers = 2"))
    config = setup_gateway(gateway_home)
    proc, ports = start_serve(cfg)
    try:
        assert {"imap starttls", "imap tls"} <= set(ports)
        ctx = client_context(config, present_certificate=False)
        starttls = imaplib.IMAP4("127.0.0.1", ports["imap starttls"], timeout=10)
        assert "LOGINDISABLED" in starttls.capabilities
        starttls.starttls(ssl_context=ctx)
        starttls.login(DOCTOR, PASSWORD)
        deliver(mailbox_path(config.mailboxes_path, DOCTOR), message("from smtp"))
        # Enough sessions that the kernel spreads them over both workers.
        sessions = []
        for _ in range(6):
            c = imaplib.IMAP4_SSL("127.0.0.1", ports["imap tls"], ssl_context=ctx, timeout=10)
            c.login(DOCTOR, PASSWORD)
            assert c.select("INBOX") == ("OK", [b"1"])
            sessions.append(c)
        starttls.select("INBOX")
        starttls.store("1", "+FLAGS", r"(\Flagged)")
        starttls.append("INBOX", None, None, message("appended"))
        for c in sessions:
            c.untagged_responses.clear()
            c.noop()
            assert c.untagged_responses.get("EXISTS") == [b"2"]
            [fetch] = c.untagged_responses.get("FETCH")
            assert fetch.startswith(b"1 (UID 1 FLAGS (\\Flagged")
            c.logout()
        starttls.logout()
        idle = imaplib.IMAP4_SSL("127.0.0.1", ports["imap tls"], ssl_context=ctx, timeout=10)
        idle.login(DOCTOR, PASSWORD)
        idle.select("INBOX")
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0
        # connected clients do not hold the shutdown for the sessions' grace period
        assert time.monotonic() - started < GRACE_SECONDS
        assert idle.readline().startswith(b"* BYE server shutting down")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
