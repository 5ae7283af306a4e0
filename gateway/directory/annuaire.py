"""The national directory's open-data list of MSSanté mailboxes, read into remote entries.

ANS publishes every day "Annuaire Santé — extraction des BAL MSSanté" (Licence Ouverte): a ZIP
holding one `Extraction_Correspondance_MSSante_AAAAMMJJhhmm.txt` (also mirrored unzipped on
data.gouv.fr). The text is UTF-8, `|`-separated, one header line then one line per (mailbox,
owner), 31 columns (`COLUMNS`); ~535,000 lines, some addresses on several lines.

Pure: bytes in, `Annuaire` out (entries, and the lines that could not be read with the reason).
How a line becomes an entry:
- `PER` (a professional's mailbox) -> kind professional, with the RPPS (identifier type 8) or
  ADELI (type 0) number, the profession (TRE_G15) and savoir-faire (TRE_R38) codes, the name
  "civilité prénom nom", and the structure's name;
- `ORG` (and `CAB`, `APP`) -> kind pharmacy when the structure's name (raison sociale,
  enseigne or service) names a pharmacy ("pharmacie", "officine"), else structure; with its
  FINESS or SIRET number. READING: the file carries no structure category, so the name decides;
  an administrator corrects an entry with `mssgw directory add-remote`, which an import never
  overrides.
An address on several lines keeps its first line (the others are counted as duplicates). Every
identifier is checked as the directory checks its own (`identity.normalise_remote`): a line
that fails is skipped and reported, never half-imported.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass

from gateway.directory.identity import normalise_remote
from gateway.directory.model import RemoteEntry, RemoteKind
from gateway.errors import GatewayError

COLUMNS = (
    "Type de BAL", "Adresse BAL", "Type Identifiant PP", "Identifiant PP",
    "Identification nationale PP", "Type identifiant structure", "Identification Structure",
    "Service de rattachement", "Civilité d'exercice", "Nom d'exercice", "Prénom d'exercice",
    "Catégorie profession", "Libellé de catégorie profession", "Code Profession",
    "Libellé Profession", "Code savoir-faire", "Libellé savoir-faire", "Dématérialisation",
    "Raison Sociale structure BAL", "Enseigne commerciale structure BAL",
    "L2COMPLEMENTLOCALISATION", "L3COMPLEMENTDISTRIBUTION", "L4NUMEROVOIE",
    "L4COMPLEMENTNUMEROVOIE", "NL4TYPEVOIE", "L4LIBELLEVOIE", "L5LIEUDITMENTION",
    "L6LIGNEACHEMINEMENT", "Code postal", "Département", "Pays",
)
SEPARATOR = "|"
# The published file is ~160 MB; a ZIP declaring far more is not it (and may be a bomb).
MAX_TEXT_BYTES = 1 << 30
MAX_PROBLEMS = 1000  # lines reported one by one; the rest are counted

_PHARMACY = re.compile(r"\b(pharmacie|pharmacies|officine)\b")
_TITLES = {"DR": "Dr", "PR": "Pr", "M": "M.", "MME": "Mme", "MLLE": "Mlle"}


class AnnuaireError(GatewayError):
    """The file is not the national list (its header, its encoding, its container)."""


@dataclass(frozen=True)
class LineProblem:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class Annuaire:
    entries: tuple[RemoteEntry, ...]
    problems: tuple[LineProblem, ...]  # the first MAX_PROBLEMS lines skipped, with why
    skipped: int  # every line skipped
    lines: int  # data lines read (the header excluded)
    duplicates: int  # lines naming an address already read


def _fold(text: str) -> str:
    s = unicodedata.normalize("NFKD", text)
    return "".join(c for c in s if not unicodedata.combining(c)).casefold()


def _header_ok(cells: list[str]) -> str | None:
    """Why the header is not the published one, or None."""
    if len(cells) != len(COLUMNS):
        return f"{len(cells)} columns where the national list has {len(COLUMNS)}"
    for i, (got, want) in enumerate(zip(cells, COLUMNS, strict=True), start=1):
        if " ".join(_fold(got).split()) != " ".join(_fold(want).split()):
            return f"column {i} is {got.strip()!r}, expected {want!r}"
    return None


def text_of(data: bytes) -> str:
    """The list's text: from the ZIP as published (one .txt inside) or as it is."""
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                names = [i for i in z.infolist() if not i.is_dir()]
                if len(names) != 1 or not names[0].filename.lower().endswith(".txt"):
                    raise AnnuaireError("the ZIP should hold one .txt file (the national list);"
                                        f" it holds {', '.join(i.filename for i in names)}")
                if names[0].file_size > MAX_TEXT_BYTES:
                    raise AnnuaireError(f"{names[0].filename} declares {names[0].file_size}"
                                        " bytes: more than the national list could be")
                with z.open(names[0]) as f:
                    data = f.read(MAX_TEXT_BYTES + 1)
                if len(data) > MAX_TEXT_BYTES:
                    raise AnnuaireError("the ZIP's text is larger than it declares")
        except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError) as exc:
            raise AnnuaireError(f"not a readable ZIP: {exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise AnnuaireError(f"line {line}: not UTF-8 (the national list is UTF-8)") from None


def _structure_ids(kind_code: str, value: str) -> tuple[str | None, str | None]:
    """(FINESS, SIRET) from the structure identifier, with or without its type prefix."""
    v = value.strip().replace(" ", "")
    if not v:
        return None, None
    for candidate in (v, v[1:] if len(v) in (10, 15) else None):
        if candidate and len(candidate) == 9:
            return candidate, None
        if candidate and len(candidate) == 14 and candidate.isdigit():
            return None, candidate
    return (v, None) if kind_code.strip() in ("1", "FINESS") else (None, v)


def _entry(cells: list[str]) -> RemoteEntry:
    c = [x.strip() for x in cells]
    bal_type, address = c[0].upper(), c[1]
    if not address:
        raise AnnuaireError("no address (column 2)")
    organisation = c[18] or c[19] or None
    if bal_type == "PER":
        id_type, ident = c[2], c[3] or c[4][1:]
        rpps = ident if id_type == "8" or (not id_type and len(ident) == 11) else None
        adeli = ident if id_type == "0" or (not id_type and len(ident) == 9) else None
        title = _TITLES.get(c[8].upper().rstrip("."), "")
        name = " ".join(x for x in (title, c[10], c[9]) if x) or address
        specialty = c[15] if re.fullmatch(r"[A-Z]{1,4}[0-9]{0,3}", c[15].upper()) else None
        return RemoteEntry(address=address, kind=RemoteKind.PROFESSIONAL, name=name, rpps=rpps,
                           adeli=adeli, profession=c[13] or None, specialty=specialty,
                           organisation=organisation, source="annuaire")
    if bal_type in ("ORG", "CAB", "APP"):
        finess, siret = _structure_ids(c[5], c[6])
        name = organisation or c[7] or address
        words = _fold(" ".join((c[18], c[19], c[7])))
        kind = RemoteKind.PHARMACY if _PHARMACY.search(words) else RemoteKind.STRUCTURE
        return RemoteEntry(address=address, kind=kind, name=name, finess=finess, siret=siret,
                           organisation=organisation, source="annuaire")
    raise AnnuaireError(f"mailbox type {c[0]!r} is not PER, ORG, CAB or APP")


def read_annuaire(data: bytes) -> Annuaire:
    """The entries of the national list (`data`: the ZIP or its text), or AnnuaireError when
    the file is not that list at all."""
    lines = text_of(data).splitlines()
    if not lines:
        raise AnnuaireError("the file is empty")
    problem = _header_ok(lines[0].split(SEPARATOR))
    if problem is not None:
        raise AnnuaireError(f"line 1 is not the national list's header: {problem}")
    entries: dict[str, RemoteEntry] = {}
    problems: list[LineProblem] = []
    skipped = duplicates = read = 0
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        read += 1
        cells = line.split(SEPARATOR)
        try:
            if len(cells) != len(COLUMNS):
                raise AnnuaireError(f"{len(cells)} columns instead of {len(COLUMNS)}")
            entry = normalise_remote(_entry(cells))
        except GatewayError as exc:
            skipped += 1
            if len(problems) < MAX_PROBLEMS:
                problems.append(LineProblem(number, str(exc)))
            continue
        if entry.address in entries:
            duplicates += 1
            continue
        entries[entry.address] = entry
    return Annuaire(tuple(entries.values()), tuple(problems), skipped, read, duplicates)
