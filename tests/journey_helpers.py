"""A demo gateway (`mssgw init --demo`, drug reference imported) with its real SMTP and IMAP
listeners on 127.0.0.1, and the clients each person of the journey uses."""

from __future__ import annotations

import imaplib
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from gateway.config import Config
from tests.imap_helpers import RunningServer, running_server
from tests.smtp_helpers import (
    DOCTOR,
    PASSWORD,
    PATIENT,
    PHARMACIST,
    PHARMACY,
    PRACTICE,
    ROBOT,
    SMTP_TEST_SETTINGS,
    ServerThread,
    submission,
)

ALL = (DOCTOR, PRACTICE, PHARMACY, PHARMACIST, PATIENT, ROBOT)


def make_home(template: Path, target: Path, shared: Path, dsn: str | None = None,
              smtp: dict[str, str] | None = None, extra: str = "") -> Path:
    """A copy of the session's initialised home, with the demo population (passwords known),
    their certificates, the BDPM drug reference and SMTP on ephemeral ports; on the PostgreSQL
    backend when `dsn` names a database (`mssgw init` then makes its schema). `smtp`: more
    [smtp] settings (TOML values); `extra`: more sections."""
    from gateway.cli import main
    from gateway.config import load_config
    from gateway.db import connect
    from gateway.directory import open_directory
    from gateway.drugs.store import import_directory

    shutil.copytree(template, target, symlinks=True)
    cfg = target / "config.toml"
    cfg.write_text(cfg.read_text() + "\n[smtp]\n"
                   + "".join(f"{k} = {v}\n"
                             for k, v in {**SMTP_TEST_SETTINGS, **(smtp or {})}.items())
                   + extra
                   + (f'[storage]\nbackend = "postgresql"\ndsn = "{dsn}"\n' if dsn else ""))
    assert main(["init", "--demo", "--config", str(cfg)]) == 0
    config = load_config(cfg)
    directory = open_directory(config, actor="test")
    for address in ALL:
        directory.set_password(address, PASSWORD)
    conn = connect(config.database_path)
    import_directory(conn, shared / "bdpm")
    conn.close()
    return target


@dataclass
class Gateway:
    config: Config
    smtp: ServerThread
    imap: RunningServer

    def send(self, login: str, msg: EmailMessage | bytes, to: list[str] | None = None) -> None:
        with submission(self.config, self.smtp.ports["submission"], login=login) as client:
            if isinstance(msg, bytes):
                client.sendmail(login, to or [], msg)
            else:
                client.send_message(msg)

    def fetch_all(self, user: str) -> list[EmailMessage]:
        client = self.imap.connect(user, PASSWORD)
        try:
            client.select("INBOX")
            typ, data = client.uid("SEARCH", "ALL")
            out: list[EmailMessage] = []
            for uid in data[0].split():
                typ, got = client.uid("FETCH", uid, "(BODY.PEEK[])")
                raw = next(item[1] for item in got if isinstance(item, tuple))
                out.append(message_from_bytes(raw, policy=policy.default))  # type: ignore[arg-type]
            return out
        finally:
            client.logout()

    def wait_for(self, user: str, count: int, timeout: float = 20) -> list[EmailMessage]:
        """The user's messages once there are `count` (delivery is synchronous: usually now)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.fetch_all(user)
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.1)


@contextmanager
def running(home: Path) -> Iterator[Gateway]:
    from tests.imap_helpers import test_config

    config = test_config(home)
    with ServerThread(config) as smtp, running_server(home) as imap:
        yield Gateway(config, smtp, imap)


def attachment(msg: EmailMessage, suffix: str) -> bytes:
    for part in msg.iter_attachments():
        if (part.get_filename() or "").endswith(suffix):
            data = part.get_payload(decode=True)
            assert isinstance(data, bytes)
            return data
    raise AssertionError(f"no {suffix} attachment in {msg['Subject']}")


def text_of(msg: EmailMessage) -> str:
    body = msg.get_body(("plain",))
    return body.get_content() if body is not None else ""  # type: ignore[union-attr]


def form_message(sender: str, to: str, body: str, subject: str = "Ordonnance",
                 **headers: str) -> EmailMessage:
    from tests.smtp_helpers import message

    return message(sender, to, subject=subject, body=body, **headers)


__all__ = ["DOCTOR", "PATIENT", "PHARMACIST", "PHARMACY", "ROBOT", "imaplib"]
