"""A user's mail store: Maildir++ folders plus a per-user SQLite index (UIDs, flags, MODSEQ).

Layout (see gateway.store.maildir): the user's root `<mailboxes>/<domain>/<local>/` is INBOX;
folder `A/B` lives in `.A.B/` (IMAP hierarchy delimiter "/", Maildir++ "."; a "." or "%" inside
a name is written %2E / %25). The index `mssgw-index.sqlite` in the root is the truth for UIDs,
flags, keywords and MODSEQ: files never move once in `cur/` (named `<base>:2,`), so a flag change
is one SQLite update, not a rename.

Sharing: every process serving the user opens the same index (WAL); writers serialise on SQLite's
write lock (BEGIN IMMEDIATE). Each folder row has a `highestmodseq` that every change bumps (new
message, flag change, expunge), so a session learns about other sessions' changes with one
indexed read (`changes_since`).

Delivery (SMTP) only adds files to `new/`. `arrivals` lists them (one stat when nothing came)
and `adopt` takes them, in a worker thread for the IMAP sessions: inside one write
transaction it gives each unknown file the next UID (a file with bare LF line ends
is rewritten with CRLF first, atomically, so sizes and offsets match what IMAP sends), commits,
then renames the files to `cur/`. A crash between commit and rename leaves an indexed file in
`new/`: lookups fall back to `new/<base>`, and the next import finishes the rename.

UIDVALIDITY is chosen when a folder is created (seconds since the epoch, strictly above any
earlier one of this user) so a folder deleted and re-created never reuses a UID under the same
UIDVALIDITY; UIDNEXT only grows.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import os
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.db import transaction
from gateway.fileio import fsync_dir, write_synced
from gateway.store import maildir
from gateway.store.interfaces import (
    DELIMITER,
    Appended,
    Changes,
    Folder,
    FolderView,
    MessageInfo,
    StoreError,
)
from gateway.store.sortkeys import SortKeys, extract

INDEX_NAME = "mssgw-index.sqlite"
SCHEMA_VERSION = 5  # PRAGMA user_version of an index whose tables and default folders exist
SPECIAL_USE = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash"}
MAX_FOLDER_NAME = 255
MAX_FOLDERS = 1000
EXPUNGED_KEPT = 50_000  # expunge records kept per folder for other sessions to catch up
# A store nobody has used for this long closes its SQLite connections (`MaildirStore.rest`):
# an open connection holds ~170 KB (SQLite's first page-cache block, the schema, prepared
# statements, the WAL index mapping), which 1,000 idle IMAP sessions multiply into 170 MB.
REST_AFTER = 30.0
_WAL_INDEX_HEADER = 48  # octets: the first copy of the WAL-index header in the -shm file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS folders (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1,
    subscribed INTEGER NOT NULL DEFAULT 1,  -- unused since version 3: see subscriptions
    special_use TEXT,
    keywords TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS messages (
    folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    base TEXT NOT NULL,
    flags TEXT NOT NULL DEFAULT '',
    modseq INTEGER NOT NULL,
    internaldate INTEGER NOT NULL,
    size INTEGER NOT NULL,
    tz INTEGER NOT NULL DEFAULT 0,
    recent INTEGER NOT NULL DEFAULT 1,
    envelope BLOB,
    bodystructure BLOB,
    PRIMARY KEY (folder_id, uid)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_base ON messages(folder_id, base);
CREATE INDEX IF NOT EXISTS messages_modseq ON messages(folder_id, modseq);
CREATE INDEX IF NOT EXISTS messages_recent ON messages(folder_id) WHERE recent = 1;
CREATE TABLE IF NOT EXISTS expunged (
    folder_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (folder_id, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged(folder_id, modseq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- Subscribed names, apart from the folders: RFC 3501 6.3.6, a subscription outlives DELETE.
CREATE TABLE IF NOT EXISTS subscriptions (name TEXT PRIMARY KEY) WITHOUT ROWID;
-- Version 4: what SORT and THREAD need of each message's header (gateway.store.sortkeys),
-- computed when the message enters the index. A table of its own so that sorting scans small
-- rows (a message row may carry its cached ENVELOPE and BODYSTRUCTURE).
CREATE TABLE IF NOT EXISTS sortkeys (
    folder_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    sent INTEGER NOT NULL,
    subject TEXT NOT NULL,
    reply INTEGER NOT NULL,
    from_addr TEXT NOT NULL,
    to_addr TEXT NOT NULL,
    cc_addr TEXT NOT NULL,
    display_from TEXT NOT NULL,
    display_to TEXT NOT NULL,
    message_id TEXT NOT NULL,
    refs TEXT NOT NULL,
    PRIMARY KEY (folder_id, uid)
) WITHOUT ROWID;
"""
_SORTKEY_COLUMNS = (
    "sent, subject, reply, from_addr, to_addr, cc_addr, display_from, display_to, message_id,"
    " refs"
)


def local_zone(when: int) -> int:
    """The server's UTC offset at `when`, in minutes: the zone of a delivery's INTERNALDATE."""
    return time.localtime(when).tm_gmtoff // 60


# A folder row; `subscribed` comes from the subscriptions table.
_FOLDER_COLUMNS = (
    "id, name, uidvalidity, uidnext, highestmodseq,"
    " EXISTS(SELECT 1 FROM subscriptions s WHERE s.name = folders.name), special_use, keywords"
)


def split_flags(text: str) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()


def join_flags(flags: Iterable[str]) -> str:
    return " ".join(sorted(set(flags), key=lambda f: (not f.startswith("\\"), f.lower())))


def stored_flags(old: set[str], flags: set[str], mode: str) -> set[str]:
    """A message's flags after STORE `mode` ('+' add, '-' remove, '' replace) of `flags`: the
    one rule every mail store applies."""
    return old | flags if mode == "+" else old - flags if mode == "-" else set(flags)


def validate_name(name: str) -> str:
    """Normalise an IMAP folder name (already decoded from the wire) or refuse it."""
    if name.upper() == "INBOX":
        return "INBOX"
    if not name or len(name) > MAX_FOLDER_NAME:
        raise StoreError("invalid folder name: empty or too long", "CANNOT")
    if name.startswith(DELIMITER) or name.endswith(DELIMITER) or "//" in name:
        raise StoreError("invalid folder name: empty hierarchy level", "CANNOT")
    # RFC 9051 5.1: no C0 or C1 control, DEL, line or paragraph separator
    if any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or c in "\u2028\u2029" for c in name) \
            or any(c in name for c in "*%"):
        raise StoreError("invalid folder name: control or wildcard character", "CANNOT")
    parts = name.split(DELIMITER)
    if any(p in (".", "..") for p in parts):
        raise StoreError("invalid folder name: '.' or '..' level", "CANNOT")
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    return DELIMITER.join(parts)


def folder_dir_name(name: str) -> str:
    """Maildir++ directory of a (non-INBOX) folder: '.' + levels joined by '.'."""
    levels = [p.replace("%", "%25").replace(".", "%2E") for p in name.split(DELIMITER)]
    return "." + ".".join(levels)


