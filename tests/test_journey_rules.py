"""The prescribing and delivery conditions of the drug database, met as a doctor and a pharmacist
meet them: through the real SMTP and IMAP listeners, with real BDPM rows (a stupéfiant, a
specialist-only drug, a fractionated one, a hospital-only one...)."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway.identifiers import ins_key
from tests.journey_helpers import (
    DOCTOR,
    PATIENT,
    PHARMACIST,
    PHARMACY,
    ROBOT,
    Gateway,
    form_message,
    make_home,
    running,
    text_of,
)
from tests.smtp_helpers import PASSWORD

ROOT = Path(__file__).resolve().parent.parent

SKENAN = "61227030"  # SKENAN L.P. 10 mg: stupéfiants, limitée à 4 semaines, toutes lettres
SUBUTEX = "68945058"  # SUBUTEX 8 mg: délivrance fractionnée de 7 jours, limitée à 4 semaines
HUMIRA = "64783769"  # HUMIRA 40 mg stylo: six specialities ("spécialistes et services")
VENOFER = "60080232"  # réservé à l'usage HOSPITALIER
DEPAKINE = "60184188"  # initiale annuelle réservée à certains spécialistes, attestation
REFACTO = "60106606"  # PIH semestrielle, délivrance réservée aux pharmacies à usage intérieur
DOLIPRANE = "60234100"  # DOLIPRANE 1000 mg, comprimé: no condition
RHUMATOLOGUE = "dr.rhumato@test.localhost"
RELATIVE_INS = "1850675056123" + f"{ins_key('1850675056123'):02d}"  # the patient's husband
RELATIVE = f"{RELATIVE_INS}@patient.test.localhost"
HOSPITAL = "chu@test.localhost"


def _luhn_complete(body: str) -> str:
    for last in "0123456789":
        digits = [int(c) for c in body + last][::-1]
        total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2)
                    for i, d in enumerate(digits))
        if total % 10 == 0:
            return body + last
    raise AssertionError


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, _gateway_template: Path,
         shared_dir: Path) -> Path:
    from gateway.config import load_config
    from gateway.directory import open_directory
    from gateway.directory.model import Organisation, OrganisationKind, Patient, Professional
    from gateway.pki.ca import issue
    from gateway.pki.identity import identity_of

    home = make_home(_gateway_template, tmp_path_factory.mktemp("rules") / "gw", shared_dir)
    config = load_config(home / "config.toml")
    directory = open_directory(config, actor="test")
    directory.add_organisation(HOSPITAL, Organisation(
        finess=_luhn_complete("51000011"), siret=None, name="CHU de Reims",
        kind=OrganisationKind.HOSPITAL, address="45 rue Cognacq-Jay\n51100 Reims"))
    mailbox = directory.add_professional(RHUMATOLOGUE, Professional(
        rpps=_luhn_complete("1010099887"), adeli=None, family_name="ROUSSEAU",
        given_name="Anne", profession="10", specialty="SM48", structure=HOSPITAL,
        title="Dr", savoir_faire=("CAPA06",)))
    directory.set_password(RHUMATOLOGUE, PASSWORD)
    issue(config, "personal-sign", RHUMATOLOGUE, mailbox.display_name,
          identity=identity_of(mailbox))
    relative = directory.add_patient(Patient(
        ins=RELATIVE_INS, birth_name="DUPONT", given_names="Paul", sex="M",
        birth_date=dt.date(1985, 6, 2), birth_place="75056"))
    directory.set_password(relative.address, PASSWORD)
    directory.close()
    return home


@pytest.fixture(scope="module")
def gw(home: Path):  # noqa: ANN201
    with running(home) as gateway:
        yield gateway


def send_form(gw: Gateway, body: str, doctor: str = DOCTOR) -> EmailMessage:
    """The doctor mails the form to the patient; the gateway's answer to the doctor (receipt or
    refusal)."""
    before = len(gw.fetch_all(doctor))
    gw.send(doctor, form_message(doctor, PATIENT, body))
    got = gw.wait_for(doctor, before + 1)
    return got[-1]


def form(*lines: str, secured: bool = False, date: str | None = None) -> str:
    head = "Patient : INS 279035121518989\n"
    if secured:
        head += "Ordonnance sécurisée : oui\n"
    if date:
        head += f"Date : {date}\n"
    return head + "".join(f"{n}. {line}\n" for n, line in enumerate(lines, 1))


def assert_refused(reply: EmailMessage, *words: str) -> str:
    text = text_of(reply)
    assert "refusée" in str(reply["Subject"]), text
    for word in words:
        assert word in text, (word, text)
    return text


def test_stupefiant_needs_a_secured_ordonnance_and_its_limit(gw: Gateway) -> None:
    patient_before = len(gw.fetch_all(PATIENT))
    text = assert_refused(send_form(gw, form(
        f"CIS {SKENAN} ; 1 gélule matin et soir pendant 60 jours ; 4 boîtes")),
        "ligne 1 (SKENAN L.P. 10 mg", "ordonnance sécurisée", "« stupéfiants »",
        "Ordonnance sécurisée : oui", "60 jours dépasse la limite de 4 semaines",
        "« prescription limitée à 4 semaines »")
    assert "R5132-5" in text
    assert len(gw.fetch_all(PATIENT)) == patient_before  # nothing registered nor sent


def test_secured_ordonnance_wants_every_count_in_letters(gw: Gateway) -> None:
    assert_refused(send_form(gw, form(
        f"CIS {SKENAN} ; 1 gélule matin et soir pendant 28 jours ; 4 boîtes ;"
        " posologie : 1 gélule de plus si douleur", secured=True)),
        "« 1 gélule matin et soir pendant 28 jours »",
        "« une gélule matin et soir pendant vingt-huit jours »", "« quatre boîtes »",
        "posologie : une gélule de plus si douleur »", "R5132-29")


def test_renewals_count_in_the_limited_duration(gw: Gateway) -> None:
    assert_refused(send_form(gw, form(
        f"CIS {SUBUTEX} ; un comprimé par jour pendant vingt-huit jours ; quatre boîtes ;"
        " à renouveler une fois", secured=True)),
        "28 jours × 2 (avec 1 renouvellement) = 56 jours", "4 semaines")


def test_secured_example_passes(gw: Gateway) -> None:
    patient_before = len(gw.fetch_all(PATIENT))
    body = (ROOT / "examples/prescription-securisee.txt").read_text("utf-8")
    receipt = send_form(gw, body)
    assert "enregistrée" in str(receipt["Subject"]), text_of(receipt)
    got = gw.wait_for(PATIENT, patient_before + 1)[-1]
    assert str(got["Subject"]).startswith("XDM/1.0/DDM+")


def test_specialist_only_drug(gw: Gateway) -> None:
    text = assert_refused(send_form(gw, form(
        f"CIS {HUMIRA} ; posologie : une injection tous les quinze jours ; 2 boîtes")),
        "ligne 1 (HUMIRA 40 mg", "RHUMATOLOGIE", "Qualifié en Médecine générale",
        "« prescription réservée aux spécialistes et services RHUMATOLOGIE »")
    assert "ni le prescrire ni le renouveler" in text
    receipt = send_form(gw, form(
        f"CIS {HUMIRA} ; posologie : une injection tous les quinze jours ; 2 boîtes"),
        doctor=RHUMATOLOGUE)
    assert "enregistrée" in str(receipt["Subject"]), text_of(receipt)


def test_hospital_only_drug_is_refused_even_to_a_hospital_doctor(gw: Gateway) -> None:
    for doctor in (DOCTOR, RHUMATOLOGUE):
        assert_refused(send_form(gw, form(
            f"CIS {VENOFER} ; posologie : 5 ml en perfusion ; 1 boîte"), doctor=doctor),
            "ligne 1 (VENOFER", "pharmacie de ville", "« réservé à l'usage HOSPITALIER »")


def test_papers_the_gateway_cannot_see_are_warned(gw: Gateway) -> None:
    receipt = send_form(gw, form(
        f"CIS {DEPAKINE} ; 1 comprimé matin et soir pendant 30 jours ; 2 boîtes"))
    text = text_of(receipt)
    assert "enregistrée" in str(receipt["Subject"]), text
    assert "À noter" in text
    assert "ligne 1 (DEPAKINE 500 mg" in text
    assert "qu'en renouvellement d'une prescription initiale" in text
    assert "moins d'un an" in text
    assert "« prescription initiale annuelle réservée à certains spécialistes »" in text
    assert "attestation d'information" in text


def test_units_must_fit_the_form(gw: Gateway) -> None:
    assert_refused(send_form(gw, form(
        f"CIS {DOLIPRANE} ; 2 gouttes 3 fois par jour pendant 5 jours ; 2 boîtes")),
        "ligne 1 (DOLIPRANE 1000 mg", "des gouttes ne conviennent pas", "comprimés")
    assert_refused(send_form(gw, form(
        f"CIS {DOLIPRANE} ; 1 comprimé 3 fois par jour pendant 5 jours ; 2 tubes")),
        "n'est pas présenté en tube")


def prescribe_ok(gw: Gateway, body: str) -> str:
    before = len(gw.fetch_all(PATIENT))
    receipt = send_form(gw, body)
    assert "enregistrée" in str(receipt["Subject"]), text_of(receipt)
    return str(gw.wait_for(PATIENT, before + 1)[-1]["X-Ordonnance-Id"])


def dispense(gw: Gateway, identifier: str, lines: str) -> EmailMessage:
    before = len(gw.fetch_all(PHARMACIST))
    gw.send(PHARMACIST, form_message(PHARMACIST, ROBOT, f"Ordonnance : {identifier}\n{lines}",
                                     subject="Délivrance"))
    return gw.wait_for(PHARMACIST, before + 1)[-1]


def test_fractionated_delivery_one_fraction_at_a_time(gw: Gateway) -> None:
    identifier = prescribe_ok(gw, form(
        f"CIS {SUBUTEX} ; un comprimé par jour pendant vingt-huit jours ; quatre boîtes",
        secured=True))
    reply = dispense(gw, identifier, "1 : délivré ; 4 boîtes")
    text = text_of(reply)
    assert "refusée" in str(reply["Subject"]), text
    assert "fractionnée par 7 jours" in text and "au plus 1 boîte" in text
    assert "« délivrance fractionnée de 7 jours »" in text
    reply = dispense(gw, identifier, "1 : délivré ; 1 boîte")
    assert "enregistrée" in str(reply["Subject"]), text_of(reply)
    reply = dispense(gw, identifier, "1 : délivré ; 1 boîte")  # the next fraction: not yet
    assert "refusée" in str(reply["Subject"]), text_of(reply)


def test_stupefiant_presented_late_only_for_the_remaining_period(gw: Gateway) -> None:
    ten_days_ago = (dt.date.today() - dt.timedelta(days=10)).strftime("%d/%m/%Y")
    identifier = prescribe_ok(gw, form(
        f"CIS {SKENAN} ; une gélule matin et soir pendant vingt-huit jours ; quatre boîtes",
        secured=True, date=ten_days_ago))
    reply = dispense(gw, identifier, "1 : délivré ; 4 boîtes")
    text = text_of(reply)
    assert "refusée" in str(reply["Subject"]), text
    assert "10 jours après sa date" in text and "18 jours sur 28" in text
    assert "au plus 2,57 boîte" in text and "R5132-33" in text
    reply = dispense(gw, identifier, "1 : délivré ; 2 boîtes")
    assert "enregistrée" in str(reply["Subject"]), text_of(reply)


def test_hospital_pharmacy_only_drug(gw: Gateway) -> None:
    receipt = send_form(gw, form(f"CIS {REFACTO} ; posologie : selon le schéma ; 1 boîte"))
    text = text_of(receipt)
    assert "enregistrée" in str(receipt["Subject"]), text
    assert "prescription initiale hospitalière" in text and "moins de 6 mois" in text
    assert "pharmacie hospitalière" in text
    identifier = str(receipt["X-Ordonnance-Id"])
    reply = dispense(gw, identifier, "1 : délivré ; 1 boîte")
    assert "refusée" in str(reply["Subject"])
    assert "pas par une pharmacie de ville" in text_of(reply)


# ---- the record, the reports and the texts (issue 14, part 1) ----------------------------------

ORDINARY = form(f"CIS {DOLIPRANE} ; 1 comprimé 3 fois par jour pendant 5 jours ; 3 boîtes",
                "CIS 65143010 ; 1 comprimé le matin pendant 30 jours ; 1 boîte")


def ordonnance(gw: Gateway, body: str = ORDINARY) -> EmailMessage:
    """The patient's new ordonnance message."""
    before = len(gw.fetch_all(PATIENT))
    gw.send(DOCTOR, form_message(DOCTOR, PATIENT, body))
    return gw.wait_for(PATIENT, before + 1)[-1]


