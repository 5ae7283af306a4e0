"""The prescription journey end to end, through the real SMTP and IMAP listeners over TLS."""

from __future__ import annotations

import io
import re
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from tests.journey_helpers import (
    DOCTOR,
    PATIENT,
    PHARMACIST,
    PHARMACY,
    ROBOT,
    Gateway,
    attachment,
    form_message,
    make_home,
    running,
    text_of,
)

FORM = """Bonjour,

Patient : INS 279035121518989
1. DOLIPRANE 1000 mg, comprimé ; 1 comprimé 3 fois par jour pendant 5 jours ; 2 boîtes
2. CIS 65143010 ; 1 comprimé le matin pendant 30 jours ; 1 boîte ; à renouveler 1 fois

Cordialement
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, _gateway_template: Path,
         shared_dir: Path, validator_socket: Path) -> Path:
    """Documents from outside go through every layer, as in production: the generic ones in
    the session's validator process (already compiled: a reply does not wait for it)."""
    home = make_home(_gateway_template, tmp_path_factory.mktemp("journey") / "gw", shared_dir)
    cfg = home / "config.toml"
    cfg.write_text(cfg.read_text().replace(
        'incoming_layers = "model"',
        f'incoming_layers = "all"\nvalidator_socket = "{validator_socket}"'))
    return home


@pytest.fixture(scope="module")
def gw(home: Path):  # noqa: ANN201
    with running(home) as gateway:
        yield gateway


def qr_text(pdf: bytes) -> str:
    import pypdfium2
    import zxingcpp

    doc = pypdfium2.PdfDocument(pdf)
    image = doc[0].render(scale=3).to_pil()
    found = [r.text for r in zxingcpp.read_barcodes(image)
             if r.format == zxingcpp.BarcodeFormat.QRCode]
    doc.close()
    assert found, "no QR code found on the first page"
    return found[0]


def prescribe(gw: Gateway, body: str = FORM, **headers: str) -> None:
    gw.send(DOCTOR, form_message(DOCTOR, PATIENT, body, **headers))


def test_doctor_to_patient(gw: Gateway) -> None:
    from gateway.signature.trust import check_package

    before_patient = len(gw.fetch_all(PATIENT))
    before_doctor = len(gw.fetch_all(DOCTOR))
    prescribe(gw, Disposition_Notification_To=DOCTOR)
    got = gw.wait_for(PATIENT, before_patient + 1)
    msg = got[-1]
    assert msg["Subject"].startswith("XDM/1.0/DDM+Prescription de produits de santé DUPONT Chloé")
    assert msg["Subject"].endswith("15/03/1979")
    assert msg["X-MSS-CODECDA"] == "57833-6" and msg["X-MSS-INS"] == "O"
    assert msg["X-MSS-NIL"]
    pdf = attachment(msg, ".pdf")
    names = [p.get_filename() for p in msg.iter_attachments()]
    assert any(re.fullmatch(r"\d{8}_Prescription_DUPONT_Chloe_1\.pdf", n or "") for n in names)
    identifier = qr_text(pdf)
    assert re.fullmatch(r"[0-9A-Z]{18}", identifier)
    verification = check_package(gw.config, attachment(msg, "IHE_XDM.zip"))
    assert verification.valid, verification.reason
    assert "MARTIN" in (verification.signer or "").upper()
    doctor = gw.wait_for(DOCTOR, before_doctor + 2)
    receipt = [m for m in doctor if identifier in str(m["Subject"])]
    assert receipt and identifier in text_of(receipt[0])
    mdns = [m for m in doctor if m.get_content_type() == "multipart/report"]
    assert mdns, "an MDN was asked for"
    assert "processed" in mdns[-1].as_string()


def latest_ordonnance(gw: Gateway) -> tuple[EmailMessage, str]:
    """Prescribe, then the patient's new message and its identifier."""
    before = len(gw.fetch_all(PATIENT))
    prescribe(gw)
    msg = gw.wait_for(PATIENT, before + 1)[-1]
    return msg, str(msg["X-Ordonnance-Id"])


