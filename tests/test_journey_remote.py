"""The prescription journey across the trust space: two gateways on loopback, each with its own
CA and domains, each trusting the other's CA and server certificate DN (the whitelist model),
their queues delivering to each other's relay listener over mutual TLS.

- "ours" (test.localhost, the demo population: Dr Martin, the Pharmacie Centrale and its
  pharmacist) and "peer" (peer.localhost: another operator whose patients' domain is
  patient.peer.localhost, with a doctor of its own);
- the doctor prescribes to a patient hosted by the peer, who forwards it back to our pharmacy
  (as an attachment and inline); the pharmacy sees the verdict, dispenses, and the patient's
  copy goes back through the relay;
- a prescription the peer's gateway registered, forwarded to our pharmacy: verified as
  registered elsewhere, dispensed here, its prescriber told through the relay;
- every refusal: unknown traits, traits against the INS, a wrong INS key, an altered package
  through the relay, a peer outside the whitelist, a peer claiming another operator's domain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import shutil
import smtplib
import time
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid
from pathlib import Path

import pytest

from gateway import pki
from gateway.cli import main
from gateway.config import Config, load_config
from gateway.directory import open_directory
from gateway.directory.demo import PHARMACY_FINESS
from gateway.directory.model import Patient, RemoteEntry, RemoteKind
from gateway.pki.dn import subject_dn
from gateway.pki.files import Layout
from gateway.pki.kinds import CA
from gateway.pki.tls import client_context
from gateway.store.queue import Queue
from tests.imap_helpers import running_server
from tests.imap_helpers import test_config as listeners_config
from tests.journey_helpers import (
    DOCTOR,
    PHARMACIST,
    PHARMACY,
    ROBOT,
    Gateway,
    attachment,
    make_home,
    text_of,
)
from tests.pki_helpers import leaf
from tests.smtp_helpers import PASSWORD, SMTP_TEST_SETTINGS, ServerThread

PEER = "peer.localhost"
PEER_PATIENTS = f"patient.{PEER}"
PEER_DN = "CN=mx.peer.localhost,O=Peer Operator,C=FR"
PEER_DOCTOR = f"dr.martin@{PEER}"  # the peer's demo doctor
PEER_PHARMACIST = f"ph.durand@{PEER}"  # the peer's demo pharmacist
YANN_INS = "185072901912347"  # male, born 07/1985 in Brest (29019)
YANN = f"{YANN_INS}@{PEER_PATIENTS}"
TRAITS = ("Nom de naissance : LE GOFF\nPrénoms : Yann Pierre\nSexe : M\n"
          "Date de naissance : 14/07/1985\nLieu de naissance : 29019\n")
LINES = ("1. DOLIPRANE 1000 mg, comprimé ; 1 comprimé 3 fois par jour pendant 5 jours ;"
         " 2 boîtes\n")


@dataclass
class Operators:
    ours: Gateway
    peer: Gateway
    our_dn: str


def _peer_home(template: Path, target: Path, shared: Path) -> Path:
    """The peer operator: its own CA (the session's peer template), its demo population, the
    drug reference, and a patient of its own."""
    from gateway.db import connect
    from gateway.drugs.store import import_directory

    shutil.copytree(template, target, symlinks=True)
    cfg = target / "config.toml"
    cfg.write_text(cfg.read_text().replace("[gateway]\n", "[gateway]\nworkers = 1\n", 1)
                   + "[smtp]\n" + "".join(f"{k} = {v}\n" for k, v in SMTP_TEST_SETTINGS.items()))
    assert main(["init", "--demo", "--config", str(cfg)]) == 0
    config = load_config(cfg)
    directory = open_directory(config, actor="test")
    directory.add_patient(Patient(ins=YANN_INS, birth_name="LE GOFF", given_names="Yann Pierre",
                                  sex="M", birth_date=dt.date(1985, 7, 14),
                                  birth_place="29019"))
    for address in (PEER_DOCTOR, YANN, f"ordonnances@{PEER}", PEER_PHARMACIST):
        directory.set_password(address, PASSWORD)
    conn = connect(config.database_path)
    import_directory(conn, shared / "bdpm")
    conn.close()
    return target


def _trust(config: Config, other: Config, domains: tuple[str, ...], dn: str) -> None:
    """`config`'s operator trusts `other`'s: its CAs as anchors, its domains with its DN."""
    for ca in (CA.ROOT, CA.SERVERS):
        pki.add_anchor(config, Layout.of(other).ca_cert(ca).read_bytes())
    directory = open_directory(config, actor="test")
    for domain in domains:
        directory.add_domain(domain, [dn])


@contextmanager
def _running(home: Path) -> Iterator[Gateway]:
    """SMTP with the queue runner (mail leaves for the other operator), and IMAP."""
    config = listeners_config(home)
    with ServerThread(config, runner=True) as smtp, running_server(home) as imap:
        yield Gateway(config, smtp, imap)


@pytest.fixture(scope="module")
def operators(tmp_path_factory: pytest.TempPathFactory, _gateway_template: Path,
              _peer_template: Path, shared_dir: Path) -> Iterator[Operators]:
    from gateway.pki.ca import server_credentials

    base = tmp_path_factory.mktemp("two-operators")
    ours_home = make_home(_gateway_template, base / "ours", shared_dir)
    peer_home = _peer_home(_peer_template, base / "peer", shared_dir)
    ours, peer = load_config(ours_home / "config.toml"), load_config(peer_home / "config.toml")
    our_dn = subject_dn(leaf(server_credentials(ours).cert_path).subject)
    _trust(ours, peer, (PEER, PEER_PATIENTS), PEER_DN)
    _trust(peer, ours, ("test.localhost", "patient.test.localhost"), our_dn)
    # The peer knows our pharmacy (as the national list of MSSanté mailboxes would tell it):
    # its patients may send it their prescriptions.
    open_directory(peer, actor="test").add_remote(RemoteEntry(
        address=PHARMACY, kind=RemoteKind.PHARMACY, name="Pharmacie Centrale",
        finess=PHARMACY_FINESS))
    with ExitStack() as stack:
        a = stack.enter_context(_running(ours_home))
        b = stack.enter_context(_running(peer_home))
        # Each queue sends the other's domains to its relay listener (ports are ephemeral, so
        # the routes are set once both listen; the runner reads them at each attempt).
        relay_a, relay_b = a.smtp.ports["relay"], b.smtp.ports["relay"]
        for domain in (PEER, PEER_PATIENTS):
            a.smtp.runtime.config.smtp.routes[domain] = f"127.0.0.1:{relay_b}"
        for domain in ("test.localhost", "patient.test.localhost"):
            b.smtp.runtime.config.smtp.routes[domain] = f"127.0.0.1:{relay_a}"
        yield Operators(a, b, our_dn)


def mail(sender: str, to: str, body: str, subject: str = "Ordonnance") -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    msg.set_content(body)
    return msg


def count(gw: Gateway, user: str) -> int:
    return len(gw.fetch_all(user))


def arrives(gw: Gateway, user: str, before: int, timeout: float = 60) -> EmailMessage:
    """The next message in `user`'s inbox (through the queue and the other relay: seconds)."""
    got = gw.wait_for(user, before + 1, timeout=timeout)
    assert len(got) > before, f"nothing new for {user} after {timeout} s"
    return got[-1]


def forward(gw: Gateway, patient: str, original: EmailMessage, *, inline: bool = False,
            body: str = "Bonjour, voici mon ordonnance.\n") -> None:
    """The patient, logged in at their own operator, forwards to our pharmacy."""
    fwd = mail(patient, PHARMACY, body, subject="Fwd: " + str(original["Subject"]))
    if inline:
        fwd.set_content(body + "\n---------- Message transféré ----------\n" + text_of(original))
        for part in original.iter_attachments():
            fwd.add_attachment(part.get_payload(decode=True), maintype="application",
                               subtype=part.get_content_subtype(), filename=part.get_filename())
    else:
        fwd.add_attachment(original)
    gw.send(patient, fwd)


def verdict(msg: EmailMessage) -> str:
    return " ".join(str(msg["X-Ordonnance-Verification"]).split())


def dispense(ops: Operators, identifier: str, body: str = "1 : délivré ; 2 boîtes\n"
             ) -> EmailMessage:
    before = count(ops.ours, PHARMACIST)
    ops.ours.send(PHARMACIST, mail(PHARMACIST, ROBOT, f"Ordonnance : {identifier}\n{body}",
                                   subject="Délivrance"))
    return arrives(ops.ours, PHARMACIST, before)


def prescribe_to_yann(ops: Operators, form: str) -> None:
    ops.ours.send(DOCTOR, mail(DOCTOR, YANN, form))


def test_prescription_to_a_patient_hosted_elsewhere(operators: Operators) -> None:
    """Our doctor prescribes to the peer's patient: the ordonnance is made, signed, registered
    and filed here, and leaves by the queue in the MSSanté format; the receipt says where it
    went. The patient forwards it back to our pharmacy through the peer's gateway and relay
    (as an attachment, then inline); the pharmacy dispenses; the patient's copy goes back."""
    from gateway.prescriptions.registry import open_registry

    ops = operators
    doctor_before, yann_before = count(ops.ours, DOCTOR), count(ops.peer, YANN)
    prescribe_to_yann(ops, f"Patient : INS {YANN_INS}\n{TRAITS}{LINES}")
    receipt = arrives(ops.ours, DOCTOR, doctor_before)
    assert receipt["Subject"].startswith("Ordonnance ") and "enregistrée" in receipt["Subject"]
    identifier = str(receipt["X-Ordonnance-Id"])
    assert YANN in text_of(receipt) and "autre opérateur" in text_of(receipt)
    assert PEER_PATIENTS in text_of(receipt)
    record = open_registry(ops.ours.config).get(identifier, actor="test")
    assert record.patient_address == YANN and record.patient_ins == YANN_INS

    got = arrives(ops.peer, YANN, yann_before)  # through our queue and the peer's relay
    assert got["Subject"] == ("XDM/1.0/DDM+Prescription de produits de santé LE GOFF Yann"
                              " 14/07/1985")
    assert got["From"] == DOCTOR and got["X-MSS-CODECDA"] == "57833-6"
    assert got["X-MSS-INS"] == "O" and got["X-MSS-NIL"]
    assert got["X-Ordonnance-Id"] == identifier
    package = attachment(got, "IHE_XDM.zip")
    from gateway.signature.trust import check_package

    assert check_package(ops.peer.config, package).valid  # the peer trusts our CA
    assert attachment(got, "_Prescription_LE-GOFF_Yann_1.pdf")[:5] == b"%PDF-"

    for inline in (False, True):
        before = count(ops.ours, PHARMACY)
        forward(ops.peer, YANN, got, inline=inline)
        checked = arrives(ops.ours, PHARMACY, before)
        assert verdict(checked).startswith(f"valid; id={identifier}; reason=signature and"
                                           " registry checked"), verdict(checked)
        assert checked["From"] == YANN and "reste 2 boîtes" in text_of(checked)

    yann_before = count(ops.peer, YANN)
    receipt = dispense(ops, identifier)
    assert receipt["Subject"] == f"Délivrance enregistrée : ordonnance {identifier}"
    copy = arrives(ops.peer, YANN, yann_before)
    assert copy["Subject"] == f"Votre ordonnance {identifier} a été délivrée"
    assert attachment(copy, "IHE_XDM.zip")[:2] == b"PK"


def test_prescription_registered_elsewhere_is_checked_dispensed_and_reported(
        operators: Operators) -> None:
    """The peer's doctor prescribes to the peer's patient (registered by the peer's gateway);
    the patient forwards it to our pharmacy: `valid; registry=elsewhere`, said plainly; the
    dispensation is recorded here against the document the patient forwarded, the eDISP
    signed with our pharmacist's certificate, and the prescriber's report goes through the
    relay to the address the document gives."""
    from gateway.prescriptions.registry import open_registry
    from gateway.signature.trust import check_package
    from gateway.xdm import read_package

    ops = operators
    yann_before = count(ops.peer, YANN)
    ops.peer.send(PEER_DOCTOR, mail(PEER_DOCTOR, YANN, f"Patient : INS {YANN_INS}\n{LINES}"))
    got = arrives(ops.peer, YANN, yann_before)
    identifier = str(got["X-Ordonnance-Id"])

    before = count(ops.ours, PHARMACY)
    forward(ops.peer, YANN, got)
    checked = arrives(ops.ours, PHARMACY, before)
    assert verdict(checked) == (f"valid; id={identifier}; registry=elsewhere; reason=signature"
                                " checked, registered elsewhere")
    text = text_of(checked)
    assert "autre opérateur" in text and "ne peut pas l'être d'ici" in text
    assert PEER_DOCTOR in text and "reste 2 boîtes" in text
    record = open_registry(ops.ours.config).get(identifier, actor="test")
    assert record.registered_elsewhere and record.prescriber_address == PEER_DOCTOR
    assert record.lines[0].quantity == 2  # from the signed document

    doctor_before = count(ops.peer, PEER_DOCTOR)
    receipt = dispense(ops, identifier, "1 : délivré ; 1 boîte\n")
    assert "enregistrée par un autre opérateur" in text_of(receipt)
    assert PEER_DOCTOR in text_of(receipt)
    report = arrives(ops.peer, PEER_DOCTOR, doctor_before)
    assert report["Subject"] == f"Délivrance de votre ordonnance {identifier}"
    assert report["From"] == ROBOT and "reste 1 boîte" in text_of(report)
    edisp = attachment(report, "IHE_XDM.zip")
    assert check_package(ops.peer.config, edisp).valid  # signed under our CA, trusted there
    assert any(b"60593-1" in d.data for d in read_package(edisp).content)  # an eDISP

    # A second forward (another of our pharmacies, or later): still elsewhere, one box left.
    before = count(ops.ours, PHARMACY)
    forward(ops.peer, YANN, got)
    again = arrives(ops.ours, PHARMACY, before)
    assert verdict(again).startswith(f"valid; id={identifier}; registry=elsewhere;")
    assert "reste 1 boîte" in text_of(again)


def test_objection_elsewhere_means_no_report(operators: Operators) -> None:
    from gateway.prescriptions.registry import open_registry

    ops = operators
    yann_before = count(ops.peer, YANN)
    ops.peer.send(PEER_DOCTOR, mail(PEER_DOCTOR, YANN, f"Patient : INS {YANN_INS}\n{LINES}"))
    got = arrives(ops.peer, YANN, yann_before)
    identifier = str(got["X-Ordonnance-Id"])
    before = count(ops.ours, PHARMACY)
    forward(ops.peer, YANN, got, body="Bonjour, je m'oppose à ce que mon médecin soit informé.\n")
    arrives(ops.ours, PHARMACY, before)
    assert open_registry(ops.ours.config).get(
        identifier, actor="test").patient_objects_to_feedback
    queue = Queue(ops.ours.config.queue_path)
    receipt = dispense(ops, identifier)
    assert "le patient s'est opposé" in text_of(receipt)
    time.sleep(1.5)  # the queue scans every second: a report would be on its way
    reports = [r for r in queue.records() if PEER_DOCTOR in [x.address for x in r.recipients]]
    assert reports == []


def _refused(ops: Operators, form: str) -> str:
    """The doctor's refusal for `form` to Yann; nothing left for the peer."""
    from gateway.prescriptions.registry import open_registry

    registry = open_registry(ops.ours.config)
    registered = {r.identifier for r in registry.find(actor="test", patient_ins=YANN_INS)}
    doctor_before = count(ops.ours, DOCTOR)
    prescribe_to_yann(ops, form)
    refusal = arrives(ops.ours, DOCTOR, doctor_before)
    assert refusal["Subject"].startswith("Ordonnance refusée"), refusal["Subject"]
    assert {r.identifier for r in registry.find(actor="test", patient_ins=YANN_INS)} \
        == registered
    queued = Queue(ops.ours.config.queue_path).records()
    assert not [r for r in queued if YANN in [x.address for x in r.recipients]]
    return text_of(refusal)


def test_unknown_traits_are_refused(operators: Operators) -> None:
    text = _refused(operators, f"Patient : INS {YANN_INS}\n{LINES}")
    assert "hébergé par un autre opérateur" in text
    assert "Nom de naissance, Prénoms, Sexe, Date de naissance, Lieu de naissance" in text
    text = _refused(operators, f"Patient : INS {YANN_INS}\nNom de naissance : LE GOFF\n{LINES}")
    assert "manque : Prénoms, Sexe, Date de naissance, Lieu de naissance" in text


def test_traits_that_contradict_the_ins_are_refused(operators: Operators) -> None:
    text = _refused(operators, f"Patient : INS {YANN_INS}\n"
                    + TRAITS.replace("Sexe : M", "Sexe : F") + LINES)
    assert "ne correspondent pas à l'INS" in text and "le sexe F" in text
    text = _refused(operators, f"Patient : INS {YANN_INS}\n"
                    + TRAITS.replace("14/07/1985", "14/08/1985") + LINES)
    assert "le mois de naissance 07" in text
    text = _refused(operators, f"Patient : INS {YANN_INS}\n"
                    + TRAITS.replace("29019", "Brest") + LINES)
    assert "Lieu de naissance « Brest »" in text and "code INSEE" in text


def test_wrong_ins_key_is_refused(operators: Operators) -> None:
    ops = operators
    wrong = YANN_INS[:-2] + "00"
    doctor_before = count(ops.ours, DOCTOR)
    ops.ours.send(DOCTOR, mail(DOCTOR, f"{wrong}@{PEER_PATIENTS}",
                               f"Patient : INS {wrong}\n{TRAITS}{LINES}"))
    refusal = arrives(ops.ours, DOCTOR, doctor_before)
    assert refusal["Subject"].startswith("Ordonnance refusée")
    assert "ne porte pas un INS valide" in text_of(refusal)
    assert "la clé (2 derniers chiffres) ne correspond pas" in text_of(refusal)


def _altered(package: bytes) -> bytes:
    """The package with its prescription edited and METADATA.XML's hash brought in line with
    it (what a forger who knows the format does): only the signature can tell."""
    src = zipfile.ZipFile(io.BytesIO(package))
    files = {i.filename: src.read(i) for i in src.infolist()}
    doc = next(name for name in files if name.endswith("DOC0001.XML"))
    old = files[doc]
    new = old.replace(b"DOLIPRANE", b"DOLIPRANF", 1)
    assert new != old
    meta = next(name for name in files if name.endswith("METADATA.XML"))
    before, after = (hashlib.sha1(x).hexdigest().upper().encode() for x in (old, new))
    assert before in files[meta]
    files[meta] = files[meta].replace(before, after)
    files[doc] = new
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for name, data in files.items():
            dst.writestr(name, data)
    return out.getvalue()


def test_altered_package_through_the_relay_is_invalid(operators: Operators) -> None:
    """A forward whose package was edited on the way: the pharmacy is told it is not valid, and
    the patient, at the peer, is told why through the relay."""
    ops = operators
    yann_before = count(ops.peer, YANN)
    ops.peer.send(PEER_DOCTOR, mail(PEER_DOCTOR, YANN, f"Patient : INS {YANN_INS}\n{LINES}"))
    got = arrives(ops.peer, YANN, yann_before)
    for part in got.iter_attachments():
        if part.get_filename() == "IHE_XDM.zip":
            part.set_content(_altered(attachment(got, "IHE_XDM.zip")), maintype="application",
                             subtype="zip", filename="IHE_XDM.zip")
    before, yann_before = count(ops.ours, PHARMACY), count(ops.peer, YANN)
    forward(ops.peer, YANN, got)
    checked = arrives(ops.ours, PHARMACY, before)
    assert verdict(checked).startswith("invalid;") and "altered-document" in verdict(checked)
    notice = arrives(ops.peer, YANN, yann_before)
    assert notice["Subject"] == "Votre ordonnance n'a pas pu être validée"
    assert "modifié ou falsifié" in text_of(notice)


def _relay_as(gw: Gateway, peer: Config, sender: str, to: str, data: bytes
              ) -> tuple[int, bytes]:
    """What our relay listener answers the peer's certificate sending as `sender`."""
    with smtplib.SMTP("127.0.0.1", gw.smtp.ports["relay"], timeout=30) as c:
        c.starttls(context=client_context(peer, check_hostname=False))
        c.ehlo("mx.peer.localhost")
        c.mail(sender)
        code, reply = c.rcpt(to)
        return code, reply


def test_a_peer_outside_the_whitelist_is_refused(operators: Operators) -> None:
    """A third operator, whose CA we trust but whose domain the whitelist does not list, and
    the peer sending as a domain whose listed operator it is not: refused at RCPT, nothing
    reaches the pharmacy."""
    ops = operators
    data = mail(f"{YANN_INS}@patient.autre.localhost", PHARMACY, "Bonjour.\n").as_bytes()
    before = count(ops.ours, PHARMACY)
    code, reply = _relay_as(ops.ours, ops.peer.config, f"{YANN_INS}@patient.autre.localhost",
                            PHARMACY, data)
    assert code == 550 and b"not a domain of the MSSante trust space" in reply
    open_directory(ops.ours.config, actor="test").add_domain(
        "patient.autre.localhost", ["CN=mx.autre.localhost,O=Autre Operateur,C=FR"])
    code, reply = _relay_as(ops.ours, ops.peer.config, f"{YANN_INS}@patient.autre.localhost",
                            PHARMACY, data)
    assert code == 550 and b"is not the operator DN the whitelist lists" in reply
    assert count(ops.ours, PHARMACY) == before


def test_traits_for_one_of_our_patients_must_be_the_directorys(operators: Operators) -> None:
    """Trait lines are accepted for a patient of our own directory too, and checked against
    it: a prescription for the wrong person is not registered."""
    from tests.journey_helpers import PATIENT

    ops = operators
    ours = ("Nom de naissance : Dupont\nPrénoms : Chloé Marie\nSexe : F\n"
            "Date de naissance : 15/03/1979\nLieu de naissance : 51215\n")
    before, doctor_before = count(ops.ours, PATIENT), count(ops.ours, DOCTOR)
    ops.ours.send(DOCTOR, mail(DOCTOR, PATIENT, f"Patient : INS 279035121518989\n{ours}{LINES}"))
    assert arrives(ops.ours, PATIENT, before)["X-Ordonnance-Id"]
    arrives(ops.ours, DOCTOR, doctor_before)
    doctor_before = count(ops.ours, DOCTOR)
    ops.ours.send(DOCTOR, mail(DOCTOR, PATIENT, "Patient : INS 279035121518989\n"
                               + ours.replace("Dupont", "Durand") + LINES))
    refusal = arrives(ops.ours, DOCTOR, doctor_before)
    assert refusal["Subject"].startswith("Ordonnance refusée")
    assert "ligne 2 : Nom de naissance « Durand » ne correspond pas à l'annuaire" in \
        text_of(refusal)
    assert count(ops.ours, PATIENT) == before + 1


def test_a_relay_failure_reaches_the_doctor_as_a_dsn(operators: Operators) -> None:
    """The peer has no mailbox for this patient: its relay refuses the ordonnance (550), and
    our queue tells the doctor with a delivery status notification naming the recipient."""
    ops = operators
    nobody = f"291062901904556@{PEER_PATIENTS}"
    form = ("Patient : INS 291062901904556\nNom de naissance : KERMARREC\nPrénoms : Anne\n"
            "Sexe : F\nDate de naissance : 03/06/1991\nLieu de naissance : 29019\n" + LINES)
    doctor_before = count(ops.ours, DOCTOR)
    ops.ours.send(DOCTOR, mail(DOCTOR, nobody, form, subject="Ordonnance Anne"))
    receipt = arrives(ops.ours, DOCTOR, doctor_before)
    assert "enregistrée" in receipt["Subject"]
    dsn = arrives(ops.ours, DOCTOR, doctor_before + 1)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    raw = dsn.as_string()
    assert f"Final-Recipient: rfc822; {nobody}" in raw and "Action: failed" in raw
    assert "Status: 5.1.1" in raw


def test_our_doctors_unregistered_package_is_not_taken_as_registered_elsewhere(
        operators: Operators, tmp_path: Path) -> None:
    """A package signed under our own CA that our registry does not know (made by hand with
    `mssgw cda build` and `xdm pack --sign-as`, never mailed to a patient) is not a
    prescription registered elsewhere: forwarded through the relay, it is refused as unknown."""
    ops = operators
    cfg = str(ops.ours.config.source)
    form = tmp_path / "form.txt"
    form.write_text(f"Patient : INS {YANN_INS}\n{LINES}")
    # The CLI reads the patient from our directory: register Yann here for the build only.
    directory = open_directory(ops.ours.config, actor="test")
    directory.add_patient(Patient(ins=YANN_INS, birth_name="LE GOFF", given_names="Yann Pierre",
                                  sex="M", birth_date=dt.date(1985, 7, 14), birth_place="29019"))
    try:
        assert main(["cda", "build", str(form), "-o", str(tmp_path / "o.xml"), "--sender",
                     DOCTOR, "--config", cfg]) == 0
        assert main(["xdm", "pack", str(tmp_path / "o.xml"), "-o", str(tmp_path / "x.zip"),
                     "--sign-as", DOCTOR, "--config", cfg]) == 0
    finally:
        directory.delete(f"{YANN_INS}@patient.test.localhost")
    fwd = mail(YANN, PHARMACY, "Bonjour, voici mon ordonnance.\n")
    fwd.add_attachment((tmp_path / "x.zip").read_bytes(), maintype="application",
                       subtype="zip", filename="IHE_XDM.zip")
    before = count(ops.ours, PHARMACY)
    ops.peer.send(YANN, fwd)
    checked = arrives(ops.ours, PHARMACY, before)
    assert verdict(checked).startswith("invalid;") and "unknown identifier" in verdict(checked)
    assert "registry=elsewhere" not in verdict(checked)


def test_a_peer_cannot_forward_as_one_of_our_users(operators: Operators) -> None:
    """The envelope is the peer's patient, but the From: the pharmacist would read is one of
    our own patients: refused at DATA (the peer's certificate vouches only for its domains)."""
    from tests.journey_helpers import PATIENT

    ops = operators
    before = count(ops.ours, PHARMACY)
    with smtplib.SMTP("127.0.0.1", ops.ours.smtp.ports["relay"], timeout=30) as c:
        c.starttls(context=client_context(ops.peer.config, check_hostname=False))
        c.ehlo("mx.peer.localhost")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            c.sendmail(YANN, [PHARMACY],
                       mail(PATIENT, PHARMACY, "Bonjour, voici mon ordonnance.\n").as_bytes(
                           policy=SMTP))
    assert refused.value.smtp_code == 550 and PATIENT.encode() in refused.value.smtp_error
    assert count(ops.ours, PHARMACY) == before


def _actions(config: Config, identifier: str) -> set[tuple[str, str]]:
    """(actor, action) of the audit entries about `identifier`, the test's own reads aside."""
    from gateway import audit

    return {(e.actor, e.action) for e in audit.read(config, target=identifier)
            if e.actor != "test"}


def test_the_audit_trail_of_a_prescription_registered_elsewhere(operators: Operators) -> None:
    """Each operator's audit log says who did and read what: the peer registered it for its
    doctor; here the patient's forward kept and read it, the pharmacy dispensed it."""
    ops = operators
    yann_before = count(ops.peer, YANN)
    ops.peer.send(PEER_DOCTOR, mail(PEER_DOCTOR, YANN, f"Patient : INS {YANN_INS}\n{LINES}"))
    got = arrives(ops.peer, YANN, yann_before)
    identifier = str(got["X-Ordonnance-Id"])
    before = count(ops.ours, PHARMACY)
    forward(ops.peer, YANN, got)
    arrives(ops.ours, PHARMACY, before)
    dispense(ops, identifier, "1 : délivré ; 1 boîte\n")
    assert (PEER_DOCTOR, "prescription.register") in _actions(ops.peer.config, identifier)
    ours = _actions(ops.ours.config, identifier)
    assert {(YANN, "prescription.record-external"), (YANN, "prescription.read"),
            (PHARMACY, "prescription.dispense")} <= ours, ours
    assert (PEER_DOCTOR, "prescription.register") not in ours


def test_our_prescription_dispensed_elsewhere_is_recorded_here(operators: Operators) -> None:
    """Our patient takes our doctor's ordonnance to a pharmacy the peer hosts: verified there
    as registered elsewhere, dispensed there, and its report comes back to our doctor through
    the relay. Our registry records it when the directory knows the sender as a pharmacist
    (the national list) and the eDISP is signed by them: the next forward to our pharmacy
    shows what is left. From a sender the directory does not know, the doctor still gets the
    report, and nothing is recorded."""
    from gateway.directory.demo import PHARMACIST_RPPS
    from gateway.prescriptions.registry import open_registry
    from tests.journey_helpers import PATIENT

    ops = operators
    peer_pharmacist = PEER_PHARMACIST
    directory = open_directory(ops.ours.config, actor="test")
    # Our patient may write to the peer's pharmacist: the national list says she is one.
    directory.add_remote(RemoteEntry(address=peer_pharmacist, kind=RemoteKind.PROFESSIONAL,
                                     name="Claire DURAND", rpps=PHARMACIST_RPPS,
                                     profession="21"))
    before = count(ops.ours, PATIENT)
    ops.ours.send(DOCTOR, mail(DOCTOR, PATIENT, f"Patient : INS 279035121518989\n{LINES}"))
    got = arrives(ops.ours, PATIENT, before)
    identifier = str(got["X-Ordonnance-Id"])

    before = count(ops.peer, peer_pharmacist)
    fwd = mail(PATIENT, peer_pharmacist, "Bonjour, voici mon ordonnance.\n",
               subject="Fwd: " + str(got["Subject"]))
    fwd.add_attachment(got)
    ops.ours.send(PATIENT, fwd)
    checked = arrives(ops.peer, peer_pharmacist, before)
    assert verdict(checked).startswith(f"valid; id={identifier}; registry=elsewhere;")

    registry = open_registry(ops.ours.config)

    def peer_dispenses(boxes: str) -> EmailMessage:
        doctor_before = count(ops.ours, DOCTOR)
        ops.peer.send(peer_pharmacist, mail(
            peer_pharmacist, f"ordonnances@{PEER}",
            f"Ordonnance : {identifier}\n1 : délivré ; {boxes}\n", subject="Délivrance"))
        report = arrives(ops.ours, DOCTOR, doctor_before)
        assert report["Subject"] == f"Délivrance de votre ordonnance {identifier}"
        return report

    # Unknown to our directory as a pharmacist: delivered, not recorded.
    directory.remove_remote(peer_pharmacist)
    peer_dispenses("1 boîte")
    record = registry.get(identifier, actor="test")
    assert record.dispensations == () and record.lines[0].remaining == 2
    directory.add_remote(RemoteEntry(address=peer_pharmacist, kind=RemoteKind.PROFESSIONAL,
                                     name="Claire DURAND", rpps=PHARMACIST_RPPS,
                                     profession="21"))
    peer_dispenses("1 boîte")
    record = registry.get(identifier, actor="test")
    assert [d.pharmacy for d in record.dispensations] == [peer_pharmacist]
    assert record.lines[0].remaining == 1 and record.status_at().value == "partially_dispensed"
    assert (peer_pharmacist, "prescription.dispense") in _actions(ops.ours.config, identifier)

    before = count(ops.ours, PHARMACY)
    fwd = mail(PATIENT, PHARMACY, "Bonjour, voici mon ordonnance.\n")
    fwd.add_attachment(got)
    ops.ours.send(PATIENT, fwd)
    again = arrives(ops.ours, PHARMACY, before)
    assert verdict(again).startswith(f"valid; id={identifier}; reason=signature and registry")
    assert "reste 1 boîte" in text_of(again)


def test_a_forward_without_its_package_says_how_to_check_it(operators: Operators) -> None:
    """The peer's prescription forwarded as its PDF only: our registry does not know its
    identifier, and the pharmacist is told that only the signed package can check it."""
    ops = operators
    yann_before = count(ops.peer, YANN)
    ops.peer.send(PEER_DOCTOR, mail(PEER_DOCTOR, YANN, f"Patient : INS {YANN_INS}\n{LINES}"))
    got = arrives(ops.peer, YANN, yann_before)
    identifier = str(got["X-Ordonnance-Id"])
    fwd = mail(YANN, PHARMACY, f"Bonjour, voici mon ordonnance {identifier}.\n")
    pdf = next(p for p in got.iter_attachments() if p.get_filename().endswith(".pdf"))
    fwd.add_attachment(pdf.get_payload(decode=True), maintype="application", subtype="pdf",
                       filename=pdf.get_filename())
    before = count(ops.ours, PHARMACY)
    ops.peer.send(YANN, fwd)
    checked = arrives(ops.ours, PHARMACY, before)
    assert verdict(checked).startswith(f"invalid; id={identifier}; reason=unknown identifier")
    assert "autre opérateur" in text_of(checked) and "IHE_XDM.zip" in text_of(checked)


def test_a_report_our_registry_refuses_is_told_to_the_prescriber(operators: Operators) -> None:
    """Our pharmacy delivered all of our prescription; a pharmacy elsewhere, whose gateway could
    not know it, delivers it again and reports it: our registry refuses the excess, and the
    prescriber reads why beside the report itself."""
    from gateway.directory.demo import PHARMACIST_RPPS
    from gateway.prescriptions.registry import open_registry
    from tests.journey_helpers import PATIENT

    ops = operators
    directory = open_directory(ops.ours.config, actor="test")
    if directory.get_remote(PEER_PHARMACIST) is None:
        directory.add_remote(RemoteEntry(address=PEER_PHARMACIST, kind=RemoteKind.PROFESSIONAL,
                                         name="Claire DURAND", rpps=PHARMACIST_RPPS,
                                         profession="21"))
    before = count(ops.ours, PATIENT)
    ops.ours.send(DOCTOR, mail(DOCTOR, PATIENT, f"Patient : INS 279035121518989\n{LINES}"))
    got = arrives(ops.ours, PATIENT, before)
    identifier = str(got["X-Ordonnance-Id"])
    dispense(ops, identifier, "1 : délivré ; 2 boîtes\n")

    before = count(ops.peer, PEER_PHARMACIST)
    fwd = mail(PATIENT, PEER_PHARMACIST, "Bonjour, voici mon ordonnance.\n")
    fwd.add_attachment(got)
    ops.ours.send(PATIENT, fwd)
    assert "registry=elsewhere" in verdict(arrives(ops.peer, PEER_PHARMACIST, before))
    doctor_before = count(ops.ours, DOCTOR)
    ops.peer.send(PEER_PHARMACIST, mail(PEER_PHARMACIST, f"ordonnances@{PEER}",
                                        f"Ordonnance : {identifier}\n1 : délivré ; 1 boîte\n",
                                        subject="Délivrance"))
    new = ops.ours.wait_for(DOCTOR, doctor_before + 2, timeout=60)[doctor_before:]
    subjects = {str(m["Subject"]): m for m in new}
    assert f"Délivrance de votre ordonnance {identifier}" in subjects, list(subjects)
    alert = subjects[f"Délivrance faite ailleurs non enregistrée : ordonnance {identifier}"]
    text = text_of(alert)
    assert PEER_PHARMACIST in text and "entièrement délivrée" in text and "reste 0" in text
    record = open_registry(ops.ours.config).get(identifier, actor="test")
    assert [d.pharmacy for d in record.dispensations] == [PHARMACY]
