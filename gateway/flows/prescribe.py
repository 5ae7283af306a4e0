"""Doctor → patient: a prescription mailed to a patient becomes a registered, signed ordonnance.

The doctor writes to the patient's address with the prescription as the mail form in the body,
a CDA attachment, or an XDM package from their software. In the pool the worker builds (or
reads) the prescription, assigns its identifier, renders the PDF, builds the CDA with the PDF
and QR code embedded, packs and signs it with the doctor's signature certificate, then
registers it and files it in the DMP in one unit of work (one commit), and writes the messages: the
patient's (MSSanté format), the doctor's receipt, and an MDN when asked. A prescription the
gateway cannot accept changes nothing and goes back to the doctor with the reasons.

Idempotent: the (sender, Message-ID, patient) key is stored in the same transaction as the
registration, so a client retrying after a 451 gets the same ordonnance again instead of a
second one (the PDF is deterministic, so the messages are rebuilt from the registered package).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from gateway import metrics
from gateway.dmp.feed import QUALIFIED_INS_ROOTS, file_package
from gateway.dmp.model import Actor, ActorKind
from gateway.documents import validator
from gateway.documents.build import assign_ids, prescription_document
from gateway.documents.model import Prescription
from gateway.documents.parse import parse_prescription
from gateway.documents.validate import Kit, check_incoming, national_findings
from gateway.documents.validate import Refused as DocumentRefused
from gateway.errors import GatewayError
from gateway.flows import mail, remote
from gateway.flows.common import (
    PRESCRIPTION_CODE,
    Plan,
    apply,
    idempotence_key,
    is_xml,
    kind_of_cda,
    packages,
    prescription_cda,
)
from gateway.flows.context import ACTOR, Context, now
from gateway.flows.filing import file_packages, may_hold_package, not_filed_notice, relayed
from gateway.ordonnance import qr_png, render_pdf
from gateway.pipeline import Delivery, Message, Outcome, Pipeline
from gateway.prescriptions import checks
from gateway.prescriptions.checks import check_prescription, patient_notice
from gateway.prescriptions.identifier import group
from gateway.prescriptions.prescriber import Prescriber
from gateway.signature.trust import signed_as
from gateway.xdm import Limits, Package, Sender
from gateway.xdm.package import build, to_zip

_FORM_PATIENT = re.compile(r"(?im)^\s*patient(e)?\s*:")


class Refused(GatewayError):
    """The prescription cannot be accepted; `report` says why, line by line, in French."""

    def __init__(self, report: str) -> None:
        self.report = report
        super().__init__(report.splitlines()[0] if report else "refused")


@dataclasses.dataclass(frozen=True)
class Source:
    kind: str  # "form", "cda", "xdm"
    text: str = ""
    data: bytes = b""


def find_source(msg: mail.Message, limits: Limits) -> Source | None:
    """Where the prescription is in the doctor's message, or None (an ordinary mail)."""
    files = mail.attachments(msg)
    for _a, pkg in packages(files, limits):
        if isinstance(pkg, str):
            raise Refused(f"le paquet IHE_XDM.zip joint est refusé : {pkg}")
        for doc in pkg.content:
            if kind_of_cda(doc.data) == "prescription":
                return Source("xdm", data=doc.data)
    for a in files:
        if is_xml(a) and kind_of_cda(a.data) == "prescription":
            return Source("cda", data=a.data)
    for text in mail.texts(msg):
        if _FORM_PATIENT.search(text):
            return Source("form", text=text)
    return None


def _prescription(ctx: Context, source: Source, sender: str, when: dt.datetime,
                  patient_address: str) -> tuple[Prescription, tuple[str, ...]]:
    """The prescription, and what the national layers say of a document from outside."""
    if source.kind == "form":
        from gateway.documents.form import FormError, parse_prescription_form

        # The patient's identity traits in lines of their own: a patient elsewhere is in no
        # directory of ours (remote.form_people), one of ours must agree with it.
        text, people, found = remote.form_people(ctx, source.text, patient_address)
        try:
            p = parse_prescription_form(text, people=people, drugs=ctx.drugs,
                                        sender=sender, now=when)
        except FormError as exc:
            found += exc.problems
        if found:
            raise Refused(remote.refusal_report(found)) from None
        return p, ()
    try:
        # The schema, the volet of its declared version and the own rules: errors refuse (a
        # warning never refuses what official software writes); the generic layers report.
        report = check_incoming(source.data, Kit.of(ctx.config), ctx.drugs,
                                generic=validator.for_config(ctx.config))
        return parse_prescription(source.data), tuple(
            f"contrôle national CI-SIS {f}" for f in national_findings(report))
    except DocumentRefused as exc:
        raise Refused("le document CDA joint n'est pas valide :\n" + exc.report()) from None
    except GatewayError as exc:
        raise Refused(f"le document CDA joint ne peut pas être lu : {exc}") from None