class MaildirStore:
    """`MailStore` on Maildir++ with a SQLite index. Not thread-safe: one instance per process
    and user, shared by that user's sessions (see `StorePool`) on one thread; only `append` and
    `adopt` (which have a connection of their own) may run in a worker thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        maildir.ensure_maildir(root)
        # NORMAL: a commit survives a crash of the process, and is on disk at the next
        # checkpoint or durable commit. Commits that make a message exist (APPEND, COPY,
        # adopting a delivery) use `transaction(durable=True)`, which fsyncs the WAL, so no
        # acknowledged message can be lost; a flag change may at worst be undone by a power cut.
        # Closed while the store rests (`rest`), opened again at the next use (`conn`).
        self._conn: sqlite3.Connection | None = None
        self._used = time.monotonic()
        self._rested: _Rested | None = None
        self._generation = 0  # bumped by every opening and writing: a late rest is ignored
        # APPEND's connection (synchronous=FULL), opened on first use: its durable commit runs
        # in a worker thread with the file's fsyncs, so no event loop waits for the disk.
        self._appender: sqlite3.Connection | None = None
        self._append_lock = threading.Lock()
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            with self.transaction(durable=True):
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        self.conn.execute(stmt)
                if version == 1:  # version 2 keeps each INTERNALDATE's zone
                    self.conn.execute(
                        "ALTER TABLE messages ADD COLUMN tz INTEGER NOT NULL DEFAULT 0"
                    )
                if version in (1, 2):  # version 3 keeps subscriptions in their own table
                    self.conn.execute(
                        "INSERT OR IGNORE INTO subscriptions(name)"
                        " SELECT name FROM folders WHERE subscribed = 1"
                    )
                for name in ("INBOX", *SPECIAL_USE):
                    if not self._row(name):
                        self._create(name)
                # Version 5: the octets of every indexed message (QUOTA), kept up to date by
                # each insert and expunge rather than summed over the folders at each look.
                self.conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value)"
                    " SELECT 'usage', COALESCE(SUM(size), 0) FROM messages"
                )
                self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._new_mtimes: dict[int, int] = {}
        self._new_dirs: dict[str, str] = {}  # folder name -> its new/ directory
        self._views: dict[int, FolderView] = {}
        # Files of expunged messages, unlinked later by `take_garbage()`'s caller (off the
        # event loop: an unlink waits for the journal). A crash before leaves only stray files.
        self.garbage: list[Path] = []
        with contextlib.suppress(OSError):
            os.chmod(root / INDEX_NAME, 0o600)

    def take_garbage(self) -> list[Path]:
        paths, self.garbage = self.garbage, []
        return paths

    def cleanup(self) -> Callable[[], None] | None:
        if not self.garbage:
            return None
        return functools.partial(unlink_all, self.take_garbage())

    def close(self) -> None:
        unlink_all(self.take_garbage())
        with self._append_lock:
            if self._appender is not None:
                self._appender.close()
                self._appender = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        """The store's connection (event loop thread), opened again if the store rested."""
        self._used = time.monotonic()
        conn = self._conn
        if conn is None:
            self._invalidate()
            conn = self._conn = self._connect("NORMAL")
        return conn

    def rest(self, idle_for: float = REST_AFTER) -> Callable[[], None] | None:
        """If nobody used the store for `idle_for` seconds, let it rest: its SQLite
        connections close, to open again at the next use (~1 ms). Returns the closing, for
        the caller to run in a worker thread (the last connection to an index checkpoints its
        WAL, with an fsync), or None when the store stays open (in use, or a transaction or
        APPEND in progress).

        An IDLE session asks `changes_since` twice a second: a resting store answers "nothing
        new" without a connection for as long as the index's files show no commit since it
        rested (`_Rested`), so idle and IDLE sessions alike hold no SQLite memory."""
        conn = self._conn
        if conn is None or conn.in_transaction or time.monotonic() - self._used < idle_for:
            return None
        if not self._append_lock.acquire(blocking=False):
            return None  # an APPEND or adoption in a worker thread
        try:
            self._invalidate()
            header = self._index_files()[0]
            folders = _folders(conn)
            closing = [conn]
            if self._appender is not None:
                closing.append(self._appender)
                self._appender = None
            self._conn = None
        finally:
            self._append_lock.release()
        return functools.partial(self._close_and_rest, closing, self._generation, header, folders)

    def _close_and_rest(self, conns: list[sqlite3.Connection], generation: int,
                        header: bytes | None, folders: dict[int, tuple[int, int, str]]) -> None:
        """Close, then note what the store knows, and the index files' state it is true for
        (in a worker thread). The folders were read before the close: they stand only if no
        commit came between, which the WAL-index header tells. Closing the last connection
        folds the WAL into the database file and removes it: then the file alone holds every
        commit, and is read again without opening a WAL (`immutable`)."""
        _close_all(conns)
        files = self._index_files()
        if files[0] is None:
            try:
                folders = _folders_in_file(self.root / INDEX_NAME)
            except sqlite3.Error:
                return  # opened and changed meanwhile: not resting (the next look reopens)
            if self._index_files() != files:
                return
        elif files[0] != header:
            return  # a commit since the folders were read
        if self._generation == generation and self._conn is None:
            self._rested = _Rested(files, folders, generation)

    def _invalidate(self) -> None:
        self._generation += 1
        self._rested = None

    def _index_files(self) -> tuple[bytes | None, tuple[int, int, int] | None]:
        """What every commit to the index changes: the WAL-index header in `-shm` (SQLite's
        documented file format, walformat.html: each commit bumps its change counter and frame
        count, a WAL restart its salts; SQLite compares the same octets to know its cache is
        stale) and, for the commit of a last connection that removed the WAL, the database
        file itself."""
        index = str(self.root / INDEX_NAME)
        header: bytes | None = None
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(index + "-shm", os.O_RDONLY)
            try:
                header = os.pread(fd, _WAL_INDEX_HEADER, 0)
            finally:
                os.close(fd)
        try:
            st = os.stat(index)
        except FileNotFoundError:
            return header, None
        return header, (st.st_ino, st.st_size, st.st_mtime_ns)

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        conn = sqlite3.connect(
            str(self.root / INDEX_NAME), isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextmanager
    def transaction(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        if durable:
            self.conn.execute("PRAGMA synchronous=FULL")
        try:
            with transaction(self.conn):
                yield self.conn
        finally:
            if durable:
                self.conn.execute("PRAGMA synchronous=NORMAL")

    # --- folders -------------------------------------------------------------------------

    def path_of(self, name: str) -> Path:
        return self.root if name == "INBOX" else self.root / folder_dir_name(name)

    def _row(self, name: str) -> sqlite3.Row | None:
        cur = self.conn.execute(
            f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE name = ?",  # noqa: S608 - constant
            (name,),
        )
        return cur.fetchone()  # type: ignore[no-any-return]

    @staticmethod
    def _folder(row: Sequence[object]) -> Folder:
        return Folder(
            id=int(row[0]),  # type: ignore[call-overload]
            name=str(row[1]),
            uidvalidity=int(row[2]),  # type: ignore[call-overload]
            uidnext=int(row[3]),  # type: ignore[call-overload]
            highestmodseq=int(row[4]),  # type: ignore[call-overload]
            subscribed=bool(row[5]),
            special_use=str(row[6]) if row[6] else None,
            keywords=split_flags(str(row[7])),
        )

    def folder(self, name: str) -> Folder | None:
        try:
            name = validate_name(name)
        except StoreError:
            return None
        row = self._row(name)
        return self._folder(row) if row else None

    def folder_by_id(self, folder_id: int) -> Folder | None:
        row = self.conn.execute(
            f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE id = ?",  # noqa: S608 - constant
            (folder_id,),
        ).fetchone()
        return self._folder(row) if row else None

    def folders(self) -> list[Folder]:
        rows = self.conn.execute(
            f"SELECT {_FOLDER_COLUMNS} FROM folders ORDER BY name"  # noqa: S608 - constant
        ).fetchall()
        return [self._folder(r) for r in rows]

    def _create(self, name: str, subscribed: bool = True) -> None:
        # Remembered apart from the folders: a deleted folder's UIDVALIDITY is never reissued.
        last = self.conn.execute(
            "SELECT MAX(v) FROM (SELECT MAX(uidvalidity) AS v FROM folders"
            " UNION ALL SELECT value FROM meta WHERE key = 'uidvalidity')"
        ).fetchone()[0] or 0
        uidvalidity = max(int(time.time()), last + 1)
        self.conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('uidvalidity', ?)", (uidvalidity,)
        )
        maildir.ensure_maildir(self.path_of(name))
        self.conn.execute(
            "INSERT INTO folders(name, uidvalidity, special_use) VALUES (?, ?, ?)",
            (name, uidvalidity, SPECIAL_USE.get(name)),
        )
        if subscribed:
            self.conn.execute("INSERT OR IGNORE INTO subscriptions(name) VALUES (?)", (name,))

    def create_folder(self, name: str) -> None:
        name = validate_name(name)
        if name == "INBOX":
            raise StoreError("INBOX always exists", "ALREADYEXISTS")
        with self.transaction():
            if self._row(name):
                raise StoreError(f"folder {name} already exists", "ALREADYEXISTS")
            count = self.conn.execute("SELECT COUNT(*) FROM folders").fetchone()[0]
            if count >= MAX_FOLDERS:
                raise StoreError("too many folders", "LIMIT")
            # Create missing parents too (RFC 3501 CREATE: "foo/bar" creates "foo"). Only
            # SUBSCRIBE subscribes (the default folders are subscribed from the start).
            parts = name.split(DELIMITER)
            for i in range(1, len(parts) + 1):
                sub = DELIMITER.join(parts[:i])
                if sub != "INBOX" and not self._row(sub):
                    self._create(sub, subscribed=False)

    def delete_folder(self, name: str) -> None:
        name = validate_name(name)
        if name == "INBOX":
            raise StoreError("INBOX cannot be deleted", "CANNOT")
        with self.transaction():
            row = self._row(name)
            if not row:
                raise StoreError(f"no folder named {name}", "NONEXISTENT")
            children = self.conn.execute(
                "SELECT 1 FROM folders WHERE name LIKE ? ESCAPE '\\' LIMIT 1",
                (_like_prefix(name + DELIMITER),),
            ).fetchone()
            if children:
                # RFC 3501 allows refusing to delete a folder with inferiors; we keep it simple.
                raise StoreError(f"folder {name} has sub-folders; delete them first",
                                 "HASCHILDREN")  # RFC 9051 7.1
            self._count_usage(-self.conn.execute(
                "SELECT COALESCE(SUM(size), 0) FROM messages WHERE folder_id = ?", (row[0],)
            ).fetchone()[0])
            self.conn.execute("DELETE FROM messages WHERE folder_id = ?", (row[0],))
            self.conn.execute("DELETE FROM expunged WHERE folder_id = ?", (row[0],))
            self.conn.execute("DELETE FROM sortkeys WHERE folder_id = ?", (row[0],))
            self.conn.execute("DELETE FROM folders WHERE id = ?", (row[0],))
        _remove_maildir(self.path_of(name))

    def rename_folder(self, old: str, new: str) -> None:
        old = validate_name(old)
        new = validate_name(new)
        if new == "INBOX":
            raise StoreError("cannot rename to INBOX", "ALREADYEXISTS")
        if new == old or new.startswith(old + DELIMITER):
            raise StoreError("cannot rename a folder into itself", "CANNOT")
        with self.transaction(durable=True):
            if not self._row(old):
                raise StoreError(f"no folder named {old}", "NONEXISTENT")
            if self._row(new):
                raise StoreError(f"folder {new} already exists", "ALREADYEXISTS")
            if old == "INBOX":
                # RFC 3501: renaming INBOX moves its messages to a new folder; INBOX stays.
                self._create(new, subscribed=False)
                dst = self.conn.execute("SELECT id FROM folders WHERE name = ?", (new,)).fetchone()
                src = self._row("INBOX")
                assert src is not None
                self._move_all(int(src[0]), int(dst[0]), self.path_of("INBOX"), self.path_of(new))
                return
            rows = self.conn.execute(
                "SELECT id, name FROM folders WHERE name = ? OR name LIKE ? ESCAPE '\\'",
                (old, _like_prefix(old + DELIMITER)),
            ).fetchall()
            parts = new.split(DELIMITER)
            for i in range(1, len(parts)):
                sub = DELIMITER.join(parts[:i])
                if sub != "INBOX" and not self._row(sub):
                    self._create(sub, subscribed=False)
            for folder_id, name in rows:
                target = new + name[len(old) :]
                os.rename(self.path_of(name), self.path_of(target))
                self.conn.execute("UPDATE folders SET name = ?, special_use = NULL WHERE id = ?",
                                  (target, folder_id))
                # A renamed folder stays subscribed if it was (clients expect to keep seeing it).
                self.conn.execute("UPDATE OR REPLACE subscriptions SET name = ? WHERE name = ?",
                                  (target, name))
                if target in SPECIAL_USE:
                    self.conn.execute("UPDATE folders SET special_use = ? WHERE id = ?",
                                      (SPECIAL_USE[target], folder_id))

    def _move_all(self, src_id: int, dst_id: int, src: Path, dst: Path) -> None:
        rows = self.conn.execute(
            "SELECT uid, base, flags, internaldate, size, tz FROM messages WHERE folder_id = ?"
            " ORDER BY uid",
            (src_id,),
        ).fetchall()
        uids = []
        keys = self._stored_keys(src_id, [r[0] for r in rows])
        for uid, base, flags, idate, size, tz in rows:
            path = self._file(src, base)
            new_base = _link_into(path, dst)
            self._insert(dst_id, new_base, split_flags(flags), idate, size, tz,
                         keys=keys.get(uid))
            uids.append(uid)
        self._expunge_rows(src_id, uids)
        for _, base, *_ in rows:
            with contextlib.suppress(FileNotFoundError):
                self._file(src, base).unlink()

    def subscribe(self, name: str, on: bool) -> None:
        name = validate_name(name)
        with self.transaction():
            if not on:
                self.conn.execute("DELETE FROM subscriptions WHERE name = ?", (name,))
                return
            if not self._row(name):  # RFC 3501 lets SUBSCRIBE check that the folder exists
                raise StoreError(f"no folder named {name}", "NONEXISTENT")
            self.conn.execute("INSERT OR IGNORE INTO subscriptions(name) VALUES (?)", (name,))

    def subscriptions(self) -> set[str]:
        """Subscribed names, folders that no longer exist included."""
        return {str(r[0]) for r in self.conn.execute("SELECT name FROM subscriptions")}

    # --- messages ------------------------------------------------------------------------

    def _file(self, folder_path: Path, base: str) -> Path:
        cur = folder_path / "cur" / f"{base}:2,"
        if cur.exists():
            return cur
        new = folder_path / "new" / base
        return new if new.exists() else cur

    def read_file(self, folder: Folder, base: str) -> bytes | None:
        """The message's octets, or None if it is not where `folder` says. File access only:
        safe in a worker thread. Opens `cur/` then `new/` directly (FETCH reads a file per
        message: no stat first, no Path objects)."""
        folder_path = str(self.path_of(folder.name))
        for name in (f"{folder_path}/cur/{base}:2,", f"{folder_path}/new/{base}"):
            try:
                with open(name, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                continue
        return None

    def read(self, folder: Folder, base: str) -> bytes:
        data = self.read_file(folder, base)
        if data is not None:
            return data
        current = self.folder_by_id(folder.id)  # renamed by another session meanwhile?
        if current is not None and current.name != folder.name:
            data = self.read_file(current, base)
            if data is not None:
                return data
        return b""  # expunged by another session meanwhile: an empty message, not a crash

    def _next_modseq(self, folder_id: int) -> int:
        row = self.conn.execute(
            "UPDATE folders SET highestmodseq = highestmodseq + 1 WHERE id = ?"
            " RETURNING highestmodseq",
            (folder_id,),
        ).fetchone()
        return int(row[0])

    def _insert(
        self, folder_id: int, base: str, flags: Iterable[str], internaldate: int, size: int,
        tz: int | None = None, conn: sqlite3.Connection | None = None,
        keys: SortKeys | None = None,
    ) -> int:
        conn = conn or self.conn
        row = conn.execute(
            "UPDATE folders SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1"
            " WHERE id = ? RETURNING uidnext - 1, highestmodseq",
            (folder_id,),
        ).fetchone()
        uid, modseq = int(row[0]), int(row[1])
        flags = tuple(flags)
        conn.execute(
            "INSERT INTO messages(folder_id, uid, base, flags, modseq, internaldate, size, tz)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (folder_id, uid, base, join_flags(flags), modseq, internaldate, size,
             local_zone(internaldate) if tz is None else tz),
        )
        self._add_keywords(folder_id, flags, conn)
        self._count_usage(size, conn)
        if keys is not None:
            conn.execute(
                f"INSERT OR REPLACE INTO sortkeys(folder_id, uid, {_SORTKEY_COLUMNS})"  # noqa: S608
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (folder_id, uid, *_key_row(keys)),
            )
        return uid

    def _count_usage(self, delta: int, conn: sqlite3.Connection | None = None) -> None:
        if delta:
            (conn or self.conn).execute(
                "UPDATE meta SET value = value + ? WHERE key = 'usage'", (delta,)
            )

    def usage(self) -> int:
        """Octets the user's mail takes (QUOTA's STORAGE): every indexed message, and the
        deliveries still waiting in INBOX's new/."""
        return mailbox_usage(self.root, self.conn)

    def _add_keywords(
        self, folder_id: int, flags: Iterable[str], conn: sqlite3.Connection | None = None
    ) -> None:
        kws = {f for f in flags if not f.startswith("\\")}
        if not kws:
            return
        conn = conn or self.conn
        row = conn.execute("SELECT keywords FROM folders WHERE id = ?", (folder_id,))
        known = set(split_flags(row.fetchone()[0]))
        if not kws <= known:
            conn.execute(
                "UPDATE folders SET keywords = ? WHERE id = ?",
                (" ".join(sorted(known | kws)), folder_id),
            )

    def import_new(self, folder: Folder) -> bool:
        """Adopt files delivered into `new/`; True when some were added. The IMAP sessions call
        the two halves themselves, `adopt` in a worker thread; this is both, in the caller's."""
        names = self.arrivals(folder)
        return bool(names) and self.adopt(folder, names)

    def arrivals(self, folder: Folder) -> list[str]:
        """The files waiting in `new/` ([] when the folder has not changed): one stat in the
        common case, as the sessions call it after every command on the event loop."""
        new_name = self._new_dirs.get(folder.name)
        if new_name is None:
            new_name = self._new_dirs[folder.name] = str(self.path_of(folder.name) / "new")
        try:
            mtime = os.stat(new_name).st_mtime_ns
        except FileNotFoundError:
            return []
        # The directory's mtime changes when a file arrives, but with the kernel's coarse clock
        # two changes within one tick may show the same value: trust it only once it is old.
        if self._new_mtimes.get(folder.id) == mtime and time.time_ns() - mtime > 2_000_000_000:
            return []
        self._new_mtimes[folder.id] = mtime
        with os.scandir(new_name) as it:
            return [e.name for e in it if not e.name.startswith(".")]

    def adopt(self, folder: Folder, names: list[str]) -> bool:
        """Index `names` (from `arrivals`) durably and move them to `cur/`; True when some were
        added. It reads the files, fsyncs and commits, so the sessions run it in a worker
        thread: it writes through APPEND's connection, under APPEND's lock (two sessions of
        one user adopting at once: the second finds the files known or already moved)."""
        path = self.path_of(folder.name)
        new_dir = path / "new"
        added = False
        with self._append_lock:
            if self._appender is None:
                self._appender = self._connect("FULL")
            self._invalidate()  # it writes: whatever the store rested with is stale
            conn = self._appender
            with transaction(conn):
                known = {
                    name
                    for name in names
                    if conn.execute(
                        "SELECT 1 FROM messages WHERE folder_id = ? AND base = ?",
                        (folder.id, name),
                    ).fetchone()
                }
                for name in sorted(names, key=_delivery_order):
                    if name in known:
                        continue
                    src = new_dir / name
                    try:
                        data = src.read_bytes()
                        st = src.stat()
                    except FileNotFoundError:
                        continue  # another process adopted it meanwhile
                    fixed = crlf(data)
                    if fixed is not data:
                        tmp = path / "tmp" / f"{name}.crlf"
                        write_synced(tmp, fixed, exclusive=False)
                        os.rename(tmp, src)
                    when = int(st.st_mtime)
                    self._insert(folder.id, name, (), when, len(fixed), conn=conn,
                                 keys=extract(fixed, when))
                    added = True
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    os.rename(new_dir / name, path / "cur" / f"{name}:2,")
            with contextlib.suppress(OSError):
                fsync_dir(path / "cur")
        return added

    def uids(self, folder: Folder) -> list[int]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT uid FROM messages WHERE folder_id = ? ORDER BY uid", (folder.id,)
            )
        ]

    def counts(self, folder: Folder) -> tuple[int, int, int]:
        """(messages, unseen, recent)."""
        row = self.conn.execute(
            "SELECT COUNT(*), SUM(instr(flags, '\\Seen') = 0), SUM(recent) FROM messages"
            " WHERE folder_id = ?",
            (folder.id,),
        ).fetchone()
        return int(row[0]), int(row[1] or 0), int(row[2] or 0)

    def status_sizes(self, folder: Folder) -> tuple[int, int]:
        """(messages flagged \\Deleted, octets of all messages): STATUS DELETED and SIZE."""
        row = self.conn.execute(
            "SELECT SUM(instr(flags, '\\Deleted') > 0), SUM(size) FROM messages"
            " WHERE folder_id = ?",
            (folder.id,),
        ).fetchone()
        return int(row[0] or 0), int(row[1] or 0)

    def first_unseen_uid(self, folder: Folder) -> int | None:
        row = self.conn.execute(
            "SELECT MIN(uid) FROM messages WHERE folder_id = ? AND instr(flags, '\\Seen') = 0",
            (folder.id,),
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def peek_recent(self, folder: Folder) -> set[int]:
        """The \\Recent marks nobody has claimed yet, left in place (EXAMINE, RFC 3501 6.3.2:
        a read-only session must not make messages lose \\Recent)."""
        rows = self.conn.execute(
            "SELECT uid FROM messages WHERE folder_id = ? AND recent = 1", (folder.id,)
        ).fetchall()
        return {int(r[0]) for r in rows}

    def claim_recent(self, folder: Folder) -> set[int]:
        """Take the \\Recent marks: the session that claims them is the one that shows them."""
        if not self.conn.execute(
            "SELECT 1 FROM messages WHERE folder_id = ? AND recent = 1 LIMIT 1", (folder.id,)
        ).fetchone():
            return set()
        with self.transaction():
            rows = self.conn.execute(
                "UPDATE messages SET recent = 0 WHERE folder_id = ? AND recent = 1 RETURNING uid",
                (folder.id,),
            ).fetchall()
        return {int(r[0]) for r in rows}

    def _rows(self, folder: Folder, uids: Sequence[int], columns: str) -> Iterator[tuple]:  # type: ignore[type-arg]
        """Rows `uid, <columns>` of the given messages: one range scan when they are dense,
        primary-key lookups when they are sparse (e.g. "1,100000")."""
        if not uids:
            return
        lo, hi = min(uids), max(uids)
        if hi - lo + 1 <= 4 * len(uids):
            wanted = set(uids) if len(uids) < hi - lo + 1 else None
            for row in self.conn.execute(
                f"SELECT uid, {columns} FROM messages"  # noqa: S608 - columns are ours
                " WHERE folder_id = ? AND uid BETWEEN ? AND ?",
                (folder.id, lo, hi),
            ):
                if wanted is None or row[0] in wanted:
                    yield row
            return
        query = f"SELECT uid, {columns} FROM messages WHERE folder_id = ? AND uid = ?"  # noqa: S608
        for uid in sorted(set(uids)):
            row = self.conn.execute(query, (folder.id, uid)).fetchone()
            if row is not None:
                yield row

    def infos(self, folder: Folder, uids: Sequence[int]) -> dict[int, MessageInfo]:
        return {
            uid: MessageInfo(uid, split_flags(flags), modseq, idate, size, base, tz)
            for uid, flags, modseq, idate, size, base, tz in self._rows(
                folder, uids, "flags, modseq, internaldate, size, base, tz"
            )
        }

    def _stored_keys(self, folder_id: int, uids: Sequence[int]) -> dict[int, SortKeys]:
        if not uids:
            return {}
        lo, hi = min(uids), max(uids)
        rows = self.conn.execute(
            f"SELECT uid, {_SORTKEY_COLUMNS} FROM sortkeys"  # noqa: S608 - constant
            " WHERE folder_id = ? AND uid BETWEEN ? AND ?",
            (folder_id, lo, hi),
        )
        if len(uids) == hi - lo + 1:  # every UID of the range (SORT ... ALL): no filter
            return {r[0]: _keys_of(r[1:]) for r in rows}
        wanted = set(uids)
        return {r[0]: _keys_of(r[1:]) for r in rows if r[0] in wanted}

    def sort_keys(self, folder: Folder, uids: Sequence[int]) -> dict[int, SortKeys]:
        """What SORT and THREAD compare (gateway.store.sortkeys) for each of `uids` still in
        the folder. Read from the index; messages indexed before version 4 get theirs computed
        from their header now, once, and kept."""
        keys = self._stored_keys(folder.id, uids)
        missing = [u for u in uids if u not in keys]
        if missing:
            infos = self.infos(folder, missing)
            fresh = {
                uid: extract(self.read(folder, info.base), info.internaldate)
                for uid, info in infos.items()
            }
            with self.transaction():
                present = {r[0] for r in self._rows(folder, list(fresh), "1")}
                self.conn.executemany(
                    f"INSERT OR REPLACE INTO sortkeys(folder_id, uid, {_SORTKEY_COLUMNS})"  # noqa: S608
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(folder.id, u, *_key_row(k)) for u, k in fresh.items() if u in present],
                )
            keys.update(fresh)
        return keys

    def sort_values(self, folder: Folder, uids: Sequence[int], key: str) -> dict[int, Any]:
        """One sort key of each of `uids` (SORT reads only the columns its criteria name):
        `key` is a SortKeys field (sent, subject, from_addr, to_addr, cc_addr, display_from,
        display_to) or "internaldate" / "size" (ARRIVAL, SIZE). Messages gone are left out."""
        if not uids:
            return {}
        if key in ("internaldate", "size"):
            table = "messages"
        elif key in SortKeys._fields and key not in ("references", "reply", "message_id"):
            table = "sortkeys"
        else:
            raise ValueError(f"not a sort key: {key}")
        lo, hi = min(uids), max(uids)
        rows = self.conn.execute(
            f"SELECT uid, {key} FROM {table}"  # noqa: S608 - both checked above
            " WHERE folder_id = ? AND uid BETWEEN ? AND ?",
            (folder.id, lo, hi),
        )
        if len(uids) == hi - lo + 1:
            values = dict(rows.fetchall())
        else:
            wanted = set(uids)
            values = {u: v for u, v in rows if u in wanted}
        if table == "sortkeys" and len(values) < len(uids):  # keys not computed yet
            missing = [u for u in uids if u not in values]
            for u, k in self.sort_keys(folder, missing).items():
                values[u] = getattr(k, key)
        return values

    def thread_keys(
        self, folder: Folder, uids: Sequence[int]
    ) -> dict[int, tuple[int, int, str, int, str, str]]:
        """(uid, sent, subject, reply, message_id, refs) of each of `uids`: THREAD=REFERENCES
        reads these five columns only, in one scan, and takes SQLite's rows as they come."""
        if not uids:
            return {}
        lo, hi = min(uids), max(uids)
        rows = self.conn.execute(
            "SELECT uid, sent, subject, reply, message_id, refs FROM sortkeys"
            " WHERE folder_id = ? AND uid BETWEEN ? AND ?",
            (folder.id, lo, hi),
        )
        if len(uids) == hi - lo + 1:
            found = {r[0]: r for r in rows}
        else:
            wanted = set(uids)
            found = {r[0]: r for r in rows if r[0] in wanted}
        if len(found) < len(uids):  # keys not computed yet (indexed before version 4)
            missing = [u for u in uids if u not in found]
            for u, k in self.sort_keys(folder, missing).items():
                found[u] = (u, k.sent, k.subject, int(k.reply), k.message_id,
                            " ".join(k.references))
        return found

    def cached(
        self, folder: Folder, uids: Sequence[int]
    ) -> dict[int, tuple[bytes | None, bytes | None]]:
        """The cached (ENVELOPE, BODYSTRUCTURE) of each message."""
        return {
            uid: (env, bs) for uid, env, bs in self._rows(folder, uids, "envelope, bodystructure")
        }

    def set_cached(self, folder: Folder, items: list[tuple[int, bytes, bytes]]) -> None:
        # A cache, not state: no modseq change; a lost write is recomputed later.
        with self.transaction():
            self.conn.executemany(
                "UPDATE messages SET envelope = ?, bodystructure = ?"
                " WHERE folder_id = ? AND uid = ?",
                [(env, bs, folder.id, uid) for uid, env, bs in items],
            )

    def store_flags(
        self,
        folder: Folder,
        uids: Sequence[int],
        flags: Iterable[str],
        mode: str,
        unchangedsince: int | None = None,
    ) -> tuple[list[tuple[int, tuple[str, ...], int]], list[int]]:
        """mode '+', '-' or '' (replace). Returns (changed [(uid, flags, modseq)], failed
        UIDs whose modseq is above `unchangedsince` (CONDSTORE))."""
        flags = set(flags)
        changed: list[tuple[int, tuple[str, ...], int]] = []
        failed: list[int] = []
        with self.transaction():
            infos = self.infos(folder, uids)
            updates = []
            modseq = 0
            for uid in uids:
                info = infos.get(uid)
                if info is None:
                    continue
                if unchangedsince is not None and info.modseq > unchangedsince:
                    failed.append(uid)
                    continue
                old = set(info.flags)
                new = stored_flags(old, flags, mode)
                if new == old:
                    continue
                if not modseq:
                    modseq = self._next_modseq(folder.id)
                text = join_flags(new)
                updates.append((text, modseq, folder.id, uid))
                changed.append((uid, split_flags(text), modseq))
            if updates:
                self.conn.executemany(
                    "UPDATE messages SET flags = ?, modseq = ? WHERE folder_id = ? AND uid = ?",
                    updates,
                )
                if mode != "-":
                    self._add_keywords(folder.id, flags)
        return changed, failed

    def append(
        self, folder: Folder, data: bytes, flags: Iterable[str], internaldate: int | None = None,
        tz: int | None = None, verbatim: bool = False,
    ) -> int:
        """Durably add a message (fsynced file, then a durable commit of the index) and return
        its UID. `tz`: the zone the client gave with the date (minutes east of UTC);
        `verbatim`: see `write_message`. Safe in a worker thread: the index is written through
        APPEND's own connection, not the store's main one; concurrent APPENDs write their files
        in parallel and commit one after the other. Others see the message once the commit is
        on disk."""
        return self.append_many(folder, [Appended(data, tuple(flags), internaldate, tz,
                                                  verbatim)])[0]

    def append_many(self, folder: Folder, messages: Sequence[Appended]) -> list[int]:
        """Add several messages at once, all or none (MULTIAPPEND, RFC 3502): every file
        written and fsynced, then one durable commit gives them consecutive UIDs (returned in
        order). Same threading as `append`."""
        written: list[Path] = []
        try:
            rows = []
            for m in messages:
                final, base, size = self.write_message(folder, m.data, m.verbatim)
                written.append(final)
                when = int(time.time()) if m.internaldate is None else m.internaldate
                rows.append((base, m.flags, when, size, m.tz, extract(m.data, when)))
            with self._append_lock:
                if self._appender is None:
                    self._appender = self._connect("FULL")
                self._invalidate()
                conn = self._appender
                with transaction(conn):
                    exists = conn.execute("SELECT 1 FROM folders WHERE id = ?", (folder.id,))
                    if not exists.fetchone():
                        raise StoreError(f"folder {folder.name} was deleted", "TRYCREATE")
                    return [self._insert(folder.id, base, flags, when, size, tz, conn, keys)
                            for base, flags, when, size, tz, keys in rows]
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise

    def write_message(
        self, folder: Folder, data: bytes, verbatim: bool = False
    ) -> tuple[Path, str, int]:
        """The file half of APPEND: the message fsynced into `cur/` (CRLF line ends, unless
        `verbatim`: binary content sent as a literal8 keeps its octets). Touches no SQLite.
        Returns (path, base name, size)."""
        path = self.path_of(folder.name)
        if not verbatim:
            data = crlf(data)
        try:
            tmp, base = maildir.write_tmp(path, data)
        except FileNotFoundError:  # its directories are made with the folder; a lost one again
            maildir.ensure_maildir(path)
            tmp, base = maildir.write_tmp(path, data)
        final = path / "cur" / f"{base}:2,"
        os.rename(tmp, final)
        fsync_dir(path / "cur")
        return final, base, len(data)

    def copy(
        self, src: Folder, uids: Sequence[int], dst: Folder
    ) -> list[tuple[int, int]]:
        """Copy messages (hard links: the files never change) and return [(src, dst uid)]."""
        src_path, dst_path = self.path_of(src.name), self.path_of(dst.name)
        maildir.ensure_maildir(dst_path)
        infos = self.infos(src, uids)
        linked: list[tuple[int, str, MessageInfo]] = []
        try:
            for uid in uids:
                info = infos.get(uid)
                if info is None:
                    continue
                try:
                    base = _link_into(self._file(src_path, info.base), dst_path)
                except FileNotFoundError:
                    continue
                linked.append((uid, base, info))
            fsync_dir(dst_path / "cur")
            out = []
            keys = self._stored_keys(src.id, [uid for uid, _, _ in linked])
            with self.transaction(durable=True):
                if not self.folder_by_id(dst.id):
                    raise StoreError(f"folder {dst.name} was deleted", "TRYCREATE")
                for uid, base, info in linked:
                    flags = [f for f in info.flags if f != "\\Recent"]
                    out.append(
                        (uid, self._insert(dst.id, base, flags, info.internaldate, info.size,
                                           info.tz, keys=keys.get(uid)))
                    )
            return out
        except BaseException:
            for _, base, _ in linked:
                (dst_path / "cur" / f"{base}:2,").unlink(missing_ok=True)
            raise

    def _expunge_rows(self, folder_id: int, uids: Sequence[int]) -> int:
        modseq = self._next_modseq(folder_id)
        freed = 0
        for u in uids:
            row = self.conn.execute(
                "DELETE FROM messages WHERE folder_id = ? AND uid = ? RETURNING size",
                (folder_id, u),
            ).fetchone()
            freed += int(row[0]) if row else 0
        self._count_usage(-freed)
        self.conn.executemany(
            "DELETE FROM sortkeys WHERE folder_id = ? AND uid = ?", [(folder_id, u) for u in uids]
        )
        self.conn.executemany(
            "INSERT OR REPLACE INTO expunged(folder_id, uid, modseq) VALUES (?, ?, ?)",
            [(folder_id, u, modseq) for u in uids],
        )
        return modseq

    def expunge(self, folder: Folder, uids: Sequence[int] | None = None) -> list[int]:
        """Remove the \\Deleted messages (only those among `uids` when given); returns the
        UIDs removed, ascending."""
        with self.transaction():
            rows = self.conn.execute(
                "SELECT uid, base FROM messages WHERE folder_id = ? AND instr(flags, '\\Deleted')"
                " ORDER BY uid",
                (folder.id,),
            ).fetchall()
            if uids is not None:
                keep = set(uids)
                rows = [r for r in rows if r[0] in keep]
            if rows:
                self._expunge_rows(folder.id, [r[0] for r in rows])
                self._prune_expunged(folder.id)
        path = self.path_of(folder.name)
        self.garbage += [self._file(path, base) for _, base in rows]
        return [int(r[0]) for r in rows]

    def remove(self, folder: Folder, uids: Sequence[int]) -> None:
        """Expunge exactly `uids` whatever their flags (the second half of MOVE)."""
        infos = self.infos(folder, uids)
        with self.transaction():
            self._expunge_rows(folder.id, list(infos))
        path = self.path_of(folder.name)
        self.garbage += [self._file(path, info.base) for info in infos.values()]

    def _prune_expunged(self, folder_id: int) -> None:
        self.conn.execute(
            "DELETE FROM expunged WHERE folder_id = ? AND modseq < (SELECT modseq FROM expunged"
            " WHERE folder_id = ? ORDER BY modseq DESC LIMIT 1 OFFSET ?)",
            (folder_id, folder_id, EXPUNGED_KEPT),
        )

    def vanished_since(
        self, folder: Folder, modseq: int, within: Sequence[tuple[int, int]] | None = None
    ) -> list[tuple[int, int]]:
        """UID ranges expunged after `modseq`, inside `within` (UID ranges, 0 for "*") when
        given: QRESYNC's VANISHED (EARLIER). When expunge records past `modseq` may have been
        pruned, every UID of `within` (default 1:*) no longer here is given instead, a superset
        RFC 7162 lets a server send."""
        top = max(folder.uidnext - 1, 0)
        spans = [(min(lo or top, hi or top), max(lo or top, hi or top)) for lo, hi in
                 (within if within is not None else [(1, 0)])]
        count, oldest = self.conn.execute(
            "SELECT COUNT(*), MIN(modseq) FROM expunged WHERE folder_id = ?", (folder.id,)
        ).fetchone()
        if count < EXPUNGED_KEPT or (oldest or 0) <= modseq + 1:
            uids = [
                int(r[0]) for r in self.conn.execute(
                    "SELECT uid FROM expunged WHERE folder_id = ? AND modseq > ? ORDER BY uid",
                    (folder.id, modseq),
                )
                if any(lo <= r[0] <= hi for lo, hi in spans)
            ]
            return _ranges(uids)
        present = [int(r[0]) for r in self.conn.execute(
            "SELECT uid FROM messages WHERE folder_id = ? ORDER BY uid", (folder.id,))]
        out: list[tuple[int, int]] = []
        for lo, hi in sorted(spans):
            start = lo
            i = bisect.bisect_left(present, lo)
            while start <= hi:
                nxt = present[i] if i < len(present) else hi + 1
                if nxt > start:
                    out.append((start, min(nxt - 1, hi)))
                start = nxt + 1
                i += 1
        return out

    def changes_since(self, folder: Folder, modseq: int, last_uid: int) -> Changes | None:
        """What happened after `modseq`: new UIDs above `last_uid`, flag changes and
        expunges. None when the folder no longer exists (deleted or renamed)."""
        rested = self._rested
        if self._conn is None and rested is not None and rested.generation == self._generation:
            known = rested.folders.get(folder.id)
            if (known is None or known[0] <= modseq) and self._index_files() == rested.files:
                if known is None or known[1] != folder.uidvalidity:
                    return None
                return Changes(known[0], [], [], [], known[2])
        row = self.conn.execute(
            "SELECT highestmodseq, uidvalidity, name FROM folders WHERE id = ?", (folder.id,)
        ).fetchone()
        if row is None or row[1] != folder.uidvalidity:
            return None
        highest, name = int(row[0]), str(row[2])
        if highest <= modseq:
            return Changes(highest, [], [], [], name)
        self.conn.execute("BEGIN")  # one consistent snapshot for the three reads
        try:
            new = self.conn.execute(
                "SELECT uid, flags FROM messages WHERE folder_id = ? AND uid > ? ORDER BY uid",
                (folder.id, last_uid),
            ).fetchall()
            changed = [
                (int(r[0]), split_flags(r[1]), int(r[2]))
                for r in self.conn.execute(
                    "SELECT uid, flags, modseq FROM messages WHERE folder_id = ? AND modseq > ?"
                    " AND uid <= ? ORDER BY uid",
                    (folder.id, modseq, last_uid),
                )
            ]
            expunged = [
                r[0]
                for r in self.conn.execute(
                    "SELECT uid FROM expunged WHERE folder_id = ? AND modseq > ? ORDER BY uid",
                    (folder.id, modseq),
                )
            ]
            highest = int(
                self.conn.execute(
                    "SELECT highestmodseq FROM folders WHERE id = ?", (folder.id,)
                ).fetchone()[0]
            )
        finally:
            self.conn.execute("COMMIT")
        return Changes(highest, new, changed, expunged, name)

    def view(self, folder: Folder) -> FolderView:
        """The folder's current UIDs and flags (a private copy). The first call in a process
        reads every row; later ones start from the process's cached view and apply only what
        changed since (one indexed query), so re-selecting a big folder stays cheap."""
        cached = self._views.get(folder.id)
        if cached is None or cached.uidvalidity != folder.uidvalidity:
            self.conn.execute("BEGIN")
            try:
                highest = self.conn.execute(
                    "SELECT highestmodseq FROM folders WHERE id = ?", (folder.id,)
                ).fetchone()
                rows = self.conn.execute(
                    "SELECT uid, flags FROM messages WHERE folder_id = ? ORDER BY uid",
                    (folder.id,),
                ).fetchall()
            finally:
                self.conn.execute("COMMIT")
            cached = FolderView(
                folder.uidvalidity,
                int(highest[0]) if highest else 0,
                [r[0] for r in rows],
                {r[0]: r[1] for r in rows if r[1]},
            )
        else:
            last = cached.uids[-1] if cached.uids else 0
            changes = self.changes_since(folder, cached.modseq, last)
            if changes is not None:
                cached.apply(changes)
        self._views[folder.id] = cached
        return cached.copy()


