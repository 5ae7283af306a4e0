import itertools
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.prescriptions.identifier import (
    ALPHABET,
    LENGTH,
    check_character,
    check_identifier,
    group,
    new_identifier,
)


def test_new_identifiers_are_well_formed_and_distinct():
    ids = {new_identifier() for _ in range(2000)}
    assert len(ids) == 2000
    for ident in itertools.islice(ids, 200):
        assert len(ident) == LENGTH and set(ident) <= set(ALPHABET)
        assert check_identifier(ident).ok


def test_every_single_substitution_is_caught():
    ident = new_identifier()
    for i in range(LENGTH):
        for c in ALPHABET:
            if c != ident[i]:
                typo = ident[:i] + c + ident[i + 1 :]
                assert not check_identifier(typo).ok, typo


@settings(max_examples=300)
@given(st.text(alphabet=ALPHABET, min_size=LENGTH - 1, max_size=LENGTH - 1))
def test_every_adjacent_swap_is_caught(body):
    try:
        ident = body + check_character(body)
    except ValueError:  # such a body is never issued
        return
    assert check_identifier(ident).ok
    for i in range(LENGTH - 1):
        if ident[i] != ident[i + 1]:
            swapped = ident[:i] + ident[i + 1] + ident[i] + ident[i + 2 :]
            assert not check_identifier(swapped).ok


def test_reasons_and_tolerant_input():
    ident = new_identifier()
    assert check_identifier(group(ident).lower()).ok
    assert check_identifier("-".join(group(ident).split())).ok
    assert "18 characters" in check_identifier(ident[:-1]).reason
    assert "only 0-9 and A-Z" in check_identifier(ident[:-1] + "*").reason
    wrong = ident[:-1] + ("0" if ident[-1] != "0" else "1")
    assert "check character" in check_identifier(wrong).reason


def test_known_hard_swap_is_caught():
    # MOD 37,36 accepts both of these; MOD 37-2 must not.
    ident = "D000000100000000" + "0"
    ident = ident + check_character(ident)
    assert check_identifier(ident).ok
    assert not check_identifier(ident[:6] + "10" + ident[8:]).ok


def test_matches_reference_mod_37_2():
    # ISO 7064 MOD 37-2 worked example: "G123498654321" has check "H".
    assert check_character("G123498654321") == "H"


def test_group_for_reading_aloud():
    assert group("01S2TBPZ2JCNZZYGHZ") == "01S 2TB PZ2 JCN ZZY GHZ"


def test_cli_check_id():
    ident = new_identifier()
    ok = subprocess.run(
        [sys.executable, "-m", "gateway", "prescriptions", "check-id", group(ident)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "well-formed" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "gateway", "prescriptions", "check-id", ident[:-1] + "?"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "only 0-9 and A-Z" in bad.stdout
