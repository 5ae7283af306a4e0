"""SEARCH (RFC 3501 6.4.4, plus MODSEQ of RFC 7162): keys parsed into a tree, then evaluated.

Keys that only need the index (flags, UIDs, sizes, dates) never open a message file; header and
text keys read and decode the message (RFC 2047 words, transfer encodings, charsets) and match
case-insensitively, as RFC 3501 asks. Charsets accepted for the search strings: US-ASCII, UTF-8.
"""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from gateway.imap.parser import (
    Atom,
    SeqRange,
    SyntaxProblem,
    Token,
    as_number,
    as_text,
    parse_sequence_set,
)
from gateway.mailtext import part_text

CHARSETS = ("US-ASCII", "UTF-8")
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


class BadCharset(Exception):
    pass


@dataclass
class Key:
    name: str
    arg: object = None
    arg2: object = None
    sub: list[Key] | None = None


def parse_date(tok: Token) -> date:
    text = as_text(tok, "date")
    try:
        day, mon, year = text.split("-")
        return date(int(year), MONTHS.index(mon.upper()) + 1, int(day))
    except (ValueError, IndexError):
        raise SyntaxProblem(f"invalid date {text!r} (expected d-Mon-yyyy)") from None


_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_STRING_KEYS = {"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"}
_DATE_KEYS = {"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"}


def parse_search(args: list[Token]) -> tuple[str, list[Key]]:
    """Returns (charset, keys) for `SEARCH [CHARSET c] key...`."""
    charset = "US-ASCII"
    pos = 0
    if len(args) >= 2 and isinstance(args[0], Atom) and args[0].upper() == "CHARSET":
        charset = as_text(args[1], "charset").upper()
        pos = 2
        if charset not in CHARSETS:
            raise BadCharset(charset)
    keys: list[Key] = []
    p = _KeyParser(args, pos)
    while p.pos < len(args):
        keys.append(p.key(0))
    if not keys:
        raise SyntaxProblem("SEARCH needs at least one key")
    return charset, keys


class _KeyParser:
    def __init__(self, args: list[Token], pos: int) -> None:
        self.args = args
        self.pos = pos

    def take(self, what: str) -> Token:
        if self.pos >= len(self.args):
            raise SyntaxProblem(f"missing {what}")
        tok = self.args[self.pos]
        self.pos += 1
        return tok

    def key(self, depth: int) -> Key:
        if depth > 50:
            raise SyntaxProblem("search keys nested too deeply")
        tok = self.take("search key")
        if isinstance(tok, list):
            sub = _KeyParser(tok, 0)
            keys = []
            while sub.pos < len(tok):
                keys.append(sub.key(depth + 1))
            if not keys:
                raise SyntaxProblem("empty search key list")
            return Key("AND", sub=keys)
        if not isinstance(tok, Atom):
            raise SyntaxProblem("search key expected, not a string")
        name = tok.upper()
        if name in ("ALL", "NEW", "OLD", "RECENT"):
            return Key(name)
        if name in _FLAG_KEYS:
            flag, on = _FLAG_KEYS[name]
            return Key("FLAG", flag, on)
        if name in ("KEYWORD", "UNKEYWORD"):
            return Key("FLAG", as_text(self.take("keyword")), name == "KEYWORD")
        if name in _STRING_KEYS:
            return Key(name, as_text(self.take(f"{name} string")).lower())
        if name == "HEADER":
            field = as_text(self.take("header field name")).lower()
            return Key(name, field, as_text(self.take("header value")).lower())
        if name in _DATE_KEYS:
            return Key(name, parse_date(self.take(f"{name} date")))
        if name in ("LARGER", "SMALLER"):
            return Key(name, as_number(self.take(f"{name} size")))
        if name in ("OLDER", "YOUNGER"):  # RFC 5032 WITHIN: seconds before now
            return Key(name, as_number(self.take(f"{name} interval"), f"{name} interval",
                                       nz=True))
        if name == "$":  # RFC 5182 SEARCHRES: the saved result
            return Key("SAVED", frozenset())
        if name == "NOT":
            return Key("NOT", sub=[self.key(depth + 1)])
        if name == "OR":
            return Key("OR", sub=[self.key(depth + 1), self.key(depth + 1)])
        if name == "UID":
            text = as_text(self.take("UID set"))
            if text == "$":
                return Key("SAVED", frozenset())
            ranges = parse_sequence_set(text)
            if ranges is None:
                raise SyntaxProblem("invalid UID set")
            return Key("UID", ranges)
        if name == "MODSEQ":
            tok2 = self.take("MODSEQ value")
            if isinstance(tok2, bytes):  # entry-name and entry-type-req, then the value
                self.take("MODSEQ entry type")
                tok2 = self.take("MODSEQ value")
            return Key("MODSEQ", as_number(tok2, "MODSEQ value"))
        ranges = parse_sequence_set(name)
        if ranges is not None:
            return Key("SEQ", ranges)
        raise SyntaxProblem(f"unknown search key {name}")


def bind_saved(keys: list[Key], saved: frozenset[int]) -> None:
    """Give every "$" key (SEARCHRES) the session's saved UIDs."""
    for k in keys:
        if k.name == "SAVED":
            k.arg = saved
        if k.sub:
            bind_saved(k.sub, saved)


def needs_message(keys: list[Key]) -> bool:
    for k in keys:
        if k.name in _STRING_KEYS or k.name in ("HEADER", "SENTBEFORE", "SENTON", "SENTSINCE"):
            return True
        if k.sub and needs_message(k.sub):
            return True
    return False


