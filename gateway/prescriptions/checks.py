"""The prescribing and delivery conditions of the drug database, applied to a prescription and
to a dispensation. Pure functions over the document model, the prescriber and the drug facts:
every flow (a doctor's mail form or CDA, a pharmacy's dispensation, another operator's
prescription) calls the same ones.

`check_prescription` returns findings: a REFUSE is what the law forbids (a stupéfiant without a
secured ordonnance, a duration beyond the stated limit, a medicine not dispensed in town, a
speciality or a hospital practice the prescriber lacks, a unit that does not fit the form, digits
on a secured ordonnance); a WARN is accepted and said in the doctor's receipt, where the rule
needs something the gateway cannot see (the initial hospital or specialist prescription a
renewal rests on, a signed information form, the prescriber's service). `check_dispensation`
applies the delivery rules: one fraction at a time for "délivrance fractionnée", the remaining
period only for a stupéfiant presented more than three days after its date (art. R5132-33), no
hospital-pharmacy-only medicine in a town pharmacy.

Every finding names the line (its number on the ordonnance and the medicine) and the rule (the
BDPM sentence, or the article of the public health code).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import Enum, StrEnum
from typing import Protocol

from gateway.documents.cda import DOSE_UNITS
from gateway.documents.model import Dispensation, Prescription, PrescriptionLine
from gateway.documents.numbers import spell_numbers
from gateway.drugs.conditions import Condition, DrugRules, Kind, Scope
from gateway.drugs.forms import AMOUNT, COUNTED
from gateway.ordonnance.pdf import Notice
from gateway.ordonnance.wording import plural
from gateway.prescriptions.prescriber import MEDECIN, Prescriber, specialities_for
from gateway.prescriptions.registry import PrescriptionRecord, add_months

NARCOTIC_MAX_DAYS = 28  # art. R5132-30, when the BDPM states no shorter limit
NARCOTIC_PRESENTATION_DAYS = 3  # art. R5132-33
ART_SECURED = "art. R5132-5 du code de la santé publique"
ART_LETTERS = "art. R5132-29 du code de la santé publique"
ART_DURATION = "art. R5132-30 du code de la santé publique"
ART_PRESENTATION = "art. R5132-33 du code de la santé publique"


class Severity(StrEnum):
    REFUSE = "refus"
    WARN = "avertissement"


@dataclass(frozen=True)
class Finding:
    line: int  # the line's number on the ordonnance (1-based); 0: the ordonnance as a whole
    label: str  # the medicine, as the ordonnance names it
    severity: Severity
    message: str  # what is wrong and what to do, in French
    rule: str  # the rule: the BDPM's sentence(s), or an article of the public health code

    def __str__(self) -> str:
        where = f"ligne {self.line} ({self.label})" if self.line else "ordonnance"
        return f"{where} : {self.message} — règle : {self.rule}"


class DrugFactsSource(Protocol):
    """What the checks need of the drug reference (`drugs.store.DrugReference`)."""

    def facts(self, cis: str) -> DrugFactsLike | None: ...


class DrugFactsLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def form(self) -> str: ...
    @property
    def rules(self) -> DrugRules: ...

    def dose_units(self) -> frozenset[str] | None: ...
    def fits_pack(self, pack: str) -> bool: ...


def refusals(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity is Severity.REFUSE]


def warnings(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity is Severity.WARN]


def report(findings: Iterable[Finding]) -> str:
    """One finding per line, for the mails."""
    return "\n".join(str(f) for f in findings)


# ---- the prescription -----------------------------------------------------------------------


def check_prescription(p: Prescription, prescriber: Prescriber,
                       drugs: DrugFactsSource | None) -> list[Finding]:
    """Every finding on `p` written by `prescriber`, line by line (empty: nothing to say)."""
    out: list[Finding] = []
    if prescriber.profession and prescriber.profession != MEDECIN:
        out.append(Finding(0, "", Severity.REFUSE, f"{prescriber.name} n'est pas enregistré"
                           " comme médecin dans l'annuaire : seul un médecin prescrit ici",
                           "profession du prescripteur (annuaire)"))
    if p.secured:
        out += _free_text_in_letters(p)
    coded = [(n, line) for n, line in enumerate(p.lines, 1) if line.product.cis]
    if drugs is None:
        if coded:
            out.append(Finding(0, "", Severity.WARN, "la base des médicaments n'est pas chargée"
                               " sur la messagerie : les conditions de prescription n'ont pas"
                               " été vérifiées", "conditions de prescription (BDPM)"))
        return out
    for n, line in coded:
        facts = drugs.facts(line.product.cis or "")
        if facts is None:
            continue
        out += _line_findings(p, n, line, facts, prescriber)
    return out


def _line_findings(p: Prescription, n: int, line: PrescriptionLine, facts: DrugFactsLike,
                   prescriber: Prescriber) -> list[Finding]:
    rules = facts.rules
    label = line.product.label
    out: list[Finding] = []

    def add(severity: Severity, message: str, rule: str) -> None:
        out.append(Finding(n, label, severity, message, rule))

    not_in_town = rules.of_kind(Kind.NOT_IN_TOWN)
    if not_in_town:
        add(Severity.REFUSE, "ce médicament n'est pas délivré sur ordonnance en pharmacie de"
            " ville : il ne peut pas figurer sur une ordonnance numérique",
            _quotes(not_in_town))
    if rules.needs_secured and not p.secured:
        what = "un stupéfiant" if rules.narcotic else "ce médicament"
        sentences = [c for c in rules.conditions if c.kind is Kind.SECURED
                     or c.schedule == "stupefiant"]
        add(Severity.REFUSE, f"{what} se prescrit sur ordonnance sécurisée : ajoutez l'en-tête"
            " « Ordonnance sécurisée : oui » et écrivez les quantités et les doses en toutes"
            " lettres", f"{_quotes(sentences)} ({ART_SECURED})")
    _duration_findings(p, line, rules, add)
    if line.renewals and rules.of_kind(Kind.NO_RENEWAL):
        add(Severity.REFUSE, f"« à renouveler {line.renewals} fois » : ce médicament ne se"
            " renouvelle pas ; retirez le renouvellement",
            _quotes(rules.of_kind(Kind.NO_RENEWAL)))
    _who_findings(rules, prescriber, add)
    _unit_findings(line, facts, add)
    qualifiers = rules.of_kind(Kind.QUALIFIER)
    context = (" (" + " ; ".join(c.text.rstrip(" :") for c in qualifiers) + ")"
               if qualifiers else "")
    for c in rules.of_kind(Kind.PAPER):
        if c.when == "prescription":
            add(Severity.WARN, "condition que la messagerie ne peut pas vérifier : le patient"
                f" présentera le document au pharmacien{context}", _quote(c))
    for c in rules.of_kind(Kind.ADMINISTRATION):
        add(Severity.WARN, "condition d'administration à organiser pour le patient", _quote(c))
    for c in rules.of_kind(Kind.DISPENSING):
        if c.pui_only:
            add(Severity.WARN, "délivré seulement par une pharmacie hospitalière (pharmacie à"
                " usage intérieur) : aucune pharmacie de ville ne pourra le délivrer",
                _quote(c))
    for c in rules.of_kind(Kind.OVERLAP):
        add(Severity.WARN, "pas de nouvelle ordonnance pendant la période couverte par une"
            " précédente, sauf mention expresse ; la messagerie ne voit pas les ordonnances"
            " d'autres prescripteurs", f"{_quote(c)} ({ART_DURATION})")
    for c in rules.of_kind(Kind.UNRECOGNISED):
        add(Severity.WARN, "condition de la base des médicaments que la messagerie ne sait pas"
            " lire : vérifiez-la vous-même", _quote(c))
    return out


def _duration_findings(p: Prescription, line: PrescriptionLine, rules: DrugRules,
                       add: _Add) -> None:
    limit = rules.max_duration
    if limit is None and rules.narcotic:
        limit = Condition(Kind.MAX_DURATION, f"stupéfiants ({ART_DURATION})",
                          days=NARCOTIC_MAX_DAYS)
    if limit is None:
        return
    limit_days = limit.days if limit.days is not None else (
        add_months(p.day, limit.months or 0) - p.day).days
    limit_words = _limit_words(limit)
    if line.duration_days is None:
        add(Severity.REFUSE, f"indiquez la durée du traitement (« pendant {limit_days} jours »"
            f" au plus) : ce médicament est limité à {limit_words}", _quote(limit))
        return
    total = line.duration_days * (1 + line.renewals)
    if total > limit_days:
        how = (f"{line.duration_days} jours × {1 + line.renewals} (avec"
               f" {_plural(line.renewals, 'renouvellement')}) = {total} jours"
               if line.renewals else f"{total} jours")
        add(Severity.REFUSE, f"{how} dépasse la limite de {limit_words} ({limit_days} jours"
            " au plus, renouvellements compris)", _quote(limit))
    elif limit.short_days is not None and total > limit.short_days:
        add(Severity.WARN, f"au-delà de {limit.short_days} jours, seulement avec un système"
            " actif d'administration (pompe) : la messagerie ne peut pas le vérifier",
            _quote(limit))


def _limit_words(c: Condition) -> str:
    m = re.search(r"limitée à (.+)$", c.text)
    if m:
        return m.group(1)
    if c.months:
        return f"{c.months} mois"
    return f"{c.days} jours"


class _Add(Protocol):
    def __call__(self, severity: Severity, message: str, rule: str) -> None: ...


class _Can(Enum):
    NO = 0
    MAYBE = 1
    YES = 2


def _both(*values: _Can) -> _Can:
    return min(values, key=lambda v: v.value)


def _who_findings(rules: DrugRules, prescriber: Prescriber, add: _Add) -> None:
    """Hospital practice, specialities and settings: who may write the initial prescription,
    who may renew it.

    READING of the BDPM's sentences (they are not ordered nor grouped in the file):
    - the "prescription réservée aux ..." sentences of a medicine (specialities and settings) are
      alternatives; they apply to the initial prescription only when the medicine says
      "prescription initiale ... réservée à certains spécialistes", "renouvellement non
      restreint" or names who renews ("renouvellement de la prescription réservé aux ..."),
      and to every prescription otherwise;
    - a renewal list with no prescription list (clozapine) restricts the initial prescription
      too, unless it is hospital-initial: whoever may renew, a fortiori writes the first one;
    - "prescription hospitalière": every prescription by a hospital doctor (the directory's
      structure of kind hospital); "prescription initiale hospitalière": the initial one.
    The gateway cannot tell an initial prescription from a renewal: a prescriber who may only
    renew is warned that the pharmacist will ask for the initial prescription.
    """
    specialists = rules.of_kind(Kind.SPECIALISTS)
    settings = rules.of_kind(Kind.SETTING)
    who = [c for c in specialists if c.scope is not Scope.RENEWAL] + list(settings)
    renewers = [c for c in specialists if c.scope is Scope.RENEWAL]
    hospital = rules.of_kind(Kind.HOSPITAL)
    hospital_all = [c for c in hospital if c.scope is Scope.ALL]
    hospital_initial = [c for c in hospital if c.scope is Scope.INITIAL]
    who_initial_only = bool(rules.of_kind(Kind.INITIAL_BY_SPECIALISTS, Kind.RENEWAL_OPEN)) or \
        bool(renewers) or (bool(who) and all(c.scope is Scope.INITIAL for c in who))
    if not (who or renewers or hospital):
        return
    in_hospital = _Can.YES if prescriber.hospital else _Can.NO
    hosp_all = in_hospital if hospital_all else _Can.YES
    who_can, doubts = _who_can(who, prescriber) if who else (_Can.YES, [])
    renew_can, renew_doubts = _who_can(renewers, prescriber) if renewers else (_Can.YES, [])
    initial_list = who_can
    if not who and renewers and not hospital_initial:
        initial_list, doubts = renew_can, renew_doubts  # a fortiori (see above)
    initial = _both(hosp_all, in_hospital if hospital_initial else _Can.YES, initial_list)
    if renewers:
        renewal = _both(hosp_all, renew_can)
    elif who and not who_initial_only:
        renewal = _both(hosp_all, who_can)
    else:
        renewal = hosp_all
    rule = _quotes([*hospital, *who, *renewers,
                    *rules.of_kind(Kind.INITIAL_BY_SPECIALISTS, Kind.RENEWAL_OPEN)])
    if initial is _Can.YES:
        return
    if initial is _Can.MAYBE and renewal is _Can.YES:
        add(Severity.WARN, "sauf si vous comptez parmi des prescripteurs que l'annuaire ne"
            f" permet pas de reconnaître ({'; '.join(doubts)}), vous ne pouvez le prescrire"
            " qu'en renouvellement d'une prescription initiale"
            f" {_initial_words(hospital_initial, who, rules)} : le patient la présentera au"
            " pharmacien avec celle-ci", rule)
        return
    if initial is _Can.MAYBE and renewal is _Can.MAYBE:
        add(Severity.WARN, "réservé à des prescripteurs que l'annuaire ne permet pas de"
            f" reconnaître ({'; '.join(doubts)}) : le pharmacien le vérifiera", rule)
        return
    if renewal is not _Can.NO:
        add(Severity.WARN, "vous ne pouvez le prescrire qu'en renouvellement d'une prescription"
            f" initiale {_initial_words(hospital_initial, who, rules)} : le patient la"
            " présentera au pharmacien avec celle-ci", rule)
        return
    add(Severity.REFUSE, f"réservé {_who_words(hospital_all, who, renewers)} ; vous"
        f" ({prescriber.speciality_words()}{', en ville' if not prescriber.hospital else ''})"
        " ne pouvez ni le prescrire ni le renouveler", rule)


def _who_can(conditions: list[Condition], prescriber: Prescriber) -> tuple[_Can, list[str]]:
    doubts: list[str] = []
    for c in conditions:
        if c.kind is Kind.SPECIALISTS:
            codes = frozenset().union(*(specialities_for(s) for s in c.specialities))
            if prescriber.has_any(codes):
                return _Can.YES, []
            if not codes:
                doubts.append(f"spécialistes en {', '.join(c.specialities)}, spécialité"
                              " inconnue de l'annuaire")
            elif c.services and prescriber.hospital:
                doubts.append(f"médecins d'un service hospitalier de"
                              f" {', '.join(c.specialities)}")
        elif c.hospital_setting:
            if prescriber.hospital:
                doubts.append(c.setting or c.text)
        else:
            doubts.append(c.setting or c.text)
    return (_Can.MAYBE if doubts else _Can.NO), doubts


def _specialities_words(conditions: Iterable[Condition]) -> str:
    names: list[str] = []
    for c in conditions:
        if c.kind is Kind.SPECIALISTS:
            names += list(c.specialities)
        else:
            names.append(c.setting or c.text)
    return ", ".join(dict.fromkeys(names))


def _who_words(hospital_all: list[Condition], who: list[Condition],
               renewers: list[Condition]) -> str:
    parts = []
    if hospital_all:
        parts.append("aux médecins hospitaliers")
    if who or renewers:
        parts.append("aux spécialistes ou prescripteurs suivants : "
                     + _specialities_words([*who, *renewers]))
    return " et ".join(parts) or "à certains prescripteurs"


def _initial_words(hospital_initial: list[Condition], who: list[Condition],
                   rules: DrugRules) -> str:
    parts = []
    if hospital_initial:
        parts.append("hospitalière")
    if who:
        parts.append("d'un prescripteur habilité (" + _specialities_words(who) + ")")
    months = [c.months for c in (*hospital_initial, *rules.of_kind(Kind.INITIAL_BY_SPECIALISTS),
                                 *who) if c.months]
    if months:
        m = min(months)
        parts.append("datant de moins d'un an" if m == 12 else f"datant de moins de {m} mois")
    return " ".join(parts)


def _unit_findings(line: PrescriptionLine, facts: DrugFactsLike, add: _Add) -> None:
    units = facts.dose_units()
    wrong = sorted({dose.unit for phase in line.phases for dose in phase.all_doses
                    if dose.unit in COUNTED and units is not None and dose.unit not in units})
    if units is not None and wrong:
        fitting = sorted(DOSE_UNITS[u][1] for u in units if u in DOSE_UNITS)
        amounts = ", ".join(DOSE_UNITS[u][0] for u in ("mg", "g", "ug", "[iU]") if u in AMOUNT)
        written = " et des ".join(DOSE_UNITS.get(u, (u, u))[1] for u in wrong)
        add(Severity.REFUSE, f"des {written} ne conviennent pas à la forme « {facts.form} » :"
            f" comptez la dose en {', '.join(fitting)} (ou en {amounts})",
            f"forme pharmaceutique de la base des médicaments : {facts.form}")
    pack = line.quantity_unit
    if line.quantity is not None and pack and not facts.fits_pack(pack):
        add(Severity.REFUSE, f"ce médicament n'est pas présenté en {pack} : indiquez le nombre"
            " de boîtes", f"présentations de la base des médicaments ({facts.form})")


_DIGIT = re.compile(r"\d+(?:[.,]\d+)?")


def _free_text_in_letters(p: Prescription) -> list[Finding]:
    """Digits in a line's free text on a secured ordonnance (structured counts are printed in
    letters by the ordonnance itself; the free text is printed as written)."""
    out = []
    for n, line in enumerate(p.lines, 1):
        text = line.dosage_text or ""
        if _DIGIT.search(text):
            out.append(Finding(n, line.product.label, Severity.REFUSE,
                               f"« {text} » : sur une ordonnance sécurisée, écrivez les nombres"
                               f" en toutes lettres (« {spell_numbers(text)} »)",
                               ART_LETTERS))
    return out


def _quote(c: Condition) -> str:
    return f"« {c.text} »" if not c.text.startswith("stupéfiants (") else c.text


def _quotes(conditions: Iterable[Condition]) -> str:
    return " ; ".join(dict.fromkeys(_quote(c) for c in conditions))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n >= 2 else ''}"


# ---- what the patient reads ------------------------------------------------------------------


def patient_notice(p: Prescription, drugs: DrugFactsSource | None) -> Notice | None:
    """What the ordonnance tells the patient beyond the 3 months: its stupéfiants must be
    presented within three days (after that, only the treatment left is delivered: R5132-33)
    and their treatment's end; the lines delivered in fractions. None when nothing applies
    (or no drug reference is loaded)."""
    if drugs is None:
        return None
    narcotic: list[int] = []
    durations: list[int | None] = []
    fractions: list[tuple[int, int]] = []
    for n, line in enumerate(p.lines, 1):
        facts = drugs.facts(line.product.cis) if line.product.cis else None
        if facts is None:
            continue
        if facts.rules.narcotic:
            narcotic.append(n)
            durations.append(line.duration_days * (1 + line.renewals)
                             if line.duration_days else None)
        if facts.rules.fraction_days:
            fractions.append((n, facts.rules.fraction_days))
    if not narcotic and not fractions:
        return None
    known = [d for d in durations if d is not None]
    return Notice(
        narcotic_lines=tuple(narcotic), narcotic_days=NARCOTIC_PRESENTATION_DAYS,
        narcotic_treatment_days=max(known) if known and len(known) == len(durations) else None,
        only_narcotics=len(narcotic) == len(p.lines), fractions=tuple(fractions))


def delivery_reminders(record: PrescriptionRecord, drugs: DrugFactsSource | None) -> list[str]:
    """What the pharmacist must know before delivering, line by line: fractions, a
    stupéfiant's three days, hospital pharmacies only, the papers to check."""
    out: list[str] = []
    if drugs is None:
        return out
    for rec in record.lines:
        facts = drugs.facts(rec.cis) if rec.cis else None
        if facts is None:
            continue
        rules = facts.rules
        notes: list[str] = []
        if rules.fraction_days:
            notes.append(f"délivrance fractionnée par {rules.fraction_days} jours")
        if rules.narcotic:
            notes.append(f"stupéfiant : délivré en entier si présenté dans les"
                         f" {NARCOTIC_PRESENTATION_DAYS} jours suivant la date de l'ordonnance,"
                         f" ensuite pour le traitement restant à courir ({ART_PRESENTATION})")
        if rules.pui_only:
            notes.append("délivré seulement par une pharmacie à usage intérieur")
        notes += [f"à vérifier : {c.text}" for c in rules.of_kind(Kind.PAPER)
                  if c.when == "dispensing"]
        out += [f"ligne {rec.position} ({rec.label}) : {n}" for n in notes]
    return out


