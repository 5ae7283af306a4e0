"""The outbound queue on PostgreSQL: `queue_entry` rows (the record as JSON, the message's
body in `mail_body`), added by the intake in the accepted message's transaction.

Claiming: a runner (each node has one) or an administrator works on an entry under a
session-level advisory lock taken with `pg_try_advisory_lock` — PostgreSQL's equivalent of
`SELECT ... FOR UPDATE SKIP LOCKED` for a lock that must outlive transactions: the runner
commits each recipient's new state as it learns it (`save`, on the same connection), and the
lock stays until the block ends; if the node dies, its connection ends and the lock with it.
Another node's runner skips a held entry, so each message is relayed once, and re-reads the
record after taking the lock (the entry may be gone, or done).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from gateway.config import Config
from gateway.errors import NotFound
from gateway.postgresql.connection import connect
from gateway.postgresql.mail import sweep_bodies
from gateway.store.queue import Record, check_id

LOCK_SPACE = 0x51554555  # "QUEU": the advisory locks' first key; the second: the id's hash


class PostgreSQLQueue:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._held = threading.local()  # the connection holding this thread's entry lock

    @contextlib.contextmanager
    def _use(self) -> Iterator[psycopg.Connection[Any]]:
        held = getattr(self._held, "conn", None)
        if held is not None:
            yield held
            return
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = connect(self.config, autocommit=True)
            yield self._conn

    def ids(self) -> list[str]:
        with self._use() as conn:
            return [str(r[0]) for r in conn.execute("SELECT id FROM queue_entry ORDER BY id")]

    def records(self) -> list[Record]:
        with self._use() as conn:
            rows = conn.execute("SELECT record FROM queue_entry ORDER BY id").fetchall()
        return [Record.from_json(dict(r[0])) for r in rows]

    def load(self, queue_id: str) -> Record:
        qid = check_id(queue_id)
        with self._use() as conn:
            row = conn.execute("SELECT record FROM queue_entry WHERE id = %s", (qid,)).fetchone()
        if row is None:
            raise NotFound(f"queue: no message {qid} in the queue")
        return Record.from_json(dict(row[0]))

    def message(self, queue_id: str) -> bytes:
        qid = check_id(queue_id)
        with self._use() as conn:
            row = conn.execute(
                "SELECT b.data FROM queue_entry q JOIN mail_body b USING (digest)"
                " WHERE q.id = %s",
                (qid,),
            ).fetchone()
        if row is None:
            raise NotFound(f"queue: no message {qid} in the queue")
        return bytes(row[0])

    def save(self, record: Record) -> None:
        pending = record.next_attempt
        with self._use() as conn:
            conn.execute(
                "UPDATE queue_entry SET record = %s, next_attempt = %s WHERE id = %s",
                (json.dumps(record.to_json()), pending if pending is not None else 0.0,
                 record.id),
            )

    def remove(self, queue_id: str) -> None:
        qid = check_id(queue_id)
        with self._use() as conn:
            conn.execute("DELETE FROM queue_entry WHERE id = %s", (qid,))

    @contextlib.contextmanager
    def locked(self, queue_id: str, *, wait: float | None = None) -> Iterator[bool]:
        qid = check_id(queue_id)
        conn = connect(self.config, autocommit=True)
        try:
            deadline = time.monotonic() + (wait or 0.0)
            while True:
                row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                                   (LOCK_SPACE, qid)).fetchone()
                if row and row[0]:
                    break
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.05)
            exists = conn.execute("SELECT 1 FROM queue_entry WHERE id = %s", (qid,)).fetchone()
            self._held.conn = conn
            try:
                yield exists is not None
            finally:
                self._held.conn = None
        finally:
            conn.close()  # ends the session: the advisory lock goes with it

    def sweep(self, older_than: float = 3600.0) -> int:
        """Bodies no message and no entry names any more (rows themselves leave no debris)."""
        with self._use() as conn:
            return sweep_bodies(conn)
