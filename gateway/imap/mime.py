"""MIME structure for IMAP: ENVELOPE, BODYSTRUCTURE and BODY[section] over the raw octets.

IMAP addresses parts by their exact octets (BODY[1.2.MIME], sizes and line counts in
BODYSTRUCTURE), which Python's `email` package does not expose (it re-serialises), so this is a
small walker over bytes: headers split at the first empty line, multipart bodies split at their
boundary lines (RFC 2046 5.1.1: the CRLF before a delimiter belongs to it), message/rfc822 parts
parsed as messages. Parameters and header values are passed through raw, as IMAP wants them.
Broken MIME never raises: a missing boundary gives one empty part, nesting is capped.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from email.utils import getaddresses

MAX_DEPTH = 24


@dataclass
class Part:
    header: bytes  # the header block, its terminating empty line included
    body: bytes
    fields: list[tuple[str, bytes]]  # (lower-case name, unfolded raw value)
    maintype: str = "text"
    subtype: str = "plain"
    params: list[tuple[str, str]] = field(default_factory=list)
    children: list[Part] = field(default_factory=list)  # multipart
    message: Part | None = None  # message/rfc822

    def get(self, name: str) -> bytes | None:
        for n, v in self.fields:
            if n == name:
                return v
        return None

    def param(self, name: str) -> str | None:
        for n, v in self.params:
            if n.lower() == name:
                return v
        return None


_HEADER_END = re.compile(rb"\r\n\r\n|\n\n")


def split_message(data: bytes) -> tuple[bytes, bytes]:
    if data.startswith(b"\r\n"):
        return b"\r\n", data[2:]
    m = _HEADER_END.search(data)
    if not m:
        return data, b""
    return data[: m.end()], data[m.end() :]


def header_fields(header: bytes) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for line in re.split(rb"\r?\n", header):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and out:
            name, value = out[-1]
            out[-1] = (name, value + b" " + line.strip())
            continue
        raw_name, sep, value = line.partition(b":")
        if sep and raw_name and b" " not in raw_name.strip():
            out.append((raw_name.strip().decode("latin-1").lower(), value.strip()))
    return out


def parse_content_type(value: bytes | None, default: str) -> tuple[str, str, list[tuple[str, str]]]:
    if not value:
        main, _, sub = default.partition("/")
        params = [("charset", "us-ascii")] if main == "text" else []
        return main, sub, params
    text = value.decode("utf-8", "replace")
    head, _, rest = text.partition(";")
    main, slash, sub = head.strip().partition("/")
    if not slash or not main.strip() or not sub.strip():
        main, _, sub = default.partition("/")
    return main.strip().lower(), sub.strip().lower(), parse_params(rest)


def parse_params(text: str) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t;":
            i += 1
        start = i
        while i < n and text[i] not in "=;":
            i += 1
        name = text[start:i].strip()
        if i >= n or text[i] != "=":
            continue
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            buf = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(text[i])
                i += 1
            i += 1
            value = "".join(buf)
        else:
            start = i
            while i < n and text[i] != ";":
                i += 1
            value = text[start:i].strip()
        if name:
            params.append((name, value))
    return params


def parse(data: bytes, default_type: str = "text/plain", depth: int = 0) -> Part:
    header, body = split_message(data)
    fields = header_fields(header)
    part = Part(header, body, fields)
    ct = None
    for n, v in fields:
        if n == "content-type":
            ct = v
            break
    part.maintype, part.subtype, part.params = parse_content_type(ct, default_type)
    if depth >= MAX_DEPTH:
        return part
    if part.maintype == "multipart":
        boundary = part.param("boundary")
        child_default = "message/rfc822" if part.subtype == "digest" else "text/plain"
        if boundary:
            for chunk in split_multipart(body, boundary.encode("utf-8", "replace")):
                part.children.append(parse(chunk, child_default, depth + 1))
        if not part.children:
            part.children.append(parse(b"", "text/plain", depth + 1))
    elif (part.maintype, part.subtype) in (("message", "rfc822"), ("message", "global")):
        part.message = parse(body, "text/plain", depth + 1)
    return part


def split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    delim = re.compile(rb"(?:\A|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|\Z)")
    parts: list[bytes] = []
    start: int | None = None
    for m in delim.finditer(body):
        if start is not None:
            parts.append(body[start : m.start()])
        if m.group(1):
            return parts
        start = m.end()
    if start is not None:
        parts.append(body[start:])  # no closing delimiter: the rest is the last part
    return parts


# --- IMAP formatting -----------------------------------------------------------------------

_SAFE_QUOTED = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*")


def nstring(value: bytes | str | None) -> bytes:
    if value is None:
        return b"NIL"
    return string(value)


def string(value: bytes | str) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if len(value) < 1024 and _SAFE_QUOTED.fullmatch(value):
        return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n%s" % (len(value), value)


def _plist(params: list[tuple[str, str]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(string(n) + b" " + string(v) for n, v in params) + b")"


def _disposition(part: Part) -> bytes:
    value = part.get("content-disposition")
    if not value:
        return b"NIL"
    text = value.decode("utf-8", "replace")
    kind, _, rest = text.partition(";")
    if not kind.strip():
        return b"NIL"
    return b"(" + string(kind.strip()) + b" " + _plist(parse_params(rest)) + b")"


def _language(part: Part) -> bytes:
    value = part.get("content-language")
    if not value:
        return b"NIL"
    langs = [x.strip() for x in value.decode("utf-8", "replace").split(",") if x.strip()]
    if not langs:
        return b"NIL"
    return b"(" + b" ".join(string(x) for x in langs) + b")"


def _lines(data: bytes) -> int:
    n = data.count(b"\n")
    return n + (1 if data and not data.endswith(b"\n") else 0)


def _clean(value: bytes | None) -> bytes | None:
    return None if value is None else value.strip()


def bodystructure(part: Part, extensible: bool = True) -> bytes:
    if part.children:
        out = b"(" + b"".join(bodystructure(c, extensible) for c in part.children)
        out += b" " + string(part.subtype)
        if extensible:
            params = [p for p in part.params]
            out += b" " + _plist(params) + b" " + _disposition(part) + b" " + _language(part)
            out += b" " + nstring(_clean(part.get("content-location")))
        return out + b")"
    encoding = (part.get("content-transfer-encoding") or b"7BIT").strip().upper() or b"7BIT"
    items = [
        string(part.maintype),
        string(part.subtype),
        _plist(part.params),
        nstring(_clean(part.get("content-id"))),
        nstring(_clean(part.get("content-description"))),
        string(encoding),
        b"%d" % len(part.body),
    ]
    if part.message is not None:
        items += [
            envelope(part.message),
            bodystructure(part.message, extensible),
            b"%d" % _lines(part.body),
        ]
    elif part.maintype == "text":
        items.append(b"%d" % _lines(part.body))
    if extensible:
        items += [
            nstring(_clean(part.get("content-md5"))),
            _disposition(part),
            _language(part),
            nstring(_clean(part.get("content-location"))),
        ]
    return b"(" + b" ".join(items) + b")"


def _split_address_list(text: str) -> list[tuple[str, str]]:
    """An address-list cut at its top-level commas into ("addr", text) items, with RFC 5322
    groups ("name: a@b, c@d;") as ("start", name) ... ("end", "") around their members.
    email.utils.getaddresses reads one address well but drops group names and source routes,
    which ENVELOPE must show (RFC 3501 7.4.2)."""
    out: list[tuple[str, str]] = []
    cur: list[str] = []
    quoted = angle = False
    comment = 0
    in_group = False
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\" and i + 1 < len(text):
                cur.append(text[i : i + 2])
                i += 2
                continue
            quoted = ch != '"'
        elif comment:
            if ch == "\\" and i + 1 < len(text):
                cur.append(text[i : i + 2])
                i += 2
                continue
            comment += {"(": 1, ")": -1}.get(ch, 0)
        elif ch == '"':
            quoted = True
        elif ch == "(":
            comment = 1
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == ":" and not angle and not in_group:
            name = "".join(cur).strip()
            if len(name) >= 2 and name[0] == name[-1] == '"':
                name = name[1:-1]
            out.append(("start", name))
            in_group = True
            cur = []
            i += 1
            continue
        elif ch in ",;" and not angle:
            if "".join(cur).strip():
                out.append(("addr", "".join(cur)))
            cur = []
            if ch == ";" and in_group:
                out.append(("end", ""))
                in_group = False
            i += 1
            continue
        cur.append(ch)
        i += 1
    if "".join(cur).strip():
        out.append(("addr", "".join(cur)))
    if in_group:
        out.append(("end", ""))
    return out


_ROUTE = re.compile(r"<\s*(@[^:<>\"]*):")


def _address(text: str) -> bytes | None:
    route = _ROUTE.search(text)
    adl = None
    if route:
        adl = route.group(1).strip()
        text = text[: route.start()] + "<" + text[route.end() :]
    found = [(n, a) for n, a in getaddresses([text]) if n or a]
    if not found:
        return None
    name, addr = found[0]
    mailbox, at, host = addr.rpartition("@")
    if not at:
        mailbox, host = addr, ""
    items = [
        nstring(name.encode("utf-8", "surrogateescape") if name else None),
        nstring(adl.encode("utf-8", "surrogateescape") if adl else None),
        nstring(mailbox.encode("utf-8", "surrogateescape") if mailbox else None),
        nstring(host.encode("utf-8", "surrogateescape") if host else None),
    ]
    return b"(" + b" ".join(items) + b")"


def _addresses(value: bytes | None) -> bytes:
    if not value:
        return b"NIL"
    text = value.decode("utf-8", "surrogateescape")
    out = []
    for kind, item in _split_address_list(text):
        if kind == "start":  # RFC 3501 7.4.2: group start, members, then the end marker
            out.append(b"(NIL NIL " + nstring(item.encode("utf-8", "surrogateescape")) + b" NIL)")
        elif kind == "end":
            out.append(b"(NIL NIL NIL NIL)")
        else:
            addr = _address(item)
            if addr is not None:
                out.append(addr)
    return b"(" + b"".join(out) + b")" if out else b"NIL"


def envelope(part: Part) -> bytes:
    def get(name: str) -> bytes | None:
        return part.get(name)

    from_ = get("from")
    sender = get("sender") or from_
    reply_to = get("reply-to") or from_
    items = [
        nstring(get("date")),
        nstring(get("subject")),
        _addresses(from_),
        _addresses(sender),
        _addresses(reply_to),
        _addresses(get("to")),
        _addresses(get("cc")),
        _addresses(get("bcc")),
        nstring(get("in-reply-to")),
        nstring(get("message-id")),
    ]
    return b"(" + b" ".join(items) + b")"


# --- BODY[section] -------------------------------------------------------------------------


class SectionError(ValueError):
    pass


@dataclass(frozen=True)
class Section:
    path: tuple[int, ...] = ()
    text: str = ""  # "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
    fields: tuple[str, ...] = ()

    def label(self) -> str:
        out = ".".join(str(n) for n in self.path)
        if self.text:
            out = f"{out}.{self.text}" if out else self.text
        if self.fields:
            out += " (" + " ".join(self.fields) + ")"
        return out


def parse_section(spec: str) -> Section:
    """The text between BODY[ and ]: '1.2.MIME', 'HEADER.FIELDS (From To)', ''."""
    spec = spec.strip()
    head, _, rest = spec.partition(" ")
    words = head.split(".") if head else []
    path: list[int] = []
    while words and words[0].isdigit():
        n = int(words.pop(0))
        if n == 0 or n > 100_000:
            raise SectionError("invalid section part number")
        path.append(n)
    text = ".".join(words).upper()
    allowed = {"", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"}
    if path:
        allowed.add("MIME")
    if text not in allowed:
        raise SectionError(f"invalid section {spec!r}")
    fields: tuple[str, ...] = ()
    if text.startswith("HEADER.FIELDS"):
        rest = rest.strip()
        if not (rest.startswith("(") and rest.endswith(")")):
            raise SectionError("HEADER.FIELDS needs a list of field names")
        names = rest[1:-1].split()
        names = [n.strip('"') for n in names]
        if not names or any(not n or ":" in n for n in names):
            raise SectionError("HEADER.FIELDS needs a list of field names")
        fields = tuple(names)
    elif rest.strip():
        raise SectionError(f"invalid section {spec!r}")
    return Section(tuple(path), text, fields)


def _select_fields(header: bytes, names: tuple[str, ...], keep: bool) -> bytes:
    wanted = {n.lower() for n in names}
    out: list[bytes] = []
    current = False
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t"):
            if current:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].strip().decode("latin-1").lower()
        current = (name in wanted) == keep
        if current:
            out.append(line)
    return b"".join(out) + b"\r\n"


def section_part(root: Part, path: tuple[int, ...]) -> Part | None:
    """The body part a section's part number names (RFC 3501 6.4.5), or None."""
    part = root
    for i, n in enumerate(path):
        if i and part.message is not None:
            part = part.message
        if part.children:
            if n > len(part.children):
                return None
            part = part.children[n - 1]
        elif n != 1:
            return None
    return part