def _check_conditions(ctx: Context, p: Prescription, sender: str) -> tuple[str, ...]:
    """The drug database's prescribing conditions for this prescriber: refused (Refused, with
    every refusal) or accepted with the warnings for the doctor's receipt."""
    doctor = ctx.mailbox(sender)
    if doctor is None:
        return ()
    prescriber = Prescriber.from_mailbox(doctor, ctx.structure_of(doctor))
    findings = check_prescription(p, prescriber, ctx.drugs)
    refused = checks.refusals(findings)
    if refused:
        raise Refused(checks.report(refused))
    return tuple(str(f) for f in checks.warnings(findings))


def _check_people(ctx: Context, p: Prescription, sender: str, patient_address: str) -> None:
    doctor = ctx.mailbox(sender)
    if doctor is None or doctor.professional is None:
        raise Refused("seul un professionnel de santé enregistré peut prescrire ici")
    pro = doctor.professional
    if p.author.rpps != pro.rpps and (p.author.email or "").lower() != sender:
        raise Refused(
            f"le prescripteur de l'ordonnance ({p.author.given_name} {p.author.family_name},"
            f" identifiant {p.author.national_id}) n'est pas vous ({doctor.display_name}) :"
            " on ne prescrit que sous son propre nom"
        )
    patient = ctx.mailbox(patient_address)
    if patient is None and remote.is_remote_patient(ctx.config, patient_address):
        refusal = remote.check_patient(p, patient_address)  # a patient elsewhere
        if refusal:
            raise Refused(refusal)
        return
    if patient is None or patient.patient is None:
        raise Refused(f"{patient_address} n'est pas une messagerie de patient")
    if patient.patient.ins != p.patient.ins:
        raise Refused(
            f"l'ordonnance est au nom du patient INS {p.patient.ins}, mais vous l'adressez à"
            f" {patient_address} (INS {patient.patient.ins}) : une ordonnance va au patient"
            " qu'elle concerne"
        )


def subject_for(p: Prescription) -> str:
    label = p.title[:40]
    nom = mail.ascii_upper(p.patient.used_name or p.patient.birth_name)
    prenom = p.patient.given_names.split()[0] if p.patient.given_names else ""
    return f"XDM/1.0/DDM+{label} {nom} {prenom} {p.patient.birth_date:%d/%m/%Y}"


def ins_flag(p: Prescription) -> str:
    """`X-MSS-INS`: "O" when the document carries a qualified INS, else "N". The INS-NIR (and
    its test and demo roots) is the qualified identity; an NIA (a provisional number given
    while the identity is not yet verified) is not."""
    return "O" if in_dmp(p) else "N"


def in_dmp(p: Prescription) -> bool:
    """Whether the patient is named by a qualified INS, which both `X-MSS-INS: O` and filing in
    the DMP require (the DMP takes documents only for a qualified INS)."""
    return p.patient.ins_oid in QUALIFIED_INS_ROOTS and bool(p.patient.ins)


def pdf_name(p: Prescription, number: int = 1) -> str:
    nom = mail.ascii_name(mail.ascii_upper(p.patient.used_name or p.patient.birth_name))
    prenom = mail.ascii_name(p.patient.given_names.split()[0] if p.patient.given_names else "")
    return f"{p.day:%Y%m%d}_Prescription_{nom}_{prenom}_{number}.pdf"


def _patient_text(p: Prescription) -> str:
    a = p.author
    who = f"{a.title or 'Dr'} {a.given_name} {a.family_name}"
    lines = "\n".join(f"  {i}. {line.product.label}" for i, line in enumerate(p.lines, 1))
    return (
        f"Bonjour,\n\n{who} vous adresse votre ordonnance du {p.day:%d/%m/%Y}"
        f" (n° {group(p.identifier or '')}) :\n{lines}\n\n"
        "Vous trouverez ci-joint l'ordonnance au format PDF, à imprimer ou à présenter en"
        " pharmacie (le pharmacien lit le QR code), et le document signé (IHE_XDM.zip).\n"
        "Pour la faire délivrer sans papier, transférez ce message à la messagerie sécurisée"
        " de votre pharmacie.\n"
        f"Elle doit être présentée avant le {p.validity_end:%d/%m/%Y}."
        + (" Elle a été versée dans votre dossier médical partagé." if in_dmp(p) else "")
        + "\n\n"
        "Ce message contient des données de santé : ne le transférez qu'à des professionnels"
        " de santé.\n"
    )