# ---- the dispensation -----------------------------------------------------------------------


def check_dispensation(p: Prescription, d: Dispensation, record: PrescriptionRecord,
                       drugs: DrugFactsSource | None, now: dt.datetime) -> list[Finding]:
    """The delivery conditions for `d` against the registered prescription `p` and what its
    record says was delivered before. REFUSE: what may not be delivered now; WARN: what the
    pharmacist must check on paper."""
    out: list[Finding] = []
    if drugs is None:
        return out
    day = now.date()
    start = record.prescribed_at.date()
    elapsed = (day - start).days
    for dl in d.lines:
        rec = next((r for r in record.lines if r.matches(dl.line_ref)), None)
        if rec is None or rec.cis is None:
            continue
        line = p.lines[rec.position - 1] if rec.position <= len(p.lines) else None
        facts = drugs.facts(rec.cis)
        if facts is None or line is None:
            continue
        rules = facts.rules

        def add(severity: Severity, message: str, rule: str, n: int = rec.position,
                label: str = rec.label) -> None:
            out.append(Finding(n, label, severity, message, rule))

        if dl.quantity > 0:
            for c in rules.of_kind(Kind.DISPENSING):
                if c.pui_only:
                    add(Severity.REFUSE, "délivré seulement par une pharmacie hospitalière"
                        " (pharmacie à usage intérieur), pas par une pharmacie de ville",
                        _quote(c))
            _period_findings(rec.allowed, rec.delivered, dl.quantity, line, rules, elapsed,
                             add)
        for c in rules.of_kind(Kind.PAPER):
            if c.when == "dispensing":
                add(Severity.WARN, "à vérifier avant de délivrer", _quote(c))
    return out


