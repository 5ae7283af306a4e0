"""The SMTP wire beyond smtplib's habits: DATA content read in blocks (gateway.smtp.dotdata), the
same message as aiosmtpd's line-by-line loop whatever the block boundaries, and over a real TLS
session byte for byte; PIPELINING (RFC 2920) with grouped replies."""

from __future__ import annotations

import base64
import socket
import ssl
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smtp_helpers import (
    DOCTOR,
    PASSWORD,
    PHARMACIST,
    PHARMACY,
    ServerThread,
    client_context,
    inbox,
    setup_gateway,
)

from gateway.smtp.dotdata import TOO_LONG, TOO_MUCH, DotData

LINE_LIMIT = 1001


def reference(stream: bytes, size_limit: int | None) -> tuple[bytes, str | None, bytes]:
    """aiosmtpd 1.4's loop, line by line: (content, error, what is left after the end)."""
    lines: list[bytes] = []
    size = 0
    state = None
    pos = 0
    while True:
        end = stream.index(b"\r\n", pos) + 2
        line = stream[pos:end]
        pos = end
        if line == b".\r\n":
            break
        size += len(line)
        if state is None and size_limit and size > size_limit:
            state = TOO_MUCH
        if state is None and len(line) > LINE_LIMIT:
            state = TOO_LONG
        lines.append(line[1:] if line.startswith(b".") else line)
    if state is not None:
        return b"", state, stream[pos:]
    return b"".join(lines), None, stream[pos:]


def parse(stream: bytes, cuts: list[int], size_limit: int | None) -> tuple[bytes, str | None,
                                                                             bytes]:
    """Feed `stream` as a connection would deliver it, cut at `cuts`."""
    parser = DotData(size_limit, LINE_LIMIT)
    buf = bytearray()
    pos = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        buf += stream[pos:cut]
        pos = max(pos, cut)
        n = parser.feed(buf)
        del buf[:n]
        if parser.done:
            break
    assert parser.done
    content, error = parser.result()
    return content, error, bytes(buf) + stream[pos:]


PIECES = [b".", b"..", b"a", b"Lorem.", b" ", b"\r", b"\n", b"x" * 300, b"\r\n", b"\r\n.",
          b"\r\n..\r\n"]


@settings(max_examples=300, deadline=None)
@given(
    body=st.lists(st.sampled_from(PIECES), max_size=30).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=6),
    size_limit=st.sampled_from([None, 50, 2000]),
)
def test_same_result_as_line_by_line(body, cuts, size_limit):
    body = body if body.endswith(b"\r\n") or not body else body + b"\r\n"
    stream = body + b".\r\nQUIT\r\n"  # a pipelined command stays for the command loop
    assert parse(stream, cuts, size_limit) == reference(stream, size_limit)


def test_empty_message_and_long_line():
    assert parse(b".\r\nQUIT\r\n", [1, 2], None) == (b"", None, b"QUIT\r\n")
    assert parse(b"\r\n.\r\n", [], None) == (b"\r\n", None, b"")
    long = b"x" * 999 + b"\r\n"
    assert parse(long + b".\r\n", [], None) == (long, None, b"")
    assert parse(b"x" + long + b".\r\n", [500], None) == (b"", TOO_LONG, b"")


@pytest.fixture
def gw(gateway_home):
    config = setup_gateway(gateway_home, "rate_limit_account = 0\nrate_limit_client = 0\n")
    with ServerThread(config) as server:
        yield config, server


def _session(config, port: int) -> tuple[ssl.SSLSocket, object]:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"220")
    raw.sendall(b"EHLO client.test\r\nSTARTTLS\r\n")
    while not f.readline().startswith(b"220 "):
        pass
    tls = client_context(config).wrap_socket(raw, server_hostname="mx.test.localhost")
    return tls, tls.makefile("rb")


def _reply(f) -> bytes:
    while True:
        line = f.readline()
        if line[3:4] != b"-":
            return line


