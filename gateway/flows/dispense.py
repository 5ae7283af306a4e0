"""Pharmacy → prescriber: a dispensation mailed to the robot (or to the prescriber) is recorded.

The pharmacist (or the pharmacy's mailbox) sends the dispensation form in the body or an eDISP
CDA. The worker reads it against the registered prescription, builds and signs the eDISP
document (the pharmacist's signature certificate or the pharmacy's seal), records it in the
registry and files it in the DMP in one transaction, then writes: the pharmacy's receipt with
the remaining quantities, the prescriber's report (unless the patient objected; the DMP copy is
then hidden from the prescriber too), and the patient's copy. A refusal (over-dispensing,
expired, cancelled, fully dispensed, not a pharmacy...) changes nothing and answers the sender.
The dispensation's id is derived from the sender and Message-ID, so a retried message is
recorded once.

Also here: the prescriber's cancellation, mailed to the robot ("Annulation : <identifiant>").
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable

from gateway import metrics
from gateway.directory.demo import ROBOT_LOCAL
from gateway.dmp.feed import file_package, qualified_ins
from gateway.dmp.model import Actor, ActorKind
from gateway.documents import validator
from gateway.documents.build import assign_dispensation_ids, build_dispensation, dispensed_status
from gateway.documents.model import Dispensation, Prescription
from gateway.documents.parse import parse_dispensation, parse_prescription
from gateway.documents.validate import Kit, check_incoming, national_findings
from gateway.errors import GatewayError
from gateway.flows import mail, remote, reported
from gateway.flows.common import (
    PRECHECK_MAX_BYTES,
    Plan,
    apply,
    idempotence_key,
    identifiers_in,
    is_xml,
    is_zip,
    kind_of_cda,
    registered_cda,
)
from gateway.flows.context import ACTOR, Context, now
from gateway.flows.verify import remaining_text, status_text
from gateway.ordonnance.wording import plural
from gateway.pipeline import Delivery, Message, Outcome, Pipeline
from gateway.prescriptions import checks
from gateway.prescriptions.checks import check_dispensation
from gateway.prescriptions.registry import DispensationReport, Dispenser, PrescriptionRecord
from gateway.signature.trust import signed_as
from gateway.xdm import Limits, Sender
from gateway.xdm.package import build, to_zip

_FORM = re.compile(r"(?im)^\s*ordonnance\s*:")
_CANCEL = re.compile(r"(?im)^\s*annulation\s*:\s*(.+)$")


def _registered(ctx: Context, identifier: str, actor: str) -> Prescription | None:
    cda = registered_cda(ctx.registry, identifier, actor, Limits.of(ctx.config))
    return parse_prescription(cda) if cda else None


Registered = Callable[[str], "Prescription | None"]


def _registered_once(ctx: Context, actor: str) -> Registered:
    """`_registered` for one mail: the form's parser and the delivery conditions both need the
    prescription; reading, unzipping and parsing its package once instead of twice took the
    dispense flow from 15.1 to 12.3 ms of CPU in-process (two interleaved runs, load ~9).
    Never kept across mails: each mail's read of the package is its own audited access."""
    seen: dict[str, Prescription | None] = {}

    def registered(identifier: str) -> Prescription | None:
        if identifier not in seen:
            seen[identifier] = _registered(ctx, identifier, actor)
        return seen[identifier]

    return registered


def _dispensation(ctx: Context, msg: mail.Message, sender: str, registered: Registered
                  ) -> tuple[Dispensation | None, tuple[str, ...]]:
    """The dispensation, and what the national layers say of an eDISP from outside."""
    for a in mail.attachments(msg):
        if is_xml(a) and kind_of_cda(a.data) == "dispensation":
            report = check_incoming(a.data, Kit.of(ctx.config), ctx.drugs,  # Refused: errors
                                    generic=validator.for_config(ctx.config))
            return _linked(ctx, parse_dispensation(a.data), sender), tuple(
                f"contrôle national CI-SIS {f}" for f in national_findings(report))
    for text in mail.texts(msg):
        text = mail.strip_quotes(text)
        if _FORM.search(text):
            from gateway.documents.form import parse_dispensation_form

            return parse_dispensation_form(
                text, prescription_for=registered,
                people=ctx.people, drugs=ctx.drugs, sender=sender, now=now()), ()
    return None, ()


