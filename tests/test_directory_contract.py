"""The `Directory` contract, through the Python API: what every implementation must do.

Parametrised by storage backend (tests/conftest.py STORAGE_BACKENDS: the embedded SQLite one
today); a PostgreSQL backend adds its factory there and must pass unchanged.
"""

from __future__ import annotations

from datetime import date

import pytest

from gateway.directory.model import (
    Application,
    MailboxKind,
    MailboxState,
    Organisation,
    OrganisationKind,
    Patient,
    Professional,
)
from gateway.directory.repository import DuplicateMailbox, UnknownMailbox
from gateway.errors import Conflict, GatewayError, InvalidIdentifier

D = "test.localhost"  # the storage fixture's gateway domain


@pytest.fixture
def directory(storage):
    d = storage.directory("test")
    d.register_own_domains([D, f"patient.{D}"])
    yield d
    d.close()


PHARMACY = Organisation(
    finess="750712184", siret=None, name="Pharmacie", kind=OrganisationKind.PHARMACY
)
DOCTOR = Professional(rpps="10003829917", adeli=None, family_name="House", given_name="Greg",
                      profession="10", specialty="SM26")
PATIENT = Patient(ins="279035121518989", birth_name="DUPONT", given_names="Chloé Marie", sex="F",
                  birth_date=date(1979, 3, 15), birth_place="51215")


def test_mailbox_life_cycle(directory):
    pharmacy = directory.add_organisation(f"Pharma@{D}", PHARMACY)
    assert pharmacy.address == f"pharma@{D}" and pharmacy.is_pharmacy
    doctor = directory.add_professional(
        f"dr@{D}", Professional(**{**DOCTOR.__dict__, "structure": f"pharma@{D}"})
    )
    assert doctor.kind is MailboxKind.PER and doctor.display_name == "Greg House"
    patient = directory.add_patient(PATIENT)
    assert patient.address == f"279035121518989@patient.{D}"
    robot = directory.add_application(f"robot@{D}", Application("Robot"))
    assert robot.application == Application("Robot")

    assert directory.get(f"DR@{D}") == doctor
    assert directory.require(f"dr@{D}") == doctor
    assert directory.get(f"nobody@{D}") is None
    with pytest.raises(UnknownMailbox):
        directory.require(f"nobody@{D}")
    assert directory.find_by_rpps("100 038 299 17") == doctor
    assert directory.find_by_ins("279035121518989") == patient
    assert directory.find_by_finess("750712184") == [pharmacy]
    assert directory.find_by_adeli("123456782") is None

    assert [m.address for m in directory.list_mailboxes(kind=MailboxKind.PER)] == [f"dr@{D}"]
    assert [m.address for m in directory.list_mailboxes(search="chloe")] == [patient.address]
    assert len(directory.list_mailboxes(domain=D)) == 3

    updated = directory.update(f"dr@{D}", given_name="Gregory", specialty=None)
    assert updated.professional.given_name == "Gregory" and updated.professional.specialty is None
    assert updated.display_name == "Gregory House"

    assert directory.suspend(f"dr@{D}").state is MailboxState.SUSPENDED
    assert directory.list_mailboxes(state=MailboxState.SUSPENDED)[0].address == f"dr@{D}"
    with pytest.raises(Conflict):
        directory.suspend(f"dr@{D}")
    assert directory.resume(f"dr@{D}").active

    with pytest.raises(Conflict):
        directory.delete(f"pharma@{D}")  # the doctor practises there
    directory.delete(f"dr@{D}")
    directory.delete(f"pharma@{D}")
    assert directory.get(f"dr@{D}") is None


def test_refusals_change_nothing(directory):
    directory.add_professional(f"dr@{D}", DOCTOR)
    before = directory.list_mailboxes()
    for call in (
        lambda: directory.add_professional(f"dr@{D}", DOCTOR),
        lambda: directory.add_professional(f"other@{D}", DOCTOR),
        lambda: directory.add_professional(f"x@{D}", Professional(**{**DOCTOR.__dict__,
                                                                   "rpps": "10003829916"})),
        lambda: directory.add_patient(Patient(**{**PATIENT.__dict__, "sex": "M"})),
        lambda: directory.add_application("robot@elsewhere.example", Application("R")),
        lambda: directory.update(f"dr@{D}", rpps="123"),
        lambda: directory.update(f"dr@{D}", structure=f"nowhere@{D}"),
        lambda: directory.set_password(f"dr@{D}", "short"),
    ):
        with pytest.raises(GatewayError):
            call()
    assert directory.list_mailboxes() == before
    with pytest.raises(DuplicateMailbox):
        directory.add_professional(f"other@{D}", DOCTOR)
    with pytest.raises(InvalidIdentifier):
        directory.find_by_ins("279035121518988")


