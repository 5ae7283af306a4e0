"""The paper ordonnance: one A4 page per screenful of lines, laid out as art. R5132-3 asks.

Every page is self-contained (prescriber, QR code and identifier, patient, date, page "n/N"),
because pharmacists scan whichever page they are handed. Bizone (ALD) prescriptions get the two
zones of the national form. The output is PDF/A-2B (fonts embedded, sRGB output intent, XMP
metadata) and deterministic: the same prescription gives the same bytes (dates come from the
prescription, never from the clock), so a re-render can be compared with the copy in the CDA.

`render_pdf` is pure and synchronous: the servers call it in a process pool. The drawing is done
on `canvas` (fonts from `truetype`) and the file written by `pdfa`.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway import __version__
from gateway.documents.model import Prescription, PrescriptionLine
from gateway.ordonnance import pdfa
from gateway.ordonnance import wording as w
from gateway.ordonnance.canvas import Align, Canvas, NextX, NextY
from gateway.ordonnance.code128 import code128_modules
from gateway.ordonnance.qr import checked_identifier, symbol
from gateway.ordonnance.truetype import CACHED_TEXT
from gateway.prescriptions.identifier import group

FONT_DIR = Path(__file__).resolve().parent / "fonts"
PARIS = ZoneInfo("Europe/Paris")

# Page geometry (mm). A4 with 15 mm margins; the footer keeps 30 mm for the legal mention.
MARGIN = 15.0
FOOTER_H = 30.0
QR_SIZE = 30.0  # 21 modules + quiet zone: ~1.1 mm per module, easy for any scanner
QR_BOX_W = 54.0
GREY = (90, 90, 90)
BLACK = (0, 0, 0)

ALD_HEADING = (
    "Prescriptions relatives au traitement de l'affection de longue durée reconnue "
    "(liste ou hors liste)"
)
ALD_SUB = "(AFFECTION EXONÉRANTE)"
NON_ALD_HEADING = "Prescriptions SANS RAPPORT avec l'affection de longue durée"
NON_ALD_SUB = "(MALADIES INTERCURRENTES)"
DARK_RUN = re.compile(b"\x01+")  # dark modules side by side in a row of the QR symbol


FONT_FILES = {"": FONT_DIR / "DejaVuSans.ttf", "B": FONT_DIR / "DejaVuSans-Bold.ttf"}


def _aware(when: dt.datetime) -> dt.datetime:
    """A naive time is UTC, as the CDA builder writes it (never the renderer's time zone)."""
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when


@dataclass(frozen=True)
class Notice:
    """What the drug database's delivery conditions add to what the patient reads (computed
    from the drug reference by `prescriptions.checks.patient_notice`; the renderer stays pure):
    the stupéfiants' three days (art. R5132-33) and the fractionated deliveries."""

    narcotic_lines: tuple[int, ...] = ()  # the lines (numbers) of stupéfiants
    narcotic_days: int = 3  # delivered in full if presented within so many days of the date
    narcotic_treatment_days: int | None = None  # nothing of them is delivered after it
    only_narcotics: bool = False  # every line is a stupéfiant: the 3 months do not apply
    fractions: tuple[tuple[int, int], ...] = ()  # (line number, days of a fraction)

    def fraction_days(self, number: int) -> int | None:
        return next((days for n, days in self.fractions if n == number), None)


def legal_mention(identifier: str, valid_until: dt.date, notice: Notice | None = None,
                  day: dt.date | None = None) -> str:
    """The notice at the foot of every page. `day`: the ordonnance's date (as printed), from
    which a stupéfiant's three days count."""
    when = (f"À présenter en pharmacie avant le {w.short_date(valid_until)} pour une première "
            "délivrance (3 mois). ")
    if notice is not None and notice.narcotic_lines and day is not None:
        lines = ", ".join(str(n) for n in notice.narcotic_lines)
        until = day + dt.timedelta(days=notice.narcotic_days)
        end = (day + dt.timedelta(days=notice.narcotic_treatment_days)
               if notice.narcotic_treatment_days else None)
        narcotic = (f"au plus tard le {w.short_date(until)} pour être délivrée en entier"
                    f" (stupéfiants, {notice.narcotic_days} jours : art. R5132-33 du code de la"
                    " santé publique) ; après, seulement pour le traitement restant à courir"
                    + (f", jusqu'au {w.short_date(end)}" if end else ""))
        which = "ligne" if len(notice.narcotic_lines) == 1 else "lignes"
        when = (f"À présenter en pharmacie {narcotic}. " if notice.only_narcotics else
                f"À présenter en pharmacie : {which} {lines}, {narcotic} ; les autres avant le"
                f" {w.short_date(valid_until)} (3 mois). ")
    return (
        f"Ordonnance numérique n° {group(identifier)}, enregistrée électroniquement. "
        "Le pharmacien scanne le QR code ou saisit cet identifiant pour la vérifier et "
        "retrouver vos médicaments ; seule la version enregistrée fait foi, une copie modifiée "
        "ne sera pas délivrée. "
        + when +
        "Conservez-la pour les renouvellements. Ce document contient des "
        "données de santé personnelles : ne le transmettez qu'à votre pharmacien ou à un "
        "professionnel de santé."
    )


class _Ordonnance(Canvas):
    """A canvas with this ordonnance's header and footer on every page."""

    def __init__(self, p: Prescription, identifier: str, notice: Notice | None = None) -> None:
        super().__init__(FONT_FILES)
        self.p = p
        self.notice = notice
        self.identifier = identifier
        self.when = _aware(p.date)
        self.day = self.when.astimezone(PARIS).date()  # the date a French patient reads
        self.valid_until = p.validity_end or w.add_months(self.day, 3)
        self.qr = symbol(identifier)  # rows of 0/1 bytes
        self.current_zone: tuple[str, str] | None = None  # bizone: the zone being written
        self.set_margins(MARGIN, MARGIN, MARGIN)
        # A stupéfiant's three days take two more lines of the patient's notice.
        self.footer_h = FOOTER_H + (6.4 if notice is not None and notice.narcotic_lines else 0)
        self.set_auto_page_break(True, margin=self.footer_h + 4)
        self.doc_title = f"Ordonnance numérique {identifier}"
        self.author = w.prescriber_name(p.author)
        self.creator = self.producer = f"mssgw {__version__}"

    # -- metadata --------------------------------------------------------------------------

    def xmp(self) -> str:
        """PDF/A identification and document info; dates from the prescription (determinism)."""

        def e(text: str) -> str:
            return html.escape(text, quote=True)

        stamp = self.when.isoformat(timespec="seconds")
        return (
            '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
            ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
            '  <rdf:Description rdf:about=""\n'
            '    xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/"\n'
            '    xmlns:dc="http://purl.org/dc/elements/1.1/"\n'
            '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
            '    xmlns:pdf="http://ns.adobe.com/pdf/1.3/">\n'
            "   <pdfaid:part>2</pdfaid:part>\n"
            "   <pdfaid:conformance>B</pdfaid:conformance>\n"
            f'   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">{e(self.doc_title)}'
            "</rdf:li></rdf:Alt></dc:title>\n"
            f"   <dc:creator><rdf:Seq><rdf:li>{e(str(self.author))}</rdf:li></rdf:Seq>"
            "</dc:creator>\n"
            "   <dc:language><rdf:Bag><rdf:li>fr-FR</rdf:li></rdf:Bag></dc:language>\n"
            f"   <xmp:CreateDate>{stamp}</xmp:CreateDate>\n"
            f"   <xmp:ModifyDate>{stamp}</xmp:ModifyDate>\n"
            f"   <xmp:MetadataDate>{stamp}</xmp:MetadataDate>\n"
            f"   <xmp:CreatorTool>{e(self.creator)}</xmp:CreatorTool>\n"
            f"   <pdf:Producer>{e(self.producer)}</pdf:Producer>\n"
            "  </rdf:Description>\n"
            " </rdf:RDF>\n"
            "</x:xmpmeta>"
        )

    # -- small drawing helpers ---------------------------------------------------------------

    def text_block(
        self, text: str, size: float, style: str = "", *, w: float = 0, h: float | None = None,
        align: str = "L", color: tuple[int, int, int] = BLACK,
    ) -> None:  # fmt: skip
        """Text wrapped to `w` (0: to the right margin); the cursor ends at the next line.
        A character the fonts lack prints as U+FFFD (a visible "?" in a diamond) instead of
        vanishing: a name or a drug must never lose a letter silently."""
        self.set_font(style, size)
        self.set_text_color(*color)
        height = h or size * 0.45
        for line in self.wrap(text, w):
            self.cell(w, height, line, Align(align), NextX.LEFT, NextY.NEXT)
        self.set_text_color(*BLACK)

    def block_height(self, text: str, size: float, style: str = "", w: float = 0) -> float:
        self.set_font(style, size)
        return len(self.wrap(text, w)) * size * 0.45

    def wrap(self, text: str, w: float = 0) -> list[str]:
        """Greedy word wrap for the current font, breaking words longer than a line.

        Each word is measured once (widths add up: no kerning is applied); a paragraph that
        fits whole is measured whole (0.1 ms of a render went to measuring word by word the
        short lines that make most of an ordonnance)."""
        width = (w or (self.w - self.r_margin - self.x)) - 2 * self.c_margin
        space = self.get_string_width(" ")
        lines: list[str] = []
        for paragraph in text.split("\n"):
            line = " ".join(paragraph.split())
            # Most paragraphs are short and fit: one measure, usually from the width cache. A
            # long one (the legal mention) hardly fits, and would be measured letter by letter.
            if len(line) <= CACHED_TEXT and self.get_string_width(line) <= width:
                lines.append(line)
                continue
            words: list[str] = []
            used = 0.0
            for word in paragraph.split():
                size = self.get_string_width(word)
                while size > width:  # a word longer than the line: cut it where it overflows
                    if words:
                        lines.append(" ".join(words))
                        words, used = [], 0.0
                    cut, acc = 1, self.get_string_width(word[0])
                    while cut < len(word) and acc + self.get_string_width(word[cut]) <= width:
                        acc += self.get_string_width(word[cut])
                        cut += 1
                    lines.append(word[:cut])
                    word = word[cut:]
                    size = self.get_string_width(word)
                if not word:  # cut to the end: nothing left to start the next line with
                    continue
                if words and used + space + size > width:
                    lines.append(" ".join(words))
                    words, used = [], 0.0
                used = size if not words else used + space + size
                words.append(word)
            if words:
                lines.append(" ".join(words))
        return [line for line in lines if line] or [""]

    def draw_qr(self, x: float, y: float, size: float) -> None:
        """The QR symbol as filled rectangles: crisp at any zoom, no image to embed.
        Horizontal runs of dark modules become one rectangle, all in one path."""
        n = len(self.qr)
        quiet = 4
        module = size / (n + 2 * quiet)
        self.set_fill_color(255, 255, 255)
        self.rect(x, y, size, size)
        self.set_fill_color(*BLACK)
        self.fill_grid(x + quiet * module, y + quiet * module, module, module, (
            (run.start(), r, run.end() - run.start(), 1)
            for r, row in enumerate(self.qr) for run in DARK_RUN.finditer(row)))

    def draw_code128(self, text: str, x: float, y: float, height: float, module: float) -> float:
        """A Code 128 barcode (bars as rectangles); returns its width."""
        bars, pos = [], 0
        for dark, width in code128_modules(text):
            if dark:
                bars.append((pos, 0, width, 1))
            pos += width
        self.set_fill_color(*BLACK)
        self.fill_grid(x, y, module, height, bars)
        return pos * module

    # -- page furniture ------------------------------------------------------------------------

    def header(self) -> None:
        p, a = self.p, self.p.author
        top = MARGIN - 3
        left_w = self.w - 2 * MARGIN - QR_BOX_W - 5
        self.set_xy(MARGIN, top)
        self.text_block(w.prescriber_name(a), 13, "B", w=left_w, h=6)
        self.text_block(w.profession_line(a), 9.5, w=left_w)
        if a.rpps:
            self.text_block(f"N° RPPS {w.clean(a.rpps, limit=20)}", 9, w=left_w)
            if re.fullmatch(r"[0-9]{11}", a.rpps):  # only a real RPPS gets a barcode
                self.draw_code128(a.rpps, self.x, self.y + 0.5, 7, 0.25)
                self.set_y(self.y + 8.5)
        s = a.structure
        if s:
            self.text_block(w.clean(s.name, limit=300), 9.5, "B", w=left_w)
            if s.address:
                self.text_block(w.clean(s.address, multiline=True, limit=400), 9, w=left_w)
            ident = w.structure_id_line(s)
            if ident:
                self.text_block(ident, 8, w=left_w, color=GREY)
        phone = a.phone or (s.phone if s else None)
        contact = []
        if phone:
            contact.append(f"Tél. {w.clean(phone, limit=40)}")
        if a.email:
            contact.append(w.clean(a.email, limit=200))
        if contact:
            self.text_block(" — ".join(contact), 9, w=left_w)
        left_end = self.y

        # QR code box, top right.
        qx = self.w - MARGIN - QR_BOX_W
        self.set_xy(qx, top)
        self.text_block("Ordonnance numérique", 8, "B", w=QR_BOX_W, align="C")
        self.draw_qr(qx + (QR_BOX_W - QR_SIZE) / 2, self.y, QR_SIZE)
        self.set_xy(qx, self.y + QR_SIZE)
        grouped = group(self.identifier)
        size = 10.0
        self.set_font("B", size)
        while self.get_string_width(grouped) > QR_BOX_W - 2 * self.c_margin:  # one line, always
            size -= 0.5
            self.set_font("B", size)
        self.text_block(grouped, size, "B", w=QR_BOX_W, align="C", h=5)
        right_end = self.y

        y = max(left_end, right_end) + 2
        self.set_draw_color(*BLACK)
        self.set_line_width(0.3)
        self.line(MARGIN, y, self.w - MARGIN, y)

        # Patient and date.
        self.set_xy(MARGIN, y + 2.5)
        pat = p.patient
        date_w = 60
        self.set_font("", 10)
        self.cell(0, 5, f"Le {w.long_date(self.day)}", Align.RIGHT, NextX.LMARGIN, NextY.TOP)
        self.text_block(w.patient_name(pat), 11, "B", w=self.epw - date_w, h=5.5)
        born = f"{w.born_word(pat.sex)} le {w.short_date(pat.birth_date)}"
        old = w.age(pat.birth_date, self.day)
        self.text_block(
            f"Sexe : {w.sex_word(pat.sex)} — {born}" + (f" ({old})" if old else ""), 9.5
        )
        y = self.y + 2
        self.set_line_width(0.2)
        self.line(MARGIN, y, self.w - MARGIN, y)
        self.set_xy(MARGIN, y + 4)
        if self.current_zone is not None:
            self.zone_heading(continued=True)

    def footer(self) -> None:
        y = self.h - self.footer_h
        self.set_draw_color(*BLACK)
        self.set_line_width(0.2)
        self.line(MARGIN, y, self.w - MARGIN, y)
        self.set_xy(MARGIN, y + 1.5)
        self.text_block(legal_mention(self.identifier, self.valid_until, self.notice,
                                      self.day), 7.2, "", h=3.2, color=GREY)  # fmt: skip
        self.set_xy(MARGIN, self.h - MARGIN + 2)
        self.set_font("", 8)
        self.set_text_color(*GREY)
        self.cell(0, 4, f"N° {self.identifier}", Align.LEFT, NextX.LMARGIN, NextY.TOP)
        self.cell(0, 4, f"Page {self.page_no()}/{len(self.pages)}", Align.RIGHT)
        self.set_text_color(*BLACK)

    # -- body ----------------------------------------------------------------------------------

    def zone(self, title: str, sub: str) -> None:
        """Start a bizone zone: its heading here, and again "(suite)" atop each page it runs
        onto, so a pharmacist always knows which zone a line on page 2 belongs to."""
        self.current_zone = None  # a page break below must not repeat the previous zone
        height = self.block_height(f"{title} {sub}", 8.5, "B", w=self.epw - 4) + 3
        if self.will_page_break(height + 20):  # never a heading alone at the foot of a page
            self.add_page()
        self.current_zone = (title, sub)
        self.zone_heading(continued=False)

    def zone_heading(self, *, continued: bool) -> None:
        assert self.current_zone is not None
        title, sub = self.current_zone
        text = f"{title} {sub}" + (" (suite)" if continued else "")
        height = self.block_height(text, 8.5, "B", w=self.epw - 4) + 3
        y = self.y
        self.set_fill_color(235, 235, 235)
        self.rect(MARGIN, y, self.epw, height)
        self.set_xy(MARGIN + 2, y + 1.5)
        self.text_block(text, 8.5, "B", w=self.epw - 4, align="C")
        self.set_xy(MARGIN, y + height + 3)

    def prescription_line(self, number: int, line: PrescriptionLine) -> None:
        indent = 9
        body_w = self.epw - indent
        label = w.clean(line.product.label) or "(médicament sans libellé)"
        pieces: list[tuple[str, float, str, tuple[int, int, int]]] = [
            (label, 10.5, "B", BLACK)
        ]
        codes = w.product_codes(line)
        if codes:
            pieces.append((codes, 7.5, "", GREY))
        letters = self.p.secured
        for sentence in w.dosage_lines(line, letters):
            pieces.append((sentence, 9.5, "", BLACK))
        supply = w.supply_text(line, letters)
        fraction = self.notice.fraction_days(number) if self.notice else None
        if fraction:
            days = w.spelled(fraction, letters)
            supply = (f"{supply} — " if supply else "") + \
                f"Délivrance fractionnée par périodes de {days} jours"
        if supply:
            pieces.append((supply, 9.5, "", BLACK))
        subst = w.substitution_text(line)
        if subst:
            pieces.append((subst, 9.5, "B", BLACK))
        height = sum(self.block_height(t, s, st, w=body_w) for t, s, st, _ in pieces)
        # Keep a medicine on one page unless it alone is longer than a page.
        if self.will_page_break(height) and height < self.h - 140:
            self.add_page()
        self.set_font("B", 10.5)
        self.cell(indent, 10.5 * 0.45, f"{number}.", Align.LEFT, NextX.RIGHT, NextY.TOP)
        for text, size, style, color in pieces:
            self.set_x(MARGIN + indent)
            self.text_block(text, size, style, w=body_w, color=color)
        self.set_y(self.y + 3.5)

    def kind_banner(self) -> None:
        """What kind of ordonnance this is, when it is not an ordinary one."""
        if self.p.secured:
            count = w.spelled(len(self.p.lines), True)
            self.text_block(
                f"ORDONNANCE SÉCURISÉE — nombre de médicaments prescrits : {count}", 10, "B"
            )
        if self.p.exception_drugs:
            self.text_block("PRESCRIPTION DE MÉDICAMENTS D'EXCEPTION", 10, "B")
        if self.p.secured or self.p.exception_drugs:
            self.set_y(self.y + 3)

    def lines(self, lines: Sequence[tuple[int, PrescriptionLine]]) -> None:
        for number, line in lines:
            self.prescription_line(number, line)

    def signature(self) -> None:
        text = (
            f"{w.prescriber_name(self.p.author)}\n"
            "Ordonnance signée électroniquement par le prescripteur"
        )
        height = self.block_height(text, 8.5, w=110) + 6
        if self.will_page_break(height):
            self.add_page()
        self.set_y(self.y + 2)
        self.set_x(self.w - MARGIN - 110)
        self.text_block(text, 8.5, w=110, align="R", color=GREY)


def is_bizone(p: Prescription) -> bool:
    """The ALD layout when the document says so (MED-1096) or any line is ALD-related: a line
    related to the long-term illness must be in the upper zone to be reimbursed as such."""
    return p.bizone or any(line.ald for line in p.lines)


def render_pdf(prescription: Prescription, notice: Notice | None = None) -> bytes:
    """The ordonnance as PDF/A-2B bytes. Raises OrdonnanceError when the prescription has no
    valid identifier (the QR code and the legal mention need one). `notice`: what the drug
    database adds for the patient (stupéfiants, fractions), `prescriptions.checks.notice`."""
    identifier = checked_identifier(prescription.identifier)
    pdf = _Ordonnance(prescription, identifier, notice)
    pdf.add_page()
    numbered = list(enumerate(prescription.lines, start=1))
    pdf.kind_banner()
    if is_bizone(prescription):
        pdf.zone(ALD_HEADING, ALD_SUB)
        pdf.lines([(n, line) for n, line in numbered if line.ald])
        pdf.set_y(pdf.y + 2)
        pdf.zone(NON_ALD_HEADING, NON_ALD_SUB)
        pdf.lines([(n, line) for n, line in numbered if not line.ald])
        pdf.current_zone = None
    else:
        pdf.lines(numbered)
    if not prescription.lines:
        pdf.text_block("(aucune ligne de prescription)", 10)
    notes = w.clean(prescription.notes, multiline=True)
    if notes:
        pdf.text_block(f"Commentaire : {notes}", 9.5)
    pdf.signature()
    pdf.finish()
    return pdfa.write(pdf, pdf.xmp(), "fr-FR")