def to_pharmacy(gw: Gateway, body: str, sender: str = PATIENT) -> EmailMessage:
    before = len(gw.fetch_all(PHARMACY))
    gw.send(sender, form_message(sender, PHARMACY, body, subject="Mon ordonnance"))
    return gw.wait_for(PHARMACY, before + 1)[-1]


def test_partial_delivery_is_recorded_reported_and_signed_as_partial(gw: Gateway) -> None:
    from gateway.documents.model import DispensingKind
    from gateway.documents.parse import parse_dispensation
    from gateway.xdm import read_package
    from tests.journey_helpers import attachment

    identifier = str(ordonnance(gw)["X-Ordonnance-Id"])
    doctor_before = len(gw.fetch_all(DOCTOR))
    reply = dispense(gw, identifier, "1 : délivré partiellement ; 1 boîte ; motif : le reste"
                     " demain\n2 : délivré")
    text = text_of(reply)
    assert "enregistrée" in str(reply["Subject"]), text
    assert "ligne 1 (DOLIPRANE 1000 mg, comprimé) : 1 boîte — délivrance partielle : le reste" \
        " demain" in text
    assert "adapt" not in text.lower()
    assert "ligne 2 (" in text and "délivré tel que prescrit" in text
    assert "1. DOLIPRANE 1000 mg, comprimé — reste 2 boîtes" in text  # plural
    assert "reste 0 boîte" in text and "7421" not in text
    report = gw.wait_for(DOCTOR, doctor_before + 1)[-1]
    assert "délivrance partielle : le reste demain" in text_of(report)
    package = read_package(attachment(report, "IHE_XDM.zip"))
    edisp = next(d.data for d in package.content if b"eDISP" in d.data or b"60593-1" in d.data)
    lines = parse_dispensation(edisp).lines
    assert [line.kind for line in lines] == [DispensingKind.PARTIAL, DispensingKind.DELIVERED]
    assert lines[0].reason == "le reste demain"


