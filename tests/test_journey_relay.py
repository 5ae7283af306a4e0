"""Mail from another trust-space operator through the real relay listener (mutual TLS with the
peer's server certificate): a lab report or a prescription package relayed to one of our
patients is delivered as sent and filed in the patient's DMP."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.policy import SMTP
from pathlib import Path

import pytest

from gateway import pki
from gateway.config import Config
from gateway.directory import open_directory
from gateway.pki.files import Layout
from gateway.pki.kinds import CA
from gateway.pki.tls import client_context
from tests.journey_helpers import (
    PATIENT,
    Gateway,
    attachment,
    form_message,
    make_home,
    running,
    text_of,
)
from tests.pki_helpers import config_of
from tests.smtp_helpers import PASSWORD

PEER_DN = "CN=mx.peer.localhost,O=Peer Operator,C=FR"
HOUSE = "dr.house@peer.localhost"
LAB = "xdm-examples/BIO-CR-BIO_2024.01_TSH_1/IHE_XDM.ZIP"


@pytest.fixture(scope="module")
def peered(tmp_path_factory: pytest.TempPathFactory, _gateway_template: Path,
           _peer_template: Path, shared_dir: Path) -> Iterator[tuple[Gateway, Config]]:
    """The demo gateway, trusting peer.localhost's operator (its CAs, its DN in the whitelist)
    before it starts, as `mssgw pki import-anchor` and the whitelist import would; the peer
    trusts ours."""
    import shutil

    base = tmp_path_factory.mktemp("relay-journey")
    home = make_home(_gateway_template, base / "gw", shared_dir)
    shutil.copytree(_peer_template, base / "peer", symlinks=True)
    config, peer = config_of(home), config_of(base / "peer")
    for ca in (CA.ROOT, CA.SERVERS):
        pki.add_anchor(config, Layout.of(peer).ca_cert(ca).read_bytes())
    pki.add_anchor(peer, Layout.of(config).ca_cert(CA.ROOT).read_bytes())
    open_directory(config, actor="test").add_domain("peer.localhost", [PEER_DN])
    with running(home) as gw:
        yield gw, peer


def relay(gw: Gateway, peer: Config, data: bytes, to: str = PATIENT) -> None:
    with smtplib.SMTP("127.0.0.1", gw.smtp.ports["relay"], timeout=30) as c:
        c.starttls(context=client_context(peer, check_hostname=False))
        c.ehlo("mx.peer.localhost")
        assert c.sendmail(HOUSE, [to], data) == {}


def filed(gw: Gateway, ins: str = "279035121518989") -> list[str]:
    from gateway.dmp import Actor, open_dmp

    dmp = open_dmp(gw.config)
    try:
        return [e.metadata.unique_id for e in dmp.find(ins, actor=Actor.admin("test"))]
    finally:
        dmp.close()


def test_relayed_package_to_our_patient_is_delivered_and_filed(peered, shared_dir: Path) -> None:
    from gateway.xdm import read_package

    gw, peer = peered
    package = (shared_dir / LAB).read_bytes()
    unique_id = read_package(package).content[0].entry.unique_id
    msg = form_message(HOUSE, PATIENT, "Bonjour, voici vos résultats.\n",
                       subject="Compte rendu de biologie")
    msg.add_attachment(package, maintype="application", subtype="zip", filename="IHE_XDM.zip")
    assert unique_id not in filed(gw)
    before = len(gw.fetch_all(PATIENT))
    relay(gw, peer, msg.as_bytes(policy=SMTP))
    got = gw.wait_for(PATIENT, before + 1)[-1]
    assert got["Subject"] == "Compte rendu de biologie" and got["From"] == HOUSE
    assert attachment(got, "IHE_XDM.zip") == package  # delivered as sent
    assert unique_id in filed(gw)
    # The peer retries (it did not see our 250): delivered again, filed once.
    relay(gw, peer, msg.as_bytes(policy=SMTP))
    assert filed(gw).count(unique_id) == 1


def test_relayed_package_about_another_patient_is_not_filed(peered, shared_dir: Path) -> None:
    """One patient per message: a package whose INS is not the recipient's stays out of both
    records (the mail is still delivered as sent)."""
    import datetime as dt

    from gateway.directory.model import Patient
    from gateway.xdm import read_package

    gw, peer = peered
    directory = open_directory(gw.config, actor="test")
    brother = directory.add_patient(Patient(
        ins="179035121518942", birth_name="DUPONT", given_names="Paul", sex="M",
        birth_date=dt.date(1979, 3, 15), birth_place="51215")).address
    directory.set_password(brother, PASSWORD)
    package = (shared_dir / LAB).read_bytes()
    unique_id = read_package(package).content[0].entry.unique_id
    msg = form_message(HOUSE, brother, "Bonjour.\n", subject="Résultats de votre sœur")
    msg.add_attachment(package, maintype="application", subtype="zip", filename="IHE_XDM.zip")
    before = filed(gw)
    relay(gw, peer, msg.as_bytes(policy=SMTP), to=brother)
    assert gw.wait_for(brother, 1)[-1]["Subject"] == "Résultats de votre sœur"
    assert filed(gw) == before and unique_id not in filed(gw, "179035121518942")


def test_relayed_mail_without_package_is_delivered_unchanged(peered) -> None:
    gw, peer = peered
    before = len(gw.fetch_all(PATIENT))
    relay(gw, peer, form_message(HOUSE, PATIENT, "Votre rendez-vous est confirmé.\n",
                                 subject="Rendez-vous").as_bytes(policy=SMTP))
    got = gw.wait_for(PATIENT, before + 1)[-1]
    assert got["Subject"] == "Rendez-vous" and "confirmé" in got.get_body().get_content()


def test_relayed_dispensation_is_refused_with_the_reason(peered) -> None:
    """A pharmacy of another operator mails our robot a dispensation: the registry records
    only pharmacies this gateway hosts, so nothing changes and the pharmacy is told why (the
    answer leaves by the outbound queue); the robot keeps no copy."""
    from gateway.prescriptions.identifier import new_identifier
    from gateway.store.queue import Queue
    from tests.journey_helpers import ROBOT

    gw, peer = peered
    form = f"Ordonnance : {new_identifier()}\n1 : délivré ; 1 boîte\n"
    robot_before = len(gw.fetch_all(ROBOT))
    queue = Queue(gw.config.queue_path)
    before = set(queue.ids()) if gw.config.queue_path.exists() else set()
    relay(gw, peer, form_message(HOUSE, ROBOT, form, subject="Délivrance").as_bytes(policy=SMTP),
          to=ROBOT)
    new = [queue.load(i) for i in set(queue.ids()) - before]
    answers = [r for r in new if [x.address for x in r.recipients] == [HOUSE]]
    assert len(answers) == 1
    answer = message_from_bytes(queue.message(answers[0].id), policy=policy.default)
    assert answer["Subject"] == "La délivrance n'a pas été enregistrée"
    assert "autre opérateur" in text_of(answer)  # type: ignore[arg-type]
    assert len(gw.fetch_all(ROBOT)) == robot_before
