"""Pure checks on a received message (bytes in, facts out): no sockets, no storage."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.utils import getaddresses

_MSGID = re.compile(r"<[^<>\s]+>")
# The everyday From: values, `addr`, `<addr>` or `Name <addr>` with a plain display name:
# read with one expression, since email.utils.getaddresses costs more than the rest of the
# header checks together; anything else (quotes, comments, groups, several addresses, encoded
# words) goes through getaddresses.
_SIMPLE_FROM = re.compile(
    r"(?:[A-Za-z0-9 .'-]*<([^<>()\[\]\\,;:\s@\"]+@[A-Za-z0-9.-]+)>"
    r"|([^<>()\[\]\\,;:\s@\"]+@[A-Za-z0-9.-]+))"
)


def has_bare_cr_or_lf(data: bytes) -> bool:
    """True when a CR or an LF appears outside a CRLF pair (the SMTP smuggling vector).

    aiosmtpd only ends DATA on CRLF.CRLF, but a bare-LF line could still be re-interpreted by a
    next hop that accepts it; refusing such messages outright is what Postfix and others now do.
    Counting is done in C (bytes.count), so a 25 MB message costs a few milliseconds.
    """
    crlf = data.count(b"\r\n")
    return data.count(b"\n") != crlf or data.count(b"\r") != crlf


def split_header(data: bytes) -> tuple[bytes, bytes]:
    """(header block including the blank line, body)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data, b""
    return data[: end + 4], data[end + 4 :]


@dataclass(frozen=True)
class Headers:
    """The few header facts the SMTP policy needs."""

    from_addresses: list[str] = field(default_factory=list)
    message_id: str | None = None
    references: list[str] = field(default_factory=list)  # In-Reply-To and References ids
    subject: str = ""
    mss_fin: bool = False  # X-MSS-MES: FIN or subject exactly "[FIN]"


def _decoded(value: str | None) -> str:
    if not value:
        return ""
    if "=?" not in value:  # no RFC 2047 encoded word: nothing to decode (the usual case)
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


_WANTED = {"from", "message-id", "in-reply-to", "references", "subject", "x-mss-mes"}


def header_fields(data: bytes) -> dict[str, list[str]]:
    """The values of the few fields the policy reads, unfolded (RFC 5322 2.2.3).

    A direct scan of the header block: the email package's parser builds a full object model
    and costs more than the rest of the message's handling together."""
    head, _ = split_header(data)
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in head.decode("utf-8", "surrogateescape").split("\r\n"):
        if line[:1] in (" ", "\t"):
            if current is not None:
                current[-1] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        key = name.strip().lower()
        if sep and key in _WANTED:
            current = out.setdefault(key, [])
            current.append(value.strip())
        else:
            current = None
    return out


def read_headers(data: bytes) -> Headers:
    fields = header_fields(data)
    from_values = fields.get("from", [])
    simple = _SIMPLE_FROM.fullmatch(from_values[0]) if len(from_values) == 1 else None
    if simple is not None:
        froms = [(simple.group(1) or simple.group(2)).lower()]
    else:
        froms = [addr.strip().lower() for _, addr in getaddresses(from_values) if addr.strip()]
    mid = _MSGID.search(" ".join(fields.get("message-id", [])))
    refs: list[str] = []
    for name in ("in-reply-to", "references"):
        for value in fields.get(name, []):
            refs += [m for m in _MSGID.findall(value) if m not in refs]
    subject = _decoded(" ".join(fields.get("subject", []))).strip()
    fin = any(v.strip().upper() == "FIN" for v in fields.get("x-mss-mes", []))
    return Headers(
        from_addresses=froms,
        message_id=mid.group(0) if mid else None,
        references=refs,
        subject=subject,
        mss_fin=fin or subject.upper() == "[FIN]",
    )


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()
