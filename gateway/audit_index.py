"""An index of the embedded audit log (JSON lines), so that a query reads one page, not the log.

The log stays the record: one JSON line per entry, appended and fsynced by every process
(`gateway.audit.AuditFile`); its write path is unchanged. Beside it, `<log>.index` is a SQLite
file holding, per line, its byte position and length with the fields a query filters on (time,
actor, action, target), indexed. It is a cache, brought up to date by the query that needs it:
the lines appended since the last query are parsed and indexed (only whole lines: a line being
written is taken next time), in one transaction, so concurrent workers index each line once. A
log replaced or cut (another file at the path, or shorter than what was indexed) is indexed
again from its start. Deleting the index file loses nothing.

A query filters and counts in the index, then reads only the page's lines from the log
(newest first). Words searched anywhere in an entry are not indexed (the index would be as big
as the log): the candidates the other filters leave are read newest first until the page is
full, and the total is then unknown (None) unless the scan reached the oldest entry.

Why not move the audit log into the database: the JSON-lines file is the simple durable record
operators read and archive with their usual tools, and its writer is on the prescription path
(`held()`: one write and one fsync per unit of work); the index costs that path nothing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

VERSION = 1  # of the index's schema: another version is dropped and rebuilt
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entry (
    id INTEGER PRIMARY KEY,            -- the line's rank in the log: newest = highest
    pos INTEGER NOT NULL,              -- byte offset of the line in the log
    len INTEGER NOT NULL,              -- its length, without the newline
    at TEXT NOT NULL,                  -- ISO 8601 UTC, as written
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entry_action ON entry(action, id);
CREATE INDEX IF NOT EXISTS entry_target ON entry(target, id);
CREATE INDEX IF NOT EXISTS entry_actor ON entry(actor, id);
CREATE INDEX IF NOT EXISTS entry_at ON entry(at);
"""
CHUNK = 1 << 20  # bytes of the log read at a time while indexing
SCAN_BATCH = 500  # candidates read at a time when searching for words


@dataclass(frozen=True)
class AuditFilter:
    """What a query asks: an action (or a prefix ending in "."), a target, an actor, a start
    time, and words (lower-case) each found somewhere in the entry."""

    action: str | None = None
    target: str | None = None
    actor: str | None = None
    since: datetime | None = None
    words: tuple[str, ...] = ()


def entry_text(raw: dict[str, Any]) -> str:
    """What words are searched in: the whole entry as JSON, lower-case."""
    return json.dumps(raw, ensure_ascii=False, sort_keys=True, default=str).lower()


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