def test_passwords_and_credentials(directory):
    directory.add_application(f"robot@{D}", Application("Robot"))
    assert directory.credentials(f"robot@{D}").password_hash is None
    assert not directory.verify_password(f"robot@{D}", "")
    directory.set_password(f"robot@{D}", "a long enough password")
    assert directory.verify_password(f"ROBOT@{D}", "a long enough password")
    assert not directory.verify_password(f"robot@{D}", "a long enough passwor")
    assert directory.get(f"robot@{D}").has_password
    directory.suspend(f"robot@{D}")
    assert directory.credentials(f"robot@{D}").state is MailboxState.SUSPENDED
    assert not directory.verify_password(f"robot@{D}", "a long enough password")
    assert directory.credentials(f"ghost@{D}") is None


def test_domains(directory):
    assert directory.register_own_domains([D]) == []  # idempotent
    assert directory.is_own_domain(D) and directory.is_trusted_domain(f"patient.{D}")
    dn = "CN=mx.peer.fr,O=Peer,C=FR"
    peer = directory.add_domain("peer.fr", [dn], description="A peer")
    assert peer.operator_dn == dn and peer.operator_dns == (dn,) and not peer.ours
    assert directory.expected_operator_dn("peer.fr") == dn
    assert directory.peer_certificate_matches("peer.fr", "cn=mx.peer.fr, o=Peer, c=FR")
    assert directory.is_trust_space_operator(dn)
    assert [d.name for d in directory.list_domains(ours=False)] == ["peer.fr"]
    assert [d.name for d in directory.list_domains(search="peer")] == ["peer.fr"]
    directory.remove_domain("peer.fr")
    assert not directory.is_trusted_domain("peer.fr")
    assert directory.get_domain("peer.fr") is None
    assert directory.whitelist_generated() is None


def test_listings_are_searched_cut_and_counted_by_the_store(directory):
    """Operators have hundreds of thousands of mailboxes: the store searches, counts and cuts
    the window (what the API and the console page through), in address order."""
    from annuaire_helpers import luhn_complete

    directory.add_organisation(f"pharma@{D}", PHARMACY)
    for i in range(12):
        rpps = luhn_complete(f"1000382{i:03d}")
        directory.add_professional(f"dr.{i:02d}@{D}", Professional(
            **{**DOCTOR.__dict__, "rpps": rpps, "family_name": "Martin" if i % 3 else "Durand",
               "given_name": f"Prénom{i}"}))
    directory.add_patient(PATIENT)
    directory.suspend(f"dr.05@{D}")
    everyone = [m.address for m in directory.list_mailboxes()]
    assert everyone == sorted(everyone) and len(everyone) == 14
    window = directory.list_mailboxes(kind=MailboxKind.PER, offset=4, limit=5)
    assert [m.address for m in window] == [f"dr.{i:02d}@{D}" for i in range(4, 9)]
    assert directory.list_mailboxes(kind=MailboxKind.PER, offset=10, limit=5)[-1].address == (
        f"dr.11@{D}")
    assert directory.list_mailboxes(offset=14, limit=5) == []
    assert len(directory.list_mailboxes(offset=3)) == 11  # an offset without a limit
    assert directory.count_mailboxes() == 14
    assert directory.count_mailboxes(kind=MailboxKind.PER) == 12
    assert directory.count_mailboxes(state=MailboxState.SUSPENDED) == 1
    assert directory.count_mailboxes(domain=f"patient.{D}") == 1
    # Search: every word, accents and case folded, in names, addresses and identifiers.
    durand = [m.address for m in directory.list_mailboxes(search="DURAND prénom", limit=2)]
    assert durand == [f"dr.00@{D}", f"dr.03@{D}"]
    assert directory.count_mailboxes(search="durand prenom") == 4
    assert directory.count_mailboxes(search="martin dr.1") == 2  # dr.10 and dr.11
    assert directory.count_mailboxes(search="100_382") == 0  # LIKE's wildcards are literal
    assert directory.count_mailboxes(search="1000382007") == 1  # an RPPS, partly
    assert directory.count_by_kind() == {MailboxKind.PER: 12, MailboxKind.ORG: 1,
                                         MailboxKind.PATIENT: 1}
