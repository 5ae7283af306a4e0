"""Every document the gateway writes passes every layer the national validators run.

The corpus: prescriptions from doctors' mail forms using every feature of the README's form
section, a prescription using every posology encoding of the model (phases, times of day as
clock times and events, dose ranges), and dispensations of every kind (délivré, partiel,
substitué, adapté, non délivré) from the pharmacist's form and from the model. Each goes
through the CDA schema, its volet's schematron, the four generic layers (IHE,
ModelesDeContenusCDA, Modeles_ANS, StrucMin: the ANS compile chain run by Saxon-HE) and the
gateway's own rules: 0 failed asserts, 0 errors, anywhere.

Few documents, each with many features: a Saxon run costs per document, not per feature
(the layers are compiled once per session: conftest.cisis_kit).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from gateway.config import load_config
from gateway.directory import demo
from gateway.documents import cda, samples
from gateway.documents.build import assign_ids, build_dispensation, build_prescription
from gateway.documents.form import parse_dispensation_form, parse_prescription_form
from gateway.documents.model import (
    Dispensation,
    DispensedLine,
    DispensingKind,
    Dose,
    Frequency,
    Moment,
    Phase,
    Prescription,
    PrescriptionLine,
    Product,
)
from gateway.documents.parse import parse_document
from gateway.documents.validate import ALL_LAYERS, validate_document
from gateway.ordonnance import qr_png, render_pdf

NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)
HEAD = f"Patient : INS {demo.PATIENT_INS}\nPrescripteur : RPPS {demo.DOCTOR_RPPS}\n"

# Every part of a medicine line and every header of the README's form section.
EVERY_LINE_FEATURE = HEAD + """Date : 20/11/2026
Validité : 6 mois
1. DOLIPRANE 1000 mg, comprimé ; 1 comprimé 3 fois par jour pendant 5 jours ; 2 boîtes ;
   voie orale
2. CIS 65143010 ; 1 comprimé le matin pendant 90 jours ; 3 boîtes ; à renouveler 3 fois ;
   non substituable (MTE) ; ALD
3. Préparation magistrale : diprosone 30 g, cérat de Galien 70 g ;
   posologie : 2 applications par jour sur les plaques pendant 10 jours ; 1 tube ; voie cutanée
4. CIS 66269026 ; 2 gouttes matin et soir ; 1 flacon ; non substituable (EFG)
5. 3400937560986 ; 1 sachet toutes les 8 heures pendant 3 jours ; 1 boîte ;
   non substituable (CIF)
6. CIS 62772966 ; 1 cp/j ; 1 boîte ; à renouveler 2 fois
7. CIS 60833559 ; 1 goutte dans chaque oeil si gêne ; 1 flacon ; voie ophtalmique
8. CIS 62772966 ; 1 comprimé le matin, 2 le soir pendant 10 jours ; 1 boîte
Remarques : revoir en consultation dans 3 mois.
"""
# The other headers: prescriber by address, a validity date, secured ordonnance (quantities
# in letters), exception drugs, a single zone (no ALD).
OTHER_HEADERS = f"""Patient : INS {demo.PATIENT_INS}
Prescripteur : {demo.DOCTOR_LOCAL}@{{domain}}
Date : 21/11/2026
Validité : 31/12/2026
Ordonnance sécurisée : oui
Médicaments d'exception : oui
1. DOLIPRANE 1000 mg, comprimé ; un comprimé trois fois par jour pendant cinq jours ;
   deux boîtes
