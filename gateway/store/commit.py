"""Durable commits of accepted messages, grouped across concurrent sessions ("group commit").

One commit stores everything one accepted message needs: its Maildir copies and its queue
entries. Every file is written under a `tmp/` folder and fsynced, then renamed into place, then
each touched directory is fsynced: when the commit returns, everything is on disk and the SMTP
server may answer 250. A failure before the renames leaves nothing visible.

Group commit: while one batch is being written, the commits that arrive wait; the next batch takes
them all. The batch thread creates and writes every file of the batch (cheap for small files),
then a pool of threads fsyncs them all at once (the file system folds concurrent fsyncs into
shared journal commits; two or fewer run in the batch thread itself, cheaper than handing them
over), then all renames happen, then each directory is fsynced once for the whole batch — one
`new/` fsync for twenty messages to the same mailbox instead of twenty. The event loop never
waits on the disk. The threads run as little Python as possible (plain string paths, one fsync
per pool task): in a worker they compete with the event loop for the interpreter.
Measured in bench/bench_smtp.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway.fileio import fsync_dir, write_all
from gateway.store.maildir import ensure_maildir, mailbox_path, unique_name
from gateway.store.queue import Entry, Queue

Local = Sequence[tuple[Path, bytes]]
# Up to this many fsyncs of a round run one after the other in the batch thread, without the
# pool: handing each to a pool thread and collecting it costs the worker more CPU (thread
# wake-ups, interpreter-lock hand-offs) than the fsyncs themselves. A prescription's batch
# often holds just its two files (patient and doctor) and their two folders: bench_journey's
# worker went from 44 to 31 context switches per prescription (see docs/architecture.md).
INLINE_FSYNCS = 2
_A = TypeVar("_A")
_R = TypeVar("_R")


@dataclass
class _Staged:
    """One request's files, written under tmp/ but not yet fsynced: (fd, tmp, final)."""

    files: list[tuple[int, str, str]] = field(default_factory=list)
    n_local: int = 0
    error: BaseException | None = None
    closed: bool = False  # the fds are closed (never close a number twice: it may be reused)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for fd, _, _ in self.files:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def discard(self) -> None:
        self.close()
        for _, tmp, _ in self.files:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # already renamed: nothing to remove
        self.files = []

    def fail(self, exc: BaseException) -> None:
        self.discard()
        self.error = exc


def _create(tmp: str, final: str, data: bytes) -> tuple[int, str, str]:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        write_all(fd, data)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp, final


def _create_maildir(folder: Path, data: bytes) -> tuple[int, str, str]:
    name = unique_name(len(data))
    args = (os.path.join(folder, "tmp", name), os.path.join(folder, "new", name), data)
    try:
        return _create(*args)
    except FileNotFoundError:  # the first message for this mailbox
        ensure_maildir(folder)
        return _create(*args)


def _stage(local: Local, queued: Sequence[Entry], queue: Queue | None) -> _Staged:
    """Create and write a request's files (no fsync: the batch fsyncs them all at once)."""
    staged = _Staged()
    try:
        for folder, data in local:
            staged.files.append(_create_maildir(folder, data))
        staged.n_local = len(staged.files)
        if queued:
            assert queue is not None
            queue.ensure()
            for entry in queued:
                for tmp, final, data in queue.files(entry):
                    staged.files.append(_create(str(tmp), str(final), data))
    except BaseException as exc:
        staged.fail(exc)
    return staged


def _fsync(fd: int) -> OSError | None:
    try:
        os.fsync(fd)
    except OSError as exc:
        return exc
    return None


def _each(
    func: Callable[[_A], _R], items: Sequence[_A], pool: ThreadPoolExecutor | None
) -> list[_R]:
    """`func` over `items`, at once when there are many: the pool takes all but the first,
    which this thread runs meanwhile (one hand-off fewer)."""
    if pool is None or len(items) <= INLINE_FSYNCS:
        return [func(x) for x in items]
    futures = [pool.submit(func, x) for x in items[1:]]
    first = func(items[0])
    return [first, *(f.result() for f in futures)]


def _publish(batch: Sequence[_Staged], pool: ThreadPoolExecutor | None) -> None:
    """fsync every staged file, rename them into place, then fsync each directory once."""
    todo = [(s, fd) for s in batch if s.error is None for fd, _, _ in s.files]
    # Concurrent fsyncs: the file system folds them into shared journal commits.
    errors = _each(_fsync, [fd for _, fd in todo], pool)
    for (staged, _), error in zip(todo, errors, strict=True):
        if error is not None and staged.error is None:
            staged.fail(error)
    dirs: set[str] = set()
    for staged in batch:
        if staged.error is not None:
            continue
        staged.close()
        for _, tmp, final in staged.files:
            os.rename(tmp, final)
            dirs.add(os.path.dirname(final))
    _each(fsync_dir, list(dirs), pool)


