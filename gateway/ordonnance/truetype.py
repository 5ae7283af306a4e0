"""A TrueType font read once per process, and cut down to the glyphs one document uses.

Why not fontTools' subsetter for every PDF: it decompiles and recompiles every glyph outline,
about 25 ms per font and document, which was most of an ordonnance's rendering time. The
subset a PDF needs is much simpler: glyph ids are kept as they are (the PDF maps character
codes to glyph ids with CIDToGIDMap /Identity), the outlines of unused glyphs are left out of
`glyf`/`loca`, and the tables a CIDFontType2 program does not need are dropped (PDF 32000-1
§9.9: cmap, post and name are not used). That is a few table copies and byte slices, well under a
millisecond. fontTools still reads the font, once, for its metrics and character map.
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass, field
from functools import cache
from itertools import accumulate
from pathlib import Path

from fontTools.ttLib import TTFont

REPLACEMENT = 0xFFFD
BYTESWAP = sys.byteorder == "little"  # sfnt tables are big-endian
# The tables a CIDFontType2 font program needs (PDF 32000-1 §9.9, table 126), and no others.
KEPT_TABLES = ("cvt ", "fpgm", "glyf", "head", "hhea", "hmtx", "loca", "maxp", "prep")

# Composite glyph flags (OpenType 'glyf' table).
ARG_1_AND_2_ARE_WORDS = 0x0001
WE_HAVE_A_SCALE = 0x0008
MORE_COMPONENTS = 0x0020
WE_HAVE_AN_X_AND_Y_SCALE = 0x0040
WE_HAVE_A_TWO_BY_TWO = 0x0080


@dataclass(frozen=True)
class Font:
    """One font file's metrics, in PDF glyph-space units (1/1000 em)."""

    ps_name: str
    glyph_of: dict[int, int]  # code point -> glyph id (the replacement glyph when missing)
    text_of: dict[int, int]  # glyph id -> the lowest code point drawn with it (for ToUnicode)
    widths: tuple[int, ...]  # per glyph id
    ascent: int
    descent: int
    cap_height: int
    bbox: tuple[int, int, int, int]
    stem_v: int
    bold: bool
    tables: dict[str, bytes]
    offsets: tuple[int, ...]  # loca, always as byte offsets (numGlyphs + 1 entries)
    # Measured words and hex-encoded glyphs, per process: an ordonnance's words (the legal
    # mention, drug names, dosage phrases) come back in every document.
    _widths_of: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    _hex: _HexTable = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hex", _HexTable(self.glyph_of))

    def gid(self, ch: str) -> int:
        return self.glyph_of.get(ord(ch), self.glyph_of[REPLACEMENT])

    def width(self, text: str) -> int:
        """Advance width of `text` in 1/1000 em (no kerning: the PDF applies none either)."""
        known = self._widths_of.get(text)
        if known is not None:
            return known
        widths, glyph_of, missing = self.widths, self.glyph_of, self.glyph_of[REPLACEMENT]
        width = sum(widths[glyph_of.get(ord(ch), missing)] for ch in text)
        if len(self._widths_of) > 100_000:  # bounded: hostile text must not grow it for ever
            self._widths_of.clear()
        self._widths_of[text] = width
        return width

    def hex_glyphs(self, text: str) -> str:
        """`text` as the 4-hex-digit glyph ids a content stream shows with Identity-H."""
        return text.translate(self._hex)

    def glyphs(self, chars: set[str]) -> set[int]:
        return {self.gid(ch) for ch in chars}

    def program(self, used: set[int]) -> bytes:
        """The font program with only the outlines of `used` glyphs (and their components)."""
        glyf, offsets = self.tables["glyf"], self.offsets
        keep = _with_components(glyf, offsets, used | {0})  # .notdef is always kept
        parts: list[bytes] = []
        sizes = [0] * (len(offsets) - 1)
        for gid in sorted(keep):
            data = glyf[offsets[gid]:offsets[gid + 1]]
            data += b"\0" * (-len(data) % 4)
            parts.append(data)
            sizes[gid] = len(data)
        loca = array("I", accumulate(sizes, initial=0))
        if BYTESWAP:
            loca.byteswap()
        head = bytearray(self.tables["head"])
        head[8:12] = b"\0\0\0\0"  # checkSumAdjustment, computed below
        head[50:52] = struct.pack(">h", 1)  # indexToLocFormat: long offsets
        tables = dict(self.tables, glyf=b"".join(parts), loca=loca.tobytes(), head=bytes(head))
        font, where = _assemble(tables)
        adjustment = (0xB1B0AFBA - _checksum(font)) & 0xFFFFFFFF
        at = where["head"] + 8
        return font[:at] + struct.pack(">I", adjustment) + font[at + 4:]


