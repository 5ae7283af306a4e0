"""Modified UTF-7 for mailbox names (RFC 3501 5.1.3): what clients send and expect on the wire.

Python's codecs have UTF-7 but not IMAP's variant ('&' shift, ',' for '/', no implicit
shifting), hence these few lines.
"""

from __future__ import annotations

import base64
import re

_SHIFTED = re.compile(r"&([A-Za-z0-9+,]*)-")


def decode(name: str) -> str:
    """Wire form -> Unicode; raises ValueError on a malformed shift sequence."""
    if "&" not in name:
        return name

    def repl(m: re.Match[str]) -> str:
        body = m.group(1)
        if not body:
            return "&"
        raw = body.replace(",", "/")
        raw += "=" * (-len(raw) % 4)
        try:
            return base64.b64decode(raw, validate=True).decode("utf-16-be")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"invalid modified UTF-7 in {name!r}") from exc

    out = _SHIFTED.sub(repl, name)
    if "&" in _SHIFTED.sub("", name):
        raise ValueError(f"unterminated '&' in mailbox name {name!r}")
    return out


def encode(name: str) -> str:
    out: list[str] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            raw = "".join(buf).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            buf.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    return "".join(out)