def _period_findings(allowed: Decimal | None, delivered: Decimal, quantity: Decimal,
                     line: PrescriptionLine, rules: DrugRules, elapsed: int, add: _Add) -> None:
    """Fractionated delivery and the three days of a stupéfiant: how much of the line's total
    may be delivered now. The treatment's days count from the prescription date: fraction k
    covers days [k·F, (k+1)·F); the total covers duration × (1 + renewals) days.

    READING: the 3-day rule (R5132-33) is applied to medicines the BDPM lists as stupéfiants
    (not to the other medicines of a secured ordonnance), at their first delivery: the
    ordonnance was presented late, the days already gone are lost, to the end of the current
    fraction or of the treatment."""
    fraction = rules.fraction_days
    late = rules.narcotic and elapsed > NARCOTIC_PRESENTATION_DAYS and delivered == 0
    if (fraction is None and not late) or allowed is None or not line.duration_days:
        return
    days = line.duration_days * (1 + line.renewals)
    horizon = days
    if fraction is not None:
        horizon = min(days, (max(elapsed, 0) // fraction + 1) * fraction)
    if late:
        cap = allowed * Decimal(max(horizon - elapsed, 0)) / Decimal(days)
        why = (f"l'ordonnance de stupéfiant est présentée {elapsed} jours après sa date (plus"
               f" de {NARCOTIC_PRESENTATION_DAYS}) : seule la période restant à courir peut"
               f" être délivrée ({max(horizon - elapsed, 0)} jours sur {days}"
               + (f", fraction de {fraction} jours" if fraction else "") + ")")
        rule = f"{_quotes(rules.of_kind(Kind.SCHEDULE))} ({ART_PRESENTATION})"
    else:
        assert fraction is not None
        cap = allowed * Decimal(horizon) / Decimal(days) - delivered
        why = (f"délivrance fractionnée par {fraction} jours : une fraction à la fois (jusqu'au"
               f" jour {horizon} de {days} ; déjà délivré {_amount(delivered)})")
        rule = _quotes(rules.of_kind(Kind.FRACTIONATED))
    if quantity > cap:
        cap = max(cap, Decimal(0))
        add(Severity.REFUSE, f"{why} : au plus {_amount(cap)} {plural(cap, line.quantity_unit)}"
            f" maintenant, pas {_amount(quantity)}", rule)


def _amount(value: Decimal) -> str:
    q = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP).normalize()
    return format(q, "f").replace(".", ",")