def forward(gw: Gateway, original: EmailMessage, *, inline: bool = False,
            body: str = "Bonjour, voici mon ordonnance.\n") -> EmailMessage:
    """The patient forwards to the pharmacy (as an attachment, or inline as many clients do);
    the pharmacy's new message."""
    fwd = EmailMessage()
    fwd["From"] = PATIENT
    fwd["To"] = PHARMACY
    fwd["Subject"] = "Fwd: " + str(original["Subject"])
    fwd["Message-ID"] = make_msgid(domain="patient.test")
    if inline:
        fwd.set_content(body + "\n---------- Message transféré ----------\n" + text_of(original))
        for part in original.iter_attachments():
            fwd.add_attachment(part.get_payload(decode=True), maintype="application",
                               subtype=part.get_content_subtype(), filename=part.get_filename())
    else:
        fwd.set_content(body)
        fwd.add_attachment(original)
    before = len(gw.fetch_all(PHARMACY))
    gw.send(PATIENT, fwd)
    return gw.wait_for(PHARMACY, before + 1)[-1]


def test_forward_to_pharmacy_is_valid(gw: Gateway) -> None:
    msg, identifier = latest_ordonnance(gw)
    got = forward(gw, msg)
    assert str(got["X-Ordonnance-Verification"]).strip().startswith(f"valid; id={identifier};")
    assert "VALIDE" in text_of(got) and "reste 2 boîte" in text_of(got)
    inline = forward(gw, msg, inline=True)
    assert str(inline["X-Ordonnance-Verification"]).strip().startswith(f"valid; id={identifier};")


def test_forged_verdict_header_is_removed(gw: Gateway) -> None:
    before = len(gw.fetch_all(PHARMACY))
    gw.send(PATIENT, form_message(PATIENT, PHARMACY, "Bonjour, avez-vous du paracétamol ?\n",
                                  subject="Question",
                                  X_Ordonnance_Verification="valid; id=X; reason=forged"))
    got = gw.wait_for(PHARMACY, before + 1)[-1]
    assert got["Subject"] == "Question"
    assert got["X-Ordonnance-Verification"] is None


def test_altered_package_is_invalid(gw: Gateway) -> None:
    msg, identifier = latest_ordonnance(gw)
    package = attachment(msg, "IHE_XDM.zip")
    altered = zipfile_replace(package, b"DOLIPRANE", b"DOLIPRANF")
    for part in msg.iter_attachments():
        if part.get_filename() == "IHE_XDM.zip":
            part.set_content(altered, maintype="application", subtype="zip",
                             filename="IHE_XDM.zip")
    before = len(gw.fetch_all(PATIENT))
    got = forward(gw, msg)
    assert str(got["X-Ordonnance-Verification"]).strip().startswith("invalid;")
    notice = gw.wait_for(PATIENT, before + 1)[-1]
    assert "pas valide" in text_of(notice)


def test_cancelled_is_invalid(gw: Gateway) -> None:
    from gateway.cli import main

    msg, identifier = latest_ordonnance(gw)
    assert main(["prescriptions", "cancel", identifier, "--by", DOCTOR, "--reason", "erreur",
                 "--config", str(gw.config.home / "config.toml")]) == 0
    got = forward(gw, msg)
    verdict = str(got["X-Ordonnance-Verification"]).strip()
    assert verdict.startswith(f"invalid; id={identifier}; reason=")
    assert "cancel" in verdict


def dispense(gw: Gateway, identifier: str, lines: str, sender: str = PHARMACIST,
             to: str = ROBOT) -> EmailMessage:
    """The pharmacist mails the dispensation form; the reply they get."""
    before = len(gw.fetch_all(sender))
    gw.send(sender, form_message(sender, to, f"Ordonnance : {identifier}\n{lines}",
                                 subject="Délivrance"))
    return gw.wait_for(sender, before + 1)[-1]


