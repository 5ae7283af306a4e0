"""Reading what people mail (forms, attachments, forwarded messages) and writing the gateway's
messages (MSSanté format, replies, MDNs). Pure functions over bytes: the flows call them in the
process pool."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import quopri
import re
import unicodedata
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email import message_from_bytes
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.utils import format_datetime, getaddresses, make_msgid

from gateway.mailtext import part_text


def parse(data: bytes) -> Message:
    """The message as the email package's compat32 model. The flows read parts, their types,
    file names and payloads, and a few headers (through `header`): the default policy's header
    objects (every header parsed into a syntax tree when read, Content-Type several times per
    part) made the parse and the look-ups of a doctor's one-part mail cost 0.85 ms, 0.06 here;
    the dispensation precheck runs it on the event loop for mail between professionals."""
    return message_from_bytes(data)


def header(msg: Message, name: str) -> str:
    """A header's text: unfolded, RFC 2047 encoded-words decoded ("" when absent)."""
    value = msg.get(name)
    if value is None:
        return ""
    try:
        parts = decode_header(value)
        if all(charset == "unknown-8bit" for _, charset in parts):
            # Raw 8-bit bytes (clients writing UTF-8 headers, RFC 6532): read them as UTF-8.
            text = b"".join(bytes(b) if isinstance(b, bytes) else b.encode() for b, _ in parts
                            ).decode("utf-8", "replace")
        else:
            text = str(make_header(parts))
    except (ValueError, LookupError, UnicodeError, HeaderParseError):  # broken encoded-word
        text = str(value)
    return " ".join(text.split())


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


_FORWARDED = ("message/rfc822", "message/global")