_MAILDIR_NAME = re.compile(r"(\d+)\.M(\d+)P")


class _Rested:
    """What a store knew when it rested: every folder's (highestmodseq, uidvalidity, name),
    true for as long as the index files stay as they were then (`files`)."""

    __slots__ = ("files", "folders", "generation")

    def __init__(self, files: object, folders: dict[int, tuple[int, int, str]],
                 generation: int) -> None:
        self.files = files
        self.folders = folders
        self.generation = generation


def _folders(conn: sqlite3.Connection) -> dict[int, tuple[int, int, str]]:
    return {
        int(r[0]): (int(r[1]), int(r[2]), str(r[3]))
        for r in conn.execute("SELECT id, highestmodseq, uidvalidity, name FROM folders")
    }


def _folders_in_file(index: Path) -> dict[int, tuple[int, int, str]]:
    """The folders as the database file holds them, read without a WAL or any lock
    (`immutable`, read-only): only when no connection has the index open."""
    conn = sqlite3.connect(f"file:{index}?mode=ro&immutable=1", uri=True)
    try:
        return _folders(conn)
    finally:
        conn.close()


def _close_all(conns: list[sqlite3.Connection]) -> None:
    for conn in conns:
        conn.close()


def _key_row(k: SortKeys) -> tuple[object, ...]:
    return (k.sent, k.subject, int(k.reply), k.from_addr, k.to_addr, k.cc_addr, k.display_from,
            k.display_to, k.message_id, " ".join(k.references))


