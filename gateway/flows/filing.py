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
from dataclasses import dataclass

from gateway.dmp.feed import directory_mailbox_of, file_package, ins_of
from gateway.dmp.model import Actor, ActorKind, DuplicateDocument
from gateway.errors import GatewayError
from gateway.flows import mail
from gateway.flows.common import PRECHECK_MAX_BYTES, is_zip, packages
from gateway.flows.context import ACTOR, Context
from gateway.pipeline import Delivery
from gateway.xdm import Limits

log = logging.getLogger("mssgw.flows")


@dataclass(frozen=True)
class Filing:
    """What happened to a message's packages: the log's lines, and what the sender must be
    told (a package not filed: its reason in French)."""

    notes: tuple[str, ...] = ()
    not_filed: tuple[str, ...] = ()


def file_packages(ctx: Context, msg: mail.Message, sender: str, patient: str) -> Filing:
    """File each XDM package of `msg` for `patient`. A package about another patient is not
    filed, and that is audited (`dmp.not-filed`): a document in the wrong record is a patient
    data incident waiting to happen, and its sender must know nothing was filed."""
    mailbox = ctx.mailbox(patient)
    if mailbox is None or mailbox.patient is None:
        return Filing()
    notes: list[str] = []
    not_filed: list[str] = []
    for a, pkg in packages(mail.attachments(msg), Limits.of(ctx.config)):
        name = a.filename or "IHE_XDM.zip"
        if isinstance(pkg, str):
            notes.append(f"{name}: not filed: {pkg}")
            not_filed.append(f"{name} : paquet illisible ({pkg})")
            continue
        if not pkg.content:
            continue
        ins = {ins_of(d.entry.patient_id or "") for d in pkg.content}
        if ins != {mailbox.patient.ins}:
            notes.append(f"{name}: not filed: its patient ({', '.join(sorted(ins))}) is"
                         f" not {patient}")
            not_filed.append(
                f"{name} : ses documents concernent le patient INS {', '.join(sorted(ins))},"
                f" pas le destinataire {patient} (INS {mailbox.patient.ins}) ; un document n'est"
                " versé que dans le dossier du patient qu'il concerne")
            ctx.audit.record(sender, "dmp.not-filed", patient, {
                "reason": "package for another patient", "package_ins": sorted(ins),
                "recipient_ins": mailbox.patient.ins, "file": name})
            continue
        try:
            entries = file_package(ctx.dmp, pkg, actor=Actor(ActorKind.GATEWAY, ACTOR),
                                   submitter_address=sender,
                                   mailbox_of=directory_mailbox_of(ctx.directory))
            notes += [f"filed {e.metadata.unique_id} for {mailbox.patient.ins}" for e in entries]
        except DuplicateDocument:
            notes.append(f"{a.filename}: already filed")
        except GatewayError as exc:
            notes.append(f"{a.filename}: not filed: {exc}")
    for note in notes:
        log.info("dmp filing from %s to %s: %s", sender, patient, note)
    return Filing(tuple(notes), tuple(not_filed))


def not_filed_notice(ctx: Context, msg: mail.Message, sender: str, patient: str,
                     filing: Filing) -> Delivery | None:
    """The robot's word to the sender when a package of their mail was not filed (the mail
    itself is delivered as sent)."""
    if not filing.not_filed:
        return None
    body = ("Bonjour,\n\nVotre message à " + patient + " a été remis tel quel, mais rien n'a"
            " été versé dans son dossier médical partagé (DMP) :\n"
            + "\n".join(f"  - {reason}" for reason in filing.not_filed)
            + "\n\nVérifiez le destinataire ou le document, puis renvoyez-le au bon patient.\n")
    notice = mail.compose(
        sender=ctx.robot, to=[sender], domain=ctx.config.gateway.domain,
        in_reply_to=mail.message_id_of(msg),
        subject="Document non versé au DMP : " + mail.header(msg, "Subject")[:80],
        body=body, headers=[("X-MSS-NIL", ctx.config.gateway.product)])
    return Delivery((sender,), notice, sender="")


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
