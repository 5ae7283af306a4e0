"""Conditions of prescription and delivery (BDPM `CIS_CPD_bdpm.txt`) as typed rules.

The BDPM gives each medicine a few sentences ("liste I", "stupéfiants", "prescription limitée à
4 semaines", "prescription réservée aux spécialistes et services CARDIOLOGIE"...). This module
turns one sentence into one `Condition` (`classify`) and a medicine's sentences into its
`DrugRules`; the import stores them (`drugs.store`), the prescription and dispensation checks
(`prescriptions.checks`) read them. Pure functions: text in, rules out.

Sentences are recognised by their wording, never by drug name, so a new BDPM release brings new
medicines under the same rules, and a variant of a known wording ("limitée à 8 semaines",
"spécialistes et services UROLOGIE") is read the same way. A sentence no pattern knows becomes
`Unrecognised`: the checks warn the prescriber about it rather than ignore it.

The 2025-07 file holds 168 distinct sentences; every one is classified (tests/test_conditions.py
reads the real file). Where a sentence can be read two ways the reading chosen is written next to
its pattern, marked READING.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    SCHEDULE = "schedule"  # liste I, liste II, stupéfiants
    SECURED = "secured"  # ordonnance sécurisée (en toutes lettres or not)
    MAX_DURATION = "max-duration"  # prescription limitée à ...
    FRACTIONATED = "fractionated"  # délivrance fractionnée de N jours
    NOT_IN_TOWN = "not-in-town"  # usage hospitalier, professionnel, d'urgence: not in town
    HOSPITAL = "hospital"  # prescription hospitalière / initiale hospitalière [période]
    SPECIALISTS = "specialists"  # prescription réservée aux spécialistes ... X
    INITIAL_BY_SPECIALISTS = "initial-by-specialists"  # the marker "initiale réservée à ..."
    RENEWAL_OPEN = "renewal-open"  # renouvellement non restreint
    SETTING = "setting"  # prescription réservée aux médecins exerçant dans ... (CSAPA...)
    NO_RENEWAL = "no-renewal"  # prescription médicale non renouvelable
    PAPER = "paper"  # a document the gateway cannot see (attestation, accord de soins...)
    ADMINISTRATION = "administration"  # where / by whom it is administered
    DISPENSING = "dispensing"  # who may dispense (PUI only, CSAPA or ville...)
    OVERLAP = "overlap"  # chevauchement interdit
    QUALIFIER = "qualifier"  # "pour les femmes ... :" heading of other sentences
    INFO = "info"  # nothing to enforce or warn (monitoring, "soumis à prescription")
    UNRECOGNISED = "unrecognised"


class Scope(StrEnum):
    ALL = "all"  # every prescription, initial and renewal
    INITIAL = "initial"  # the initial prescription only
    RENEWAL = "renewal"  # the renewals only


@dataclass(frozen=True)
class Condition:
    """One sentence of the BDPM and what it means. Only the fields of its kind are set."""

    kind: Kind
    text: str  # the sentence as published (cleaned of stray control characters)
    schedule: str | None = None  # "I", "II", "stupefiant"
    in_letters: bool = False  # SECURED: "en toutes lettres"
    days: int | None = None  # MAX_DURATION (also FRACTIONATED: the fraction)
    months: int | None = None  # MAX_DURATION in months; HOSPITAL/INITIAL_*: period of validity
    short_days: int | None = None  # MAX_DURATION "7 jours ou 28 jours": the shorter limit
    scope: Scope = Scope.ALL
    specialities: tuple[str, ...] = ()  # SPECIALISTS: the speciality words, as published
    services: bool = False  # SPECIALISTS: "spécialistes et services" (a hospital service counts)
    setting: str | None = None  # SETTING: where the prescriber practises, in words
    hospital_setting: bool = False  # SETTING: the directory can tell (a hospital structure)
    when: str = "prescription"  # PAPER: "prescription" or "dispensing"
    pui_only: bool = False  # DISPENSING: a hospital pharmacy (PUI) only

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if v not in (None, False, (), "")}
        data["kind"] = self.kind.value
        if self.scope is not Scope.ALL:
            data["scope"] = self.scope.value
        else:
            data.pop("scope", None)
        if self.when == "prescription":
            data.pop("when", None)
        data["specialities"] = list(self.specialities) if self.specialities else None
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Condition:
        values = dict(data)
        values["kind"] = Kind(values["kind"])
        values["scope"] = Scope(values.get("scope", "all"))
        values["specialities"] = tuple(values.get("specialities") or ())
        return cls(**values)


def clean(text: str) -> str:
    """The sentence without the stray C1 control characters of the file (`l\\x92accord` is a
    cp1252 apostrophe that went through a wrong conversion upstream) and doubled spaces."""
    text = text.replace("\x92", "’")
    text = "".join(c for c in text if unicodedata.category(c) != "Cc")
    return " ".join(text.split())


def fold(text: str) -> str:
    """Lower case, no accents, apostrophes and punctuation as spaces: what patterns match."""
    decomposed = unicodedata.normalize("NFKD", clean(text))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return " ".join(re.sub(r"[^0-9a-z/]+", " ", plain).split())


_NUMBER_WORDS = {"un": 1, "une": 1, "deux": 2, "trois": 3, "quatre": 4, "cinq": 5, "six": 6,
                 "sept": 7, "huit": 8, "neuf": 9, "dix": 10, "douze": 12}
_PERIODS = {"annuelle": 12, "semestrielle": 6, "trimestrielle": 3, "mensuelle": 1}


def _count(word: str) -> int:
    return int(word) if word.isdigit() else _NUMBER_WORDS[word]


# (pattern over the folded sentence, builder). The first that matches wins; the order matters
# where sentences share words (the "initiale ... réservée à certains spécialistes" marker before
# the speciality lists, the renewal list before the prescription lists).
_Builder = Any
_RULES: list[tuple[re.Pattern[str], _Builder]] = []


def _rule(pattern: str) -> Any:
    def register(build: _Builder) -> _Builder:
        _RULES.append((re.compile(pattern), build))
        return build
    return register


@_rule(r"^liste (i|ii)$")
def _schedule(m: re.Match[str], text: str) -> Condition:
    return Condition(Kind.SCHEDULE, text, schedule=m.group(1).upper())


@_rule(r"^stupefiants?$")
def _narcotic(m: re.Match[str], text: str) -> Condition:
    return Condition(Kind.SCHEDULE, text, schedule="stupefiant")


# "prescription en toutes lettres sur ordonnance sécurisée", "prescription sur ordonnance
# sécurisée". READING: on a secured ordonnance every count is written in letters whatever the
# sentence says (the form enforces it for the whole ordonnance, art. R5132-29 for stupéfiants);
# `in_letters` only keeps what the sentence said.
@_rule(r"^prescription (en toutes lettres )?sur ordonnance securisee$")
def _secured(m: re.Match[str], text: str) -> Condition:
    return Condition(Kind.SECURED, text, in_letters=bool(m.group(1)))


_DURATION = r"(\d+|un|une|deux|trois|quatre|six|sept|huit|douze) (jours?|semaines?|mois)"


def _days(count: int, unit: str) -> tuple[int | None, int | None]:
    if unit.startswith("mois"):
        return None, count
    return (count * 7 if unit.startswith("semaine") else count), None


# READING: "prescription limitée à 7 jours ou 28 jours" (injectable morphine and the like: 7
# days, or 28 with an active delivery system such as a pump) is enforced as 28 days, the longer
# limit, since the gateway cannot see the delivery system; beyond 7 days the prescriber is warned.
@_rule(rf"^prescription limitee a {_DURATION}(?: ou {_DURATION})?$")
def _max_duration(m: re.Match[str], text: str) -> Condition:
    days, months = _days(_count(m.group(1)), m.group(2))
    if m.group(3):
        other, other_months = _days(_count(m.group(3)), m.group(4))
        if days is not None and other is not None:
            return Condition(Kind.MAX_DURATION, text, days=max(days, other),
                             short_days=min(days, other))
        months = max(months or 0, other_months or 0) or None
    return Condition(Kind.MAX_DURATION, text, days=days, months=months)


@_rule(rf"^delivrance fractionnee de {_DURATION}$")
def _fractionated(m: re.Match[str], text: str) -> Condition:
    days, months = _days(_count(m.group(1)), m.group(2))
    return Condition(Kind.FRACTIONATED, text, days=days if days is not None else 30 * (months or 1))


# Medicines no town pharmacy dispenses on a patient's ordonnance: hospital use, the
# professional's own use (dentists, ophthalmologists: R5121-80), emergency use (R5121-96) and
# mobile emergency structures, the armed forces, vaccination centres. READING: "réservé à
# l'usage en situation d'urgence" goes with hospital or SAMU use in every row of the file, and
# "à ne prendre que sur instructions des autorités compétentes" (potassium iodide) is an
# instruction for the patient, not a restriction of the channel (it is INFO below).
@_rule(r"^reserve a l usage (hospitalier|professionnel.*|en situation d urgence.*|militaire)$"
       r"|^reserve a une structure d assistance medicale mobile.*"
       r"|^(?:medicament )?reserve aux centres de vaccination.*")
def _not_in_town(m: re.Match[str], text: str) -> Condition:
    return Condition(Kind.NOT_IN_TOWN, text)


# "prescription hospitalière" (every prescription by a hospital doctor); "prescription initiale
# hospitalière [annuelle|semestrielle|trimestrielle]" (the initial one; renewals by any doctor
# while it is valid: a year, six months, three months; no period stated: no limit is checked).
@_rule(r"^prescription (initiale )?hospitaliere(?: (annuelle|semestrielle|trimestrielle))?$")
def _hospital(m: re.Match[str], text: str) -> Condition:
    return Condition(Kind.HOSPITAL, text, scope=Scope.INITIAL if m.group(1) else Scope.ALL,
                     months=_PERIODS.get(m.group(2) or ""))


# The marker that the lists of specialities of the same medicine apply to the initial
# prescription: "prescription initiale [annuelle|semestrielle] réservée à certains spécialistes".
@_rule(r"^prescription initiale(?: (annuelle|semestrielle|trimestrielle))? reservee a certains"
       r" specialistes$")
def _initial_by_specialists(m: re.Match[str], text: str) -> Condition:
    return Condition(Kind.INITIAL_BY_SPECIALISTS, text, scope=Scope.INITIAL,
                     months=_PERIODS.get(m.group(1) or ""))


@_rule(r"^renouvellement non restreint$")
def _renewal_open(m: re.Match[str], text: str) -> Condition:
    return Condition(Kind.RENEWAL_OPEN, text)


def _specialities(words: str) -> tuple[str, ...]:
    """The speciality named in the sentence, as published ("HEPATO/GASTRO-ENTEROLOGIE"). One
    sentence names one speciality (the BDPM lists several in several sentences); "ENDOCRINOLOGIE
    - DIABETOLOGIE - NUTRITION" is one speciality (the DES of that name)."""
    return (words.strip().rstrip("."),)


