"""The mail store, its deliveries and its change notifications on PostgreSQL.

Tables (`schema.py`, component "mail"): `mail_user` (one per mailbox with mail: its quota
usage and UIDVALIDITY floor), `mail_folder` (UIDNEXT, HIGHESTMODSEQ, keywords),
`mail_message` (UID, flags, MODSEQ, INTERNALDATE, the body's digest, the cached ENVELOPE and
BODYSTRUCTURE), `mail_expunged` (for other sessions and QRESYNC), `mail_subscription`,
`mail_sortkeys`, and `mail_body`: the octets once per distinct content (SHA-256), so a message
to thirty recipients, or copied between folders, is stored once.

UIDs and MODSEQ: every change to a folder's messages goes through one
`UPDATE mail_folder ... RETURNING` that takes the folder's row lock until the commit, so two
nodes delivering to one INBOX at once are serialised there: UIDs and MODSEQs are unique and
grow in commit order (a session never sees UID n+1 before n). Several recipients' folders are
locked in address order (no deadlock between two messages to the same people).

Change notifications: a trigger on `mail_folder` sends `NOTIFY mssgw_mail, '<id> <modseq>'`
(delivered at commit) for every change (new mail, flags, expunge, rename; a deleted folder
sends -1). Each process LISTENs on one connection in a thread (`Listener`) and keeps the
highest MODSEQ it heard per folder, so an IMAP session asking "anything new?" after each
command and twice a second in IDLE (`changes_since`) costs a dict look-up, not a query, until
something changed on any node. When the listening connection is lost, every question goes to
the database until it listens again.

Durability: a delivery, APPEND, COPY and MULTIAPPEND return once their transaction committed
(synchronous_commit as the server's, `on` by default: on disk, or on the synchronous standby
with synchronous replication), so the SMTP 250 and the IMAP OK follow the commit.

Threads: the stores draw connections from one pool per process (autocommit; writes in explicit
transactions), so the event loop's calls and the worker threads' APPENDs never share a
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from gateway.config import Config
from gateway.postgresql.connection import conninfo
from gateway.store.interfaces import (
    DELIMITER,
    Appended,
    Changes,
    Folder,
    FolderView,
    MessageInfo,
    StoreError,
)
from gateway.store.mailstore import (
    EXPUNGED_KEPT,
    MAX_FOLDERS,
    SPECIAL_USE,
    _key_row,
    _keys_of,
    _ranges,
    crlf,
    join_flags,
    local_zone,
    split_flags,
    stored_flags,
    validate_name,
)
from gateway.store.queue import Entry, RecipientState, Record
from gateway.store.sortkeys import SortKeys, extract

log = logging.getLogger(__name__)

CHANNEL = "mssgw_mail"
_FOLDER = (
    "f.id, f.name, f.uidvalidity, f.uidnext, f.highestmodseq,"
    " EXISTS(SELECT 1 FROM mail_subscription s WHERE s.user_id = f.user_id AND s.name = f.name),"
    " f.special_use, f.keywords"
)
_SORTKEYS = (
    "sent, subject, reply, from_addr, to_addr, cc_addr, display_from, display_to, message_id,"
    " refs"
)
# Messages are chosen by UID with `uid IN (SELECT unnest(array))`, which PostgreSQL joins by
# hashing the array, not `uid = ANY(array)`, which it compares row by row (SORT/THREAD over a
# 100,000-message folder: 39 s -> well under a second).
# A folder's messages with their sort keys (COPY, RENAME INBOX keep them).
_WITH_KEYS = (
    "SELECT m.uid, m.digest, m.flags, m.internaldate, m.size, m.tz, "  # noqa: S608 - constant
    + ", ".join(f"k.{c.strip()}" for c in _SORTKEYS.split(","))
    + " FROM mail_message m LEFT JOIN mail_sortkeys k ON k.folder_id = m.folder_id"
    " AND k.uid = m.uid WHERE m.folder_id = %s"
)
# A body stored again marks itself fresh (and takes its row lock), so the sweep of unused
# bodies, which deletes only old ones, never deletes one a delivery is about to use.
_BODY = (
    "INSERT INTO mail_body (digest, data) VALUES (%s, %s) ON CONFLICT (digest) DO UPDATE"
    " SET stored_at = now() WHERE mail_body.stored_at < now() - interval '10 minutes'"
)
BODY_SWEEP_AGE = "1 hour"


def digest_of(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _folder(row: Sequence[Any]) -> Folder:
    return Folder(
        id=int(row[0]), name=str(row[1]), uidvalidity=int(row[2]), uidnext=int(row[3]),
        highestmodseq=int(row[4]), subscribed=bool(row[5]),
        special_use=str(row[6]) if row[6] else None, keywords=split_flags(str(row[7])),
    )


# --- writing, shared by the store, the intake and the queue ---------------------------------


def store_body(cur: psycopg.Cursor[Any], data: bytes) -> bytes:
    digest = digest_of(data)
    cur.execute(_BODY, (digest, data))
    return digest


def ensure_user(cur: psycopg.Cursor[Any], address: str) -> int:
    """The mailbox's id; its row and default folders made on its first mail or login."""
    cur.execute(
        "INSERT INTO mail_user (address) VALUES (%s) ON CONFLICT (address) DO NOTHING"
        " RETURNING id",
        (address,),
    )
    row = cur.fetchone()
    if row is None:
        cur.execute("SELECT id FROM mail_user WHERE address = %s", (address,))
        found = cur.fetchone()
        assert found is not None
        return int(found[0])
    user_id = int(row[0])
    for name in ("INBOX", *SPECIAL_USE):
        create_folder_row(cur, user_id, name, subscribed=True)
    return user_id