def test_dispense_part_then_rest_then_refused(gw: Gateway) -> None:
    msg, identifier = latest_ordonnance(gw)
    doctor_before = len(gw.fetch_all(DOCTOR))
    patient_before = len(gw.fetch_all(PATIENT))
    first = dispense(gw, identifier, "1 : délivré ; 1 boîte\n2 : délivré ; 1 boîte")
    assert "enregistrée" in str(first["Subject"]), text_of(first)
    assert "reste 1 boîte" in text_of(first)
    second = dispense(gw, identifier, "1 : délivré ; 1 boîte\n2 : délivré ; 1 boîte")
    assert "enregistrée" in str(second["Subject"]), text_of(second)
    assert "dispensed" in text_of(second)
    third = dispense(gw, identifier, "1 : délivré ; 1 boîte")
    assert "refusée" in str(third["Subject"])
    assert "déjà entièrement délivrée" in text_of(third)
    reports = gw.wait_for(DOCTOR, doctor_before + 2)[doctor_before:]
    assert [identifier in str(m["Subject"]) for m in reports] == [True, True]
    assert all(attachment(m, "IHE_XDM.zip") for m in reports)
    copies = gw.wait_for(PATIENT, patient_before + 2)[patient_before:]
    assert len(copies) == 2
    verdict = str(forward(gw, msg)["X-Ordonnance-Verification"]).strip()
    assert verdict == f"invalid; id={identifier}; reason=fully-dispensed", verdict


def test_edisp_cda_attachment_is_recorded(gw: Gateway) -> None:
    import dataclasses
    from decimal import Decimal

    from gateway.documents import samples
    from gateway.documents.build import assign_dispensation_ids, build_dispensation
    from gateway.documents.model import DispensedLine, DispensingKind

    _msg, identifier = latest_ordonnance(gw)
    sample = samples.dispensation(prescription_id=identifier)
    edisp = build_dispensation(assign_dispensation_ids(dataclasses.replace(
        sample, lines=(DispensedLine("1", sample.lines[0].product, Decimal(1),
                                     DispensingKind.SUBSTITUTED, reason="générique"),))))
    msg = form_message(PHARMACIST, ROBOT, "Délivrance ci-jointe.\n", subject="Délivrance")
    msg.add_attachment(edisp, maintype="text", subtype="xml", filename="dispensation.xml")
    before = len(gw.fetch_all(PHARMACIST))
    gw.send(PHARMACIST, msg)
    reply = gw.wait_for(PHARMACIST, before + 1)[-1]
    assert "enregistrée" in str(reply["Subject"]), text_of(reply)
    assert "reste 1 boîte" in text_of(reply)