def forwarded_message(part: Message) -> Message | None:
    """The message a message/rfc822 part holds. Some clients and tools (swaks --attach, a few
    webmails) send it base64 or quoted-printable encoded, which RFC 2046 5.2.1 forbids but
    people forward all the same: the email package then sees only encoded text, so the part is
    decoded and parsed here."""
    if part.get_content_type() not in _FORWARDED:
        return None
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte not in ("base64", "quoted-printable") or not isinstance(inner, Message):
        return inner if isinstance(inner, Message) else None
    encoded = inner.as_bytes()
    try:
        raw = (base64.b64decode(encoded) if cte == "base64" else quopri.decodestring(encoded))
    except (binascii.Error, ValueError):
        return None
    return parse(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


def _walk(msg: Message, depth: int = 0) -> Iterator[Message]:
    """Every leaf part, descending into forwarded messages (message/rfc822) as clients attach
    them; depth-bounded so a hostile nesting cannot recurse for ever."""
    if depth > 8:
        return
    inner = forwarded_message(msg)
    if inner is not None:
        yield from _walk(inner, depth + 1)
        return
    if msg.is_multipart():
        for part in msg.get_payload():  # type: ignore[union-attr]
            if isinstance(part, Message):
                yield from _walk(part, depth + 1)
        return
    yield msg


def attachments(msg: Message) -> list[Attachment]:
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


def texts(msg: Message) -> list[str]:
    """The plain-text parts (not attachments), forwarded ones included, in order."""
    out: list[str] = []
    for part in _walk(msg):
        if part.get_content_type() != "text/plain" or part.get_filename():
            continue
        text = part_text(part)
        if text is not None:
            out.append(text)
    return out


def header_texts(msg: Message) -> list[str]:
    """Subjects of the message and of forwarded ones (an identifier may be there)."""
    out = [header(msg, "Subject")]
    for part in msg.walk():
        inner = forwarded_message(part)
        if inner is not None:
            out.append(header(inner, "Subject"))
    return out


def is_forward(msg: Message) -> bool:
    """Does the message pass something on (a forwarded message, an attachment, a "Fwd:" or
    "TR:" subject), as opposed to a question typed in a mail?"""
    if re.match(r"(?i)\s*(fwd?|tr|wg)\s*:", header(msg, "Subject")):
        return True
    return any(
        part.get_content_type() in _FORWARDED or part.get_filename()
        for part in msg.walk()
    )


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


def message_id_of(msg: Message) -> str | None:
    return header(msg, "Message-ID") or None


def idempotence_fallback(data: bytes) -> str:
    """For a message without Message-ID: its body (our Received: header differs per try)."""
    import hashlib

    return hashlib.sha256(data.split(b"\r\n\r\n", 1)[-1]).hexdigest()


def disposition_to(msg: Message) -> str | None:
    value = header(msg, "Disposition-Notification-To")
    if not value:
        return None
    found = getaddresses([value])
    return found[0][1].lower() if found and found[0][1] else None


_MAX_LINE = 998  # RFC 5322: a header stays on one line up to this (scripts read it whole)


def _q_words(text: str) -> list[str]:
    """`text` as RFC 2047 Q encoded-words of at most 75 characters, cut between characters."""
    words: list[str] = []
    cur = ""
    for ch in text:
        if ch == " ":
            enc = "_"
        elif ch.isascii() and (ch.isalnum() or ch in "!*+-/"):
            enc = ch
        else:
            enc = "".join(f"={b:02X}" for b in ch.encode("utf-8"))
        if len(cur) + len(enc) > 75 - len("=?utf-8?q??="):
            words.append(f"=?utf-8?q?{cur}?=")
            cur = ""
        cur += enc
    if cur:
        words.append(f"=?utf-8?q?{cur}?=")
    return words


def encode_header(value: str) -> str:
    """A header value in ASCII: words with other characters become RFC 2047 encoded-words, the
    rest stays readable (as the email package writes it: `reason=ordonnance =?utf-8?q?annul
    =C3=A9e?= par ...`); CR/LF cannot inject a header; folded only past 998 octets."""
    value = value.replace("\r", " ").replace("\n", " ")
    if not value.isascii():
        out: list[str] = []
        run: list[str] = []  # consecutive words needing encoding: one run, spaces inside
        for word in value.split(" "):
            if word.isascii():
                if run:
                    out += _q_words(" ".join(run))
                    run = []
                out.append(word)
            else:
                run.append(word)
        if run:
            out += _q_words(" ".join(run))
        value = " ".join(out)
    if len(value) <= _MAX_LINE - 80:
        return value
    lines, line = [], ""
    for word in value.split(" "):
        if line and len(line) + 1 + len(word) > _MAX_LINE - 80:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n ".join(lines)


def _param(name: str, value: str) -> str:
    """A MIME parameter: quoted when ASCII, RFC 2231 (utf-8'') otherwise."""
    if value.isascii() and not any(c in value for c in '"\\\r\n'):
        return f'{name}="{value}"'
    from urllib.parse import quote

    return f"{name}*=utf-8''{quote(value, safe='')}"


@functools.lru_cache(maxsize=4)
def _base64(data: bytes) -> bytes:
    """Base64 in CRLF lines of 76 characters. One b2a_base64 call then slices: encodebytes
    calls it per 57-byte chunk and then copies everything again to turn LF into CRLF. Cached:
    a flow attaches the same PDF to two messages (the patient's and the doctor's); the last
    few are kept (the key is the bytes object, hashed once, compared by identity first)."""
    encoded = binascii.b2a_base64(data, newline=False)
    return b"\r\n".join([encoded[i:i + 76] for i in range(0, len(encoded), 76)] + [b""]) \
        if encoded else b""


def compose(
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
) -> bytes:
    """A message from the gateway, as bytes ready to store: the text part (UTF-8,
    quoted-printable) then each file (base64; a forwarded message/rfc822 as it is).

    Written out by hand, like `mdn`: building an EmailMessage and generating it with a policy
    parses every header into a syntax tree and refolds it, about 5 ms per message, a fifth of
    the CPU of a whole prescription; this writes the same format in a few tens of microseconds.
    The email package reads it back in the tests."""
    head = [
        f"From: {encode_header(sender)}",
        f"To: {encode_header(', '.join(to))}",
        f"Subject: {encode_header(subject)}",
        f"Date: {format_datetime(when or dt.datetime.now(dt.UTC))}",
        f"Message-ID: {make_msgid(domain=domain)}",
    ]
    if in_reply_to:
        head += [f"In-Reply-To: {encode_header(in_reply_to)}",
                 f"References: {encode_header(in_reply_to)}"]
    head += [f"{name}: {encode_header(value)}" for name, value in headers]
    head.append("MIME-Version: 1.0")
    text = "\r\n".join(body.splitlines()) + "\r\n"
    qp = binascii.b2a_qp(text.encode("utf-8"), istext=True)
    text_head = b'Content-Type: text/plain; charset="utf-8"\r\n' \
        b"Content-Transfer-Encoding: quoted-printable\r\n"
    if not files:
        return ("\r\n".join(head) + "\r\n").encode("ascii") + text_head + b"\r\n" + qp
    boundary = f"=_mssgw_{uuid.uuid4().hex}"
    head.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
    sep = f"\r\n--{boundary}\r\n".encode("ascii")
    parts = [("\r\n".join(head) + "\r\n").encode("ascii"), sep, text_head, b"\r\n", qp]
    for f in files:
        disposition = f"Content-Disposition: attachment; {_param('filename', f.filename)}"
        if f.content_type == "message/rfc822":
            # RFC 2046 5.2.1: an encapsulated message is never base64; it passed our SMTP
            # checks (CRLF only), so it goes as it is, 8bit when it has 8-bit bytes.
            cte = "7bit" if f.data.isascii() else "8bit"
            data = f.data if f.data.endswith(b"\r\n") else f.data + b"\r\n"
        else:
            cte, data = "base64", _base64(f.data)
        parts += [sep, f"Content-Type: {f.content_type}\r\nContent-Transfer-Encoding: {cte}"
                  f"\r\n{disposition}\r\n\r\n".encode("ascii"), data]
    parts.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return b"".join(parts)


def mdn(
    original: Message,
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
    disposition = "automatic-action/MDN-sent-automatically; processed"
    human = "Le message a été traité par la messagerie sécurisée."
    if error:
        disposition += f"/Error: {error[0]}^{error[1]}"
        human = f"Le message n'a pas pu être intégré : {error[1]}."
    boundary = f"=_mdn_{uuid.uuid4().hex}"
    original_id = message_id_of(original)
    subject = encode_header("Accusé de traitement : " + header(original, "Subject")[:100])
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