def _original_tail(text: str, folded_head: str) -> str:
    """The end of `text` after the words matched by `folded_head` (same word count)."""
    words = clean(text).split()
    return " ".join(words[len(folded_head.split()):])


# "renouvellement de la prescription réservé aux spécialistes en X" (or "aux médecins compétents
# en X").
@_rule(r"^renouvellement de la prescription reserve aux (specialistes|medecins competents)")
def _renewal_specialists(m: re.Match[str], text: str) -> Condition:
    folded = fold(text)
    for head in ("renouvellement de la prescription reserve aux specialistes en",
                 "renouvellement de la prescription reserve aux medecins competents en",
                 "renouvellement de la prescription reserve aux medecins competents",
                 "renouvellement de la prescription reserve aux specialistes"):
        if folded.startswith(head + " "):
            return Condition(Kind.SPECIALISTS, text, scope=Scope.RENEWAL,
                             specialities=_specialities(_original_tail(text, head)))
    return Condition(Kind.UNRECOGNISED, text)


# "prescription initiale annuelle réservée aux spécialistes et services X": the list and the
# marker in one sentence.
@_rule(r"^prescription initiale(?: (annuelle|semestrielle|trimestrielle))? reservee aux"
       r" specialistes et services (.+)$")
def _initial_specialists(m: re.Match[str], text: str) -> Condition:
    head = "prescription initiale " + (m.group(1) + " " if m.group(1) else "") + \
        "reservee aux specialistes et services"
    return Condition(Kind.SPECIALISTS, text, scope=Scope.INITIAL, services=True,
                     months=_PERIODS.get(m.group(1) or ""),
                     specialities=_specialities(_original_tail(text, head)))


