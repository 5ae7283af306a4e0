"""The drug reference in the gateway's SQLite database (component "drugs").

`import_directory` replaces the whole reference in one transaction (a failed or interrupted
import leaves the previous version in place); `DrugReference` answers look-ups by CIS, CIP13 and
name. Name search uses an FTS5 index with `remove_diacritics` (accent- and case-insensitive,
ranked by bm25), re-ranked so that marketed, authorised specialities come first.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from gateway.db import migrate, transaction
from gateway.drugs import bdpm
from gateway.drugs.conditions import DrugRules, Kind
from gateway.drugs.forms import dose_units, fits_pack
from gateway.errors import GatewayError

MIGRATIONS = [
    """
    CREATE TABLE drug_specialities (
        cis TEXT PRIMARY KEY, name TEXT NOT NULL, name_norm TEXT NOT NULL, form TEXT,
        routes TEXT, amm_status TEXT, amm_procedure TEXT, marketed INTEGER NOT NULL,
        amm_date TEXT, bdm_status TEXT, eu_number TEXT, holders TEXT,
        reinforced_monitoring INTEGER NOT NULL);
    CREATE TABLE drug_presentations (
        cip13 TEXT PRIMARY KEY, cip7 TEXT NOT NULL, cis TEXT NOT NULL, label TEXT,
        admin_status TEXT, marketing_state TEXT, declared_on TEXT, collectivities INTEGER,
        reimbursement_rate TEXT, price_cents INTEGER, price_with_fees_cents INTEGER,
        fees_cents INTEGER, reimbursement_text TEXT);
    CREATE INDEX drug_presentations_cis ON drug_presentations(cis);
    CREATE INDEX drug_presentations_cip7 ON drug_presentations(cip7);
    CREATE TABLE drug_compositions (
        cis TEXT NOT NULL, element TEXT, substance_code TEXT, substance TEXT, dosage TEXT,
        dosage_reference TEXT, nature TEXT, link_number TEXT);
    CREATE INDEX drug_compositions_cis ON drug_compositions(cis);
    CREATE TABLE drug_generic_groups (
        group_id INTEGER NOT NULL, label TEXT, cis TEXT NOT NULL, kind INTEGER NOT NULL,
        sort_order INTEGER);
    CREATE INDEX drug_generic_groups_cis ON drug_generic_groups(cis);
    CREATE TABLE drug_conditions (cis TEXT NOT NULL, condition TEXT NOT NULL);
    CREATE INDEX drug_conditions_cis ON drug_conditions(cis);
    CREATE TABLE drug_atc (cis TEXT NOT NULL, atc TEXT NOT NULL);
    CREATE INDEX drug_atc_cis ON drug_atc(cis);
    CREATE TABLE drug_import (
        id INTEGER PRIMARY KEY CHECK (id = 1), imported_at TEXT NOT NULL, source TEXT NOT NULL,
        report TEXT NOT NULL);
    CREATE VIRTUAL TABLE drug_names USING fts5(
        cis UNINDEXED, name, tokenize = 'unicode61 remove_diacritics 2');
    """,
    # `named`: a form naming a drug exactly is answered by this index, not by the full-text
    # search (whose prefix queries on common words such as "comprime" take ~2 ms).
    "CREATE INDEX drug_specialities_name_norm ON drug_specialities(name_norm);",
    # The conditions of prescription and delivery read as rules (drugs.conditions), once per
    # import rather than at every prescription line.
    "CREATE TABLE drug_rules (cis TEXT PRIMARY KEY, rules TEXT NOT NULL);",
]

_INSERTS = {
    "CIS_bdpm.txt": "INSERT OR REPLACE INTO drug_specialities VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
    "CIS_CIP_bdpm.txt": "INSERT OR REPLACE INTO drug_presentations VALUES"
    " (?,?,?,?,?,?,?,?,?,?,?,?,?)",
    "CIS_COMPO_bdpm.txt": "INSERT INTO drug_compositions VALUES (?,?,?,?,?,?,?,?)",
    "CIS_GENER_bdpm.txt": "INSERT INTO drug_generic_groups VALUES (?,?,?,?,?)",
    "CIS_CPD_bdpm.txt": "INSERT INTO drug_conditions VALUES (?,?)",
    "CIS_MITM.txt": "INSERT INTO drug_atc VALUES (?,?)",
}
_TABLES = [
    "drug_specialities", "drug_presentations", "drug_compositions", "drug_generic_groups",
    "drug_conditions", "drug_atc", "drug_names", "drug_rules",
]


def loaded_reference(database: Path) -> DrugReference | None:
    """The drug reference of the database at `database` when one is imported, else None (the
    caller closes `.conn`)."""
    from gateway.db import connect

    if not database.exists():
        return None
    ref = DrugReference(connect(database))
    if ref.is_loaded():
        return ref
    ref.conn.close()
    return None


def open_reference(conn: sqlite3.Connection) -> DrugReference:
    migrate(conn, "drugs", MIGRATIONS)
    return DrugReference(conn)


@dataclass
class ImportReport:
    source: str
    counts: dict[str, int] = field(default_factory=dict)  # file -> rows loaded
    encodings: dict[str, str] = field(default_factory=dict)
    problems: list[bdpm.RowProblem] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # optional files not present
    # sentences of CIS_CPD_bdpm.txt no rule of drugs.conditions knows (prescribers are warned)
    unrecognised_conditions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "counts": self.counts,
            "encodings": self.encodings,
            "problems": [str(p) for p in self.problems],
            "missing": self.missing,
            "unrecognised_conditions": self.unrecognised_conditions,
        }


def import_directory(conn: sqlite3.Connection, directory: Path) -> ImportReport:
    """Replace the drug reference with the BDPM files in `directory`, atomically."""
    if not directory.is_dir():
        raise GatewayError(f"drugs import: {directory} is not a directory")
    report = ImportReport(source=str(directory.resolve()))
    results: list[bdpm.FileResult] = []
    for name in bdpm.FILES:
        path = directory / name
        if not path.is_file():
            if name in bdpm.REQUIRED:
                raise GatewayError(f"drugs import: {path} not found (a BDPM folder holds {name})")
            report.missing.append(name)
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise GatewayError(f"drugs import: cannot read {path}: {exc.strerror}") from None
        result = bdpm.read_file(name, data)
        results.append(result)
        report.counts[name] = len(result.rows)
        report.encodings[name] = result.encoding
        report.problems += result.problems
    rules = _rules_rows(results, report)
    if not report.counts.get("CIS_bdpm.txt"):
        raise GatewayError(f"drugs import: {directory}/CIS_bdpm.txt holds no speciality")
    migrate(conn, "drugs", MIGRATIONS)
    with transaction(conn):
        for table in _TABLES:
            conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
        for result in results:
            conn.executemany(_INSERTS[result.name], result.rows)
        conn.executemany("INSERT INTO drug_rules VALUES (?, ?)", rules)
        conn.execute("INSERT INTO drug_names(cis, name) SELECT cis, name FROM drug_specialities")
        conn.execute(
            "INSERT OR REPLACE INTO drug_import VALUES (1, ?, ?, ?)",
            (
                dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                report.source,
                json.dumps(report.as_dict()),
            ),
        )
    return report


def _rules_rows(results: list[bdpm.FileResult], report: ImportReport
                ) -> list[tuple[str, str]]:
    """(cis, rules as JSON) for every medicine with conditions; unknown sentences reported."""
    texts: dict[str, list[str]] = {}
    for result in results:
        if result.name == "CIS_CPD_bdpm.txt":
            for cis, text in result.rows:
                texts.setdefault(str(cis), []).append(str(text))
    unknown: set[str] = set()
    rows = []
    for cis, sentences in texts.items():
        rules = DrugRules.of(sentences)
        unknown.update(c.text for c in rules.of_kind(Kind.UNRECOGNISED))
        rows.append((cis, rules.to_json()))
    report.unrecognised_conditions = sorted(unknown)
    return rows


# Forty patterns over a form, a name and labels: ~0.15 ms a line, the same few thousand
# medicines over and over.
_dose_units = lru_cache(maxsize=4096)(dose_units)


@dataclass(frozen=True)
class DrugFacts:
    """What the prescription and dispensation checks need to know of one medicine."""

    cis: str
    name: str
    form: str
    labels: tuple[str, ...]  # its presentations' labels ("plaquette(s) ... de 30 comprimé(s)")
    rules: DrugRules

    def dose_units(self) -> frozenset[str] | None:
        return _dose_units(self.form, self.name, self.labels)

    def fits_pack(self, pack: str) -> bool:
        return fits_pack(pack, self.labels)


@dataclass(frozen=True)
class Presentation:
    cip13: str
    cip7: str
    cis: str
    label: str
    marketing_state: str
    reimbursement_rate: str | None
    price_cents: int | None


@dataclass(frozen=True)
class Speciality:
    cis: str
    name: str
    form: str
    routes: tuple[str, ...]
    amm_status: str
    marketed: bool
    atc: str | None = None
    presentations: tuple[Presentation, ...] = ()
    conditions: tuple[str, ...] = ()
    substances: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "cis": self.cis,
            "name": self.name,
            "form": self.form,
            "routes": list(self.routes),
            "amm_status": self.amm_status,
            "marketed": self.marketed,
            "atc": self.atc,
            "substances": list(self.substances),
            "conditions": list(self.conditions),
            "presentations": [
                {
                    "cip13": p.cip13,
                    "cip7": p.cip7,
                    "label": p.label,
                    "marketing_state": p.marketing_state,
                    "reimbursement_rate": p.reimbursement_rate,
                    "price": None if p.price_cents is None else f"{p.price_cents / 100:.2f}",
                }
                for p in self.presentations
            ],
        }


class DrugReference:
    """Look-ups in the imported BDPM. Cheap to create; reads only."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def close(self) -> None:
        self.conn.close()

    def is_loaded(self) -> bool:
        try:
            row = self.conn.execute("SELECT 1 FROM drug_import WHERE id = 1").fetchone()
        except sqlite3.OperationalError:
            return False
        return row is not None

    def import_info(self) -> dict[str, object] | None:
        try:
            row = self.conn.execute("SELECT report, imported_at FROM drug_import").fetchone()
        except sqlite3.OperationalError:
            return None
        if row is None:
            return None
        info: dict[str, object] = json.loads(row[0])
        info["imported_at"] = row[1]
        return info

    def by_cis(self, cis: str, details: bool = True) -> Speciality | None:
        """`details=False`: without presentations, conditions and substances (three queries
        fewer, for callers that need the name and ATC code only, such as the mail form)."""
        row = self.conn.execute("SELECT * FROM drug_specialities WHERE cis = ?", (cis,)).fetchone()
        return None if row is None else self._speciality(row, details=details)

    def by_cip13(self, cip13: str, details: bool = True
                 ) -> tuple[Speciality, Presentation] | None:
        row = self.conn.execute(
            "SELECT * FROM drug_presentations WHERE cip13 = ? OR cip7 = ?", (cip13, cip13)
        ).fetchone()
        if row is None:
            return None
        spec = self.by_cis(row["cis"], details=details)
        if spec is None:
            return None
        return spec, _presentation(row)

    def lookup(self, code: str) -> Speciality | None:
        """A CIS (8 digits), CIP13 (13) or CIP7 (7) code -> its speciality."""
        c = re.sub(r"\s", "", code)
        if len(c) == 8:
            return self.by_cis(c)
        if len(c) in (7, 13):
            found = self.by_cip13(c)
            return found[0] if found else None
        return None

    def facts(self, cis: str) -> DrugFacts | None:
        """Form, presentations and prescribing rules of the medicine `cis`, or None."""
        row = self.conn.execute(
            "SELECT s.name, s.form, r.rules FROM drug_specialities s"
            " LEFT JOIN drug_rules r ON r.cis = s.cis WHERE s.cis = ?", (cis,)).fetchone()
        if row is None:
            return None
        if row["rules"] is not None:
            rules = DrugRules.from_json(row["rules"])
        else:
            # A reference imported before drug_rules existed (`make run` imports only once):
            # read the sentences as the import would have.
            rules = DrugRules.of([r[0] for r in self.conn.execute(
                "SELECT condition FROM drug_conditions WHERE cis = ?", (cis,))])
        labels = tuple(r[0] or "" for r in self.conn.execute(
            "SELECT label FROM drug_presentations WHERE cis = ?", (cis,)))
        return DrugFacts(cis=cis, name=row["name"], form=row["form"] or "", labels=labels,
                         rules=rules)

    def named(self, text: str) -> list[Speciality]:
        """Specialities whose name is `text`, accents, case and punctuation aside (without
        their details, as `search` gives them)."""
        rows = self.conn.execute("SELECT * FROM drug_specialities WHERE name_norm = ?",
                                 (bdpm.normalise_name(text),)).fetchall()
        return [self._speciality(r, details=False) for r in rows]

    def search(self, text: str, limit: int = 10) -> list[Speciality]:
        """Specialities whose name contains every word of `text` (prefixes, any accents/case),
        best first: exact name, then marketed and authorised, then bm25, then shorter names."""
        words = bdpm.normalise_name(text).split()
        if not words:
            return []
        query = " ".join(f'"{w}"*' for w in words)
        norm = " ".join(words)
        rows = self.conn.execute(
            "SELECT s.*, bm25(drug_names) AS score FROM drug_names"
            " JOIN drug_specialities s ON s.cis = drug_names.cis"
            " WHERE drug_names MATCH ?"
            " ORDER BY (s.name_norm = ?) DESC, (s.name_norm LIKE ? || '%') DESC,"
            " s.marketed DESC, (s.amm_status = 'Autorisation active') DESC, score,"
            " length(s.name) LIMIT ?",
            (query, norm, norm, limit),
        ).fetchall()
        return [self._speciality(r, details=False) for r in rows]

    def _speciality(self, row: sqlite3.Row, details: bool = True) -> Speciality:
        cis = row["cis"]
        atc = self.conn.execute("SELECT atc FROM drug_atc WHERE cis = ?", (cis,)).fetchone()
        presentations: tuple[Presentation, ...] = ()
        conditions: tuple[str, ...] = ()
        substances: tuple[str, ...] = ()
        if details:
            presentations = tuple(
                _presentation(r)
                for r in self.conn.execute(
                    "SELECT * FROM drug_presentations WHERE cis = ? ORDER BY cip13", (cis,)
                )
            )
            conditions = tuple(
                r[0]
                for r in self.conn.execute(
                    "SELECT condition FROM drug_conditions WHERE cis = ?", (cis,)
                )
            )
            substances = tuple(
                f"{r[0]} {r[1]}".strip()
                for r in self.conn.execute(
                    "SELECT substance, dosage FROM drug_compositions"
                    " WHERE cis = ? AND nature = 'SA'",
                    (cis,),
                )
            )
        return Speciality(
            cis=cis,
            name=row["name"],
            form=row["form"] or "",
            routes=tuple(r for r in (row["routes"] or "").split(";") if r),
            amm_status=row["amm_status"] or "",
            marketed=bool(row["marketed"]),
            atc=atc[0] if atc else None,
            presentations=presentations,
            conditions=conditions,
            substances=substances,
        )


def _presentation(row: sqlite3.Row) -> Presentation:
    return Presentation(
        cip13=row["cip13"],
        cip7=row["cip7"],
        cis=row["cis"],
        label=row["label"] or "",
        marketing_state=row["marketing_state"] or "",
        reimbursement_rate=row["reimbursement_rate"],
        price_cents=row["price_cents"],
    )