"""

# Every posology encoding of the model (what the forms will produce for times of day).
POSOLOGY_LINES = (
    # Tapered doses with times of day: 2 in the morning and 1 at bedtime (a dose per time of
    # day) for 3 days, then 1 in the morning for 4 days, then 1 to 2 at 07:30 every other day.
    PrescriptionLine(product=samples.DOLIPRANE, phases=(
        Phase(moments=(cda.MORNING, cda.BEDTIME), duration_days=3,
              doses=(Dose(Decimal(2), "{tablet}"), Dose(Decimal(1), "{tablet}"))),
        Phase(Dose(Decimal(1), "{tablet}"), moments=(cda.MORNING,), duration_days=4),
        Phase(Dose(Decimal(1), "{tablet}", high=Decimal(2)), Frequency(1, Decimal(2), "d"),
              moments=(Moment(time=dt.time(7, 30)),)),
    ), quantity=Decimal(2), route="20053000"),
    # Split dosing: morning, noon and evening, with meals; a single event with a sparse
    # frequency; a clock time with a weekly frequency.
    PrescriptionLine(product=samples.LEVOTHYROX, phases=(Phase(
        Dose(Decimal("0.5"), "{tablet}"), moments=(cda.MORNING, cda.NOON, cda.EVENING),
        duration_days=30),), quantity=Decimal(1)),
    PrescriptionLine(product=Product("ADRIGYL 10 000 UI/ml, solution buvable en gouttes",
                                     cis="66269026"),
                     phases=(Phase(Dose(Decimal(3), "[drp]"), Frequency(1, Decimal(1), "wk"),
                                   moments=(cda.MEAL,), duration_days=28),),
                     quantity=Decimal(1), quantity_unit="flacon"),
    PrescriptionLine(product=Product("PARACETAMOL EG 1 g, comprimé", cis="62772966"),
                     phases=(Phase(Dose(Decimal(1), "{tablet}"), Frequency(2, Decimal(1), "wk"),
                                   moments=(cda.EVENING,)),), quantity=Decimal(1),
                     dosage_text="À avaler avec un grand verre d'eau"),
    PrescriptionLine(product=samples.MAGISTRAL, phases=(Phase(
        moments=(Moment(event="PCM"), Moment(event="HS")), duration_days=10),),
        quantity=Decimal(1), quantity_unit="tube", route="20003000"),
)

# The five kinds, each on its own line (the form's words from the README).
DISPENSATION_FORM = """Ordonnance : {identifier}
Pharmacien : RPPS {rpps}
1 : substitué par PARACETAMOL EG 1 g, comprimé ; 2 boîtes ; motif : générique
2 : délivré partiellement ; 1 boîte ; motif : le reste au prochain passage
3 : non délivré ; motif : préparation à commander, disponible demain
4 : adapté ; 1 flacon ; motif : posologie réduite avec l'accord du Dr Martin
5 : délivré
6 : délivré ; 1 boîte
"""


def _prescription_document(p: Prescription) -> tuple[Prescription, bytes]:
    p = assign_ids(p)
    assert p.identifier is not None
    return p, build_prescription(p, render_pdf(p), qr_png(p.identifier))


@pytest.fixture(scope="module")
def corpus(demo_people: Any, demo_drugs: Any, forms_home: Any) -> dict[str, bytes]:
    read = dict(people=demo_people, drugs=demo_drugs, now=NOW)
    every, every_data = _prescription_document(parse_prescription_form(EVERY_LINE_FEATURE,
                                                                       **read))
    domain = load_config(forms_home / "config.toml").gateway.domain
    other, other_data = _prescription_document(parse_prescription_form(
        OTHER_HEADERS.format(domain=domain), **read))
    posology, posology_data = _prescription_document(samples.prescription(
        lines=POSOLOGY_LINES, bizone=False))
    form = parse_dispensation_form(
        DISPENSATION_FORM.format(identifier=every.identifier, rpps=demo.PHARMACIST_RPPS),
        prescription_for=lambda ident: every if ident == every.identifier else None, **read)
    adapted = Dispensation(
        prescription_id=posology.identifier or "", patient=posology.patient,
        prescription_document_id=posology.document_id or "", author=form.author,
        date=NOW, notes="Patient informé des modifications.", lines=(
            DispensedLine(posology.lines[0].line_id or "1", samples.DOLIPRANE, Decimal(1),
                          DispensingKind.ADAPTED, reason="accord du prescripteur par téléphone",
                          phases=(Phase(Dose(Decimal(1), "{tablet}"), moments=(cda.BEDTIME,),
                                        duration_days=7),)),
            DispensedLine(posology.lines[1].line_id or "2", samples.LEVOTHYROX, Decimal(1),
                          DispensingKind.PARTIAL, refill=True, reason="rupture"),
            DispensedLine(posology.lines[2].line_id or "3", posology.lines[2].product,
                          Decimal(1), DispensingKind.ADAPTED, quantity_unit="flacon",
                          phases=(Phase(Dose(Decimal(2), "[drp]"), Frequency(3)),)),
            DispensedLine(posology.lines[3].line_id or "4", posology.lines[3].product,
                          Decimal(1), DispensingKind.ADAPTED,
                          phases=(Phase(moments=(cda.MORNING,), duration_days=5),)),
        ))
    return {
        "prescription: every line feature": every_data,
        "prescription: the other headers": other_data,
        "prescription: every posology encoding": posology_data,
        "dispensation: every kind, from the form": build_dispensation(form),
        "dispensation: adapted posologies, partial refill": build_dispensation(adapted),
    }


def test_the_corpus_covers_what_it_says(corpus: dict[str, bytes]) -> None:
    """The forms were read as meant: every kind, every flag, every encoding is in there (a
    corpus that lost a feature on the way would pass for nothing)."""
    every = parse_document(corpus["prescription: every line feature"]).prescription
    other = parse_document(corpus["prescription: the other headers"]).prescription
    posology = parse_document(corpus["prescription: every posology encoding"]).prescription
    form = parse_document(corpus["dispensation: every kind, from the form"]).dispensation
    assert every is not None and other is not None and posology is not None and form
    assert every.bizone and not other.bizone and other.secured and other.exception_drugs
    assert {line.substitution_refusal for line in every.lines} >= {"MTE", "EFG", "CIF"}
    assert {line.quantity_unit for line in every.lines} >= {"boîte", "tube", "flacon"}
    assert every.lines[2].product.magistral and every.lines[4].product.cip13
    assert {line.route for line in every.lines} >= {"20053000", "20003000", "20051000"}
    assert every.notes and every.validity_end == dt.date(2027, 5, 20)
    assert other.validity_end == dt.date(2026, 12, 31)
    assert {k for line in form.lines for k in [line.kind]} == set(DispensingKind)
    assert [len(line.phases) for line in posology.lines] == [3, 1, 1, 1, 1]
    assert posology.lines[0].phases[0].doses == (Dose(Decimal(2), "{tablet}"),
                                                 Dose(Decimal(1), "{tablet}"))
    split = every.lines[7].phases[0]  # "1 comprimé le matin, 2 le soir pendant 10 jours"
    assert split.moments == (cda.MORNING, cda.EVENING) and split.duration_days == 10
    assert split.doses == (Dose(Decimal(1), "{tablet}"), Dose(Decimal(2), "{tablet}"))
    assert split.dose is None and every.lines[7].dosage_text is None
    moments = {m for line in posology.lines for ph in line.phases for m in ph.moments}
    assert {m.event for m in moments} >= {"HS", "C", "PCM"}
    assert {m.time for m in moments} >= {dt.time(8), dt.time(12), dt.time(19), dt.time(7, 30)}


def test_every_document_passes_every_layer(corpus: dict[str, bytes], cisis_kit: Any,
                                           demo_drugs: Any) -> None:
    failures = []
    for name, data in corpus.items():
        report = validate_document(data, kit=cisis_kit, drugs=demo_drugs, deliver=True)
        assert [layer.name for layer in report.layers] == list(ALL_LAYERS)
        assert report.version == "2024.01"
        for layer in report.layers:
            if layer.status != "passed" or any(p.severity == "warning" for p in layer.problems):
                failures += [f"{name} / {layer.name} ({layer.status} {layer.note}):"
                             f" [{p.severity}] {p}" for p in layer.problems] or \
                    [f"{name} / {layer.name}: {layer.status} {layer.note}"]
    assert not failures, "\n".join(failures)


def test_every_document_reads_back_as_written(corpus: dict[str, bytes]) -> None:
    for name, data in corpus.items():
        parsed = parse_document(data)
        assert parsed.problems == [], name


def test_the_dispensation_kinds_are_each_encoded_as_themselves(corpus: dict[str, bytes]
                                                               ) -> None:
    from lxml import etree

    from gateway.documents.cda import XP

    root = etree.fromstring(corpus["dispensation: every kind, from the form"])
    supplies = root.xpath("//c:entry/c:supply", namespaces=XP)
    assert len(supplies) == 6
    sub, partial, missing, adapted, delivered, _ = supplies
    assert sub.xpath(f"c:entryRelationship/c:act[c:templateId/@root='{cda.SUBSTITUTION_DONE}']"
                     "/c:code/@code", namespaces=XP) == ["G"]
    assert partial.xpath("c:code/@code", namespaces=XP) == ["FFP"]
    assert missing.xpath("c:quantity/@value", namespaces=XP) == ["0"]
    assert not delivered.xpath("c:code", namespaces=XP)
    text = " ".join(" ".join(root.xpath("//c:section/c:text//text()", namespaces=XP)).split())
    assert "Adaptation : posologie réduite avec l'accord du Dr Martin" in text
    assert "Délivrance partielle : le reste au prochain passage" in text
    assert "Non délivré : préparation à commander, disponible demain" in text
