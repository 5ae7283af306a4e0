"""CDA vocabulary shared by the builder and the parser: namespaces, OIDs, codes, time formats.

Kept in one place so that what we write and what we read can never drift apart.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal

from gateway.documents.model import DispensingKind, Dose, Frequency, Moment, Phase

NS = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
PHARM = "urn:ihe:pharm:medication"
NSMAP = {None: NS, "xsi": XSI, "pharm": PHARM}
XP = {"c": NS, "xsi": XSI, "pharm": PHARM}

PRESCRIPTION_TEMPLATE = "1.2.250.1.213.1.1.1.39"
DISPENSATION_TEMPLATE = "1.2.250.1.213.1.1.1.54"
SECTION_PRESCRIPTION = "1.2.250.1.213.1.1.2.171"
SECTION_DISPENSATION = "1.2.250.1.213.1.1.2.236"
SECTION_CODE2D = "1.2.250.1.213.1.1.2.223"
SECTION_PDF_COPY = "1.2.250.1.213.1.1.2.243"
PRESCRIBED_ITEM = "1.2.250.1.213.1.1.3.83"
DISPENSED_ITEM = "1.3.6.1.4.1.19376.1.9.1.3.4"
PRESCRIPTION_ITEM_REF = "1.3.6.1.4.1.19376.1.9.1.3.11"
SUBSTITUTION_PERMISSION = "1.3.6.1.4.1.19376.1.9.1.3.9.1"
SUBSTITUTION_DONE = "1.3.6.1.4.1.19376.1.9.1.3.9.2"
SUBSTITUTION_ALLOWED = "G"  # JDV_HL7_ActSubstanceAdminSubstitutionCode-CISIS: N or G
SUBORDINATE_ITEM = "1.2.250.1.213.1.1.3.83.1"  # FR-Traitement-prescrit-subordonnee
DOSAGE_INSTRUCTIONS = "1.3.6.1.4.1.19376.1.9.1.3.6"  # IHE PHARM: structured posology
MODE_NORMAL = "1.3.6.1.4.1.19376.1.5.3.1.4.7.1"  # PCC modes of administration
MODE_TAPERED = "1.3.6.1.4.1.19376.1.5.3.1.4.8"
MODE_SPLIT = "1.3.6.1.4.1.19376.1.5.3.1.4.9"
ALD_OBSERVATION = "1.2.250.1.213.1.1.3.48.13"

OID_LOINC = "2.16.840.1.113883.6.1"
OID_PROFESSION = "1.2.250.1.213.1.1.4.5"
OID_FLAGS = "1.2.250.1.213.1.1.4.322"
OID_SUBSTITUTION = "2.16.840.1.113883.5.1070"
OID_EDQM = "0.4.0.127.0.16.1.1.2.1"
OID_ATC = "2.16.840.1.113883.6.73"
OID_ACT_CODE = "2.16.840.1.113883.5.4"

# HL7 ActPharmacySupplyType (ActCode): a part fill, first or on a renewal.
PART_FILL = {False: ("FFP", "First Fill - Part Fill"), True: ("RFP", "Refill - Part Fill")}
PART_FILL_CODES = {"FFP", "RFP", "FFPS", "RFPS"}
DISPENSING_LABELS = {
    DispensingKind.DELIVERED: "Délivré tel que prescrit",
    DispensingKind.PARTIAL: "Délivrance partielle",
    DispensingKind.SUBSTITUTED: "Substitué",
    DispensingKind.ADAPTED: "Adaptation",
    DispensingKind.NOT_DELIVERED: "Non délivré",
}

FLAG_BIZONE = "MED-1096"
FLAG_EXCEPTION = "MED-1097"
FLAG_SECURED = "MED-1098"

SUBSTITUTION_REASONS = {
    "MTE": "Marge thérapeutique étroite",
    "EFG": "Enfant de moins de 6 ans sans générique adapté",
    "CIF": "Contre-indication formelle à un excipient à effet notoire",
}

# A professional's title goes in name/suffix (JDV_J246_Titre_CISIS), the civility (JDV_J245: M,
# MME) in name/prefix; the model's `title` ("Dr") is written as its code and read back.
TITLES = {"DR": "Dr", "PR": "Pr", "MC": "MC", "MG": "MG", "PC": "PC", "PG": "PG"}
_TITLE_WORDS = {"DOCTEUR": "DR", "PROFESSEUR": "PR"}


def title_code(title: str | None) -> str | None:
    """'Dr' -> 'DR', 'Professeur' -> 'PR'; None when it is not a CI-SIS title."""
    if not title:
        return None
    word = title.strip().rstrip(".").upper()
    word = _TITLE_WORDS.get(word, word)
    return word if word in TITLES else None


PROFESSIONS = {"10": "Médecin", "21": "Pharmacien", "40": "Chirurgien-dentiste", "50": "Sage-femme",
               "60": "Infirmier"}

# EDQM packaging units for the quantity to dispense (supply/quantity/@unit).
PACKAGING = {
    "boîte": "30009000",
    "flacon": "30008000",
    "tube": "30067000",
    "récipient": "30015500",
    "sachet": "30041000",
    "pot": "30046000",
}
PACKAGING_LABEL = {code: label for label, code in PACKAGING.items()}

# UCUM / annotation units for doses, with their French words (singular, plural).
DOSE_UNITS = {
    "{tablet}": ("comprimé", "comprimés"),
    "{capsule}": ("gélule", "gélules"),
    "{sachet}": ("sachet", "sachets"),
    "[drp]": ("goutte", "gouttes"),
    "{application}": ("application", "applications"),
    "{puff}": ("bouffée", "bouffées"),
    "{suppository}": ("suppositoire", "suppositoires"),
    "{ampoule}": ("ampoule", "ampoules"),
    "{patch}": ("patch", "patchs"),
    "{spoon}": ("cuillère", "cuillères"),
    "mg": ("mg", "mg"),
    "g": ("g", "g"),
    "ug": ("µg", "µg"),
    "mL": ("ml", "ml"),
    "[iU]": ("UI", "UI"),
}

ROUTES = {
    "20053000": "Voie orale",
    "20003000": "Voie cutanée",
    "20061000": "Voie rectale",
    "20067000": "Voie sublinguale",
    "20049000": "Voie nasale",
    "20051000": "Voie ophtalmique",
    "20020000": "Voie inhalée",
    "20066000": "Voie sous-cutanée",
    "20035000": "Voie intramusculaire",
    "20045000": "Voie intraveineuse",
}

# Times of day. A clock time is written as a PIVL_TS phase (institutionSpecified: "about then");
# an event as an EIVL_TS event (HL7 TimingEvent, JDV_HL7_TimingEvent_CISIS). The clock times
# chosen for the words: what a ward would give ("le matin" 08:00, "le midi" 12:00, "le soir"
# 19:00); any other time reads "à 7 h 30".
OID_TIMING_EVENT = "2.16.840.1.113883.5.139"
MORNING = Moment(time=dt.time(8))
NOON = Moment(time=dt.time(12))
EVENING = Moment(time=dt.time(19))
BEDTIME = Moment(event="HS")
MEAL = Moment(event="C")
TIMING_EVENTS = {  # code: words (after "1 comprimé ...")
    "AC": "avant les repas", "ACM": "avant le petit-déjeuner", "ACD": "avant le déjeuner",
    "ACV": "avant le dîner", "C": "au moment des repas", "CM": "au petit-déjeuner",
    "CD": "au déjeuner", "CV": "au dîner", "HS": "au coucher", "IC": "entre les repas",
    "ICM": "entre le petit-déjeuner et le déjeuner", "ICD": "entre le déjeuner et le dîner",
    "ICV": "entre le dîner et le coucher", "PC": "après les repas",
    "PCM": "après le petit-déjeuner", "PCD": "après le déjeuner", "PCV": "après le dîner",
    "WAKE": "au réveil",
}
CLOCK_WORDS = {MORNING.time: "le matin", NOON.time: "le midi", EVENING.time: "le soir"}


def moment_words(m: Moment) -> str:
    """'le matin', 'au coucher', 'à 7 h 30'."""
    if m.event is not None:
        return TIMING_EVENTS.get(m.event, f"à l'événement {m.event}")
    assert m.time is not None
    if m.time in CLOCK_WORDS:
        return CLOCK_WORDS[m.time]
    return f"à {m.time.hour} h" + (f" {m.time.minute:02d}" if m.time.minute else "")


def moments_words(moments: tuple[Moment, ...]) -> str:
    return enumeration([moment_words(m) for m in moments])


def enumeration(words: list[str]) -> str:
    """'a', 'a et b', 'a, b et c'."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " et " + words[-1]