def test_partial_delivery_is_in_the_registry(gw: Gateway, capsys: pytest.CaptureFixture[str]
                                             ) -> None:
    import json

    from gateway.cli import main

    identifier = str(ordonnance(gw)["X-Ordonnance-Id"])
    dispense(gw, identifier, "1 : délivré partiellement ; 2 boîtes ; motif : rupture\n"
             "2 : non délivré ; motif : en commande")
    capsys.readouterr()
    assert main(["prescriptions", "show", identifier, "--json",
                 "--config", str(gw.config.home / "config.toml")]) == 0
    shown = json.loads(capsys.readouterr().out)
    kinds = [(line["kind"], line["partial_reason"] or line["not_delivered_reason"])
             for line in shown["dispensations"][0]["lines"]]
    assert kinds == [("partial", "rupture"), ("not_delivered", "en commande")]


def test_the_verdict_names_lines_and_the_robot(gw: Gateway) -> None:
    from gateway.prescriptions.identifier import group

    msg = ordonnance(gw)
    identifier = str(msg["X-Ordonnance-Id"])
    got = to_pharmacy(gw, f"Bonjour,\nLe numero est {group(identifier)}\nMerci")
    verdict = str(got["X-Ordonnance-Verification"]).strip()
    assert verdict.startswith(f"valid; id={identifier};"), verdict
    text = text_of(got)
    assert "1. DOLIPRANE 1000 mg, comprimé — reste 3 boîtes" in text
    assert f"écrivez au service des ordonnances ({ROBOT}" in text
    assert f"Ordonnance : {identifier}\r\n1 : délivré ; 3 boîtes\r\n2 : délivré ; 1 boîte" in text