# "prescription réservée aux spécialistes et services X", "... aux spécialistes en X", "... aux
# spécialistes X", "... aux médecins compétents [en] X", "... aux spécialistes autorisés X",
# "... aux titulaires de la Formation Spécialisée Transversale Sommeil", "... aux médecins
# spécialistes ou qualifiés en médecine générale titulaires de la capacité de gérontologie".
# READING: the sentences of one medicine are alternatives (any one of the specialities may
# prescribe), as the BDPM lists HUMIRA's six specialities in six sentences; "et services" lets a
# doctor of a hospital service of that speciality prescribe, which the directory cannot tell:
# a hospital doctor without the speciality is warned, a town doctor refused.
_SPECIALIST_HEADS = [
    ("prescription reservee aux specialistes et services", True),
    ("prescription reservee aux specialistes autorises", False),
    ("prescription reservee aux specialistes en", False),
    ("prescription reservee aux medecins competents en", False),
    ("prescription reservee aux medecins competents", False),
    ("prescription reservee aux titulaires de la", False),
    ("prescription reservee aux medecins specialistes ou qualifies en medecine generale"
     " titulaires de la", False),
    ("prescription reservee aux specialistes", False),
]


@_rule(r"^prescription reservee aux (?:specialistes|medecins competents|titulaires de la"
       r" formation|medecins specialistes ou qualifies en medecine generale titulaires)")
