"""The trust directory: mailboxes, the identities behind them, and trust-space domains.

    directory = runtime.directory                      # a Directory, from the process's root
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
    """The configured directory on its own; changes are audited under `actor` (tests and
    tools; a process of the gateway takes its root's, `Runtime.directory`)."""
    from gateway.runtime import storage_for

    return storage_for(config).directory(actor)


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
