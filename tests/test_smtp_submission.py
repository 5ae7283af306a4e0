"""Submission over real TLS with smtplib: authentication, sender rules, local delivery, limits."""

from __future__ import annotations

import smtplib
import socket
import ssl

import pytest
from smtp_helpers import (
    DOCTOR,
    PASSWORD,
    PATIENT,
    PHARMACIST,
    PHARMACY,
    PRACTICE,
    ServerThread,
    client_context,
    inbox,
    message,
    setup_gateway,
    submission,
)

from gateway.directory import open_directory


@pytest.fixture
def gw(gateway_home):
    config = setup_gateway(
        gateway_home,
        "max_recipients = 3\nrate_limit_account = 0\nrate_limit_client = 0\n"
        'domain_size_limits = { "patient.test.localhost" = 4000 }\n',
    )
    with ServerThread(config) as server:
        yield config, server


def test_starttls_auth_and_local_delivery(gw):
    config, server = gw
    with submission(config, server.ports["submission"]) as c:
        refused = c.send_message(message(DOCTOR, PHARMACIST, "Ordonnance"))
        assert refused == {}
        code, text = c.noop()
        assert code == 250
    [stored] = inbox(config, PHARMACIST)
    assert stored.path.parent.name == "new"
    head = stored.data.split(b"\r\n\r\n")[0].decode()
    assert head.startswith("Received: from client.test ([127.0.0.1])")
    assert "with ESMTPSA id " in head and f"for <{PHARMACIST}>" in head
    assert "Subject: Ordonnance" in head
    assert b"\r\n" in stored.data and b"\r\r" not in stored.data


def test_implicit_tls_auth_login(gw):
    config, server = gw
    with submission(config, server.ports["submission-tls"], implicit=True, login=None) as c:
        assert "LOGIN" in c.esmtp_features["auth"] and "PLAIN" in c.esmtp_features["auth"]
        c.user, c.password = DOCTOR, PASSWORD
        code, _ = c.auth("LOGIN", c.auth_login, initial_response_ok=False)
        assert code == 235
        c.send_message(message(DOCTOR, f"{PHARMACIST}"))
    assert len(inbox(config, PHARMACIST)) == 1


def test_several_recipients_stored_once_each(gw):
    config, server = gw
    with submission(config, server.ports["submission"]) as c:
        c.send_message(message(DOCTOR, f"{PHARMACIST}, {PHARMACY}"))
    assert len(inbox(config, PHARMACIST)) == 1 and len(inbox(config, PHARMACY)) == 1


def test_no_auth_before_tls(gw):
    config, server = gw
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as c:
        c.ehlo()
        assert "auth" not in c.esmtp_features and "starttls" in c.esmtp_features
        code, text = c.docmd("AUTH", "PLAIN AGRyLm1hcnRpbkB0ZXN0LmxvY2FsaG9zdABwYXNz")
        assert code == 530 and b"STARTTLS" in text
        code, text = c.docmd("MAIL", f"FROM:<{DOCTOR}>")
        assert code == 530


def test_mail_needs_auth(gw):
    config, server = gw
    with submission(config, server.ports["submission"], login=None) as c:
        code, text = c.mail(DOCTOR)
        assert code == 530 and b"5.7.0" in text


def login_error(config, port, **kw) -> smtplib.SMTPAuthenticationError:
    try:
        with submission(config, port, **kw):
            pass
    except smtplib.SMTPAuthenticationError as exc:
        return exc
    raise AssertionError("the login succeeded")


def test_wrong_password_and_suspended_mailbox(gw):
    config, server = gw
    err = login_error(config, server.ports["submission"], password="wrong password!!")
    assert err.smtp_code == 535 and b"5.7.8" in err.smtp_error
    open_directory(config, actor="test").suspend(PHARMACIST)
    err = login_error(config, server.ports["submission"], login=PHARMACIST)
    assert err.smtp_code == 535