def _linked(ctx: Context, d: Dispensation, sender: str) -> Dispensation:
    """The dispensation with its e-prescription identifier: the official model links the
    prescription by its document id only (inFulfillmentOf/order/id), which the registry
    knows for every prescription it holds (looked up among the patient's)."""
    if d.prescription_id or not d.prescription_document_id:
        return d
    for record in ctx.registry.find(actor=sender, patient_ins=d.patient.ins):
        if record.document_id == d.prescription_document_id:
            return dataclasses.replace(d, prescription_id=record.identifier)
    raise GatewayError(f"la prescription que cette délivrance exécute (document"
                       f" {d.prescription_document_id}) n'est pas enregistrée ici pour le"
                       f" patient INS {d.patient.ins}")


def _reply(ctx: Context, to: str, subject: str, body: str, in_reply_to: str | None,
           files: tuple[mail.Attachment, ...] = ()) -> Delivery:
    msg = mail.compose(sender=ctx.robot, to=[to], subject=subject, body=body,
                       domain=ctx.config.gateway.domain, in_reply_to=in_reply_to,
                       headers=[("X-MSS-NIL", ctx.config.gateway.product)], files=files)
    return Delivery((to,), msg, sender="")


def _lines_text(d: Dispensation, record: PrescriptionRecord) -> str:
    """Each dispensed line by its number and the medicine's name, what was delivered and how
    (as prescribed, partly, substituted, adapted, not delivered) with the pharmacist's why."""
    out = []
    for line in d.lines:
        rec = next((r for r in record.lines if r.matches(line.line_ref)), None)
        number, label = (rec.position, rec.label) if rec else (line.line_ref, line.product.label)
        unit = rec.quantity_unit if rec else line.quantity_unit
        amount = format(line.quantity.normalize(), "f").replace(".", ",")
        status = dispensed_status(line)
        out.append(f"  ligne {number} ({label}) : {amount} {plural(line.quantity, unit)} —"
                   f" {status[:1].lower()}{status[1:]}")
    return "\n".join(out)


def _oid_of(key: str, what: str) -> str:
    """The same mail sent again names the same document (a name-based UUID in the OID arc
    2.25): its report then has the same content, and the registry records it once and says so,
    instead of taking a fresh document id for a different report."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, f'mssgw:{what}:{key}').int}"


def _record(ctx: Context, d: Dispensation, sender: str, key: str,
            registered: Registered | None = None
            ) -> tuple[PrescriptionRecord, bool, bytes, bool, tuple[str, ...]]:
    mailbox = ctx.mailbox(sender)
    if mailbox is None:
        raise GatewayError(f"{sender} is not in the directory")
    structure = ctx.structure_of(mailbox)
    # The pharmacist: the sender; from the pharmacy's own mailbox, the one the form names (or
    # the pharmacy's only one), the document's author.
    pharmacist = sender if mailbox.professional else (d.author.email or d.author.rpps)
    dispenser = dataclasses.replace(Dispenser.from_mailbox(mailbox, structure),
                                    pharmacist=pharmacist)
    d = assign_dispensation_ids(dataclasses.replace(
        d, document_id=d.document_id or _oid_of(key, "document"),
        set_id=d.set_id or _oid_of(key, "set")))
    report = DispensationReport.from_dispensation(d, dispenser, dispensation_id=key)
    record = ctx.registry.get(d.prescription_id, actor=sender)
    from gateway.prescriptions.registry import plan_dispensation

    warnings: tuple[str, ...] = ()
    if not any(x.dispensation_id == key for x in record.dispensations):
        plan_dispensation(record, report, now())  # refuse before signing anything
        warnings = _check_conditions(ctx, d, record, sender,
                                     registered or _registered_once(ctx, sender))
    cda = build_dispensation(d)
    pkg = signed_as(ctx.config, sender, build([cda], sender=Sender(
        name=mailbox.display_name, product=ctx.config.gateway.product), metadata=False),
        ctx.directory, ctx.certificates)  # metadata=False: METADATA.XML written once, by signed_as
    package = to_zip(pkg)
    hidden = (record.prescriber_address, *((f"8{record.prescriber_rpps}",)
                                           if record.prescriber_rpps else ()))
    # The DMP takes documents only for a qualified INS: a prescription naming its patient by an
    # NIA has its dispensations recorded and reported, not filed.
    in_dmp = all(qualified_ins(doc.entry.patient_id or "") for doc in pkg.content)
    with ctx.records.unit() as uow:  # the dispensation and its DMP filing: one commit
        result = uow.registry.dispense(report, now=now())
        if result.applied:
            metrics.prescription("dispensed")
        if result.applied and in_dmp:
            file_package(uow.dmp, pkg, actor=Actor(ActorKind.GATEWAY, ACTOR),
                         author_address=d.author.email, submitter_address=sender,
                         prescription_id=d.prescription_id,
                         hidden_from=hidden if record.patient_objects_to_feedback else ())
    return result.record, result.applied, package, in_dmp, warnings


# What `mssgw prescriptions dispense` uses: the same registered document, the same eDISP,
# signature, registry entry and DMP filing as a pharmacy's mail.
registered_prescription = _registered
record_dispensation = _record


def _check_conditions(ctx: Context, d: Dispensation, record: PrescriptionRecord, sender: str,
                      registered: Registered) -> tuple[str, ...]:
    """The drug database's delivery conditions (fractions, a stupéfiant's three days, hospital
    pharmacies only): refused with every reason, or the warnings for the pharmacy's receipt."""
    prescription = registered(d.prescription_id)
    if prescription is None:
        return ()
    findings = check_dispensation(prescription, d, record, ctx.drugs, now())
    refused = checks.refusals(findings)
    if refused:
        raise GatewayError(checks.report(refused))
    return tuple(str(f) for f in checks.warnings(findings))


