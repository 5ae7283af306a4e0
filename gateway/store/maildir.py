"""Maildir layout and durable delivery: the contract between the SMTP server and the IMAP server.

Layout: `<mailboxes>/<domain>/<local-part>/` is the INBOX Maildir (`tmp/`, `new/`, `cur/`);
other folders are Maildir++ sub-folders `.<Name>/` beside them (`.Sent`, `.Drafts`, `.Trash`).
The SMTP side only ever adds files to `new/` of a folder; the IMAP side owns everything else
(moving to `cur/`, flags in the `:2,` suffix, its UID index).

Delivery is durable before it returns: the message is written under `tmp/`, fsynced, renamed into
`new/`, and `new/` itself is fsynced so the rename survives a crash. Only then may the caller
acknowledge (SMTP 250). A crash before the rename leaves a stray file in `tmp/`, never a partial
message in `new/`.

File names: `<seconds>.M<microseconds>P<pid>Q<counter>R<random>.<host>,S=<size>`, unique across
processes and hosts; `S=` lets the IMAP server know RFC822.SIZE without opening the file.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import socket
import time
from collections.abc import Iterable
from pathlib import Path

from gateway.fileio import fsync_dir, write_synced

SUBDIRS = ("tmp", "new", "cur")
_counter = itertools.count()
_HOST = re.sub(r"[/:]", "_", socket.gethostname()) or "localhost"
_SAFE_PART = re.compile(r"[a-z0-9!#$%&'*+=?^_`{|}~.-]+")


class UnsafeAddress(ValueError):
    """An address that cannot name a folder safely (path separators, '..', empty parts)."""


def mailbox_path(root: Path, address: str) -> Path:
    """The INBOX Maildir of `address` under `root` (addresses are case-insensitive)."""
    local, sep, domain = address.strip().lower().rpartition("@")
    for part in (local, domain):
        if not sep or not part or not _SAFE_PART.fullmatch(part) or part.startswith("."):
            raise UnsafeAddress(f"cannot store mail for {address!r}")
        if ".." in part:
            raise UnsafeAddress(f"cannot store mail for {address!r}")
    return root / domain / local


def folder_path(inbox: Path, folder: str = "INBOX") -> Path:
    """`INBOX` is the mailbox folder itself; any other folder is the Maildir++ `.<folder>`."""
    return inbox if folder.upper() == "INBOX" else inbox / f".{folder}"


# Maildir's rule for files left in tmp/ (a writer killed before its rename): gone after 36 hours.
STALE_TMP_SECONDS = 36 * 3600


def clean_tmp(root: Path, before: float) -> int:
    """Remove the files in `tmp/` of every Maildir folder under `root` last modified before
    `before` (a time.time() value); the number removed.

    `mssgw serve` calls it as it starts with its start time (nothing of its own writes there
    yet; a command writing right now has a newer file) and then now and then with 36 hours ago.
    A message found there was never acknowledged: its writer died before the rename into new/.
    """
    removed = 0
    for domain in _dirs(root):
        for inbox in _dirs(domain):
            for folder in (inbox, *(d for d in _dirs(inbox) if d.name.startswith("."))):
                for entry in _entries(folder / "tmp"):
                    try:
                        if entry.is_file(follow_symlinks=False) and \
                                entry.stat(follow_symlinks=False).st_mtime < before:
                            os.unlink(entry.path)
                            removed += 1
                    except FileNotFoundError:
                        continue
    return removed


def _entries(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _dirs(path: Path) -> list[Path]:
    return [Path(e.path) for e in _entries(path) if e.is_dir(follow_symlinks=False)]


def ensure_maildir(path: Path) -> Path:
    for sub in SUBDIRS:
        (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def unique_name(size: int) -> str:
    now = time.time()
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    rnd = secrets.token_hex(4)
    return f"{sec}.M{usec}P{os.getpid()}Q{next(_counter)}R{rnd}.{_HOST},S={size}"


def write_tmp(folder: Path, data: bytes) -> tuple[Path, str]:
    """Write `data` to a new file in `folder/tmp`, fsynced. Returns (tmp path, final name)."""
    name = unique_name(len(data))
    tmp = folder / "tmp" / name
    write_synced(tmp, data)
    return tmp, name


def deliver(folder: Path, data: bytes) -> Path:
    """Durably add one message to `folder` (a Maildir); returns its path under `new/`."""
    return deliver_many([(folder, data)])[0]


def deliver_many(items: Iterable[tuple[Path, bytes]]) -> list[Path]:
    """Durably add several messages (to one or several Maildirs) with one fsync per folder.

    Used to batch concurrent deliveries: every file is fsynced, then renamed, then each touched
    `new/` directory is fsynced once. Returns the final paths in the order given.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for folder, data in items:
            ensure_maildir(folder)
            tmp, name = write_tmp(folder, data)
            staged.append((tmp, folder / "new" / name))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in staged:
        os.rename(tmp, final)
    for directory in {final.parent for _, final in staged}:
        fsync_dir(directory)
    return [final for _, final in staged]
