"""`mssgw serve` at its limits, through its real listeners: a failed TLS handshake on an
implicit-TLS port (SMTP submission-tls, IMAP tls, HTTPS) is one log line naming the peer, the
port and the reason, like a failed STARTTLS; the soft open-file limit is raised to the hard one
at start; a worker out of file descriptors logs one line, pauses accepting and serves again
once descriptors are free."""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from smtp_helpers import DOCTOR, PASSWORD, PHARMACIST, client_context, message, setup_gateway

from gateway.config import Config

START_SOFT_LIMIT = 256  # the gateway is started with this soft RLIMIT_NOFILE


class Served:
    """A running `mssgw serve` (one worker) whose stderr is collected line by line."""

    def __init__(self, config: Config, proc: subprocess.Popen[bytes]) -> None:
        self.config = config
        self.proc = proc
        self.ports: dict[str, int] = {}
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            m = re.search(r"listening: (.+?) on 127\.0\.0\.1:(\d+)", line)
            if m:
                self.ports[m.group(1)] = int(m.group(2))
            if "worker process(es) ready" in line:
                self.ready.set()

    def worker(self) -> int:
        [pid] = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return int(pid)

    def wait_lines(self, pattern: str, count: int, timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = [x for x in self.lines if re.search(pattern, x)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def _lower_soft_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (START_SOFT_LIMIT, hard))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _gateway_template: Path) -> Iterator[Served]:
    import shutil

    home = tmp_path_factory.mktemp("limits") / "gw"
    shutil.copytree(_gateway_template, home, symlinks=True)
    config = setup_gateway(home)
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] <= START_SOFT_LIMIT:
        pytest.skip("the hard open-file limit is too low to see it raised")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(home / "config.toml")],
        stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_lower_soft_limit,
    )
    s = Served(config, proc)
    try:
        assert s.ready.wait(60), "\n".join(s.lines)
        yield s
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        s.reader.join(10)
    text = "\n".join(s.lines)
    assert "Traceback" not in text, text


def test_open_file_limit_raised_to_the_hard_limit_at_start(served: Served) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    for pid in (served.proc.pid, served.worker()):
        limits = Path(f"/proc/{pid}/limits").read_text()
        [row] = [x for x in limits.splitlines() if x.startswith("Max open files")]
        soft_now, hard_now = row.split()[3:5]
        assert (soft_now, hard_now) == (str(hard), str(hard)), row
    assert served.wait_lines(f"open-file limit raised from {START_SOFT_LIMIT} to {hard}", 1)


