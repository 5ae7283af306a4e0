"""Any other mail to a patient: delivered unchanged, and its XDM packages filed in the DMP.

A professional who mails a patient a lab report (or any structured document) in an
`IHE_XDM.zip` also feeds the patient's shared record: the package's documents are filed with
their XDS metadata, whole or not at all. A package about another patient (its INS is not the
recipient's) or one the XDM reader refuses is not filed; the mail itself is delivered as sent.
Filing the same package twice (a retried message) changes nothing (the DMP refuses a
uniqueId it already holds).
"""

from __future__ import annotations

import logging

from gateway.dmp.feed import file_package, ins_of
from gateway.dmp.model import Actor, ActorKind, DuplicateDocument
from gateway.errors import GatewayError
from gateway.flows import mail
from gateway.flows.common import packages
from gateway.flows.context import ACTOR, Context
from gateway.xdm import Limits

log = logging.getLogger("mssgw.flows")


def file_packages(ctx: Context, msg: mail.EmailMessage, sender: str, patient: str) -> list[str]:
    """File each XDM package of `msg` for `patient`; what happened, one line per package."""
    mailbox = ctx.mailbox(patient)
    if mailbox is None or mailbox.patient is None:
        return []
    notes: list[str] = []
    for a, pkg in packages(mail.attachments(msg), Limits.of(ctx.config)):
        if isinstance(pkg, str):
            notes.append(f"{a.filename}: not filed: {pkg}")
            continue
        if not pkg.content:
            continue
        ins = {ins_of(d.entry.patient_id or "") for d in pkg.content}
        if ins != {mailbox.patient.ins}:
            notes.append(f"{a.filename}: not filed: its patient ({', '.join(sorted(ins))}) is"
                         f" not {patient}")
            continue
        try:
            entries = file_package(ctx.dmp, pkg, actor=Actor(ActorKind.GATEWAY, ACTOR),
                                   author_address=sender)
            notes += [f"filed {e.metadata.unique_id} for {mailbox.patient.ins}" for e in entries]
        except DuplicateDocument:
            notes.append(f"{a.filename}: already filed")
        except GatewayError as exc:
            notes.append(f"{a.filename}: not filed: {exc}")
    for note in notes:
        log.info("dmp filing from %s to %s: %s", sender, patient, note)
    return notes
