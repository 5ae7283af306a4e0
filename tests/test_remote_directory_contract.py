"""The `Directory` contract for mailboxes hosted by other operators (remote entries): what every
implementation must do, parametrised by storage backend like tests/test_directory_contract.py.

Remote entries are kept apart from mailboxes: they never log in and hold no mail here; an
administrator's entry is never replaced or removed by an import of the national list."""

from __future__ import annotations

import pytest

from gateway.directory.model import RemoteEntry, RemoteKind
from gateway.directory.repository import DuplicateMailbox, UnknownMailbox
from gateway.errors import Conflict, GatewayError, InvalidIdentifier
from tests.annuaire_helpers import luhn_complete

D = "test.localhost"
PEER = "peer.localhost"
OTHER = "autre.localhost"


@pytest.fixture
def directory(storage):
    d = storage.directory("test")
    d.register_own_domains([D, f"patient.{D}"])
    d.add_domain(PEER, ["CN=mx.peer.localhost,O=Peer Operator,C=FR"])
    d.add_domain(OTHER, ["CN=mx.autre.localhost,O=Autre,C=FR"])
    d.add_domain(f"patient.{PEER}", ["CN=mx.peer.localhost,O=Peer Operator,C=FR"])
    yield d
    d.close()


def pharmacy(address: str = f"pharmacie.du.port@{PEER}", **kw: str) -> RemoteEntry:
    return RemoteEntry(address=address, kind=RemoteKind.PHARMACY,
                       name=kw.pop("name", "Pharmacie du Port"),
                       finess=kw.pop("finess", "750712184"), **kw)  # type: ignore[arg-type]


def doctor(n: int, domain: str = PEER) -> RemoteEntry:
    return RemoteEntry(address=f"dr.{n}@{domain}", kind=RemoteKind.PROFESSIONAL,
                       name=f"Dr Jean Numéro{n}", rpps=luhn_complete(f"1{n:09d}"),
                       profession="10", specialty="SM26")


def test_add_get_list_remove(directory):
    added = directory.add_remote(pharmacy(f"Pharmacie.Du.Port@{PEER}"))
    assert added.address == f"pharmacie.du.port@{PEER}" and added.source == "manual"
    assert added.kind is RemoteKind.PHARMACY and added.takes_prescriptions
    assert added.updated_at is not None
    assert directory.get_remote(f"PHARMACIE.du.port@{PEER}") == added
    assert directory.get(added.address) is None  # not a mailbox: no login, no mail
    pro = directory.add_remote(doctor(1))
    assert not pro.takes_prescriptions and pro.rpps == luhn_complete("1000000001")
    pharmacist = directory.add_remote(RemoteEntry(
        address=f"ph.le.gall@{OTHER}", kind=RemoteKind.PROFESSIONAL, name="Mme Anne Le Gall",
        rpps=luhn_complete("1000000002"), profession="21"))
    assert pharmacist.takes_prescriptions  # a pharmacist in person

    assert [e.address for e in directory.list_remote()] == sorted(
        [added.address, pro.address, pharmacist.address])
    assert directory.list_remote(kind=RemoteKind.PHARMACY) == [added]
    assert [e.address for e in directory.list_remote(domain=OTHER)] == [pharmacist.address]
    assert directory.list_remote(search="numero1") == [pro]  # accents and case folded
    assert directory.list_remote(search="750712184") == [added]
    assert len(directory.list_remote(limit=2)) == 2

    directory.remove_remote(pro.address)
    assert directory.get_remote(pro.address) is None
    with pytest.raises(UnknownMailbox):
        directory.remove_remote(pro.address)


def test_add_refuses_what_is_not_a_remote_entry(directory):
    before = directory.list_remote()
    refusals = [
        (pharmacy(f"pharmacie@{D}"), "one of our own domains"),
        (pharmacy(f"pharmacie@patient.{D}"), "one of our own domains"),
        (pharmacy(f"x@patient.{PEER}"), "patients' domain"),
        (pharmacy("pharmacie@gmail.com"), "not a trust-space domain"),
        (pharmacy(finess="750712185"), "check digit"),
        (pharmacy(finess=""), "needs a FINESS"),
        (RemoteEntry(address=f"dr@{PEER}", kind=RemoteKind.PROFESSIONAL, name="Dr X"), "RPPS"),
        (RemoteEntry(address=f"dr@{PEER}", kind="clinic", name="X",  # type: ignore[arg-type]
                     finess="750712184"), "kind"),
        (pharmacy(name=" "), "name"),
        (pharmacy("not an address"), "email"),
    ]
    for entry, words in refusals:
        with pytest.raises(GatewayError, match=words):
            directory.add_remote(entry)
    directory.add_remote(pharmacy())
    with pytest.raises(DuplicateMailbox):
        directory.add_remote(pharmacy(name="Pharmacie du Port bis"))
    assert [e.address for e in directory.list_remote()] == [
        *[e.address for e in before], f"pharmacie.du.port@{PEER}"]


def test_import_adds_updates_removes_and_keeps_manual_entries(directory):
    first = [doctor(n) for n in range(1, 11)] + [pharmacy()]
    result = directory.import_remote(first, source_name="list-1.txt")
    assert (result.added, result.updated, result.removed, result.entries) == (11, 0, 0, 11)
    assert all(e.source == "annuaire" for e in directory.list_remote())

    # An administrator corrects one entry: imports leave it alone from now on.
    directory.add_remote(pharmacy(name="Pharmacie du Port (corrigée)"))
    renamed = RemoteEntry(**{**doctor(3).__dict__, "name": "Dr Jean Renommé"})
    second = [doctor(n) for n in range(2, 11) if n != 3] + [
        renamed, pharmacy(), doctor(11), doctor(12, OTHER), pharmacy(f"pharmacie@{D}")]
    result = directory.import_remote(second, source_name="list-2.txt")
    assert result.added == 2 and result.updated == 1 and result.removed == 1
    assert result.manual == 1 and result.ours == 1 and result.unchanged == 8
    assert directory.get_remote(doctor(1).address) is None
    assert directory.get_remote(doctor(3).address).name == "Dr Jean Renommé"
    kept = directory.get_remote(pharmacy().address)
    assert kept.source == "manual" and kept.name == "Pharmacie du Port (corrigée)"
    assert directory.get_remote(f"pharmacie@{D}") is None

    # The same list again changes nothing.
    again = directory.import_remote(second, source_name="list-2.txt")
    assert (again.added, again.updated, again.removed) == (0, 0, 0)


def test_import_refuses_invalid_entries_and_large_removals_whole(directory):
    directory.import_remote([doctor(n) for n in range(1, 21)])
    before = directory.list_remote()
    with pytest.raises(InvalidIdentifier):
        directory.import_remote([doctor(1), pharmacy(finess="750712185")])
    with pytest.raises(Conflict, match="would remove 18 of the 20"):
        directory.import_remote([doctor(1), doctor(2)])
    assert directory.list_remote() == before
    result = directory.import_remote([doctor(1), doctor(2)], allow_removals=True)
    assert result.removed == 18 and len(directory.list_remote()) == 2


def test_import_counts_domains_outside_the_trust_space(directory):
    result = directory.import_remote([doctor(1), doctor(2, "ailleurs.localhost")])
    assert result.added == 2 and result.outside_trust_space == 1
    assert directory.get_remote("dr.2@ailleurs.localhost") is not None
