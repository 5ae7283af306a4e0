"""Patient → pharmacy: a forwarded ordonnance is checked before the pharmacist sees it.

The patient forwards the gateway's message to a pharmacy mailbox, as an attachment
(message/rfc822) or inline, as mail clients do. The worker looks for the ordonnance: an XDM
package (its signature is verified against our PKI and its prescription must be the one
registered), else the identifier in the text, the subject or the PDF's text. The registry is
the authority: a cancelled, expired or fully dispensed prescription is not valid whatever the
paper says. The pharmacy receives the patient's message with the verdict in
`X-Ordonnance-Verification: valid|invalid; id=...; reason=...` and a readable part (result and
remaining quantities); when the verdict is "invalid" the patient is told why. A forward the
gateway could not check (no ordonnance found in it, a document it refuses to read) says so:
`unchecked; id=none; reason=...` and a line in the readable part, so the pharmacist never takes
silence for a check. A patient who
writes that they object ("je m'oppose ...") to feedback to the prescriber has it recorded.
"""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal
from typing import Any

from gateway.documents.parse import parse_prescription
from gateway.errors import GatewayError
from gateway.flows import mail, remote
from gateway.flows.common import (
    Plan,
    apply,
    identifiers_in,
    kind_of_cda,
    packages,
    registered_cda,
)
from gateway.flows.context import Context, now
from gateway.ordonnance.wording import plural
from gateway.pipeline import Delivery, Message, Outcome, Pipeline
from gateway.prescriptions.checks import delivery_reminders
from gateway.prescriptions.identifier import group
from gateway.prescriptions.registry import (
    PrescriptionNotFound,
    PrescriptionRecord,
    refuse_unless_dispensable,
)
from gateway.xdm import Limits
from gateway.xmlsafe import parse_xml

_OBJECTION = re.compile(r"(?i)\bje m'oppose\b|\bopposition\b|\bj'oppose\b|\bm'oppose\b")


@dataclasses.dataclass(frozen=True)
class Verdict:
    identifier: str | None
    valid: bool
    reason: str  # short, for the header
    explanation: str  # sentences, for people
    record: PrescriptionRecord | None = None
    registered_elsewhere: bool = False  # by another operator's gateway (flows.remote)
    checked: bool = True  # False: the gateway could not check the forward at all

    @property
    def state(self) -> str:
        return "unchecked" if not self.checked else "valid" if self.valid else "invalid"

    @property
    def elsewhere(self) -> bool:
        return self.registered_elsewhere or (
            self.record is not None and self.record.registered_elsewhere)


def _unchecked(reason: str, explanation: str) -> Verdict:
    return Verdict(None, False, reason, explanation, checked=False)


def _pdf_text(data: bytes) -> str:
    try:
        import pypdfium2

        doc = pypdfium2.PdfDocument(data)
        try:
            pages = range(min(len(doc), 5))
            return "\n".join(doc[i].get_textpage().get_text_range() for i in pages)
        finally:
            doc.close()
    except Exception:  # not a PDF we can read: the identifier is looked for elsewhere
        return ""


def _by_registry(ctx: Context, identifier: str, actor: str) -> Verdict:
    try:
        record = ctx.registry.get(identifier, actor=actor)
    except PrescriptionNotFound:
        return Verdict(identifier, False, "unknown identifier",
                       f"Aucune ordonnance n'est enregistrée sous l'identifiant"
                       f" {group(identifier)} : elle n'a pas été émise par cette messagerie"
                       " ou l'identifiant est faux.")
    try:
        refuse_unless_dispensable(record, now())
    except GatewayError as exc:
        code = getattr(exc, "code", "") or type(exc).__name__
        return Verdict(identifier, False, str(code),
                       (getattr(exc, "french", None) or str(exc)) + ".", record)
    if record.registered_elsewhere:
        return Verdict(identifier, True, "signature checked, registered elsewhere",
                       remote.ELSEWHERE, record)
    return Verdict(identifier, True, "signature and registry checked",
                   "L'ordonnance est authentique (signature vérifiée) et enregistrée ; elle"
                   " peut être délivrée dans la limite des quantités restantes.", record)


def _unreadable(pkg: Any) -> str | None:
    """Why a document of the package cannot be read as XML (a DOCTYPE...), or None."""
    for d in pkg.content:
        try:
            parse_xml(d.data)
        except Exception as exc:
            return " ".join(str(exc).split()) or type(exc).__name__
    return None


