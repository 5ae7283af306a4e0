"""The doctor's prescription form and the pharmacist's dispensation form, against the real
directory (demo population) and the real drug reference."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from gateway.cli import main
from gateway.directory import demo
from gateway.documents.build import assign_ids, build_dispensation, build_prescription
from gateway.documents.form import FormError, parse_dispensation_form, parse_prescription_form
from gateway.documents.model import DispensingKind, Prescription
from gateway.documents.parse import parse_document
from gateway.documents.people import DirectoryPeople
from gateway.documents.samples import sample_pdf, sample_png
from gateway.drugs.store import DrugReference
from gateway.identifiers import OID_INS_TEST

ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def home(forms_home: Path) -> Path:  # the session's demo gateway with the drug reference
    return forms_home


@pytest.fixture(scope="module")
def people(demo_people: DirectoryPeople) -> DirectoryPeople:
    return demo_people


@pytest.fixture(scope="module")
def drugs(demo_drugs: DrugReference) -> DrugReference:
    return demo_drugs


def form(people: DirectoryPeople, drugs: DrugReference, text: str, **kw: object
         ) -> Prescription:
    return parse_prescription_form(text, people=people, drugs=drugs, now=NOW,
                                   **kw)  # type: ignore[arg-type]


def problems(people: DirectoryPeople, drugs: DrugReference, text: str,
             **kw: object) -> list[str]:
    with pytest.raises(FormError) as info:
        form(people, drugs, text, **kw)
    return [str(p) for p in info.value.problems]


HEAD = f"Patient : INS {demo.PATIENT_INS}\nPrescripteur : RPPS {demo.DOCTOR_RPPS}\n"


def test_the_sample_form_in_examples(people: DirectoryPeople, drugs: DrugReference) -> None:
    p = form(people, drugs, (ROOT / "examples" / "prescription.txt").read_text("utf-8"))
    assert p.patient.ins == demo.PATIENT_INS and p.patient.birth_name == demo.PATIENT_BIRTH_NAME
    assert p.patient.ins_oid == OID_INS_TEST
    assert p.author.rpps == demo.DOCTOR_RPPS
    assert p.author.structure is not None and p.author.structure.name == demo.PRACTICE_NAME
    assert p.date.date() == dt.date(2026, 11, 20)
    one, two, three = p.lines
    assert one.product.cis == "60234100" and one.dose.quantity == 1  # type: ignore[union-attr]
    assert one.frequency.times == 3 and one.duration_days == 5  # type: ignore[union-attr]
    assert one.quantity == 2 and one.substitutable
    assert two.product.label.startswith("LEVOTHYROX")
    assert two.renewals == 3 and not two.substitutable and two.substitution_refusal == "MTE"
    assert two.ald and p.bizone
    assert three.product.magistral and "cérat de Galien" in three.product.label
    assert three.quantity_unit == "tube" and three.route == "20003000"
    assert three.dosage_text and three.duration_days == 10
    assert p.notes == "revoir en consultation dans 3 mois."


def test_tolerant_of_case_accents_spacing(people: DirectoryPeople, drugs: DrugReference) -> None:
    text = ("PATIENT:ins 2 79 03 51 215 189 89\n  prescripteur   :   Dr.Martin@MSSGW.localhost\n"
            "1)  levothyrox 50 MICROGRAMMES, comprime secable ;1 CP/J; 3 BOITES;A RENOUVELER"
            " DEUX FOIS;Non Substituable MTE;ald\n")
    p = form(people, drugs, text)
    line = p.lines[0]
    assert line.product.cis == "65143010" and line.renewals == 2 and line.ald
    assert line.frequency is not None and line.frequency.times == 1
    assert p.author.rpps == demo.DOCTOR_RPPS


def test_drugs_by_cis_cip13_and_name(people: DirectoryPeople, drugs: DrugReference) -> None:
    p = form(people, drugs, HEAD + "1. CIS 60234100 ; 1 cp 3 fois par jour\n"
             "2. 3400935955838 ; 1 cp matin et soir\n3. Doliprane 1000 mg, comprimé ; 1 cp\n")
    assert [line.product.cis for line in p.lines] == ["60234100"] * 3
    assert p.lines[1].product.cip13 == "3400935955838"


def test_the_sender_is_the_prescriber_by_default(people: DirectoryPeople,
                                                 drugs: DrugReference) -> None:
    text = f"Patient : INS {demo.PATIENT_INS}\n1. CIS 60234100 ; 1 cp par jour\n"
    p = form(people, drugs, text, sender="dr.martin@mssgw.localhost")
    assert p.author.rpps == demo.DOCTOR_RPPS
    assert problems(people, drugs, text) == [
        "formulaire : le prescripteur manque : ajoutez « Prescripteur : RPPS <11 chiffres> »"]


@pytest.mark.parametrize("text, expected", [
    ("Prescripteur : RPPS 10100123453\n1. CIS 60234100 ; 1 cp\n",
     "formulaire : le patient manque"),
    ("Patient : INS 279035121518988\nPrescripteur : RPPS 10100123453\n1. CIS 60234100 ; 1 cp\n",
     "ligne 1 : INS du patient « INS 279035121518988 » invalide : la clé"),
    ("Patient : INS 1840512345678\nPrescripteur : RPPS 10100123453\n1. CIS 60234100 ; 1 cp\n",
     "ligne 1 : INS du patient « INS 1840512345678 » invalide : un INS a 15 caractères"),
    ("Patient : INS 184127645108946\nPrescripteur : RPPS 10100123453\n1. CIS 60234100 ; 1 cp\n",
     "ligne 1 : aucun patient d'INS 184127645108946 dans l'annuaire"),
    (f"Patient : INS {demo.PATIENT_INS}\nPrescripteur : RPPS 10100123454\n"
     "1. CIS 60234100 ; 1 cp\n", "ligne 2 : RPPS du prescripteur « RPPS 10100123454 » invalide"),
    (f"Patient : INS {demo.PATIENT_INS}\nPrescripteur : inconnu@mssgw.localhost\n"
     "1. CIS 60234100 ; 1 cp\n", "ligne 2 : prescripteur « inconnu@mssgw.localhost » inconnu"),
    (HEAD, "formulaire : aucun médicament"),
    (HEAD + "1. xyzzyplop ; 1 cp\n", "ligne 3 : médicament « xyzzyplop » inconnu"),
    (HEAD + "1. doliprane ; 1 cp\n", "ligne 3 : « doliprane » désigne plusieurs médicaments"),
    (HEAD + "1. CIS 69999999 ; 1 cp\n", "ligne 3 : le code CIS 69999999 n'existe pas"),
    (HEAD + "1. CIS 12345678 ; 1 cp\n", "ligne 3 : code 12345678 : un code CIS commence par 6"),
    (HEAD + "1. 3400935955839 ; 1 cp\n", "ligne 3 : code 3400935955839 : la clé du code CIP13"),
    (HEAD + "1. 123456 ; 1 cp\n", "ligne 3 : code 123456 : un code CIS a 8 chiffres"),
    (HEAD + "1. CIS 60234100 ; 1 cp ; non substituable\n",
     "ligne 3 : « non substituable » demande sa raison"),
    (HEAD + "1. CIS 60234100 ; 1 cp ; à renouveler\n",
     "ligne 3 : « à renouveler » : combien de fois ?"),
    (HEAD + "1. CIS 60234100 ; 1 cp ; à renouveler 20 fois\n",
     "ligne 3 : 20 renouvellements, c'est plus que les 12 permis"),
    (HEAD + "1. CIS 60234100 ; 2 boîtes\n", "ligne 3 : pas de posologie"),
    (HEAD + "1. CIS 60234100 ; 1 cp ; quelque chose\n",
     "ligne 3 : je ne comprends pas « quelque chose »"),
    (HEAD + "Date : 31/02/2026\n1. CIS 60234100 ; 1 cp\n",
     "ligne 3 : date « 31/02/2026 » illisible"),
    (HEAD + "60234100 ; 1 cp\n", "ligne 3 : je ne comprends pas « 60234100 ; 1 cp »"),
    (HEAD + "Voici l'ordonnance\n1. CIS 60234100 ; 1 cp\n",
     "ligne 3 : je ne comprends pas « Voici l'ordonnance »"),
    (HEAD + "1. Préparation magistrale : ; 1 cp\n",
     "ligne 3 : la préparation magistrale n'a pas de composition"),
    (f"Patient : INS {demo.PATIENT_INS}\nPrescripteur : RPPS {demo.PHARMACIST_RPPS}\n"
     "1. CIS 60234100 ; 1 cp\n", "n'est pas enregistré comme médecin"),
], ids=lambda v: v[:30] if isinstance(v, str) and v.startswith(("ligne", "form")) else None)
def test_each_error_kind(people: DirectoryPeople, drugs: DrugReference, text: str,
                         expected: str) -> None:
    found = problems(people, drugs, text)
    assert any(expected in p for p in found), found


def test_unknown_and_ambiguous_names_list_candidates(people: DirectoryPeople,
                                                     drugs: DrugReference) -> None:
    with pytest.raises(FormError) as info:
        form(people, drugs, HEAD + "1. doliprane 1000 ; 1 cp\n2. levothyrax ; 1 cp\n")
    ambiguous, unknown = info.value.problems
    assert "DOLIPRANE 1000 mg, comprimé (CIS 60234100)" in ambiguous.candidates
    assert all("DOLIPRANE" in c and "1000" in c for c in ambiguous.candidates)
    assert unknown.line == 4 and "inconnu" in unknown.message
    report = info.value.report()
    assert "ligne 3" in report and "    - DOLIPRANE 1000 mg, comprimé (CIS 60234100)" in report


def test_a_name_written_exactly_is_that_drug(people: DirectoryPeople,
                                             drugs: DrugReference) -> None:
    # Case, accents and punctuation aside (answered by the name index, not the full-text
    # search); a name several specialities share (parallel imports) still lists them.
    p = form(people, drugs, HEAD + "1. Amoxicilline BIOGARAN 500 mg gelule ; 1 cp\n")
    assert p.lines[0].product.cis == "69118175"
    assert p.lines[0].product.label == "AMOXICILLINE BIOGARAN 500 mg, gélule"
    with pytest.raises(FormError) as info:
        form(people, drugs, HEAD + "1. arimidex 1 mg, comprimé pelliculé ; 1 cp\n")
    (shared,) = info.value.problems
    assert "plusieurs médicaments" in shared.message
    same = [c for c in shared.candidates if c.startswith("ARIMIDEX 1 mg, comprimé pelliculé (")]
    assert len(same) == 3


def test_every_problem_is_reported_at_once(people: DirectoryPeople, drugs: DrugReference) -> None:
    found = problems(people, drugs, "Patient : INS 1\n1. CIS 1 ; 1 cp\n2. CIS 60234100\n")
    assert len(found) >= 4  # bad INS, bad CIS, no dosage on line 3, no prescriber


def test_names_need_the_drug_reference(people: DirectoryPeople) -> None:
    with pytest.raises(FormError, match="la base des médicaments n'est pas chargée"):
        parse_prescription_form(HEAD + "1. doliprane ; 1 cp\n", people=people, drugs=None,
                                now=NOW)


def test_form_to_valid_document(people: DirectoryPeople, drugs: DrugReference,
                                shared_dir: Path) -> None:
    # Every layer on forms of every feature: tests/test_documents_corpus.py.
    from gateway.documents.validate import FAST_LAYERS, validate_document

    p = assign_ids(form(people, drugs, (ROOT / "examples/prescription.txt").read_text("utf-8")))
    data = build_prescription(p, sample_pdf(), sample_png())
    report = validate_document(
        data, schema=shared_dir / "ci-sis/infrastructure/cda/CDA_extended.xsd",
        schematron_dir=shared_dir / "ci-sis/schematrons", drugs=drugs, layers=FAST_LAYERS)
    assert report.ok, [str(x) for x in report.problems]
    assert parse_document(data).prescription == p


def test_a_dose_per_time_of_day(people: DirectoryPeople, drugs: DrugReference) -> None:
    """'1 comprimé le matin, 2 le soir' is a dose per time of day (it was kept as text only);
    the same dose at each time is one dose; without a unit it stays as written."""
    from gateway.documents import cda
    from gateway.documents.model import Dose

    p = form(people, drugs, HEAD + "1. CIS 60234100 ; 1 comprimé le matin, 2 le soir pendant"
                                   " 10 jours ; 1 boîte\n"
                                   "2. CIS 60234100 ; 2 cp matin et 1 cp au coucher ; 1 boîte\n"
                                   "3. CIS 60234100 ; 1 comprimé le matin et 1 le soir\n"
                                   "4. CIS 60234100 ; 1 le matin, 2 le soir\n")
    tablets = [Dose(Decimal(n), "{tablet}") for n in (0, 1, 2)]
    split, bedtime, same, unitless = (line.phases for line in p.lines)
    assert split[0].doses == (tablets[1], tablets[2]) and split[0].dose is None
    assert split[0].moments == (cda.MORNING, cda.EVENING) and split[0].duration_days == 10
    assert p.lines[0].dosage_text is None  # nothing left as text: all of it is structured
    assert bedtime[0].doses == (tablets[2], tablets[1])
    assert bedtime[0].moments == (cda.MORNING, cda.BEDTIME)
    assert same[0].dose == tablets[1] and same[0].doses == ()
    assert unitless == () and p.lines[3].dosage_text == "1 le matin, 2 le soir"
    data = build_prescription(assign_ids(p), sample_pdf(), sample_png())
    back = parse_document(data).prescription
    assert back is not None and [line.phases for line in back.lines] == [
        line.phases for line in p.lines]


def _stamps(data: bytes) -> dict[str, str]:
    """The document's own dates (header, author, signature, validity, first line's interval)."""
    root = etree.fromstring(data)
    ns = {"c": "urn:hl7-org:v3"}
    paths = {"document": "c:effectiveTime", "author": "c:author/c:time",
             "signed": "c:legalAuthenticator/c:time",
             "event": "c:documentationOf/c:serviceEvent/c:effectiveTime/c:low",
             "valid until": "c:documentationOf/c:serviceEvent/c:effectiveTime/c:high",
             "treatment": ".//c:substanceAdministration/c:effectiveTime[@xsi:type='IVL_TS']/c:low"}
    ns["xsi"] = "http://www.w3.org/2001/XMLSchema-instance"
    return {k: str(el[0].get("value")) for k, path in paths.items()
            if (el := root.xpath(path, namespaces=ns))}


def test_the_form_date_is_a_day_never_a_made_up_time(people: DirectoryPeople,
                                                      drugs: DrugReference) -> None:
    """'Date :' another day than the day of sending dates the document by that day alone (it
    used to get that day at the clock time of sending, a moment nobody wrote); the day of
    sending keeps the time of sending; 'the day' is France's (00:30 in Paris is 23:30 UTC the
    day before)."""
    body = "1. CIS 60234100 ; 1 cp 3 fois par jour pendant 5 jours ; 1 boîte\n"
    p = assign_ids(form(people, drugs, HEAD + "Date : 20/11/2026\n" + body))
    assert p.day_only and p.day == dt.date(2026, 11, 20)
    data = build_prescription(p, sample_pdf(), sample_png())
    assert _stamps(data) == {"document": "20261120", "author": "20261120", "signed": "20261120",
                             "event": "20261120", "valid until": "20270220",
                             "treatment": "20261120"}
    assert parse_document(data).prescription == p  # read back as the day alone

    today = form(people, drugs, HEAD + "Date : 22/11/2026\n" + body)
    assert today.date == NOW and not today.day_only
    assert _stamps(build_prescription(assign_ids(today), sample_pdf(), sample_png()))[
        "document"] == "20261122100000+0000"

    late = dt.datetime(2026, 11, 21, 23, 30, tzinfo=dt.UTC)  # 00:30 on the 22nd in Paris
    night = parse_prescription_form(HEAD + "Date : 22/11/2026\n" + body, people=people,
                                    drugs=drugs, now=late)
    assert night.date == late and not night.day_only and night.day == dt.date(2026, 11, 22)
    stamps = _stamps(build_prescription(assign_ids(night), sample_pdf(), sample_png()))
    assert stamps["document"] == "20261121233000+0000"
    assert stamps["valid until"] == "20270222" and stamps["treatment"] == "20261122"
    from gateway.flows.prescribe import pdf_name  # the patient's file is named by that day
    assert pdf_name(night).startswith("20261122_Prescription_")
    assert pdf_name(p).startswith("20261120_Prescription_")


# --- dispensation form ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def registered(people: DirectoryPeople, drugs: DrugReference) -> Prescription:
    p = form(people, drugs, (ROOT / "examples" / "prescription.txt").read_text("utf-8"))
    return assign_ids(dataclasses.replace(p, identifier="01S2TBPZ2JCNZZYGH0"))


def dispense(people: DirectoryPeople, drugs: DrugReference, registered: Prescription,
             text: str) -> object:
    return parse_dispensation_form(
        text, prescription_for=lambda i: registered if i == registered.identifier else None,
        people=people, drugs=drugs, now=NOW)


def test_the_sample_dispensation_form(people: DirectoryPeople, drugs: DrugReference,
                                      registered: Prescription) -> None:
    d = dispense(people, drugs, registered,
                 (ROOT / "examples" / "dispensation.txt").read_text("utf-8"))
    assert d.prescription_id == "01S2TBPZ2JCNZZYGH0"  # type: ignore[attr-defined]
    assert d.prescription_document_id == registered.document_id  # type: ignore[attr-defined]
    assert d.author.rpps == demo.PHARMACIST_RPPS  # type: ignore[attr-defined]
    sub, partial, missing = d.lines  # type: ignore[attr-defined]
    assert sub.substituted and sub.product.cis == "62772966" and sub.quantity == 2
    assert sub.substitution_reason == "générique"
    assert sub.line_ref == registered.lines[0].line_id
    assert partial.kind is DispensingKind.PARTIAL and partial.quantity == 1
    assert "prochain passage" in partial.reason
    assert missing.quantity == 0 and "commander" in missing.not_delivered_reason


def test_the_dispensation_form_date_is_a_day_too(people: DirectoryPeople,
                                                drugs: DrugReference,
                                                registered: Prescription) -> None:
    text = (ROOT / "examples" / "dispensation.txt").read_text("utf-8")
    d = dispense(people, drugs, registered, text.replace("Pharmacien", "Date : 21/11/2026\n"
                                                                      "Pharmacien"))
    assert d.day_only and d.day == dt.date(2026, 11, 21)  # type: ignore[attr-defined]
    data = build_dispensation(d)  # type: ignore[arg-type]
    assert etree.fromstring(data).find("{urn:hl7-org:v3}effectiveTime").get("value") == \
        "20261121"
    back = parse_document(data).dispensation
    assert back is not None and back.day_only and back.date == d.date  # type: ignore[attr-defined]
    d = dispense(people, drugs, registered, text)
    assert d.date == NOW and not d.day_only  # type: ignore[attr-defined]


@pytest.mark.parametrize("body, expected", [
    ("Ordonnance : 01S2TBPZ2JCNZZYGH1\n1 : délivré\n", "le dernier caractère (contrôle)"),
    ("Ordonnance : 01S2TBPZ2JCNZZYG\n1 : délivré\n", "il faut 18 caractères"),
    ("Ordonnance : 000000000000000001\n1 : délivré\n", "aucune ordonnance enregistrée"),
    ("1 : délivré\n", "l'identifiant de l'ordonnance manque"),
    ("Ordonnance : 01S2TBPZ2JCNZZYGH0\n", "aucune ligne"),
    ("Ordonnance : 01S2TBPZ2JCNZZYGH0\n7 : délivré\n", "l'ordonnance n'a pas de ligne 7"),
    ("Ordonnance : 01S2TBPZ2JCNZZYGH0\n1 : délivré\n1 : délivré\n", "indiquée deux fois"),
    ("Ordonnance : 01S2TBPZ2JCNZZYGH0\n2 : substitué par CIS 62772966 ; 1 boîte\n",
     "la substitution est interdite"),
    ("Ordonnance : 01S2TBPZ2JCNZZYGH0\n3 : non délivré\n", "demande un motif"),
    ("Ordonnance : 01S2TBPZ2JCNZZYGH0\n1 : délivré partiellement\n",
     "indiquez la quantité délivrée"),
    ("Ordonnance : 01S2TBPZ2JCNZZYGH0\n1 : délivré partiellement ; 5 boîtes\n",
     "délivrance partielle de 5"),
    ("Ordonnance : 01S2TBPZ2JCNZZYGH0\n1 : perdu\n", "je ne comprends pas « perdu »"),
])
def test_each_dispensation_error_kind(people: DirectoryPeople, drugs: DrugReference,
                                      registered: Prescription, body: str,
                                      expected: str) -> None:
    text = f"Pharmacien : {demo.pharmacist_address('mssgw.localhost')}\n" + body
    with pytest.raises(FormError) as info:
        dispense(people, drugs, registered, text)
    assert any(expected in str(p) for p in info.value.problems), info.value.report()


def test_delivered_as_prescribed_takes_the_prescribed_quantity(
        people: DirectoryPeople, drugs: DrugReference, registered: Prescription) -> None:
    d = dispense(people, drugs, registered, f"Ordonnance : {registered.identifier}\n"
                 f"Pharmacien : RPPS {demo.PHARMACIST_RPPS}\n1 : délivré\n")
    (line,) = d.lines  # type: ignore[attr-defined]
    assert line.quantity == Decimal(2) and not line.substituted
    assert line.product == registered.lines[0].product


def test_cli_build_from_the_sample_form(home: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(home / "config.toml")
    out = tmp_path / "out.xml"
    assert main(["cda", "build", str(ROOT / "examples/prescription.txt"), "-o", str(out),
                 "--json", "--config", cfg]) == 0
    import json

    info = json.loads(capsys.readouterr().out)
    assert info["layers"] == {"schema": "passed", "volet": "passed", "rules": "passed"}
    parsed = parse_document(out.read_bytes())
    assert parsed.prescription is not None
    assert parsed.prescription.identifier == info["identifier"]
    assert main(["cda", "validate", str(out), "--config", cfg]) == 0
    bad = tmp_path / "bad.txt"
    bad.write_text(HEAD + "1. xyzzyplop ; 1 cp\n", "utf-8")
    assert main(["cda", "build", str(bad), "-o", str(tmp_path / "bad.xml"), "--config",
                 cfg]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:3: médicament « xyzzyplop » inconnu" in err
    assert not (tmp_path / "bad.xml").exists()