def test_stuffed_message_sent_in_small_pieces_is_stored_exactly(gw):
    """A client whose TLS records cut the content anywhere (here: 7 bytes at a time, so the
    end marker and stuffed dots straddle records) gets its message stored byte for byte."""
    config, server = gw
    body = (f"From: <{DOCTOR}>\r\nTo: <{PHARMACIST}>\r\nSubject: dots\r\n\r\n"
            ".\r\n..\r\n.leading dot\r\nends with a dot.\r\n\r\n").encode()
    stuffed = b"".join(b"." + line if line.startswith(b".") else line
                       for line in body.splitlines(keepends=True))
    tls, f = _session(config, server.ports["submission"])
    with tls:
        _login(tls, f)
        for cmd, code in ((f"MAIL FROM:<{DOCTOR}>", b"250"), (f"RCPT TO:<{PHARMACIST}>", b"250"),
                          ("DATA", b"354")):
            tls.sendall(cmd.encode() + b"\r\n")
            assert _reply(f).startswith(code)
        stream = stuffed + b".\r\nNOOP\r\n"
        for i in range(0, len(stream), 7):
            tls.sendall(stream[i : i + 7])
        assert _reply(f).startswith(b"250 ")
        assert _reply(f).startswith(b"250 ")  # the NOOP sent right after the end marker
    [stored] = inbox(config, PHARMACIST)
    assert stored.data.split(b"\r\n\r\n", 1)[1] == body.split(b"\r\n\r\n", 1)[1]


def _login(tls, f) -> bytes:
    tls.sendall(b"EHLO client.test\r\n")
    ehlo = b""
    while True:
        line = f.readline()
        ehlo += line
        if line[3:4] != b"-":
            break
    auth = base64.b64encode(f"\0{DOCTOR}\0{PASSWORD}".encode())
    tls.sendall(b"AUTH PLAIN " + auth + b"\r\n")
    assert _reply(f).startswith(b"235")
    return ehlo


def test_pipelined_group_gets_its_replies_in_order_and_together(gw):
    config, server = gw
    tls, _ = _session(config, server.ports["submission"])
    with tls:
        f = tls.makefile("rb", buffering=0)
        assert b"250-PIPELINING" in _login(tls, f)
        group = (f"MAIL FROM:<{DOCTOR}>\r\nRCPT TO:<{PHARMACIST}>\r\n"
                 f"RCPT TO:<nobody@test.localhost>\r\nRCPT TO:<{PHARMACY}>\r\nDATA\r\n")
        tls.sendall(group.encode())
        # One TLS record holds the five replies: recv() returns a single record at most.
        replies = tls.recv(65536).split(b"\r\n")
        assert [r[:3] for r in replies[:5]] == [b"250", b"250", b"550", b"250", b"354"]
        tls.sendall(f"From: <{DOCTOR}>\r\nSubject: grouped\r\n\r\nbody\r\n.\r\n".encode())
        assert tls.recv(65536).startswith(b"250 ")
        # A group whose only recipient is refused: DATA is refused too, nothing is stored.
        tls.sendall(f"MAIL FROM:<{DOCTOR}>\r\nRCPT TO:<nobody@test.localhost>\r\nDATA\r\n"
                    .encode())
        replies = b""
        while replies.count(b"\r\n") < 3:
            replies += tls.recv(65536)
        assert [r[:3] for r in replies.split(b"\r\n")[:3]] == [b"250", b"550", b"503"]
    assert len(inbox(config, PHARMACIST)) == 1 and len(inbox(config, PHARMACY)) == 1


def test_idle_session_is_closed_and_activity_moves_the_deadline(gateway_home):
    """`[smtp] timeout`: a session that keeps talking stays open past it; a silent one is
    closed once it has been idle that long."""
    config = setup_gateway(gateway_home, timeout="2")
    with ServerThread(config) as server, socket.create_connection(
        ("127.0.0.1", server.ports["submission"]), timeout=30
    ) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"220")
        started = time.monotonic()
        while time.monotonic() - started < 3:  # longer than the timeout, never 2 s idle
            time.sleep(0.2)
            s.sendall(b"NOOP\r\n")
            assert f.readline().startswith(b"250")  # still open: activity moved the deadline
        # silent now: the server closes the session (the socket's 30 s only bounds a hang)
        assert f.readline() == b""