class UnknownEncoding(ValueError):
    """A Content-Transfer-Encoding BINARY cannot undo (RFC 3516: NO [UNKNOWN-CTE])."""


def binary_bytes(message: bytes, root: Part | None, section: Section) -> bytes:
    """BINARY[section] (RFC 3516): a leaf part's content with its transfer encoding undone;
    the whole message, multiparts, message/rfc822 parts and header sections as they are."""
    if not section.path or section.text:
        return section_bytes(message, root, section)
    assert root is not None
    part = section_part(root, section.path)
    if part is None:
        return b""
    if part.children or part.message is not None:
        return part.body
    return decode_transfer(part.body, part.get("content-transfer-encoding"))


def decode_transfer(body: bytes, encoding: bytes | None) -> bytes:
    name = (encoding or b"7bit").strip().lower()
    if name in (b"7bit", b"8bit", b"binary", b""):
        return body
    if name == b"base64":
        # Lenient like mail readers: characters outside the alphabet are skipped, a missing
        # final padding is tolerated.
        clean = re.sub(rb"[^A-Za-z0-9+/]", b"", body)
        clean = clean[: len(clean) - len(clean) % 4 if len(clean) % 4 == 1 else len(clean)]
        return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))
    if name == b"quoted-printable":
        return decode_qp(body)
    raise UnknownEncoding(name.decode("ascii", "replace"))


