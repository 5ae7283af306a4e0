"""The plain-text forms people type in a mail body: a doctor's prescription, a pharmacist's
dispensation. Sans-IO and pure: text in, model out, or a FormError listing every problem with its
line number, in words the writer understands (French, as the writers are).

Prescription form (keywords are case-, accent- and spacing-insensitive; `;` separates the parts
of a medicine line; a line starting with a space or a tab continues the previous one):

    Patient : INS 279035121518989
    Prescripteur : RPPS 10100123453        (or the prescriber's address; default: the sender)
    Date : 22/11/2026                       (optional: default now)
    1. DOLIPRANE 1000 mg, comprimé ; 1 comprimé 3 fois par jour pendant 5 jours ; 2 boîtes
    2. CIS 65143010 ; 1 comprimé le matin ; 3 boîtes ; à renouveler 3 fois ;
       non substituable (MTE) ; ALD
    3. Préparation magistrale : diprosone 30 g, cérat de Galien 70 g ;
       posologie : 2 applications par jour ; 1 tube
    Remarques : ...

Medicines are named by CIS (8 digits), CIP13 (13 digits) or by name, looked up in the drug
reference: an unknown or ambiguous name is an error listing the candidates.

Dispensation form (the pharmacist's answer for a prescription):

    Ordonnance : 01S 2TB PZ2 JCN ZZY GHZ
    Pharmacien : RPPS 10100678902          (or the pharmacist's address; default: the sender)
    1 : délivré ; 2 boîtes
    2 : substitué par CIS 62772966 ; 2 boîtes ; motif : générique
    3 : non délivré ; motif : rupture de stock
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from gateway.documents import cda, numbers
from gateway.documents.model import (
    AuthorInfo,
    Dispensation,
    DispensedLine,
    DispensingKind,
    Dose,
    Frequency,
    Moment,
    PatientInfo,
    Phase,
    Prescription,
    PrescriptionLine,
    Product,
    SubstitutionRefusal,
    french_day,
    on_day,
)
from gateway.documents.people import People
from gateway.drugs.bdpm import normalise_name
from gateway.errors import GatewayError, InvalidIdentifier
from gateway.identifiers import cip13, cis, ins, rpps
from gateway.prescriptions.identifier import check_identifier

MAX_CANDIDATES = 8
MAX_RENEWALS = 12


class Drugs(Protocol):
    """What the form needs from the drug reference (gateway.drugs.store.DrugReference)."""

    def is_loaded(self) -> bool: ...
    def by_cis(self, cis: str, details: bool = True) -> Any: ...
    def by_cip13(self, cip13: str, details: bool = True) -> Any: ...
    def named(self, text: str) -> list[Any]: ...
    def search(self, text: str, limit: int = 10) -> list[Any]: ...


@dataclass(frozen=True)
class FormProblem:
    line: int  # 0: the form as a whole
    message: str
    candidates: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f"ligne {self.line}" if self.line else "formulaire"
        text = f"{where} : {self.message}"
        if self.candidates:
            text += "\n" + "\n".join(f"    - {c}" for c in self.candidates)
        return text


class FormError(GatewayError):
    """The form cannot be turned into a document; `problems` lists every reason."""

    def __init__(self, problems: list[FormProblem]) -> None:
        self.problems = problems
        first = problems[0]
        more = f" (+{len(problems) - 1} autre(s) problème(s))" if len(problems) > 1 else ""
        super().__init__(str(first).splitlines()[0] + more)

    def report(self) -> str:
        """Every problem, one block each, for the reply mail."""
        return "\n".join(str(p) for p in self.problems)


@dataclass
class _Line:
    number: int
    text: str


def _norm(text: str) -> str:
    return normalise_name(text)


def _logical_lines(text: str, keys: dict[str, str]) -> list[_Line]:
    """Lines with continuations joined (an indented line under a numbered line, unless it is a
    header itself); blank lines dropped; a signature ('-- ') ends the form."""
    out: list[_Line] = []
    for number, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        if raw.rstrip() == "--":
            break
        if not raw.strip():
            continue
        continues = (raw[:1] in (" ", "\t") and out and _ITEM.match(out[-1].text)
                     and not _ITEM.match(raw) and _header_key(raw, keys) is None)
        if continues:
            joiner = " " if out[-1].text.rstrip().endswith(";") else " ; "
            out[-1].text = out[-1].text.rstrip() + joiner + raw.strip()
            continue
        out.append(_Line(number, raw.strip()))
    return out


_HEADER = re.compile(r"^\s*([^:;]{2,40}?)\s*:\s*(.*)$")
# "1. ...", "2) ...", "3 - ...", "ligne 4 : ...": a number then a separator (so that a line
# starting with a bare CIS code is not read as item 12 of "345678").
_ITEM = re.compile(r"^\s*(?:ligne\s*)?(\d{1,2})(?:\s*[.):-]+|\s)\s*(.+)$", re.IGNORECASE)

PRESCRIPTION_KEYS = {
    "patient": "patient", "patiente": "patient", "ins": "patient",
    "prescripteur": "author", "medecin": "author", "docteur": "author", "auteur": "author",
    "date": "date", "validite": "validity", "valable jusqu au": "validity",
    "remarque": "notes", "remarques": "notes", "note": "notes", "notes": "notes",
    "commentaire": "notes", "ordonnance securisee": "secured",
    "medicaments d exception": "exception", "medicament d exception": "exception",
    "ordonnance": "title", "bizone": "bizone", "ald": "bizone",
}
DISPENSATION_KEYS = {
    "ordonnance": "prescription", "prescription": "prescription", "identifiant": "prescription",
    "pharmacien": "author", "pharmacienne": "author", "auteur": "author", "date": "date",
    "remarque": "notes", "remarques": "notes", "note": "notes", "notes": "notes",
    "commentaire": "notes",
}

NUMBERS: dict[str, int | Decimal] = {
    "un": 1, "une": 1, "deux": 2, "trois": 3, "quatre": 4, "cinq": 5, "six": 6, "sept": 7,
    "huit": 8, "neuf": 9, "dix": 10, "douze": 12, "demi": Decimal("0.5"),
}
# A number in figures or in words ("vingt-huit", folded to "vingt huit": a secured ordonnance
# writes them in letters).
_NUM = rf"(\d+(?:[.,]\d+)?|{numbers.PATTERN}|demi)"

DOSE_WORDS = {
    "comprime": "{tablet}", "cp": "{tablet}", "cps": "{tablet}", "gelule": "{capsule}",
    "sachet": "{sachet}", "goutte": "[drp]", "application": "{application}",
    "bouffee": "{puff}", "inhalation": "{puff}", "suppositoire": "{suppository}",
    "ampoule": "{ampoule}", "patch": "{patch}", "cuillere": "{spoon}",
    "cuillere a soupe": "{spoon}", "capsule": "{capsule}", "mg": "mg", "g": "g",
    "microgrammes": "ug", "ug": "ug", "ml": "mL", "ui": "[iU]",
}
PACK_WORDS = {"boite": "boîte", "boites": "boîte", "flacon": "flacon", "tube": "tube",
              "recipient": "récipient", "sachet": "sachet", "pot": "pot"}
ROUTE_WORDS = {_norm(label): code for code, label in cda.ROUTES.items()}
# Times of day (normalised words -> Moment): clock times for matin, midi, soir; HL7 timing
# events for the rest (documents.cda). Longest first, so "avant le petit déjeuner" is not read
# as "au petit déjeuner" or "le matin".
MOMENTS: dict[str, Moment] = {
    "avant le petit dejeuner": Moment(event="ACM"), "apres le petit dejeuner": Moment(event="PCM"),
    "au petit dejeuner": Moment(event="CM"), "avant le dejeuner": Moment(event="ACD"),
    "apres le dejeuner": Moment(event="PCD"), "au dejeuner": Moment(event="CD"),
    "avant le diner": Moment(event="ACV"), "apres le diner": Moment(event="PCV"),
    "au diner": Moment(event="CV"), "avant les repas": Moment(event="AC"),
    "apres les repas": Moment(event="PC"), "entre les repas": Moment(event="IC"),
    "au moment des repas": cda.MEAL, "pendant les repas": cda.MEAL, "aux repas": cda.MEAL,
    "au repas": cda.MEAL, "au cours des repas": cda.MEAL, "au coucher": cda.BEDTIME,
    "le coucher": cda.BEDTIME, "au reveil": Moment(event="WAKE"), "matin": cda.MORNING,
    "midi": cda.NOON, "soir": cda.EVENING,
}


def _number(text: str) -> Decimal:
    t = text.strip().lower()
    if t in NUMBERS:
        return Decimal(NUMBERS[t])
    spelt = numbers.from_letters(t)
    if spelt is not None:
        return Decimal(spelt)
    return Decimal(t.replace(",", "."))


def _period_unit(word: str) -> tuple[str, int]:
    w = word.rstrip("s")
    return {"jour": ("d", 1), "j": ("d", 1), "semaine": ("wk", 7), "mois": ("mo", 30),
            "heure": ("h", 0), "h": ("h", 0)}.get(w, ("d", 1))


@dataclass
class _Posology:
    dose: Dose | None = None
    frequency: Frequency | None = None
    moments: tuple[Moment, ...] = ()
    duration_days: int | None = None
    doses: tuple[Dose, ...] = ()  # split dosing: one per moment
    leftover: str = ""
    as_written: bool = False  # understood, but only the text can say it (kept as free text)


# Compiled once: built per call (the dose units' alternation sorted and escaped, the moments
# normalised) they made a posology cost ~45 µs instead of ~15.
_TIMES_SHORTHAND = re.compile(r"(?i)(\d)\s*x\b")
_PER_DAY_SHORTHAND = re.compile(r"(?i)\s*/\s*(j|jour)\b")
_DOSE_UNITS = "|".join(sorted((re.escape(k) for k in DOSE_WORDS), key=len, reverse=True))
_DOSE = re.compile(rf" {_NUM} ({_DOSE_UNITS})s? ")
_TIMES_PER = re.compile(rf" {_NUM} fois par (jour|j|semaine|mois|heure) ")
_EVERY = re.compile(r" (toutes|tous) les (\d+) (heures|h|jours|semaines) ")
_DURATION = re.compile(rf" pendant {_NUM} (jours?|j|semaines?|mois) ")
_MOMENT_KEYS = re.compile(
    " (" + "|".join(sorted(MOMENTS, key=len, reverse=True)) + r")(?= )")
_ANOTHER_DOSE = re.compile(rf" {_NUM} ")
# One intake of split dosing: "1 comprimé le matin", "2 le soir" (the unit of the one before).
_INTAKE = re.compile(rf" {_NUM}(?: ({_DOSE_UNITS})s?)?(?: (?:le|la|les|a))?"
                     rf"{_MOMENT_KEYS.pattern}")
_FILLER = frozenset({"a", "un", "une", "prendre", "de", "par", "et", "en", "au", "du", "le", "la",
                     "les", "puis", "posologie"})


def _split_dosing(text: str, first: Dose
                  ) -> tuple[tuple[Moment, ...], tuple[Dose, ...], str] | None:
    """'1 comprimé le matin, 2 le soir': (moments, their doses, what is left of the text), or
    None when the text is not doses each followed by its time of day (each time once, the
    first dose with its unit, the others with theirs or the one before). The same dose at
    every time ('1 le matin et 1 le soir') comes back as one dose: the canonical form."""
    t = " " + _norm(_PER_DAY_SHORTHAND.sub(" par jour", _TIMES_SHORTHAND.sub(r"\1 fois", text)))
    t = _DURATION.sub(" ", t + " ", count=1)
    moments: list[Moment] = []
    doses: list[Dose] = []
    unit = first.unit
    for m in _INTAKE.finditer(t):
        if m.group(2):
            unit = DOSE_WORDS[m.group(2)]
        elif not doses:
            return None  # the first intake names the unit ('1 comprimé le matin')
        moments.append(MOMENTS[m.group(3)])
        doses.append(Dose(_number(m.group(1)), unit))
    rest = _INTAKE.sub(" ", t)
    if len(moments) < 2 or len(set(moments)) != len(moments) or _ANOTHER_DOSE.search(rest) \
            or _MOMENT_KEYS.search(rest):
        return None
    return tuple(moments), tuple(doses), rest


def _posology(text: str) -> _Posology:
    """Structured dose, frequency and duration found in `text`; `leftover` is what was not
    understood (kept as free text by the caller)."""
    # Shorthands doctors type: '3x/j', '1 cp/jour'.
    text = _TIMES_SHORTHAND.sub(r"\1 fois", text)
    text = _PER_DAY_SHORTHAND.sub(" par jour", text)
    t = " " + _norm(text) + " "
    out = _Posology()
    m = _DOSE.search(t)
    if m:
        out.dose = Dose(_number(m.group(1)), DOSE_WORDS[m.group(2)])
        t = t.replace(m.group(0), " ", 1)
    m = _TIMES_PER.search(t)
    if m:
        unit, _ = _period_unit(m.group(2))
        out.frequency = Frequency(int(_number(m.group(1))), Decimal(1), unit)
        t = t.replace(m.group(0), " ", 1)
    else:
        m = _EVERY.search(t)
        if m:
            unit, _ = _period_unit(m.group(3))
            out.frequency = cda.period_frequency(Decimal(m.group(2)), unit)
            t = t.replace(m.group(0), " ", 1)
    m = _DURATION.search(t)
    if m:
        _, days = _period_unit(m.group(2))
        out.duration_days = int(_number(m.group(1)) * days)
        t = t.replace(m.group(0), " ", 1)
    if out.dose is not None and out.frequency is None and _ANOTHER_DOSE.search(t):
        split = _split_dosing(text, out.dose)
        if split is not None:
            out.moments, doses, t = split
            same = all(d == doses[0] for d in doses)
            out.dose, out.doses = (doses[0], ()) if same else (None, doses)
    moments = [MOMENTS[m.group(1)] for m in _MOMENT_KEYS.finditer(t)]
    if moments:
        t = _MOMENT_KEYS.sub(" ", t)
        per_day = cda.per_day(out.frequency) if out.frequency else None
        if len(set(moments)) != len(moments) or _ANOTHER_DOSE.search(t) or (
                len(moments) > 1 and out.frequency is not None and per_day != len(moments)):
            # "1 le matin, 2 le soir", or times of day that disagree with the frequency: the
            # model has one dose for all the moments of a phase; the text says it as written.
            out.as_written = True
            out.dose = out.frequency = None
            moments = []
        elif out.frequency is not None and per_day == len(moments):
            out.frequency = None  # the canonical form: one intake per moment, per day
        out.moments = tuple(moments)
    if out.frequency is None and not out.moments and " par jour " in t:
        out.frequency = Frequency(1)
        t = t.replace(" par jour ", " ", 1)
    leftover = [w for w in t.split() if w not in _FILLER]
    out.leftover = " ".join(leftover)
    return out


@dataclass
class _Context:
    drugs: Drugs | None
    problems: list[FormProblem] = field(default_factory=list)

    def error(self, line: int, message: str, candidates: tuple[str, ...] = ()) -> None:
        self.problems.append(FormProblem(line, message, candidates))


def _product_from_speciality(spec: Any, cip: str | None = None) -> Product:
    return Product(label=spec.name, cis=spec.cis, cip13=cip, atc=getattr(spec, "atc", None))


def _resolve_product(ctx: _Context, n: int, text: str) -> Product | None:
    """A medicine named by CIS, CIP13, name or as a magistral preparation."""
    t = text.strip()
    norm = _norm(t)
    m = re.match(r"^(preparation magistrale|magistrale|pm)\b", norm)
    if m:
        label = re.sub(r"^[^:]*:\s*", "", t) if ":" in t else t[len(m.group(0)):].strip()
        if not label:
            ctx.error(n, "la préparation magistrale n'a pas de composition")
            return None
        return Product(label=label, magistral=True)
    code = re.sub(r"[\s.]", "", re.sub(r"(?i)^(cis|cip13|cip)\s*:?\s*", "", t))
    if code.isdigit():
        return _product_by_code(ctx, n, code)
    if ctx.drugs is None or not ctx.drugs.is_loaded():
        ctx.error(n, f"« {t} » : la base des médicaments n'est pas chargée, je ne peux pas"
                  " chercher un nom ; donnez le code CIS ou CIP13")
        return None
    # One drug with exactly this name is the one the search would put first and take.
    exact = ctx.drugs.named(t)
    if len(exact) == 1:
        return _product_from_speciality(exact[0])
    found = ctx.drugs.search(t, limit=MAX_CANDIDATES + 1)
    exact = [s for s in found if _norm(s.name) == norm]
    if len(exact) == 1:
        return _product_from_speciality(exact[0])
    if len(found) == 1:
        return _product_from_speciality(found[0])
    if not found:
        words = norm.split()
        hints = ctx.drugs.search(words[0], limit=MAX_CANDIDATES) if words else []
        ctx.error(n, f"médicament « {t} » inconnu de la base des médicaments"
                  + (" ; vouliez-vous dire :" if hints else ""),
                  tuple(f"{s.name} (CIS {s.cis})" for s in hints))
        return None
    shown = found[:MAX_CANDIDATES]
    more = f" (les {MAX_CANDIDATES} premiers)" if len(found) > MAX_CANDIDATES else ""
    ctx.error(n, f"« {t} » désigne plusieurs médicaments ; précisez le nom complet ou le code"
              f" CIS{more} :", tuple(f"{s.name} (CIS {s.cis})" for s in shown))
    return None


def _product_by_code(ctx: _Context, n: int, code: str) -> Product | None:
    try:
        if len(code) == 8:
            value = cis(code)
            # The name and ATC code are all a line needs (details: three queries more).
            spec = ctx.drugs.by_cis(value, details=False) if ctx.drugs is not None else None
            if ctx.drugs is not None and ctx.drugs.is_loaded() and spec is None:
                ctx.error(n, f"le code CIS {value} n'existe pas dans la base des médicaments")
                return None
            return _product_from_speciality(spec) if spec else Product(f"CIS {value}", cis=value)
        if len(code) == 13:
            value = cip13(code)
            found = ctx.drugs.by_cip13(value, details=False) if ctx.drugs is not None else None
            if ctx.drugs is not None and ctx.drugs.is_loaded() and found is None:
                ctx.error(n, f"le code CIP13 {value} n'existe pas dans la base des médicaments")
                return None
            if found:
                spec, pres = found
                label = f"{spec.name}, {pres.label}" if pres.label else spec.name
                return dataclasses.replace(_product_from_speciality(spec, value), label=label)
            return Product(f"CIP13 {value}", cip13=value)
    except InvalidIdentifier as exc:
        rule = {"the CIP13 check digit (EAN-13) does not match":
                "la clé du code CIP13 est fausse (faute de frappe ?)",
                "a CIS code is 8 digits starting with 6": "un code CIS commence par 6"}
        ctx.error(n, f"code {code} : {rule.get(exc.rule, exc.rule)}")
        return None
    ctx.error(n, f"code {code} : un code CIS a 8 chiffres, un code CIP13 en a 13")
    return None


_QUANTITY = re.compile(rf"(?:quantite )?{_NUM} (boites?|flacons?|tubes?|recipients?|sachets?|"
                       r"pots?)")
_RENEWALS = re.compile(rf"(?:a )?renouvel(?:er|able)(?: {_NUM} fois)?")
_NOT_SUBSTITUTABLE = re.compile(r"non substituable(?: ?\(?(mte|efg|cif)\)?)?")


def _medicine_line(ctx: _Context, n: int, text: str) -> PrescriptionLine | None:
    parts = [p.strip() for p in text.split(";") if p.strip()]
    product = _resolve_product(ctx, n, parts[0])
    line: dict[str, Any] = {}
    free: list[str] = []
    for part in parts[1:]:
        norm = _norm(part)
        if m := _QUANTITY.fullmatch(norm):
            line["quantity"] = _number(m.group(1))
            line["quantity_unit"] = PACK_WORDS.get(m.group(2), PACK_WORDS.get(
                m.group(2).rstrip("s"), "boîte"))
        elif m := _RENEWALS.fullmatch(norm):
            if m.group(1) is None:
                ctx.error(n, f"« {part} » : combien de fois ? (par exemple « à renouveler 2"
                          " fois »)")
                continue
            renewals = int(_number(m.group(1)))
            if renewals > MAX_RENEWALS:
                ctx.error(n, f"{renewals} renouvellements, c'est plus que les"
                          f" {MAX_RENEWALS} permis")
            line["renewals"] = renewals
        elif m := _NOT_SUBSTITUTABLE.fullmatch(norm):
            line["substitutable"] = False
            if m.group(1) is None:
                ctx.error(n, "« non substituable » demande sa raison : MTE (marge"
                          " thérapeutique étroite), EFG (enfant de moins de 6 ans) ou CIF"
                          " (contre-indication à un excipient)")
            else:
                line["substitution_refusal"] = SubstitutionRefusal(m.group(1).upper())
        elif norm in ("ald", "en rapport avec l ald", "en rapport avec une ald"):
            line["ald"] = True
        elif norm in ROUTE_WORDS:
            line["route"] = ROUTE_WORDS[norm]
        elif norm.startswith("posologie") and ":" in part:
            text_part = part.split(":", 1)[1].strip()
            pos = _posology(text_part)
            if pos.duration_days is not None:
                line["duration_days"] = pos.duration_days
            free.append(text_part)
        else:
            pos = _posology(part)
            if pos.dose is None and pos.frequency is None and pos.duration_days is None \
                    and not pos.moments and not pos.as_written:
                ctx.error(n, f"je ne comprends pas « {part} » ; attendu : une posologie (« 1"
                          " comprimé 3 fois par jour pendant 5 jours »), une quantité (« 2"
                          " boîtes »), « à renouveler N fois », « non substituable (MTE) »,"
                          " « ALD » ou « posologie : texte libre »")
                continue
            for key in ("dose", "frequency", "duration_days"):
                if getattr(pos, key) is not None:
                    line[key] = getattr(pos, key)
            if pos.moments:
                line["moments"] = pos.moments
            if pos.doses:
                line["doses"] = pos.doses
            if pos.leftover or pos.as_written:
                free.append(part)
    if free:
        line["dosage_text"] = " ; ".join(free)
    if not any(k in line for k in ("dose", "frequency", "moments", "dosage_text")):
        ctx.error(n, "pas de posologie : écrivez par exemple « 1 comprimé 3 fois par jour"
                  " pendant 5 jours » ou « posologie : ... »")
    if product is None:
        return None
    phase = Phase(dose=line.pop("dose", None), frequency=line.pop("frequency", None),
                  moments=line.pop("moments", ()), duration_days=line.pop("duration_days", None),
                  doses=line.pop("doses", ()))
    return PrescriptionLine(product=product, phases=(phase,) if phase.structured else (), **line)


_MAGISTRAL = re.compile(r"(?i)^\s*pr[ée]paration magistrale\s*:")


def _in_letters(ctx: _Context, written: list[tuple[int, str]]) -> None:
    """On a secured ordonnance every count is written in words (art. R5132-29): doses,
    frequencies, durations, quantities, renewals, the free text too, and a magistral
    preparation's amounts. A medicine named by code or by its name keeps its figures (the name
    holds the strength the drug database gives it)."""
    for n, text in written:
        parts = [p.strip() for p in text.split(";") if p.strip()]
        if parts and not _MAGISTRAL.match(parts[0]):
            parts = parts[1:]
        for part in parts:
            if re.search(r"\d", part):
                ctx.error(n, f"« {part} » : sur une ordonnance sécurisée, écrivez les nombres en"
                          f" toutes lettres (« {numbers.spell_numbers(part)} ») ; art. R5132-29"
                          " du code de la santé publique")


def _dated(day: dt.date, now: dt.datetime) -> tuple[dt.datetime, bool]:
    """The document's moment for a form dated `day`, sent at `now`: `now` when that is the day
    (in France); else the day alone (`day_only`), never `day` at the clock time of sending, a
    moment nobody wrote."""
    if day == french_day(now):
        return now, False
    return on_day(day), True


def _date(ctx: _Context, n: int, text: str) -> dt.date | None:
    t = text.strip()
    for fmt in ("%d/%m/%Y", "%d/%m/%y", "%Y-%m-%d", "%d-%m-%Y", "%d.%m.%Y"):
        try:
            return dt.datetime.strptime(t, fmt).date()
        except ValueError:
            continue
    ctx.error(n, f"date « {t} » illisible ; écrivez-la JJ/MM/AAAA")
    return None


def _identify_patient(ctx: _Context, n: int, value: str, people: People) -> PatientInfo | None:
    digits = re.sub(r"(?i)^ins(-nir)?\s*:?\s*", "", value.strip())
    digits = re.sub(r"[\s.]", "", digits)
    try:
        number = ins(digits)
    except InvalidIdentifier as exc:
        ctx.error(n, f"INS du patient « {value.strip()} » invalide : " + {
            "the INS key does not match (97 - N mod 97)":
            "la clé (2 derniers chiffres) ne correspond pas, vérifiez le numéro"}.get(
                exc.rule, "un INS a 15 caractères (13 chiffres et une clé de 2 chiffres)"))
        return None
    patient = people.patient(number)
    if patient is None:
        ctx.error(n, f"aucun patient d'INS {number} dans l'annuaire de la messagerie")
    return patient


def _identify_professional(ctx: _Context, n: int, value: str, people: People, what: str
                           ) -> AuthorInfo | None:
    v = value.strip()
    if "@" in v:
        key = v.strip("<>").lower()
    else:
        key = re.sub(r"[\s.]", "", re.sub(r"(?i)^rpps\s*:?\s*", "", v))
        try:
            key = rpps(key)
        except InvalidIdentifier:
            ctx.error(n, f"RPPS du {what} « {v} » invalide (11 chiffres, clé de Luhn) ;"
                      " donnez le RPPS ou l'adresse de messagerie")
            return None
    author = people.professional(key)
    if author is None:
        ctx.error(n, f"{what} « {v} » inconnu de l'annuaire de la messagerie")
    return author


def _header_key(text: str, keys: dict[str, str]) -> tuple[str, str] | None:
    m = _HEADER.match(text)
    if not m:
        return None
    key = keys.get(_norm(m.group(1)))
    return (key, m.group(2).strip()) if key else None


def _split_header(line: _Line, keys: dict[str, str]) -> tuple[str, str] | None:
    return _header_key(line.text, keys)


def parse_prescription_form(
    text: str,
    *,
    people: People,
    drugs: Drugs | None,
    sender: str | None = None,
    now: dt.datetime | None = None,
) -> Prescription:
    """The Prescription a doctor's form describes, or FormError listing every problem."""
    ctx = _Context(drugs)
    patient: PatientInfo | None = None
    author: AuthorInfo | None = None
    when = now or dt.datetime.now(dt.UTC)
    day_only = False
    fields: dict[str, Any] = {}
    lines: list[PrescriptionLine] = []
    seen_patient = seen_author = False
    numbered = 0
    written: list[tuple[int, str]] = []  # (line number, medicine line as written)
    for line in _logical_lines(text, PRESCRIPTION_KEYS):
        item = _ITEM.match(line.text)
        header = _split_header(line, PRESCRIPTION_KEYS)
        if header and not item:
            key, value = header
            if key == "patient":
                seen_patient = True
                patient = _identify_patient(ctx, line.number, value, people)
            elif key == "author":
                seen_author = True
                author = _identify_professional(ctx, line.number, value, people, "prescripteur")
            elif key == "date":
                day = _date(ctx, line.number, value)
                if day:
                    when, day_only = _dated(day, when)
            elif key == "validity":
                m = re.fullmatch(r"(\d+) mois", _norm(value))
                if m:
                    fields["validity_months"] = int(m.group(1))
                else:
                    fields["validity_end"] = _date(ctx, line.number, value)
            elif key == "notes":
                fields["notes"] = value
            elif key == "title":
                pass  # "Ordonnance : n° ..." from a template: the gateway numbers it
            elif key in ("secured", "exception", "bizone"):
                flag = _norm(value) not in ("non", "no", "0", "false")
                fields[{"secured": "secured", "exception": "exception_drugs",
                        "bizone": "bizone"}[key]] = flag
            continue
        if item:
            numbered += 1
            written.append((line.number, item.group(2)))
            got = _medicine_line(ctx, line.number, item.group(2))
            if got is not None:
                lines.append(got)
            continue
        norm = _norm(line.text)
        if norm in ("ordonnance", "prescription", "bonjour", "merci", "cordialement") or \
                norm.startswith(("bonjour", "cordialement", "merci", "dr ", "docteur ")):
            continue
        ctx.error(line.number, f"je ne comprends pas « {line.text} » ; une ligne de médicament"
                  " commence par son numéro (« 1. DOLIPRANE 1000 mg ; ... »)")
    if fields.get("secured"):
        _in_letters(ctx, written)
    if not seen_patient:
        ctx.error(0, "le patient manque : ajoutez « Patient : INS <15 chiffres> »")
    if not seen_author:
        if sender:
            author = _identify_professional(ctx, 0, sender, people, "prescripteur")
        else:
            ctx.error(0, "le prescripteur manque : ajoutez « Prescripteur : RPPS <11 chiffres> »")
    if numbered == 0:
        ctx.error(0, "aucun médicament : numérotez chaque ligne (« 1. DOLIPRANE 1000 mg ;"
                  " 1 comprimé 3 fois par jour pendant 5 jours ; 2 boîtes »)")
    if author is not None and author.profession != "10" and not ctx.problems:
        ctx.error(0, f"{author.given_name} {author.family_name} n'est pas enregistré comme"
                  " médecin : seul un médecin peut prescrire ici")
    if ctx.problems:
        raise FormError(ctx.problems)
    assert patient is not None and author is not None
    validity_end = fields.get("validity_end")
    if "validity_months" in fields:
        validity_end = cda.add_months(when.date() if day_only else french_day(when),
                                      fields["validity_months"])
    return Prescription(
        patient=patient, author=author, date=when, day_only=day_only, lines=tuple(lines),
        validity_end=validity_end,
        bizone=fields.get("bizone", any(line.ald for line in lines)),
        exception_drugs=fields.get("exception_drugs", False),
        secured=fields.get("secured", False),
        notes=fields.get("notes"),
    )