def uses_recent(keys: list[Key]) -> bool:
    """RECENT, NEW, OLD or KEYWORD \\Recent anywhere in the keys."""
    return any(k.name in ("RECENT", "NEW", "OLD")
               or (k.name == "FLAG" and str(k.arg).lower() == "\\recent")
               or (k.sub is not None and uses_recent(k.sub)) for k in keys)


def uses_modseq(keys: list[Key]) -> bool:
    return any(k.name == "MODSEQ" or (k.sub is not None and uses_modseq(k.sub)) for k in keys)


@dataclass
class Candidate:
    seq: int
    uid: int
    flags: tuple[str, ...]
    internaldate: int
    size: int
    modseq: int
    recent: bool
    load: Callable[[], bytes]
    tz: int = 0  # the INTERNALDATE's zone, minutes east of UTC
    _msg: Message | None = None

    def message(self) -> Message:
        if self._msg is None:
            self._msg = email.message_from_bytes(self.load(), policy=email.policy.compat32)
        return self._msg


def _in(ranges: list[SeqRange], n: int, largest: int) -> bool:
    for lo, hi in ranges:
        lo = lo or largest
        hi = hi or largest
        if lo > hi:
            lo, hi = hi, lo
        if lo <= n <= hi:
            return True
    return False


def _decoded(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # noqa: BLE001 - a malformed encoded word is matched as raw text
        return value


def _header_text(msg: Message, name: str) -> str:
    return " ".join(_decoded(str(v)) for v in msg.get_all(name, []))


def _address_text(msg: Message, name: str) -> str:
    """The header as written plus its addresses as the envelope shows them ("name
    <local@domain>", comments and source routes dropped): RFC 3501 SEARCH FROM/TO/CC/BCC look
    in the envelope structure's field, so "a@b" finds "<a (comment)@ b>"."""
    values = [str(v) for v in msg.get_all(name, [])]
    parsed = [f"{_decoded(n)} <{a}>" for n, a in getaddresses(values) if n or a]
    return " ".join([_decoded(v) for v in values] + parsed)


def _body_text(msg: Message) -> str:
    out = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get_content_maintype() not in ("text", "message"):
            continue
        text = part_text(part)
        if text is not None:
            out.append(text)
    return "\n".join(out)


def _sent_date(msg: Message) -> date | None:
    value = msg.get("date")
    if not value:
        return None
    try:
        return parsedate_to_datetime(str(value)).date()
    except (TypeError, ValueError, IndexError):
        return None


def matches(key: Key, c: Candidate, largest_seq: int, largest_uid: int) -> bool:
    name = key.name
    if name == "ALL":
        return True
    if name == "AND":
        assert key.sub is not None
        return all(matches(k, c, largest_seq, largest_uid) for k in key.sub)
    if name == "NOT":
        assert key.sub is not None
        return not matches(key.sub[0], c, largest_seq, largest_uid)
    if name == "OR":
        assert key.sub is not None
        return any(matches(k, c, largest_seq, largest_uid) for k in key.sub)
    if name == "FLAG":
        flag = str(key.arg).lower()
        present = any(f.lower() == flag for f in c.flags)
        if flag == "\\recent":
            present = c.recent
        return present == key.arg2
    if name == "NEW":
        return c.recent and "\\Seen" not in c.flags
    if name == "OLD":
        return not c.recent
    if name == "RECENT":
        return c.recent
    if name == "SEQ":
        return _in(key.arg, c.seq, largest_seq)  # type: ignore[arg-type]
    if name == "UID":
        return _in(key.arg, c.uid, largest_uid)  # type: ignore[arg-type]
    if name == "LARGER":
        return c.size > key.arg  # type: ignore[operator]
    if name == "SMALLER":
        return c.size < key.arg  # type: ignore[operator]
    if name == "MODSEQ":
        return c.modseq >= key.arg  # type: ignore[operator]
    if name == "SAVED":
        return c.uid in key.arg  # type: ignore[operator]
    if name == "OLDER":
        return c.internaldate <= time.time() - key.arg  # type: ignore[operator]
    if name == "YOUNGER":
        return c.internaldate >= time.time() - key.arg  # type: ignore[operator]
    if name in ("BEFORE", "ON", "SINCE"):
        # The day of the INTERNALDATE in its own zone (as APPENDed, else the server's): RFC
        # 3501 compares dates "disregarding time and timezone".
        d = datetime.fromtimestamp(c.internaldate, timezone(timedelta(minutes=c.tz))).date()
        return _compare(name, d, key.arg)  # type: ignore[arg-type]
    if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
        sd = _sent_date(c.message())
        return sd is not None and _compare(name[4:], sd, key.arg)  # type: ignore[arg-type]
    needle = str(key.arg)
    msg = c.message()
    if name == "HEADER":
        field = str(key.arg)
        values = msg.get_all(field)
        if values is None:
            return False
        needle = str(key.arg2)
        return any(needle in _decoded(str(v)).lower() for v in values)
    if name == "SUBJECT":
        return needle in _header_text(msg, name).lower()
    if name in ("FROM", "TO", "CC", "BCC"):
        return needle in _address_text(msg, name).lower()
    if name == "BODY":
        return needle in _body_text(msg).lower()
    if name == "TEXT":
        if needle in "\n".join(f"{k}: {_decoded(str(v))}" for k, v in msg.items()).lower():
            return True
        return needle in _body_text(msg).lower()
    raise AssertionError(name)


def _compare(op: str, d: date, ref: date) -> bool:
    if op == "BEFORE":
        return d < ref
    if op == "ON":
        return d == ref
    return d >= ref
