"""A TrueType font read once per process, and cut down to the glyphs one document uses.

Why not fontTools' subsetter for every PDF: it decompiles and recompiles every glyph outline,
about 25 ms per font and document, which was most of an ordonnance's rendering time. The
subset a PDF needs is much simpler: glyph ids are kept as they are (the PDF maps character
codes to glyph ids with CIDToGIDMap /Identity), the outlines of unused glyphs are left out of
`glyf`/`loca`, and the tables a CIDFontType2 program does not need are dropped (PDF 32000-1
§9.9: cmap, post and name are not used). That is a few table copies and byte slices, well under a
millisecond. fontTools still reads the font, once, for its metrics and character map.

What a PDF does not need is left out too (measured on an ordonnance: font programs 24.7 + 22.1 KB
raw, 12.9 + 10.9 KB deflated, before; see `Font.program` for after):
- the hinting: the tables cvt/fpgm/prep and the instructions inside each outline (30% of glyf).
  Hints snap outlines to a screen's pixel grid at small sizes; PDF/A does not ask for them,
  viewers and printers render unhinted TrueType (FreeType, pdfium and pdf.js autohint or render
  as is), and the ordonnance is read on paper or zoomed. fontTools' `Glyph.trim` strips them,
  once per glyph and process;
- the metrics of glyphs the document does not draw: their hmtx entries are zeroed (the PDF's /W
  gives every drawn glyph's width; the zeros deflate to nothing);
- the loca table is written short (2 bytes per glyph) when the subset's glyf allows it.
The file's checksums are added up from cached per-glyph sums instead of read over every byte
(5 ns a byte: 0.1 ms per font and document).
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from fontTools.ttLib import TTFont
from fontTools.ttLib.tables._g_l_y_f import Glyph

REPLACEMENT = 0xFFFD
BYTESWAP = sys.byteorder == "little"  # sfnt tables are big-endian
# The tables a CIDFontType2 font program needs (PDF 32000-1 §9.9, table 126), and no others:
# cvt, fpgm and prep are only needed by hinting instructions, which are left out.
KEPT_TABLES = ("glyf", "head", "hhea", "hmtx", "loca", "maxp")
SHORT_LOCA_MAX = 0xFFFF * 2  # a short loca stores offset / 2 in 16 bits
SHORT_ENTRY, LONG_ENTRY = struct.Struct(">H"), struct.Struct(">I")
CACHED_TEXT = 100  # the longest text whose width is kept (per font and process)

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
    tables: dict[str, bytes]  # the KEPT_TABLES as read (maxp without the hinting maxima)
    offsets: tuple[int, ...]  # loca, always as byte offsets (numGlyphs + 1 entries)
    n_hmetrics: int  # hhea.numberOfHMetrics: glyphs with a full hmtx entry
    # Measured words and hex-encoded glyphs, per process: an ordonnance's words (the legal
    # mention, drug names, dosage phrases) come back in every document.
    _widths_of: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    _hex: _HexTable = field(init=False, compare=False, repr=False)
    # Each glyph as subsets copy it, prepared the first time a document draws it.
    _glyphs: dict[int, _Glyph] = field(default_factory=dict, compare=False, repr=False)

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
        if len(text) <= CACHED_TEXT:  # words and short lines recur; long paragraphs hardly
            if len(self._widths_of) > 100_000:  # bounded: hostile text must not grow it
                self._widths_of.clear()
            self._widths_of[text] = width
        return width

    def hex_glyphs(self, text: str) -> str:
        """`text` as the 4-hex-digit glyph ids a content stream shows with Identity-H."""
        return text.translate(self._hex)

    def glyphs(self, chars: set[str]) -> set[int]:
        return {self.gid(ch) for ch in chars}

    def program(self, used: set[int]) -> bytes:
        """The font program with only the outlines of `used` glyphs (and their components),
        without hinting, glyph ids unchanged (the other glyphs are empty)."""
        kept = self._with_components(used | {0})  # .notdef is always kept
        gids = sorted(kept)
        glyphs = [self._glyph(gid) for gid in gids]
        short = sum(len(glyph.data) for glyph in glyphs) <= SHORT_LOCA_MAX
        unit, pack = (2, SHORT_ENTRY.pack) if short else (1, LONG_ENTRY.pack)
        # loca[i] is where glyph i starts: the glyphs between two kept ones are empty, so
        # the offsets come in runs of one value.
        loca, done, end = [], 0, 0  # parts of loca, entries written, bytes of glyf
        for gid, glyph in zip(gids, glyphs, strict=True):
            loca.append(pack(end // unit) * (gid + 1 - done))
            done, end = gid + 1, end + len(glyph.data)
        loca.append(pack(end // unit) * (len(self.offsets) - done))
        hmtx = bytearray(len(self.tables["hmtx"]))
        for glyph in glyphs:
            hmtx[glyph.metric_at:glyph.metric_at + len(glyph.metric)] = glyph.metric
        head = bytearray(self.tables["head"])
        head[8:12] = b"\0\0\0\0"  # checkSumAdjustment, computed below
        head[50:52] = struct.pack(">h", 0 if short else 1)  # indexToLocFormat
        tables = dict(self.tables, glyf=b"".join(glyph.data for glyph in glyphs),
                      loca=b"".join(loca), hmtx=bytes(hmtx), head=bytes(head))
        sums = {
            "glyf": sum(glyph.checksum for glyph in glyphs),
            "hmtx": sum(glyph.metric_sum for glyph in glyphs),
        }
        font, where, total = _assemble(tables, sums)
        adjustment = (0xB1B0AFBA - total) & 0xFFFFFFFF
        at = where["head"] + 8
        return font[:at] + struct.pack(">I", adjustment) + font[at + 4:]

    def _with_components(self, gids: set[int]) -> set[int]:
        """`gids` plus every glyph a composite among them is built from (accented letters)."""
        count = len(self.offsets) - 1
        return set().union(*(self._glyph(gid).closure for gid in gids if 0 <= gid < count))

    def _glyph(self, gid: int) -> _Glyph:
        glyph = self._glyphs.get(gid)
        if glyph is None:
            self._glyphs[gid] = glyph = _prepare(self, gid)  # bounded by the glyph count
        return glyph


@dataclass(frozen=True)
class _Glyph:
    """One glyph as a subset copies it, with its parts of the tables' checksums."""

    data: bytes  # the outline without instructions, padded to 4 bytes
    checksum: int
    closure: frozenset[int]  # this glyph and those it is built from, at any depth
    metric: bytes  # its hmtx entry: advance and left side bearing, or the bearing alone
    metric_at: int
    metric_sum: int  # the entry's part of the hmtx checksum (words are 4-byte aligned)