def _paths(staged: _Staged) -> list[str]:
    # Plain strings: a pathlib.Path per message, built on the event loop, cost more than the
    # rest of completing the commit.
    return [final for _, _, final in staged.files[: staged.n_local]]


def store(local: Local, queued: Sequence[Entry], queue: Queue | None) -> list[str]:
    """Durably store Maildir copies (folder, data) and queue entries, on its own (no batching);
    returns the Maildir files' paths."""
    staged = _stage(local, queued, queue)
    if staged.error is not None:
        raise staged.error
    try:
        _publish([staged], None)
    except BaseException:
        staged.discard()
        raise
    if staged.error is not None:
        raise staged.error
    return _paths(staged)


@dataclass
class _Request:
    local: Local
    queued: Sequence[Entry]
    future: asyncio.Future[list[str]]
    note: Any = None  # for the batch's `notes` hook (None: nothing to note)


class Committer:
    """Group commit for one event loop: `await commit(local, queued)` returns once durable.

    `notes`, when given, is called in the batch thread once per batch with the `note` of each
    request whose files were written, before they are published: the SMTP gateway records its
    conversations with patients there, one SQLite transaction per batch instead of one per
    message in a thread hand-off of its own. When it raises, those requests fail (nothing of
    theirs is published) and the batch's other requests are stored.
    """

    def __init__(
        self,
        queue: Queue | None,
        threads: int = 16,
        *,
        notes: Callable[[list[Any]], None] | None = None,
    ) -> None:
        self.queue = queue
        self.notes = notes
        self._io = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="commit-io")
        self._batcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit")
        self._pending: list[_Request] = []
        self._busy = False
        self.batches = 0  # statistics, for the benchmark and the tests
        self.committed = 0

    async def commit(
        self, local: Local, queued: Sequence[Entry] = (), note: Any = None
    ) -> list[str]:
        loop = asyncio.get_running_loop()
        request = _Request(local, queued, loop.create_future(), note)
        self._pending.append(request)
        if not self._busy:
            self._next(loop)
        return await request.future

    def _next(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._pending = self._pending, []
        self._busy = True
        work = loop.run_in_executor(self._batcher, self._write, batch)
        work.add_done_callback(lambda f: self._done(loop, batch, f))

    def _write(self, batch: list[_Request]) -> list[_Staged]:
        # Creating and writing small files is cheap; only the fsyncs need threads.
        staged = [_stage(r.local, r.queued, self.queue) for r in batch]
        noted = [(s, r.note) for s, r in zip(staged, batch, strict=True)
                 if r.note is not None and s.error is None]
        if noted and self.notes is not None:
            try:
                self.notes([note for _, note in noted])
            except Exception as exc:
                for s, _ in noted:
                    s.fail(exc)
        try:
            _publish(staged, self._io)
        except BaseException:
            for s in staged:
                s.discard()
            raise
        return staged

    def _done(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[_Request],
        work: asyncio.Future[list[_Staged]],
    ) -> None:
        self._busy = False
        self.batches += 1
        error = work.exception()
        for i, request in enumerate(batch):
            if request.future.done():  # the session went away
                continue
            if error is not None:
                request.future.set_exception(error)
                continue
            staged = work.result()[i]
            if staged.error is not None:
                request.future.set_exception(staged.error)
            else:
                self.committed += 1
                request.future.set_result(_paths(staged))
        if self._pending:
            self._next(loop)

    def close(self) -> None:
        self._batcher.shutdown(wait=True)
        self._io.shutdown(wait=True)


class MaildirIntake:
    """`Intake` on the embedded default: each local copy into its recipient's INBOX Maildir
    (`new/`), queue entries as the queue's files, notes through `notes` — all through the group
    commit above."""

    def __init__(
        self,
        mailboxes: Path,
        queue: Queue,
        *,
        notes: Callable[[list[Any]], None] | None = None,
    ) -> None:
        self.mailboxes = mailboxes
        self.queue = queue
        self.committer = Committer(queue, notes=notes)
        self._maildirs: dict[str, Path] = {}  # address -> its INBOX Maildir (pure, cached)

    def _maildir(self, address: str) -> Path:
        path = self._maildirs.get(address)
        if path is None:
            if len(self._maildirs) > 50_000:
                self._maildirs.clear()
            # UnsafeAddress propagates: the client gets a 451, nothing is dropped silently.
            path = self._maildirs[address] = mailbox_path(self.mailboxes, address)
        return path

    async def commit(
        self, local: Sequence[tuple[str, bytes]], queued: Sequence[Entry] = (),
        note: Any = None,
    ) -> None:
        await self.committer.commit(
            [(self._maildir(a), data) for a, data in local], queued, note
        )

    def store(self, local: Sequence[tuple[str, bytes]], queued: Sequence[Entry] = ()) -> None:
        store([(mailbox_path(self.mailboxes, a), data) for a, data in local], queued, self.queue)

    def close(self) -> None:
        self.committer.close()
