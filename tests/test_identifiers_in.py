"""flows.common.identifiers_in: e-prescription identifiers anywhere in a patient's text."""

from __future__ import annotations

import pytest

from gateway.flows.common import identifiers_in
from gateway.prescriptions.identifier import check_identifier, group, new_identifier

IDENT = "01S2TBPZ2JCNZZYGH0"  # the national example with our check character


@pytest.mark.parametrize("text", [
    f"Le numero est {group(IDENT)}",
    f"Le numéro est {group(IDENT).lower()}, merci",
    f"voici mon ordonnance {group(IDENT)}",
    IDENT,
    f"n°{IDENT}.",
    f"{IDENT[:6]}-{IDENT[6:12]}-{IDENT[12:]}",
    f"{IDENT[:9]} {IDENT[9:]}",
    f"Bonjour\n{group(IDENT)}\nCordialement",
])
def test_found_grouped_or_not(text: str) -> None:
    assert IDENT in identifiers_in(text)


@pytest.mark.parametrize("text", [
    f"{IDENT[:4]} {IDENT[4:]}",  # groups of different sizes
    f"x{IDENT}",  # glued to a word: 19 characters
    IDENT[:-1] + ("1" if IDENT[-1] != "1" else "2"),  # wrong check character
    "voici mon ordonnance",  # 5 + 3 + 10 letters
    "",
])
def test_not_found(text: str) -> None:
    assert identifiers_in(text) == []


def test_a_chance_look_alike_before_the_real_one_is_listed_first() -> None:
    # "est" + the first five groups passes the check character once in 37: both are listed,
    # in order, and the flows try them against the registry.
    for _ in range(5000):
        ident = new_identifier()
        if check_identifier("EST" + ident[:15]).ok:
            break
    else:
        pytest.fail("no look-alike in 5000 tries (expected one in 37)")
    found = identifiers_in(f"Le numero est {group(ident)}")
    assert found == ["EST" + ident[:15], ident]


def test_several_identifiers_in_order_once_each() -> None:
    other = new_identifier()
    text = f"{group(IDENT)} et {other} ; encore {IDENT}"
    assert identifiers_in(text) == [IDENT, other]