@pytest.mark.parametrize("written", [
    "voici mon ordonnance {grouped} merci",
    "n° {plain}",
    "{dashed}.",
])
def test_identifier_found_anywhere_in_the_text(gw: Gateway, written: str) -> None:
    from gateway.prescriptions.identifier import group

    identifier = str(ordonnance(gw)["X-Ordonnance-Id"])
    text = written.format(grouped=group(identifier).lower(), plain=identifier,
                          dashed=f"{identifier[:6]}-{identifier[6:12]}-{identifier[12:]}")
    got = to_pharmacy(gw, f"Bonjour, {text}\n")
    assert str(got["X-Ordonnance-Verification"]).startswith(f"valid; id={identifier};")


def test_time_of_day_is_kept_in_the_pdf_and_the_cda(gw: Gateway) -> None:
    import pypdfium2

    from gateway.documents import cda
    from gateway.documents.parse import parse_prescription
    from gateway.xdm import read_package
    from tests.journey_helpers import attachment

    msg = ordonnance(gw, form(
        f"CIS {DOLIPRANE} ; 1 comprimé matin et soir pendant 5 jours ; 1 boîte",
        "CIS 65143010 ; 1 comprimé au coucher pendant 30 jours ; 1 boîte"))
    doc = pypdfium2.PdfDocument(attachment(msg, ".pdf"))
    page = " ".join(doc[0].get_textpage().get_text_range().split())
    doc.close()
    assert "1 comprimé le matin et le soir" in page and "1 comprimé au coucher" in page
    assert "fois par jour" not in page
    package = read_package(attachment(msg, "IHE_XDM.zip"))
    p = parse_prescription(next(d.data for d in package.content if b"57833-6" in d.data))
    assert p.lines[0].moments == (cda.MORNING, cda.EVENING)
    assert p.lines[1].moments == (cda.BEDTIME,)