def verdict(ctx: Context, msg: mail.Message, actor: str) -> Verdict | None:
    files = mail.attachments(msg)
    limits = Limits.of(ctx.config)
    unreadable: Verdict | None = None
    for a, pkg in packages(files, limits):
        if isinstance(pkg, str):
            return Verdict(None, False, "invalid package",
                           f"Le paquet {a.filename or 'IHE_XDM.zip'} est refusé : {pkg}.")
        cdas = [d.data for d in pkg.content if kind_of_cda(d.data) == "prescription"]
        if not cdas:
            why = _unreadable(pkg)
            if why is not None and unreadable is None:
                unreadable = _unchecked(
                    "unreadable document",
                    f"Un document du paquet {a.filename or 'IHE_XDM.zip'} n'a pas pu être lu"
                    f" ({why}) : l'ordonnance n'a pas été vérifiée.")
            continue
        try:
            identifier = parse_prescription(cdas[0]).identifier
        except GatewayError as exc:
            return Verdict(None, False, "unreadable document",
                           f"Le document de l'ordonnance est illisible : {exc}.")
        check, chain = remote.checked(ctx.config, a.data)  # the chain: for `elsewhere`
        if not check.valid:
            return Verdict(identifier, False, f"signature {check.code}",
                           "La signature du paquet IHE_XDM.zip ne correspond pas à son contenu"
                           f" ({check.reason}) : le document a été modifié ou falsifié.")
        if not identifier:
            return Verdict(None, False, "no identifier",
                           "Le document ne porte pas d'identifiant d'ordonnance numérique.")
        verdict_ = _by_registry(ctx, identifier, actor)
        if verdict_.record is None and verdict_.reason == "unknown identifier":
            # Signed under another operator's anchor: registered by their gateway.
            external = remote.elsewhere(ctx, a.data, cdas[0], parse_prescription(cdas[0]),
                                        actor, chain)
            if external is not None:
                return Verdict(identifier, external.valid, external.reason,
                               external.explanation, external.record, registered_elsewhere=True)
        if verdict_.record is not None and registered_cda(
                ctx.registry, identifier, actor, limits) != cdas[0]:
            return Verdict(identifier, False, "not the registered document",
                           "Le document joint n'est pas celui qui a été enregistré sous cet"
                           " identifiant : seule la version enregistrée fait foi.",
                           verdict_.record)
        return verdict_
    if unreadable is not None:  # a package we refuse to read: its text proves nothing either
        return unreadable
    text = "\n".join(mail.header_texts(msg) + mail.texts(msg))
    text += "\n".join(_pdf_text(a.data) for a in files if a.content_type == "application/pdf"
                      or a.filename.lower().endswith(".pdf"))
    found = identifiers_in(text)
    if not found:
        if mail.is_forward(msg):
            return _unchecked(
                "no ordonnance found",
                "La messagerie n'a trouvé dans ce message ni paquet IHE_XDM.zip lisible ni"
                " identifiant d'ordonnance numérique : l'ordonnance n'a pas été vérifiée.")
        return None
    # One run of words in 37 passes the check character by chance ("est L71 90G 0OK PB6 U1L"
    # before "L71 90G 0OK PB6 U1L 56T"): the first the registry knows is the one meant.
    for identifier in found[:5]:
        verdict_ = _by_registry(ctx, identifier, actor)
        if verdict_.record is not None:
            return verdict_
    unknown = _by_registry(ctx, found[0], actor)
    if unknown.record is None and unknown.reason == "unknown identifier":
        # Without the package, a prescription another operator registered looks unknown.
        return dataclasses.replace(unknown, explanation=unknown.explanation + remote.NO_PACKAGE)
    return unknown


def _amount(value: Decimal | None) -> str:
    if value is None:
        return "-"
    return format(value.normalize(), "f").replace(".", ",")


_STATUS_WORDS = {
    "active": "à délivrer", "partially_dispensed": "délivrée en partie",
    "dispensed": "entièrement délivrée", "expired": "expirée", "cancelled": "annulée",
}


def status_text(record: PrescriptionRecord) -> str:
    """`délivrée en partie (partially_dispensed)`: the words, and the registry's code."""
    status = record.status_at(now()).value
    return f"{_STATUS_WORDS.get(status, status)} ({status})"


