"""Every use the SMTP listener makes of aiosmtpd's and asyncio's internals, in one place.

aiosmtpd 1.4 offers no hook for these, and each was measured worth it (see the comments below),
so they stay, but checked: `problems()` lists what no longer matches the code this was written
against, `tests/test_smtp_internals.py` fails on any of it, and when something does not match
at run time nothing is patched and the protocol falls back to aiosmtpd's own code (slower,
equally correct) after logging a warning. A new aiosmtpd or Python therefore never breaks mail
silently: CI says what to look at.

What is used:
- `aiosmtpd.smtp.inspect`: SMTP.__init__ runs `inspect.getmembers` on the protocol and the
  handler for every connection only to find the `auth_*` methods (a fifth of the CPU of a
  one-message session); replaced by a per-class cache giving the same answers.
- `aiosmtpd.smtp.sanitized_log`: aiosmtpd masks AUTH arguments with a regular expression on
  every command line before asking its (quiet) logger whether it logs at all; asked first here.
- `asyncio.StreamReader._buffer` (and `_eof`, `_exception`, `_wait_for_data`,
  `_maybe_resume_transport`): DATA is read in blocks straight from the reader's buffer (the
  per-line loop was a fifth of the server's CPU per message), and PIPELINING replies are held
  while a complete command line waits there. StreamReader has no public "what is buffered".
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

import aiosmtpd
import aiosmtpd.smtp

log = logging.getLogger("mssgw.smtp")

TESTED_AIOSMTPD = ("1.4.6",)  # versions these assumptions were checked against
_READER_ATTRS = ("_buffer", "_eof", "_exception", "_wait_for_data", "_maybe_resume_transport")


def problems() -> list[str]:
    """What no longer matches (empty when everything does)."""
    found: list[str] = []
    version = getattr(aiosmtpd, "__version__", "?")
    if version not in TESTED_AIOSMTPD:
        found.append(f"aiosmtpd {version} is not one of the versions checked: "
                     f"{', '.join(TESTED_AIOSMTPD)}")
    smtp = aiosmtpd.smtp
    for name in ("inspect", "sanitized_log"):
        if not hasattr(smtp, name):
            found.append(f"aiosmtpd.smtp has no module global {name!r}")
    try:
        init = inspect.getsource(smtp.SMTP.__init__)
        client = inspect.getsource(smtp.SMTP._handle_client)
        data = inspect.getsource(smtp.SMTP.smtp_DATA)
    except (OSError, TypeError, AttributeError) as exc:
        found.append(f"aiosmtpd's source cannot be read: {exc}")
    else:
        for needle, where, text in (
            ("inspect.getmembers(obj)", "SMTP.__init__", init),
            ("inspect.signature(ehlo_hook)", "SMTP.__init__", init),
            ("sanitized_log(", "SMTP._handle_client", client),
            ("_set_post_data_state", "SMTP.smtp_DATA", data),
        ):
            if needle not in text:
                found.append(f"{where} no longer calls {needle}")
    loop = asyncio.new_event_loop()  # a reader needs one; this may run where none is set
    try:
        reader = asyncio.StreamReader(loop=loop)
    finally:
        loop.close()
    for name in _READER_ATTRS:
        if not hasattr(reader, name):
            found.append(f"asyncio.StreamReader has no {name}")
    if not isinstance(getattr(reader, "_buffer", None), bytearray):
        found.append("asyncio.StreamReader._buffer is not a bytearray")
    return found


_found = problems()
OK = not _found
if _found:
    log.warning("aiosmtpd/asyncio internals changed, running without the SMTP speed-ups: %s",
                "; ".join(_found))


# --- aiosmtpd's module globals ---------------------------------------------------------------


class _CachedInspect:
    """What aiosmtpd's `SMTP.__init__` asks of `inspect`, answered from a per-class cache."""

    def __init__(self) -> None:
        self._auth_names: dict[type, list[str]] = {}
        self._signatures: dict[tuple[Any, bool], inspect.Signature] = {}

    def getmembers(self, obj: object) -> list[tuple[str, Any]]:
        names = self._auth_names.get(type(obj))
        if names is None:
            names = [n for n in dir(type(obj)) if n.startswith("auth_")]
            self._auth_names[type(obj)] = names
        return [(n, getattr(obj, n)) for n in names]

    def signature(self, func: Any) -> inspect.Signature:
        key = (getattr(func, "__func__", func), hasattr(func, "__func__"))
        sig = self._signatures.get(key)
        if sig is None:
            sig = self._signatures[key] = inspect.signature(func)
        return sig

    def __getattr__(self, name: str) -> Any:
        return getattr(inspect, name)


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}


def _install() -> None:
    stock = aiosmtpd.smtp.sanitized_log

    def sanitized_log_if_enabled(func: Any, msg: Any, *args: Any, **kwargs: Any) -> None:
        level = _LEVELS.get(getattr(func, "__name__", ""))
        logger = getattr(func, "__self__", None)
        if level is not None and isinstance(logger, logging.Logger) and \
                not logger.isEnabledFor(level):
            return
        stock(func, msg, *args, **kwargs)

    aiosmtpd.smtp.inspect = _CachedInspect()  # type: ignore[assignment]
    aiosmtpd.smtp.sanitized_log = sanitized_log_if_enabled


if OK:
    _install()


# --- asyncio.StreamReader's buffer -------------------------------------------------------------


def line_waiting(reader: asyncio.StreamReader) -> bool:
    """A complete line is already buffered (False when the buffer cannot be seen)."""
    if not OK:
        return False
    buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    return b"\n" in buffer


async def feed_from_buffer(reader: asyncio.StreamReader, parser: Any) -> Any:
    """Feed `parser` (gateway.smtp.dotdata.DotData) what the reader buffers until it is done;
    its result. Works on the buffer the way StreamReader.readuntil() does itself."""
    r: Any = reader
    while True:
        if r._exception is not None:
            raise r._exception
        buf: bytearray = r._buffer
        n = parser.feed(buf)
        if n:
            del buf[:n]
            r._maybe_resume_transport()
        if parser.done:
            return parser.result()
        if r._eof:
            raise ConnectionResetError("the client closed the connection during DATA")
        await r._wait_for_data("readuntil")
