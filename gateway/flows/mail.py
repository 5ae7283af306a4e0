"""Reading what people mail (forms, attachments, forwarded messages) and writing the gateway's
messages (MSSanté format, replies, MDNs). Pure functions over bytes: the flows call them in the
process pool."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import format_datetime, getaddresses, make_msgid

from gateway.mailtext import part_text

# Bytes out: CRLF line ends, UTF-8 headers encoded (RFC 2047); headers folded only past 998
# octets, so that scripts reading X-Ordonnance-Verification see one line.
OUT = policy.SMTP.clone(max_line_length=998)


def parse(data: bytes) -> EmailMessage:
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


def _walk(msg: Message, depth: int = 0) -> Iterator[Message]:
    """Every leaf part, descending into forwarded messages (message/rfc822) as clients attach
    them; depth-bounded so a hostile nesting cannot recurse for ever."""
    if depth > 8:
        return
    if msg.is_multipart():
        for part in msg.get_payload():  # type: ignore[union-attr]
            if isinstance(part, Message):
                yield from _walk(part, depth + 1)
        return
    yield msg


def attachments(msg: EmailMessage) -> list[Attachment]:
    out: list[Attachment] = []
    for part in _walk(msg):
        filename = part.get_filename() or ""
        ctype = part.get_content_type()
        if ctype.startswith("text/plain") and not filename:
            continue
        if ctype.startswith("multipart/"):
            continue
        try:
            data = part.get_payload(decode=True)
        except Exception:  # noqa: S112 - broken transfer encoding: not an attachment we can use
            continue
        if isinstance(data, bytes) and data:
            out.append(Attachment(filename, ctype, data))
    return out


def texts(msg: EmailMessage) -> list[str]:
    """The plain-text parts (not attachments), forwarded ones included, in order."""
    out: list[str] = []
    for part in _walk(msg):
        if part.get_content_type() != "text/plain" or part.get_filename():
            continue
        text = part_text(part)
        if text is not None:
            out.append(text)
    return out


def header_texts(msg: EmailMessage) -> list[str]:
    """Subjects of the message and of forwarded ones (an identifier may be there)."""
    out = [str(msg.get("Subject", ""))]
    for part in msg.walk():
        if part.get_content_type() == "message/rfc822":
            for inner in part.get_payload():  # type: ignore[union-attr]
                if isinstance(inner, Message):
                    out.append(str(inner.get("Subject", "")))
    return out


def strip_quotes(text: str) -> str:
    """A reply or inline forward quotes with '> ': the form is the same without the marks."""
    return "\n".join(re.sub(r"^(\s*>)+ ?", "", line) for line in text.splitlines())


def ascii_upper(text: str) -> str:
    """NOM as MSSanté subjects write it: upper case, no accents."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()


def ascii_name(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[^A-Za-z0-9-]+", "-", plain).strip("-")


def message_id_of(msg: EmailMessage) -> str | None:
    value = msg.get("Message-ID")
    return str(value).strip() if value else None


def idempotence_fallback(data: bytes) -> str:
    """For a message without Message-ID: its body (our Received: header differs per try)."""
    import hashlib

    return hashlib.sha256(data.split(b"\r\n\r\n", 1)[-1]).hexdigest()


def disposition_to(msg: EmailMessage) -> str | None:
    value = msg.get("Disposition-Notification-To")
    if not value:
        return None
    found = getaddresses([str(value)])
    return found[0][1].lower() if found and found[0][1] else None


def new_message(
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    body: str,
    domain: str,
    headers: Sequence[tuple[str, str]] = (),
    files: Sequence[Attachment] = (),
    in_reply_to: str | None = None,
    when: dt.datetime | None = None,
) -> EmailMessage:
    msg = EmailMessage(policy=OUT)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when or dt.datetime.now(dt.UTC))
    msg["Message-ID"] = make_msgid(domain=domain)
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    for name, value in headers:
        msg[name] = value
    msg.set_content(body, charset="utf-8", cte="quoted-printable")
    for f in files:
        maintype, _, subtype = f.content_type.partition("/")
        msg.add_attachment(f.data, maintype=maintype, subtype=subtype, filename=f.filename)
    return msg


def to_bytes(msg: EmailMessage) -> bytes:
    return msg.as_bytes(policy=OUT)


def mdn(
    original: EmailMessage,
    *,
    reporter: str,
    recipient: str,
    to: str,
    domain: str,
    product: str,
    error: tuple[int, str] | None = None,
) -> bytes:
    """An RFC 8098 MDN for `original` (MSSanté: processed, or processed/Error: code^label).
    Written out by hand: the email package has no builder for multipart/report."""
    import base64
    import uuid
    from email.header import Header

    disposition = "automatic-action/MDN-sent-automatically; processed"
    human = "Le message a été traité par la messagerie sécurisée."
    if error:
        disposition += f"/Error: {error[0]}^{error[1]}"
        human = f"Le message n'a pas pu être intégré : {error[1]}."
    boundary = f"=_mdn_{uuid.uuid4().hex}"
    original_id = message_id_of(original)
    subject = Header("Accusé de traitement : " + str(original.get("Subject", ""))[:100],
                     "utf-8").encode()
    head = [
        f"From: {reporter}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {format_datetime(dt.datetime.now(dt.UTC))}",
        f"Message-ID: {make_msgid(domain=domain)}",
        f"X-MSS-NIL: {product}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=disposition-notification;\r\n'
        f' boundary="{boundary}"',
    ]
    if original_id:
        head += [f"In-Reply-To: {original_id}", f"References: {original_id}"]
    fields = [
        f"Reporting-UA: {domain}; {product}",
        f"Original-Recipient: rfc822;{recipient}",
        f"Final-Recipient: rfc822;{recipient}",
    ]
    if original_id:
        fields.append(f"Original-Message-ID: {original_id}")
    fields.append(f"Disposition: {disposition}")
    text = base64.encodebytes(human.encode()).decode().replace("\n", "\r\n")
    body = [
        "", f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: base64", "", text.rstrip("\r\n"),
        f"--{boundary}",
        "Content-Type: message/disposition-notification", "",
        *fields, "",
        f"--{boundary}--", "",
    ]
    return "\r\n".join(head + body).encode("utf-8")
