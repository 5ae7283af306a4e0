"""Read the official BDPM files: tab-separated, no header, CRLF (or LF), mixed encodings.

Pure functions over bytes, so the quirks are tested without a database:
- encodings differ per file (cp1252 for CIS_bdpm and CIS_GENER, UTF-8 for the others, and the
  publisher changes this from time to time): each file is decoded as UTF-8 when it is valid UTF-8,
  else as cp1252. Accented cp1252 text is practically never valid UTF-8, and pure-ASCII text reads
  the same in both, so the guess cannot go wrong on these files;
- prices use a decimal comma, and above 1,000 EUR a comma as thousands separator too
  (`1,466,29`): the last comma is the decimal one;
- rows are checked (field count, CIS, CIP13 check digit, price) and every row we cannot read is
  reported with its file and line, never dropped silently.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal

from gateway.errors import InvalidIdentifier
from gateway.identifiers import cip13 as check_cip13
from gateway.identifiers import cis as check_cis

# file name -> expected number of tab-separated fields
FILES: dict[str, int] = {
    "CIS_bdpm.txt": 12,
    "CIS_CIP_bdpm.txt": 13,
    "CIS_COMPO_bdpm.txt": 9,
    "CIS_GENER_bdpm.txt": 5,
    "CIS_CPD_bdpm.txt": 2,
    "CIS_MITM.txt": 4,
}
REQUIRED = ("CIS_bdpm.txt", "CIS_CIP_bdpm.txt")


@dataclass(frozen=True)
class RowProblem:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


class BadRow(ValueError):
    """A row we cannot read; the message says why."""


def decode(data: bytes) -> tuple[str, str]:
    """(text, encoding name): UTF-8 (BOM allowed) when valid, else cp1252."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        # cp1252 leaves 5 bytes undefined; latin-1 would map them, but they never occur here.
        return data.decode("cp1252", errors="replace"), "cp1252"


def lines(text: str) -> list[str]:
    """The lines of a file, CRLF or LF. (str.splitlines would also split on form feeds and
    other separators that may legitimately sit inside a field.)"""
    out = text.split("\n")
    if out and out[-1] == "":
        out.pop()
    return [line.removesuffix("\r") for line in out]




def price_cents(text: str) -> int | None:
    """'24,34' -> 2434; '1,466,29' -> 146629 (thousands comma); '' -> None."""
    t = text.strip().replace(" ", "").replace("\u00a0", "")
    if not t:
        return None
    if not re.fullmatch(r"\d{1,3}(,\d{3})*,\d{1,2}|\d+(,\d{1,2})?|\d+\.\d{1,2}", t):
        raise BadRow(f"price {text!r} is not a number")
    if "," in t:
        whole, _, frac = t.rpartition(",")
        t = whole.replace(",", "") + "." + frac
    return int((Decimal(t) * 100).to_integral_value())


def french_date(text: str) -> str | None:
    """'16/03/2011' -> '2011-03-16'."""
    t = text.strip()
    if not t:
        return None
    try:
        return dt.datetime.strptime(t, "%d/%m/%Y").date().isoformat()
    except ValueError:
        raise BadRow(f"date {text!r} is not DD/MM/YYYY") from None


def normalise_name(text: str) -> str:
    """Accent- and case-insensitive form used for matching: 'Comprimé  PELLICULÉ' ->
    'comprime pellicule'."""
    if text.isascii():  # nothing to decompose (a form's codes, most words): 10x faster
        stripped = text
    else:
        decomposed = unicodedata.normalize("NFKD", text)
        stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_NOT_ALNUM.sub(" ", stripped.lower()).split())


_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def _cis(value: str) -> str:
    try:
        return check_cis(value)
    except InvalidIdentifier as exc:
        raise BadRow(f"CIS {value!r}: {exc.rule}") from None


def _fields(fields: list[str], expected: int) -> list[str]:
    # Trailing empty fields are sometimes missing; more fields than expected is a real error.
    if len(fields) > expected or len(fields) < max(2, expected - 2):
        raise BadRow(f"{len(fields)} fields instead of {expected}")
    return [f.strip() for f in fields] + [""] * (expected - len(fields))


def speciality(fields: list[str]) -> tuple[object, ...]:
    f = _fields(fields, 12)
    return (
        _cis(f[0]), f[1], normalise_name(f[1]), f[2], f[3], f[4], f[5],
        1 if f[6].lower() == "commercialisée" else 0, french_date(f[7]), f[8], f[9], f[10],
        1 if f[11].lower() == "oui" else 0,
    )


def presentation(fields: list[str]) -> tuple[object, ...]:
    f = _fields(fields, 13)
    try:
        code13 = check_cip13(f[6])
    except InvalidIdentifier as exc:
        raise BadRow(f"CIP13 {f[6]!r}: {exc.rule}") from None
    if not re.fullmatch(r"\d{7}", f[1]):
        raise BadRow(f"CIP7 {f[1]!r} is not 7 digits")
    return (
        code13, f[1], _cis(f[0]), f[2], f[3], f[4], french_date(f[5]),
        {"oui": 1, "non": 0}.get(f[7].lower()), f[8].replace(" ", "") or None,
        price_cents(f[9]), price_cents(f[10]), price_cents(f[11]), f[12] or None,
    )


def composition(fields: list[str]) -> tuple[object, ...]:
    f = _fields(fields, 9)
    return (_cis(f[0]), f[1], f[2], f[3], f[4], f[5], f[6], f[7])


def generic(fields: list[str]) -> tuple[object, ...]:
    f = _fields(fields, 5)
    if not f[0].isdigit() or not f[3].isdigit():
        raise BadRow(f"generic group {f[0]!r} / type {f[3]!r} are not numbers")
    return (int(f[0]), f[1], _cis(f[2]), int(f[3]), int(f[4]) if f[4].isdigit() else None)


def condition(fields: list[str]) -> tuple[object, ...]:
    f = _fields(fields, 2)
    if not f[1]:
        raise BadRow("no prescribing condition")
    return (_cis(f[0]), f[1])


def atc(fields: list[str]) -> tuple[object, ...]:
    f = _fields(fields, 4)
    if not re.fullmatch(r"[A-Z]\d{2}[A-Z]{0,2}\d{0,2}", f[1]):
        raise BadRow(f"ATC code {f[1]!r} is not well-formed")
    return (_cis(f[0]), f[1])


READERS = {
    "CIS_bdpm.txt": speciality,
    "CIS_CIP_bdpm.txt": presentation,
    "CIS_COMPO_bdpm.txt": composition,
    "CIS_GENER_bdpm.txt": generic,
    "CIS_CPD_bdpm.txt": condition,
    "CIS_MITM.txt": atc,
}


@dataclass
class FileResult:
    name: str
    encoding: str
    rows: list[tuple[object, ...]]
    problems: list[RowProblem]
    blank: int


def read_file(name: str, data: bytes) -> FileResult:
    """Every readable row of one BDPM file, and a problem per unreadable or blank line."""
    reader = READERS[name]
    text, encoding = decode(data)
    out: list[tuple[object, ...]] = []
    problems: list[RowProblem] = []
    blank = 0
    for number, line in enumerate(lines(text), start=1):
        if not line.strip():
            blank += 1
            problems.append(RowProblem(name, number, "empty line (skipped)"))
            continue
        try:
            out.append(reader(line.split("\t")))
        except BadRow as exc:
            problems.append(RowProblem(name, number, str(exc)))
    return FileResult(name, encoding, out, problems, blank)
