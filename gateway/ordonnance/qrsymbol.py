"""The one QR symbol the gateway draws, encoded directly: version 1 (21x21), level M,
alphanumeric mode, which is what an 18-character identifier needs (see qr.py).

segno encodes any QR code in pure Python; for this one shape its mask choice (8 masks, each
scored module by module) was 1.7 ms of the ~20 ms of CPU a whole prescription may use, more
than any other step of the flow. Here the fixed parts are computed once (the function
patterns, the order data modules are filled in, the Reed-Solomon generator), and the masks are
scored on whole rows and columns (bytes.find, regular expressions, integer bit tricks), the
same rules as segno's scoring (ISO/IEC 18004:2015 7.8.3) in the same order, so it picks the same
mask: tests/test_ordonnance_parts.py checks the matrices equal segno's for random identifiers.
"""

from __future__ import annotations

import operator
import re

SIZE = 21
_DATA_CODEWORDS = 16  # version 1-M
_EC_CODEWORDS = 10
_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

# GF(256) with the QR polynomial x^8 + x^4 + x^3 + x^2 + 1.
_EXP = [0] * 512
_LOG = [0] * 256
_x = 1
for _i in range(255):
    _EXP[_i] = _x
    _LOG[_x] = _i
    _x <<= 1
    if _x & 0x100:
        _x ^= 0x11D
for _i in range(255, 512):
    _EXP[_i] = _EXP[_i - 255]


def _generator(n: int) -> list[int]:
    """Coefficients (highest first, leading 1 dropped) of prod(x - a^i), i < n."""
    poly = [1]
    for i in range(n):
        nxt = [0] * (len(poly) + 1)
        for j, c in enumerate(poly):
            nxt[j] ^= c
            if c:
                nxt[j + 1] ^= _EXP[_LOG[c] + i]
        poly = nxt
    return poly[1:]


_GEN = _generator(_EC_CODEWORDS)


def _ec(data: list[int]) -> list[int]:
    rem = [0] * _EC_CODEWORDS
    for byte in data:
        factor = byte ^ rem[0]
        rem = rem[1:] + [0]
        if factor:
            lf = _LOG[factor]
            for k, g in enumerate(_GEN):
                if g:
                    rem[k] ^= _EXP[lf + _LOG[g]]
    return rem


