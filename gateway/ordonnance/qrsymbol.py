"""The one QR symbol the gateway draws, encoded directly: version 1 (21x21), level M,
alphanumeric mode, which is what an 18-character identifier needs (see qr.py).

segno encodes any QR code in pure Python; for this one shape its mask choice (8 masks, each
scored module by module) was 1.7 ms of the ~20 ms of CPU a whole prescription may use, more
than any other step of the flow. Here the fixed parts are computed once (the function
patterns, the order data modules are filled in, the Reed-Solomon generator, each mask laid out
over the symbol's rows and columns), and each mask is scored with a few dozen operations on
integers holding all 42 rows and columns at once (0.1 ms for the 8 masks, against 0.4 ms with
the regular expressions and searches per line used before): the same rules as segno's scoring
(ISO/IEC 18004:2015 7.8.3), so it picks the same mask. tests/test_ordonnance_parts.py checks
the score equals segno's for random and pattern-laden matrices, and the symbols equal segno's
for random identifiers.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable

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
# The masks are scored on the symbol's lines: every row then every column, each after _PAD
# padding modules and with _PAD more at the end, as bit sets: integers whose top bit is the
# lines' first position. itemgetters lay the lines out in one C call each.
_PAD = 4  # N3 looks 4 modules beyond a pattern: no rule reaches from one line into the next
_STRIDE = SIZE + _PAD
_BASE_FLAT = bytes(b for row in _BASE for b in row)
_slot = {rc: i for i, rc in enumerate(_ORDER)}


def _lines_of(module: Callable[[int, int], int], pad: int
              ) -> Callable[[bytes], tuple[int, ...]]:
    """An itemgetter laying out the lines from a sequence holding module (r, c) at index
    `module(r, c)` and the padding at index `pad`."""
    rows = [[module(r, c) for c in range(SIZE)] for r in range(SIZE)]
    columns = [[module(r, c) for r in range(SIZE)] for c in range(SIZE)]
    return operator.itemgetter(*(
        [i for line in rows + columns for i in [pad] * _PAD + line] + [pad] * _PAD))


_AREA = SIZE * SIZE
_WIDTH = len(_ORDER)
# From `format(data bits, "0208b").encode() + b"0"`: the data modules' bits ("0"/"1") over the
# lines, everything else "0"; and from a finished symbol's modules + b"\x00" (for the tests).
_DATA_LINES = _lines_of(lambda r, c: _slot.get((r, c), _WIDTH), _WIDTH)
_SYMBOL_LINES = _lines_of(lambda r, c: r * SIZE + c, _AREA)
_DIGITS = bytes.maketrans(b"\x00\x01", b"01")


def _bits(digits: Iterable[int]) -> int:
    """The bit set of an itemgetter's ASCII "0"/"1" output."""
    return int(bytes(digits), 2)


_MASK_LINES = [_bits(_DATA_LINES(format(m, f"0{_WIDTH}b").encode() + b"0")) for m in _MASK_INTS]
# The function patterns' dark modules (the data modules light), every module, the padding.
_BASE_DARK = _bits(_SYMBOL_LINES((_BASE_FLAT + b"\x00").translate(_DIGITS)))
_MODULES = _bits(_SYMBOL_LINES(b"1" * _AREA + b"0"))
_PAD_BITS = _bits(_SYMBOL_LINES(b"0" * _AREA + b"1"))
# The modules that can be the lower right corner of a 2x2 block: row and column >= 1, in the
# rows (the first half of the lines: _PAD + SIZE * _STRIDE positions of _LENGTH).
_LENGTH = 2 * SIZE * _STRIDE + _PAD
_IN_ROWS = ((1 << _PAD + SIZE * _STRIDE) - 1) << (_LENGTH - _PAD - SIZE * _STRIDE)
_BLOCK_CORNERS = _IN_ROWS & _bits(_SYMBOL_LINES(
    b"".join(b"1" if r and c else b"0" for r in range(SIZE) for c in range(SIZE)) + b"0"))
# The symbol row after row from `_BASE_FLAT + data bits` (one C call), for the chosen mask.
_PLACE = operator.itemgetter(*(
    _AREA + _slot[(r, c)] if (r, c) in _slot else r * SIZE + c
    for r in range(SIZE) for c in range(SIZE)))
_VALUES = bytes.maketrans(b"01", b"\x00\x01")


def _penalty(flat: bytes) -> int:
    """segno's score (N1 + N2 + N3 + N4) of the symbol `flat` (row after row, 0/1 bytes)."""
    return _score(_bits(_SYMBOL_LINES((flat + b"\x00").translate(_DIGITS))))


def _score(dark: int) -> int:
    """segno's score of the symbol whose dark modules over the lines are `dark`, computed on
    all lines at once with bit operations (module p+k is brought onto module p by `<< k`)."""
    light = _MODULES & ~dark
    score = 0
    for same in (dark, light):  # N1: 3 points for 5 alike in a line, one more per module
        five = same & same << 1 & same << 2 & same << 3 & same << 4  # 5 alike from here on
        score += five.bit_count() + 2 * (five & ~(five >> 1)).bit_count()  # (n - 4) + 2 a run
    # N2: 2x2 blocks of one colour (in the rows): a module equal to the one above, to the one
    # on its left, and the left one to its upper.
    same_v = ~(dark ^ dark >> _STRIDE)
    same_h = ~(dark ^ dark >> 1)
    score += 3 * (same_v & same_v >> 1 & same_h & _BLOCK_CORNERS).bit_count()
    # N3: dark-light-dark-dark-dark-light-dark with 4 light modules (or the line's end)
    # before or after it.
    finder = dark & light << 1 & dark << 2 & dark << 3 & dark << 4 & light << 5 & dark << 6
    free = light | _PAD_BITS
    margin = free >> 1 & free >> 2 & free >> 3 & free >> 4 | \
        free << 7 & free << 8 & free << 9 & free << 10
    # segno searches each line from the left and resumes 7 modules on after a pattern it
    # counts, 4 on after one it does not: a pattern overlapping a counted one (4 or 6 modules
    # on, the only overlaps possible) is not looked at. Settled from the left, in a few rounds.
    seen = finder
    while True:
        counted = seen & margin
        nxt = finder & ~(counted >> 4 | counted >> 6)
        if nxt == seen:
            break
        seen = nxt
    score += 40 * counted.bit_count()
    percent = float(dark.bit_count() // 2) / (SIZE * SIZE)  # every module is in 2 lines
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
    spread = _BASE_DARK | _bits(_DATA_LINES(format(data, f"0{width}b").encode() + b"0"))
    scores = [_score(spread ^ flips) for flips in _MASK_LINES]
    mask = scores.index(min(scores))  # the first of the best, as segno
    bits = format(data ^ _MASK_INTS[mask], f"0{width}b").encode().translate(_VALUES)
    flat = bytes(_PLACE(_BASE_FLAT + bits))
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