def _handshake_then_close(port: int, payload: bytes) -> int:
    """Connect, send `payload` instead of a ClientHello (nothing: close at once); the client's
    own port once the server has closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        client = s.getsockname()[1]
        if not payload:
            return client
        s.sendall(payload)
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline and s.recv(1000):
                pass
        except ConnectionResetError:
            pass
        return client


@pytest.mark.parametrize("listener", ["smtp submission-tls", "imap tls", "https"])
def test_failed_handshake_on_an_implicit_tls_port_is_one_line(served: Served, listener: str):
    port = served.ports[listener]
    tries = {
        _handshake_then_close(port, b"GET / HTTP/1.0\r\n\r\n"): "HTTP_REQUEST",
        _handshake_then_close(port, b"EHLO plain.example\r\n"): "WRONG_VERSION_NUMBER",
        _handshake_then_close(port, b""): "connection-closed",
    }
    # And one client that does not trust our certificate: it aborts with an alert.
    untrusting = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        client = raw.getsockname()[1]
        with pytest.raises(ssl.SSLCertVerificationError):
            untrusting.wrap_socket(raw, server_hostname="mx.test.localhost")
    tries[client] = "TLSV1_ALERT_UNKNOWN_CA"
    for client, reason in tries.items():
        [line] = served.wait_lines(rf"TLS handshake failed peer=127\.0\.0\.1:{client} ", 1)
        assert line.endswith(f"TLS handshake failed peer=127.0.0.1:{client} port={port} "
                             f"reason={reason}"), line
    # ... and the listener still serves a client that speaks TLS.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            client_context(served.config).wrap_socket(raw, server_hostname="mx.test.localhost"):
        pass


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_out_of_file_descriptors_is_one_line_and_the_gateway_recovers(served: Served) -> None:
    import imaplib
    import smtplib

    port = served.ports["smtp submission"]
    worker = served.worker()
    # Sessions that began before: they will need descriptors (a mailbox index, a message file).
    imap = imaplib.IMAP4_SSL("127.0.0.1", served.ports["imap tls"], timeout=30,
                             ssl_context=client_context(served.config))
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=30)
    smtp.starttls(context=client_context(served.config))
    smtp.login(DOCTOR, PASSWORD)
    before = resource.prlimit(worker, resource.RLIMIT_NOFILE)
    # The worker may open 8 more descriptors (a connection takes one, its session some more
    # when it logs in): 40 clients run it out.
    resource.prlimit(worker, resource.RLIMIT_NOFILE, (_fds(worker) + 8, before[1]))
    clients: list[socket.socket] = []
    try:
        for _ in range(40):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        # The kernel queues what the worker cannot accept; it pauses a second and tries again,
        # for as long as it lacks descriptors. One line says so (at most one per 10 seconds).
        lines = served.wait_lines(rf"cannot accept connections port={port} reason=EMFILE", 1)
        assert lines, "\n".join(served.lines[-20:])
        time.sleep(2.5)  # two more pauses: no more lines for them
        assert len(served.wait_lines("cannot accept connections", 1, timeout=0)) == 1
        # The sessions in progress get a temporary failure, and the log one line each.
        with pytest.raises(imaplib.IMAP4.error, match=r"\[UNAVAILABLE\].*try again later"):
            imap.login(DOCTOR, PASSWORD)
        assert smtp.mail(DOCTOR)[0] == 250
        code, text = smtp.rcpt(PHARMACIST)  # its mailbox's usage: a directory to read
        assert (code, text) == (451, b"4.3.0 the server is short of resources, try again later")
        smtp.rset()
        assert served.wait_lines("IMAP LOGIN failed for .*: .*unable to open database file", 1)
        assert served.wait_lines(r"session error peer=.* OSError: \[Errno 24\]", 1)
    finally:
        for c in clients:
            c.close()
        resource.prlimit(worker, resource.RLIMIT_NOFILE, before)
    # Descriptors free again: the worker serves (submission and IMAP), the sessions that
    # were refused included.
    imap.login(DOCTOR, PASSWORD)
    imap.logout()
    smtp.send_message(message(DOCTOR, PHARMACIST))
    smtp.quit()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        c.starttls(context=client_context(served.config))
        c.login(DOCTOR, PASSWORD)
        assert c.noop()[0] == 250
    imap = imaplib.IMAP4_SSL("127.0.0.1", served.ports["imap tls"], timeout=30,
                             ssl_context=client_context(served.config))
    imap.login(DOCTOR, PASSWORD)
    imap.logout()
    assert served.proc.poll() is None
    assert worker == served.worker()  # the same worker: it did not die of it


_CLOSED_WHILE_PAUSED = """
import asyncio, os, resource, socket, sys, time
from gateway.server.loop import WorkerLoop

async def start():
    async def handle(reader, writer):
        await asyncio.sleep(30)
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    open_now = len(os.listdir("/proc/self/fd"))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_now + 3, hard))
    return server

loop = WorkerLoop()
server = loop.run_until_complete(start())
port = server.sockets[0].getsockname()[1]
if os.fork() == 0:  # the clients, in a process of their own with descriptors to spare
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
    time.sleep(5)
    os._exit(0)
loop.run_until_complete(asyncio.sleep(1.5))  # out of descriptors: accept() paused
server.close()  # the worker stops meanwhile
loop.run_until_complete(asyncio.sleep(2.5))  # asyncio's retry timers fire
print("stopped", flush=True)
"""


def test_a_listener_closed_while_out_of_descriptors_stops_quietly(tmp_path: Path) -> None:
    """asyncio leaves a timer per failed accept() that resumes the listener; once the worker
    closed it, each used to log a traceback (ValueError: Invalid file descriptor: -1)."""
    script = tmp_path / "paused.py"
    script.write_text("import logging; logging.basicConfig(level=logging.INFO)\n"
                      + _CLOSED_WHILE_PAUSED)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "stopped" in r.stdout, r.stderr
    assert "cannot accept connections" in r.stderr and "reason=EMFILE" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "Invalid file descriptor" not in r.stderr, r.stderr