def _specialists(m: re.Match[str], text: str) -> Condition:
    folded = fold(text)
    for head, services in _SPECIALIST_HEADS:
        if folded.startswith(head + " "):
            return Condition(Kind.SPECIALISTS, text, services=services,
                             specialities=_specialities(_original_tail(text, head)))
    return Condition(Kind.UNRECOGNISED, text)


# Where the prescriber practises. READING: these are alternatives to the specialities of the same
# medicine (METHADONE: CSAPA or hospital services for drug users; RITALINE: neurology, paediatrics,
# psychiatry or a sleep centre). Hospital settings are checked against the prescriber's structure
# in the directory; the others (CSAPA, sleep centre, blood transfusion, home dialysis) it cannot
# see, so they are warned about, never refused.
_SETTINGS = [
    (r"^prescription reservee aux medecins exercant dans les services hospitaliers", True,
     Scope.ALL),
    (r"^prescription reservee aux medecins hospitaliers", True, Scope.ALL),
    (r"^prescription reservee aux unites de soins intensifs", True, Scope.ALL),
    (r"^prescription reservee aux medecins exercant dans", False, Scope.ALL),
    (r"^prescription par un medecin exercant dans", False, Scope.ALL),
    (r"^prescription initiale par un medecin exercant dans", False, Scope.INITIAL),
]


@_rule(r"^prescription (?:initiale )?(?:reservee aux (?:medecins exercant|medecins hospitaliers"
       r"|unites de soins)|par un medecin exercant)")
def _setting(m: re.Match[str], text: str) -> Condition:
    folded = fold(text)
    for pattern, hospital, scope in _SETTINGS:
        if re.match(pattern, folded):
            where = re.sub(r"(?i)^prescription (initiale )?(réservée aux|par) ", "",
                           clean(text)).rstrip(".")
            return Condition(Kind.SETTING, text, setting=where, hospital_setting=hospital,
                             scope=scope)
    return Condition(Kind.UNRECOGNISED, text)


# Abortion drugs: "hors établissement de santé : prescription réservée aux médecins, sages-femmes
# et centres habilités (L.2212-2)". READING: every doctor of the directory is a médecin; the
# habilitation (a convention with an establishment) is a paper the gateway cannot see.
@_rule(r"^hors etablissement de sante prescription reservee aux medecins")
def _abortion(m: re.Match[str], text: str) -> Condition:
    return Condition(Kind.PAPER, text)


@_rule(r"non renouvelable$")
def _no_renewal(m: re.Match[str], text: str) -> Condition:
    return Condition(Kind.NO_RENEWAL, text)


# Papers the pharmacist must see before dispensing, which the prescriber must provide (or the
# pharmacist check): warned about, the gateway cannot see them.
@_rule(r"^(?:la )?delivrance (?:ne pouvant se faire qu apres|ne peut se faire qu apres"
       r"|apres verification)"
       r"|^conservation d une copie de l ordonnance"
       r"|^la premiere delivrance doit etre accompagnee")
def _dispensing_paper(m: re.Match[str], text: str) -> Condition:
    return Condition(Kind.PAPER, text, when="dispensing")


@_rule(r"^prescription necessitant|^la prescription necessite|^prescription et delivrance"
       r" subordonnees|^ordonnance avec|^mise a jour du carnet|^dosage |^un livret d information")
