"""The ordonnance PDF, read back the way a pharmacist's tools read it: pdfium renders the pages,
zxing-cpp scans the QR code and the RPPS barcode, pdfium extracts the text."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import subprocess
import zlib
from decimal import Decimal

import pypdfium2 as pdfium
import pytest
import zxingcpp
from conftest import require_tool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ordonnance_samples import AUTHOR, LINES, bizone_prescription, prescription

from gateway.documents.model import PrescriptionLine, Product, SubstitutionRefusal
from gateway.ordonnance import OrdonnanceError, qr_png, render_pdf
from gateway.prescriptions.identifier import group, new_identifier


def pages_text(data: bytes) -> list[str]:
    doc = pdfium.PdfDocument(data)
    return [page.get_textpage().get_text_range() for page in doc]


def scan(data: bytes, page: int = 0) -> dict[str, list[str]]:
    """Barcodes found on a page rendered at 216 dpi (a phone camera sees less; the QR's
    modules are over a millimetre, so this is not generous)."""
    image = pdfium.PdfDocument(data)[page].render(scale=3).to_pil()
    found: dict[str, list[str]] = {}
    for result in zxingcpp.read_barcodes(image):
        found.setdefault(str(result.format), []).append(result.text)
    return found


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_qr_code_carries_exactly_the_identifier() -> None:
    p = prescription(identifier=new_identifier())
    data = render_pdf(p)
    assert data.startswith(b"%PDF-1.7")
    codes = scan(data)
    assert codes["QR Code"] == [p.identifier]


def test_identifier_typed_with_spaces_is_normalised_in_the_qr_code() -> None:
    ident = new_identifier()
    data = render_pdf(prescription(identifier=group(ident).lower()))
    assert scan(data)["QR Code"] == [ident]


def test_rpps_barcode_decodes_to_the_rpps() -> None:
    assert scan(render_pdf(prescription()))["Code 128"] == [AUTHOR.rpps]


def test_text_has_prescriber_patient_drugs_identifier_and_mentions() -> None:
    p = prescription()
    [text] = pages_text(render_pdf(p))
    for expected in (
        "Dr Hélène MARTIN",
        "Médecin — Médecine générale",
        "N° RPPS 10101234567",
        "Cabinet médical de l'Église",
        "75002 Paris",
        "Tél. 01 23 45 67 89",
        "helene.martin@medecin.mssante.test",
        "Mme LEFÈVRE Françoise Cécile",
        "Sexe : Féminin",
        "Née le 12/03/1979 (47 ans)",
        "Le 22 novembre 2026",
        "AMOXICILLINE BIOGARAN 1 g, comprimé dispersible",
        "1 comprimé, 3 fois par jour, voie orale",
        "Pendant 7 jours — Quantité : 2 boîtes",
        "LÉVOTHYROX 75 microgrammes",
        "À renouveler 2 fois",
        "Non substituable (MTE)",
        "0,5 gélule",
        group(p.identifier),
        "avant le 22/02/2027",
        "Page 1/1",
    ):
        assert expected in flat(text), expected
    # Substitutable lines carry no mention: exactly one line is non substituable.
    assert flat(text).count("Non substituable") == 1


def test_accents_and_ligatures_survive_extraction() -> None:
    label = "Crème à l'œuf — ça ÉÈÀÇŒ ïôù"
    line = PrescriptionLine(product=Product(label=label), quantity=Decimal(1))
    [text] = pages_text(render_pdf(prescription(lines=(line,))))
    assert "Crème à l'œuf — ça ÉÈÀÇŒ ïôù" in text
    assert "œdème" in flat(pages_text(render_pdf(prescription()))[0])


def test_bizone_layout_puts_ald_lines_in_the_upper_zone() -> None:
    [text] = pages_text(render_pdf(bizone_prescription()))
    t = flat(text)
    upper = t.index("Prescriptions relatives au traitement de l'affection de longue durée reconnue")
    lower = t.index("Prescriptions SANS RAPPORT avec l'affection de longue durée")
    assert "(liste ou hors liste)" in t
    assert upper < t.index("METFORMINE") < t.index("INSULINE GLARGINE") < lower
    assert lower < t.index("PARACÉTAMOL")
    assert "Non substituable (CIF)" in t


def test_no_ald_zones_without_ald() -> None:
    [text] = pages_text(render_pdf(prescription()))
    assert "affection de longue durée" not in flat(text)


def test_ald_line_without_the_flag_still_gets_the_bizone_layout() -> None:
    lines = (dataclasses.replace(LINES[0], ald=True), LINES[1])
    t = flat(pages_text(render_pdf(prescription(lines=lines)))[0])
    assert t.index("AMOXICILLINE") < t.index("SANS RAPPORT") < t.index("LÉVOTHYROX")


def test_many_lines_spill_to_more_pages_each_with_qr_and_page_numbers() -> None:
    many = tuple(
        dataclasses.replace(LINES[i % 3], product=Product(label=f"MÉDICAMENT N° {i + 1}"))
        for i in range(14)
    )
    p = prescription(lines=many)
    data = render_pdf(p)
    texts = [flat(t) for t in pages_text(data)]
    n = len(texts)
    assert n >= 2
    for i, text in enumerate(texts, start=1):
        assert f"Page {i}/{n}" in text
        assert "Mme LEFÈVRE Françoise Cécile" in text  # every page names the patient
    assert scan(data, n - 1)["QR Code"] == [p.identifier]
    labels = re.findall(r"MÉDICAMENT N° (\d+)", " ".join(texts))
    assert labels == [str(i + 1) for i in range(14)]  # every line, once, in order
    # a medicine is never split across pages: its label and its quantity are on the same page
    for text in texts:
        assert text.count("MÉDICAMENT N°") == text.count("Quantité")


def test_hostile_text_does_not_break_the_renderer() -> None:
    nasty = (
        "A" * 5000,
        "x\x00y\x07z\x1b[31m\u202ered\u200b\ufeff\ud800",
        "🙂 漢字 עברית العربية",
        "(" * 300 + ")" * 300 + "\\) Tj ET",
        "",
    )
    lines = tuple(
        PrescriptionLine(product=Product(label=label), dosage_text=label * 2, quantity_unit=label)
        for label in nasty
    )
    lines += (
        PrescriptionLine(product=Product(label="NaN"), quantity=Decimal("NaN"), renewals=10**9),
        PrescriptionLine(product=Product(label="Inf"), quantity=Decimal("-Infinity")),
    )
    p = prescription(lines=lines, notes="\x00" * 50 + "fin", secured=True)
    author = dataclasses.replace(
        p.author, family_name="B" * 3000, email="\n\r\t@", national_id="8١٢٣٤٥٦٧٨٩٠١"
    )  # Arabic-Indic digits are str.isdigit() but no barcode can carry them
    data = render_pdf(dataclasses.replace(p, author=author))
    texts = pages_text(data)
    whole = flat(" ".join(texts))
    assert "xyz" not in whole and "x y z" in whole  # control characters became spaces
    assert "[…]" in whole  # over-long fields are visibly cut
    assert "\ufffd \ufffd\ufffd" in whole  # letters the font lacks show, never vanish
    assert len(texts) <= 12
    assert scan(data)["QR Code"] == [p.identifier]


@pytest.mark.parametrize("bad", [None, "", "01S2TBPZ2JCNZZYGHA", "TOO-SHORT"])
def test_missing_or_malformed_identifier_is_refused(bad: str | None) -> None:
    with pytest.raises(OrdonnanceError, match="identifier"):
        render_pdf(prescription(identifier=bad))
    if bad is not None:
        with pytest.raises(OrdonnanceError):
            qr_png(bad)


def test_same_prescription_same_bytes() -> None:
    p = prescription()
    assert render_pdf(p) == render_pdf(p)
    assert render_pdf(p) != render_pdf(dataclasses.replace(p, identifier=new_identifier()))


def test_qr_png_scans_back() -> None:
    from PIL import Image

    ident = new_identifier()
    data = qr_png(ident)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    assert image.size == (232, 232)
    [result] = zxingcpp.read_barcodes(image)
    assert result.text == ident


def _objects(data: bytes) -> bytes:
    """The PDF's object dictionaries plus inflated streams (written without object streams)."""
    parts = [data]
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        with contextlib.suppress(zlib.error):  # only the Flate streams matter here
            parts.append(zlib.decompress(m.group(1)))
    return b"\n".join(parts)