def _doctor_text(p: Prescription, patient_address: str, filed: list[str], robot: str,
                 warnings: tuple[str, ...] = (), where: str = "") -> str:
    lines = "\n".join(
        f"  {i}. {line.product.label}" + (f" (CIS {line.product.cis})" if line.product.cis else "")
        for i, line in enumerate(p.lines, 1)
    )
    docs = "\n".join(f"  - {d}" for d in filed)
    notes = ("À noter (conditions de prescription de la base des médicaments) :\n"
             + "\n".join(f"  - {w}" for w in warnings) + "\n\n") if warnings else ""
    return (
        "Bonjour,\n\n"
        f"Votre ordonnance pour {p.patient.given_names} {p.patient.birth_name}"
        f" est enregistrée sous l'identifiant {group(p.identifier or '')}"
        f" ({p.identifier}).\n\n{lines}\n\n"
        f"Valable jusqu'au {p.validity_end:%d/%m/%Y} pour une première délivrance.\n"
        + (f"Elle a été signée avec votre certificat, envoyée à {patient_address} et versée"
           f" dans le DMP du patient (INS {p.patient.ins}) :\n{docs}\n\n" if in_dmp(p) else
           f"Elle a été signée avec votre certificat et envoyée à {patient_address}. Elle n'a"
           " pas été versée dans le DMP : le patient y est désigné par un identifiant"
           f" provisoire ({p.patient.ins}, identité non qualifiée), et le DMP n'accepte que"
           " l'INS qualifié.\n\n")
        + where
        + notes
        + "L'ordonnance PDF est jointe. Pour l'annuler, écrivez au service des ordonnances"
        f" ({robot}) : « Annulation : {p.identifier} ».\n"
    )


def _refusal_text(report: str) -> str:
    return (
        "Bonjour,\n\nVotre ordonnance n'a pas été acceptée : rien n'a été enregistré ni"
        " envoyé au patient.\n\n" + report + "\n\nCorrigez et renvoyez le message.\n"
    )


@dataclasses.dataclass(frozen=True)
class Built:
    prescription: Prescription
    pdf: bytes
    package: bytes
    filed: tuple[str, ...]
    warnings: tuple[str, ...] = ()


def _build(ctx: Context, p: Prescription, sender: str) -> tuple[Prescription, bytes, Package]:
    p = assign_ids(p)
    assert p.identifier
    pdf = render_pdf(p, patient_notice(p, ctx.drugs))
    cda, tree = prescription_document(p, pdf, qr_png(p.identifier))
    author = p.author
    package = build([cda], sender=Sender(name=f"{author.given_name} {author.family_name}",
                                         product=ctx.config.gateway.product), trees=[tree],
                    metadata=False)  # signed_as writes METADATA.XML once, signature included
    return p, pdf, signed_as(ctx.config, sender, package, ctx.directory, ctx.certificates)


def _again(ctx: Context, identifier: str, sender: str) -> Built:
    """The ordonnance registered for this message already (a retried message)."""
    package = ctx.registry.package(identifier, actor=sender) or b""
    cda = prescription_cda(package, Limits.of(ctx.config))
    assert cda is not None, "the gateway registered this package with its prescription"
    p = parse_prescription(cda)
    entries = ctx.dmp.find(p.patient.ins, actor=Actor(ActorKind.GATEWAY, ACTOR))
    filed = tuple(e.metadata.unique_id for e in entries
                  if e.metadata.prescription_id == identifier)
    try:
        warnings = _check_conditions(ctx, p, sender)
    except Refused:  # accepted when registered; the reference changed since
        warnings = ()
    return Built(p, render_pdf(p, patient_notice(p, ctx.drugs)), package, filed, warnings)


def _register(ctx: Context, key: str, source: Source, sender: str, patient_address: str,
              when: dt.datetime) -> Built:
    known = ctx.records.prescribed.identifier_for(key)
    if known is not None:
        return _again(ctx, known, sender)
    p, national = _prescription(ctx, source, sender, when, patient_address)
    _check_people(ctx, p, sender, patient_address)
    warnings = _check_conditions(ctx, p, sender) + national
    try:
        p, pdf, pkg = _build(ctx, p, sender)
    except GatewayError as exc:  # e.g. no valid signature certificate for the doctor
        raise Refused(f"l'ordonnance n'a pas pu être établie et signée : {exc}") from None
    signed = to_zip(pkg)
    assert p.identifier
    try:
        # The registration, the DMP filing and the idempotence key: one commit (and the
        # registry's and the DMP's audit entries written together, one fsync, before it).
        with ctx.records.unit() as uow:
            uow.registry.register(p, prescriber_address=sender, patient_address=patient_address,
                                  package=signed, actor=sender, now=when)
            entries = file_package(uow.dmp, pkg, actor=Actor(ActorKind.GATEWAY, ACTOR),
                                   author_address=sender, submitter_address=sender,
                                   prescription_id=p.identifier) if in_dmp(p) else []
            uow.prescribed.add(key, p.identifier)
    except GatewayError as exc:  # the registry or the DMP refuses (e.g. an identifier reused)
        raise Refused(f"l'ordonnance n'a pas pu être enregistrée : {exc}") from None
    metrics.prescription("registered")
    return Built(p, pdf, signed, tuple(e.metadata.unique_id for e in entries), warnings)


