"""The durable outbound queue: mail for other operators of the trust space, and DSNs.

Layout under `[storage] queue`:
    msg/<id>       the message as it will be sent (immutable once queued)
    env/<id>.json  the record: envelope sender, creation time, one state per recipient
    tmp/           files being written (a crash leaves them here, never half in msg/ or env/)

Enqueueing writes both files under tmp/, fsyncs them, renames the message into msg/ and then the
record into env/ (the record is the commit point: a message without a record is debris, removed
later), and fsyncs both directories — all before the SMTP server answers 250. Every state change
rewrites the record the same way (write, fsync, rename, fsync the directory), so a crash leaves the
old or the new record, never a torn one. The delivery worker holds an exclusive lock
(flock) on msg/<id> while it works on an entry; the CLI takes the same lock to change one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError, NotFound
from gateway.fileio import fsync_dir, write_synced
from gateway.texts import t

_ID = re.compile(r"[0-9A-F]{21}")

PENDING = "pending"
SENT = "sent"
FAILED = "failed"


def new_queue_id() -> str:
    """21 hexadecimal characters: microseconds since the epoch, then 32 random bits. Sorting by
    id sorts by arrival; the id names the message in logs, Received: headers and the queue."""
    return f"{time.time_ns() // 1000:013X}{secrets.token_hex(4).upper()}"


class QueueError(GatewayError):
    pass


def check_id(queue_id: str) -> str:
    qid = queue_id.strip().upper()
    if not _ID.fullmatch(qid):
        raise QueueError(t(
            "queue id: {queue_id!r} is not a queue id (21 hexadecimal characters)",
            queue_id=queue_id))
    return qid


@dataclass
class RecipientState:
    address: str
    state: str = PENDING  # pending | sent | failed
    attempts: int = 0
    next_attempt: float = 0.0
    last_error: str | None = None  # the last reply or error, for people
    status: str | None = None  # enhanced status code of the last attempt
    remote_mta: str | None = None


@dataclass
class Record:
    id: str
    sender: str  # "" for a DSN (null reverse-path)
    created: float
    recipients: list[RecipientState] = field(default_factory=list)
    kind: str = "message"  # "message" or "dsn"
    dsn_sent: bool = False

    @property
    def pending(self) -> list[RecipientState]:
        return [r for r in self.recipients if r.state == PENDING]

    @property
    def next_attempt(self) -> float | None:
        times = [r.next_attempt for r in self.pending]
        return min(times) if times else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        rcpts = [RecipientState(**r) for r in data.pop("recipients", [])]
        return cls(recipients=rcpts, **data)


@dataclass(frozen=True)
class Entry:
    """A message to enqueue."""

    id: str
    sender: str
    recipients: Sequence[str]
    data: bytes
    kind: str = "message"


class Queue:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.msg = root / "msg"
        self.env = root / "env"
        self.tmp = root / "tmp"

    def ensure(self) -> Queue:
        for d in (self.msg, self.env, self.tmp):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self

    # --- enqueue -------------------------------------------------------------------------------

    def files(self, entry: Entry, now: float | None = None) -> list[tuple[Path, Path, bytes]]:
        """The entry's files: (path under tmp/, final path, content), the record last (it is
        the commit point: rename it last). Written by `stage` or by the store's group commit."""
        created = time.time() if now is None else now
        record = Record(
            id=entry.id,
            sender=entry.sender,
            created=created,
            recipients=[RecipientState(r.lower(), next_attempt=created) for r in entry.recipients],
            kind=entry.kind,
        )
        tag = secrets.token_hex(4)
        tmp_msg = self.tmp / f"{entry.id}.{tag}.msg"
        tmp_env = self.tmp / f"{entry.id}.{tag}.env"
        return [
            (tmp_msg, self.msg / entry.id, entry.data),
            (tmp_env, self.env / f"{entry.id}.json", json.dumps(record.to_json()).encode()),
        ]

    def stage(self, entry: Entry, now: float | None = None) -> list[tuple[Path, Path]]:
        """Write and fsync the entry's files under tmp/; returns the (tmp, final) renames."""
        renames: list[tuple[Path, Path]] = []
        try:
            for tmp, final, data in self.files(entry, now):
                write_synced(tmp, data)
                renames.append((tmp, final))
        except BaseException:
            for tmp, _ in renames:
                tmp.unlink(missing_ok=True)
            raise
        return renames

    def dirs(self) -> tuple[Path, Path]:
        return self.msg, self.env

    def enqueue_many(self, entries: Sequence[Entry]) -> None:
        """Durably add entries (fsynced files, renamed, directories fsynced) before returning."""
        self.ensure()
        renames: list[tuple[Path, Path]] = []
        try:
            for entry in entries:
                renames += self.stage(entry)
        except BaseException:
            for tmp, _ in renames:
                tmp.unlink(missing_ok=True)
            raise
        for tmp, final in renames:
            os.rename(tmp, final)
        for d in self.dirs():
            fsync_dir(d)

    # --- reading -------------------------------------------------------------------------------

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.env)
        except FileNotFoundError:
            return []
        return sorted(n[:-5] for n in names if n.endswith(".json") and _ID.fullmatch(n[:-5]))

    def load(self, queue_id: str) -> Record:
        qid = check_id(queue_id)
        try:
            data = json.loads((self.env / f"{qid}.json").read_bytes())
        except FileNotFoundError:
            raise NotFound(t("queue: no message {qid} in the queue", qid=qid)) from None
        return Record.from_json(data)

    def records(self) -> list[Record]:
        out = []
        for qid in self.ids():
            with contextlib.suppress(NotFound, ValueError, TypeError):
                out.append(self.load(qid))
        return out

    def message(self, queue_id: str) -> bytes:
        qid = check_id(queue_id)
        try:
            return (self.msg / qid).read_bytes()
        except FileNotFoundError:
            raise NotFound(t("queue: no message {qid} in the queue", qid=qid)) from None

    # --- changing ------------------------------------------------------------------------------

    def save(self, record: Record) -> None:
        """Replace the record atomically and durably."""
        tmp = self.tmp / f"{record.id}.{secrets.token_hex(4)}.env"
        write_synced(tmp, json.dumps(record.to_json()).encode())
        os.rename(tmp, self.env / f"{record.id}.json")
        fsync_dir(self.env)

    def remove(self, queue_id: str) -> None:
        qid = check_id(queue_id)
        # The record goes first: without it the message file is debris, never a ghost entry.
        (self.env / f"{qid}.json").unlink(missing_ok=True)
        fsync_dir(self.env)
        (self.msg / qid).unlink(missing_ok=True)

    @contextlib.contextmanager
    def locked(self, queue_id: str, *, wait: float | None = None) -> Iterator[bool]:
        """Hold the entry's lock; yields False when it is held elsewhere (`wait` seconds, or
        at once when None) or when the entry is gone."""
        qid = check_id(queue_id)
        try:
            fd = os.open(self.msg / qid, os.O_RDONLY)
        except FileNotFoundError:
            yield False
            return
        try:
            deadline = time.monotonic() + (wait or 0.0)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.05)
            yield (self.env / f"{qid}.json").exists()
        finally:
            os.close(fd)

    def sweep(self, older_than: float = 3600.0) -> int:
        """Remove debris left by crashes: tmp files and messages without a record."""
        removed = 0
        limit = time.time() - older_than
        records = set(self.ids())
        for d, orphan in ((self.tmp, lambda n: True), (self.msg, lambda n: n not in records)):
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                continue
            for name in names:
                path = d / name
                with contextlib.suppress(FileNotFoundError):
                    if orphan(name) and path.stat().st_mtime < limit:
                        path.unlink()
                        removed += 1
        return removed
