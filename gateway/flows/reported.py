"""A dispensation another operator's pharmacy reports to one of our prescribers, through the
relay: recorded in our registry, where the prescription was registered.

When a patient takes an ordonnance made here to a pharmacy another operator hosts, that
pharmacy's gateway keeps the prescription as "registered elsewhere" (flows.remote) and, once it
is dispensed, mails the prescriber the signed eDISP document in an IHE_XDM.zip. Our registry is
the one the prescription lives in: it records that dispensation, so that our pharmacies and the
next forward see what is left, not the whole prescription again (a pharmacy hosted elsewhere
cannot be asked first; this closes the gap after the fact). Recorded only when the trust space
vouches for each part:
- the sender is a pharmacy, or a pharmacist, among the directory's remote entries (the national
  list says who dispenses); the relay listener already checked its domain against the
  operator's certificate DN;
- the package's signature verifies against our anchors but not under our own CA (a peer does
  not carry our users' signatures), and the certificate names the eDISP's author or the
  author's structure;
- the eDISP names a prescription registered here (not one kept from elsewhere), for the same
  patient, and the mail goes to its prescriber (or to the robot).
Otherwise nothing changes: the prescriber still receives the mail as sent, and the reason goes
to the mail log. When the registry refuses a report it would otherwise take (more than
prescribed, cancelled, expired: the registries disagree), the prescriber is also told why, with
what the registry here holds (the refusal is in the audit log too).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from gateway import metrics
from gateway.directory.model import RemoteKind
from gateway.documents.model import Dispensation
from gateway.documents.parse import parse_dispensation
from gateway.errors import GatewayError
from gateway.flows import mail, remote
from gateway.flows.common import kind_of_cda, packages
from gateway.flows.context import Context, now
from gateway.prescriptions.registry import DispensationReport, Dispenser, PrescriptionRecord
from gateway.xdm import Limits


@dataclass(frozen=True)
class Reported:
    """What became of a report: recorded (`record` then holds the new state) or why not."""

    recorded: bool
    note: str  # for the mail log
    record: PrescriptionRecord | None = None
    # The registry's refusal of a report otherwise vouched for (more than prescribed, after a
    # cancellation...), in French: the prescriber is told (flows.dispense.relayed).
    refusal: str = ""


def record(ctx: Context, sender: str, recipients: tuple[str, ...], msg: mail.Message,
           link: Callable[[Context, Dispensation, str], Dispensation]) -> Reported | None:
    """The report in `msg` recorded, or why not; None when `msg` holds no signed eDISP.
    `link` finds the prescription an eDISP names only by document id (flows.dispense)."""
    for a, pkg in packages(mail.attachments(msg), Limits.of(ctx.config)):
        if isinstance(pkg, str):
            continue
        edisp = next((d.data for d in pkg.content if kind_of_cda(d.data) == "dispensation"),
                     None)
        if edisp is not None:
            return _record(ctx, sender, recipients, a.data, edisp, link)
    return None


def _refused(why: str) -> Reported:
    return Reported(False, f"dispensation reported by relay not recorded: {why}")


def _record(ctx: Context, sender: str, recipients: tuple[str, ...], package: bytes,
            edisp: bytes, link: Callable[[Context, Dispensation, str], Dispensation]
            ) -> Reported:
    entry = ctx.directory.get_remote(sender)
    if entry is None or not entry.takes_prescriptions:
        return _refused(f"{sender} is no pharmacy or pharmacist of the remote directory")
    chain = remote.signer_chain(ctx.config, package)
    if not chain:
        return _refused("the package's signature does not verify against our anchors")
    if remote.signed_under_our_ca(ctx.config, chain):
        return _refused("signed under our own CA, not by another operator's member")
    try:
        d = link(ctx, parse_dispensation(edisp), sender)
    except GatewayError as exc:
        return _refused(f"the eDISP cannot be read or linked ({exc})")
    if not remote.signer_is_author(chain[0], d.author):
        return _refused("the package is not signed by the eDISP's author")
    try:
        found = ctx.registry.get(d.prescription_id, actor=sender)
    except GatewayError as exc:
        return _refused(f"prescription {d.prescription_id}: {exc}")
    if found.registered_elsewhere:
        return _refused(f"{found.identifier} was not registered here")
    if d.patient.ins.upper() != found.patient_ins.upper():
        return _refused(f"the eDISP's patient is not {found.identifier}'s")
    if ctx.robot not in recipients and found.prescriber_address not in recipients:
        return _refused(f"not addressed to {found.identifier}'s prescriber")
    # The report's id: the eDISP's document id, so a retried mail is recorded once.
    ident = d.document_id or hashlib.sha256(edisp).hexdigest()
    pharmacist = sender if entry.kind is RemoteKind.PROFESSIONAL else d.author.email or None
    report = DispensationReport.from_dispensation(
        d, Dispenser(address=sender, is_pharmacy=True, pharmacist=pharmacist),
        dispensation_id=f"relay:{ident}")
    try:
        result = ctx.registry.dispense(report, now=now())
    except GatewayError as exc:
        metrics.prescription("dispensation-refused")
        refused = _refused(f"{found.identifier}: {exc}")
        return dataclasses.replace(refused, record=found,
                                   refusal=getattr(exc, "french", None) or str(exc))
    if result.applied:
        metrics.prescription("dispensed")
    return Reported(True, f"dispensation of {found.identifier} reported by {sender} through"
                    " the relay recorded" + ("" if result.applied else " (already)"),
                    result.record)
