"""The e-prescription identifier: 18 characters from 0-9A-Z, the last one a check character.

The national format is not public; we keep its shape (the only known example is
`01S2TBPZ2JCNZZYGHZ`) and add a check character so that a hand-typed identifier with one wrong
character or two swapped neighbours is refused before any look-up.

- 17 random characters from a 36-character alphabet: 17 * log2(36) = 87.9 bits of randomness
  (drawn from `secrets`), so identifiers cannot be guessed or enumerated.
- ISO/IEC 7064 MOD 37-2 for the 18th character: with weights 2^k modulo the prime 37 it detects
  every single substitution and every transposition of adjacent characters (check included).
  MOD 37,36, the hybrid system over the same alphabet, misses about 1 adjacent swap in 600 (e.g.
  `...0000001000...` vs `...0000010000...`), so it does not meet the rule. MOD 37-2 needs a 37th
  symbol (`*`) for one check value in 37: we simply never issue such a body (drawn again), which
  keeps the check in 0-9A-Z and costs 0.04 bit of the randomness.
  Written here because it is a few lines and python-stdnum would be a dependency for one function.
- Printed in six groups of three for reading aloud: `01S 2TB PZ2 JCN ZZY GHZ`.
Uniqueness is enforced by the registry (unique key), not here.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from gateway.texts import t

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LENGTH = 18


def _weighted(chars: str) -> int:
    p = 0
    for ch in chars:
        p = ((p + ALPHABET.index(ch)) * 2) % 37
    return p


def _check_value(body: str) -> int:
    return (38 - _weighted(body)) % 37  # 0..36; 36 would be the symbol '*'


def check_character(body: str) -> str:
    """The ISO 7064 MOD 37-2 check character for `body`; ValueError when it would be '*'."""
    value = _check_value(body)
    if value == 36:
        raise ValueError("this body needs the check symbol '*', outside 0-9A-Z")
    return ALPHABET[value]


def new_identifier() -> str:
    while True:
        body = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH - 1))
        if _check_value(body) != 36:
            return body + check_character(body)


def normalise(text: str) -> str:
    """Accept what people type: spaces, hyphens, dots and lower case are ignored."""
    return re.sub(r"[\s.\-]", "", text).upper()


def group(identifier: str) -> str:
    """`01S2TBPZ2JCNZZYGHZ` -> `01S 2TB PZ2 JCN ZZY GHZ`."""
    return " ".join(identifier[i : i + 3] for i in range(0, len(identifier), 3))


@dataclass(frozen=True)
class IdCheck:
    ok: bool
    identifier: str
    reason: str = ""


def check_identifier(text: str) -> IdCheck:
    """Is `text` a well-formed identifier? Says precisely what is wrong when it is not."""
    ident = normalise(text)
    if len(ident) != LENGTH:
        return IdCheck(False, ident, t("an identifier has {length} characters, not {found}",
                                       length=LENGTH, found=len(ident)))
    bad = sorted({c for c in ident if c not in ALPHABET})
    if bad:
        return IdCheck(False, ident, t("only 0-9 and A-Z are allowed (found {bad!r})",
                                       bad="".join(bad)))
    if (_weighted(ident[:-1]) + ALPHABET.index(ident[-1])) % 37 != 1:
        return IdCheck(False, ident, "the check character does not match (a typing error?)")
    return IdCheck(True, ident)


def is_valid(text: str) -> bool:
    return check_identifier(text).ok