def test_official_edisp_linked_by_its_prescription_document_is_recorded(
        gw: Gateway, shared_dir: Path) -> None:
    """The official eDISP model: the prescription is named by its document id only
    (inFulfillmentOf/order/id; serviceEvent/id is the dispensation's own id), the author is
    the Dossier Pharmaceutique system and the pharmacist is the serviceEvent's performer. The
    official example, pointed at a prescription this gateway registered, is recorded."""
    from lxml import etree

    from gateway.documents.cda import XP
    from gateway.documents.parse import parse_prescription
    from gateway.flows.common import prescription_cda
    from gateway.xdm import Limits

    msg, identifier = latest_ordonnance(gw)
    cda = prescription_cda(attachment(msg, ".zip"), Limits())
    assert cda is not None
    prescription = parse_prescription(cda)
    root = etree.fromstring((shared_dir / "ci-sis/ExemplesCDA/eDISP-MED_2024.01.xml")
                            .read_bytes())
    entries = root.xpath("//c:section/c:entry", namespaces=XP)
    entries[1].getparent().remove(entries[1])  # the magistral line: ours has none
    root.xpath("c:inFulfillmentOf/c:order/c:id", namespaces=XP)[0].set(
        "root", prescription.document_id)
    patient = root.xpath("c:recordTarget/c:patientRole/c:id", namespaces=XP)[0]
    patient.set("root", "1.2.250.1.213.1.4.10")  # the demo patient's test INS
    patient.set("extension", prescription.patient.ins)
    for ref in root.xpath("//c:substanceAdministration[c:templateId/@root="
                          "'1.3.6.1.4.1.19376.1.9.1.3.11']/c:id", namespaces=XP):
        ref.set("root", prescription.lines[0].line_id)
    edisp = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    assert b"01S" not in edisp.split(b"<component>")[0]  # no e-prescription id in the header
    mail = form_message(PHARMACIST, ROBOT, "Délivrance ci-jointe.\n", subject="Délivrance")
    mail.add_attachment(edisp, maintype="text", subtype="xml", filename="eDISP.xml")
    before = len(gw.fetch_all(PHARMACIST))
    gw.send(PHARMACIST, mail)
    reply = gw.wait_for(PHARMACIST, before + 1)[-1]
    assert f"Délivrance enregistrée : ordonnance {identifier}" in str(reply["Subject"]), \
        text_of(reply)
    assert "substitué" in text_of(reply)
    # Every layer ran on it (the generic ones in the validator process): the one StrucMin
    # assert the official example fails (a spouse name) is told, not a refusal.
    assert "contrôle national CI-SIS StrucMin [error] /ClinicalDocument/recordTarget/" \
        "patientRole/patient/name" in text_of(reply), text_of(reply)


def test_cli_dispense_writes_signs_and_files_the_edisp(gw: Gateway, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    """An administrator's correction leaves the trace a pharmacy's mail does: the eDISP built
    from the registered prescription, signed, recorded and filed in the patient's DMP."""
    import json

    from gateway.cli import main
    from gateway.documents.model import DispensingKind
    from gateway.documents.parse import parse_document

    _msg, identifier = latest_ordonnance(gw)
    cfg = str(gw.config.home / "config.toml")
    assert main(["prescriptions", "dispense", identifier, "--pharmacy", PHARMACIST, "1=1",
                 "2=1", "--partial", "1=le reste demain", "--json", "--config", cfg]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["applied"] and result["edisp"] and result["filed_in_dmp"], result
    assert main(["dmp", "list", "--patient", "279035121518989", "--class", "43", "--json",
                 "--config", cfg]) == 0
    filed = [e for e in json.loads(capsys.readouterr().out)
             if e["prescription_id"] == identifier]
    assert len(filed) == 1, filed
    out = tmp_path / "edisp.xml"
    assert main(["dmp", "get", filed[0]["unique_id"], "-o", str(out),
                 "--signature", str(tmp_path / "sig.xml"), "--config", cfg]) == 0
    edisp = parse_document(out.read_bytes()).dispensation
    assert edisp is not None and edisp.prescription_id == identifier
    assert [(ln.kind, ln.reason) for ln in edisp.lines] == [
        (DispensingKind.PARTIAL, "le reste demain"), (DispensingKind.DELIVERED, None)]
    assert b"SignatureValue" in (tmp_path / "sig.xml").read_bytes()


def test_patient_objection_means_no_report(gw: Gateway) -> None:
    msg, identifier = latest_ordonnance(gw)
    got = forward(gw, msg, body="Bonjour, je m'oppose à ce que mon médecin soit informé.\n")
    assert "valid;" in str(got["X-Ordonnance-Verification"])
    doctor_before = len(gw.fetch_all(DOCTOR))
    reply = dispense(gw, identifier, "1 : délivré ; 2 boîtes")
    assert "enregistrée" in str(reply["Subject"]), text_of(reply)
    assert len(gw.fetch_all(DOCTOR)) == doctor_before


def test_over_dispensing_is_refused(gw: Gateway) -> None:
    _msg, identifier = latest_ordonnance(gw)
    reply = dispense(gw, identifier, "1 : délivré ; 5 boîtes")
    assert "refusée" in str(reply["Subject"])


def test_non_pharmacy_cannot_dispense(gw: Gateway) -> None:
    _msg, identifier = latest_ordonnance(gw)
    reply = dispense(gw, identifier, "1 : délivré ; 1 boîte", sender=DOCTOR)
    assert "refusée" in str(reply["Subject"])
    assert "pharmacien" in text_of(reply)


def test_cancel_by_mail(gw: Gateway) -> None:
    msg, identifier = latest_ordonnance(gw)
    before = len(gw.fetch_all(DOCTOR))
    gw.send(DOCTOR, form_message(DOCTOR, ROBOT, f"Annulation : {identifier}\n",
                                 subject="Annulation"))
    reply = gw.wait_for(DOCTOR, before + 1)[-1]
    assert "est annulée" in text_of(reply)
    verdict = forward(gw, msg)
    assert "invalid" in str(verdict["X-Ordonnance-Verification"])


def zipfile_replace(package: bytes, old: bytes, new: bytes) -> bytes:
    """The package with `old` replaced in its prescription document (hashes left as they were:
    what a forger editing the ZIP would do)."""
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(package))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("DOC0001.XML"):
                assert old in data
                data = data.replace(old, new)
            dst.writestr(info, data)
    return out.getvalue()


def consistent_replace(package: bytes, old: bytes, new: bytes) -> bytes:
    """As zipfile_replace, with METADATA.XML's size and SHA-1 of the document brought along
    (so the package itself reads; only its signature no longer matches)."""
    import hashlib
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(package))
    name = next(n for n in src.namelist() if n.endswith("DOC0001.XML"))
    before = src.read(name)
    after = before.replace(old, new)
    assert after != before
    swaps = [(hashlib.sha1(before).hexdigest(), hashlib.sha1(after).hexdigest()),
             (f">{len(before)}<", f">{len(after)}<")]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == name:
                data = after
            elif info.filename.endswith("METADATA.XML"):
                for a, b in swaps:
                    for a_, b_ in ((a, b), (a.upper(), b.upper())):
                        data = data.replace(a_.encode(), b_.encode())
            dst.writestr(info, data)
    return out.getvalue()


