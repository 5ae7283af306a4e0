"""The BDPM import against the real files: every row, the encodings, the price quirk, look-ups."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.db import connect
from gateway.drugs import bdpm
from gateway.drugs.store import DrugReference, import_directory, open_reference
from gateway.errors import GatewayError


def _count_lines(path: Path) -> tuple[int, int]:
    """(non-empty lines, empty lines), counted independently of the importer."""
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    empty = sum(1 for line in lines if not line.strip())
    return len(lines) - empty, empty


@pytest.fixture(scope="module")
def imported(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[sqlite3.Connection, object]:
    conn = connect(tmp_path_factory.mktemp("drugs") / "gw.db")
    report = import_directory(conn, shared_dir / "bdpm")
    return conn, report


def test_every_row_of_every_file_is_loaded(imported: tuple, shared_dir: Path) -> None:
    conn, report = imported
    for name in bdpm.FILES:
        rows, empty = _count_lines(shared_dir / "bdpm" / name)
        assert report.counts[name] == rows, name
        blanks = [p for p in report.problems if p.file == name]
        assert len(blanks) == empty
    assert report.counts["CIS_bdpm.txt"] > 15000
    assert conn.execute("SELECT count(*) FROM drug_specialities").fetchone()[0] == \
        report.counts["CIS_bdpm.txt"]
    assert conn.execute("SELECT count(*) FROM drug_presentations").fetchone()[0] == \
        report.counts["CIS_CIP_bdpm.txt"]
    # The only lines not loaded are the empty lines of CIS_CPD, reported with file and line.
    assert {str(p) for p in report.problems} >= {"CIS_CPD_bdpm.txt:27055: empty line (skipped)"}


def test_encodings_are_detected_per_file(imported: tuple) -> None:
    _, report = imported
    assert report.encodings["CIS_bdpm.txt"] == "cp1252"
    assert report.encodings["CIS_GENER_bdpm.txt"] == "cp1252"
    assert report.encodings["CIS_CIP_bdpm.txt"] == "utf-8"
    ref = DrugReference(imported[0])
    spec = ref.by_cis("60234100")
    assert spec is not None and spec.name == "DOLIPRANE 1000 mg, comprimé"  # é from cp1252
    assert "PARACÉTAMOL 1000 mg" in spec.substances  # é from UTF-8


def test_price_quirk_thousands_separator(imported: tuple, shared_dir: Path) -> None:
    conn, _ = imported
    text = (shared_dir / "bdpm" / "CIS_CIP_bdpm.txt").read_text("utf-8")
    line = next(ln for ln in text.splitlines() if "\t1,466,29\t" in ln)
    cip = line.split("\t")[6]
    row = conn.execute("SELECT price_cents FROM drug_presentations WHERE cip13 = ?",
                       (cip,)).fetchone()
    assert row[0] == 146629
    assert bdpm.price_cents("24,34") == 2434
    assert bdpm.price_cents("7,518,58") == 751858
    assert bdpm.price_cents("") is None
    with pytest.raises(bdpm.BadRow):
        bdpm.price_cents("12;5")


def test_lookups_by_cis_cip13_cip7_and_name(imported: tuple) -> None:
    ref = DrugReference(imported[0])
    assert ref.lookup("60234100").cis == "60234100"
    found = ref.by_cip13("3400935955838")
    assert found is not None and found[0].cis == "60234100"
    assert ref.lookup("3595583").cis == "60234100"  # CIP7
    assert ref.lookup("99999999") is None
    names = [s.name for s in ref.search("dolipràne 1000 COMPRIME", limit=3)]
    assert names[0] == "DOLIPRANE 1000 mg, comprimé"
    assert all("DOLIPRANE" in n for n in names)
    assert ref.search("levothyr")[0].name.startswith("LEVOTHYROX")
    assert ref.search("zzzzqqq") == []


def test_unreadable_rows_are_reported_with_file_and_line(tmp_path: Path) -> None:
    src = tmp_path / "bdpm"
    src.mkdir()
    (src / "CIS_bdpm.txt").write_bytes(
        "60234100\tDOLIPRANE 1000 mg, comprimé\tcomprimé\torale\tAutorisation active\t"
        "Procédure nationale\tCommercialisée\t01/01/2000\t\t\t OPELLA\tNon\r\n"
        "1234\tCASSÉ\tcomprimé\torale\tAutorisation active\tx\tCommercialisée\t01/01/2000\t\t\t"
        "X\tNon\r\n".encode("cp1252"))
    (src / "CIS_CIP_bdpm.txt").write_text(
        "60234100\t3593583\tplaquette\tPrésentation active\tDéclaration\t01/01/2000\t"
        "3400935935839\toui\t65%\t1,16\t2,18\t1,02\t\n"
        "60234100\t3593583\tplaquette\tPrésentation active\tDéclaration\t01/01/2000\t"
        "3400935955838\toui\t65%\tbad\t2,18\t1,02\t\n", "utf-8")
    conn = connect(tmp_path / "gw.db")
    report = import_directory(conn, src)
    problems = [str(p) for p in report.problems]
    assert any(p.startswith("CIS_bdpm.txt:2: CIS '1234'") for p in problems), problems
    assert any(p.startswith("CIS_CIP_bdpm.txt:1: CIP13") and "check digit" in p
               for p in problems), problems
    assert any(p.startswith("CIS_CIP_bdpm.txt:2: price 'bad'") for p in problems), problems
    assert report.counts == {"CIS_bdpm.txt": 1, "CIS_CIP_bdpm.txt": 0}
    assert set(report.missing) == {"CIS_COMPO_bdpm.txt", "CIS_GENER_bdpm.txt",
                                   "CIS_CPD_bdpm.txt", "CIS_MITM.txt"}


def test_reimport_replaces_atomically(tmp_path: Path, shared_dir: Path) -> None:
    src = tmp_path / "small"
    src.mkdir()
    for name in ("CIS_bdpm.txt", "CIS_CIP_bdpm.txt"):
        lines = (shared_dir / "bdpm" / name).read_bytes().split(b"\n")[:50]
        (src / name).write_bytes(b"\n".join(lines) + b"\n")
    conn = connect(tmp_path / "gw.db")
    first = import_directory(conn, src)
    assert first.counts["CIS_bdpm.txt"] == 50
    # A failing import (missing required file) changes nothing.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "CIS_bdpm.txt").write_bytes((src / "CIS_bdpm.txt").read_bytes())
    with pytest.raises(GatewayError, match="CIS_CIP_bdpm.txt not found"):
        import_directory(conn, broken)
    assert conn.execute("SELECT count(*) FROM drug_specialities").fetchone()[0] == 50
    # A second import replaces, it does not add.
    (src / "CIS_bdpm.txt").write_bytes(b"\n".join(
        (shared_dir / "bdpm" / "CIS_bdpm.txt").read_bytes().split(b"\n")[:10]) + b"\n")
    second = import_directory(conn, src)
    assert second.counts["CIS_bdpm.txt"] == 10
    assert conn.execute("SELECT count(*) FROM drug_specialities").fetchone()[0] == 10
    assert conn.execute("SELECT count(*) FROM drug_names").fetchone()[0] == 10


def test_cli_import_search_show(gateway_home: Path, shared_dir: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(gateway_home / "config.toml")
    assert main(["drugs", "search", "doliprane", "--config", cfg]) == 1
    assert "drugs import" in capsys.readouterr().err
    assert main(["drugs", "import", str(shared_dir / "bdpm"), "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "CIS_bdpm.txt: 15848 rows (cp1252)" in out or "CIS_bdpm.txt:" in out
    assert "CIS_CPD_bdpm.txt:27055: empty line" in out
    assert main(["drugs", "search", "doliprane 1000", "--json", "--config", cfg]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["cis"] in {"60234100", "69309629"}
    assert main(["drugs", "show", "3400935955838", "--config", cfg]) == 0
    assert "DOLIPRANE 1000 mg, comprimé" in capsys.readouterr().out
    assert main(["drugs", "show", "12345678", "--config", cfg]) == 1
    assert "no speciality" in capsys.readouterr().err
    ref = open_reference(connect(gateway_home / "var" / "gateway.db"))
    assert ref.is_loaded()


def test_cli_import_if_empty_loads_once(gateway_home: Path, shared_dir: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(gateway_home / "config.toml")
    bdpm_dir = str(shared_dir / "bdpm")
    assert main(["drugs", "import", "--if-empty", bdpm_dir, "--config", cfg]) == 0
    assert "drug reference replaced" in capsys.readouterr().out
    assert main(["drugs", "import", "--if-empty", bdpm_dir, "--config", cfg]) == 0
    assert "already loaded: nothing to do" in capsys.readouterr().out
