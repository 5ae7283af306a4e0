"""Durable file writes, in one place: what "on disk" means everywhere in the gateway.

- `write_synced`: a new file whose bytes are fsynced before it returns (Maildir `tmp/`, queue
  entries): the caller renames it into place and fsyncs the directory.
- `write_atomic`: replace a file as a whole (temporary file beside it, fsync, rename, fsync of
  the folder): readers see the old file or the new one, never half of one.
- `write_user_file`: `write_atomic` for a file a user named on the command line (`-o FILE`, or
  `-` for standard output), with a one-line error instead of an OSError.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from gateway.errors import GatewayError


def write_all(fd: int, data: bytes) -> None:
    """os.write may write less than asked (large buffers, signals): loop until all is written."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, data: bytes, *, mode: int = 0o600, exclusive: bool = True) -> None:
    """Create `path` (refused if it exists when `exclusive`) with `data`, fsynced."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` as a whole, durably (creates the parent folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it; never widens beyond `mode`
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_user_file(target: str | Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write a file named by a user: `-` is standard output; the folder must exist (a typo in
    it is an error, not a new folder); failures are one-line GatewayErrors."""
    if str(target) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = Path(target)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise GatewayError(f"{target}: folder {folder} does not exist")
    try:
        write_atomic(path, data, mode)
    except OSError as exc:
        raise GatewayError(f"{target}: cannot write: {exc.strerror}") from None
