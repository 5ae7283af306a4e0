"""Failures for want of a resource of the machine (file descriptors, memory, disk space).

Nothing is wrong with the request or with the code: the process ran out of something, and
the same request succeeds once it is back. The servers answer with a temporary failure and
log one line (no traceback: hundreds of sessions hit the same limit at once, and the line
names the cause); every other unexpected error keeps its traceback for the developers.
"""

from __future__ import annotations

import errno
import sqlite3

_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.ENOSPC, errno.EDQUOT}
# SQLite says so in words: it reports EMFILE as "unable to open database file", ENOSPC as
# "database or disk is full", both as sqlite3.OperationalError (an error, not an OSError).
_SQLITE = {"unable to open database file", "database or disk is full"}


def exhausted(exc: BaseException) -> bool:
    """Did `exc` (or what caused it) come from the machine running out of something?"""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno in _ERRNOS:
            return True
        if isinstance(cause, sqlite3.OperationalError) and str(cause) in _SQLITE:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def describe(exc: BaseException) -> str:
    """One line for the log: the exception's type and text."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
