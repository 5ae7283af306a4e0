"""gateway.prescriptions.checks on the model: who may prescribe, durations, renewals, units,
fractions and the three days of a stupéfiant, with conditions as the BDPM words them."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from gateway.documents.model import (
    AuthorInfo,
    Dispensation,
    DispensedLine,
    Dose,
    PatientInfo,
    Phase,
    Prescription,
    PrescriptionLine,
    Product,
)
from gateway.drugs.conditions import DrugRules
from gateway.drugs.store import DrugFacts
from gateway.prescriptions.checks import Severity, check_dispensation, check_prescription
from gateway.prescriptions.prescriber import Prescriber
from gateway.prescriptions.registry import (
    PrescriptionRecord,
    Status,
    lines_from_prescription,
)

DAY = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)
PATIENT = PatientInfo("279035121518989", "1.2.250.1.213.1.4.10", "DUPONT", "Chloé", "F",
                      dt.date(1979, 3, 15))
AUTHOR = AuthorInfo("810100123453", "MARTIN", "Jean", "10", "SM26")
GP = Prescriber("gp@x", "Dr GP", "10", frozenset({"SM26"}), hospital=False)
HOSPITAL_GP = dataclasses.replace(GP, hospital=True)
NEUROLOGIST = Prescriber("neuro@x", "Dr Neuro", "10", frozenset({"SM32"}), hospital=False)
PSYCHIATRIST = Prescriber("psy@x", "Dr Psy", "10", frozenset({"SM42"}), hospital=False)


class Facts:
    """A drug reference of one medicine, CIS 60000001, with the given sentences."""

    def __init__(self, *sentences: str, form: str = "comprimé",
                 labels: tuple[str, ...] = ("plaquette(s) de 28 comprimé(s)",)) -> None:
        self.value = DrugFacts("60000001", "MEDICAMENT 10 mg, comprimé", form, labels,
                               DrugRules.of(list(sentences)))

    def facts(self, cis: str) -> DrugFacts | None:
        return self.value if cis == "60000001" else None


def prescription(secured: bool = False, duration_days: int | None = 28,
                 dose: Dose | None = None, **line: object) -> Prescription:
    values: dict[str, object] = {"quantity": Decimal(4), "dosage_text": "selon le schéma",
                                 "phases": (Phase(dose=dose, duration_days=duration_days),)}
    values.update(line)
    return Prescription(PATIENT, AUTHOR, DAY, (PrescriptionLine(
        Product("MEDICAMENT 10 mg, comprimé", cis="60000001"), **values),),  # type: ignore[arg-type]
        secured=secured)


def found(p: Prescription, who: Prescriber, *sentences: str, **facts: object
          ) -> list[tuple[Severity, str]]:
    return [(f.severity, f.message) for f in
            check_prescription(p, who, Facts(*sentences, **facts))]  # type: ignore[arg-type]


def test_nothing_to_say_about_an_ordinary_drug() -> None:
    assert found(prescription(), GP, "liste I", "médicament nécessitant une surveillance"
                 " particulière pendant le traitement") == []


def test_the_reference_not_loaded_is_said() -> None:
    got = check_prescription(prescription(), GP, None)
    assert [f.severity for f in got] == [Severity.WARN]


def test_hospital_prescription_only_from_a_hospital() -> None:
    assert found(prescription(), GP, "prescription hospitalière")[0][0] is Severity.REFUSE
    assert found(prescription(), HOSPITAL_GP, "prescription hospitalière") == []


def test_initial_hospital_prescription_renewed_in_town_is_warned() -> None:
    got = found(prescription(), GP, "prescription initiale hospitalière annuelle")
    assert got[0][0] is Severity.WARN and "moins d'un an" in got[0][1]
    assert found(prescription(), HOSPITAL_GP, "prescription initiale hospitalière") == []


def test_renewal_list_alone_restricts_every_prescription() -> None:
    sentences = ("renouvellement de la prescription réservé aux spécialistes en PSYCHIATRIE",)
    assert found(prescription(), GP, *sentences)[0][0] is Severity.REFUSE
    assert found(prescription(), PSYCHIATRIST, *sentences) == []


def test_initial_by_specialists_with_renewal_by_others() -> None:
    sentences = ("prescription réservée aux spécialistes et services NEUROLOGIE",
                 "prescription initiale réservée à certains spécialistes",
                 "renouvellement de la prescription réservé aux spécialistes en PSYCHIATRIE")
    assert found(prescription(), NEUROLOGIST, *sentences) == []
    assert found(prescription(), PSYCHIATRIST, *sentences)[0][0] is Severity.WARN
    assert found(prescription(), GP, *sentences)[0][0] is Severity.REFUSE


def test_services_let_a_hospital_doctor_through_with_a_warning() -> None:
    sentences = ("prescription réservée aux spécialistes et services NEUROLOGIE",)
    assert found(prescription(), GP, *sentences)[0][0] is Severity.REFUSE
    assert found(prescription(), HOSPITAL_GP, *sentences)[0][0] is Severity.WARN


def test_durations() -> None:
    limit = "prescription limitée à 12 semaines"
    assert found(prescription(duration_days=84), GP, limit) == []
    assert found(prescription(duration_days=85), GP, limit)[0][0] is Severity.REFUSE
    assert found(prescription(duration_days=None), GP, limit)[0][0] is Severity.REFUSE
    assert found(prescription(duration_days=28, renewals=2), GP, limit) == []
    assert found(prescription(duration_days=30, renewals=2), GP, limit)[0][0] is Severity.REFUSE
    months = "prescription limitée à 6 mois"  # calendar months from the date: 181 days
    assert found(prescription(duration_days=181), GP, months) == []
    assert found(prescription(duration_days=182), GP, months)[0][0] is Severity.REFUSE
    pump = "prescription limitée à 7 jours ou 28 jours"
    assert found(prescription(duration_days=7), GP, pump) == []
    assert found(prescription(duration_days=14), GP, pump)[0][0] is Severity.WARN
    # a stupéfiant with no stated limit: 28 days (art. R5132-30)
    got = found(prescription(secured=True, duration_days=30), GP, "stupéfiants")
    assert [s for s, _ in got] == [Severity.REFUSE] and "28 jours" in got[0][1]


def test_no_renewal_and_unknown_sentences() -> None:
    no_renewal = "ne peut être obtenu que sur prescription médicale non renouvelable"
    assert found(prescription(renewals=1), GP, no_renewal)[0][0] is Severity.REFUSE
    got = found(prescription(), GP, "prescription soumise à une condition nouvelle")
    assert got[0][0] is Severity.WARN and "ne sait pas lire" in got[0][1]


def test_secured_free_text_in_letters() -> None:
    got = found(prescription(secured=True, dosage_text="1 comprimé le soir"), GP)
    assert got == [(Severity.REFUSE, "« 1 comprimé le soir » : sur une ordonnance sécurisée,"
                    " écrivez les nombres en toutes lettres (« un comprimé le soir »)")]


def test_dose_units() -> None:
    assert found(prescription(dose=Dose(Decimal(2), "[drp]")), GP)[0][0] is Severity.REFUSE
    assert found(prescription(dose=Dose(Decimal(1), "{tablet}")), GP) == []
    assert found(prescription(dose=Dose(Decimal(500), "mg")), GP) == []  # an amount fits all


def record(p: Prescription, delivered: Decimal = Decimal(0)) -> PrescriptionRecord:
    lines = tuple(dataclasses.replace(line, delivered=delivered)
                  for line in lines_from_prescription(p))
    return PrescriptionRecord(
        identifier="01S2TBPZ2JCNZZYGH0", prescriber_address="gp@x", prescriber_rpps=None,
        patient_ins=PATIENT.ins, patient_address="p@x", prescribed_at=p.date,
        validity_end=dt.date(2027, 2, 20), dispensable_until=dt.date(2027, 11, 20),
        stored_status=Status.ACTIVE, registered_at=p.date, lines=lines)


def delivery(quantity: str) -> Dispensation:
    return Dispensation("01S2TBPZ2JCNZZYGH0", "doc", PATIENT, AUTHOR, DAY, (
        DispensedLine("1", Product("MEDICAMENT 10 mg, comprimé", cis="60000001"),
                      Decimal(quantity)),))


@pytest.mark.parametrize(("sentences", "days_after", "delivered", "asked", "ok"), [
    (("délivrance fractionnée de 7 jours",), 0, "0", "1", True),
    (("délivrance fractionnée de 7 jours",), 0, "0", "2", False),
    (("délivrance fractionnée de 7 jours",), 3, "1", "1", False),  # next fraction: day 7
    (("délivrance fractionnée de 7 jours",), 7, "1", "1", True),
    (("délivrance fractionnée de 7 jours",), 30, "1", "3", True),  # the end of the treatment
    (("stupéfiants",), 3, "0", "4", True),  # presented within three days: all
    (("stupéfiants",), 14, "0", "2", True),  # late: the 14 remaining days of 28
    (("stupéfiants",), 14, "0", "2.5", False),
    (("stupéfiants",), 14, "2", "2", True),  # not the first delivery: no three-day rule
    (("stupéfiants", "délivrance fractionnée de 14 jours"), 10, "0", "1", False),  # 4 of 14
    (("stupéfiants", "délivrance fractionnée de 14 jours"), 10, "0", "0.5", True),
])
def test_delivery_periods(sentences: tuple[str, ...], days_after: int, delivered: str,
                          asked: str, ok: bool) -> None:
    p = prescription(secured=True)
    got = check_dispensation(p, delivery(asked), record(p, Decimal(delivered)),
                             Facts(*sentences),  # type: ignore[arg-type]
                             DAY + dt.timedelta(days=days_after))
    assert (not [f for f in got if f.severity is Severity.REFUSE]) is ok, got


def test_hospital_pharmacy_only_and_papers_at_delivery() -> None:
    p = prescription()
    got = check_dispensation(p, delivery("1"), record(p), Facts(
        "délivrance réservée aux pharmacies à usage intérieur",
        "délivrance ne pouvant se faire qu'après vérification de l'attestation co-signée"),
        DAY)  # type: ignore[arg-type]
    assert [f.severity for f in got] == [Severity.REFUSE, Severity.WARN]
