"""Any other mail to a patient: delivered unchanged, and its XDM packages filed in the DMP.

Mail relayed by another trust-space operator to our patients is filed the same way (`relayed`):
a prescription or report from another operator's member arrives as their software or gateway
packed and signed it. The gateway cannot sign or register it in their name (it holds no
certificate for people outside its directory), so it files the package and delivers the mail as
sent.

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
from gateway.flows.common import PRECHECK_MAX_BYTES, is_zip, packages
from gateway.flows.context import ACTOR, Context
from gateway.xdm import Limits

log = logging.getLogger("mssgw.flows")


def file_packages(ctx: Context, msg: mail.Message, sender: str, patient: str) -> list[str]:
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


def may_hold_package(data: bytes) -> bool:
    """False only when the message has no ZIP attachment: most relayed mail to patients then
    skips the process pool. Parses on the event loop, so only small messages (a few kB of MIME
    cost less than the pool's round trip); larger ones, which may carry a package, go to it."""
    if len(data) > PRECHECK_MAX_BYTES:
        return True
    return any(is_zip(a) for a in mail.attachments(mail.parse(data)))


def relayed(ctx: Context, sender: str, patients: tuple[str, ...], data: bytes) -> None:
    """Worker side (process pool): file the XDM packages of a relayed message for each of our
    patients it is addressed to. The message itself is delivered unchanged."""
    msg = mail.parse(data)
    for patient in patients:
        file_packages(ctx, msg, sender, patient)
