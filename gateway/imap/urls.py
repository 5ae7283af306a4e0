"""IMAP URLs (RFC 5092) as CATENATE (RFC 4469) uses them: a message or part of one in the
user's own mailboxes, `/INBOX;UIDVALIDITY=1/;UID=20/;SECTION=1.MIME/;PARTIAL=0.100`, or the
same after `imap://user@host`. Pure parsing; the session reads the octets."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

_URL = re.compile(
    r"(?:imap://(?P<authority>[^/]*))?"
    r"/(?P<mailbox>[^;]+?)(?:;UIDVALIDITY=(?P<uidvalidity>\d{1,10}))?"
    r"/;UID=(?P<uid>\d{1,10})"
    r"(?:/;SECTION=(?P<section>[^/]*))?"
    r"(?:/;PARTIAL=(?P<start>\d{1,10})(?:\.(?P<length>\d{1,10}))?)?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ImapUrl:
    mailbox: str
    uidvalidity: int | None
    uid: int
    section: str  # "" for the whole message, else as BODY[section] takes it
    partial: tuple[int, int | None] | None


def parse_imap_url(url: str, user: str) -> ImapUrl | None:
    """The URL's parts, or None when it is not a message URL of `user`'s own mailboxes (an
    `imap://` URL must name `user`; URLAUTH is not supported)."""
    m = _URL.fullmatch(url)
    if m is None:
        return None
    authority = m.group("authority")
    if authority is not None:
        userinfo, at, _ = authority.rpartition("@")
        name = unquote(userinfo.split(";", 1)[0]) if at else ""
        if name.lower() != user.lower():
            return None
    try:
        mailbox = unquote(m.group("mailbox"), errors="strict")
        section = unquote(m.group("section") or "", errors="strict")
    except UnicodeDecodeError:
        return None
    uid = int(m.group("uid"))
    if uid == 0:
        return None
    partial = None
    if m.group("start") is not None:
        length = m.group("length")
        partial = (int(m.group("start")), int(length) if length is not None else None)
    uidvalidity = m.group("uidvalidity")
    return ImapUrl(mailbox, int(uidvalidity) if uidvalidity else None, uid, section, partial)