def parse_dispensation_form(
    text: str,
    *,
    prescription_for: Callable[[str], Prescription | None],
    people: People,
    drugs: Drugs | None,
    sender: str | None = None,
    now: dt.datetime | None = None,
) -> Dispensation:
    """The Dispensation a pharmacist's form describes. `prescription_for(identifier)` gives the
    registered prescription (the registry's record, authoritative over any printed text)."""
    ctx = _Context(drugs)
    when = now or dt.datetime.now(dt.UTC)
    day_only = False
    prescription: Prescription | None = None
    identifier = ""
    author: AuthorInfo | None = None
    seen_author = False
    notes = None
    raw_lines: list[tuple[int, int, str]] = []
    for line in _logical_lines(text, DISPENSATION_KEYS):
        item = _ITEM.match(line.text)
        header = _split_header(line, DISPENSATION_KEYS)
        if header and not item:
            key, value = header
            if key == "prescription":
                check = check_identifier(value)
                if not check.ok:
                    ctx.error(line.number, f"identifiant d'ordonnance « {value} » invalide : "
                              + _identifier_reason(check.reason))
                    continue
                identifier = check.identifier
                prescription = prescription_for(identifier)
                if prescription is None:
                    ctx.error(line.number, f"aucune ordonnance enregistrée sous {identifier}")
            elif key == "author":
                seen_author = True
                author = _identify_professional(ctx, line.number, value, people, "pharmacien")
            elif key == "date":
                day = _date(ctx, line.number, value)
                if day:
                    when, day_only = _dated(day, when)
            elif key == "notes":
                notes = value
            continue
        if item:
            raw_lines.append((line.number, int(item.group(1)), item.group(2)))
            continue
        norm = _norm(line.text)
        if norm in ("dispensation", "delivrance") or norm.startswith(
                ("bonjour", "cordialement", "merci")):
            continue
        ctx.error(line.number, f"je ne comprends pas « {line.text} » ; une ligne commence par"
                  " le numéro de la ligne de l'ordonnance (« 1 : délivré ; 2 boîtes »)")
    if not identifier and not any(p.message.startswith("identifiant") for p in ctx.problems):
        ctx.error(0, "l'identifiant de l'ordonnance manque : ajoutez « Ordonnance : <18"
                  " caractères> » (imprimé sous le QR code)")
    if not seen_author:
        if sender:
            author = _dispensing_pharmacist(ctx, sender, people)
        else:
            ctx.error(0, "le pharmacien manque : ajoutez « Pharmacien : RPPS <11 chiffres> »")
    if not raw_lines:
        ctx.error(0, "aucune ligne : indiquez pour chaque ligne de l'ordonnance ce qui a été"
                  " délivré (« 1 : délivré ; 2 boîtes »)")
    dispensed: list[DispensedLine] = []
    if prescription is not None:
        seen: set[int] = set()
        for number, position, body in raw_lines:
            if not 1 <= position <= len(prescription.lines):
                ctx.error(number, f"l'ordonnance n'a pas de ligne {position} (elle en a"
                          f" {len(prescription.lines)})")
                continue
            if position in seen:
                ctx.error(number, f"la ligne {position} est indiquée deux fois")
                continue
            seen.add(position)
            got = _dispensed_line(ctx, number, prescription.lines[position - 1], position, body)
            if got is not None:
                dispensed.append(got)
    if author is not None and author.profession != "21" and not ctx.problems:
        ctx.error(0, f"{author.given_name} {author.family_name} n'est pas enregistré comme"
                  " pharmacien")
    if ctx.problems:
        raise FormError(ctx.problems)
    assert prescription is not None and author is not None
    return Dispensation(
        prescription_id=identifier,
        prescription_document_id=prescription.document_id or "",
        patient=prescription.patient,
        author=author,
        date=when,
        day_only=day_only,
        lines=tuple(dispensed),
        notes=notes,
    )