def _paper(m: re.Match[str], text: str) -> Condition:
    return Condition(Kind.PAPER, text)


@_rule(r"administration|administrations")
def _administration(m: re.Match[str], text: str) -> Condition:
    return Condition(Kind.ADMINISTRATION, text)


# "délivrance réservée aux pharmacies à usage intérieur" and "... aux ETS pour les malades qui y
# sont traités" (a blood establishment's pharmacy): no town pharmacy dispenses them.
# "délivrance effectuée par une pharmacie de ville" / "par un CSAPA" (methadone) are
# alternatives, a town pharmacy among them: nothing to enforce.
@_rule(r"^delivrance reservee aux (pharmacies a usage interieur|ets .*)$")
def _pui(m: re.Match[str], text: str) -> Condition:
    return Condition(Kind.DISPENSING, text, pui_only=True)


@_rule(r"^delivrance effectuee par|^dispositions particulieres de delivrance")
def _dispensing(m: re.Match[str], text: str) -> Condition:
    return Condition(Kind.DISPENSING, text)


@_rule(r"^chevauchement interdit")
def _overlap(m: re.Match[str], text: str) -> Condition:
    return Condition(Kind.OVERLAP, text)


# Headings whose sub-sentences follow them on the BDPM web page; in the file the rows of a
# medicine come in no reliable order, so a heading cannot be tied to its sentences. READING:
# kept as context, shown with the medicine's papers.
@_rule(r"^a l initiation du traitement")
def _qualifier(m: re.Match[str], text: str) -> Condition:
    return Condition(Kind.QUALIFIER, text)


@_rule(r"^medicament necessitant une surveillance particuliere|surveillance particuliere pendant"
       r"|^medicament soumis a prescription medicale|^a ne prendre que sur instructions"
       r"|voir programme de prevention")
def _info(m: re.Match[str], text: str) -> Condition:
    return Condition(Kind.INFO, text)


def classify(text: str) -> Condition:
    """One BDPM sentence -> its Condition (UNRECOGNISED when no pattern knows it)."""
    cleaned = clean(text)
    if cleaned.endswith(":"):  # a heading ("pour tous les patients :"), see _qualifier
        return Condition(Kind.QUALIFIER, cleaned)
    folded = fold(cleaned)
    for pattern, build in _RULES:
        m = pattern.search(folded)
        if m:
            got: Condition = build(m, cleaned)
            return got
    return Condition(Kind.UNRECOGNISED, cleaned)


@dataclass(frozen=True)
class DrugRules:
    """Every condition of one medicine, and what they add up to."""

    conditions: tuple[Condition, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, texts: list[str] | tuple[str, ...]) -> DrugRules:
        seen: set[str] = set()
        out = []
        for t in texts:
            c = classify(t)
            if c.text and c.text not in seen:
                seen.add(c.text)
                out.append(c)
        return cls(tuple(out))

    def to_json(self) -> str:
        return json.dumps([c.as_dict() for c in self.conditions], ensure_ascii=False)

    @classmethod
    def from_json(cls, data: str) -> DrugRules:
        return cls(tuple(Condition.from_dict(d) for d in json.loads(data)))

    def of_kind(self, *kinds: Kind) -> tuple[Condition, ...]:
        return tuple(c for c in self.conditions if c.kind in kinds)

    @property
    def narcotic(self) -> bool:
        return any(c.schedule == "stupefiant" for c in self.of_kind(Kind.SCHEDULE))

    @property
    def needs_secured(self) -> bool:
        """A stupéfiant, or a medicine whose conditions ask for a secured ordonnance
        (art. R5132-5 and R5132-29)."""
        return self.narcotic or bool(self.of_kind(Kind.SECURED))

    @property
    def max_duration(self) -> Condition | None:
        """The strictest stated limit (a medicine has one in practice)."""
        limits = self.of_kind(Kind.MAX_DURATION)
        return min(limits, key=lambda c: c.days if c.days is not None else 31 * (c.months or 0),
                   default=None)

    @property
    def fraction_days(self) -> int | None:
        days = [c.days for c in self.of_kind(Kind.FRACTIONATED) if c.days]
        return min(days) if days else None

    @property
    def pui_only(self) -> bool:
        return any(c.pui_only for c in self.of_kind(Kind.DISPENSING))
