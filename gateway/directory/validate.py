"""Checks of what an administrator types, each failing with the field and the rule.

Pure functions over plain values (the identifiers themselves are checked by
gateway.identifiers); the repository calls them so every implementation refuses the same input.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from gateway.directory.codes import PROFESSIONS, SAVOIR_FAIRE
from gateway.errors import GatewayError, InvalidIdentifier
from gateway.texts import t, text_of

# RFC 5321 allows more, but mailbox names we create stay simple and unambiguous.
_LOCAL = re.compile(r"[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class InvalidField(GatewayError):
    """A field other than a national identifier that breaks its rule."""

    def __init__(self, field: str, value: object, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(t("{field}: {value!r} is invalid: {rule}", field=field, value=value,
                           rule=text_of(rule)))


class MissingField(GatewayError):
    """A required field left out: `field: rule` (the same words on every face)."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(t("{field}: {rule}", field=field, rule=text_of(rule)))


def domain_name(value: str, field: str = "domain") -> str:
    v = (value or "").strip().lower().rstrip(".")
    labels = v.split(".")
    if len(v) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(lb) for lb in labels):
        raise InvalidField(
            field, value, "a domain name is dot-separated labels of letters, digits and hyphens"
        )
    return v


def address(value: str, field: str = "email") -> str:
    """A mailbox address, lower-cased."""
    v = (value or "").strip().lower()
    local, at, dom = v.rpartition("@")
    if not at or not _LOCAL.fullmatch(local) or ".." in local:
        raise InvalidField(
            field,
            value,
            "an address is local@domain; the local part uses letters, digits and . _ + -",
        )
    return f"{local}@{domain_name(dom, field)}"


def text(value: str | None, field: str, *, required: bool = True, max_len: int = 200) -> str:
    v = " ".join((value or "").split())
    if required and not v:
        raise InvalidField(field, value or "", "must not be empty")
    if len(v) > max_len:
        raise InvalidField(field, v[:20] + "...", t("at most {n} characters", n=max_len))
    if any(unicodedata.category(c) == "Cc" for c in v):
        raise InvalidField(field, v, "control characters are not allowed")
    return v


def multiline(value: str | None, field: str, max_len: int = 500) -> str | None:
    """A postal address: lines kept (given as "\\n" or real newlines), each one cleaned."""
    if not value:
        return None
    lines = [text(line, field, required=False) for line in value.replace("\\n", "\n").split("\n")]
    out = "\n".join(line for line in lines if line)
    if len(out) > max_len:
        raise InvalidField(field, out[:20] + "...", t("at most {n} characters", n=max_len))
    return out or None


def phone(value: str | None, field: str = "phone") -> str | None:
    if not value:
        return None
    v = value.strip()
    if not re.fullmatch(r"\+?[0-9 .()-]{4,30}", v):
        raise InvalidField(
            field, value, "a phone number is digits, spaces, . - ( ) and a leading +"
        )
    return v


def profession(value: str, field: str = "profession") -> str:
    v = (value or "").strip().upper().removeprefix("G15_")
    if v not in PROFESSIONS:
        raise InvalidField(
            field,
            value,
            "a profession is a TRE_G15 code (e.g. 10 médecin, 21 pharmacien, 60 infirmier)",
        )
    return v


def specialty(value: str | None, field: str = "specialty") -> str | None:
    if not value:
        return None
    v = value.strip().upper()
    if not re.fullmatch(r"[A-Z]{1,4}[0-9]{0,3}", v):
        raise InvalidField(field, value, "a specialty is a TRE_R38 code such as SM26 or SM54")
    return v


def savoir_faire(value: tuple[str, ...] | list[str] | str | None,
                 field: str = "savoir-faire") -> tuple[str, ...]:
    """JDV_J107 codes (comma- or space-separated when given as one string), each known, in the
    order given, without repeats."""
    if not value:
        return ()
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        code = item.strip().upper()
        if code not in SAVOIR_FAIRE:
            raise InvalidField(field, item, "a savoir-faire is a JDV_J107 code of the RPPS, e.g."
                               " C35 (compétence cancérologie), CAPA06 (capacité de"
                               " gérontologie), SST24 (FST sommeil), SM48 (rhumatologie)")
        if code not in out:
            out.append(code)
    return tuple(out)


def sex(value: str, field: str = "sex") -> str:
    v = (value or "").strip().upper()
    if v not in ("F", "M"):
        raise InvalidField(field, value, "sex is F or M")
    return v


def birth_date(value: str | date, field: str = "birth-date") -> date:
    if isinstance(value, date):
        d = value
    else:
        try:
            d = date.fromisoformat((value or "").strip())
        except ValueError:
            raise InvalidField(field, value, "a date is YYYY-MM-DD") from None
    if not date(1880, 1, 1) <= d <= date.today():
        raise InvalidField(field, str(d), "must be a past date after 1880")
    return d


def birth_place(value: str, field: str = "birth-place") -> str:
    v = (value or "").strip().upper()
    if not re.fullmatch(r"(\d{2}|2A|2B)\d{3}", v):
        raise InvalidField(
            field, value, "an INSEE commune code is 5 characters (99xxx for a birth abroad)"
        )
    return v


def ins_matches_traits(ins: str, sex_: str, born: date, field: str = "ins") -> None:
    """An INS-NIR repeats sex, year and month of birth: refuse one that contradicts the traits.

    Temporary numbers (first digit 3, 4, 7, 8) and unknown months (20-42, 50-99) are not checked.
    """
    if ins[0] in "12" and ins[0] != ("1" if sex_ == "M" else "2"):
        raise InvalidIdentifier(field, ins, t("its first digit {digit} contradicts sex {sex}",
                                              digit=ins[0], sex=sex_))
    if int(ins[1:3]) != born.year % 100:
        raise InvalidIdentifier(field, ins, t(
            "its birth year {year} contradicts the birth date {born}", year=ins[1:3], born=born))
    month = int(ins[3:5])
    if 1 <= month <= 12 and month != born.month:
        raise InvalidIdentifier(field, ins, t(
            "its birth month {month} contradicts the birth date {born}", month=ins[3:5],
            born=born))


def folded(*parts: str | None) -> str:
    """Lower-case, accent-free text used for free-text search ("Hélène" matches "helene")."""
    s = " ".join(p for p in parts if p)
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s if not unicodedata.combining(c)).casefold()