class _HexTable(dict[int, str]):
    """str.translate table: code point -> glyph id in hex; filled on first use, the
    replacement glyph for a character the font lacks."""

    def __init__(self, glyph_of: dict[int, int]) -> None:
        super().__init__()
        self.glyph_of = glyph_of

    def __missing__(self, cp: int) -> str:
        gid = self.glyph_of.get(cp, self.glyph_of[REPLACEMENT])
        self[cp] = hexed = f"{gid:04x}"
        return hexed


def _with_components(glyf: bytes, offsets: tuple[int, ...], gids: set[int]) -> set[int]:
    """`gids` plus every glyph a composite among them is built from (accented letters)."""
    keep: set[int] = set()
    todo = [g for g in gids if 0 <= g < len(offsets) - 1]
    while todo:
        gid = todo.pop()
        if gid in keep:
            continue
        keep.add(gid)
        start, end = offsets[gid], offsets[gid + 1]
        if end - start < 10 or struct.unpack_from(">h", glyf, start)[0] >= 0:
            continue  # empty or simple glyph
        pos = start + 10
        while pos + 4 <= end:
            flags, component = struct.unpack_from(">HH", glyf, pos)
            todo.append(component)
            pos += 4 + (4 if flags & ARG_1_AND_2_ARE_WORDS else 2)
            if flags & WE_HAVE_A_SCALE:
                pos += 2
            elif flags & WE_HAVE_AN_X_AND_Y_SCALE:
                pos += 4
            elif flags & WE_HAVE_A_TWO_BY_TWO:
                pos += 8
            if not flags & MORE_COMPONENTS:
                break
    return keep


def _checksum(data: bytes) -> int:
    data += b"\0" * (-len(data) % 4)
    words = array("I", data)
    if BYTESWAP:
        words.byteswap()
    return sum(words) & 0xFFFFFFFF


def _assemble(tables: dict[str, bytes]) -> tuple[bytes, dict[str, int]]:
    """An sfnt file: the table directory (sorted by tag, with checksums), then the tables;
    and where each table starts."""
    tags = sorted(tables)
    count = len(tags)
    power = 1 << (count.bit_length() - 1)
    header = struct.pack(">IHHHH", 0x00010000, count, power * 16, power.bit_length() - 1,
                         count * 16 - power * 16)
    offset = 12 + 16 * count
    directory, body, where = [], [], {}
    for tag in tags:
        where[tag] = offset
        data = tables[tag]
        directory.append(struct.pack(">4sIII", tag.encode("latin-1"), _checksum(data), offset,
                                     len(data)))
        padded = data + b"\0" * (-len(data) % 4)
        body.append(padded)
        offset += len(padded)
    return header + b"".join(directory) + b"".join(body), where


@cache
def load(path: Path) -> Font:
    """The font at `path`, read once per process (the servers render in long-lived workers)."""
    tt = TTFont(str(path), lazy=True)
    scale = 1000 / tt["head"].unitsPerEm
    cmap = dict(tt.getBestCmap())
    order = {name: gid for gid, name in enumerate(tt.getGlyphOrder())}
    glyph_of = {cp: order[name] for cp, name in cmap.items()}
    if REPLACEMENT not in glyph_of:
        glyph_of[REPLACEMENT] = 0  # .notdef: still a visible box
    text_of: dict[int, int] = {}
    for cp, gid in sorted(glyph_of.items(), reverse=True):
        text_of[gid] = cp
    metrics = tt["hmtx"].metrics
    widths = tuple(round(metrics[name][0] * scale) for name in tt.getGlyphOrder())
    head, hhea, os2 = tt["head"], tt["hhea"], tt["OS/2"]
    bold = bool(head.macStyle & 1) or os2.usWeightClass >= 600
    raw = {tag: tt.reader[tag] for tag in KEPT_TABLES if tag in tt.reader}
    long_loca = head.indexToLocFormat == 1
    loca = array("I" if long_loca else "H", raw["loca"])
    if BYTESWAP:
        loca.byteswap()
    offsets = tuple(o if long_loca else o * 2 for o in loca)
    cap = getattr(os2, "sCapHeight", 0) or hhea.ascent
    return Font(
        ps_name=tt["name"].getDebugName(6) or path.stem,
        glyph_of=glyph_of,
        text_of=text_of,
        widths=widths,
        ascent=round(hhea.ascent * scale),
        descent=round(hhea.descent * scale),
        cap_height=round(cap * scale),
        bbox=(round(head.xMin * scale), round(head.yMin * scale), round(head.xMax * scale),
              round(head.yMax * scale)),
        stem_v=round(50 + (os2.usWeightClass / 65) ** 2),
        bold=bold,
        tables=raw,
        offsets=offsets,
    )