def create_folder_row(cur: psycopg.Cursor[Any], user_id: int, name: str, subscribed: bool) -> int:
    # A UIDVALIDITY above any this user had (a re-created folder never reuses UIDs under it).
    cur.execute(
        "UPDATE mail_user SET last_uidvalidity = GREATEST(last_uidvalidity + 1,"
        " extract(epoch FROM now())::bigint) WHERE id = %s RETURNING last_uidvalidity",
        (user_id,),
    )
    row = cur.fetchone()
    assert row is not None
    cur.execute(
        "INSERT INTO mail_folder (user_id, name, uidvalidity, special_use)"
        " VALUES (%s, %s, %s, %s) RETURNING id",
        (user_id, name, int(row[0]), SPECIAL_USE.get(name)),
    )
    fid = cur.fetchone()
    assert fid is not None
    if subscribed:
        cur.execute(
            "INSERT INTO mail_subscription (user_id, name) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING",
            (user_id, name),
        )
    return int(fid[0])


def insert_messages(
    cur: psycopg.Cursor[Any],
    folder_id: int,
    rows: Sequence[tuple[bytes, tuple[str, ...], int, int, int | None, SortKeys | None]],
) -> list[int]:
    """Add messages (digest, flags, internaldate, size, tz, sort keys) to a folder: one
    UIDNEXT/MODSEQ step under the folder's row lock; their UIDs, consecutive."""
    n = len(rows)
    cur.execute(
        "UPDATE mail_folder SET uidnext = uidnext + %s, highestmodseq = highestmodseq + 1"
        " WHERE id = %s RETURNING uidnext - %s, highestmodseq, user_id, keywords",
        (n, folder_id, n),
    )
    row = cur.fetchone()
    if row is None:
        raise StoreError("the folder was deleted", "TRYCREATE")
    first, modseq, user_id, keywords = int(row[0]), int(row[1]), int(row[2]), str(row[3])
    uids = list(range(first, first + n))
    cur.executemany(
        "INSERT INTO mail_message (folder_id, uid, digest, flags, modseq, internaldate, size,"
        " tz) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        [(folder_id, uid, digest, join_flags(flags), modseq, when, size,
          local_zone(when) if tz is None else tz)
         for uid, (digest, flags, when, size, tz, _) in zip(uids, rows, strict=True)],
    )
    keyed = [(folder_id, uid, *_key_row(k)) for uid, (*_, k) in zip(uids, rows, strict=True)
             if k is not None]
    if keyed:
        cur.executemany(
            f"INSERT INTO mail_sortkeys (folder_id, uid, {_SORTKEYS})"  # noqa: S608
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            keyed,
        )
    kws = {f for _, flags, *_ in rows for f in flags if not f.startswith("\\")}
    known = set(split_flags(keywords))
    if not kws <= known:
        cur.execute("UPDATE mail_folder SET keywords = %s WHERE id = %s",
                    (" ".join(sorted(known | kws)), folder_id))
    cur.execute("UPDATE mail_user SET usage = usage + %s WHERE id = %s",
                (sum(r[3] for r in rows), user_id))
    return uids


# A delivery into an existing INBOX in one statement (one round trip): take the folder's next
# UID and MODSEQ under its row lock, add the message and its sort keys, count the octets. No
# row back means no such mailbox or INBOX yet: `deliver` then makes them, the long way.
_DELIVER = (
    "WITH f AS (UPDATE mail_folder SET uidnext = uidnext + 1,"  # noqa: S608 - constant
    " highestmodseq = highestmodseq + 1 WHERE id = (SELECT f.id FROM mail_folder f"
    " JOIN mail_user u ON u.id = f.user_id WHERE u.address = %(address)s"
    " AND f.name = 'INBOX') RETURNING id, uidnext - 1 AS uid, highestmodseq, user_id),"
    " m AS (INSERT INTO mail_message (folder_id, uid, digest, flags, modseq, internaldate,"
    " size, tz) SELECT id, uid, %(digest)s, '', highestmodseq, %(now)s, %(size)s, %(tz)s"
    " FROM f RETURNING folder_id, uid),"
    f" k AS (INSERT INTO mail_sortkeys (folder_id, uid, {_SORTKEYS}) SELECT folder_id, uid,"
    " %(sent)s, %(subject)s, %(reply)s, %(from_addr)s, %(to_addr)s, %(cc_addr)s,"
    " %(display_from)s, %(display_to)s, %(message_id)s, %(refs)s FROM m),"
    " u AS (UPDATE mail_user SET usage = usage + %(size)s WHERE id = (SELECT user_id FROM f))"
    " SELECT uid FROM f"
)