def _codewords(text: str) -> list[int]:
    bits = "0010" + format(len(text), "09b")  # alphanumeric mode, 9-bit count (versions 1-9)
    for i in range(0, len(text) - 1, 2):
        bits += format(_CHARS.index(text[i]) * 45 + _CHARS.index(text[i + 1]), "011b")
    if len(text) % 2:
        bits += format(_CHARS.index(text[-1]), "06b")
    capacity = _DATA_CODEWORDS * 8
    if len(bits) > capacity:
        raise ValueError(f"{len(text)} characters do not fit a version 1-M symbol")
    bits += "0" * min(4, capacity - len(bits))  # terminator
    bits += "0" * (-len(bits) % 8)
    data = [int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)]
    data += [0xEC, 0x11] * ((_DATA_CODEWORDS - len(data)) // 2 + 1)
    data = data[:_DATA_CODEWORDS]
    return data + _ec(data)


def _template() -> tuple[list[bytearray], list[tuple[int, int]]]:
    """The symbol as masks are scored (finders, separators, timing; format areas and the dark
    module still light, as segno reserves them) and the data modules in filling order."""
    m = [bytearray(SIZE) for _ in range(SIZE)]
    function = [[False] * SIZE for _ in range(SIZE)]
    for i in range(SIZE):  # format areas: row 8 and column 8 near the finders
        if i <= 8 or i >= SIZE - 8:
            function[8][i] = function[i][8] = True
    for i in range(SIZE):  # timing patterns
        m[6][i] = m[i][6] = int(i % 2 == 0)
        function[6][i] = function[i][6] = True
    for r0, c0 in ((0, 0), (0, SIZE - 7), (SIZE - 7, 0)):  # finders with their separators
        for r in range(r0 - 1, r0 + 8):
            for c in range(c0 - 1, c0 + 8):
                if 0 <= r < SIZE and 0 <= c < SIZE:
                    d = max(abs(r - r0 - 3), abs(c - c0 - 3))
                    m[r][c] = int(d != 2 and d != 4)
                    function[r][c] = True
    order: list[tuple[int, int]] = []
    right = SIZE - 1
    while right >= 1:
        if right == 6:
            right = 5
        upward = (right + 1) & 2 == 0
        for vert in range(SIZE):
            row = SIZE - 1 - vert if upward else vert
            for col in (right, right - 1):
                if not function[row][col]:
                    order.append((row, col))
        right -= 2
    return m, order


_BASE, _ORDER = _template()
assert len(_ORDER) == (_DATA_CODEWORDS + _EC_CODEWORDS) * 8

_MASKS = (
    lambda i, j: (i + j) % 2 == 0,
    lambda i, j: i % 2 == 0,
    lambda i, j: j % 3 == 0,
    lambda i, j: (i + j) % 3 == 0,
    lambda i, j: (i // 2 + j // 3) % 2 == 0,
    lambda i, j: (i * j) % 2 + (i * j) % 3 == 0,
    lambda i, j: ((i * j) % 2 + (i * j) % 3) % 2 == 0,
    lambda i, j: ((i + j) % 2 + (i * j) % 3) % 2 == 0,
)
# Each mask as one integer over the data modules in filling order (first module = top bit).
_MASK_INTS = [int("".join("1" if mask(r, c) else "0" for r, c in _ORDER), 2) for mask in _MASKS]
# Module (r, c) of the flat symbol taken from `_BASE_FLAT + data bits`: itemgetter places
# all 441 modules in one C call; _LINES lays out every row then every column.
_BASE_FLAT = bytes(b for row in _BASE for b in row)
_slot = {rc: i for i, rc in enumerate(_ORDER)}
_PLACE = operator.itemgetter(*(
    SIZE * SIZE + _slot[(r, c)] if (r, c) in _slot else r * SIZE + c
    for r in range(SIZE) for c in range(SIZE)))
_LINES = operator.itemgetter(*(
    [i for r in range(SIZE) for i in (*range(r * SIZE, r * SIZE + SIZE), SIZE * SIZE)]
    + [i for c in range(SIZE) for i in (*range(c, SIZE * SIZE, SIZE), SIZE * SIZE)]))

_RUN = re.compile(rb"\x00{5,}|\x01{5,}")
_FINDER_LIKE = b"\x01\x00\x01\x01\x01\x00\x01"
# Bits of the modules that can be the lower right corner of a 2x2 block (row and column >= 1).
_BLOCK_CORNERS = sum(1 << (SIZE * SIZE - 1 - (r * SIZE + c))
                     for r in range(1, SIZE) for c in range(1, SIZE))
_DIGITS = bytes.maketrans(b"\x00\x01", b"01")
_VALUES = bytes.maketrans(b"01", b"\x00\x01")


def _n3(line: bytes, idx: int) -> tuple[int, int]:
    """segno's N3 rule at a 1:1:3:1:1 pattern found at `idx` of `line`: (points, where to
    search next). It counts with 4 light modules before or after it, or at an edge; a pattern
    not counted lets the search resume inside it."""
    offset = idx + 7
    if idx in (0, SIZE - 7) or not any(line[max(idx - 4, 0):idx]) \
            or not any(line[offset:offset + 4]):
        return 40, offset
    return 0, idx + 4


def _penalty(flat: bytes) -> int:
    """segno's score (N1 + N2 + N3 + N4) of the symbol `flat` (row after row, 0/1 bytes)."""
    lines = bytes(_LINES(flat + b"\x02"))  # every row then every column, \x02 between
    runs = _RUN.findall(lines)  # N1: 3 points for 5 alike in a line, one more per module
    score = sum(map(len, runs)) - 2 * len(runs)
    idx = lines.find(_FINDER_LIKE)
    while idx != -1:  # N3
        start = idx - idx % (SIZE + 1)
        points, nxt = _n3(lines[start:start + SIZE], idx - start)
        score += points
        idx = lines.find(_FINDER_LIKE, start + nxt)
    # N2: 2x2 blocks of one colour, on the symbol as one integer (module (0, 0) the top bit):
    # a module equal to the one above, to the one on its left, and the left one to its upper.
    f = int(flat.translate(_DIGITS), 2)
    same_v = ~(f ^ (f >> SIZE))
    same_h = ~(f ^ (f >> 1))
    score += 3 * bin(same_v & (same_v >> 1) & same_h & _BLOCK_CORNERS).count("1")
    percent = float(flat.count(1)) / (SIZE * SIZE)
    return score + 10 * int(abs(percent * 100 - 50) / 5)  # N4


def _format_bits(mask: int) -> int:
    data = mask  # error correction level M is 00
    rem = data
    for _ in range(10):
        rem = (rem << 1) ^ ((rem >> 9) * 0x537)
    return ((data << 10) | rem) ^ 0x5412


def encode(text: str) -> tuple[bytearray, ...]:
    """Dark modules (1) row by row, without the quiet zone, of the symbol for `text` (at most
    20 characters of the QR alphanumeric set)."""
    words = _codewords(text)
    data = int.from_bytes(bytes(words), "big")
    width = len(_ORDER)
    best: tuple[int, int, bytes] | None = None
    for k, flips in enumerate(_MASK_INTS):
        bits = format(data ^ flips, f"0{width}b").encode().translate(_VALUES)
        flat = bytes(_PLACE(_BASE_FLAT + bits))
        score = _penalty(flat)
        if best is None or score < best[0]:
            best = (score, k, flat)
    assert best is not None
    _, mask, flat = best
    m = [bytearray(flat[i:i + SIZE]) for i in range(0, SIZE * SIZE, SIZE)]
    fmt = _format_bits(mask)

    def bit(i: int) -> int:
        return (fmt >> i) & 1

    for i in range(6):
        m[i][8] = bit(i)
    m[7][8], m[8][8], m[8][7] = bit(6), bit(7), bit(8)
    for i in range(9, 15):
        m[8][14 - i] = bit(i)
    for i in range(8):
        m[8][SIZE - 1 - i] = bit(i)
    for i in range(8, 15):
        m[SIZE - 15 + i][8] = bit(i)
    m[SIZE - 8][8] = 1  # the dark module
    return tuple(m)
