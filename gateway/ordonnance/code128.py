"""Code 128 bar patterns, for the RPPS barcode printed on French ordonnances.

fpdf2 draws Code 39 and Interleaved 2 of 5 but not Code 128, and the barcode libraries for Python
render images through Pillow; the symbology is a fixed table and a checksum, so it is written here
and drawn as vector bars. Tests decode the printed bars back with zxing-cpp.
"""

from __future__ import annotations

# Bar/space widths (in modules) of symbol values 0..106; 106 is the stop pattern.
PATTERNS = (
    "212222", "222122", "222221", "121223", "121322", "131222", "122213", "122312",
    "132212", "221213", "221312", "231212", "112232", "122132", "122231", "113222",
    "123122", "123221", "223211", "221132", "221231", "213212", "223112", "312131",
    "311222", "321122", "321221", "312212", "322112", "322211", "212123", "212321",
    "232121", "111323", "131123", "131321", "112313", "132113", "132311", "211313",
    "231113", "231311", "112133", "112331", "132131", "113123", "113321", "133121",
    "313121", "211331", "231131", "213113", "213311", "213131", "311123", "311321",
    "331121", "312113", "312311", "332111", "314111", "221411", "431111", "111224",
    "111422", "121124", "121421", "141122", "141221", "112214", "112412", "122114",
    "122411", "142112", "142211", "241211", "221114", "413111", "241112", "134111",
    "111242", "121142", "121241", "114212", "124112", "124211", "411212", "421112",
    "421211", "212141", "214121", "412121", "111143", "111341", "131141", "114113",
    "114311", "411113", "411311", "113141", "114131", "311141", "411131", "211412",
    "211214", "211232", "2331112",
)  # fmt: skip
assert len(PATTERNS) == 107 and all(sum(map(int, p)) == 11 for p in PATTERNS[:106])

START_B, START_C, CODE_B, STOP = 104, 105, 100, 106


def code128_values(text: str) -> list[int]:
    """Symbol values including start, checksum and stop. Digits use code set C (two digits per
    symbol: an 11-digit RPPS is 7 symbols instead of 12); other printable ASCII uses set B."""
    if not text or any(not (32 <= ord(ch) < 127) for ch in text):
        raise ValueError("Code 128 here takes printable ASCII only")
    if text.isdigit() and len(text) >= 2:
        even = len(text) - len(text) % 2
        values = [START_C] + [int(text[i : i + 2]) for i in range(0, even, 2)]
        if even < len(text):
            values += [CODE_B, ord(text[-1]) - 32]
    else:
        values = [START_B] + [ord(ch) - 32 for ch in text]
    check = (values[0] + sum(i * v for i, v in enumerate(values[1:], start=1))) % 103
    return [*values, check, STOP]


def code128_modules(text: str) -> list[tuple[bool, int]]:
    """(dark?, width in modules) runs, bars first, without quiet zones (leave 10 modules)."""
    runs = []
    for value in code128_values(text):
        for i, width in enumerate(PATTERNS[value]):
            runs.append((i % 2 == 0, int(width)))
    return runs