def deliver(cur: psycopg.Cursor[Any], local: Sequence[tuple[str, bytes]], now: int) -> None:
    """Each (address, octets) into that mailbox's INBOX; folders locked in address order.
    The body and the delivery statement of each recipient go together (pipeline mode: one
    round trip for both)."""
    tz = local_zone(now)
    for address, data in sorted(local, key=lambda item: item[0].lower()):
        data = crlf(data)
        address = address.lower()
        keys = extract(data, now)
        names = ("sent", "subject", "reply", "from_addr", "to_addr", "cc_addr", "display_from",
                 "display_to", "message_id", "refs")
        values = dict(zip(names, _key_row(keys), strict=True))
        with cur.connection.pipeline():
            digest = store_body(cur, data)
            cur.execute(_DELIVER, {"address": address, "digest": digest, "now": now,
                                   "size": len(data), "tz": tz, **values})
        if cur.fetchone() is not None:
            continue
        user_id = ensure_user(cur, address)  # a first mail: the mailbox and its folders
        cur.execute("SELECT id FROM mail_folder WHERE user_id = %s AND name = 'INBOX'",
                    (user_id,))
        row = cur.fetchone()
        folder_id = int(row[0]) if row else create_folder_row(cur, user_id, "INBOX", True)
        insert_messages(cur, folder_id, [(digest, (), now, len(data), tz, keys)])


def enqueue(cur: psycopg.Cursor[Any], entries: Sequence[Entry], now: float) -> None:
    import json

    for entry in entries:
        record = Record(
            id=entry.id, sender=entry.sender, created=now,
            recipients=[RecipientState(r.lower(), next_attempt=now) for r in entry.recipients],
            kind=entry.kind,
        )
        digest = store_body(cur, entry.data)
        cur.execute(
            "INSERT INTO queue_entry (id, record, digest, next_attempt) VALUES (%s, %s, %s, %s)",
            (entry.id, json.dumps(record.to_json()), digest, now),
        )


# --- notifications ---------------------------------------------------------------------------


class Listener:
    """LISTEN mssgw_mail on a connection of its own, in a daemon thread: the highest MODSEQ
    heard per folder id (-1 for a deleted folder: `float('inf')` below). `live` is False while
    the connection is down (callers then ask the database)."""

    def __init__(self, info: str) -> None:
        self._info = info
        self.heard: dict[int, float] = {}
        self.live = False
        self.wakeups = 0  # notifications received (tests, bench)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mssgw-listen", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._info, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.heard.clear()  # whatever was missed while down: ask the database
                    self.live = True
                    self._ready.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._heard(note.payload)
            except psycopg.Error as exc:
                if self.live:
                    log.warning("mail notifications: connection lost (%s); retrying", exc)
                self.live = False
                self._ready.set()
                self._stop.wait(1.0)
        self.live = False

    def _heard(self, payload: str) -> None:
        folder, _, modseq = payload.partition(" ")
        with contextlib.suppress(ValueError):
            fid, value = int(folder), int(modseq)
            new = float("inf") if value < 0 else float(value)
            if new > self.heard.get(fid, 0.0):
                self.heard[fid] = new
            self.wakeups += 1

    def saw(self, folder_id: int, modseq: int) -> None:
        """What a read found (only ever raises the mark: a notice may have come first)."""
        if modseq > self.heard.get(folder_id, 0.0):
            self.heard[folder_id] = float(modseq)

    def quiet(self, folder_id: int, modseq: int) -> bool:
        """True when nothing happened to the folder after `modseq`, as far as we heard."""
        known = self.heard.get(folder_id)
        return self.live and known is not None and known <= modseq

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


# --- the store -------------------------------------------------------------------------------


def _chosen(uids: Sequence[int]) -> tuple[str, tuple[Any, ...], set[int] | None]:
    """How to pick `uids` of a folder's messages: a range scan when they are dense (the
    caller keeps the wanted ones: the set returned, None for all of the range), else the
    array, joined by hashing it."""
    lo, hi = min(uids), max(uids)
    if hi - lo + 1 <= 4 * len(uids):
        return ("uid BETWEEN %s AND %s", (lo, hi),
                None if len(uids) == hi - lo + 1 else set(uids))
    return "uid IN (SELECT unnest(%s::bigint[]))", (list(uids),), None