_LINE = re.compile(rb"([^\r\n]*)(\r?\n)?")
_QP_OCTET = re.compile(rb"=([0-9A-Fa-f]{2})")


def decode_qp(body: bytes) -> bytes:
    """Quoted-printable (RFC 2045 6.7) the way a conforming decoder reads it: whitespace at the
    end of an encoded line is transport padding and goes (rule 3); a "=" ending a line, even
    with spaces or tabs after it, is a soft line break (rule 5); "=XX" (either case) is an
    octet; a "=" that starts nothing valid is kept as it is. Line breaks come out as CRLF.
    (binascii.a2b_qp keeps the padding and misses a soft break followed by blanks.)"""
    out: list[bytes] = []
    for m in _LINE.finditer(body):
        line, eol = m.group(1), m.group(2)
        if not line and not eol:
            continue  # the empty match at the very end
        line = line.rstrip(b" \t")
        soft = line.endswith(b"=")
        if soft:
            line = line[:-1]
        if b"=" in line:
            line = _QP_OCTET.sub(lambda o: bytes((int(o.group(1), 16),)), line)
        out.append(line)
        if eol and not soft:
            out.append(b"\r\n")
    return b"".join(out)


def section_bytes(message: bytes, root: Part | None, section: Section) -> bytes:
    """The octets of `section` in `message` (`root` is its parse, needed unless trivial)."""
    if not section.path:
        if section.text == "":
            return message
        header, body = split_message(message)
        if section.text == "TEXT":
            return body
        if section.text == "HEADER":
            return header
        return _select_fields(header, section.fields, section.text == "HEADER.FIELDS")
    assert root is not None
    part = section_part(root, section.path)
    if part is None:
        return b""
    if section.text == "":
        return part.body
    if section.text == "MIME":
        return part.header
    msg = part.message
    if msg is None:
        return b""
    if section.text == "TEXT":
        return msg.body
    if section.text == "HEADER":
        return msg.header
    return _select_fields(msg.header, section.fields, section.text == "HEADER.FIELDS")