def test_lockout_after_failed_logins(gw):
    config, server = gw
    codes = [
        login_error(config, server.ports["submission"], login=PRACTICE,
                    password="not the password").smtp_code
        for _ in range(config.auth.account_max_failures + 1)
    ]
    assert codes[0] == 535 and codes[-1] == 454
    # Even the right password is refused while the account is locked.
    err = login_error(config, server.ports["submission"], login=PRACTICE)
    assert err.smtp_code == 454 and b"try again" in err.smtp_error


def test_envelope_sender_must_be_the_mailbox(gw):
    config, server = gw
    with submission(config, server.ports["submission"]) as c:
        code, text = c.mail(PHARMACIST)
        assert code == 553 and b"5.7.1" in text and b"authenticated as" in text
        code, text = c.mail("<>")
        assert code == 553


def test_from_header_must_be_the_mailbox(gw):
    config, server = gw
    with submission(config, server.ports["submission"]) as c, pytest.raises(
        smtplib.SMTPDataError
    ) as err:
        c.send_message(message(PHARMACY, PHARMACIST), from_addr=DOCTOR)
    assert err.value.smtp_code == 550 and b"From:" in err.value.smtp_error
    assert inbox(config, PHARMACIST) == []


@pytest.mark.parametrize(
    ("rcpt", "code", "status", "words"),
    [
        ("nobody@test.localhost", 550, b"5.1.1", b"no such mailbox"),
        ("someone@gmail.com", 550, b"5.7.1", b"trust space"),
    ],
)
def test_recipient_refusals(gw, rcpt, code, status, words):
    config, server = gw
    with submission(config, server.ports["submission"]) as c:
        c.mail(DOCTOR)
        got, text = c.rcpt(rcpt)
        assert (got, status in text, words in text) == (code, True, True)


def test_suspended_recipient_refused(gw):
    config, server = gw
    open_directory(config, actor="test").suspend(PHARMACY)
    with submission(config, server.ports["submission"]) as c:
        c.mail(DOCTOR)
        code, text = c.rcpt(PHARMACY)
    assert code == 550 and b"5.2.1" in text and b"suspended" in text


def test_remote_trust_space_recipient_is_queued(gw):
    config, server = gw
    open_directory(config, actor="test").add_domain(
        "peer.localhost", ["CN=mx.peer.localhost,O=Peer Operator,C=FR"]
    )
    with submission(config, server.ports["submission"]) as c:
        c.send_message(message(DOCTOR, "dr.house@peer.localhost"))
    from gateway.store.queue import Queue

    [record] = Queue(config.queue_path).records()
    assert record.sender == DOCTOR
    assert [r.address for r in record.recipients] == ["dr.house@peer.localhost"]


def test_recipient_count_limit(gw):
    config, server = gw
    with submission(config, server.ports["submission"]) as c:
        c.mail(DOCTOR)
        for rcpt in (PHARMACIST, PHARMACY, PRACTICE):
            assert c.rcpt(rcpt)[0] == 250
        code, text = c.rcpt(PATIENT)
    assert code == 452 and b"4.5.3" in text


def test_size_limit_per_domain(gw):
    config, server = gw
    body = ("y" * 70 + "\n") * 80
    big = message(DOCTOR, PATIENT, body=body).as_bytes().replace(b"\n", b"\r\n")
    with submission(config, server.ports["submission"]) as c:
        # Announced with SIZE= (smtplib does when the server offers SIZE): refused at RCPT.
        with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
            c.send_message(message(DOCTOR, PATIENT, body=body))
        [(code, text)] = err.value.recipients.values()
        assert code == 552 and b"5.3.4" in text and b"patient.test.localhost" in text
        # Not announced: refused at the end of DATA.
        c.mail(DOCTOR)
        c.rcpt(PATIENT)
        code, text = c.data(big)
        assert code == 552 and b"5.3.4" in text
        # The same message to a professional is fine: the limit is for the patient domain.
        c.send_message(message(DOCTOR, PHARMACIST, body=body))
    assert inbox(config, PATIENT) == []
    assert len(inbox(config, PHARMACIST)) == 1