def handle(ctx: Context, sender: str, recipients: tuple[str, ...], data: bytes) -> Plan | None:
    msg = mail.parse(data)
    original_id = mail.message_id_of(msg)
    to_robot = ctx.robot in recipients
    text = "\n".join(mail.texts(msg))
    if to_robot:
        cancel = _CANCEL.search(text)
        if cancel:
            return _cancel(ctx, sender, cancel.group(1), original_id)
    registered = _registered_once(ctx, sender)
    try:
        d, national = _dispensation(ctx, msg, sender, registered)
    except GatewayError as exc:
        report = exc.report() if hasattr(exc, "report") else str(exc)
        if not to_robot and not identifiers_in(text):
            return None
        return Plan(handled=(ctx.robot,) if to_robot else (), deliveries=(_reply(
            ctx, sender, "Délivrance refusée", "Bonjour,\n\nLa délivrance n'a pas été"
            f" enregistrée :\n\n{report}\n\nRien n'a été modifié.\n", original_id),))
    if d is None:
        return None
    key = "mail:" + idempotence_key(sender, original_id or mail.idempotence_fallback(data))
    try:
        record, applied, package, in_dmp, warnings = _record(ctx, d, sender, key, registered)
    except GatewayError as exc:
        metrics.prescription("dispensation-refused")
        return Plan(handled=(ctx.robot,) if to_robot else (), deliveries=(_reply(
            ctx, sender, f"Délivrance refusée : ordonnance {d.prescription_id}",
            f"Bonjour,\n\nLa délivrance pour l'ordonnance {d.prescription_id} n'a pas été"
            f" enregistrée :\n{getattr(exc, 'french', None) or exc}\n\nRien n'a été modifié.\n",
            original_id),))
    lines = _lines_text(d, record)
    left = remaining_text(record)
    warnings += national
    notes = ("\nÀ vérifier (conditions de délivrance de la base des médicaments) :\n"
             + "\n".join(f"  - {w}" for w in warnings) + "\n") if warnings else ""
    if record.registered_elsewhere:
        notes += "\n" + _elsewhere_note(record) + "\n"
    out = [_reply(ctx, sender, f"Délivrance enregistrée : ordonnance {record.identifier}",
                  f"Bonjour,\n\nLa délivrance est enregistrée{'' if applied else ' (déjà reçue)'}"
                  + (" et versée dans le DMP du patient" if in_dmp else " (non versée dans le"
                     " DMP : le patient n'y est pas désigné par un INS qualifié)")
                  + f", pharmacien : {d.author.given_name} {d.author.family_name} :\n{lines}"
                  f"\n\nStatut : {status_text(record)}\nQuantités restantes :\n{left}\n{notes}",
                  original_id)]
    xdm = mail.Attachment("IHE_XDM.zip", "application/zip", package)
    if not record.patient_objects_to_feedback and record.prescriber_address:
        report = _reply(ctx, record.prescriber_address,
                        f"Délivrance de votre ordonnance {record.identifier}",
                        f"Bonjour,\n\n{sender} a délivré votre ordonnance {record.identifier}"
                        f" (patient INS {record.patient_ins}) :\n{lines}\n\nQuantités"
                        f" restantes :\n{left}\n", None, (xdm,))
        if record.registered_elsewhere:
            # To another operator, through the relay: a failure comes back to the pharmacy
            # as a DSN, not to the robot.
            report = dataclasses.replace(report, sender=sender)
        out.append(report)
    out.append(_reply(ctx, record.patient_address,
                      f"Votre ordonnance {record.identifier} a été délivrée",
                      f"Bonjour,\n\nVotre pharmacie ({sender}) a délivré votre ordonnance :\n"
                      f"{lines}\n\nIl reste :\n{left}\n", None, (xdm,)))
    handled = tuple(r for r in recipients if r in (ctx.robot, record.prescriber_address))
    return Plan(handled=handled, deliveries=tuple(out) if applied else tuple(out[:1]))


