"""The trust directory: mailboxes, the identities behind them, and trust-space domains.

    from gateway.directory import open_directory
    directory = open_directory(config, actor="alice")   # a Directory (SQLite by default)
    mailbox = directory.get("dr.martin@mssgw.localhost")

See repository.py for the interface, auth.py for the servers' Authenticator.
"""

from __future__ import annotations

from gateway.config import Config
from gateway.directory.model import (
    Application,
    Mailbox,
    MailboxKind,
    MailboxState,
    Organisation,
    OrganisationKind,
    Patient,
    Professional,
    TrustDomain,
)
from gateway.directory.repository import Directory, DuplicateMailbox, UnknownMailbox


def open_directory(config: Config, actor: str = "gateway") -> Directory:
    """The directory named by the configuration; changes are audited under `actor`."""
    from gateway.directory.sqlite import SQLiteDirectory

    return SQLiteDirectory.open(
        config.database_path,
        patient_domain=config.gateway.patient_domain,
        audit_path=config.audit_log_path,
        actor=actor,
        min_password_length=config.auth.min_password_length,
    )


def own_domains(config: Config) -> list[str]:
    return [config.gateway.domain.lower(), config.gateway.patient_domain.lower()]


__all__ = [
    "Application",
    "Directory",
    "DuplicateMailbox",
    "Mailbox",
    "MailboxKind",
    "MailboxState",
    "Organisation",
    "OrganisationKind",
    "Patient",
    "Professional",
    "TrustDomain",
    "UnknownMailbox",
    "open_directory",
    "own_domains",
]
