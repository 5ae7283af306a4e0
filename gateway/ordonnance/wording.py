"""How the model's codes and values read on a French ordonnance: pure text functions.

The CDA carries codes (profession 10, speciality SM26, UCUM units, EDQM routes); a patient and a
pharmacist read words. The tables hold the common values in the wording of the national
nomenclatures (TRE_G15 professions, TRE_R38 specialities); an unknown code is printed as-is rather
than guessed.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from decimal import Decimal

from gateway.documents import cda
from gateway.documents.model import (
    AuthorInfo,
    Dose,
    Frequency,
    PatientInfo,
    Phase,
    PrescriptionLine,
    StructureInfo,
)
from gateway.documents.numbers import FEMININE, in_letters

# The CDA vocabulary (gateway.documents.cda) is the reference for codes the builder writes; these
# tables add the words an ordonnance needs beyond it.
PROFESSIONS = {
    **cda.PROFESSIONS,
    "70": "Masseur-kinésithérapeute",
    "80": "Pédicure-podologue",
}

SPECIALTIES = {
    "SM02": "Anesthésie-réanimation",
    "SM04": "Cardiologie et maladies vasculaires",
    "SM15": "Dermatologie et vénéréologie",
    "SM16": "Endocrinologie et métabolisme",
    "SM18": "Gériatrie",
    "SM19": "Gynécologie médicale",
    "SM20": "Gynécologie-obstétrique",
    "SM21": "Hématologie",
    "SM24": "Gastro-entérologie et hépatologie",
    "SM26": "Médecine générale",
    "SM27": "Médecine interne",
    "SM30": "Néphrologie",
    "SM32": "Neurologie",
    "SM38": "Ophtalmologie",
    "SM39": "Oto-rhino-laryngologie",
    "SM40": "Pédiatrie",
    "SM41": "Pneumologie",
    "SM42": "Psychiatrie",
    "SM48": "Rhumatologie",
    "SM53": "Médecine générale",
    "SM54": "Médecine générale",
    "SM57": "Allergologie",
    "SM58": "Maladies infectieuses et tropicales",
    "SM59": "Médecine d'urgence",
    "SM62": "Endocrinologie, diabétologie, nutrition",
    "SM73": "Médecine cardiovasculaire",
}

# Dose units as words (singular, plural): the builder's units, and French annotations a form or
# another producer may use.
UNITS: dict[str, tuple[str, str]] = {
    **cda.DOSE_UNITS,
    "{comprime}": ("comprimé", "comprimés"),
    "{comprimé}": ("comprimé", "comprimés"),
    "{gelule}": ("gélule", "gélules"),
    "{gélule}": ("gélule", "gélules"),
    "{goutte}": ("goutte", "gouttes"),
    "{bouffee}": ("bouffée", "bouffées"),
    "{suppositoire}": ("suppositoire", "suppositoires"),
    "{dose}": ("dose", "doses"),
    "{pulverisation}": ("pulvérisation", "pulvérisations"),
    "[IU]": ("UI", "UI"),
    "ml": ("ml", "ml"),
}

PERIODS: dict[str, tuple[str, str, str]] = {  # unit: (par ..., tous/toutes les N ..., gender)
    "h": ("heure", "heures", "f"),
    "d": ("jour", "jours", "m"),
    "wk": ("semaine", "semaines", "f"),
    "mo": ("mois", "mois", "m"),
    "a": ("an", "ans", "m"),
}

ROUTES = {  # EDQM standard terms, lower case: they end a sentence
    **{code: label[0].lower() + label[1:] for code, label in cda.ROUTES.items()},
    "20023000": "voie auriculaire",
    "20070000": "voie transdermique",
    "20072000": "voie vaginale",
}

MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip

# The longest a single field may print: a hostile or broken document must not produce a
# thousand-page PDF. The structured CDA keeps the full text; the cut is visible.
MAX_FIELD = 1500
_CUT = " […]"


class _Printable(dict[int, str]):
    """str.translate table: a character that must not print (controls, invisible format
    characters, surrogates, private use, unassigned, line and paragraph separators) -> a space;
    the others, "\n" included, unchanged. Filled on first use of each code point: looking the
    category up character by character in Python was 0.1 ms of each ordonnance."""

    UNPRINTABLE = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))

    def __missing__(self, cp: int) -> str:
        ch = chr(cp)
        out = " " if unicodedata.category(ch) in self.UNPRINTABLE else ch
        if len(self) < 0x10000:  # bounded: hostile text must not grow it for ever
            self[cp] = out
        return out


_PRINTABLE = _Printable({ord("\n"): "\n"})
_SPACES = re.compile(r"\s+")


def clean(text: str | None, *, multiline: bool = False, limit: int = MAX_FIELD) -> str:
    """Text safe to print: control and invisible format characters become spaces, runs of
    spaces collapse, and the field is cut (visibly) at `limit` characters."""
    if not text:
        return ""
    printable = unicodedata.normalize("NFC", text).translate(_PRINTABLE)
    if not multiline:
        printable = printable.replace("\n", " ")
    lines = [_SPACES.sub(" ", line).strip() for line in printable.split("\n")]
    result = "\n".join(line for line in lines if line)
    if len(result) > limit:
        result = result[: limit - len(_CUT)].rstrip() + _CUT
    return result


def long_date(day: dt.date) -> str:
    """`22 novembre 2026` (1er for the first of the month, as written in French)."""
    d = "1er" if day.day == 1 else str(day.day)
    return f"{d} {MONTHS[day.month - 1]} {day.year}"


def short_date(day: dt.date) -> str:
    return day.strftime("%d/%m/%Y")


def number(value: Decimal | int) -> str:
    """French decimal notation without trailing zeros: 0.50 -> `0,5`, 2 -> `2`."""
    text = format(Decimal(value), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.replace(".", ",")


def spelled(value: Decimal | int, letters: bool, noun: str = "") -> str:
    """`28`, or `28 (vingt-huit)` when the ordonnance must give quantities in letters
    (secured prescriptions, art. R5132-29); fractions stay in figures. `noun` (the counted
    word) gives the gender: `1 (une) gélule`."""
    text = number(value)
    d = Decimal(value)
    if letters and d.is_finite() and d == d.to_integral_value() and 0 <= d < 1_000_000:
        spelt = in_letters(int(d))
        first = noun.split(" ")[0].lower()
        if spelt.endswith("un") and (first in FEMININE or first.rstrip("s") in FEMININE):
            spelt += "e"
        return f"{text} ({spelt})"
    return text


def plural(value: Decimal | int, singular: str, plural_form: str | None = None) -> str:
    """French rule: plural from 2 upwards (`1,5 comprimé`, `2 comprimés`)."""
    d = Decimal(value)
    if d.is_finite() and d >= 2:
        if plural_form is not None:
            return plural_form
        return singular if singular.endswith(("s", "x", "z")) else singular + "s"
    return singular


def add_months(day: dt.date, months: int) -> dt.date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    for d in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def age(birth: dt.date, on: dt.date) -> str:
    """`41 ans`, or months for a young child (doses depend on it)."""
    months = (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    if months < 0:
        return ""
    if months < 24:
        return f"{months} mois"
    return f"{months // 12} ans"


def profession_line(author: AuthorInfo) -> str:
    """`Médecin — Médecine générale` (an unknown code stays visible rather than dropped)."""
    prof = PROFESSIONS.get(author.profession, f"Profession {clean(author.profession)}")
    if author.specialty:
        spec = author.specialty.split("/")[-1]  # accept G15_10/SM26 as well as SM26
        return f"{prof} — {SPECIALTIES.get(spec, clean(spec))}"
    return prof


def prescriber_name(author: AuthorInfo) -> str:
    title = clean(author.title, limit=40) or ("Dr" if author.profession in ("10", "40") else "")
    name = f"{clean(author.given_name, limit=200)} {clean(author.family_name, limit=200).upper()}"
    return f"{title} {name}".strip()


def structure_id_line(structure: StructureInfo) -> str:
    nid = clean(structure.national_id, limit=40)
    if nid.startswith("1") and len(nid) == 10:
        return f"FINESS {nid[1:]}"
    if nid.startswith("3") and len(nid) == 15:
        return f"SIRET {nid[1:]}"
    return nid


def patient_name(patient: PatientInfo) -> str:
    """`Mme DURAND Marie Claire (née MARTIN)`: used name first when there is one."""
    civ = {"F": "Mme", "M": "M."}.get(patient.sex, "")
    birth = clean(patient.birth_name, limit=200).upper()
    used = clean(patient.used_name, limit=200).upper()
    given = clean(patient.given_names, limit=300)
    if used and used != birth:
        born = {"F": "née", "M": "né"}.get(patient.sex, "né(e)")
        return f"{civ} {used} {given} ({born} {birth})".strip()
    return f"{civ} {birth} {given}".strip()


def sex_word(sex: str) -> str:
    return {"F": "Féminin", "M": "Masculin"}.get(sex, "Indéterminé")


def born_word(sex: str) -> str:
    return {"F": "Née", "M": "Né"}.get(sex, "Né(e)")


def unit_words(unit: str, quantity: Decimal) -> str:
    known = UNITS.get(unit)
    if known:
        return plural(quantity, *known)
    label = clean(unit.strip("{}"), limit=60)
    return label


def dose_text(dose: Dose, letters: bool = False) -> str:
    """`1 comprimé`, `1 à 2 comprimés` (a range: the unit agrees with the higher count)."""
    if dose.high is not None and dose.high != dose.quantity:
        unit = unit_words(dose.unit, dose.high)
        low = spelled(dose.quantity, letters, unit)
        return f"{low} à {spelled(dose.high, letters, unit)} {unit}".strip()
    unit = unit_words(dose.unit, dose.quantity)
    return f"{spelled(dose.quantity, letters, unit)} {unit}".strip()


def frequency_text(freq: Frequency, letters: bool = False) -> str:
    """`3 fois par jour`, `1 fois tous les 2 jours`, `toutes les 8 heures`."""
    single, many, gender = PERIODS.get(freq.period_unit, (freq.period_unit, freq.period_unit, "m"))
    every = "toutes les" if gender == "f" else "tous les"
    times = spelled(freq.times, letters, "fois")
    if freq.period_value == 1:
        return f"{times} fois par {single}"
    period = f"{every} {spelled(freq.period_value, letters, single)} {many}"
    return period if freq.times == 1 else f"{times} fois {period}"


def phase_text(phase: Phase, letters: bool = False, with_duration: bool = False) -> str:
    """`1 comprimé, 3 fois par jour`, `1 comprimé le matin et le soir`, `1 comprimé, 2 fois par
    semaine le matin`; `pendant 2 jours` too when asked (the phases of a progressive dose)."""
    parts = []
    if phase.doses:  # split dosing: each dose with its time of day
        parts.append(cda.split_words([(dose_text(d, letters), cda.moment_words(m))
                                      for m, d in phase.intakes() if d is not None]))
    elif phase.dose:
        parts.append(dose_text(phase.dose, letters))
    freq = phase.frequency
    if freq and not (phase.moments and cda.per_day(freq) == len(phase.moments)):
        parts.append(frequency_text(freq, letters))
    text = ", ".join(parts)
    if phase.moments and not phase.doses:
        text = f"{text} {cda.moments_words(phase.moments)}".strip()
    if with_duration and phase.duration_days:
        days = spelled(phase.duration_days, letters)
        text = f"{text} pendant {days} {plural(phase.duration_days, 'jour')}".strip()
    return text


def dosage_lines(line: PrescriptionLine, letters: bool = False) -> list[str]:
    """The dosage as sentences: structured part first (each phase of a progressive dose with
    its duration, the times of day said), then the prescriber's free text."""
    several = len(line.phases) > 1
    parts = [", puis ".join(t for t in (phase_text(p, letters, several) for p in line.phases)
                            if t)]
    if line.route and line.route in ROUTES:
        parts.append(ROUTES[line.route])
    parts = [p for p in parts if p]
    out = []
    if parts:
        sentence = ", ".join(parts)
        out.append(sentence[0].upper() + sentence[1:])
    text = clean(line.dosage_text, multiline=True)
    if text:
        out.append(text)
    return out