def test_bare_lf_is_refused(gw):
    """SMTP smuggling: smtplib would repair line ends, so the raw bytes are sent by hand."""
    config, server = gw
    with submission(config, server.ports["submission"]) as c:
        c.mail(DOCTOR)
        c.rcpt(PHARMACIST)
        code, _ = c.docmd("DATA")
        assert code == 354
        raw = message(DOCTOR, PHARMACIST).as_bytes().replace(b"\n", b"\r\n")
        c.send(raw + b"\n.\nMAIL FROM:<x@y>\r\n" + b"\r\n.\r\n")
        code, text = c.getreply()
        assert code == 550 and b"5.6.0" in text and b"bare" in text
    assert inbox(config, PHARMACIST) == []


def test_rate_limit_per_account(gateway_home):
    config = setup_gateway(gateway_home, "rate_limit_account = 2\n")
    with ServerThread(config) as server, submission(config, server.ports["submission"]) as c:
        for _ in range(2):
            c.send_message(message(DOCTOR, PHARMACIST))
        code, text = c.mail(DOCTOR)
    assert code == 450 and b"4.7.1" in text and b"try again" in text
    assert len(inbox(config, PHARMACIST)) == 2


def test_rate_limit_per_client_address(gateway_home):
    config = setup_gateway(gateway_home, "rate_limit_client = 1\n")
    with ServerThread(config) as server:
        with submission(config, server.ports["submission"]) as c:
            c.send_message(message(DOCTOR, PHARMACIST))
        with submission(config, server.ports["submission"], login=PHARMACY) as c:
            code, text = c.mail(PHARMACY)
    assert code == 450 and b"127.0.0.1" in text


def test_session_survives_garbage(gw):
    config, server = gw
    with socket.create_connection(("127.0.0.1", server.ports["submission-tls"])) as raw:
        ctx = client_context(config)
        with ctx.wrap_socket(raw) as tls:
            assert tls.recv(200).startswith(b"220 ")
            tls.sendall(b"\x00\xff garbage\r\n")
            assert tls.recv(200)[:1] == b"5"


def test_submitted_mail_is_read_over_imap(gateway_home):
    """The store contract end to end: what SMTP delivers, the IMAP server shows."""
    import imaplib

    config = setup_gateway(gateway_home)  # the test template's [imap] uses ephemeral ports
    with ServerThread(config, imap=True) as server:
        with submission(config, server.ports["submission"]) as c:
            c.send_message(message(DOCTOR, PHARMACIST, "Bonjour via IMAP"))
        imap = imaplib.IMAP4("127.0.0.1", server.ports["imap starttls"], timeout=30)
        try:
            imap.starttls(ssl_context=client_context(config))
            imap.login(PHARMACIST, PASSWORD)
            assert imap.select("INBOX") == ("OK", [b"1"])
            _, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert b"Bonjour via IMAP" in data[0][1]
        finally:
            imap.logout()


def _tls_session(port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None = None):
    """Connect to an implicit-TLS listener, read the greeting (the session tickets come before
    it in TLS 1.3), and say whether the TLS session was resumed."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session)
    assert tls.recv(1024).startswith(b"220 ")
    reused, session = tls.session_reused, tls.session
    tls.close()
    return reused, session


def test_tls_sessions_resume_on_every_worker(gateway_home):
    """`mssgw serve` calls `prepare` before forking, so every worker shares the TLS contexts
    and their ticket key: a mail client's session resumes on whichever worker it reaches (two
    listeners here stand for two workers)."""
    from gateway.runtime import Runtime
    from gateway.smtp import service

    config = setup_gateway(gateway_home)
    with ServerThread(config) as a, ServerThread(config) as b:
        ctx = client_context(config)
        _, session = _tls_session(a.ports["submission-tls"], ctx)
        assert _tls_session(a.ports["submission-tls"], ctx, session)[0]  # same worker
        assert not _tls_session(b.ports["submission-tls"], ctx, session)[0]  # its own key

    supervisor = Runtime(config)
    service.prepare(supervisor)
    with ServerThread(config, parent=supervisor) as a, \
            ServerThread(config, parent=supervisor) as b:
        ctx = client_context(config)
        _, session = _tls_session(a.ports["submission-tls"], ctx)
        assert _tls_session(b.ports["submission-tls"], ctx, session)[0]