def handle(ctx: Context, sender: str, patients: tuple[str, ...], data: bytes) -> Plan | None:
    """Worker side (process pool). None: not a prescription, deliver unchanged."""
    config = ctx.config
    domain = config.gateway.domain
    product = config.gateway.product
    msg = mail.parse(data)
    original_id = mail.message_id_of(msg)
    receipt_to = mail.disposition_to(msg)
    try:
        source = find_source(msg, Limits.of(config))
        if source is None:  # an ordinary mail; its structured documents go to the DMP too
            notices = [not_filed_notice(ctx, msg, sender, patient,
                                        file_packages(ctx, msg, sender, patient))
                       for patient in patients]
            told = tuple(n for n in notices if n is not None)
            return Plan(deliveries=told, notes=("packages not filed",)) if told else None
        if len(patients) > 1:
            raise Refused("une ordonnance concerne un seul patient : envoyez un message par"
                          f" patient (destinataires : {', '.join(patients)})")
        patient = patients[0]
        key = idempotence_key(sender, original_id or mail.idempotence_fallback(data), patient)
        built = _register(ctx, key, source, sender, patient, now())
    except Refused as exc:
        # Who was refused and why, for the administrators (the console's dashboard counts them).
        metrics.prescription("refused")
        ctx.audit.record(sender, "prescription.refuse", patients[0] if patients else "",
                         {"reason": exc.report.splitlines()[0][:300] if exc.report else "refused"})
        reply = mail.compose(
            sender=ctx.robot, to=[sender], domain=domain, in_reply_to=original_id,
            subject="Ordonnance refusée : " + mail.header(msg, "Subject")[:80],
            body=_refusal_text(exc.report), headers=[("X-MSS-NIL", product)],
        )
        out = [Delivery((sender,), reply, sender="")]
        if receipt_to:
            out.append(Delivery((receipt_to,), mail.mdn(
                msg, reporter=ctx.robot, recipient=patients[0], to=receipt_to, domain=domain,
                product=product, error=(900, "ordonnance refusée")), sender=""))
        return Plan(handled=patients, deliveries=tuple(out), notes=(exc.report,))
    p = built.prescription
    pdf = mail.Attachment(pdf_name(p), "application/pdf", built.pdf)
    xdm = mail.Attachment("IHE_XDM.zip", "application/zip", built.package)
    to_patient = mail.compose(
        sender=sender, to=[patient], subject=subject_for(p), domain=domain,
        body=_patient_text(p), files=[pdf, xdm],
        headers=[("X-MSS-CODECDA", PRESCRIPTION_CODE), ("X-MSS-INS", ins_flag(p)),
                 ("X-MSS-NIL", product), ("X-Ordonnance-Id", p.identifier or "")],
    )
    to_doctor = mail.compose(
        sender=ctx.robot, to=[sender], domain=domain, in_reply_to=original_id,
        subject=f"Ordonnance {p.identifier} enregistrée pour {p.patient.birth_name}",
        body=_doctor_text(p, patient, list(built.filed), ctx.robot, built.warnings,
                          remote.delivery_note(config, patient)),
        files=[pdf],
        headers=[("X-MSS-NIL", product), ("X-Ordonnance-Id", p.identifier or "")],
    )
    out = [
        Delivery((patient,), to_patient),
        Delivery((sender,), to_doctor, sender=""),
    ]
    if receipt_to:
        out.append(Delivery((receipt_to,), mail.mdn(
            msg, reporter=ctx.robot, recipient=patient, to=receipt_to, domain=domain,
            product=product), sender=""))
    return Plan(handled=patients, deliveries=tuple(out), notes=(f"prescription {p.identifier}",))


async def step(pipeline: Pipeline, message: Message, outcome: Outcome) -> Outcome:
    """Pipeline step: a professional's submission to one or more patients; a trust-space
    peer's mail to our patients (its packages filed, see `filing.relayed`)."""
    config = pipeline.config
    suffix = "@" + config.gateway.patient_domain
    patients = tuple(r for r in message.recipients if r.endswith(suffix))
    if message.channel == "relay":
        if patients and message.sender and may_hold_package(message.data):
            await pipeline.run_flow(relayed, message.sender, patients, message.data)
        return outcome
    if message.channel != "submission" or not message.authenticated:
        return outcome
    # Patients another operator hosts: the ordonnance is made here and leaves by the queue.
    patients += tuple(r for r in message.recipients if remote.is_remote_patient(config, r))
    if not patients:
        return outcome
    plan = await pipeline.run_flow(handle, message.authenticated.lower(), patients,
                                   message.data)
    return apply(message, outcome, plan)