def test_the_patient_notice_gives_a_stupefiants_three_days(gw: Gateway, tmp_path: Path) -> None:
    import pypdfium2

    from gateway.cli import main
    from gateway.documents.parse import parse_prescription
    from gateway.xdm import read_package
    from tests.journey_helpers import attachment

    msg = ordonnance(gw, (ROOT / "examples/prescription-securisee.txt").read_text("utf-8"))
    pdf = attachment(msg, ".pdf")
    doc = pypdfium2.PdfDocument(pdf)
    text = " ".join(doc[0].get_textpage().get_text_range().split())
    doc.close()
    day = parse_prescription(next(
        d.data for d in read_package(attachment(msg, "IHE_XDM.zip")).content
        if b"57833-6" in d.data)).date.astimezone(dt.UTC).date()
    assert "ligne 1, au plus tard le" in text and "pour être délivrée en entier" in text
    assert "R5132-33" in text and "les autres avant le" in text
    assert "(3 mois)" in text  # the paracetamol line keeps the three months
    assert (day + dt.timedelta(days=3)).strftime("%d/%m/%Y") in text or \
        (day + dt.timedelta(days=4)).strftime("%d/%m/%Y") in text  # Paris date near midnight
    # `mssgw ordonnance pdf` renders the same bytes from the CDA with the drug reference
    cda = tmp_path / "ordonnance.xml"
    cda.write_bytes(next(d.data for d in read_package(attachment(msg, "IHE_XDM.zip")).content
                         if b"57833-6" in d.data))
    out = tmp_path / "again.pdf"
    assert main(["ordonnance", "pdf", str(cda), "-o", str(out),
                 "--config", str(gw.config.home / "config.toml")]) == 0
    assert out.read_bytes() == pdf


def test_the_pharmacy_mailbox_dispenses_with_the_form_alone(gw: Gateway) -> None:
    from gateway.documents.parse import parse_dispensation
    from gateway.signature.trust import check_package
    from gateway.xdm import read_package
    from tests.journey_helpers import attachment

    identifier = str(ordonnance(gw)["X-Ordonnance-Id"])
    doctor_before = len(gw.fetch_all(DOCTOR))
    before = len(gw.fetch_all(PHARMACY))
    gw.send(PHARMACY, form_message(PHARMACY, ROBOT, f"Ordonnance : {identifier}\n1 : délivré\n",
                                   subject="Délivrance"))
    reply = gw.wait_for(PHARMACY, before + 1)[-1]
    text = text_of(reply)
    assert "enregistrée" in str(reply["Subject"]), text
    assert "pharmacien : Claire DURAND" in text  # the pharmacy's only pharmacist
    report = gw.wait_for(DOCTOR, doctor_before + 1)[-1]
    package = attachment(report, "IHE_XDM.zip")
    check = check_package(gw.config, package)
    assert check.valid and "Pharmacie Centrale" in (check.signer or ""), check  # its seal
    edisp = next(d.data for d in read_package(package).content if b"60593-1" in d.data)
    assert parse_dispensation(edisp).author.family_name == "DURAND"


def test_a_forward_by_someone_else_is_said_not_refused(gw: Gateway) -> None:
    from tests.journey_helpers import attachment

    msg = ordonnance(gw)
    identifier = str(msg["X-Ordonnance-Id"])
    fwd = form_message(RELATIVE, PHARMACY, "Bonjour, l'ordonnance de ma femme.\n",
                       subject="Ordonnance")
    fwd.add_attachment(attachment(msg, "IHE_XDM.zip"), maintype="application", subtype="zip",
                       filename="IHE_XDM.zip")
    before = len(gw.fetch_all(PHARMACY))
    gw.send(RELATIVE, fwd)
    got = gw.wait_for(PHARMACY, before + 1)[-1]
    verdict = str(got["X-Ordonnance-Verification"]).strip()
    assert verdict.startswith(f"valid; id={identifier};"), verdict
    assert f"forwarded-by={RELATIVE}; not-the-patient=yes" in verdict
    text = " ".join(text_of(got).split())
    assert f"Transmise par Paul DUPONT ({RELATIVE}), qui n'est pas le patient" in text
    assert PATIENT in text


