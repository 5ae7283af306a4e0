"""The MSSanté patient rules at submission: who a patient may write to, and closed threads."""

from __future__ import annotations

import smtplib
from datetime import date

import pytest
from smtp_helpers import (
    DOCTOR,
    PASSWORD,
    PATIENT,
    PHARMACY,
    PRACTICE,
    ServerThread,
    inbox,
    message,
    setup_gateway,
    submission,
)

from gateway.directory import Patient, open_directory


def _ins(sex: str, yy: str, mm: str, rest: str) -> str:
    body = f"{sex}{yy}{mm}{rest}"
    return body + f"{97 - int(body) % 97:02d}"


@pytest.fixture
def gw(gateway_home):
    config = setup_gateway(gateway_home)
    directory = open_directory(config, actor="test")
    other = directory.add_patient(
        Patient(
            ins=_ins("1", "85", "07", "51215123"),
            birth_name="BERNARD", given_names="Paul", sex="M",
            birth_date=date(1985, 7, 2), birth_place="51215",
        )
    )
    directory.set_password(other.address, PASSWORD)
    with ServerThread(config) as server:
        yield config, server, other.address


def rcpt_reply(config, port, rcpt):
    with submission(config, port, login=PATIENT) as c:
        c.mail(PATIENT)
        return c.rcpt(rcpt)


def test_patient_cannot_write_first_to_a_professional(gw):
    config, server, _ = gw
    code, text = rcpt_reply(config, server.ports["submission"], DOCTOR)
    assert code == 550 and b"5.7.1" in text and b"wrote to them first" in text


def test_patient_may_write_to_a_pharmacy(gw):
    config, server, _ = gw
    with submission(config, server.ports["submission"], login=PATIENT) as c:
        c.send_message(message(PATIENT, PHARMACY, "Mon ordonnance"))
    assert len(inbox(config, PHARMACY)) == 1


def test_patient_never_writes_to_a_patient(gw):
    config, server, other = gw
    code, text = rcpt_reply(config, server.ports["submission"], other)
    assert code == 550 and b"other patients" in text


def test_patient_replies_after_the_doctor_wrote_until_fin(gw):
    config, server, _ = gw
    port = server.ports["submission"]
    first = message(DOCTOR, PATIENT, "Résultats")
    with submission(config, port) as c:
        c.send_message(first)
    # The doctor wrote: the patient may now write to them (reply in the thread, or a new one).
    reply = message(PATIENT, DOCTOR, "Re: Résultats", In_Reply_To=first["Message-ID"])
    with submission(config, port, login=PATIENT) as c:
        c.send_message(reply)
    assert len(inbox(config, DOCTOR)) == 1
    # The doctor closes the thread with X-MSS-MES: FIN ...
    fin = message(DOCTOR, PATIENT, "Re: Résultats", In_Reply_To=reply["Message-ID"],
                  References=f"{first['Message-ID']} {reply['Message-ID']}", X_MSS_MES="FIN")
    with submission(config, port) as c:
        c.send_message(fin)
    # ... so a reply in that thread is refused at DATA, with the reason.
    late = message(PATIENT, DOCTOR, "Re: Résultats", In_Reply_To=fin["Message-ID"],
                   References=f"{first['Message-ID']} {fin['Message-ID']}")
    with submission(config, port, login=PATIENT) as c:
        with pytest.raises(smtplib.SMTPDataError) as err:
            c.send_message(late)
        assert err.value.smtp_code == 550 and b"closed this conversation" in err.value.smtp_error
        # A new conversation with the doctor is still possible.
        c.send_message(message(PATIENT, DOCTOR, "Nouvelle question"))
    assert len(inbox(config, DOCTOR)) == 2


def test_subject_fin_closes_the_thread(gw):
    config, server, _ = gw
    port = server.ports["submission"]
    first = message(PRACTICE, PATIENT, "[FIN]")
    with submission(config, port, login=PRACTICE) as c:
        c.send_message(first)
    late = message(PATIENT, PRACTICE, "Re: [FIN]", In_Reply_To=first["Message-ID"])
    with submission(config, port, login=PATIENT) as c, pytest.raises(smtplib.SMTPDataError):
        c.send_message(late)


def test_patient_may_write_to_a_pharmacy_hosted_elsewhere(gw):
    """The directory's remote entries tell a pharmacy of another operator from anyone else: a
    patient may send it a prescription (the message leaves by the queue); a professional
    elsewhere who never wrote, or an address the directory does not know, stays refused."""
    from gateway.directory.model import RemoteEntry, RemoteKind
    from gateway.store.queue import Queue

    config, server, _ = gw
    directory = open_directory(config, actor="test")
    directory.add_domain("peer.localhost", ["CN=mx.peer.localhost,O=Peer Operator,C=FR"])
    directory.add_remote(RemoteEntry(address="pharmacie@peer.localhost",
                                     kind=RemoteKind.PHARMACY, name="Pharmacie du Quai",
                                     finess="750712184"))
    directory.add_remote(RemoteEntry(address="dr.house@peer.localhost",
                                     kind=RemoteKind.PROFESSIONAL, name="Dr Gregory House",
                                     rpps="10003829917", profession="10"))
    port = server.ports["submission"]
    with submission(config, port, login=PATIENT) as c:
        c.send_message(message(PATIENT, "pharmacie@peer.localhost", "Mon ordonnance"))
    queued = Queue(config.queue_path).records()
    assert [[r.address for r in q.recipients] for q in queued] == [["pharmacie@peer.localhost"]]
    for rcpt in ("dr.house@peer.localhost", "inconnu@peer.localhost"):
        code, text = rcpt_reply(config, port, rcpt)
        assert code == 550 and b"wrote to them first, or to a pharmacy" in text