class PostgreSQLMailStore:
    """`MailStore` of one mailbox on PostgreSQL (see the module's docstring)."""

    def __init__(self, stores: PostgreSQLMailStores, address: str) -> None:
        self.stores = stores
        self.pool = stores.pool
        self.address = address
        self._views: dict[int, FolderView] = {}
        with self._write() as cur:
            self.user_id = ensure_user(cur, address)

    # --- plumbing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _read(self) -> Iterator[psycopg.Cursor[Any]]:
        with self.pool.connection() as conn, conn.cursor() as cur:
            yield cur

    @contextlib.contextmanager
    def _write(self) -> Iterator[psycopg.Cursor[Any]]:
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    def _row(self, cur: psycopg.Cursor[Any], name: str, lock: bool = False) -> Folder | None:
        cur.execute(
            f"SELECT {_FOLDER} FROM mail_folder f WHERE f.user_id = %s AND f.name = %s"  # noqa: S608
            + (" FOR UPDATE" if lock else ""),
            (self.user_id, name),
        )
        row = cur.fetchone()
        return _folder(row) if row else None

    def close(self) -> None:
        pass

    def cleanup(self) -> Callable[[], None] | None:
        return None  # expunged bodies are swept with the queue's sweep (`sweep_bodies`)

    # --- folders ---------------------------------------------------------------------------

    def folder(self, name: str) -> Folder | None:
        try:
            name = validate_name(name)
        except StoreError:
            return None
        with self._read() as cur:
            return self._row(cur, name)

    def folder_by_id(self, folder_id: int) -> Folder | None:
        with self._read() as cur:
            cur.execute(f"SELECT {_FOLDER} FROM mail_folder f WHERE f.id = %s"  # noqa: S608
                        " AND f.user_id = %s", (folder_id, self.user_id))
            row = cur.fetchone()
        return _folder(row) if row else None

    def folders(self) -> list[Folder]:
        with self._read() as cur:
            cur.execute(f"SELECT {_FOLDER} FROM mail_folder f WHERE f.user_id = %s"  # noqa: S608
                        " ORDER BY f.name COLLATE \"C\"", (self.user_id,))
            return [_folder(r) for r in cur.fetchall()]

    def _lock_user(self, cur: psycopg.Cursor[Any]) -> None:
        # Folder-tree changes of one mailbox, one at a time (as SQLite's single writer did).
        cur.execute("SELECT 1 FROM mail_user WHERE id = %s FOR UPDATE", (self.user_id,))

    def create_folder(self, name: str) -> None:
        name = validate_name(name)
        if name == "INBOX":
            raise StoreError("INBOX always exists", "ALREADYEXISTS")
        with self._write() as cur:
            self._lock_user(cur)
            if self._row(cur, name):
                raise StoreError(f"folder {name} already exists", "ALREADYEXISTS")
            cur.execute("SELECT count(*) FROM mail_folder WHERE user_id = %s", (self.user_id,))
            count = cur.fetchone()
            if count is not None and int(count[0]) >= MAX_FOLDERS:
                raise StoreError("too many folders", "LIMIT")
            parts = name.split(DELIMITER)
            for i in range(1, len(parts) + 1):
                sub = DELIMITER.join(parts[:i])
                if sub != "INBOX" and not self._row(cur, sub):
                    create_folder_row(cur, self.user_id, sub, subscribed=False)

    def delete_folder(self, name: str) -> None:
        name = validate_name(name)
        if name == "INBOX":
            raise StoreError("INBOX cannot be deleted", "CANNOT")
        with self._write() as cur:
            self._lock_user(cur)
            folder = self._row(cur, name)
            if folder is None:
                raise StoreError(f"no folder named {name}", "NONEXISTENT")
            cur.execute(
                "SELECT 1 FROM mail_folder WHERE user_id = %s AND name LIKE %s LIMIT 1",
                (self.user_id, _like_prefix(name + DELIMITER)),
            )
            if cur.fetchone():
                raise StoreError(f"folder {name} has sub-folders; delete them first", "INUSE")
            cur.execute("SELECT COALESCE(sum(size), 0) FROM mail_message WHERE folder_id = %s",
                        (folder.id,))
            freed = cur.fetchone()
            cur.execute("UPDATE mail_user SET usage = usage - %s WHERE id = %s",
                        (int(freed[0]) if freed else 0, self.user_id))
            cur.execute("DELETE FROM mail_folder WHERE id = %s", (folder.id,))  # cascades

    def rename_folder(self, old: str, new: str) -> None:
        old = validate_name(old)
        new = validate_name(new)
        if new == "INBOX":
            raise StoreError("cannot rename to INBOX", "ALREADYEXISTS")
        if new == old or new.startswith(old + DELIMITER):
            raise StoreError("cannot rename a folder into itself", "CANNOT")
        with self._write() as cur:
            self._lock_user(cur)
            src = self._row(cur, old)
            if src is None:
                raise StoreError(f"no folder named {old}", "NONEXISTENT")
            if self._row(cur, new):
                raise StoreError(f"folder {new} already exists", "ALREADYEXISTS")
            if old == "INBOX":
                # RFC 3501: renaming INBOX moves its messages to a new folder; INBOX stays.
                dst = create_folder_row(cur, self.user_id, new, subscribed=False)
                self._move_all(cur, src.id, dst)
                return
            cur.execute(
                "SELECT id, name FROM mail_folder WHERE user_id = %s AND (name = %s OR name"
                " LIKE %s)",
                (self.user_id, old, _like_prefix(old + DELIMITER)),
            )
            rows = cur.fetchall()
            parts = new.split(DELIMITER)
            for i in range(1, len(parts)):
                sub = DELIMITER.join(parts[:i])
                if sub != "INBOX" and not self._row(cur, sub):
                    create_folder_row(cur, self.user_id, sub, subscribed=False)
            for folder_id, name in rows:
                target = new + name[len(old):]
                # MODSEQ moves too: sessions on other nodes hear of the rename.
                cur.execute(
                    "UPDATE mail_folder SET name = %s, special_use = %s,"
                    " highestmodseq = highestmodseq + 1 WHERE id = %s",
                    (target, SPECIAL_USE.get(target), folder_id),
                )
                cur.execute(
                    "DELETE FROM mail_subscription WHERE user_id = %s AND name = %s RETURNING 1",
                    (self.user_id, name),
                )
                if cur.fetchone():
                    cur.execute(
                        "INSERT INTO mail_subscription (user_id, name) VALUES (%s, %s)"
                        " ON CONFLICT DO NOTHING",
                        (self.user_id, target),
                    )

    def _move_all(self, cur: psycopg.Cursor[Any], src_id: int, dst_id: int) -> None:
        cur.execute(_WITH_KEYS + " ORDER BY m.uid", (src_id,))
        rows = cur.fetchall()
        if not rows:
            return
        insert_messages(cur, dst_id, [
            (bytes(r[1]), split_flags(r[2]), int(r[3]), int(r[4]), int(r[5]),
             _keys_of(r[6:]) if r[6] is not None else None)
            for r in rows
        ])
        self._expunge_rows(cur, src_id, [int(r[0]) for r in rows])

    def subscribe(self, name: str, on: bool) -> None:
        name = validate_name(name)
        with self._write() as cur:
            if not on:
                cur.execute("DELETE FROM mail_subscription WHERE user_id = %s AND name = %s",
                            (self.user_id, name))
                return
            if not self._row(cur, name):
                raise StoreError(f"no folder named {name}", "NONEXISTENT")
            cur.execute("INSERT INTO mail_subscription (user_id, name) VALUES (%s, %s)"
                        " ON CONFLICT DO NOTHING", (self.user_id, name))

    def subscriptions(self) -> set[str]:
        with self._read() as cur:
            cur.execute("SELECT name FROM mail_subscription WHERE user_id = %s", (self.user_id,))
            return {str(r[0]) for r in cur.fetchall()}

    # --- messages --------------------------------------------------------------------------

    def arrivals(self, folder: Folder) -> list[str]:
        return []  # deliveries index themselves (`deliver`)

    def adopt(self, folder: Folder, names: list[str]) -> bool:
        return False

    def append(
        self, folder: Folder, data: bytes, flags: Iterable[str], internaldate: int | None = None,
        tz: int | None = None, verbatim: bool = False,
    ) -> int:
        return self.append_many(folder, [Appended(data, tuple(flags), internaldate, tz,
                                                  verbatim)])[0]

    def append_many(self, folder: Folder, messages: Sequence[Appended]) -> list[int]:
        with self._write() as cur:
            rows: list[tuple[bytes, tuple[str, ...], int, int, int | None, SortKeys | None]] = []
            for m in messages:
                data = m.data if m.verbatim else crlf(m.data)
                when = int(time.time()) if m.internaldate is None else m.internaldate
                rows.append((store_body(cur, data), tuple(m.flags), when, len(data), m.tz,
                             extract(data, when)))
            cur.execute("SELECT 1 FROM mail_folder WHERE id = %s AND user_id = %s",
                        (folder.id, self.user_id))
            if cur.fetchone() is None:
                raise StoreError(f"folder {folder.name} was deleted", "TRYCREATE")
            return insert_messages(cur, folder.id, rows)

    def usage(self) -> int:
        return self.stores.usage(self.address)

    def copy(self, src: Folder, uids: Sequence[int], dst: Folder) -> list[tuple[int, int]]:
        if not uids:
            return []
        with self._write() as cur:
            cur.execute("SELECT 1 FROM mail_folder WHERE id = %s AND user_id = %s",
                        (dst.id, self.user_id))
            if cur.fetchone() is None:
                raise StoreError(f"folder {dst.name} was deleted", "TRYCREATE")
            cur.execute(_WITH_KEYS + " AND m.uid IN (SELECT unnest(%s::bigint[])) ORDER BY m.uid",
                        (src.id, list(uids)))
            found = {int(r[0]): r for r in cur.fetchall()}
            order = [u for u in uids if u in found]
            if not order:
                return []
            new = insert_messages(cur, dst.id, [
                (bytes(found[u][1]), tuple(f for f in split_flags(found[u][2])
                                           if f != "\\Recent"),
                 int(found[u][3]), int(found[u][4]), int(found[u][5]),
                 _keys_of(found[u][6:]) if found[u][6] is not None else None)
                for u in order
            ])
            return list(zip(order, new, strict=True))

    def read_file(self, folder: Folder, base: str) -> bytes | None:
        try:
            digest = bytes.fromhex(base)
        except ValueError:
            return None
        with self._read() as cur:
            cur.execute("SELECT data FROM mail_body WHERE digest = %s", (digest,))
            row = cur.fetchone()
        return bytes(row[0]) if row else None

    def read(self, folder: Folder, base: str) -> bytes:
        data = self.read_file(folder, base)
        return b"" if data is None else data

    def counts(self, folder: Folder) -> tuple[int, int, int]:
        with self._read() as cur:
            cur.execute(
                "SELECT count(*), count(*) FILTER (WHERE strpos(flags, '\\Seen') = 0),"
                " count(*) FILTER (WHERE recent) FROM mail_message WHERE folder_id = %s",
                (folder.id,),
            )
            row = cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

    def status_sizes(self, folder: Folder) -> tuple[int, int]:
        with self._read() as cur:
            cur.execute(
                "SELECT count(*) FILTER (WHERE strpos(flags, '\\Deleted') > 0),"
                " COALESCE(sum(size), 0) FROM mail_message WHERE folder_id = %s",
                (folder.id,),
            )
            row = cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def peek_recent(self, folder: Folder) -> set[int]:
        with self._read() as cur:
            cur.execute("SELECT uid FROM mail_message WHERE folder_id = %s AND recent",
                        (folder.id,))
            return {int(r[0]) for r in cur.fetchall()}

    def claim_recent(self, folder: Folder) -> set[int]:
        with self._read() as cur:
            # One statement: of two sessions claiming at once, each UID goes to one of them.
            cur.execute(
                "UPDATE mail_message SET recent = FALSE WHERE folder_id = %s AND recent"
                " RETURNING uid",
                (folder.id,),
            )
            return {int(r[0]) for r in cur.fetchall()}

    def infos(self, folder: Folder, uids: Sequence[int]) -> dict[int, MessageInfo]:
        if not uids:
            return {}
        where, params, wanted = _chosen(uids)
        with self._read() as cur:
            cur.execute(
                "SELECT uid, flags, modseq, internaldate, size, digest, tz FROM mail_message"  # noqa: S608 - fixed fragments
                " WHERE folder_id = %s AND " + where,
                (folder.id, *params),
            )
            return {
                int(u): MessageInfo(int(u), split_flags(f), int(m), int(d), int(s),
                                    bytes(g).hex(), int(t))
                for u, f, m, d, s, g, t in cur.fetchall() if wanted is None or u in wanted
            }

    def sort_keys(self, folder: Folder, uids: Sequence[int]) -> dict[int, SortKeys]:
        if not uids:
            return {}
        where, params, wanted = _chosen(uids)
        with self._read() as cur:
            cur.execute(
                f"SELECT uid, {_SORTKEYS} FROM mail_sortkeys"  # noqa: S608
                " WHERE folder_id = %s AND " + where,
                (folder.id, *params),
            )
            return {int(r[0]): _keys_of(r[1:]) for r in cur.fetchall()
                    if wanted is None or r[0] in wanted}

    def sort_values(self, folder: Folder, uids: Sequence[int], key: str) -> dict[int, Any]:
        if not uids:
            return {}
        if key in ("internaldate", "size"):
            table = "mail_message"
        elif key in SortKeys._fields and key not in ("references", "reply", "message_id"):
            table = "mail_sortkeys"
        else:
            raise ValueError(f"not a sort key: {key}")
        lo, hi = min(uids), max(uids)
        with self._read() as cur:
            cur.execute(
                f"SELECT uid, {key} FROM {table}"  # noqa: S608 - both checked above
                " WHERE folder_id = %s AND uid BETWEEN %s AND %s",
                (folder.id, lo, hi),
            )
            rows = cur.fetchall()
        if len(uids) == hi - lo + 1:
            return {int(u): v for u, v in rows}
        wanted = set(uids)
        return {int(u): v for u, v in rows if u in wanted}

    def thread_keys(
        self, folder: Folder, uids: Sequence[int]
    ) -> dict[int, tuple[int, int, str, int, str, str]]:
        """THREAD=REFERENCES's five columns of each message, in one range scan."""
        if not uids:
            return {}
        lo, hi = min(uids), max(uids)
        with self._read() as cur:
            cur.execute(
                "SELECT uid, sent, subject, reply, message_id, refs FROM mail_sortkeys"
                " WHERE folder_id = %s AND uid BETWEEN %s AND %s",
                (folder.id, lo, hi),
            )
            rows = cur.fetchall()
        wanted = None if len(uids) == hi - lo + 1 else set(uids)
        return {int(u): (int(u), int(sent), subject, int(reply), mid, refs)
                for u, sent, subject, reply, mid, refs in rows
                if wanted is None or u in wanted}

    def cached(
        self, folder: Folder, uids: Sequence[int]
    ) -> dict[int, tuple[bytes | None, bytes | None]]:
        if not uids:
            return {}
        where, params, wanted = _chosen(uids)
        with self._read() as cur:
            cur.execute(
                "SELECT uid, envelope, bodystructure FROM mail_message WHERE folder_id = %s"  # noqa: S608 - fixed fragments
                " AND " + where,
                (folder.id, *params),
            )
            return {int(u): (None if e is None else bytes(e), None if b is None else bytes(b))
                    for u, e, b in cur.fetchall() if wanted is None or u in wanted}

    def set_cached(self, folder: Folder, items: list[tuple[int, bytes, bytes]]) -> None:
        if not items:
            return
        with self._write() as cur:
            cur.executemany(
                "UPDATE mail_message SET envelope = %s, bodystructure = %s"
                " WHERE folder_id = %s AND uid = %s",
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
        wanted = set(flags)
        changed: list[tuple[int, tuple[str, ...], int]] = []
        failed: list[int] = []
        if not uids:
            return changed, failed
        with self._write() as cur:
            # The folder's row first: MODSEQ is taken under it, as deliveries take it.
            cur.execute("SELECT keywords FROM mail_folder WHERE id = %s FOR UPDATE",
                        (folder.id,))
            frow = cur.fetchone()
            if frow is None:
                return changed, failed
            cur.execute(
                "SELECT uid, flags, modseq FROM mail_message WHERE folder_id = %s"
                " AND uid IN (SELECT unnest(%s::bigint[]))",
                (folder.id, list(uids)),
            )
            current = {int(u): (f, int(m)) for u, f, m in cur.fetchall()}
            updates = []
            modseq = 0
            for uid in uids:
                got = current.get(uid)
                if got is None:
                    continue
                if unchangedsince is not None and got[1] > unchangedsince:
                    failed.append(uid)
                    continue
                old = set(split_flags(got[0]))
                new = stored_flags(old, wanted, mode)
                if new == old:
                    continue
                if not modseq:
                    cur.execute(
                        "UPDATE mail_folder SET highestmodseq = highestmodseq + 1 WHERE id = %s"
                        " RETURNING highestmodseq",
                        (folder.id,),
                    )
                    m = cur.fetchone()
                    assert m is not None
                    modseq = int(m[0])
                text = join_flags(new)
                updates.append((text, modseq, folder.id, uid))
                changed.append((uid, split_flags(text), modseq))
            if updates:
                cur.executemany(
                    "UPDATE mail_message SET flags = %s, modseq = %s WHERE folder_id = %s"
                    " AND uid = %s",
                    updates,
                )
                kws = {f for f in wanted if not f.startswith("\\")}
                known = set(split_flags(str(frow[0])))
                if mode != "-" and not kws <= known:
                    cur.execute("UPDATE mail_folder SET keywords = %s WHERE id = %s",
                                (" ".join(sorted(known | kws)), folder.id))
        return changed, failed

    def _expunge_rows(self, cur: psycopg.Cursor[Any], folder_id: int, uids: Sequence[int]) -> None:
        cur.execute(
            "UPDATE mail_folder SET highestmodseq = highestmodseq + 1 WHERE id = %s"
            " RETURNING highestmodseq",
            (folder_id,),
        )
        row = cur.fetchone()
        if row is None:
            return
        modseq = int(row[0])
        cur.execute(
            "WITH gone AS (DELETE FROM mail_message WHERE folder_id = %s"
            " AND uid IN (SELECT unnest(%s::bigint[]))"
            " RETURNING size) UPDATE mail_user SET usage = usage - (SELECT COALESCE(sum(size), 0)"
            " FROM gone) WHERE id = %s",
            (folder_id, list(uids), self.user_id),
        )
        cur.execute("DELETE FROM mail_sortkeys WHERE folder_id = %s"
                    " AND uid IN (SELECT unnest(%s::bigint[]))",
                    (folder_id, list(uids)))
        cur.execute(
            "INSERT INTO mail_expunged (folder_id, uid, modseq) SELECT %s, u, %s"
            " FROM unnest(%s::bigint[]) AS u ON CONFLICT (folder_id, uid) DO UPDATE"
            " SET modseq = excluded.modseq",
            (folder_id, modseq, list(uids)),
        )

    def expunge(self, folder: Folder, uids: Sequence[int] | None = None) -> list[int]:
        with self._write() as cur:
            cur.execute("SELECT 1 FROM mail_folder WHERE id = %s FOR UPDATE", (folder.id,))
            cur.execute(
                "SELECT uid FROM mail_message WHERE folder_id = %s"
                " AND strpos(flags, '\\Deleted') > 0 ORDER BY uid",
                (folder.id,),
            )
            found = [int(r[0]) for r in cur.fetchall()]
            if uids is not None:
                keep = set(uids)
                found = [u for u in found if u in keep]
            if found:
                self._expunge_rows(cur, folder.id, found)
                cur.execute(
                    "DELETE FROM mail_expunged WHERE folder_id = %s AND modseq < (SELECT modseq"
                    " FROM mail_expunged WHERE folder_id = %s ORDER BY modseq DESC LIMIT 1"
                    " OFFSET %s)",
                    (folder.id, folder.id, EXPUNGED_KEPT),
                )
        return found

    def remove(self, folder: Folder, uids: Sequence[int]) -> None:
        if not uids:
            return
        with self._write() as cur:
            cur.execute("SELECT 1 FROM mail_folder WHERE id = %s FOR UPDATE", (folder.id,))
            cur.execute("SELECT uid FROM mail_message WHERE folder_id = %s"
                        " AND uid IN (SELECT unnest(%s::bigint[]))",
                        (folder.id, list(uids)))
            present = [int(r[0]) for r in cur.fetchall()]
            if present:
                self._expunge_rows(cur, folder.id, present)

    # --- what changed ----------------------------------------------------------------------

    def vanished_since(
        self, folder: Folder, modseq: int, within: Sequence[tuple[int, int]] | None = None
    ) -> list[tuple[int, int]]:
        top = max(folder.uidnext - 1, 0)
        spans = [(min(lo or top, hi or top), max(lo or top, hi or top)) for lo, hi in
                 (within if within is not None else [(1, 0)])]
        with self._read() as cur:
            cur.execute("SELECT count(*), min(modseq) FROM mail_expunged WHERE folder_id = %s",
                        (folder.id,))
            row = cur.fetchone()
            assert row is not None
            count, oldest = int(row[0]), row[1]
            if count < EXPUNGED_KEPT or (oldest or 0) <= modseq + 1:
                cur.execute("SELECT uid FROM mail_expunged WHERE folder_id = %s AND modseq > %s"
                            " ORDER BY uid", (folder.id, modseq))
                return _ranges([int(r[0]) for r in cur.fetchall()
                                if any(lo <= r[0] <= hi for lo, hi in spans)])
            cur.execute("SELECT uid FROM mail_message WHERE folder_id = %s ORDER BY uid",
                        (folder.id,))
            present = {int(r[0]) for r in cur.fetchall()}
        gone = [u for lo, hi in sorted(spans) for u in range(lo, hi + 1) if u not in present]
        return _ranges(gone)

    def changes_since(self, folder: Folder, modseq: int, last_uid: int) -> Changes | None:
        listener = self.stores.listener
        if listener is not None and listener.quiet(folder.id, modseq):
            return Changes(modseq, [], [], [], folder.name)  # nothing heard: no query
        # One snapshot for the four reads (as SQLite's BEGIN ... COMMIT in WAL).
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute("SELECT highestmodseq, uidvalidity, name FROM mail_folder"
                        " WHERE id = %s", (folder.id,))
            row = cur.fetchone()
            if row is None or int(row[1]) != folder.uidvalidity:
                return None
            highest, name = int(row[0]), str(row[2])
            if listener is not None:
                listener.saw(folder.id, highest)
            if highest <= modseq:
                return Changes(highest, [], [], [], name)
            cur.execute("SELECT uid, flags FROM mail_message WHERE folder_id = %s"
                        " AND uid > %s ORDER BY uid", (folder.id, last_uid))
            new = [(int(u), str(f)) for u, f in cur.fetchall()]
            cur.execute(
                "SELECT uid, flags, modseq FROM mail_message WHERE folder_id = %s"
                " AND modseq > %s AND uid <= %s ORDER BY uid",
                (folder.id, modseq, last_uid),
            )
            changed = [(int(u), split_flags(f), int(m)) for u, f, m in cur.fetchall()]
            cur.execute("SELECT uid FROM mail_expunged WHERE folder_id = %s AND modseq > %s"
                        " ORDER BY uid", (folder.id, modseq))
            expunged = [int(r[0]) for r in cur.fetchall()]
        return Changes(highest, new, changed, expunged, name)

    def view(self, folder: Folder) -> FolderView:
        cached = self._views.get(folder.id)
        if cached is None or cached.uidvalidity != folder.uidvalidity:
            with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                cur.execute("SELECT highestmodseq FROM mail_folder WHERE id = %s", (folder.id,))
                highest = cur.fetchone()
                cur.execute("SELECT uid, flags FROM mail_message WHERE folder_id = %s"
                            " ORDER BY uid", (folder.id,))
                rows = cur.fetchall()
            cached = FolderView(folder.uidvalidity, int(highest[0]) if highest else 0,
                                [int(r[0]) for r in rows],
                                {int(r[0]): str(r[1]) for r in rows if r[1]})
            if self.stores.listener is not None and highest:
                self.stores.listener.saw(folder.id, int(highest[0]))
        else:
            last = cached.uids[-1] if cached.uids else 0
            changes = self.changes_since(folder, cached.modseq, last)
            if changes is not None:
                cached.apply(changes)
        self._views[folder.id] = cached
        return cached.copy()


class PostgreSQLMailStores:
    """`MailStores` on PostgreSQL: one connection pool and one notification listener per
    process, one store object per mailbox in use."""

    def __init__(self, config: Config, *, listen: bool = True) -> None:
        info = conninfo(config)
        self.pool = ConnectionPool(
            info, min_size=1, max_size=max(2, config.storage.pool_size),
            kwargs={"autocommit": True}, name="mssgw-mail", open=True,
        )
        self.listener = Listener(info) if listen else None
        self._stores: dict[str, tuple[PostgreSQLMailStore, int]] = {}

    def acquire(self, address: str) -> PostgreSQLMailStore:
        address = address.lower()
        entry = self._stores.get(address)
        store = entry[0] if entry else PostgreSQLMailStore(self, address)
        self._stores[address] = (store, (entry[1] if entry else 0) + 1)
        return store

    def release(self, address: str) -> None:
        address = address.lower()
        entry = self._stores.get(address)
        if entry is None:
            return
        if entry[1] <= 1:
            del self._stores[address]
        else:
            self._stores[address] = (entry[0], entry[1] - 1)

    def usage(self, address: str) -> int:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT usage FROM mail_user WHERE address = %s",
                               (address.lower(),)).fetchone()
        return int(row[0]) if row else 0

    def rest_idle(self, idle_for: float) -> Callable[[], None] | None:
        return None  # a store holds no connection of its own: the pool's are shared

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        self.pool.close()


