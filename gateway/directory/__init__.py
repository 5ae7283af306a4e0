"""The trust directory: mailboxes, the identities behind them, and trust-space domains."""

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

__all__ = [
    "Application",
    "Mailbox",
    "MailboxKind",
    "MailboxState",
    "Organisation",
    "OrganisationKind",
    "Patient",
    "Professional",
    "TrustDomain",
]
