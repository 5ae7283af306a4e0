"""What the index keeps of a message's header so that SORT (RFC 5256, RFC 5957) and THREAD
never open the message: the sent date, the base subject, the first From/To/Cc mailboxes and
display names, the Message-ID and the references. Computed once, when the message enters the
index (delivery adopted, APPEND, COPY carries them along), from the header alone. Pure.

Strings are kept already mapped by i;ascii-casemap (a-z to A-Z, nothing else: RFC 4790 9.2),
the collation SORT uses, so that comparing two keys is comparing two Python strings (code
point order is UTF-8 octet order).
"""

from __future__ import annotations

import re
from email.header import decode_header
from email.utils import getaddresses, parsedate_tz
from typing import NamedTuple

_CASEMAP = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WANTED = (b"date", b"subject", b"from", b"to", b"cc", b"message-id", b"references",
           b"in-reply-to")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_MSG_ID = re.compile(r"<([^<>]*)>")
_WSP_RUN = re.compile(r"[ \t\r\n]+")


def casemap(text: str) -> str:
    """i;ascii-casemap: only ASCII letters fold."""
    return text.translate(_CASEMAP)


class SortKeys(NamedTuple):  # a tuple: 100,000 of them are built per SORT of a big folder
    sent: int  # the Date: header in seconds since the epoch, else the INTERNALDATE
    subject: str  # RFC 5256 base subject, casemapped
    reply: bool  # the subject was a reply or forward (RFC 5256 2.1: text was removed)
    from_addr: str  # addr-mailbox of the first From address, casemapped ("" if none)
    to_addr: str
    cc_addr: str
    display_from: str  # RFC 5957 display name (else mailbox@host) of the first From
    display_to: str
    message_id: str  # "" when the message has no usable Message-ID
    references: tuple[str, ...]  # References, else the first In-Reply-To id


def extract(message: bytes, internaldate: int) -> SortKeys:
    """The keys of `message` (whole or only its header)."""
    fields = _fields(message)
    subject = _decoded(fields.get(b"subject", ""))
    base, reply = base_subject(subject)
    sent = _date(fields.get(b"date", ""))
    froms = _first_address(fields.get(b"from", ""))
    tos = _first_address(fields.get(b"to", ""))
    ccs = _first_address(fields.get(b"cc", ""))
    ids = _MSG_ID.findall(fields.get(b"message-id", ""))
    refs = [_clean_id(r) for r in _MSG_ID.findall(fields.get(b"references", ""))]
    if not refs:
        refs = [_clean_id(r) for r in _MSG_ID.findall(fields.get(b"in-reply-to", ""))][:1]
    return SortKeys(
        sent=internaldate if sent is None else sent,
        subject=casemap(base),
        reply=reply,
        from_addr=casemap(froms[0]),
        to_addr=casemap(tos[0]),
        cc_addr=casemap(ccs[0]),
        display_from=casemap(froms[1]),
        display_to=casemap(tos[1]),
        message_id=_clean_id(ids[0]) if ids else "",
        references=tuple(r for r in refs if r),
    )


def _fields(message: bytes) -> dict[bytes, str]:
    """The first occurrence of each wanted field, unfolded, as text."""
    m = _HEADER_END.search(message)
    header = message[: m.start()] if m else message
    out: dict[bytes, str] = {}
    name = b""
    value: list[bytes] = []

    def keep() -> None:
        if name in _WANTED and name not in out:
            out[name] = b" ".join(v.strip() for v in value).decode("utf-8", "replace")

    for line in header.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            value.append(line)
            continue
        keep()
        raw, sep, rest = line.partition(b":")
        name = raw.strip().lower() if sep else b""
        value = [rest]
    keep()
    return out


def _decoded(value: str) -> str:
    """RFC 2047 encoded words decoded (RFC 5256 2.1 step 1); undecodable ones kept as is."""
    if "=?" not in value:
        return value
    try:
        parts = decode_header(value)
    except Exception:  # noqa: BLE001 - a malformed encoded word is sorted as raw text
        return value
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        try:
            out.append(chunk.decode(charset or "us-ascii", "replace"))
        except LookupError:
            out.append(chunk.decode("utf-8", "replace"))
    return "".join(out)


def _date(value: str) -> int | None:
    if not value:
        return None
    try:
        parsed = parsedate_tz(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None or parsed[0] < 1900:
        return None
    from email.utils import mktime_tz

    try:
        return int(mktime_tz(parsed))
    except (OverflowError, ValueError):
        return None


def _first_address(value: str) -> tuple[str, str]:
    """(addr-mailbox, RFC 5957 display) of the first address of a header."""
    if not value:
        return "", ""
    for name, addr in getaddresses([value]):
        if not name and not addr:
            continue
        mailbox = addr.rpartition("@")[0] if "@" in addr else addr
        display = _WSP_RUN.sub(" ", _decoded(name)).strip() or addr
        return mailbox, display
    return "", ""


def _clean_id(text: str) -> str:
    return _WSP_RUN.sub("", text)


# --- RFC 5256 2.1: the base subject -----------------------------------------------------

_BLOB = r"\[[^\[\]]*\][ \t]*"
_REFWD = r"(?:re|fwd?)[ \t]*(?:" + _BLOB + r")?:"
_LEADER = re.compile(r"(?:(?:" + _BLOB + r")*" + _REFWD + r"|[ \t])", re.I)
_LEADING_BLOB = re.compile(_BLOB)
_TRAILER = re.compile(r"(?:\(fwd\)|[ \t])\Z", re.I)


def base_subject(subject: str) -> tuple[str, bool]:
    """The base subject (RFC 5256 2.1) of an already decoded subject, and whether it was a
    reply or forward (a "Re:"/"Fwd:" leader, a "(fwd)" trailer or a "[fwd: ...]" wrapper was
    removed)."""
    text = _WSP_RUN.sub(" ", subject)  # step 1: tabs and continuations to one space
    reply = False
    while True:
        # step 2: trailers
        while (m := _TRAILER.search(text)) is not None:
            if m.group().lower() == "(fwd)":
                reply = True
            text = text[: m.start()]
        # steps 3 to 5: leaders, and a leading blob when something is left after it
        while True:
            m = _LEADER.match(text)
            if m is not None and m.end() > 0:
                if m.group() not in (" ", "\t"):
                    reply = True
                text = text[m.end() :]
                continue
            m = _LEADING_BLOB.match(text)
            if m is not None and text[m.end() :]:
                text = text[m.end() :]
                continue
            break
        # step 6: "[fwd: ...]"
        if text[:5].lower() == "[fwd:" and text.endswith("]"):
            text = text[5:-1]
            reply = True
            continue
        return text, reply