def sweep_bodies(conn: psycopg.Connection[Any]) -> int:
    """Delete the bodies no message and no queue entry names any more (after an hour)."""
    cur = conn.execute(
        "DELETE FROM mail_body b WHERE b.stored_at < now() - %s::interval"
        " AND NOT EXISTS (SELECT 1 FROM mail_message m WHERE m.digest = b.digest)"
        " AND NOT EXISTS (SELECT 1 FROM queue_entry q WHERE q.digest = b.digest)",
        (BODY_SWEEP_AGE,),
    )
    return cur.rowcount


class PostgreSQLIntake:
    """`Intake` on PostgreSQL: an accepted message's copies (one body, a row per recipient)
    and queue entries in one transaction; `commit` returns once it committed. Commits run in
    worker threads, each on its own pooled connection, so concurrent sessions' commits
    overlap and the server groups their WAL flushes (its own group commit)."""

    def __init__(self, config: Config,
                 notes: Callable[[Sequence[Any]], None] | None = None) -> None:
        self.notes = notes
        size = max(2, config.storage.pool_size)
        self.pool = ConnectionPool(conninfo(config), min_size=1, max_size=size,
                                   kwargs={"autocommit": True}, name="mssgw-intake", open=True)
        self._threads = ThreadPoolExecutor(size, thread_name_prefix="mssgw-intake")

    async def commit(
        self, local: Sequence[tuple[str, bytes]], queued: Sequence[Entry] = (),
        note: object | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._threads, self._commit, local, queued, note)

    def _commit(self, local: Sequence[tuple[str, bytes]], queued: Sequence[Entry],
                note: object | None) -> None:
        if note is not None and self.notes is not None:
            self.notes([note])
        self.store(local, queued)

    def store(self, local: Sequence[tuple[str, bytes]], queued: Sequence[Entry] = ()) -> None:
        now = time.time()
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            deliver(cur, local, int(now))
            enqueue(cur, queued, now)

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        self.pool.close()