class AuditIndex:
    """The index of the audit log at `log_path` (file `<log_path>.index`, 0600: it names
    patients). Thread-safe: one connection under a lock."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.path = log_path.with_name(log_path.name + ".index")
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    # --- the index file ----------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))  # 0600 from the start
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA journal_mode=WAL")
            # A cache: a commit lost in a crash is indexed again from the log.
            conn.execute("PRAGMA synchronous=NORMAL")
            if conn.execute("PRAGMA user_version").fetchone()[0] != VERSION:
                conn.execute("BEGIN IMMEDIATE")
                if conn.execute("PRAGMA user_version").fetchone()[0] != VERSION:
                    conn.execute("DROP TABLE IF EXISTS entry")
                    conn.execute("DROP TABLE IF EXISTS meta")
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {VERSION}")
                conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- catching up with the log ----------------------------------------------------------------
    @staticmethod
    def _identity(st: os.stat_result | None) -> str:
        return f"{st.st_dev}:{st.st_ino}" if st else ""

    def _state(self, conn: sqlite3.Connection) -> tuple[str, int]:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        return meta.get("file", ""), int(meta.get("offset", "0"))

    def catch_up(self) -> int:
        """Index the lines appended since the last call; how many were indexed."""
        try:
            st: os.stat_result | None = os.stat(self.log_path)
        except FileNotFoundError:
            st = None
        with self._lock:
            conn = self._connection()
            ident, offset = self._state(conn)
            if ident == self._identity(st) and (st.st_size if st else 0) == offset:
                return 0  # nothing new: no write transaction
            conn.execute("BEGIN IMMEDIATE")
            try:
                ident, offset = self._state(conn)  # another worker may have just done it
                if ident != self._identity(st) or (st is not None and st.st_size < offset):
                    conn.execute("DELETE FROM entry")  # another log at the path: start again
                    offset = 0
                added = 0
                if st is not None and st.st_size > offset:
                    offset, added = self._index_from(conn, offset)
                conn.executemany(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                    [("file", self._identity(st)), ("offset", str(offset))],
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return added

    def _index_from(self, conn: sqlite3.Connection, offset: int) -> tuple[int, int]:
        """Index the whole lines after `offset`; the offset after the last one, and how many."""
        added = 0
        with self.log_path.open("rb") as f:
            f.seek(offset)
            pending = b""
            start = offset  # file position of `pending`'s first byte
            while True:
                chunk = f.read(CHUNK)
                if not chunk:
                    break
                pending += chunk
                cut = pending.rfind(b"\n")
                if cut < 0:
                    continue
                rows = []
                pos = start
                for line in pending[: cut + 1].split(b"\n")[:-1]:
                    row = self._row(line, pos)
                    if row is not None:
                        rows.append(row)
                    pos += len(line) + 1
                conn.executemany(
                    "INSERT INTO entry(pos, len, at, actor, action, target)"
                    " VALUES (?, ?, ?, ?, ?, ?)", rows,
                )
                added += len(rows)
                pending = pending[cut + 1 :]
                start = pos
        return start, added

    @staticmethod
    def _row(line: bytes, pos: int) -> tuple[Any, ...] | None:
        if not line.strip():
            return None
        try:
            raw = json.loads(line)
            at = _iso(datetime.fromisoformat(raw["at"]))
        except (ValueError, KeyError, TypeError):
            return None  # a line cut by a crash mid-write: `read()` skips it too
        return (pos, len(line), at, str(raw.get("actor", "")), str(raw.get("action", "")),
                str(raw.get("target", "")))

    # --- queries ---------------------------------------------------------------------------
    @staticmethod
    def _where(f: AuditFilter) -> tuple[str, list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if f.action and f.action.endswith("."):
            # A prefix as a range, so that the index on action serves it ("/" follows ".").
            where.append("action >= ? AND action < ?")
            params += [f.action, f.action[:-1] + "/"]
        elif f.action:
            where.append("action = ?")
            params.append(f.action)
        if f.target:
            where.append("target = ?")
            params.append(f.target)
        if f.actor:
            where.append("actor = ?")
            params.append(f.actor)
        if f.since is not None:
            where.append("at >= ?")
            params.append(_iso(f.since))
        return (" WHERE " + " AND ".join(where)) if where else "", params

    def query(
        self, f: AuditFilter, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One window of the matching entries (raw dicts), newest first, and how many match
        (None when words were searched and the scan stopped with the page full)."""
        self.catch_up()
        if not self.log_path.exists():
            return [], 0
        where, params = self._where(f)
        with self._lock, self.log_path.open("rb") as log:
            conn = self._connection()
            if not f.words:
                rows = conn.execute(
                    "SELECT pos, len FROM entry" + where  # noqa: S608 (fixed fragments)
                    + " ORDER BY id DESC LIMIT ? OFFSET ?", [*params, limit, offset],
                ).fetchall()
                if len(rows) < limit and (rows or offset == 0):
                    total = offset + len(rows)
                else:
                    total = conn.execute("SELECT count(*) FROM entry" + where,  # noqa: S608
                                         params).fetchone()[0]
                return [self._read(log, pos, n) for pos, n in rows], int(total)
            return self._search(conn, log, where, params, f.words, offset, limit)

    def _search(
        self, conn: sqlite3.Connection, log: BinaryIO, where: str, params: list[Any],
        words: tuple[str, ...], offset: int, limit: int,
    ) -> tuple[list[dict[str, Any]], int | None]:
        need = offset + limit + 1  # one more than the page: is there a next one?
        found: list[dict[str, Any]] = []
        below: int | None = None
        while True:
            clause, args = where, list(params)
            if below is not None:  # the next batch: older than the last one read
                clause += (" AND " if where else " WHERE ") + "id < ?"
                args.append(below)
            rows = conn.execute(
                "SELECT id, pos, len FROM entry" + clause  # noqa: S608 (fixed fragments)
                + " ORDER BY id DESC LIMIT ?", [*args, SCAN_BATCH],
            ).fetchall()
            for row_id, pos, n in rows:
                raw = self._read(log, pos, n)
                text = entry_text(raw)
                if all(w in text for w in words):
                    found.append(raw)
                    if len(found) >= need:
                        return found[offset : offset + limit], None
                below = row_id
            if len(rows) < SCAN_BATCH:
                return found[offset : offset + limit], len(found)

    @staticmethod
    def _read(log: BinaryIO, pos: int, n: int) -> dict[str, Any]:
        log.seek(pos)
        raw: dict[str, Any] = json.loads(log.read(n))
        return raw
