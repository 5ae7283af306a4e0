"""flows.remote's pure parts: who is a patient elsewhere, the identity-trait lines of a form."""

from __future__ import annotations

import pytest

from gateway.config import config_from_dict
from gateway.flows import remote


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return config_from_dict({"gateway": {"domain": "test.localhost"}},
                            tmp_path_factory.mktemp("remote"))


@pytest.mark.parametrize("address, elsewhere", [
    ("185072901912347@patient.peer.localhost", True),
    ("18507290191234@patient.peer.localhost", False),  # 14 characters: not an INS
    ("185072a01912347@patient.peer.localhost", True),  # Corsica's 2A/2B, lower-cased
    ("185072901912347@patient.test.localhost", False),  # ours
    ("185072901912347@peer.localhost", False),  # not a patients' domain
    ("dr.house@patient.peer.localhost", False),
    ("nobody", False),
])
def test_is_remote_patient(config, address, elsewhere):
    assert remote.is_remote_patient(config, address) is elsewhere


def test_trait_lines_are_read_and_blanked_keeping_line_numbers():
    text = ("Bonjour,\nPatient : INS 185072901912347\nNom de naissance : LE GOFF\n"
            "PRÉNOMS: Yann Pierre\nsexe : m\nDate de naissance : 14/07/1985\n"
            "Lieu de naissance : 29019\n1. DOLIPRANE ; 2 boîtes\n-- \nNom : signature\n")
    rest, found = remote._traits(text)
    assert found == {"birth_name": (3, "LE GOFF"), "given_names": (4, "Yann Pierre"),
                     "sex": (5, "m"), "birth_date": (6, "14/07/1985"),
                     "birth_place": (7, "29019")}
    assert rest.split("\n")[:8] == ["Bonjour,", "Patient : INS 185072901912347", "", "", "",
                                    "", "", "1. DOLIPRANE ; 2 boîtes"]
    assert "Nom : signature" in rest  # after the signature line: not the form's


def test_traits_are_checked_like_the_directorys():
    problems: list = []
    found = {"birth_name": (3, "LE GOFF"), "given_names": (4, "Yann"), "sex": (5, "X"),
             "birth_date": (6, "31/02/1985"), "birth_place": (7, "29019")}
    assert remote._remote_patient("185072901912347@patient.peer.localhost", found,
                                  "1.2.250.1.213.1.4.10", problems) is None
    assert [p.line for p in problems] == [5, 6]
    problems = []
    found.update(sex=(5, "M"), birth_date=(6, "14/07/1985"))
    patient = remote._remote_patient("185072901912347@patient.peer.localhost", found,
                                     "1.2.250.1.213.1.4.10", problems)
    assert problems == [] and patient is not None and patient.sex == "M"
    assert patient.ins == "185072901912347" and patient.birth_place == "29019"
