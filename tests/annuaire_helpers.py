"""Synthetic files in the national directory's layout of MSSanté mailboxes (never real
people's data): the header line and `|`-separated rows of 31 columns."""

from __future__ import annotations

from gateway.directory.annuaire import COLUMNS
from gateway.identifiers import luhn_valid


def luhn_complete(prefix: str) -> str:
    """`prefix` followed by the digit that makes it pass the Luhn check (RPPS, FINESS)."""
    return next(prefix + d for d in "0123456789" if luhn_valid(prefix + d))


def per(address: str, rpps: str, family: str, given: str, *, profession: str = "10",
        specialty: str = "SM26", title: str = "DR", structure: str = "",
        id_type: str = "8") -> list[str]:
    row = [""] * len(COLUMNS)
    row[0], row[1], row[2], row[3], row[4] = "PER", address, id_type, rpps, id_type + rpps
    row[8], row[9], row[10] = title, family, given
    row[13], row[15] = profession, specialty
    row[18] = structure
    row[28], row[29], row[30] = "29200", "29", "FRANCE"
    return row


def org(address: str, finess: str, name: str, *, enseigne: str = "", service: str = ""
        ) -> list[str]:
    row = [""] * len(COLUMNS)
    row[0], row[1], row[5], row[6] = "ORG", address, "1", finess
    row[7], row[18], row[19] = service, name, enseigne
    row[28], row[29], row[30] = "29200", "29", "FRANCE"
    return row


def annuaire(*rows: list[str], header: tuple[str, ...] = COLUMNS) -> bytes:
    lines = ["|".join(header)] + ["|".join(r) for r in rows]
    return ("\n".join(lines) + "\n").encode("utf-8")
