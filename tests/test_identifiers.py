import pytest

from gateway import identifiers as ids
from gateway.errors import InvalidIdentifier


@pytest.mark.parametrize("value", ["10003829917", "10101234564"])
def test_rpps_valid(value):
    assert ids.luhn_valid(value)
    assert ids.rpps(value) == value


@pytest.mark.parametrize(
    "value,rule",
    [
        ("1000382991", "11 digits"),
        ("1000382991A", "11 digits"),
        ("10003829916", "Luhn"),
    ],
)
def test_rpps_invalid(value, rule):
    with pytest.raises(InvalidIdentifier, match=rule) as exc:
        ids.rpps(value)
    assert exc.value.field == "rpps"


def test_ins_valid_reference_example():
    assert ids.ins("279035121518989") == "279035121518989"
    assert ids.ins("2 79 03 51 215 189 89") == "279035121518989"


def test_ins_corsica():
    body = "185022A123456"
    key = ids.ins_key(body)
    assert ids.ins(f"{body}{key:02d}") == f"{body}{key:02d}"
    body_b = "185022B123456"
    assert ids.ins(f"{body_b}{ids.ins_key(body_b):02d}")
    assert ids.ins_key(body) != ids.ins_key(body_b)


@pytest.mark.parametrize(
    "value,rule",
    [
        ("279035121518988", "key does not match"),
        ("27903512151898", "15 characters"),
        ("579035121518989", "15 characters"),
        ("279135121518989", "not a valid INS month"),
    ],
)
def test_ins_invalid(value, rule):
    with pytest.raises(InvalidIdentifier, match=rule):
        ids.ins(value)


def test_finess():
    assert ids.finess("750712184") == "750712184"
    with pytest.raises(InvalidIdentifier, match="Luhn"):
        ids.finess("750712185")
    with pytest.raises(InvalidIdentifier, match="9 characters"):
        ids.finess("75071218")


def test_siret():
    assert ids.siret("73282932000074")
    with pytest.raises(InvalidIdentifier, match="Luhn"):
        ids.siret("73282932000075")
    assert ids.siret("35600000000047")  # La Poste: digit sum multiple of 5


def test_cis_and_cip13():
    assert ids.cis("60234100") == "60234100"
    with pytest.raises(InvalidIdentifier, match="starting with 6"):
        ids.cis("50234100")
    assert ids.cip13("3400930000007"[:12] + str(ids.ean13_check_digit("340093000000")))
    with pytest.raises(InvalidIdentifier, match="EAN-13"):
        ids.cip13("3400936185001")


def test_national_ids():
    assert ids.national_professional_id("10003829917") == "810003829917"
    assert ids.national_structure_id("750712184") == "1750712184"
