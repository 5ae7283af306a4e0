"""Who wrote to which patient, and which threads a professional closed.

MSSanté lets a patient write only to a professional or structure that wrote to them first (or to
a pharmacy), and not into a thread the professional closed with `X-MSS-MES: FIN` or the subject
`[FIN]`. This table remembers just enough for that: one row per (patient, correspondent), the
thread each message to a patient belongs to, and the closed threads. A thread is named by its
first known message id: a message joins the thread of the first id it refers to that we know,
else the first id of its References, else its own id.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.db import connect, migrate, transaction

COMPONENT = "smtp"
MIGRATIONS = [
    """
    CREATE TABLE smtp_contact (
        patient TEXT NOT NULL, correspondent TEXT NOT NULL, first_at REAL NOT NULL,
        PRIMARY KEY (patient, correspondent)
    );
    CREATE TABLE smtp_thread_message (
        message_id TEXT NOT NULL, patient TEXT NOT NULL, thread TEXT NOT NULL,
        PRIMARY KEY (message_id, patient)
    );
    CREATE TABLE smtp_thread_closed (
        thread TEXT NOT NULL, patient TEXT NOT NULL, closed_by TEXT NOT NULL, at REAL NOT NULL,
        PRIMARY KEY (thread, patient)
    );
    """,
]


@dataclass(frozen=True)
class Contact:
    """What one accepted message from a professional to patients tells the table."""

    correspondent: str
    patients: tuple[str, ...]
    message_id: str | None
    refs: tuple[str, ...]
    closes: bool  # X-MSS-MES: FIN or [FIN]: the professional closed the thread


class ConversationLog(Protocol):
    """The state behind the patient rules, whatever stores it."""

    def has_written(self, correspondent: str, patient: str) -> bool:
        """Whether `correspondent` (a professional or structure) wrote to `patient`."""
        ...

    def closed_thread(self, patient: str, refs: Sequence[str]) -> str | None:
        """The closed thread a patient's message (by its In-Reply-To/References) falls in."""
        ...

    def record_many(self, contacts: Sequence[Contact]) -> None:
        """Accepted messages' contacts, all in one transaction (the SMTP group commit records a
        batch's at once)."""
        ...

    def close(self) -> None: ...


class Conversations:
    """`ConversationLog` in the gateway's SQLite database (component "smtp"). Thread-safe (one
    lock around one connection); every call is a short transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        migrate(conn, COMPONENT, MIGRATIONS)

    @classmethod
    def open(cls, path: Path) -> Conversations:
        return cls(connect(path))

    def close(self) -> None:
        self.conn.close()

    def has_written(self, correspondent: str, patient: str) -> bool:
        with self._lock:
            row = self.conn.execute(
                "SELECT 1 FROM smtp_contact WHERE patient = ? AND correspondent = ?",
                (patient.lower(), correspondent.lower()),
            ).fetchone()
        return row is not None

    def _thread_of(self, patient: str, refs: Sequence[str]) -> str | None:
        for ref in refs:
            row = self.conn.execute(
                "SELECT thread FROM smtp_thread_message WHERE message_id = ? AND patient = ?",
                (ref, patient),
            ).fetchone()
            if row:
                return str(row[0])
        return None

    def closed_thread(self, patient: str, refs: Sequence[str]) -> str | None:
        """The closed thread a patient's message (by its In-Reply-To/References) falls in."""
        patient = patient.lower()
        if not refs:
            return None
        with self._lock:
            thread = self._thread_of(patient, refs) or refs[0]
            row = self.conn.execute(
                "SELECT closed_by FROM smtp_thread_closed WHERE thread = ? AND patient = ?",
                (thread, patient),
            ).fetchone()
        return thread if row else None

    def record(
        self,
        correspondent: str,
        patients: Sequence[str],
        message_id: str | None,
        refs: Sequence[str],
        closes: bool,
    ) -> None:
        """A professional or structure wrote to `patients` (message accepted)."""
        self.record_many([Contact(correspondent, tuple(patients), message_id, tuple(refs), closes)])

    def record_many(self, contacts: Sequence[Contact]) -> None:
        """Several accepted messages' contacts in one transaction: the SMTP group commit records
        a whole batch's at once (one SQLite commit, hence one WAL sync, per batch)."""
        now = time.time()
        with self._lock, transaction(self.conn):
            for contact in contacts:
                self._record(contact, now)

    def _record(self, contact: Contact, now: float) -> None:
        correspondent = contact.correspondent.lower()
        refs, message_id = contact.refs, contact.message_id
        for patient in {p.lower() for p in contact.patients}:
            self.conn.execute(
                "INSERT OR IGNORE INTO smtp_contact VALUES (?, ?, ?)",
                (patient, correspondent, now),
            )
            thread = self._thread_of(patient, refs) or (refs[0] if refs else message_id)
            if thread is None:
                continue
            if message_id:
                self.conn.execute(
                    "INSERT OR IGNORE INTO smtp_thread_message VALUES (?, ?, ?)",
                    (message_id, patient, thread),
                )
            if contact.closes:
                self.conn.execute(
                    "INSERT OR IGNORE INTO smtp_thread_closed VALUES (?, ?, ?, ?)",
                    (thread, patient, correspondent, now),
                )