def test_expired_is_invalid(gw: Gateway) -> None:
    before = len(gw.fetch_all(PATIENT))
    prescribe(gw, FORM.replace("Patient :", "Date : 01/01/2026\nPatient :"))
    msg = gw.wait_for(PATIENT, before + 1)[-1]
    identifier = str(msg["X-Ordonnance-Id"])
    verdict = str(forward(gw, msg)["X-Ordonnance-Verification"]).strip()
    assert verdict.startswith(f"invalid; id={identifier}; reason=expired"), verdict


def test_cda_attachment_from_the_doctors_software(gw: Gateway, tmp_path: Path) -> None:
    from gateway.cli import main

    form, cda = tmp_path / "form.txt", tmp_path / "ordonnance.xml"
    form.write_text(FORM)
    assert main(["cda", "build", str(form), "-o", str(cda), "--sender", DOCTOR,
                 "--config", str(gw.config.home / "config.toml")]) == 0
    msg = form_message(DOCTOR, PATIENT, "Bonjour, votre ordonnance.\n")
    msg.add_attachment(cda.read_bytes(), maintype="text", subtype="xml",
                       filename="ordonnance.xml")
    before = len(gw.fetch_all(PATIENT))
    gw.send(DOCTOR, msg)
    got = gw.wait_for(PATIENT, before + 1)[-1]
    assert str(got["Subject"]).startswith("XDM/1.0/DDM+")
    identifier = str(got["X-Ordonnance-Id"])
    assert qr_text(attachment(got, ".pdf")) == identifier
    # The same document in another mail: already registered, refused, not delivered again.
    del msg["Message-ID"]
    msg["Message-ID"] = make_msgid(domain="client.test")
    doctor = len(gw.fetch_all(DOCTOR))
    gw.send(DOCTOR, msg)
    refusal = gw.wait_for(DOCTOR, doctor + 1)[-1]
    assert "refusée" in str(refusal["Subject"]) and identifier in text_of(refusal)
    assert len(gw.fetch_all(PATIENT)) == before + 1