def _keys_of(row: Sequence[Any]) -> SortKeys:
    # The columns come back with their types (NOT NULL INTEGER / TEXT): no conversions.
    sent, subject, reply, fa, ta, ca, df, dt, mid, refs = row
    return SortKeys(sent, subject, reply == 1, fa, ta, ca, df, dt, mid,
                    tuple(refs.split()) if refs else ())


def _delivery_order(name: str) -> tuple[int, int, str]:
    """Sort key putting deliveries in the order they happened: `<sec>.M<usec>P...` names
    compare numerically (as text, M987 would sort after M12345)."""
    m = _MAILDIR_NAME.match(name)
    return (int(m.group(1)), int(m.group(2)), name) if m else (2**63, 0, name)


def mailbox_usage(root: Path, conn: sqlite3.Connection | None = None) -> int:
    """Octets of the mailbox at `root`: what its index counts (nothing before its first IMAP
    session) plus the deliveries not yet indexed (files in new/). Cheap enough for SMTP to
    call before accepting mail: one read of the index, one scan of new/; never creates the
    index (read-only)."""
    used = 0
    try:
        if conn is None:
            index = root / INDEX_NAME
            if index.exists():
                ro = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
                try:
                    row = ro.execute("SELECT value FROM meta WHERE key = 'usage'").fetchone()
                finally:
                    ro.close()
                used = int(row[0]) if row else 0
        else:
            row = conn.execute("SELECT value FROM meta WHERE key = 'usage'").fetchone()
            used = int(row[0]) if row else 0
    except sqlite3.Error:
        used = 0  # an index being created or upgraded: count the files below only
    try:
        with os.scandir(root / "new") as it:
            for entry in it:
                if not entry.name.startswith("."):
                    with contextlib.suppress(FileNotFoundError):
                        used += entry.stat().st_size
    except FileNotFoundError:
        pass
    return used