def supply_text(line: PrescriptionLine, letters: bool = False) -> str:
    """`Pendant 7 jours — Quantité : 2 boîtes — À renouveler 2 fois`."""
    parts = []
    if line.duration_days:
        days = spelled(line.duration_days, letters)
        parts.append(f"Pendant {days} {plural(line.duration_days, 'jour')}")
    if line.quantity is not None:
        unit = clean(line.quantity_unit, limit=60) or "boîte"
        count = spelled(line.quantity, letters, unit)
        parts.append(f"Quantité : {count} {plural(line.quantity, unit)}")
    if line.renewals > 0:
        parts.append(f"À renouveler {spelled(line.renewals, letters, 'fois')} fois")
    return " — ".join(parts)


def substitution_text(line: PrescriptionLine) -> str:
    """The legal mention `Non substituable (MTE)`, or empty when substitution is allowed."""
    if line.substitutable:
        return ""
    if line.substitution_refusal is not None:
        return f"Non substituable ({line.substitution_refusal.value})"
    return "Non substituable"


def product_codes(line: PrescriptionLine) -> str:
    p = line.product
    codes = []
    if p.magistral:
        codes.append("Préparation magistrale")
    if p.cis:
        codes.append(f"CIS {clean(p.cis, limit=20)}")
    if p.cip13:
        codes.append(f"CIP {clean(p.cip13, limit=20)}")
    return " · ".join(codes)