def test_a_package_for_another_patient_is_not_filed_and_the_sender_is_told(
        gw: Gateway, shared_dir: Path) -> None:
    from gateway.dmp import Actor, open_dmp

    package = (shared_dir / "xdm-examples/BIO-CR-BIO_2024.01_TSH_1/IHE_XDM.ZIP").read_bytes()
    msg = form_message(DOCTOR, RELATIVE, "Bonjour, vos résultats.\n", subject="Résultats")
    msg.add_attachment(package, maintype="application", subtype="zip", filename="IHE_XDM.zip")
    doctor_before = len(gw.fetch_all(DOCTOR))
    relative_before = len(gw.fetch_all(RELATIVE))
    gw.send(DOCTOR, msg)
    assert gw.wait_for(RELATIVE, relative_before + 1)[-1]["Subject"] == "Résultats"
    notice = gw.wait_for(DOCTOR, doctor_before + 1)[-1]
    text = " ".join(text_of(notice).split())
    assert "Document non versé au DMP" in str(notice["Subject"])
    assert "INS 279035121518989, pas le destinataire" in text and RELATIVE_INS in text
    dmp = open_dmp(gw.config)
    try:
        assert dmp.find(RELATIVE_INS, actor=Actor.admin("test")) == []
    finally:
        dmp.close()
    log = gw.config.audit_log_path.read_text("utf-8").splitlines()
    entries = [e for e in log if '"dmp.not-filed"' in e and RELATIVE in e]
    assert entries and DOCTOR in entries[-1]


def test_dmp_show_keeps_the_author_apart_from_the_submitter(
        gw: Gateway, shared_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from gateway.cli import main
    from gateway.xdm import read_package

    package = (shared_dir / "xdm-examples/BIO-CR-BIO_2024.01_TSH_1/IHE_XDM.ZIP").read_bytes()
    unique_id = read_package(package).content[0].entry.unique_id
    msg = form_message(DOCTOR, PATIENT, "Bonjour, vos résultats.\n", subject="Biologie")
    msg.add_attachment(package, maintype="application", subtype="zip", filename="IHE_XDM.zip")
    before = len(gw.fetch_all(PATIENT))
    gw.send(DOCTOR, msg)
    gw.wait_for(PATIENT, before + 1)
    capsys.readouterr()
    assert main(["dmp", "show", unique_id, "--json",
                 "--config", str(gw.config.home / "config.toml")]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["submitter_address"] == DOCTOR  # who mailed it
    assert shown["author_id"] and shown["author_id"] != "810100123453"  # the lab's biologist
    assert shown["author_address"] is None  # not dr.martin: not in our directory


def test_registry_refusals_are_in_french(gw: Gateway) -> None:
    identifier = str(ordonnance(gw)["X-Ordonnance-Id"])
    reply = dispense(gw, identifier, "1 : délivré ; 5 boîtes")
    text = " ".join(text_of(reply).split())
    assert "refusée" in str(reply["Subject"])
    assert "ligne 1 (DOLIPRANE 1000 mg, comprimé) : il ne reste que 3 boîtes à délivrer, pas 5" \
        in text
    assert "asked" not in text


def test_the_verification_tells_the_pharmacist_the_delivery_conditions(gw: Gateway) -> None:
    identifier = prescribe_ok(gw, form(
        f"CIS {SUBUTEX} ; un comprimé par jour pendant vingt-huit jours ; quatre boîtes",
        f"CIS {SKENAN} ; une gélule matin et soir pendant vingt-huit jours ; quatre boîtes",
        secured=True))
    got = to_pharmacy(gw, f"Bonjour, mon ordonnance : {identifier}\n")
    text = " ".join(text_of(got).split())
    assert "ligne 1 (SUBUTEX 8 mg, comprimé sublingual) : délivrance fractionnée par 7 jours" \
        in text
    assert "ligne 2 (SKENAN L.P. 10 mg" in text and "dans les 3 jours" in text