def _dispensing_pharmacist(ctx: _Context, sender: str, people: People) -> AuthorInfo | None:
    """Who dispensed when the form names nobody: the sender; or, from a pharmacy's own mailbox
    (its team shares it; the document is sealed with the pharmacy's seal), its pharmacist when
    the directory knows exactly one, the document's author being a pharmacist."""
    team = people.pharmacists_of(sender.strip("<>").lower())
    if team is None:
        return _identify_professional(ctx, 0, sender, people, "pharmacien")
    if len(team) == 1:
        return team[0]
    if not team:
        ctx.error(0, f"aucun pharmacien n'est rattaché à la pharmacie {sender} dans l'annuaire :"
                  " nommez celui ou celle qui a délivré (« Pharmacien : RPPS <11 chiffres> »)")
    else:
        names = ", ".join(f"{a.given_name} {a.family_name} (RPPS {a.rpps})" for a in team)
        ctx.error(0, "la pharmacie a plusieurs pharmaciens dans l'annuaire : nommez celui ou"
                  f" celle qui a délivré (« Pharmacien : RPPS <11 chiffres> ») : {names}")
    return None


def _identifier_reason(reason: str) -> str:
    if "check character" in reason:
        return "le dernier caractère (contrôle) ne correspond pas : faute de frappe ?"
    if "characters, not" in reason:
        return "il faut 18 caractères (chiffres et lettres)"
    return "seuls les chiffres et les lettres A-Z sont permis"


