"""Helpers for the SMTP tests: a gateway with the demo population, its listeners in a thread,
and smtplib clients over real TLS on 127.0.0.1."""

from __future__ import annotations

import asyncio
import shutil
import smtplib
import sqlite3
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from gateway.config import Config, load_config
from gateway.pki.files import Layout
from gateway.pki.kinds import CA
from gateway.server.loop import WorkerLoop

PASSWORD = "correct horse battery staple"
DOMAIN = "test.localhost"
DOCTOR = f"dr.martin@{DOMAIN}"
PRACTICE = f"cabinet.martin@{DOMAIN}"
PHARMACY = f"pharmacie.centrale@{DOMAIN}"
PHARMACIST = f"ph.durand@{DOMAIN}"
PATIENT = f"279035121518989@patient.{DOMAIN}"
ROBOT = f"ordonnances@{DOMAIN}"

SMTP_TEST_SETTINGS = {
    "submission": '"127.0.0.1:0"',
    "submission_tls": '"127.0.0.1:0"',
    "relay": '"127.0.0.1:0"',
    "queue_retry_initial": "1",
    "queue_retry_max": "2",
    "queue_lifetime": "3",
    "queue_scan_interval": "1",
}


def setup_gateway(home: Path, extra: str = "", **settings: str) -> Config:
    """The test gateway's config with SMTP on ephemeral ports and the demo population.
    `settings` override [smtp] values (TOML text); `extra` is appended to [smtp]."""
    from gateway.directory import open_directory
    from gateway.directory.demo import register
    from gateway.runtime import Runtime

    cfg = home / "config.toml"
    values = {**SMTP_TEST_SETTINGS, **settings}
    section = "\n[smtp]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + extra
    cfg.write_text(cfg.read_text() + section)
    config = load_config(cfg)
    db = config.database_path
    # One populated database per test session, kept in the session's base temporary folder.
    cached = home.parent.parent / "smtp-populated.db"
    if not cached.exists():
        runtime = Runtime(config, actor="test")
        register(runtime)
        runtime.close()
        directory = open_directory(config, actor="test")
        for address in (DOCTOR, PRACTICE, PHARMACY, PHARMACIST, PATIENT, ROBOT):
            directory.set_password(address, PASSWORD)
        # scrypt makes this slow: later tests start from a copy of the populated database.
        src, dst = sqlite3.connect(db), sqlite3.connect(cached)
        src.backup(dst)
        src.close()
        dst.close()
    else:
        for suffix in ("-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(cached, db)
    return config


_POOL: list[object] = []


def shared_pool() -> object:
    """One pipeline pool for every gateway the tests start in this process (its processes keep
    a flow context per configuration): spawning and importing per test would cost seconds."""
    if not _POOL:
        from gateway.pipeline import new_pool

        _POOL.append(new_pool(0))  # shut down at exit (ProcessPool registers it)
    return _POOL[0]


class ServerThread:
    """The SMTP listeners (and, if asked, the queue runner) in an event loop in a thread."""

    def __init__(self, config: Config, *, runner: bool = False, imap: bool = False,
                 parent: Any = None) -> None:
        """`parent`: the supervisor's root the server's continues, as a worker's would."""
        self.config = config
        self.parent = parent
        self.runner = runner
        self.imap = imap
        # The event loop a `mssgw serve` worker runs (its TLS handshakes, its accept errors).
        self.loop = WorkerLoop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.ports: dict[str, int] = {}

    def __enter__(self) -> ServerThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(60)
        return self

    async def _start(self) -> None:
        from gateway.runtime import Runtime
        from gateway.smtp import outbound, service

        # The test's root, as a worker's: the SMTP gateway, its pipeline and pool, the stores.
        self.runtime = self.parent.in_child() if self.parent else Runtime(self.config)
        self.runtime.pipeline.share_pool(shared_pool())  # type: ignore[arg-type]
        self.gw = self.runtime.smtp
        self.servers = await service.start(self.runtime)
        if self.imap:
            from gateway.imap import service as imap_service

            self.servers += await imap_service.start(self.runtime)
        for s in self.servers:
            name = s.mssgw_name.removeprefix("smtp ")
            self.ports[name] = s.sockets[0].getsockname()[1]
        self.task = await outbound.start(self.runtime) if self.runner else None

    async def _stop(self) -> None:
        for s in self.servers:
            s.close()
        if self.task:
            self.task.cancel()
        await asyncio.sleep(0)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.runtime.close()


def client_context(config: Config, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """What a mail client does: trust our root CA, check the host name; optionally present a
    client certificate."""
    ctx = ssl.create_default_context(cafile=str(Layout.of(config).ca_cert(CA.ROOT)))
    ctx.check_hostname = False  # we connect to 127.0.0.1; the certificate names the host
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


@contextmanager
def submission(
    config: Config, port: int, *, login: str | None = DOCTOR, implicit: bool = False,
    password: str = PASSWORD,
) -> Iterator[smtplib.SMTP]:
    ctx = client_context(config)
    client: smtplib.SMTP
    if implicit:
        client = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=30)
    else:
        client = smtplib.SMTP("127.0.0.1", port, timeout=30)
        client.starttls(context=ctx)
    try:
        client.ehlo("client.test")
        if login:
            client.login(login, password)
        yield client
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


def message(sender: str, to: str, subject: str = "hello", body: str = "Bonjour.\n", **headers: str
            ) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="client.test")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


@dataclass
class Stored:
    path: Path
    data: bytes


def inbox(config: Config, address: str) -> list[Stored]:
    from gateway.store.maildir import mailbox_path

    new = mailbox_path(config.mailboxes_path, address) / "new"
    if not new.is_dir():
        return []
    return [Stored(p, p.read_bytes()) for p in sorted(new.iterdir())]


class FakePeer:
    """Another operator's MX: aiosmtpd on 127.0.0.1 with STARTTLS and its own certificate.
    `reply` is what it answers at DATA (None: accept and keep the message)."""

    def __init__(self, tls: ssl.SSLContext, reply: str | None = None,
                 rcpt_reply: str | None = None) -> None:
        self.tls = tls
        self.reply = reply
        self.rcpt_reply = rcpt_reply
        self.received: list[tuple[str, list[str], bytes]] = []
        self.attempts = 0
        self.peer_certs: list[bytes | None] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: ANN001
        self.attempts += 1
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        obj = session.ssl and session.ssl.get("ssl_object")
        self.peer_certs.append(obj.getpeercert(binary_form=True) if obj else None)
        if self.reply:
            return self.reply
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos),
                              envelope.original_content))
        return "250 OK"

    async def _start(self) -> int:
        from aiosmtpd.smtp import SMTP

        self.server = await self.loop.create_server(
            lambda: SMTP(self, tls_context=self.tls, require_starttls=True,
                         hostname="mx.peer.localhost"),
            "127.0.0.1", 0,
        )
        return int(self.server.sockets[0].getsockname()[1])

    def __enter__(self) -> FakePeer:
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
