"""A gateway with the demo population and administrators, for the API and console tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.admins import open_accounts
from gateway.admins.model import Caller
from gateway.config import Config, load_config

PASSWORD = "correct horse battery"
DOMAIN = "test.localhost"
RPPS_OK = "10003829917"  # Luhn-valid
RPPS_BAD_KEY = "10003829916"  # its check digit is wrong


@dataclass
class Admins:
    config: Config
    totp_secret: str  # alice's, administrator
    admin_token: str  # alice's token, every scope
    auditor_token: str  # eve's token, auditor, every scope (read-only by role)
    mailboxes_read_token: str  # alice's token limited to mailboxes:read


def whitelist(domains: list[tuple[str, str]], generated: str = "2025-04-01T00:00:00Z") -> bytes:
    ns = "https://listeblanche.mssante.fr/schema"
    body = "".join(
        f"<Domaine><Nom>{name}</Nom><Description>Test</Description>"
        f"<DNCertificatOperateur>{dn}</DNCertificatOperateur>"
        "<ResponsableContact>01 02 03 04 05, r@example.fr</ResponsableContact>"
        "<SupportContact>01 02 03 04 05, s@example.fr</SupportContact>"
        "<DateMAJ>2025-03-01T00:00:00Z</DateMAJ></Domaine>"
        for name, dn in domains
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><ListeBlancheMSSante xmlns="{ns}">'
        f"<DateDeGeneration>{generated}</DateDeGeneration><ListeDomaines>{body}"
        "</ListeDomaines></ListeBlancheMSSante>"
    ).encode()


def setup_admins(home: Path, *, demo: bool = True) -> Admins:
    config = load_config(home / "config.toml")
    if demo:
        from gateway.directory.demo import register
        from gateway.runtime import Runtime

        runtime = Runtime(config, actor="test")
        register(runtime)
        runtime.close()
    accounts = open_accounts(config)
    root = Caller.local("test")
    try:
        _, secret = accounts.add(root, "alice", "administrator", password=PASSWORD)
        accounts.add(root, "eve", "auditor", password=PASSWORD)
        _, admin_token = accounts.create_token(root, "alice", "tests", ["*:write"])
        _, auditor_token = accounts.create_token(root, "eve", "tests", ["*:read"])
        _, mailboxes_read = accounts.create_token(root, "alice", "tests", ["mailboxes:read"])
    finally:
        accounts.close()
    assert secret is not None
    return Admins(config, secret, admin_token, auditor_token, mailboxes_read)
