"""The ordonnance's pieces on their own: French wording, Code 128, the `mssgw ordonnance` CLI."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st
from ordonnance_samples import AUTHOR, prescription
from PIL import Image, ImageDraw

from gateway.cli import main
from gateway.documents.model import Frequency
from gateway.ordonnance import render_pdf
from gateway.ordonnance import wording as w
from gateway.ordonnance.code128 import code128_modules, code128_values
from gateway.prescriptions.identifier import group, new_identifier


@pytest.mark.parametrize(
    ("value", "text"),
    [(Decimal("0.5"), "0,5"), (Decimal("2.00"), "2"), (Decimal(10), "10"), (Decimal("1E+1"), "10"),
     (Decimal("1.25"), "1,25")],
)  # fmt: skip
def test_french_numbers(value: Decimal, text: str) -> None:
    assert w.number(value) == text


def test_frequency_and_plural_wording() -> None:
    assert w.frequency_text(Frequency(3)) == "3 fois par jour"
    assert w.frequency_text(Frequency(1, Decimal(8), "h")) == "toutes les 8 heures"
    assert w.frequency_text(Frequency(2, Decimal(2), "d")) == "2 fois tous les 2 jours"
    assert w.frequency_text(Frequency(1, Decimal(1), "wk")) == "1 fois par semaine"
    assert w.plural(Decimal("1.5"), "boîte") == "boîte"  # French: plural from 2
    assert w.plural(2, "boîte") == "boîtes"
    assert w.plural(3, "mois") == "mois"


def test_dates_and_ages() -> None:
    assert w.long_date(dt.date(2026, 3, 1)) == "1er mars 2026"
    assert w.long_date(dt.date(2026, 8, 15)) == "15 août 2026"
    assert w.add_months(dt.date(2026, 11, 30), 3) == dt.date(2027, 2, 28)
    assert w.age(dt.date(2025, 6, 2), dt.date(2026, 6, 1)) == "11 mois"
    assert w.age(dt.date(1979, 3, 12), dt.date(2026, 3, 12)) == "47 ans"


def test_clean_removes_controls_and_cuts_visibly() -> None:
    assert w.clean("a\x00b\u202ec\n d", multiline=False) == "a b c d"
    assert w.clean("a\n\n b", multiline=True) == "a\nb"
    cut = w.clean("x" * 5000)
    assert len(cut) == w.MAX_FIELD and cut.endswith("[…]")


def test_profession_and_specialty_in_words() -> None:
    assert w.profession_line(AUTHOR) == "Médecin — Médecine générale"
    assert w.prescriber_name(AUTHOR) == "Dr Hélène MARTIN"


def _draw(text: str) -> Image.Image:
    modules = code128_modules(text)
    scale, quiet = 3, 10
    width = (sum(n for _, n in modules) + 2 * quiet) * scale
    image = Image.new("L", (width, 60), 255)
    draw = ImageDraw.Draw(image)
    x = quiet * scale
    for dark, n in modules:
        if dark:
            draw.rectangle([x, 5, x + n * scale - 1, 55], fill=0)
        x += n * scale
    return image


@pytest.mark.parametrize("text", ["10101234567", "1010123456", "8", "RPPS 42-x", "00"])
def test_code128_decodes_back(text: str) -> None:
    [result] = zxingcpp.read_barcodes(_draw(text))
    assert str(result.format) == "Code 128" and result.text == text


def test_code128_uses_set_c_for_digits_and_refuses_non_ascii() -> None:
    assert code128_values("10101234567")[0] == 105  # start C: 7 symbols instead of 12
    with pytest.raises(ValueError):
        code128_values("é")


def test_cli_qr_writes_a_png_that_scans(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ident = new_identifier()
    out = tmp_path / "qr.png"
    assert main(["ordonnance", "qr", group(ident), "-o", str(out)]) == 0
    [result] = zxingcpp.read_barcodes(Image.open(io.BytesIO(out.read_bytes())))
    assert result.text == ident
    assert ident in capsys.readouterr().out


def test_cli_qr_refuses_a_bad_identifier_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "qr.png"
    assert main(["ordonnance", "qr", "01S2TBPZ2JCNZZYGHA", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "check character" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli_pdf_reports_a_missing_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o.pdf"
    assert main(["ordonnance", "pdf", str(tmp_path / "nope.xml"), "-o", str(out)]) == 1
    assert capsys.readouterr().err.startswith("mssgw: error: ")
    assert not out.exists()


def _cda(tmp_path: Path) -> tuple[Path, bytes, str]:
    """A prescription CDA as the gateway builds it, with the real ordonnance embedded."""
    from gateway.documents import samples
    from gateway.documents.build import assign_ids, build_prescription
    from gateway.ordonnance import qr_png

    p = assign_ids(samples.prescription())
    assert p.identifier
    pdf = render_pdf(p)
    path = tmp_path / "prescription.xml"
    path.write_bytes(build_prescription(p, pdf, qr_png(p.identifier)))
    return path, pdf, p.identifier


def test_cli_pdf_renders_a_cda_back_to_the_embedded_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc, embedded, ident = _cda(tmp_path)
    out = tmp_path / "ordonnance.pdf"
    assert main(["ordonnance", "pdf", str(doc), "-o", str(out)]) == 0
    assert ident in capsys.readouterr().out
    data = out.read_bytes()
    assert data == embedded  # parse -> render reproduces the copy inside the CDA, byte for byte
    page = pdfium.PdfDocument(data)[0]
    text = page.get_textpage().get_text_range()
    assert "PAT-TROIS" in text and "DOLIPRANE 1000 mg" in text and group(ident) in text
    results = zxingcpp.read_barcodes(page.render(scale=3).to_pil())
    assert [r.text for r in results if str(r.format) == "QR Code"] == [ident]


def test_cli_pdf_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    doc, embedded, ident = _cda(tmp_path)
    out = tmp_path / "o.pdf"
    assert main(["ordonnance", "pdf", str(doc), "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"output": str(out), "identifier": ident, "bytes": len(embedded)}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not xml at all", "mssgw: error: "),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>', "mssgw: error: "),
        (b"<ClinicalDocument xmlns='urn:hl7-org:v3'/>", "neither a prescription"),
    ],
)
def test_cli_pdf_refuses_what_is_not_a_prescription(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    doc = tmp_path / "doc.xml"
    doc.write_bytes(content)
    out = tmp_path / "o.pdf"
    assert main(["ordonnance", "pdf", str(doc), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not out.exists()


def test_cli_pdf_refuses_a_dispensation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.documents import samples
    from gateway.documents.build import build_dispensation

    doc = tmp_path / "disp.xml"
    doc.write_bytes(build_dispensation(samples.dispensation()))
    assert main(["ordonnance", "pdf", str(doc), "-o", str(tmp_path / "o.pdf")]) == 1
    assert "not a prescription" in capsys.readouterr().err


def test_cli_pdf_into_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc, _, _ = _cda(tmp_path)
    assert main(["ordonnance", "pdf", str(doc), "-o", str(tmp_path / "no" / "o.pdf")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_cda_with_the_real_ordonnance_and_qr_passes_schema_and_schematron(
    tmp_path: Path, cisis_kit: Any
) -> None:
    """The issue's promise: the PDF and QR image embedded, the CDA still passes every layer,
    and its serviceEvent carries the same identifier as the QR code."""
    from lxml import etree

    from gateway.documents.validate import validate_document
    from gateway.identifiers import OID_PRESCRIPTION_ID

    doc, _, ident = _cda(tmp_path)
    data = doc.read_bytes()
    # Every layer, the generic ones in the session's validator (compiled once for the suite).
    report = validate_document(data, kit=cisis_kit)
    assert report.ok, [str(p) for layer in report.layers for p in layer.problems]
    ns = {"c": "urn:hl7-org:v3"}
    ids = etree.fromstring(data).xpath(
        "/c:ClinicalDocument/c:documentationOf/c:serviceEvent/c:id", namespaces=ns
    )
    assert [(i.get("root"), i.get("extension")) for i in ids] == [(OID_PRESCRIPTION_ID, ident)]


@pytest.mark.parametrize(
    ("n", "text"),
    [(1, "un"), (17, "dix-sept"), (21, "vingt et un"), (28, "vingt-huit"),
     (71, "soixante et onze"), (80, "quatre-vingts"), (81, "quatre-vingt-un"),
     (99, "quatre-vingt-dix-neuf"), (200, "deux cents"), (201, "deux cent un"),
     (1000, "mille"), (80_000, "quatre-vingt mille"), (200_000, "deux cent mille")],
)  # fmt: skip
def test_numbers_in_letters(n: int, text: str) -> None:
    assert w.in_letters(n) == text


def test_secured_prescription_gives_quantities_in_letters() -> None:
    data = render_pdf(prescription(secured=True))
    text = " ".join(pdfium.PdfDocument(data)[0].get_textpage().get_text_range().split())
    assert "ORDONNANCE SÉCURISÉE — nombre de médicaments prescrits : 3 (trois)" in text
    assert "Pendant 90 (quatre-vingt-dix) jours — Quantité : 3 (trois) boîtes" in text
    assert "À renouveler 2 (deux) fois" in text
    assert "1 (un) comprimé, 3 (trois) fois par jour" in text
    assert "Quantité : 1 (une) boîte" in text  # the gender follows the noun
    assert "0,5 gélule" in text  # fractions stay in figures


def test_exception_drugs_are_announced() -> None:
    data = render_pdf(prescription(exception_drugs=True))
    text = pdfium.PdfDocument(data)[0].get_textpage().get_text_range()
    assert "PRESCRIPTION DE MÉDICAMENTS D'EXCEPTION" in text
    assert "SÉCURISÉE" not in text



def test_cli_qr_refuses_an_absurd_scale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "qr.png"
    assert main(["ordonnance", "qr", new_identifier(), "-o", str(out), "--scale", "100000"]) == 1
    assert "1 to 100 pixels" in capsys.readouterr().err and not out.exists()


def test_cli_pdf_to_stdout(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    doc, embedded, _ = _cda(tmp_path)
    assert main(["ordonnance", "pdf", str(doc), "-o", "-"]) == 0
    assert capsysbinary.readouterr().out == embedded
    assert main(["ordonnance", "pdf", str(doc), "-o", "-", "--json"]) == 1
    assert b"choose one" in capsysbinary.readouterr().err


def test_qr_symbol_is_segnos_for_every_identifier() -> None:
    """qrsymbol encodes version 1-M directly for speed: module for module the symbol segno
    makes (same data, error correction, mask choice and format information)."""
    import segno

    from gateway.ordonnance.qr import symbol

    for _ in range(300):
        ident = new_identifier()
        ref = segno.make_qr(ident, error="m", mode="alphanumeric", boost_error=False)
        assert [bytes(row) for row in ref.matrix] == list(symbol(ident)), ident
    masks = {segno.make_qr(new_identifier(), error="m", mode="alphanumeric",
                           boost_error=False).mask for _ in range(100)}
    assert len(masks) > 4  # the comparison went through several masks


def test_qr_png_pixels_are_the_symbol() -> None:
    from gateway.ordonnance.qr import qr_png, symbol

    ident = new_identifier()
    image = Image.open(io.BytesIO(qr_png(ident, scale=3, border=2))).convert("L")
    assert image.size == ((21 + 4) * 3,) * 2
    for r, row in enumerate(symbol(ident)):
        for c, dark in enumerate(row):
            assert image.getpixel(((c + 2) * 3 + 1, (r + 2) * 3 + 1)) == (0 if dark else 255)
    assert image.getpixel((0, 0)) == 255  # quiet zone
    assert [r.text for r in zxingcpp.read_barcodes(image)] == [ident]


def _unhinted_subset_matches(program: bytes, reference_path: Path, gids: set[int]) -> None:
    """`program` is a well-formed TrueType font holding exactly the outlines of `gids`, each as
    in the font at `reference_path` less its hinting instructions, with their metrics."""
    from fontTools.ttLib import TTFont
    from fontTools.ttLib.tables._g_l_y_f import WE_HAVE_INSTRUCTIONS

    font = TTFont(io.BytesIO(program), checkChecksums=2)  # a wrong table checksum raises
    words = program + b"\0" * (-len(program) % 4)
    total = sum(int.from_bytes(words[i:i + 4], "big") for i in range(0, len(words), 4))
    assert total & 0xFFFFFFFF == 0xB1B0AFBA  # head.checkSumAdjustment is right
    assert sorted(font.reader.keys()) == ["glyf", "head", "hhea", "hmtx", "loca", "maxp"]
    reference = TTFont(str(reference_path))
    order, ref_order = font.getGlyphOrder(), reference.getGlyphOrder()
    assert len(order) == len(ref_order)  # glyph ids are kept
    for field in ("numGlyphs", "maxPoints", "maxContours", "maxCompositePoints",
                  "maxCompositeContours", "maxComponentElements", "maxComponentDepth"):
        assert getattr(font["maxp"], field) == getattr(reference["maxp"], field), field
    assert font["maxp"].maxSizeOfInstructions == 0 and font["maxp"].maxFunctionDefs == 0
    assert font["hhea"].numberOfHMetrics == reference["hhea"].numberOfHMetrics
    loca = list(font["loca"])
    assert loca == sorted(loca) and loca[-1] == len(font.reader["glyf"])
    glyf, ref_glyf = font["glyf"], reference["glyf"]
    ref_index = {name: gid for gid, name in enumerate(ref_order)}
    for gid, name in enumerate(order):
        glyph, ref = glyf[name], ref_glyf[ref_order[gid]]
        if gid not in gids:
            assert loca[gid] == loca[gid + 1] and font["hmtx"][name] == (0, 0), gid
            continue
        assert font["hmtx"][name] == reference["hmtx"][ref_order[gid]], gid
        assert glyph.numberOfContours == ref.numberOfContours, gid
        if ref.isComposite():
            assert [(order.index(c.glyphName), c.x, c.y, c.flags) for c in glyph.components] \
                == [(ref_index[c.glyphName], c.x, c.y, c.flags & ~WE_HAVE_INSTRUCTIONS)
                    for c in ref.components], gid  # fmt: skip
            assert not hasattr(glyph, "program"), gid
        elif ref.numberOfContours:
            assert glyph.program.getBytecode() == b"", gid
            assert glyph.coordinates == ref.coordinates, gid
            assert glyph.flags == ref.flags and glyph.endPtsOfContours == ref.endPtsOfContours
            assert (glyph.xMin, glyph.yMin, glyph.xMax, glyph.yMax) == \
                (ref.xMin, ref.yMin, ref.xMax, ref.yMax), gid


def test_font_subset_of_every_glyph_is_the_font_without_hinting() -> None:
    """The subset the PDFs embed, taken with every glyph: each outline and advance is the
    original's, only the hinting is gone (tables and per-glyph instructions), the checksums
    and the short loca are right."""
    from fontTools.ttLib import TTFont

    from gateway.ordonnance.pdf import FONT_FILES
    from gateway.ordonnance.truetype import load

    path = FONT_FILES["B"]
    font = load(path)
    every = set(range(len(font.offsets) - 1))
    program = font.program(every)
    _unhinted_subset_matches(program, path, every)
    subset = TTFont(io.BytesIO(program))
    assert subset["head"].indexToLocFormat == 0  # short offsets
    assert len(subset.reader["glyf"]) < 0.8 * len(font.tables["glyf"])  # instructions gone


def test_font_subset_keeps_accent_components_and_falls_back_to_long_loca(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fontTools.ttLib import TTFont

    from gateway.ordonnance import truetype
    from gateway.ordonnance.pdf import FONT_FILES

    path = FONT_FILES[""]
    font = truetype.load(path)
    used = font.glyphs(set("Éléonore ŒUF ñ"))
    kept = font._with_components(used | {0})
    assert len(kept) > len(used) + 1  # the accents and base letters of the composites
    _unhinted_subset_matches(font.program(used), path, kept)
    # A glyf too big for 16-bit offsets gets the long format (not with these fonts' subsets).
    monkeypatch.setattr(truetype, "SHORT_LOCA_MAX", 0)
    program = font.program(used)
    assert TTFont(io.BytesIO(program))["head"].indexToLocFormat == 1
    _unhinted_subset_matches(program, path, kept)


def _clean_one_character_at_a_time(text: str, multiline: bool) -> str:
    """wording.clean as first written (before its translate table), without the length cut."""
    import re
    import unicodedata

    out = []
    for ch in unicodedata.normalize("NFC", text):
        if ch == "\n" and multiline:
            out.append("\n")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append(" ")
        else:
            out.append(ch)
    lines = [re.sub(r"\s+", " ", line).strip() for line in "".join(out).split("\n")]
    return "\n".join(line for line in lines if line)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(codec=None), max_size=60)
       | st.text(alphabet="a é\n\r\t\x00\u200b\u2028\u00a0\ufeff\U000e0001\ue000\x85", max_size=30),
       multiline=st.booleans())
def test_clean_is_the_character_by_character_definition(text: str, multiline: bool) -> None:
    assert w.clean(text, multiline=multiline) == _clean_one_character_at_a_time(text, multiline)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="abcdefghij WMil.,'é", max_size=200),
       width=st.floats(min_value=4, max_value=150))
def test_wrap_is_greedy_and_keeps_every_word(text: str, width: float) -> None:
    """Lines fit the width, keep the words in order, and each is as long as it can be: the
    next line's first word would not have fitted (word by word or, fitting, whole)."""
    from gateway.ordonnance.pdf import _Ordonnance

    p = prescription()
    pdf = _Ordonnance(p, p.identifier or "")
    pdf.set_font("", 9.5)
    lines = pdf.wrap(text, width)
    room = width - 2 * pdf.c_margin
    assert all(pdf.get_string_width(line) <= room + 1e-9 or len(line) == 1 for line in lines)
    if any(pdf.get_string_width(word) > room for word in text.split()):
        assert "".join("".join(lines).split()) == "".join(text.split())  # no letter lost
        return
    assert " ".join(lines).split() == text.split()
    for line, after in zip(lines, lines[1:]):
        assert pdf.get_string_width(f"{line} {after.split()[0]}") > room - 1e-9


_QR_PIECES = st.sampled_from(["1011101", "10111011101", "1011101011101", "0000", "00000",
                              "11111", "0", "1", "01", "10"])
_QR_ROW = st.one_of(
    st.lists(st.integers(0, 1), min_size=21, max_size=21).map(bytes),
    st.lists(_QR_PIECES, min_size=6, max_size=12).map(
        lambda pieces: bytes(int(b) for b in "".join(pieces).ljust(21, "0")[:21])),
)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(_QR_ROW, min_size=21, max_size=21), transpose=st.booleans())
def test_qr_mask_score_is_segnos(rows: list[bytes], transpose: bool) -> None:
    """The mask score, computed with bit operations on all lines at once, is segno's for any
    21x21 matrix, overlapping finder-like patterns (which segno's search skips) included."""
    from segno.encoder import mask_scores

    from gateway.ordonnance.qrsymbol import _penalty

    if transpose:  # the patterns in the columns
        rows = [bytes(row[c] for row in rows) for c in range(21)]
    assert _penalty(b"".join(rows)) == sum(mask_scores(rows, 21, 21))
