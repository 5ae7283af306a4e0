"""Pieces of IMAP syntax the command logic formats or parses: dates, flag lists, sequence
sets, and FETCH data items (`BODY.PEEK[1.MIME]<0.100>` into a FetchItem)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from gateway.imap import mime
from gateway.imap.parser import SyntaxProblem

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def quote(text: str) -> bytes:
    return mime.string(text)


def imap_date(ts: int, tz: int = 0) -> bytes:
    """An INTERNALDATE in its own zone (`tz`: minutes east of UTC)."""
    d = datetime.fromtimestamp(ts, timezone(timedelta(minutes=tz)))
    sign, off = ("-", -tz) if tz < 0 else ("+", tz)
    return b'"%02d-%s-%04d %02d:%02d:%02d %s%02d%02d"' % (
        d.day, MONTHS[d.month - 1].encode(), d.year, d.hour, d.minute, d.second,
        sign.encode(), off // 60, off % 60,
    )


def parse_imap_datetime(text: str) -> tuple[int, int]:
    """'17-Jul-1996 02:44:25 -0700' -> (epoch seconds, zone in minutes east of UTC)."""
    try:
        day_s, rest = text.strip().split("-", 1)
        mon_s, rest = rest.split("-", 1)
        year_s, clock, zone = rest.split(" ")
        hh, mm, ss = (int(x) for x in clock.split(":"))
        month = [m.upper() for m in MONTHS].index(mon_s.upper()) + 1
        if len(zone) != 5 or zone[0] not in "+-" or not zone[1:].isdigit():
            raise ValueError(zone)
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
        offset = offset if zone[0] == "+" else -offset
        when = datetime(int(year_s), month, int(day_s), hh, mm, ss, tzinfo=timezone(offset))
        return int(when.timestamp()), int(offset.total_seconds()) // 60
    except (ValueError, IndexError):
        raise SyntaxProblem(f"invalid date-time {text!r}") from None


def flag_list(flags: tuple[str, ...] | list[str]) -> bytes:
    return b"(" + " ".join(flags).encode() + b")"


def uid_ranges(ranges: list[tuple[int, int]]) -> str:
    """[(1, 3), (5, 5)] -> '1:3,5'."""
    return ",".join(str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in ranges)


def seq_set(numbers: list[int]) -> str:
    """[1,2,3,5] -> '1:3,5'."""
    out: list[str] = []
    nums = sorted(numbers)
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else f"{nums[i]}:{nums[j]}")
        i = j + 1
    return ",".join(out)


@dataclass
class FetchItem:
    name: str  # FLAGS, UID, BODY[], ...
    section: mime.Section | None = None
    peek: bool = False
    partial: tuple[int, int] | None = None
    label: str = ""  # how the response names it


FETCH_MACROS = {
    "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
    "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
    "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
}
_SIMPLE_ITEMS = {
    "FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY",
    "RFC822", "RFC822.HEADER", "RFC822.TEXT", "MODSEQ",
}


def parse_fetch_item(text: str) -> FetchItem:
    upper = text.upper()
    if upper in _SIMPLE_ITEMS:
        return FetchItem(upper, label=upper)
    for prefix, peek in (("BODY.PEEK[", True), ("BODY[", False), ("BINARY.PEEK[", True),
                         ("BINARY[", False), ("BINARY.SIZE[", True)):
        if upper.startswith(prefix):
            close = text.rfind("]")
            if close < 0:
                raise SyntaxProblem(f"invalid fetch attribute {text}")
            try:
                section = mime.parse_section(text[len(prefix) : close])
            except mime.SectionError as exc:
                raise SyntaxProblem(str(exc)) from None
            tail = text[close + 1 :]
            partial = None
            if tail:
                if not (tail.startswith("<") and tail.endswith(">")):
                    raise SyntaxProblem(f"invalid partial in {text}")
                start_s, dot, count_s = tail[1:-1].partition(".")
                if not start_s.isdigit() or not dot or not count_s.isdigit():
                    raise SyntaxProblem(f"invalid partial in {text}")
                if int(count_s) == 0:
                    raise SyntaxProblem("partial length must not be zero")
                partial = (int(start_s), int(count_s))
            kind = prefix.replace(".PEEK", "").rstrip("[")  # BODY, BINARY, BINARY.SIZE
            if kind == "BINARY.SIZE" and partial:
                raise SyntaxProblem("BINARY.SIZE takes no partial")
            return FetchItem(kind + "[]", section, peek, partial, f"{kind}[{section.label()}]")
    raise SyntaxProblem(f"unknown fetch attribute {text}")


def literal(value: bytes) -> bytes:
    return b"{%d}\r\n" % len(value) + value


def nul_free(value: bytes) -> bytes:
    """Message text for BODY[] and RFC822*: a literal may not hold NUL (RFC 3501's CHAR8), and
    only a client that asked for BINARY[] may be sent a literal8 (RFC 3516). So a NUL octet goes
    out as 0x80, as Dovecot sends it: the length, hence RFC822.SIZE and partial offsets, stay
    true; BINARY[] still gives the exact octets."""
    return value.replace(b"\0", b"\x80") if b"\0" in value else value