def _elsewhere_note(record: PrescriptionRecord) -> str:
    """For the pharmacy: a prescription another operator registered (flows.remote)."""
    if record.patient_objects_to_feedback:
        report = "le patient s'est opposé à ce que le prescripteur en soit informé"
    elif record.prescriber_address:
        report = (f"le compte rendu part vers le prescripteur ({record.prescriber_address},"
                  " chez un autre opérateur) avec le document signé")
    else:
        report = ("le document ne donne pas l'adresse de messagerie du prescripteur : il n'est"
                  " pas prévenu")
    return ("Cette ordonnance a été enregistrée par un autre opérateur : la délivrance est"
            f" enregistrée ici contre le document signé que le patient a transmis ; {report}.")


def _cancel(ctx: Context, sender: str, text: str, original_id: str | None) -> Plan:
    found = identifiers_in(text)
    if not found:
        body = f"« {text.strip()} » n'est pas un identifiant d'ordonnance valide."
    else:
        try:
            result = ctx.registry.cancel(found[0], by=sender, reason="annulée par mail",
                                         actor=sender, now=now())
            body = f"L'ordonnance {found[0]} est annulée : {result.message}"
        except GatewayError as exc:
            body = f"L'ordonnance {found[0]} n'a pas été annulée : {exc}"
    return Plan(handled=(ctx.robot,), deliveries=(_reply(
        ctx, sender, "Annulation d'ordonnance", f"Bonjour,\n\n{body}\n", original_id),))


def relayed(ctx: Context, sender: str, recipients: tuple[str, ...], data: bytes
            ) -> Plan | None:
    """Worker side for relayed mail: a dispensation (form or eDISP) or a cancellation sent by
    another operator's member. The registry takes dispensations only from pharmacies this
    gateway hosts, whose identity and pharmacy status its directory vouches for, and
    cancellations only from their prescribers; the sender is told so, as a local mailbox that
    is not a pharmacy would be, and nothing is read or changed. One exception: the signed eDISP
    a pharmacy elsewhere reports about a prescription registered here (`reported.record`). A
    prescriber it was addressed to still receives the mail; the robot's copy (it only reads
    requests) is dropped."""
    msg = mail.parse(data)
    to_robot = ctx.robot in recipients
    # A signed eDISP from a pharmacy elsewhere, about a prescription registered here: the
    # registry records it when the trust space vouches for it (flows.reported); either way
    # the prescriber receives the mail as sent.
    report = reported.record(ctx, sender, recipients, msg, _linked)
    if report is not None:
        return Plan(handled=(ctx.robot,) if to_robot else (), notes=(report.note,),
                    deliveries=_not_recorded(ctx, sender, report, mail.message_id_of(msg)))
    texts = [mail.strip_quotes(t) for t in mail.texts(msg)]
    dispensation = any(_FORM.search(t) for t in texts) or any(
        is_xml(a) and kind_of_cda(a.data) == "dispensation" for a in mail.attachments(msg))
    cancel = to_robot and any(_CANCEL.search(t) for t in texts)
    if not (dispensation or cancel):
        return None
    what = "La délivrance" if dispensation else "L'annulation"
    domain = sender.rpartition("@")[2]
    return Plan(handled=(ctx.robot,) if to_robot else (), deliveries=(_reply(
        ctx, sender, f"{what} n'a pas été enregistrée",
        f"Bonjour,\n\n{what} n'a pas été enregistrée : ce service n'enregistre que les"
        " délivrances des pharmacies qu'il héberge et les annulations de leurs prescripteurs ;"
        f" {sender} relève d'un autre opérateur de l'espace de confiance ({domain}).\n"
        "Rien n'a été modifié.\n", mail.message_id_of(msg)),),
        notes=(f"relayed {what.split()[-1].lower()} from {sender} not recorded",))


