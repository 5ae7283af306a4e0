"""The messages the gateway writes (`gateway.flows.mail.compose`), read back by the email
package as a mail client would."""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes, policy
from email.message import EmailMessage

from gateway.flows.mail import Attachment, compose, encode_header


def text(part: object) -> str:
    """A text part's content with the line ends a client shows (messages travel in CRLF)."""
    return str(part.get_content()).replace("\r\n", "\n")  # type: ignore[attr-defined]


def read(data: bytes) -> EmailMessage:
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_prescription_message_reads_back_with_its_parts() -> None:
    pdf, zipped = b"%PDF-1.7\n" + bytes(range(256)) * 300, b"PK\x03\x04" + bytes(5000)
    data = compose(
        sender="dr.martin@x.test", to=["279035121518989@patient.x.test"],
        subject="XDM/1.0/DDM+Prescription de produits de santé DUPONT Chloé 15/03/1979",
        body="Bonjour,\n\nVotre ordonnance du 22/11/2026 (n° 01S 2TB) :\n  1. DOLIPRANE\n",
        domain="x.test", in_reply_to="<abc@client.test>",
        headers=[("X-MSS-CODECDA", "57833-6"), ("X-MSS-INS", "O"), ("X-MSS-NIL", "mssgw 0.1")],
        files=[Attachment("20261122_Prescription_DUPONT_Chloe_1.pdf", "application/pdf", pdf),
               Attachment("IHE_XDM.zip", "application/zip", zipped)],
        when=dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC),
    )
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    msg = read(data)
    assert msg["Subject"] == (
        "XDM/1.0/DDM+Prescription de produits de santé DUPONT Chloé 15/03/1979")
    assert msg["X-MSS-INS"] == "O" and msg["X-MSS-CODECDA"] == "57833-6"
    assert msg["In-Reply-To"] == "<abc@client.test>" == msg["References"]
    assert msg["Date"].datetime == dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)
    assert msg["Message-ID"].endswith("@x.test>")
    assert msg.get_content_type() == "multipart/mixed"
    body = msg.get_body(("plain",))
    assert body is not None and body["Content-Transfer-Encoding"] == "quoted-printable"
    assert text(body) == (
        "Bonjour,\n\nVotre ordonnance du 22/11/2026 (n° 01S 2TB) :\n  1. DOLIPRANE\n")
    files = {p.get_filename(): p for p in msg.iter_attachments()}
    assert list(files) == ["20261122_Prescription_DUPONT_Chloe_1.pdf", "IHE_XDM.zip"]
    assert files["IHE_XDM.zip"].get_payload(decode=True) == zipped
    assert files["IHE_XDM.zip"].get_content_type() == "application/zip"
    assert files["20261122_Prescription_DUPONT_Chloe_1.pdf"].get_payload(decode=True) == pdf
    assert not msg.defects and not any(p.defects for p in msg.walk())


def test_a_text_only_message_is_one_part() -> None:
    msg = read(compose(sender="robot@x.test", to=["a@x.test", "b@x.test"], subject="Réponse",
                       body="Une ligne très longue " * 20, domain="x.test"))
    assert msg.get_content_type() == "text/plain" and not msg.is_multipart()
    assert text(msg) == "Une ligne très longue " * 20 + "\n"
    assert msg["To"].addresses[1].addr_spec == "b@x.test"


def test_verdict_header_stays_one_readable_line() -> None:
    """Scripts read `X-Ordonnance-Verification` with a regular expression on the raw line."""
    value = "invalid; id=01S2TBPZ2JCNZZYGHZ; reason=ordonnance annulée par le prescripteur"
    data = compose(sender="p@x.test", to=["ph@x.test"], subject="s", body="b", domain="x.test",
                   headers=[("X-Ordonnance-Verification", value)])
    raw = next(line for line in data.split(b"\r\n")
               if line.startswith(b"X-Ordonnance-Verification:"))
    assert raw.startswith(b"X-Ordonnance-Verification: invalid; id=01S2TBPZ2JCNZZYGHZ; reason=")
    assert read(data)["X-Ordonnance-Verification"] == value


def test_headers_cannot_be_injected_and_long_ones_fold() -> None:
    data = compose(sender="robot@x.test", to=["a@x.test"], domain="x.test", body="b",
                   subject="Ordonnance\r\nBcc: victim@evil.test",
                   headers=[("X-Long", " ".join(["mot"] * 400))])
    msg = read(data)
    assert msg["Bcc"] is None and "Bcc: victim" in msg["Subject"]
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert msg["X-Long"] == " ".join(["mot"] * 400)


def test_encoded_words_stay_short() -> None:
    long_name = " ".join(["Prescription de médicaments"] * 8)
    encoded = encode_header(long_name)
    assert encoded.isascii()
    assert all(len(w) <= 75 for w in encoded.split() if w.startswith("=?"))
    assert str(read(f"Subject: {encoded}\r\n\r\n".encode())["Subject"]) == long_name


def test_non_ascii_file_name_and_forwarded_message() -> None:
    inner = (b"From: patient@patient.x.test\r\nSubject: Fwd: mon ordonnance\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
             b"\r\nVoil\xc3\xa0 mon ordonnance.\r\n")
    msg = read(compose(
        sender="p@x.test", to=["ph@x.test"], subject="s", body="b", domain="x.test",
        files=[Attachment("compte-rendu é.pdf", "application/pdf", b"%PDF"),
               Attachment("message-du-patient.eml", "message/rfc822", inner)]))
    parts = list(msg.iter_attachments())
    assert parts[0].get_filename() == "compte-rendu é.pdf"
    assert parts[1].get_content_type() == "message/rfc822"
    forwarded = parts[1].get_content()
    assert forwarded["Subject"] == "Fwd: mon ordonnance"
    assert text(forwarded) == "Voilà mon ordonnance.\n"


def test_headers_read_from_mail_people_send() -> None:
    from gateway.flows.mail import disposition_to, header, header_texts, message_id_of, parse

    raw = (b"From: Dr Martin <dr.martin@x.test>\r\n"
           b"Subject: =?utf-8?q?Ordonnance_de_Chlo=C3=A9?= DUPONT\r\n"
           b"Message-ID:\r\n <abc@client.test>\r\n"
           b"Disposition-Notification-To: =?utf-8?q?Dr_Mart=C3=AFn?= <DR.Martin@x.test>\r\n"
           b"X-Raw: r\xc3\xa9sum\xc3\xa9 brut\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
           b"Subject: =?iso-8859-1?q?Fwd=3A_ordonnance_n=B0_01S2TB?=\r\n\r\nbody\r\n--b--\r\n")
    msg = parse(raw)
    assert header(msg, "Subject") == "Ordonnance de Chloé DUPONT"
    assert message_id_of(msg) == "<abc@client.test>"
    assert disposition_to(msg) == "dr.martin@x.test"
    assert header(msg, "X-Raw") == "résumé brut"  # 8-bit UTF-8 as people's clients send it
    assert header(msg, "X-Absent") == "" and message_id_of(parse(b"\r\nbody")) is None
    assert header_texts(msg) == ["Ordonnance de Chloé DUPONT", "Fwd: ordonnance n° 01S2TB"]
    assert header(parse(b"Subject: =?utf-8?q?broken=ZZ?=\r\n\r\n"), "Subject")  # no exception