def test_cda_from_outside_with_errors_is_refused_with_each(gw: Gateway, tmp_path: Path
                                                            ) -> None:
    """A document from a doctor's software goes through the schema, its volet and the own
    rules before anything is registered: each error is in the refusal, with its layer and
    where it is; nothing reaches the patient."""
    from gateway.cli import main

    form, cda = tmp_path / "form.txt", tmp_path / "ordonnance.xml"
    form.write_text(FORM)
    assert main(["cda", "build", str(form), "-o", str(cda), "--sender", DOCTOR,
                 "--config", str(gw.config.home / "config.toml")]) == 0
    data = cda.read_bytes().replace(b'extension="279035121518989"',
                                    b'extension="279035121518988"')  # a wrong INS key
    data = re.sub(rb'<code code="57833-6"[^>]*/>', b"", data, count=1)  # no document code
    msg = form_message(DOCTOR, PATIENT, "Bonjour, votre ordonnance.\n")
    msg.add_attachment(data, maintype="text", subtype="xml", filename="ordonnance.xml")
    patient, doctor = len(gw.fetch_all(PATIENT)), len(gw.fetch_all(DOCTOR))
    gw.send(DOCTOR, msg)
    refusal = gw.wait_for(DOCTOR, doctor + 1)[-1]
    text = text_of(refusal)
    assert "refusée" in str(refusal["Subject"]) and "n'est pas valide" in text, text
    assert "[schema]" in text and "[rules] /ClinicalDocument/recordTarget/patientRole" in text
    assert "INS key does not match" in text
    assert len(gw.fetch_all(PATIENT)) == patient


def test_provisional_identity_is_not_a_qualified_ins(gw: Gateway, tmp_path: Path) -> None:
    """MSSanté: `X-MSS-INS: O` only with a qualified INS; a document naming the patient by an
    NIA (provisional number, identity not yet verified) is delivered with `N`, and not filed in
    the DMP, which requires a qualified INS (cda.md)."""
    from gateway.cli import main
    from gateway.dmp import Actor, open_dmp

    form, cda = tmp_path / "form.txt", tmp_path / "ordonnance.xml"
    form.write_text(FORM)
    assert main(["cda", "build", str(form), "-o", str(cda), "--sender", DOCTOR,
                 "--config", str(gw.config.home / "config.toml")]) == 0
    data, n = re.subn(rb'root="1\.2\.250\.1\.213\.1\.4\.1[01]"( extension="279035121518989")',
                      rb'root="1.2.250.1.213.1.4.9"\1', cda.read_bytes())
    assert n == 1, "the patient's INS is in the document once"
    msg = form_message(DOCTOR, PATIENT, "Bonjour, votre ordonnance.\n")
    msg.add_attachment(data, maintype="text", subtype="xml", filename="ordonnance.xml")
    before = len(gw.fetch_all(PATIENT))
    doctor_before = len(gw.fetch_all(DOCTOR))
    gw.send(DOCTOR, msg)
    got = gw.wait_for(PATIENT, before + 1)[-1]
    assert str(got["Subject"]).startswith("XDM/1.0/DDM+") and got["X-MSS-INS"] == "N"
    # The DMP takes documents only for a qualified INS: registered and delivered, not filed,
    # and neither the patient nor the doctor is told otherwise.
    identifier = str(got["X-Ordonnance-Id"])
    assert "dossier médical partagé" not in text_of(got)
    receipt = [m for m in gw.wait_for(DOCTOR, doctor_before + 1)[doctor_before:]
               if identifier in str(m["Subject"])]
    assert receipt and "n'a pas été versée dans le DMP" in text_of(receipt[0])
    reply = dispense(gw, identifier, "1 : délivré ; 1 boîte")
    assert "enregistrée" in str(reply["Subject"]), text_of(reply)
    assert "non versée dans le DMP" in text_of(reply)
    dmp = open_dmp(gw.config)
    try:
        filed = dmp.find("279035121518989", actor=Actor.admin("test"))
    finally:
        dmp.close()
    assert [e for e in filed if e.metadata.prescription_id == identifier] == []