def _not_recorded(ctx: Context, sender: str, report: reported.Reported,
                  original_id: str | None) -> tuple[Delivery, ...]:
    """For the prescriber, when our registry refused a pharmacy elsewhere's report: the two
    registries disagree (dispensed twice, after a cancellation...), which only they can sort."""
    record = report.record
    if not report.refusal or record is None or not record.prescriber_address:
        return ()
    return (_reply(
        ctx, record.prescriber_address,
        f"Délivrance faite ailleurs non enregistrée : ordonnance {record.identifier}",
        f"Bonjour,\n\n{sender} (une pharmacie d'un autre opérateur de l'espace de confiance)"
        f" vous adresse le compte rendu d'une délivrance de votre ordonnance"
        f" {record.identifier} (patient INS {record.patient_ins}), dans un message séparé."
        f" Le registre des ordonnances de cette messagerie ne l'a pas enregistrée :\n"
        f"{report.refusal}\n\nStatut ici : {status_text(record)}\nQuantités restantes ici"
        f" :\n{remaining_text(record)}\n\nLes délivrances ont pu dépasser la prescription :"
        " voyez-le avec le patient et les pharmacies.\n", original_id),)


async def step(pipeline: Pipeline, message: Message, outcome: Outcome) -> Outcome:
    """Pipeline step: a professional's mail to the robot or to another professional; the same
    from another operator's member by relay (`relayed`: told it is not recorded)."""
    config = pipeline.config
    patients = "@" + config.gateway.patient_domain
    robot = f"{ROBOT_LOCAL}@{config.gateway.domain}"
    if message.channel == "relay":
        if message.sender and not all(r.endswith(patients) for r in message.recipients) \
                and not remote.is_remote_patient(config, message.sender) \
                and may_be_dispensation(message.data, message.recipients, robot, packages=True):
            plan = await pipeline.run_flow(relayed, message.sender.lower(),
                                           message.recipients, message.data)
            return apply(message, outcome, plan)
        return outcome
    if message.channel != "submission" or not message.authenticated:
        return outcome
    if message.authenticated.lower().endswith(patients) or all(
            r.endswith(patients) for r in message.recipients):
        return outcome
    if not may_be_dispensation(message.data, message.recipients, robot):
        return outcome
    plan = await pipeline.run_flow(handle, message.authenticated.lower(),
                                   message.recipients, message.data)
    return apply(message, outcome, plan)


def may_be_dispensation(data: bytes, recipients: tuple[str, ...], robot: str, *,
                        packages: bool = False) -> bool:
    """False only when `handle` would return None: ordinary mail between professionals (most
    of the traffic) then skips the process pool, whose round trip tripled the server's CPU per
    message. Runs on the event loop, so only on small messages: a MIME parse of a few kB costs
    less than the pool's pickling. Mirrors `handle`: mail to the robot, an XML attachment, or a
    text with the dispensation form's heading; with `packages`, a ZIP attachment too (`relayed`:
    the signed report of a pharmacy elsewhere)."""
    if robot in recipients or len(data) > PRECHECK_MAX_BYTES:
        return True
    msg = mail.parse(data)
    if any(is_xml(a) or (packages and is_zip(a)) for a in mail.attachments(msg)):
        return True
    return any(_FORM.search(mail.strip_quotes(text)) for text in mail.texts(msg))
