"""A page canvas with a text cursor: the small part of a PDF library an ordonnance needs.

Why not fpdf2 any more: it re-read both fonts and re-subset them with fontTools for every
document, and its cell() copies the whole graphics state per call; an ordonnance took about 60 ms
of CPU, most of a prescription's cost at the gateway. This canvas keeps fpdf2's model (a cursor in
millimetres from the top-left corner, cells, automatic page breaks, a header drawn on every new
page) and its measurements (a cell's text sits `c_margin` inside the cell, on the baseline
`y + h/2 + 0.3 × font size`), writes PDF operators straight into each page's content, and leaves
fonts to `truetype` (read once per process) and the file to `pdfa`. About 2 ms a page.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from gateway.ordonnance.truetype import Font, load

PT_PER_MM = 72 / 25.4
A4 = (210.0, 297.0)


class Align(Enum):
    LEFT = "L"
    CENTER = "C"
    RIGHT = "R"


class NextX(Enum):
    LEFT = "left"  # back to where the cell started
    RIGHT = "right"  # after the cell
    LMARGIN = "lmargin"


class NextY(Enum):
    TOP = "top"  # same line
    NEXT = "next"  # below the cell


Color = tuple[int, int, int]


@dataclass
class Page:
    ops: list[str] = field(default_factory=list)
    fill: Color = (0, 0, 0)  # the content stream's current colours and line width
    stroke: Color = (0, 0, 0)
    line_width: float = -1.0


@dataclass
class Style:
    """What a page break must not change: fpdf2 restored it after drawing the header."""

    font: str
    size: float
    text_color: Color
    fill_color: Color
    draw_color: Color
    line_width: float


class Canvas:
    """Pages of A4 portrait in millimetres; fonts registered by style ("" and "B")."""

    def __init__(self, fonts: dict[str, Path]) -> None:
        self.w, self.h = A4
        self.fonts: dict[str, Font] = {style: load(path) for style, path in fonts.items()}
        self.used: dict[str, set[str]] = {style: set() for style in fonts}  # characters
        self.pages: list[Page] = []
        self.page = 0  # 1-based number of the page being drawn
        self.l_margin = self.t_margin = self.r_margin = 10.0
        self.b_margin = 20.0
        self.c_margin = 1.0  # fpdf2's default: 1/10 of its default 10 mm margin
        self.auto_page_break = True
        self.in_footer = False
        self.x = self.y = 0.0
        self.style = Style("", 12.0, (0, 0, 0), (0, 0, 0), (0, 0, 0), 0.2)
        self.current_font = self.fonts[""]

    # -- state ---------------------------------------------------------------------------

    @property
    def epw(self) -> float:
        return self.w - self.l_margin - self.r_margin

    @property
    def font_size(self) -> float:
        """The current font size in millimetres."""
        return self.style.size / PT_PER_MM

    @property
    def page_break_trigger(self) -> float:
        return self.h - self.b_margin

    def set_margins(self, left: float, top: float, right: float) -> None:
        self.l_margin, self.t_margin, self.r_margin = left, top, right

    def set_auto_page_break(self, auto: bool, margin: float) -> None:
        self.auto_page_break, self.b_margin = auto, margin

    def set_font(self, style: str, size: float) -> None:
        self.style.font, self.style.size = style, size
        self.current_font = self.fonts[style]

    def set_text_color(self, r: int, g: int, b: int) -> None:
        self.style.text_color = (r, g, b)

    def set_fill_color(self, r: int, g: int, b: int) -> None:
        self.style.fill_color = (r, g, b)

    def set_draw_color(self, r: int, g: int, b: int) -> None:
        self.style.draw_color = (r, g, b)

    def set_line_width(self, width: float) -> None:
        self.style.line_width = width

    def set_xy(self, x: float, y: float) -> None:
        self.x, self.y = x, y

    def set_x(self, x: float) -> None:
        self.x = x

    def set_y(self, y: float) -> None:
        """Like fpdf2: a new line, so x goes back to the left margin."""
        self.x, self.y = self.l_margin, y

    def page_no(self) -> int:
        return self.page

    def get_string_width(self, text: str) -> float:
        return self.current_font.width(text) * self.style.size / 1000 / PT_PER_MM

    def will_page_break(self, height: float) -> bool:
        return self.y + height > self.page_break_trigger and not self.in_footer and \
            self.auto_page_break

    # -- pages -----------------------------------------------------------------------------

    def header(self) -> None:
        """Drawn at the top of every page; for subclasses."""

    def footer(self) -> None:
        """Drawn at the bottom of every page once the page count is known; for subclasses."""

    def add_page(self) -> None:
        kept = Style(**vars(self.style))
        self.pages.append(Page())
        self.page = len(self.pages)
        self.x, self.y = self.l_margin, self.t_margin
        self.header()
        self.style = kept
        self.current_font = self.fonts[kept.font]

    def finish(self) -> None:
        """Footers last, when "page n/N" can be written."""
        self.in_footer = True
        for number in range(1, len(self.pages) + 1):
            self.page = number
            self.footer()
        self.in_footer = False

    # -- drawing ----------------------------------------------------------------------------

    def _ops(self) -> list[str]:
        return self.pages[self.page - 1].ops

    def _fill(self, color: Color) -> None:
        page = self.pages[self.page - 1]
        if page.fill != color:
            page.fill = color
            page.ops.append(f"{color[0] / 255:.3f} {color[1] / 255:.3f} {color[2] / 255:.3f} rg")

    def cell(self, w: float, h: float, text: str = "", align: Align = Align.LEFT,
             new_x: NextX = NextX.RIGHT, new_y: NextY = NextY.TOP) -> None:
        if self.will_page_break(h):
            x = self.x
            self.add_page()
            self.x = x
        if w == 0:
            w = self.w - self.r_margin - self.x
        if text:
            font = self.current_font
            if align is Align.LEFT:
                dx = self.c_margin
            else:
                width = self.get_string_width(text)
                dx = w - self.c_margin - width if align is Align.RIGHT else (w - width) / 2
            self.used[self.style.font].update(text)
            self._fill(self.style.text_color)
            k = PT_PER_MM
            baseline = self.y + 0.5 * h + 0.3 * self.font_size
            self._ops().append(
                f"BT /F{self.style.font or 'R'} {self.style.size:.2f} Tf "
                f"{(self.x + dx) * k:.2f} {(self.h - baseline) * k:.2f} Td "
                f"<{font.hex_glyphs(text)}> Tj ET"
            )
        if new_x is NextX.RIGHT:
            self.x += w
        elif new_x is NextX.LMARGIN:
            self.x = self.l_margin
        if new_y is NextY.NEXT:
            self.y += h

    def rect(self, x: float, y: float, w: float, h: float) -> None:
        """A rectangle filled with the fill colour."""
        self._fill(self.style.fill_color)
        k = PT_PER_MM
        self._ops().append(f"{x * k:.2f} {(self.h - y) * k:.2f} {w * k:.2f} {-h * k:.2f} re f")

    def fill_grid(self, x: float, y: float, unit_w: float, unit_h: float,
                  cells: Iterable[tuple[int, int, int, int]]) -> None:
        """Rectangles on a grid of `unit_w` x `unit_h` mm cells from (x, y), filled with the
        fill colour as one path: (column, row, columns, rows) each. A transformation puts the
        grid's units in the content stream, so each rectangle is four small integers: drawn
        one by one in millimetres, the QR code's ~130 rectangles were 2.5 KB more of a page's
        12 KB of operators, and 0.2 ms."""
        self._fill(self.style.fill_color)
        k = PT_PER_MM
        path = " ".join(f"{c} {r} {w} {h} re" for c, r, w, h in cells)
        self._ops().append(f"q {unit_w * k:.4f} 0 0 {-unit_h * k:.4f} {x * k:.4f} "
                           f"{(self.h - y) * k:.4f} cm {path} f Q")

    def line(self, x1: float, y1: float, x2: float, y2: float) -> None:
        page = self.pages[self.page - 1]
        color, width = self.style.draw_color, self.style.line_width
        if page.stroke != color:
            page.stroke = color
            page.ops.append(f"{color[0] / 255:.3f} {color[1] / 255:.3f} {color[2] / 255:.3f} RG")
        if page.line_width != width:
            page.line_width = width
            page.ops.append(f"{width * PT_PER_MM:.2f} w")
        k = PT_PER_MM
        page.ops.append(f"{x1 * k:.2f} {(self.h - y1) * k:.2f} m {x2 * k:.2f} "
                        f"{(self.h - y2) * k:.2f} l S")
