"""Certificates for the demo population (`mssgw init --demo`), so the demo can sign and
authenticate out of the box: a signature certificate for each professional, a seal for each
structure, a TLS client certificate and a seal for each application (the gateway's robot).

Once, and for the demo mailboxes only: `make run` runs `init --demo` at every start, so a demo
mailbox that ever held a certificate of a kind (valid, expired or revoked) gets no other, and a
mailbox an administrator added gets none (`mssgw pki issue` is the way). Re-issuing here would
silently undo a revocation. Each certificate issued is in the audit log."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway import audit
from gateway.config import Config
from gateway.directory import demo
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


def demo_addresses(config: Config) -> set[str]:
    domain = config.gateway.domain.lower()
    return {f(domain) for f in (demo.doctor_address, demo.practice_address,
                                demo.pharmacy_address, demo.pharmacist_address,
                                demo.robot_address)}


def issue_certificates(runtime: Runtime) -> list[str]:
    config = runtime.config
    actor = audit.local_actor()
    wanted = demo_addresses(config)
    mailboxes = runtime.directory.list_mailboxes(state=MailboxState.ACTIVE)
    done: list[str] = []
    for mailbox in mailboxes:
        if mailbox.address not in wanted:
            continue
        for kind in DEMO_KINDS.get(mailbox.kind, ()):
            if list_certificates(config, email=mailbox.address, kind=kind):
                continue
            issued = issue(
                config,
                kind,
                mailbox.address,
                mailbox.display_name[:64],
                identity=identity_of(mailbox),
            )
            audit.record(config, actor, "pki.issue", mailbox.address, serial=issued.serial,
                         kind=kind, subject=issued.subject_dn, by="mssgw init --demo")
            done.append(f"issued {kind} certificate {issued.serial} for {mailbox.address}")
    return done