def _dispensed_line(ctx: _Context, n: int, prescribed: PrescriptionLine, position: int,
                    body: str) -> DispensedLine | None:
    parts = [p.strip() for p in body.split(";") if p.strip()]
    status = _norm(parts[0]) if parts else ""
    product: Product | None = prescribed.product
    substituted = False
    quantity: Decimal | None = None
    reasons: list[str] = []
    for part in parts[1:]:
        norm = _norm(part)
        if m := re.fullmatch(rf"(?:quantite )?{_NUM}(?: (boites?|flacons?|tubes?|recipients?|"
                             r"sachets?|pots?))?", norm):
            quantity = _number(m.group(1))
        elif ":" in part and _norm(part.split(":", 1)[0]) in ("motif", "raison", "commentaire"):
            reasons.append(part.split(":", 1)[1].strip())
        else:
            reasons.append(part)
    reason = " ; ".join(r for r in reasons if r) or None
    line_ref = prescribed.line_id or str(position)
    kind = DispensingKind.DELIVERED
    if status.startswith("substitue par") or status.startswith("substitution par"):
        target = re.sub(r"(?i)^\s*substitu\w*\s+par\s+", "", parts[0])
        product = _resolve_product(ctx, n, target)
        substituted = True
        if not prescribed.substitutable:
            ctx.error(n, f"la ligne {position} est « non substituable"
                      f" ({prescribed.substitution_refusal}) » : la substitution est interdite")
    elif status.startswith("non delivre"):
        if quantity not in (None, Decimal(0)):
            ctx.error(n, "« non délivré » avec une quantité : indiquez 0 ou retirez-la")
        if reason is None:
            ctx.error(n, "« non délivré » demande un motif (« motif : rupture de stock »)")
        return DispensedLine(line_ref, prescribed.product, Decimal(0),
                             DispensingKind.NOT_DELIVERED, prescribed.quantity_unit,
                             reason=reason)
    elif status.startswith("delivre partiellement") or status.startswith("partiel"):
        if quantity is None:
            ctx.error(n, "délivrance partielle : indiquez la quantité délivrée (« 1 boîte »)")
        elif prescribed.quantity is not None and quantity >= prescribed.quantity:
            ctx.error(n, f"délivrance partielle de {quantity} alors que {prescribed.quantity}"
                      " sont prescrits")
        return DispensedLine(line_ref, prescribed.product, quantity or Decimal(0),
                             DispensingKind.PARTIAL, prescribed.quantity_unit, reason=reason)
    elif status.startswith("adapte") or status.startswith("adaptation"):
        kind = DispensingKind.ADAPTED
        if reason is None:
            ctx.error(n, "une adaptation demande sa raison (accord du prescripteur)")
    elif not status.startswith("delivre"):
        ctx.error(n, f"je ne comprends pas « {parts[0] if parts else body} » ; écrivez"
                  " « délivré », « délivré partiellement », « substitué par <médicament> »,"
                  " « adapté » ou « non délivré »")
        return None
    if quantity is None:
        quantity = prescribed.quantity
        if quantity is None:
            ctx.error(n, "indiquez la quantité délivrée (« 2 boîtes »)")
            return None
    if product is None:
        return None
    if substituted:
        kind = DispensingKind.SUBSTITUTED
    return DispensedLine(line_ref, product, quantity, kind, prescribed.quantity_unit,
                         reason=reason)