def test_same_dispensation_twice_is_recorded_once_and_said_so(gw: Gateway) -> None:
    msg, identifier = latest_ordonnance(gw)
    form = form_message(PHARMACIST, ROBOT, f"Ordonnance : {identifier}\n1 : délivré ; 1 boîte",
                        subject="Délivrance")
    before = len(gw.fetch_all(PHARMACIST))
    gw.send(PHARMACIST, form)
    gw.send(PHARMACIST, form)  # a client retrying after a lost answer
    first, second = gw.wait_for(PHARMACIST, before + 2)[before:]
    assert "enregistrée" in str(first["Subject"]) and "déjà reçue" not in text_of(first)
    assert "enregistrée" in str(second["Subject"]), text_of(second)
    assert "(déjà reçue)" in text_of(second)
    assert "different content" not in text_of(second)
    assert "reste 1 boîte" in text_of(second)  # counted once


def test_same_message_twice_registers_once(gw: Gateway) -> None:
    from gateway.prescriptions.registry import open_registry

    registry = open_registry(gw.config)
    try:
        before = len(registry.find(actor="test", patient_ins="279035121518989"))
        msg = form_message(DOCTOR, PATIENT, FORM)
        received = len(gw.fetch_all(PATIENT))
        gw.send(DOCTOR, msg)
        gw.send(DOCTOR, msg)  # a client retrying after a lost answer
        got = gw.wait_for(PATIENT, received + 2)[received:]
        assert len({str(m["X-Ordonnance-Id"]) for m in got}) == 1
        assert len(registry.find(actor="test", patient_ins="279035121518989")) == before + 1
    finally:
        registry.close()


def test_unknown_drug_is_explained_with_candidates(gw: Gateway) -> None:
    before_patient = len(gw.fetch_all(PATIENT))
    before_doctor = len(gw.fetch_all(DOCTOR))
    prescribe(gw, FORM.replace("DOLIPRANE 1000 mg, comprimé", "DOLIPRANE 3000 mg"))
    doctor = gw.wait_for(DOCTOR, before_doctor + 1)
    refusal = text_of(doctor[-1])
    assert "refusée" in str(doctor[-1]["Subject"])
    assert "ligne 4" in refusal and "DOLIPRANE 3000 mg" in refusal
    assert "CIS 6" in refusal  # candidates listed with their codes
    assert len(gw.fetch_all(PATIENT)) == before_patient


def test_invalid_ins_is_explained(gw: Gateway) -> None:
    before_patient = len(gw.fetch_all(PATIENT))
    before_doctor = len(gw.fetch_all(DOCTOR))
    prescribe(gw, FORM.replace("279035121518989", "279035121518988"))
    doctor = gw.wait_for(DOCTOR, before_doctor + 1)
    assert "INS" in text_of(doctor[-1]) and "ligne 3" in text_of(doctor[-1])
    assert len(gw.fetch_all(PATIENT)) == before_patient


def test_lab_report_package_is_delivered_and_filed(gw: Gateway, shared_dir: Path) -> None:
    from gateway.dmp import Actor, open_dmp
    from gateway.xdm import read_package

    package = (shared_dir / "xdm-examples/BIO-CR-BIO_2024.01_TSH_1/IHE_XDM.ZIP").read_bytes()
    unique_id = read_package(package).content[0].entry.unique_id
    msg = form_message(DOCTOR, PATIENT, "Bonjour, voici vos résultats.\n",
                       subject="Compte rendu de biologie")
    msg.add_attachment(package, maintype="application", subtype="zip", filename="IHE_XDM.zip")
    before = len(gw.fetch_all(PATIENT))
    gw.send(DOCTOR, msg)
    got = gw.wait_for(PATIENT, before + 1)[-1]
    assert got["Subject"] == "Compte rendu de biologie"
    assert attachment(got, "IHE_XDM.zip") == package
    dmp = open_dmp(gw.config)
    try:
        filed = dmp.find("279035121518989", actor=Actor.admin("test"))
    finally:
        dmp.close()
    assert unique_id in [e.metadata.unique_id for e in filed]