def split_words(intakes: list[tuple[str, str]]) -> str:
    """Split dosing in words from (dose words, moment words): '1 comprimé le matin et 2
    comprimés le soir'."""
    return enumeration([f"{dose} {moment}" for dose, moment in intakes])


PERIOD_WORDS = {"h": ("heure", "heures"), "d": ("jour", "jours"), "wk": ("semaine", "semaines"),
                "mo": ("mois", "mois")}


def new_oid() -> str:
    """A fresh, globally unique document/set id: the UUID-derived OID arc 2.25 (ISO/IEC 9834-8)."""
    return f"2.25.{uuid.uuid4().int}"


def new_uuid() -> str:
    return str(uuid.uuid4()).upper()


def ts(value: dt.datetime) -> str:
    """HL7 TS with seconds and offset: 20231201093000+0100. Naive times are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.strftime("%Y%m%d%H%M%S%z")


def ts_date(value: dt.date) -> str:
    return value.strftime("%Y%m%d")


def parse_ts(text: str) -> dt.datetime | dt.date:
    """HL7 TS -> date (8 digits) or aware datetime (offset defaults to UTC)."""
    m = re.fullmatch(r"(\d{8})(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not an HL7 timestamp")
    day = dt.datetime.strptime(m.group(1), "%Y%m%d")
    if m.group(2) is None:
        return day.date()
    tz = dt.UTC
    if m.group(5):
        sign = 1 if m.group(5)[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(m.group(5)[1:3]),
                                             minutes=int(m.group(5)[3:5])))
    return day.replace(hour=int(m.group(2)), minute=int(m.group(3) or 0),
                       second=int(m.group(4) or 0), tzinfo=tz)


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day `months` later, or the last day of that month (31/01 + 1 -> 28/02)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return min(dt.date(year, month, 1) + dt.timedelta(days=day.day - 1),
               following - dt.timedelta(days=1))


def num(value: Decimal | int) -> str:
    """Decimal without exponent or useless zeros: 1.50 -> '1.5', 2 -> '2'."""
    d = Decimal(value)
    text = format(d.normalize(), "f") if d != d.to_integral_value() else str(int(d))
    return text


def frequency_period(freq: Frequency) -> tuple[Decimal, str]:
    """The PIVL_TS period of 'n times per period': 3 per day -> 8 h (exact for divisors of 24).
    Once per period keeps the period as written (1 per 2 d -> 2 d)."""
    if freq.times == 1:
        return freq.period_value, freq.period_unit
    minutes = {"h": 60, "d": 1440, "wk": 10080, "mo": 43200}[freq.period_unit]
    total = freq.period_value * minutes / freq.times
    if total % 60 == 0:
        return total / 60, "h"
    return total.quantize(Decimal("0.001")), "min"


def period_frequency(value: Decimal, unit: str) -> Frequency:
    """Inverse of frequency_period: 8 h -> 3 per day; 2 d -> 1 per 2 days."""
    minutes = {"min": 1, "h": 60}.get(unit)
    if minutes is not None:
        m = value * minutes
        if m > 0 and m < 1440 and 1440 % m == 0:
            return Frequency(times=int(1440 / m), period_value=Decimal(1), period_unit="d")
        if unit == "min":
            return Frequency(times=1, period_value=(m / 60).normalize(), period_unit="h")
    return Frequency(times=1, period_value=value, period_unit=unit)


def plural(n: Decimal | int, words: tuple[str, str]) -> str:
    return words[0] if Decimal(n) <= 1 else words[1]


def dose_words(quantity: Decimal, unit: str) -> str:
    words = DOSE_UNITS.get(unit, (unit.strip("{}"), unit.strip("{}")))
    return f"{num(quantity).replace('.', ',')} {plural(quantity, words)}"


def frequency_words(freq: Frequency) -> str:
    period = PERIOD_WORDS.get(freq.period_unit, (freq.period_unit, freq.period_unit))
    if freq.period_value == 1:
        per = f"par {period[0]}"
    else:
        per = f"tous les {num(freq.period_value).replace('.', ',')} {period[1]}"
    return f"{freq.times} fois {per}"



def dose_range_words(dose: Dose) -> str:
    """'1 comprimé', '1 à 2 comprimés'."""
    if dose.high is None or dose.high == dose.quantity:
        return dose_words(dose.quantity, dose.unit)
    low = num(dose.quantity).replace(".", ",")
    return f"{low} à {dose_words(dose.high, dose.unit)}"


def phase_words(phase: Phase) -> str:
    """'1 comprimé 3 fois par jour pendant 5 jours', '1 comprimé le matin et le soir', '1
    comprimé le matin et 2 comprimés le soir'."""
    parts: list[str] = []
    if phase.doses:
        parts.append(split_words([(dose_range_words(d), moment_words(m))
                                  for m, d in phase.intakes() if d is not None]))
    elif phase.dose:
        parts.append(dose_range_words(phase.dose))
    if phase.frequency and not (phase.moments and per_day(phase.frequency) == len(phase.moments)):
        parts.append(frequency_words(phase.frequency))
    if phase.moments and not phase.doses:
        parts.append(moments_words(phase.moments))
    if phase.duration_days:
        parts.append(f"pendant {phase.duration_days} jour{'s' if phase.duration_days > 1 else ''}")
    return " ".join(parts)


def per_day(freq: Frequency) -> Decimal | None:
    """Intakes per day of a frequency counted in days (3 per 1 d -> 3), else None."""
    if freq.period_unit != "d" or freq.period_value <= 0:
        return None
    return Decimal(freq.times) / freq.period_value


def phases_words(phases: tuple[Phase, ...]) -> str:
    """Every phase in order: '... pendant 2 jours, puis 1 comprimé 2 fois par jour ...'."""
    return ", puis ".join(w for w in (phase_words(p) for p in phases) if w)