def remaining_text(record: PrescriptionRecord) -> str:
    """Each line by its number and name: what is left, what was prescribed and delivered."""
    rows = []
    for line in record.lines:
        if line.remaining is not None:
            left = f"reste {_amount(line.remaining)} {plural(line.remaining, line.quantity_unit)}"
            unit = plural(line.quantity or 0, line.quantity_unit)
            prescribed = (f"{_amount(line.quantity)} {unit}"
                          + (f" × {1 + line.renewals}" if line.renewals else ""))
        else:
            left = (f"reste {line.deliveries_left}"
                    f" {plural(line.deliveries_left, 'délivrance')}")
            prescribed = f"{1 + line.renewals} {plural(1 + line.renewals, 'délivrance')}"
        rows.append(f"  {line.position}. {line.label} — {left} (prescrit : {prescribed} ;"
                    f" déjà délivré : {_amount(line.delivered)})")
    return "\n".join(rows)


def dispensation_form(record: PrescriptionRecord) -> str:
    """The dispensation form for one delivery of what remains (a renewal's quantity at a
    time), ready to complete."""
    rows = [f"Ordonnance : {record.identifier}"]
    for line in record.lines:
        if line.complete:
            continue
        amount = line.remaining
        if amount is not None and line.quantity is not None:
            amount = min(amount, line.quantity)
        qty = (f" ; {_amount(amount)} {plural(amount, line.quantity_unit)}"
               if amount is not None else "")
        rows.append(f"{line.position} : délivré{qty}")
    return "\n".join(rows)


def _pharmacy_text(v: Verdict, robot: str, not_the_patient: str = "",
                   reminders: list[str] | None = None) -> str:
    head = "NON VÉRIFIÉE" if not v.checked else "VALIDE" if v.valid else "NON VALIDE"
    text = f"Vérification de l'ordonnance par la messagerie sécurisée : {head}\n"
    if v.identifier:
        text += f"Identifiant : {group(v.identifier)} ({v.identifier})\n"
    if not_the_patient:
        text += f"\n{not_the_patient}\n"
    text += f"\n{v.explanation}\n"
    if v.record is not None:
        text += f"\nStatut : {status_text(v.record)}\n"
        text += f"Première délivrance avant le : {v.record.validity_end:%d/%m/%Y}\n"
        text += "Quantités restantes :\n" + remaining_text(v.record) + "\n"
    if v.valid and v.record is not None and v.record.registered_elsewhere:
        text += ("\nLe compte rendu de délivrance ira au prescripteur"
                 + (f" ({v.record.prescriber_address}, chez un autre opérateur)"
                    if v.record.prescriber_address else
                    " : le document ne donne pas son adresse de messagerie, il ne sera pas"
                    " prévenu") + ", sauf opposition du patient.\n")
    if v.valid and reminders:
        text += ("\nConditions de délivrance (base des médicaments) :\n"
                 + "\n".join(f"  - {r}" for r in reminders) + "\n")
    if v.valid and v.record is not None:
        text += ("\nPour enregistrer la délivrance, écrivez au service des ordonnances"
                 f" ({robot} ; une réponse à ce message-ci irait au patient) le formulaire"
                 " ci-dessous, ligne par ligne (« délivré partiellement ; 1 boîte »,"
                 " « substitué par <médicament> », « non délivré ; motif : ... ») :\n\n"
                 + dispensation_form(v.record) + "\n")
    return text + "\nLe message du patient est joint.\n"