def _with_package(msg: EmailMessage, package: bytes) -> None:
    for part in msg.iter_attachments():
        if part.get_filename() == "IHE_XDM.zip":
            part.set_content(package, maintype="application", subtype="zip",
                             filename="IHE_XDM.zip")


def test_forward_with_a_doctype_in_its_cda_says_unchecked(gw: Gateway) -> None:
    msg, _ = latest_ordonnance(gw)
    package = attachment(msg, "IHE_XDM.zip")
    _with_package(msg, consistent_replace(package, b"<ClinicalDocument",
                                          b"<!DOCTYPE ClinicalDocument>\n<ClinicalDocument"))
    before = len(gw.fetch_all(PATIENT))
    got = forward(gw, msg)
    verdict = str(got["X-Ordonnance-Verification"]).strip()
    assert verdict.startswith("unchecked; id=none; reason=unreadable document"), verdict
    assert "NON VÉRIFIÉE" in text_of(got) and "n'a pas été vérifiée" in text_of(got)
    assert "non vérifiée" in str(got["Subject"])
    # unchecked is not invalid: the patient is not told their ordonnance is wrong
    assert len(gw.fetch_all(PATIENT)) == before


def test_forward_as_base64_message_part_is_checked(gw: Gateway) -> None:
    """swaks --attach and some webmails send the forwarded message base64-encoded."""
    import base64

    msg, identifier = latest_ordonnance(gw)
    fwd = EmailMessage()
    fwd["From"] = PATIENT
    fwd["To"] = PHARMACY
    fwd["Subject"] = "mon ordonnance"
    fwd["Message-ID"] = make_msgid(domain="patient.test")
    fwd.set_content("Bonjour, voici mon ordonnance.\n")
    part = EmailMessage()
    part["Content-Type"] = "message/rfc822"
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(base64.encodebytes(msg.as_bytes()).decode())
    fwd.make_mixed()
    fwd.attach(part)
    before = len(gw.fetch_all(PHARMACY))
    gw.send(PATIENT, fwd.as_bytes().replace(b"\n", b"\r\n"), to=[PHARMACY])
    got = gw.wait_for(PHARMACY, before + 1)[-1]
    verdict = str(got["X-Ordonnance-Verification"]).strip()
    assert verdict.startswith(f"valid; id={identifier};"), verdict


def test_forward_without_any_ordonnance_says_unchecked(gw: Gateway) -> None:
    fwd = form_message(PATIENT, PHARMACY, "Bonjour, voici la photo de mon ordonnance.\n",
                       subject="TR: ordonnance")
    before = len(gw.fetch_all(PHARMACY))
    gw.send(PATIENT, fwd)
    got = gw.wait_for(PHARMACY, before + 1)[-1]
    assert str(got["X-Ordonnance-Verification"]).strip() == \
        "unchecked; id=none; reason=no ordonnance found"
    assert "n'a pas été vérifiée" in text_of(got)


def test_ordinary_mail_is_delivered_unchanged(gw: Gateway) -> None:
    before = len(gw.fetch_all(PATIENT))
    gw.send(DOCTOR, form_message(DOCTOR, PATIENT, "Bonjour, vos résultats sont normaux.\n",
                                 subject="Résultats"))
    got = gw.wait_for(PATIENT, before + 1)
    assert got[-1]["Subject"] == "Résultats"
    assert "normaux" in text_of(got[-1])


