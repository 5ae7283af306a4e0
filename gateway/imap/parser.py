"""IMAP command parser, sans-IO: bytes in, commands out (RFC 3501 section 9, RFC 7888 LITERAL+).

`CommandReader.feed(data)` buffers what the client sent; `next_event()` returns, one at a time:
- `Continue()`: a synchronising literal `{n}` was announced and accepted; the server must send
  a `+` continuation before the client sends the n octets,
- `Command(tag, name, args)`: a whole command, literals included, tokenised into atoms, strings
  and lists (the command logic interprets the arguments),
- `RawLine(data)`: one line read in raw mode (`expect_line()`: AUTHENTICATE responses, IDLE DONE),
- `Reject(tag, text, fatal)`: the command is malformed or over a limit. Non-fatal rejections have
  consumed exactly the bad command, so the connection goes on; a fatal one (a non-synchronising
  literal over the limit, whose octets we refuse to read) must end the connection with BYE.

Limits bound what one client can make us hold: the command line (outside literals), each literal,
the whole command, and list nesting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_LINE = 64 * 1024
MAX_LITERAL = 64 * 1024 * 1024
MAX_COMMAND = 80 * 1024 * 1024
MAX_DEPTH = 16

_LITERAL_AT_END = re.compile(rb"~?\{(\d{1,20})(\+?)\}\r?\n\Z")  # ~{n}: RFC 3516 literal8
# tag = 1*<ASTRING-CHAR except "+">: no CTL, space, ( ) { % * " \ or +
_TAG = re.compile(rb"[!#$&',\-./0-9:;<=>?@A-Z\[\]^_`a-z|}~]+")


# fetch-att names a section follows (RFC 3501 9, RFC 3516 4)
_SECTION_NAMES = {b"BODY", b"BODY.PEEK", b"BINARY", b"BINARY.PEEK", b"BINARY.SIZE"}


class Atom(str):
    """An unquoted token: command names, flags, sequence sets, NIL, fetch attributes."""

    __slots__ = ()


class Literal(bytes):
    """A string sent as a literal (`{n}`): APPEND tells its messages from its dates by it."""

    __slots__ = ()


class Literal8(Literal):
    """A literal8 (`~{n}`, RFC 3516 BINARY): octets that may hold NUL and bare LF."""

    __slots__ = ()


# A token is an Atom, a string (quoted or literal: bytes) or a parenthesised list of tokens.
Token = Atom | bytes | list["Token"]


@dataclass
class Command:
    tag: str
    name: str  # upper-case
    args: list[Token] = field(default_factory=list)


@dataclass
class Continue:
    pass


@dataclass
class RawLine:
    data: bytes


@dataclass
class Reject:
    tag: str | None  # None: not even a tag could be read
    text: str
    fatal: bool = False
    code: str | None = None  # response code, e.g. "TOOBIG"


Event = Command | Continue | RawLine | Reject


class SyntaxProblem(ValueError):
    pass


def _tag_of(data: bytes) -> str | None:
    m = _TAG.match(data)
    if m and len(data) > m.end() and data[m.end() : m.end() + 1] == b" ":
        return m.group().decode("ascii")
    return None


class CommandReader:
    def __init__(
        self,
        *,
        max_line: int = MAX_LINE,
        max_literal: int = MAX_LITERAL,
        max_command: int = MAX_COMMAND,
        max_depth: int = MAX_DEPTH,
    ) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_command = max_command
        self.max_depth = max_depth
        self._buf = bytearray()
        self._command = bytearray()  # the command so far: lines and literal octets
        self._literal = 0  # octets of literal still to read into _command
        self._raw_line = False
        self._discard_line = False  # skipping the rest of an over-long line

    def feed(self, data: bytes) -> None:
        self._buf += data

    def expect_line(self) -> None:
        """Deliver the next line as RawLine (AUTHENTICATE exchange, IDLE's DONE)."""
        self._raw_line = True

    def pending(self) -> bool:
        """Bytes buffered beyond the events returned (e.g. pipelined after STARTTLS)."""
        return bool(self._buf) or bool(self._command)

    def take_pending(self) -> bytes:
        """The octets received beyond the last command (COMPRESS: they are compressed)."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def discard(self) -> None:
        self._buf.clear()
        self._command.clear()
        self._literal = 0

    def next_event(self) -> Event | None:
        while True:
            if self._literal:
                take = min(self._literal, len(self._buf))
                if not take:
                    return None
                self._command += self._buf[:take]
                del self._buf[:take]
                self._literal -= take
                continue
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self.max_line:
                    # Too long: answer now and drop everything up to the next newline.
                    tag = _tag_of(bytes(self._command[:64]) or bytes(self._buf[:64]))
                    self._buf.clear()
                    self._command.clear()
                    self._discard_line = True
                    return Reject(tag, "command line too long")
                return None
            line = bytes(self._buf[: nl + 1])
            del self._buf[: nl + 1]
            if self._discard_line:
                self._discard_line = False
                continue
            if self._raw_line:
                self._raw_line = False
                return RawLine(line.rstrip(b"\r\n"))
            if len(line) > self.max_line:
                tag = _tag_of(bytes(self._command[:64]) or line[:64])
                self._command.clear()
                return Reject(tag, "command line too long")
            m = _LITERAL_AT_END.search(line)
            if m:
                size, plus = int(m.group(1)), bool(m.group(2))
                tag = _tag_of(bytes(self._command[:64]) or line[:64])
                over = size > self.max_literal or (
                    len(self._command) + len(line) + size > self.max_command
                )
                if over:
                    self._command.clear()
                    if plus:
                        return Reject(tag, "literal too large", fatal=True, code="TOOBIG")
                    return Reject(tag, f"literal too large (limit {self.max_literal})",
                                  code="TOOBIG")
                self._command += line
                self._literal = size
                if not plus:
                    return Continue()
                continue
            data = bytes(self._command) + line
            self._command.clear()
            return parse_command(data, self.max_depth)


def parse_command(data: bytes, max_depth: int = MAX_DEPTH) -> Command | Reject:
    """Tokenise one whole command (its final CRLF included or not)."""
    if data.endswith(b"\n"):
        data = data[:-2] if data.endswith(b"\r\n") else data[:-1]
    tag = _tag_of(data)
    if tag is None:
        if not data.strip():
            return Reject(None, "empty command line")
        return Reject(None, "missing or invalid tag")
    try:
        tok = _Tokenizer(data, len(tag) + 1, max_depth)
        name = tok.atom()
        if not name or not name.isalpha():
            raise SyntaxProblem("missing or invalid command name")
        args = tok.rest()
    except SyntaxProblem as exc:
        return Reject(tag, str(exc))
    return Command(tag, name.upper(), args)


class _Tokenizer:
    def __init__(self, data: bytes, pos: int, max_depth: int) -> None:
        self.data = data
        self.pos = pos
        self.max_depth = max_depth

    def atom(self) -> str:
        start = self.pos
        data = self.data
        n = len(data)
        while self.pos < n and data[self.pos] not in b" ()\r\n":
            c = data[self.pos]
            # '[' opens a section (which may hold spaces and parentheses, up to its matching
            # ']') only after a fetch attribute's name (RFC 3501 9: "BODY" section, RFC 3516
            # "BINARY" section-binary). Anywhere else it is an ordinary ASTRING-CHAR: a
            # mailbox "x[y" or a search string "a[b".
            if c == 0x5B and data[start : self.pos].upper() in _SECTION_NAMES:
                self._skip_section()
                continue
            if c < 0x20 or c == 0x7F or c in b'"{':
                raise SyntaxProblem(f"invalid character {chr(c)!r} in atom")
            self.pos += 1
        return data[start : self.pos].decode("utf-8", "surrogateescape")

    def _skip_section(self) -> None:
        depth = 0
        data = self.data
        while self.pos < len(data):
            c = data[self.pos]
            self.pos += 1
            if c == 0x5B:
                depth += 1
            elif c == 0x5D:
                depth -= 1
                if depth == 0:
                    return
            elif c in b"\r\n":
                break
        raise SyntaxProblem("unterminated '[' in fetch attribute")

    def rest(self) -> list[Token]:
        out: list[Token] = []
        while self.pos < len(self.data):
            if self.data[self.pos] != 0x20:
                raise SyntaxProblem("expected a space between arguments")
            self.pos += 1
            out.append(self.value(0))
        return out

    def value(self, depth: int) -> Token:
        if self.pos >= len(self.data):
            raise SyntaxProblem("missing argument")
        c = self.data[self.pos]
        if c == 0x28:  # (
            if depth >= self.max_depth:
                raise SyntaxProblem("lists nested too deeply")
            self.pos += 1
            items: list[Token] = []
            while True:
                if self.pos >= len(self.data):
                    raise SyntaxProblem("unterminated list")
                if self.data[self.pos] == 0x29:
                    self.pos += 1
                    return items
                if items:
                    if self.data[self.pos] != 0x20:
                        raise SyntaxProblem("expected a space between list items")
                    self.pos += 1
                items.append(self.value(depth + 1))
        if c == 0x22:
            return self.quoted()
        if c == 0x7B:
            return self.literal()
        if c == 0x7E and self.data[self.pos + 1 : self.pos + 2] == b"{":
            self.pos += 1
            return Literal8(self.literal())
        if c == 0x29:
            raise SyntaxProblem("unexpected ')'")
        if c == 0x20:
            raise SyntaxProblem("unexpected extra space")
        a = self.atom()
        if not a:
            raise SyntaxProblem("empty argument")
        return Atom(a)

    def quoted(self) -> bytes:
        out = bytearray()
        data = self.data
        self.pos += 1
        while self.pos < len(data):
            c = data[self.pos]
            self.pos += 1
            if c == 0x22:
                return bytes(out)
            if c == 0x5C:
                if self.pos >= len(data) or data[self.pos] not in b'"\\':
                    raise SyntaxProblem("invalid escape in quoted string")
                c = data[self.pos]
                self.pos += 1
            elif c in b"\r\n\x00":
                break
            out.append(c)
        raise SyntaxProblem("unterminated quoted string")

    def literal(self) -> bytes:
        m = re.compile(rb"\{(\d{1,20})\+?\}\r?\n").match(self.data, self.pos)
        if not m:
            raise SyntaxProblem("invalid literal")
        size = int(m.group(1))
        start = m.end()
        if start + size > len(self.data):
            raise SyntaxProblem("truncated literal")
        self.pos = start + size
        return Literal(self.data[start : self.pos])


# --- helpers for the command logic ---------------------------------------------------------


def as_text(tok: Token, what: str = "argument") -> str:
    """An astring (atom, quoted or literal) as text."""
    if isinstance(tok, Atom):
        return str(tok)
    if isinstance(tok, bytes):
        try:
            return tok.decode("utf-8")
        except UnicodeDecodeError:
            raise SyntaxProblem(f"{what} is not valid UTF-8") from None
    raise SyntaxProblem(f"{what} must be a string, not a list")


def as_atom(tok: Token, what: str = "argument") -> str:
    if not isinstance(tok, Atom):
        raise SyntaxProblem(f"{what} must be an atom")
    return str(tok)


def as_list(tok: Token, what: str = "argument") -> list[Token]:
    if not isinstance(tok, list):
        raise SyntaxProblem(f"{what} must be a parenthesised list")
    return tok


def as_number(tok: Token, what: str = "number", *, nz: bool = False) -> int:
    if not isinstance(tok, Atom) or not tok.isdigit() or len(tok) > 20:
        raise SyntaxProblem(f"{what} must be a number")
    value = int(tok)
    if nz and value == 0:
        raise SyntaxProblem(f"{what} must not be zero")
    if value > 2**63 - 1:
        raise SyntaxProblem(f"{what} is too large")
    return value


SeqRange = tuple[int, int]  # 0 stands for '*'


def parse_sequence_set(text: str) -> list[SeqRange] | None:
    """'1:3,5,7:*' -> [(1,3),(5,5),(7,0)]; None if invalid ('$', SEARCHRES's saved result,
    is resolved by the session)."""
    out: list[SeqRange] = []
    if not text:
        return None
    for item in text.split(","):
        lo_s, sep, hi_s = item.partition(":")
        try:
            lo = 0 if lo_s == "*" else _nz(lo_s)
            hi = lo if not sep else (0 if hi_s == "*" else _nz(hi_s))
        except ValueError:
            return None
        out.append((lo, hi))
    return out


def _nz(s: str) -> int:
    if not s.isdigit() or len(s) > 10:
        raise ValueError(s)
    v = int(s)
    if v == 0 or v > 0xFFFFFFFF:
        raise ValueError(s)
    return v


def resolve_set(ranges: list[SeqRange], largest: int) -> list[tuple[int, int]]:
    """Replace '*' by `largest` and order each range low-high."""
    out = []
    for lo, hi in ranges:
        lo = lo or largest
        hi = hi or largest
        if lo > hi:
            lo, hi = hi, lo
        out.append((lo, hi))
    return out
