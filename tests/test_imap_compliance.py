"""The defects an independent compliance suite (Dovecot's imaptest) found (issue 19), each
reproduced through the real TLS listener: `[` in unquoted names, quoted-printable in FETCH
BINARY, the connection left open after LOGOUT, and LIST's reference."""

from __future__ import annotations

import socket
import ssl
import subprocess

from conftest import require_tool
from imap_helpers import Raw, RunningServer
from smtp_helpers import DOCTOR, PASSWORD

from gateway.pki.files import Layout

LOGIN = f'LOGIN {DOCTOR} "{PASSWORD}"'


def raw(server: RunningServer) -> Raw:
    client = Raw(server)
    assert client.cmd(LOGIN)[-1].startswith(b"t1 OK")
    return client


def test_bracket_is_an_ordinary_character_outside_fetch_sections(imap):
    """RFC 3501 9: "[" is an ATOM-CHAR; only after BODY / BINARY does it open a section."""
    imap.deliver(DOCTOR, b"Subject: crochets a[b]\r\n\r\nx\r\n")
    imap.deliver(DOCTOR, b"Subject: other\r\n\r\ny\r\n")
    c = raw(imap)
    assert c.cmd("CREATE x[z")[-1].startswith(b"t2 OK")
    assert c.cmd("CREATE x[y")[-1].startswith(b"t3 OK")
    listed = c.cmd('LIST "" x[*')
    assert listed[:-1] == [b'* LIST (\\HasNoChildren) "/" "x[y"',
                           b'* LIST (\\HasNoChildren) "/" "x[z"']
    status = c.cmd("STATUS x[y (MESSAGES)")
    assert status == [b'* STATUS "x[y" (MESSAGES 0)', b"t5 OK STATUS completed"]
    assert c.cmd("SELECT x[y")[-1] == b"t6 OK [READ-WRITE] SELECT completed"
    assert c.cmd("SELECT INBOX")[-1].startswith(b"t7 OK")
    assert c.cmd("SEARCH HEADER Subject a[b")[:-1] == [b"* SEARCH 1"]
    assert c.cmd("SEARCH SUBJECT a[b]")[:-1] == [b"* SEARCH 1"]
    # A well-formed name that is not valid modified UTF-7: no such mailbox, not a syntax error.
    assert c.cmd("SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}")[-1].startswith(b"t10 NO ")
    # ... and, failed, it left no mailbox selected (RFC 3501 6.3.1).
    assert c.cmd("FETCH 1 FLAGS")[-1].startswith(b"t11 BAD")
    # Fetch sections still hold spaces and parentheses; an open one is still refused.
    assert c.cmd("SELECT INBOX")[-1].startswith(b"t12 OK")
    got = c.cmd("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert got[0].endswith(b"Subject: crochets a[b]\r\n\r\n)")
    assert c.cmd("FETCH 1 (BODY.PEEK[HEADER)")[-1].startswith(b"t14 BAD")
    c.close()


QP_PART = (
    b"hello \t\r\n"  # trailing blanks are transport padding (RFC 2045 6.7 rule 3)
    b"bar\r\n"
    b"foo=09bar\r\n"
    b"foo=09 =09b\r\n"
    b"foo = \t\r\n"  # "=" then blanks: still a soft line break (rule 5)
    b"bar\r\n"
    b"foo b=\r\n"
    b"\r\n"
    b"foo\r\n"
    b"bar\r\n"
    b"foo_bar\r\n"
)
QP_DECODED = (b"hello\r\nbar\r\nfoo\tbar\r\nfoo\t \tb\r\nfoo bar\r\nfoo b\r\nfoo\r\nbar\r\n"
              b"foo_bar\r\n")


def test_binary_decodes_quoted_printable_as_rfc_2045_says(imap):
    message = (
        b"Subject: qp\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + QP_PART + b"\r\n--B--\r\n"  # the CRLF before "--B" belongs to the delimiter
    )
    imap.deliver(DOCTOR, message)
    client = imap.connect(DOCTOR, PASSWORD)
    client.select("INBOX")
    assert len(QP_DECODED) == 65
    _, data = client.fetch("1", "(BINARY.SIZE[1])")
    assert data == [b"1 (BINARY.SIZE[1] 65)"]
    _, data = client.fetch("1", "(BINARY.PEEK[1])")
    assert data[0][1] == QP_DECODED
    for start in (0, 10, 15, 20, 40):
        _, data = client.fetch("1", f"(BINARY.PEEK[1]<{start}.10>)")
        assert data[0][0].endswith(b"BINARY[1]<%d> {%d}" % (start, len(QP_DECODED[start:][:10])))
        assert data[0][1] == QP_DECODED[start : start + 10]
    client.logout()


def test_server_hangs_up_right_after_logout(imap):
    """After LOGOUT the server closes the TCP connection itself, without waiting for the
    client's TLS close_notify (asyncio's default wait was 30 s)."""
    context = imap.client_context()
    sock = socket.create_connection(("127.0.0.1", imap.tls_port), timeout=10)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")

    def pump() -> bool:
        """Send what TLS wants sent, read once from the socket; False at the server's FIN."""
        if outgoing.pending:
            sock.sendall(outgoing.read())
        data = sock.recv(65536)
        if not data:
            return False
        incoming.write(data)
        return True

    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            assert pump()
    sock.sendall(outgoing.read()) if outgoing.pending else None
    tls.write(b"a LOGOUT\r\n")
    sock.sendall(outgoing.read())
    received = b""
    # The socket's 10 s timeout fails the test if the server waits for us; we never close.
    while pump():
        try:
            while chunk := tls.read(65536):
                received += chunk
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            pass
    assert b"* BYE" in received and b"a OK LOGOUT completed" in received
    sock.close()


def test_list_reference_is_joined_to_the_pattern(imap):
    """RFC 3501 6.3.8: the reference and the pattern read as one name, as Dovecot reads them:
    LIST "INBOX" * gives INBOX and what is under it; LIST "A/" % gives A's children."""
    client = imap.connect(DOCTOR, PASSWORD)
    client.create("INBOX/Dossiers")
    client.create("Archives/2025")
    _, data = client.list('"INBOX"', "*")
    assert data == [b'(\\HasChildren) "/" "INBOX"', b'(\\HasNoChildren) "/" "INBOX/Dossiers"']
    _, data = client.list('"Archives/"', "%")
    assert data == [b'(\\HasNoChildren) "/" "Archives/2025"']
    _, data = client.list('"Arch"', "ives")
    assert data == [b'(\\HasChildren) "/" "Archives"']
    client.logout()


def test_curl_lists_the_mailbox_of_its_url(imap):
    curl = require_tool("curl")
    client = imap.connect(DOCTOR, PASSWORD)
    client.create("INBOX/Dossiers")
    client.logout()
    result = subprocess.run(
        [curl, "-sS", "--cacert", str(Layout.of(imap.config).chain), "--user",
         f"{DOCTOR}:{PASSWORD}", "--url", f"imaps://localhost:{imap.tls_port}/INBOX"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        '* LIST (\\HasChildren) "/" "INBOX"', '* LIST (\\HasNoChildren) "/" "INBOX/Dossiers"']