def _prepare(font: Font, gid: int) -> _Glyph:
    glyph = Glyph(font.tables["glyf"][font.offsets[gid]:font.offsets[gid + 1]])
    glyph.trim(remove_hinting=True)  # on the compact bytes: also drops the padding
    data = bytes(getattr(glyph, "data", b""))  # an empty glyph (a space) has no data
    data += b"\0" * (-len(data) % 4)
    if gid < font.n_hmetrics:
        at, size = 4 * gid, 4
    else:
        at, size = 4 * font.n_hmetrics + 2 * (gid - font.n_hmetrics), 2
    metric = font.tables["hmtx"][at:at + size]
    shift = 8 * (-(at + size) % 4)  # a 2-byte entry is the high or the low half of a word
    # A composite's parts are prepared first (the fonts nest them 4 deep at most).
    closure = frozenset({gid}).union(*(font._glyph(part).closure for part in _components(data)
                                       if 0 <= part < len(font.offsets) - 1))
    return _Glyph(data, _checksum(data), closure, metric, at,
                  int.from_bytes(metric, "big") << shift)


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


def _components(data: bytes) -> tuple[int, ...]:
    """The glyph ids a composite glyph's outline `data` is built from; () for a simple one."""
    if len(data) < 10 or struct.unpack_from(">h", data)[0] >= 0:
        return ()  # empty or simple glyph
    found = []
    pos = 10
    while pos + 4 <= len(data):
        flags, component = struct.unpack_from(">HH", data, pos)
        found.append(component)
        pos += 4 + (4 if flags & ARG_1_AND_2_ARE_WORDS else 2)
        if flags & WE_HAVE_A_SCALE:
            pos += 2
        elif flags & WE_HAVE_AN_X_AND_Y_SCALE:
            pos += 4
        elif flags & WE_HAVE_A_TWO_BY_TWO:
            pos += 8
        if not flags & MORE_COMPONENTS:
            break
    return tuple(found)


def _checksum(data: bytes) -> int:
    data += b"\0" * (-len(data) % 4)
    words = array("I", data)
    if BYTESWAP:
        words.byteswap()
    return sum(words) & 0xFFFFFFFF


def _assemble(tables: dict[str, bytes], sums: dict[str, int]
              ) -> tuple[bytes, dict[str, int], int]:
    """An sfnt file: the table directory (sorted by tag, with checksums), then the tables;
    where each table starts, and the checksum of the whole file. `sums` holds the checksums
    already known; the whole file's is the sum of its tables' and its directory's, since every
    table starts on a 4-byte boundary and is padded to one."""
    tags = sorted(tables)
    count = len(tags)
    power = 1 << (count.bit_length() - 1)
    header = struct.pack(">IHHHH", 0x00010000, count, power * 16, power.bit_length() - 1,
                         count * 16 - power * 16)
    offset = 12 + 16 * count
    directory, body, where = [header], [], {}
    total = 0
    for tag in tags:
        where[tag] = offset
        data = tables[tag]
        checksum = sums[tag] & 0xFFFFFFFF if tag in sums else _checksum(data)
        total += checksum
        directory.append(struct.pack(">4sIII", tag.encode("latin-1"), checksum, offset,
                                     len(data)))
        body.append(data + b"\0" * (-len(data) % 4))
        offset += len(body[-1])
    head = b"".join(directory)
    return head + b"".join(body), where, (total + _checksum(head)) & 0xFFFFFFFF


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
    maxp = bytearray(raw["maxp"])
    if maxp[:4] == b"\0\1\0\0":  # version 1.0: the hinting maxima, zeroed as fontTools'
        maxp[14:28] = struct.pack(">7H", 1, 0, 0, 0, 0, 0, 0)  # subsetter does without hints
    raw["maxp"] = bytes(maxp)
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
        n_hmetrics=hhea.numberOfHMetrics,
    )
