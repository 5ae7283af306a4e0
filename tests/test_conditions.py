"""The BDPM's conditions of prescription and delivery read as rules (gateway.drugs.conditions),
the units a form fits (drugs.forms), the specialities they name (prescriptions.prescriber) and
French numbers in words (documents.numbers): pure functions, checked against the real files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.directory.codes import SAVOIR_FAIRE
from gateway.documents.numbers import from_letters, in_letters, spell_numbers
from gateway.drugs import forms
from gateway.drugs.bdpm import normalise_name
from gateway.drugs.conditions import Condition, DrugRules, Kind, Scope, classify
from gateway.prescriptions.prescriber import specialities_for


@pytest.fixture(scope="module")
def sentences(shared_dir: Path) -> dict[str, int]:
    """Every distinct sentence of CIS_CPD_bdpm.txt, with how many medicines carry it."""
    out: dict[str, int] = {}
    for line in (shared_dir / "bdpm/CIS_CPD_bdpm.txt").read_text("utf-8").splitlines():
        _, _, text = line.partition("\t")
        if text.strip():
            out[text.strip()] = out.get(text.strip(), 0) + 1
    return out


def test_every_sentence_of_the_file_is_classified(sentences: dict[str, int]) -> None:
    assert len(sentences) > 150
    unknown = [t for t in sentences if classify(t).kind is Kind.UNRECOGNISED]
    assert unknown == []


def test_every_speciality_named_is_held_by_some_savoir_faire(sentences: dict[str, int]) -> None:
    named = {s for t in sentences for s in classify(t).specialities}
    assert len(named) > 40
    assert {s: specialities_for(s) for s in named if not specialities_for(s)} == {}


@pytest.mark.parametrize(("text", "expected"), [
    ("liste I", Condition(Kind.SCHEDULE, "liste I", schedule="I")),
    ("stupéfiants", Condition(Kind.SCHEDULE, "stupéfiants", schedule="stupefiant")),
    ("prescription en toutes lettres sur ordonnance sécurisée",
     Condition(Kind.SECURED, "prescription en toutes lettres sur ordonnance sécurisée",
               in_letters=True)),
    ("prescription limitée à 12 semaines",
     Condition(Kind.MAX_DURATION, "prescription limitée à 12 semaines", days=84)),
    ("prescription limitée à 6 mois",
     Condition(Kind.MAX_DURATION, "prescription limitée à 6 mois", months=6)),
    ("prescription limitée à 7 jours ou 28 jours",
     Condition(Kind.MAX_DURATION, "prescription limitée à 7 jours ou 28 jours", days=28,
               short_days=7)),
    ("délivrance fractionnée de 14 jours",
     Condition(Kind.FRACTIONATED, "délivrance fractionnée de 14 jours", days=14)),
    ("prescription initiale hospitalière semestrielle",
     Condition(Kind.HOSPITAL, "prescription initiale hospitalière semestrielle",
               scope=Scope.INITIAL, months=6)),
    ("renouvellement de la prescription réservé aux médecins compétents en CANCEROLOGIE",
     Condition(Kind.SPECIALISTS, "renouvellement de la prescription réservé aux médecins"
               " compétents en CANCEROLOGIE", scope=Scope.RENEWAL,
               specialities=("CANCEROLOGIE",))),
    ("prescription réservée aux spécialistes et services HEPATO/GASTRO-ENTEROLOGIE",
     Condition(Kind.SPECIALISTS, "prescription réservée aux spécialistes et services"
               " HEPATO/GASTRO-ENTEROLOGIE", specialities=("HEPATO/GASTRO-ENTEROLOGIE",),
               services=True)),
    # the file's cp1252 apostrophe that went through a wrong conversion upstream
    ("prescription nécessitant préalablement le recueil de l\x92accord de soins du patient",
     Condition(Kind.PAPER, "prescription nécessitant préalablement le recueil de l’accord de"
               " soins du patient")),
    ("pour tous les patients :", Condition(Kind.QUALIFIER, "pour tous les patients :")),
])
def test_readings(text: str, expected: Condition) -> None:
    assert classify(text) == expected


def test_new_wordings_are_read_by_their_pattern_not_their_exact_text() -> None:
    assert classify("prescription limitée à 8 semaines").days == 56
    got = classify("prescription réservée aux spécialistes et services ANDROLOGIE")
    assert got.kind is Kind.SPECIALISTS and specialities_for("ANDROLOGIE")
    assert classify("une phrase que personne n'a jamais publiée").kind is Kind.UNRECOGNISED


def test_rules_survive_their_storage() -> None:
    rules = DrugRules.of(["stupéfiants", "prescription limitée à 4 semaines",
                          "délivrance fractionnée de 7 jours", "stupéfiants",
                          "prescription réservée aux spécialistes et services NEUROLOGIE"])
    assert len(rules.conditions) == 4  # a sentence twice is one condition
    again = DrugRules.from_json(rules.to_json())
    assert again == rules
    assert again.narcotic and again.needs_secured and again.fraction_days == 7
    assert again.max_duration is not None and again.max_duration.days == 28


def test_savoir_faire_table_is_the_value_set(shared_dir: Path) -> None:
    text = (shared_dir / "ci-sis/jeuxDeValeurs/JDV_J107_EnsembleSavoirFaire_RASS.xml"
            ).read_text("utf-8")
    published = dict(re.findall(r'<Concept\s+code="([^"]+)"\s+codeSystem="[^"]+"\s+'
                                r'displayName="([^"]+)"', text))
    assert published == SAVOIR_FAIRE


@pytest.mark.parametrize(("form", "name", "fits", "does_not_fit"), [
    ("comprimé pelliculé sécable", "", forms.TABLET, forms.DROP),
    ("suspension pour inhalation", "VENTOLINE 100 microgrammes/dose", forms.PUFF, forms.SACHET),
    ("microgranule à libération prolongée en gélule", "", forms.CAPSULE, forms.TABLET),
    ("solution injectable", "", forms.ML, forms.DROP),
    ("solution buvable en gouttes", "", forms.DROP, forms.TABLET),
    ("dispositif", "DUROGESIC 25 microgrammes/heure, dispositif transdermique", forms.PATCH,
     forms.ML),
    ("crème", "", forms.APPLICATION, forms.CAPSULE),
])
def test_units_that_fit_a_form(form: str, name: str, fits: str, does_not_fit: str) -> None:
    units = forms.dose_units(form, name)
    assert units is not None and fits in units and does_not_fit not in units


def test_unknown_forms_refuse_no_unit_and_packs_come_from_the_labels() -> None:
    assert forms.dose_units("trousse pour préparation radiopharmaceutique") is None
    labels = ["plaquette(s) PVC aluminium de 30 comprimé(s)"]
    assert forms.fits_pack("boîte", labels) and not forms.fits_pack("tube", labels)
    assert forms.fits_pack("flacon", ["1 flacon(s) polyéthylène de 30 comprimé(s)"])
    assert forms.dose_units("solution buvable", "", ["20 sachet(s) de 10 ml"]) is not None


def test_numbers_in_words_both_ways() -> None:
    for n in [*range(0, 2001), 71_000, 80_080, 199_999, 999_999]:
        assert from_letters(normalise_name(in_letters(n))) == n, n
    assert from_letters("vingt et une") == 21 and from_letters("septante deux") == 72
    assert from_letters("comprime") is None and from_letters("") is None
    assert spell_numbers("1 gélule pendant 28 jours ; 21 boîtes ; 0,5 ml") == \
        "une gélule pendant vingt-huit jours ; vingt et une boîtes ; 0,5 ml"
