"""French health identifiers: check on entry, with an error that names the field and the rule.

Every function returns the normalised value (spaces removed, upper case) or raises
InvalidIdentifier. Pure functions: the directory, the documents and the forms all use them.
"""

from __future__ import annotations

import re

from gateway.errors import InvalidIdentifier
from gateway.texts import t

# OIDs used in documents and metadata (see shared/reference).
OID_RPPS_ADELI = "1.2.250.1.71.4.2.1"  # national professional id: "8" + RPPS or "0" + ADELI
OID_STRUCTURE = "1.2.250.1.71.4.2.2"  # national structure id: "1" + FINESS or "3" + SIRET
OID_INS_NIR = "1.2.250.1.213.1.4.8"
OID_INS_NIA = "1.2.250.1.213.1.4.9"
OID_INS_TEST = "1.2.250.1.213.1.4.10"
OID_INS_DEMO = "1.2.250.1.213.1.4.11"
OID_CIS = "1.2.250.1.213.2.3.1"
OID_CIP13 = "1.2.250.1.213.2.3.2"
OID_PRESCRIPTION_ID = "1.2.250.1.215.500.1.1"


def _clean(value: str) -> str:
    return re.sub(r"[\s.-]", "", value or "").upper()


def luhn_valid(digits: str) -> bool:
    """Luhn (mod 10) check over a string of digits, check digit last."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def rpps(value: str, field: str = "rpps") -> str:
    v = _clean(value)
    if not re.fullmatch(r"\d{11}", v):
        raise InvalidIdentifier(field, value, "an RPPS number is 11 digits")
    if not luhn_valid(v):
        raise InvalidIdentifier(field, value, "the RPPS check digit (Luhn) does not match")
    return v


def adeli(value: str, field: str = "adeli") -> str:
    v = _clean(value)
    if not re.fullmatch(r"\d{9}", v):
        raise InvalidIdentifier(field, value, "an ADELI number is 9 digits")
    if not luhn_valid(v):
        raise InvalidIdentifier(field, value, "the ADELI check digit (Luhn) does not match")
    return v


def finess(value: str, field: str = "finess") -> str:
    """9 characters: department (digits, or 2A/2B for Corsica) + 6 digits + Luhn check digit."""
    v = _clean(value)
    if not re.fullmatch(r"(\d{2}|2A|2B)\d{7}", v):
        raise InvalidIdentifier(
            field, value, "a FINESS number is 9 characters: department (2 digits, 2A or 2B)"
            " then 7 digits"
        )
    # Corsican FINESS numbers carry the key computed as for department 20.
    digits = "20" + v[2:] if v[:2] in ("2A", "2B") else v
    if not luhn_valid(digits):
        raise InvalidIdentifier(field, value, "the FINESS check digit (Luhn) does not match")
    return v


def siret(value: str, field: str = "siret") -> str:
    v = _clean(value)
    if not re.fullmatch(r"\d{14}", v):
        raise InvalidIdentifier(field, value, "a SIRET number is 14 digits")
    # La Poste's establishments (SIREN 356000000) use a digit-sum rule instead of Luhn.
    if v.startswith("356000000"):
        if sum(int(c) for c in v) % 5:
            raise InvalidIdentifier(field, value, "the SIRET check (La Poste rule) does not match")
    elif not luhn_valid(v):
        raise InvalidIdentifier(field, value, "the SIRET check digit (Luhn) does not match")
    return v


def ins_key(body: str) -> int:
    """INS-NIR key of a 13-character body: 97 - (N mod 97), with 2A -> 19 and 2B -> 18."""
    n = body.replace("2A", "19").replace("2B", "18")
    return 97 - (int(n) % 97)


def ins(value: str, field: str = "ins") -> str:
    """INS-NIR (or NIA): 15 characters, 13-character body + 2-digit key."""
    v = _clean(value)
    if not re.fullmatch(r"[1-478]\d{4}(\d{2}|2A|2B)\d{6}\d{2}", v):
        raise InvalidIdentifier(
            field,
            value,
            "an INS is 15 characters: sex (1, 2, or 3, 4, 7, 8 for temporary numbers), year,"
            " month, department (digits, 2A or 2B), commune, order and a 2-digit key",
        )
    month = int(v[3:5])
    if not (1 <= month <= 12 or 20 <= month <= 42 or 50 <= month <= 99):
        raise InvalidIdentifier(field, value, t("month {month} is not a valid INS month",
                                                month=v[3:5]))
    if ins_key(v[:13]) != int(v[13:]):
        raise InvalidIdentifier(field, value, "the INS key does not match (97 - N mod 97)")
    return v


def cis(value: str, field: str = "cis") -> str:
    v = _clean(value)
    if not re.fullmatch(r"6\d{7}", v):
        raise InvalidIdentifier(field, value, "a CIS code is 8 digits starting with 6")
    return v


def ean13_check_digit(first12: str) -> int:
    total = sum((3 if i % 2 else 1) * int(c) for i, c in enumerate(first12))
    return (10 - total % 10) % 10


def cip13(value: str, field: str = "cip13") -> str:
    v = _clean(value)
    if not re.fullmatch(r"34009\d{8}", v):
        raise InvalidIdentifier(field, value, "a CIP13 code is 13 digits starting with 34009")
    if ean13_check_digit(v[:12]) != int(v[12]):
        raise InvalidIdentifier(field, value, "the CIP13 check digit (EAN-13) does not match")
    return v


def national_professional_id(
    rpps_number: str | None = None, adeli_number: str | None = None
) -> str:
    """The id under OID_RPPS_ADELI: '8' + RPPS, else '0' + ADELI."""
    if rpps_number:
        return "8" + rpps(rpps_number)
    if adeli_number:
        return "0" + adeli(adeli_number)
    raise InvalidIdentifier("rpps", "", "an RPPS or ADELI number is required")


def national_structure_id(
    finess_number: str | None = None, siret_number: str | None = None
) -> str:
    """The id under OID_STRUCTURE: '1' + FINESS, else '3' + SIRET."""
    if finess_number:
        return "1" + finess(finess_number)
    if siret_number:
        return "3" + siret(siret_number)
    raise InvalidIdentifier("finess", "", "a FINESS or SIRET number is required")
