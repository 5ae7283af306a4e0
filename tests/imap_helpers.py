"""An IMAP server on 127.0.0.1 (ephemeral ports, its own thread and event loop) for the tests.

The server is the real one (`gateway.imap.service.start`) with TLS from the gateway's own CA;
it runs in a thread so that blocking clients (imaplib, mbsync via subprocess) and asyncio
clients (aioimaplib) can both talk to it. It is always stopped when the test ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import imaplib
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import Config, load_config
from gateway.imap.server import close_all
from gateway.imap.service import start
from gateway.imap.session import Hooks
from gateway.pki.tls import client_context
from gateway.runtime import Runtime
from gateway.server.loop import WorkerLoop
from gateway.store.maildir import deliver, mailbox_path


@dataclass
class RunningServer:
    config: Config
    hooks: Hooks
    starttls_port: int
    tls_port: int
    loop: asyncio.AbstractEventLoop
    audit: list[tuple[str, str, str, dict[str, object]]] = field(default_factory=list)

    def client_context(self) -> ssl.SSLContext:
        return client_context(self.config, present_certificate=False)

    def connect(self, user: str | None = None, password: str | None = None) -> imaplib.IMAP4_SSL:
        """imaplib over implicit TLS, logged in when `user` is given."""
        client = imaplib.IMAP4_SSL("127.0.0.1", self.tls_port, ssl_context=self.client_context(),
                                   timeout=15)
        if user is not None:
            client.login(user, password or "")
        return client

    def inbox(self, address: str) -> Path:
        return mailbox_path(self.config.mailboxes_path, address)

    def deliver(self, address: str, data: bytes, folder: str = "") -> Path:
        root = self.inbox(address)
        return deliver(root / folder if folder else root, data)


def test_config(home: Path) -> Config:
    config = load_config(home / "config.toml")
    return dataclasses.replace(
        config, imap=dataclasses.replace(config.imap, starttls="127.0.0.1:0", tls="127.0.0.1:0")
    )


@contextmanager
def running_server(home: Path, hooks: Hooks | None = None, parent: Runtime | None = None
                   ) -> Iterator[RunningServer]:
    """`parent`: the supervisor's root this server's continues, as a forked worker's would."""
    config = test_config(home)
    # The test's root, as a worker's.
    runtime = parent.in_child() if parent is not None else Runtime(config)
    config = runtime.config
    loop = WorkerLoop()  # a `mssgw serve` worker's event loop
    ready = threading.Event()
    state: dict[str, object] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            h = hooks or runtime.imap_hooks
            servers = await start(runtime, reuse_port=False, hooks=h)
            state["hooks"] = h
            state["servers"] = servers
            ready.set()

        try:
            loop.run_until_complete(boot())
        except BaseException as exc:  # surfaced to the test below
            state["error"] = exc
            ready.set()
            return
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in state:
        raise state["error"]  # type: ignore[misc]
    servers: list[asyncio.Server] = state["servers"]  # type: ignore[assignment]
    h: Hooks = state["hooks"]  # type: ignore[assignment]
    recorded: list[tuple[str, str, str, dict[str, object]]] = []
    original = h.audit

    def audit(actor: str, action: str, target: str, details: dict[str, object]) -> None:
        recorded.append((actor, action, target, details))
        original(actor, action, target, details)

    h.audit = audit
    server = RunningServer(
        config,
        h,
        servers[0].sockets[0].getsockname()[1],
        servers[1].sockets[0].getsockname()[1],
        loop,
        recorded,
    )
    try:
        yield server
    finally:

        async def stop() -> None:
            for s in servers:
                s.close()
            await close_all()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if hooks is not None:
            h.pool.close()
        runtime.close()
        loop.close()


def message(subject: str = "Hello", body: str = "Bonjour.\r\n", sender: str = "a@b.example",
            to: str = "c@d.example", extra: str = "") -> bytes:
    return (
        f"From: Alice <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <{subject.replace(' ', '')}@b>\r\n"
        f"{extra}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


class Raw:
    """A line-level client for exact protocol checks."""

    def __init__(self, server: RunningServer, *, implicit: bool = True) -> None:
        port = server.tls_port if implicit else server.starttls_port
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.server = server
        self.sock: socket.socket = (
            server.client_context().wrap_socket(sock, server_hostname="127.0.0.1")
            if implicit
            else sock
        )
        self.buf = b""
        self.n = 0
        self.greeting = self.line()

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def starttls(self) -> None:
        assert self.cmd("STARTTLS")[-1].startswith(b"t")
        self.sock = self.server.client_context().wrap_socket(
            self.sock, server_hostname="127.0.0.1"
        )

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, text: str | bytes) -> list[bytes]:
        """Send one command; return every line up to and including the tagged one."""
        self.n += 1
        tag = f"t{self.n}".encode()
        raw = text.encode() if isinstance(text, str) else text
        self.send(tag + b" " + raw + b"\r\n")
        return self.until(tag)

    def response(self) -> bytes:
        """One response: its line with the literals it carries (`{n}`, CRLF, the n octets)."""
        line = self.line()
        while m := re.search(rb"\{(\d+)\}$", line):
            size = int(m.group(1))
            while len(self.buf) < size:
                self.buf += self.sock.recv(65536)
            line += b"\r\n" + self.buf[:size]
            self.buf = self.buf[size:]
            line += self.line()
        return line

    def until(self, tag: bytes) -> list[bytes]:
        out = []
        while True:
            line = self.response()
            out.append(line)
            if line.startswith(tag + b" "):
                return out

    def close(self) -> None:
        self.sock.close()