def test_pdfa_2b_markers_fonts_embedded_and_output_intent() -> None:
    data = render_pdf(bizone_prescription())
    # PDF/A-2: header then a comment of 4 bytes >= 128 (binary file marker); metadata unfiltered
    assert re.match(rb"%PDF-1\.7\n%[\x80-\xff]{4}\n", data)
    assert re.search(rb"/Subtype /XML\n/Type /Metadata\n>>\nstream\n<\?xpacket", data)
    assert b"/ID [<" in data and b"/Lang (fr-FR)" in data
    body = _objects(data)
    assert b"<pdfaid:part>2</pdfaid:part>" in body
    assert b"<pdfaid:conformance>B</pdfaid:conformance>" in body
    assert b"<xmp:CreateDate>2026-11-22T09:30:00+01:00</xmp:CreateDate>" in body
    assert b"/S /GTS_PDFA1" in body and b"/DestOutputProfile" in body
    fonts = set(re.findall(rb"/BaseFont /[A-Z]{6}\+([\w-]+)", body))
    assert fonts == {b"DejaVuSans", b"DejaVuSans-Bold"}  # their PostScript names
    assert body.count(b"/FontFile2") == len(fonts)  # every font embedded (as a subset)
    assert not re.search(rb"/BaseFont /(Helvetica|Times|Courier)", body)  # no base-14 font
    assert b"/Encrypt" not in body


