"""French numbers in words, both ways: `in_letters(28)` -> "vingt-huit" (what a secured
ordonnance prints, art. R5132-29) and `from_letters("vingt-huit")` -> 28 (what a doctor writes
on one). Pure functions, shared by the mail form and the ordonnance's wording.
"""

from __future__ import annotations

import re

_UNITS = (
    "zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix",
    "onze", "douze", "treize", "quatorze", "quinze", "seize",
)  # fmt: skip
_TENS = {2: "vingt", 3: "trente", 4: "quarante", 5: "cinquante", 6: "soixante"}


def _below_100(n: int) -> str:
    if n <= 16:
        return _UNITS[n]
    if n < 20:
        return "dix-" + _UNITS[n - 10]
    if n < 70:
        tens, unit = divmod(n, 10)
        if unit == 0:
            return _TENS[tens]
        return _TENS[tens] + (" et un" if unit == 1 else "-" + _UNITS[unit])
    if n < 80:
        return "soixante et onze" if n == 71 else "soixante-" + _below_100(n - 60)
    return "quatre-vingts" if n == 80 else "quatre-vingt-" + _below_100(n - 80)


def _below_1000(n: int, *, before_mille: bool = False) -> str:
    hundreds, rest = divmod(n, 100)
    if hundreds == 0:
        text = _below_100(rest)
        return text[:-1] if before_mille and text == "quatre-vingts" else text
    head = "cent" if hundreds == 1 else f"{_UNITS[hundreds]} cent"
    if rest == 0:
        return head if hundreds == 1 or before_mille else head + "s"
    return f"{head} {_below_100(rest)}"


def in_letters(n: int) -> str:
    """French numbers in words (traditional spelling: `vingt et un`, `quatre-vingts`, `deux
    cents`, `deux cent mille`), as secured prescriptions require for quantities."""
    if not 0 <= n < 1_000_000:
        raise ValueError("0 to 999 999 only")
    thousands, rest = divmod(n, 1000)
    if thousands == 0:
        return _below_1000(rest)
    head = "mille" if thousands == 1 else _below_1000(thousands, before_mille=True) + " mille"
    return head if rest == 0 else f"{head} {_below_1000(rest)}"


# Feminine nouns counted on an ordonnance: "une gélule", "vingt et une boîtes", "une fois".
FEMININE = {
    "ampoule", "application", "boîte", "bouffée", "capsule", "cuillère", "cuillère-mesure",
    "dose", "fois", "goutte", "gélule", "pulvérisation", "seringue", "unité",
}  # fmt: skip


_VALUES = {
    **{word: n for n, word in enumerate(_UNITS)}, "zero": 0, "une": 1,
    "treize": 13, "quatorze": 14, "quinze": 15, "seize": 16,
    "vingt": 20, "vingts": 20, "trente": 30, "quarante": 40, "cinquante": 50, "soixante": 60,
    "septante": 70, "huitante": 80, "octante": 80, "nonante": 90,
}
_SCALES = {"cent": 100, "cents": 100, "mille": 1000}
# The words a number is written with once accents, hyphens and case are folded ("vingt et
# une", "quatre-vingt-dix-neuf" -> "quatre vingt dix neuf"): for the form's patterns.
WORDS = sorted({*(w for w in _VALUES if w.isascii()), "zero", *_SCALES}, key=len, reverse=True)
PATTERN = r"(?:{w})(?: (?:et )?(?:{w}))*".format(w="|".join(WORDS))
_FULL = re.compile(rf"{PATTERN}")


def from_letters(text: str) -> int | None:
    """The whole number `text` writes in French words (folded: lower case, no accents, spaces
    for hyphens), or None when it is not one. Accepts what people write beside the traditional
    spelling: "vingt et un", "vingt-et-un", "quatre-vingts", "deux cent mille", "septante"."""
    words = text.split()
    if not words or not _FULL.fullmatch(" ".join(words)):
        return None
    total = current = 0
    previous = ""
    for word in words:
        if word == "et":
            continue
        if word in _SCALES:
            scale = _SCALES[word]
            if scale == 1000:
                total += max(current, 1) * 1000
                current = 0
            else:
                current = max(current, 1) * 100
        elif word in ("vingt", "vingts") and previous == "quatre":
            current += 80 - 4  # quatre-vingt(s): the "quatre" already counted
        else:
            current += _VALUES[word]
        previous = word
    return total + current


_DIGITS = re.compile(r"(\d+(?:[.,]\d+)?)(\s*)(\w*)")


def spell_numbers(text: str) -> str:
    """`text` with its whole numbers written in words, the counted noun giving the gender
    ("1 gélule" -> "une gélule", "28 jours" -> "vingt-huit jours"): the suggestion a refusal
    gives on a secured ordonnance. Decimals and numbers of a million or more stay in figures."""

    def spell(m: re.Match[str]) -> str:
        value, space, noun = m.groups()
        if not value.isdigit() or int(value) >= 1_000_000:
            return m.group(0)
        words = in_letters(int(value))
        if words.endswith("un") and noun.lower().rstrip("s") in FEMININE:
            words += "e"
        return f"{words}{space}{noun}"

    return _DIGITS.sub(spell, text)