def unlink_all(paths: Iterable[Path]) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def crlf(data: bytes) -> bytes:
    """`data` with every line ending CRLF (the same object when it already is)."""
    if b"\n" not in data.replace(b"\r\n", b""):
        return data
    return re.sub(rb"\r?\n", b"\r\n", data)


def _ranges(numbers: Sequence[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for n in sorted(set(numbers)):
        if out and out[-1][1] == n - 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _link_into(src: Path, dst_folder: Path) -> str:
    """Hard-link (or copy) a message file into `dst_folder/cur`; returns its new base name."""
    size = src.stat().st_size
    base = maildir.unique_name(size)
    target = dst_folder / "cur" / f"{base}:2,"
    try:
        os.link(src, target)
    except OSError:
        write_synced(target, src.read_bytes(), exclusive=False)
    return base


def _remove_maildir(path: Path) -> None:
    for sub in maildir.SUBDIRS:
        d = path / sub
        if d.is_dir():
            for entry in os.scandir(d):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
            with contextlib.suppress(OSError):
                d.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


class StorePool:
    """`MailStores` over Maildir: the process's open stores, one per user, shared by that
    user's sessions.

    Mail clients reconnect often (a login, a few commands, a logout), so a store nobody uses
    stays open for a while: `keep_idle` of them, least recently used closed first. Opening one
    costs a SQLite open and closing one a WAL checkpoint."""

    def __init__(self, mailboxes: Path, keep_idle: int = 64) -> None:
        self.mailboxes = mailboxes
        self.keep_idle = keep_idle
        self._stores: dict[str, tuple[MaildirStore, int]] = {}
        self._idle: OrderedDict[str, MaildirStore] = OrderedDict()

    def acquire(self, address: str) -> MaildirStore:
        address = address.lower()
        entry = self._stores.get(address)
        if entry:
            self._stores[address] = (entry[0], entry[1] + 1)
            return entry[0]
        store = self._idle.pop(address, None) or MaildirStore(
            maildir.mailbox_path(self.mailboxes, address)
        )
        self._stores[address] = (store, 1)
        return store

    def usage(self, address: str) -> int:
        return mailbox_usage(maildir.mailbox_path(self.mailboxes, address))

    def release(self, address: str) -> None:
        address = address.lower()
        entry = self._stores.get(address)
        if not entry:
            return
        if entry[1] <= 1:
            del self._stores[address]
            self._idle[address] = entry[0]
            while len(self._idle) > self.keep_idle:
                self._idle.popitem(last=False)[1].close()
        else:
            self._stores[address] = (entry[0], entry[1] - 1)

    def rest_idle(self, idle_for: float = REST_AFTER) -> Callable[[], None] | None:
        """Let every store unused for `idle_for` seconds rest (`MaildirStore.rest`, sessions
        still logged in included); the closings to run off the event loop, or None."""
        closings = [c for c in (store.rest(idle_for) for store in self._open()) if c]
        if not closings:
            return None
        return functools.partial(_run_all, closings)

    def _open(self) -> Iterator[MaildirStore]:
        for store, _ in self._stores.values():
            yield store
        yield from self._idle.values()

    def close(self) -> None:
        for store, _ in self._stores.values():
            store.close()
        for store in self._idle.values():
            store.close()
        self._stores.clear()
        self._idle.clear()


def _run_all(calls: list[Callable[[], None]]) -> None:
    for call in calls:
        call()


MailStore = MaildirStore  # its former name (tests and tools open one directly)

__all__ = [
    "DELIMITER",
    "INDEX_NAME",
    "Appended",
    "Changes",
    "Folder",
    "FolderView",
    "MailStore",
    "MaildirStore",
    "MessageInfo",
    "StoreError",
    "StorePool",
]
