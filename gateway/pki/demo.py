"""Certificates for the demo population (`mssgw init --demo`), so the demo can sign and
authenticate out of the box: a signature certificate for each professional, a seal for each
structure, a TLS client certificate and a seal for each application (the gateway's robot).
Idempotent: a mailbox that already holds a valid certificate of a kind gets no other."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gateway.directory.model import MailboxKind, MailboxState
from gateway.pki.ca import issue, list_certificates
from gateway.pki.identity import identity_of

if TYPE_CHECKING:
    from gateway.runtime import Runtime

DEMO_KINDS: dict[MailboxKind, tuple[str, ...]] = {
    MailboxKind.PER: ("personal-sign",),
    MailboxKind.ORG: ("org-seal",),
    MailboxKind.APP: ("org-client", "org-seal"),
}


def issue_certificates(runtime: Runtime) -> list[str]:
    config = runtime.config
    mailboxes = runtime.directory.list_mailboxes(state=MailboxState.ACTIVE)
    now = datetime.now(UTC)
    done: list[str] = []
    for mailbox in mailboxes:
        for kind in DEMO_KINDS.get(mailbox.kind, ()):
            held = list_certificates(config, email=mailbox.address, kind=kind)
            if any(r.status(now) == "valid" for r in held):
                continue
            issued = issue(
                config,
                kind,
                mailbox.address,
                mailbox.display_name[:64],
                identity=identity_of(mailbox),
            )
            done.append(f"issued {kind} certificate {issued.serial} for {mailbox.address}")
    return done
