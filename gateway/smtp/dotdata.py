"""The DATA content of one message (RFC 5321 4.5.2), sans-IO: blocks in, message out.

aiosmtpd reads DATA one line at a time (a `readuntil` per line, then per-line checks and a join):
for a 2 KB message that is some forty turns of a Python loop, a good part of the CPU the server
spends on a message. This parser takes whatever the connection has buffered at once and looks
for the end marker (a line holding only `.`) with `bytes.find`, in C.

Same results as aiosmtpd's loop: the content ends at CRLF "." CRLF (a bare LF never ends it);
leading dots are unstuffed; more than `size_limit` bytes gives 552 (the rest is still read and
dropped, so the session stays in step), a line longer than `line_limit` (CRLF included) gives
500; both answers come after the end marker, as RFC 5321 4.2.5 implies.
"""

from __future__ import annotations

END = b"\r\n.\r\n"
TOO_MUCH = "552 Error: Too much mail data"
TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"


class DotData:
    def __init__(self, size_limit: int | None, line_limit: int) -> None:
        self.size_limit = size_limit
        self.line_limit = line_limit
        self.done = False
        self._parts: list[bytes | bytearray] = []
        self._size = 0
        self._too_much = False
        # The content starts right after the CRLF of the DATA command: an end marker there is
        # ".\r\n" alone, which `find(END)` on the data cannot see.
        self._at_start = True

    def feed(self, buf: bytearray) -> int:
        """Take what can be taken from `buf` (what the connection has buffered); returns how
        many leading bytes were consumed (the caller removes them). Sets `done` at the end."""
        if self.done:
            return 0
        if self._at_start:
            if len(buf) < 3:
                return 0
            self._at_start = False
            if buf.startswith(b".\r\n"):
                self.done = True
                return 3
        end = buf.find(END)
        if end >= 0:
            self._take(buf[: end + 2])  # the content keeps the CRLF of its last line
            self.done = True
            return end + len(END)
        # Keep the last 4 bytes back: they may be the start of an end marker.
        n = len(buf) - (len(END) - 1)
        if n <= 0:
            return 0
        self._take(buf[:n])
        return n

    def _take(self, chunk: bytearray) -> None:
        self._size += len(chunk)
        if self._too_much:
            return
        if self.size_limit and self._size > self.size_limit:
            self._too_much = True
            self._parts = []  # drop what was kept: the message is refused anyway
            return
        self._parts.append(chunk)

    def result(self) -> tuple[bytes, str | None]:
        """(unstuffed content, None) or (b"", the error reply)."""
        assert self.done
        if self._too_much:
            return b"", TOO_MUCH
        raw = b"".join(self._parts)
        self._parts = []
        # aiosmtpd's lines are split on CRLF only and measured with their CRLF.
        if len(raw) > self.line_limit - 2 and (
            max(map(len, raw.split(b"\r\n"))) > self.line_limit - 2
        ):
            return b"", TOO_LONG
        return unstuff(raw), None


def unstuff(raw: bytes) -> bytes:
    """Remove the dot the client added in front of every line that starts with one."""
    if raw.startswith(b"."):
        raw = raw[1:]
    return raw.replace(b"\r\n.", b"\r\n")
