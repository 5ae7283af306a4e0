"""The IMAP connection loop (gateway/imap/server.py) over real TLS: pipelined commands and the
inactivity limit."""

from __future__ import annotations

import socket
import ssl

import pytest
from imap_helpers import RunningServer, running_server
from imap_helpers import test_config as server_config  # (not collected as a test)
from smtp_helpers import DOCTOR as DOC
from smtp_helpers import PASSWORD, setup_gateway

from gateway.imap import server as imap_server
from gateway.imap import service


def tls_socket(server: RunningServer) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", server.tls_port), timeout=10)
    return server.client_context().wrap_socket(sock, server_hostname="127.0.0.1")


def read_until(sock: ssl.SSLSocket, end: bytes) -> bytes:
    data = b""
    while end not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_pipelined_commands_are_all_answered_in_order(imap):
    sock = tls_socket(imap)
    read_until(sock, b"\r\n")  # greeting
    sock.sendall(
        f'a1 LOGIN {DOC} "{PASSWORD}"\r\na2 SELECT INBOX\r\na3 NOOP\r\na4 CAPABILITY\r\n'
        "a5 FETCH 1:* (FLAGS)\r\na6 LOGOUT\r\n".encode()
    )
    data = read_until(sock, b"a6 OK")
    tags = [line.split()[0] for line in data.split(b"\r\n") if line[:1] == b"a"]
    assert tags == [b"a1", b"a2", b"a3", b"a4", b"a5", b"a6"]
    assert b"a2 OK [READ-WRITE]" in data and b"* BYE" in data
    sock.close()


def test_silent_client_is_logged_out(imap, monkeypatch):
    monkeypatch.setattr(imap_server, "PREAUTH_TIMEOUT", 0.5)
    sock = tls_socket(imap)
    assert read_until(sock, b"\r\n").startswith(b"* OK")
    # Active clients are not cut off: each command moves the limit on.
    for i in range(4):
        sock.settimeout(0.25)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        sock.settimeout(10)
        sock.sendall(b"n%d NOOP\r\n" % i)
        assert b"n%d OK" % i in read_until(sock, b"n%d OK" % i)
    # A silent one gets a BYE, then the connection ends.
    data = read_until(sock, b"idle for too long\r\n")
    assert data.startswith(b"* BYE autologout")
    assert sock.recv(1) == b""
    sock.close()


def _tls_session(port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None = None):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = ctx.wrap_socket(sock, server_hostname="127.0.0.1", session=session)
    read_until(tls, b"\r\n")  # the greeting: the session tickets came before it
    reused, session = tls.session_reused, tls.session
    tls.close()
    return reused, session


def test_tls_sessions_resume_on_every_worker(gateway_home):
    """`mssgw serve` prepares the TLS context before forking: a session one worker started
    resumes on another (here two listeners stand for two workers)."""
    from gateway.runtime import Runtime

    setup_gateway(gateway_home)
    with running_server(gateway_home) as a, running_server(gateway_home) as b:
        ctx = a.client_context()
        _, session = _tls_session(a.tls_port, ctx)
        assert _tls_session(a.tls_port, ctx, session)[0]  # same worker: resumed
        assert not _tls_session(b.tls_port, ctx, session)[0]  # its own ticket key: refused

    supervisor = Runtime(server_config(gateway_home))
    service.prepare(supervisor)
    with running_server(gateway_home, parent=supervisor) as a, \
            running_server(gateway_home, parent=supervisor) as b:
        ctx = a.client_context()
        _, session = _tls_session(a.tls_port, ctx)
        assert _tls_session(b.tls_port, ctx, session)[0]


def test_tls_connections_share_one_read_buffer(imap):
    """Every TLS connection of a worker reads into the event loop's one buffer (an idle
    connection costs 32 KiB less), implicit TLS and STARTTLS alike, and what several clients
    send at once still arrives intact, each to its own session."""
    import asyncio
    import imaplib
    from concurrent.futures import ThreadPoolExecutor

    clients = [imap.connect(DOC, PASSWORD) for _ in range(3)]
    plain = imaplib.IMAP4("127.0.0.1", imap.starttls_port, timeout=15)
    plain.starttls(ssl_context=imap.client_context())
    plain.login(DOC, PASSWORD)
    clients.append(plain)

    async def buffers() -> set[int]:
        return {id(t.get_coro().cr_frame.f_locals["conn"].writer.transport._ssl_protocol
                   ._ssl_buffer) for t in imap_server._live}

    assert len(asyncio.run_coroutine_threadsafe(buffers(), imap.loop).result(10)) == 1

    def round_trip(i: int) -> bytes:
        client = clients[i]
        body = (f"line {i} " * 20 + "\r\n").encode() * 600  # ~100 KB: several TLS records
        data = f"Subject: {i}\r\n\r\n".encode() + body
        typ, resp = client.append("INBOX", None, None, data)
        assert typ == "OK", resp
        uid = resp[0].split(b"]")[0].split()[-1].decode()  # [APPENDUID validity uid]
        client.select("INBOX")
        typ, fetched = client.uid("FETCH", uid, "(BODY.PEEK[])")
        return fetched[0][1] == data

    with ThreadPoolExecutor(len(clients)) as pool:
        assert all(pool.map(round_trip, range(len(clients))))
    for client in clients:
        client.logout()