def test_qpdf_finds_no_structural_problem(tmp_path) -> None:
    qpdf = require_tool("qpdf")
    path = tmp_path / "o.pdf"
    path.write_bytes(render_pdf(bizone_prescription()))
    out = subprocess.run([qpdf, "--check", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No syntax or stream encoding errors found" in out.stdout


def test_non_substituable_without_reason_still_says_so() -> None:
    line = dataclasses.replace(LINES[0], substitutable=False, substitution_refusal=None)
    t = flat(pages_text(render_pdf(prescription(lines=(line,))))[0])
    assert "Non substituable" in t and "Non substituable (" not in t
    line = dataclasses.replace(LINES[0], substitutable=False,
                               substitution_refusal=SubstitutionRefusal.EFG)
    assert "Non substituable (EFG)" in flat(pages_text(render_pdf(prescription(lines=(line,))))[0])


def test_bizone_zone_heading_repeats_on_the_next_page() -> None:
    base = bizone_prescription()
    ald = tuple(
        dataclasses.replace(base.lines[0], product=Product(label=f"ALD N° {i + 1}"))
        for i in range(12)
    )
    p = dataclasses.replace(base, lines=ald + (base.lines[2],))
    texts = [flat(t) for t in pages_text(render_pdf(p))]
    assert len(texts) >= 2
    assert "(AFFECTION EXONÉRANTE) (suite)" in texts[1]
    assert "(suite)" not in texts[0]
    last = texts[-1]
    assert last.index("SANS RAPPORT") < last.index("PARACÉTAMOL")
    assert "MALADIES INTERCURRENTES) (suite)" not in " ".join(texts)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    label=st.text(max_size=300),
    dosage=st.text(max_size=300),
    name=st.text(max_size=80),
    quantity=st.decimals(allow_nan=True, allow_infinity=True),
    renewals=st.integers(min_value=0, max_value=10**7),
)
def test_any_text_renders_and_scans(
    label: str, dosage: str, name: str, quantity: Decimal, renewals: int
) -> None:
    line = PrescriptionLine(
        product=Product(label=label), dosage_text=dosage, quantity=quantity, renewals=renewals
    )
    p = prescription(lines=(line,), secured=True)
    p = dataclasses.replace(p, patient=dataclasses.replace(p.patient, birth_name=name))
    data = render_pdf(p)
    assert pdfium.PdfDocument(data)[0].get_textpage().get_text_range()


def test_renders_in_a_fresh_worker_process_to_the_same_bytes() -> None:
    """The servers render in a process pool: nothing may depend on state built in the parent,
    and a worker must produce exactly the parent's bytes (the copy in the CDA is compared)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    p = bizone_prescription()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(render_pdf, p).result(timeout=120) == render_pdf(p)


def test_identifier_prints_on_one_line_even_with_wide_letters() -> None:
    from gateway.prescriptions.identifier import check_character

    ident = "WMWMWMWMWMWMWMWMW"
    ident += check_character(ident)
    text = pages_text(render_pdf(prescription(identifier=ident)))[0]
    assert group(ident) in text.splitlines()


def test_embedded_fonts_carry_the_outlines_of_every_letter_printed() -> None:
    """The fonts are cut down per document: an accented letter is built from other glyphs
    (base letter + accent), and a subset that kept the letter but not its parts would print
    "é" as nothing while text extraction still read it. Read the embedded programs back with
    fontTools and check every printed glyph, and its components, has an outline."""
    from fontTools.ttLib import TTFont

    text = "Hélène Françoise œdème ÉÈÀÙ ÿ ñ µg 5 €"
    p = dataclasses.replace(prescription(), notes=text)
    data = render_pdf(p)
    assert text in flat(pages_text(data)[0])
    programs = [
        zlib.decompress(m.group(1))
        for m in re.finditer(rb"/Length1 \d+\n/Filter /FlateDecode\n>>\nstream\n(.*?)\nendstream",
                             data, re.S)
    ]
    assert len(programs) == 2
    font = TTFont(io.BytesIO(programs[0]))  # the regular face (objects in style order)
    reference = TTFont("gateway/ordonnance/fonts/DejaVuSans.ttf")
    order = font.getGlyphOrder()
    assert len(order) == len(reference.getGlyphOrder())  # glyph ids are kept
    index = {name: gid for gid, name in enumerate(order)}
    glyf = font["glyf"]

    def outline(gid: int) -> bool:
        glyph = glyf[order[gid]]
        if glyph.isComposite():
            return all(outline(index[c.glyphName]) for c in glyph.components)
        return glyph.numberOfContours > 0

    gid_of = {name: gid for gid, name in enumerate(reference.getGlyphOrder())}
    cmap = reference.getBestCmap()
    for ch in set(text) - {" "}:
        assert outline(gid_of[cmap[ord(ch)]]), f"no outline for {ch!r}"
    assert not outline(gid_of[cmap[ord("Ω")]])  # what is not printed is not embedded


def test_poppler_reads_the_unhinted_fonts_and_the_codes(tmp_path) -> None:
    """A second reader beside pdfium (Evince, Okular and most Linux tools use poppler): the
    embedded subsets, without hinting, must render and extract the same with it."""
    pdftoppm, pdftotext = require_tool("pdftoppm"), require_tool("pdftotext")
    from PIL import Image

    text = "Hélène Françoise œdème ÉÈÀÙ ÿ ñ µg 5 €"
    p = dataclasses.replace(prescription(), notes=text)
    path = tmp_path / "o.pdf"
    path.write_bytes(render_pdf(p))
    out = subprocess.run([pdftotext, "-enc", "UTF-8", str(path), "-"], capture_output=True,
                         text=True, check=True)
    assert text in flat(out.stdout) and "Dr Hélène MARTIN" in out.stdout
    assert not out.stderr  # poppler complains about a font it cannot read
    shown = subprocess.run([pdftoppm, "-r", "216", "-png", "-singlefile", str(path),
                            str(tmp_path / "page")], capture_output=True, text=True, check=True)
    assert not shown.stderr
    image = Image.open(tmp_path / "page.png")
    found = {str(r.format): r.text for r in zxingcpp.read_barcodes(image)}
    assert found["QR Code"] == p.identifier and found["Code 128"] == AUTHOR.rpps


def test_qr_code_drawn_is_the_symbol_module_for_module() -> None:
    """The QR code is drawn as one path of rectangles in module units: every module of the
    printed code, sampled at its centre on a 288 dpi rendering, is the symbol's (zxing alone
    would read through a few wrong modules: error correction)."""
    from gateway.ordonnance.qr import symbol

    p = prescription(identifier=new_identifier())
    image = pdfium.PdfDocument(render_pdf(p))[0].render(scale=4).to_pil().convert("L")
    [qr] = [r for r in zxingcpp.read_barcodes(image)
            if r.format == zxingcpp.BarcodeFormat.QRCode]
    corner = qr.position.top_left
    module = (qr.position.top_right.x - corner.x + 1) / 21  # zxing gives the corner pixels
    assert module == pytest.approx(QR_MODULE_PX, rel=0.02)
    printed = [bytes(int(image.getpixel((int(corner.x + (c + 0.5) * module),
                                         int(corner.y + (r + 0.5) * module))) < 128)
                     for c in range(21)) for r in range(21)]
    assert printed == [bytes(row) for row in symbol(p.identifier or "")]


QR_MODULE_PX = 30 / 29 * 4 * 72 / 25.4  # 30 mm for 21 modules and the quiet zone, at 288 dpi