def handle(ctx: Context, sender: str, recipients: tuple[str, ...], data: bytes) -> Plan | None:
    config = ctx.config
    pharmacies = []
    for r in recipients:
        mb = ctx.mailbox(r)
        if mb is None:
            continue
        structure = ctx.structure_of(mb)
        if mb.is_pharmacy or (structure is not None and structure.is_pharmacy):
            pharmacies.append(r)
    if not pharmacies:
        return None
    msg = mail.parse(data)
    v = verdict(ctx, msg, sender)
    if v is None:
        return None
    if v.record is not None and v.record.patient_address.lower() == sender and \
            any(_OBJECTION.search(t) for t in mail.texts(msg)[:1]):
        ctx.registry.set_feedback_objection(v.record.identifier, True, actor=sender)
    domain, product = config.gateway.domain, config.gateway.product
    reason = re.sub(r"[;\r\n]", " ", v.reason)
    registry = "registry=elsewhere; " if v.elsewhere else ""
    header = f"{v.state}; id={v.identifier or 'none'}; {registry}reason={reason}"
    # A relative may bring an ordonnance: not refused, but said (the pharmacist checks at the
    # counter who presents it).
    not_the_patient = ""
    if v.record is not None and v.record.patient_address.lower() != sender:
        header += f"; forwarded-by={sender}; not-the-patient=yes"
        who, patient = ctx.mailbox(sender), ctx.mailbox(v.record.patient_address)
        by = f"{who.display_name} ({sender})" if who else sender
        of = (f"{patient.display_name}, {v.record.patient_address}" if patient
              else v.record.patient_address)
        not_the_patient = (f"Transmise par {by}, qui n'est pas le patient de l'ordonnance ({of}) :"
                           " un proche peut apporter une ordonnance ; vérifiez à la délivrance"
                           " qui la présente.")
    subject = mail.header(msg, "Subject")
    tag = {"valid": "valide", "invalid": "NON VALIDE", "unchecked": "non vérifiée"}[v.state]
    to_pharmacy = mail.compose(
        sender=sender, to=pharmacies, domain=domain, in_reply_to=mail.message_id_of(msg),
        subject=f"[Ordonnance {tag}] {subject}"[:200],
        body=_pharmacy_text(v, ctx.robot, not_the_patient,
                            delivery_reminders(v.record, ctx.drugs) if v.record else None),
        files=[mail.Attachment("message-du-patient.eml", "message/rfc822", data)],
        headers=[("X-Ordonnance-Verification", header), ("X-MSS-NIL", product)],
    )
    out = [Delivery(tuple(pharmacies), to_pharmacy)]
    if v.checked and not v.valid:
        notice = mail.compose(
            sender=ctx.robot, to=[sender], domain=domain, in_reply_to=mail.message_id_of(msg),
            subject="Votre ordonnance n'a pas pu être validée",
            body=("Bonjour,\n\nVous avez transmis une ordonnance à "
                  f"{', '.join(pharmacies)}. La messagerie sécurisée l'a vérifiée : elle n'est"
                  f" pas valide.\n\n{v.explanation}\n\nLa pharmacie en est informée."
                  " Adressez-vous à votre médecin pour une nouvelle ordonnance.\n"),
            headers=[("X-MSS-NIL", product)],
        )
        out.append(Delivery((sender,), notice, sender=""))
    return Plan(handled=tuple(pharmacies), deliveries=tuple(out), notes=(header,))


HEADER = b"x-ordonnance-verification:"


def strip_verdict(data: bytes) -> bytes:
    """`data` without any X-Ordonnance-Verification header (with its folded lines): only the
    gateway writes that header, on messages it composes."""
    end = data.find(b"\r\n\r\n")
    head, body = (data, b"") if end < 0 else (data[:end + 2], data[end + 2:])
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and dropping:
            continue
        dropping = line.lower().startswith(HEADER)
        if not dropping:
            kept.append(line)
    return b"\r\n".join(kept) + body


def _sanitised(outcome: Outcome) -> Outcome:
    deliveries = tuple(
        dataclasses.replace(d, data=strip_verdict(d.data)) if _has_verdict(d.data) else d
        for d in outcome.deliveries
    )
    return dataclasses.replace(outcome, deliveries=deliveries)


def _has_verdict(data: bytes) -> bool:
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[:end]
    return HEADER in head.lower()


async def step(pipeline: Pipeline, message: Message, outcome: Outcome) -> Outcome:
    """Pipeline step: a patient's mail to a pharmacy, ours on submission or another operator's
    through the relay. Any mail arriving with a verdict header loses it (a patient or a peer
    cannot make a message look verified)."""
    if _has_verdict(message.data):
        outcome = _sanitised(outcome)
    config = pipeline.config
    if message.channel == "relay":
        # A patient another operator hosts, forwarding through the relay to our pharmacies:
        # checked the same way (the peer's certificate vouches for the sender's domain).
        if not message.sender or not remote.is_remote_patient(config, message.sender):
            return outcome
        patient = message.sender.lower()
    elif message.channel != "submission" or not message.authenticated:
        return outcome
    else:
        patient = message.authenticated.lower()
        if not patient.endswith("@" + config.gateway.patient_domain):
            return outcome
    plan = await pipeline.run_flow(handle, patient, message.recipients, message.data)
    return apply(message, outcome, plan)
