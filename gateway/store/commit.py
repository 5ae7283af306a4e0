"""Durable commits of accepted messages, grouped across concurrent sessions ("group commit").

One commit stores everything one accepted message needs: its Maildir copies and its queue
entries. Every file is written under a `tmp/` folder and fsynced, then renamed into place, then
each touched directory is fsynced: when the commit returns, everything is on disk and the SMTP
server may answer 250. A failure before the renames leaves nothing visible.

Group commit: while one batch is being written, the commits that arrive wait; the next batch takes
them all. Within a batch the files are written and fsynced by a pool of threads at once (the file
system folds concurrent fsyncs into shared journal commits), then all renames happen, then each
directory is fsynced once for the whole batch — one `new/` fsync for twenty messages to the same
mailbox instead of twenty. The event loop never waits on the disk. Measured in bench/bench_smtp.py.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from gateway.fileio import fsync_dir
from gateway.store.maildir import ensure_maildir, write_tmp
from gateway.store.queue import Entry, Queue

Local = Sequence[tuple[Path, bytes]]


@dataclass
class _Staged:
    renames: list[tuple[Path, Path]] = field(default_factory=list)
    n_local: int = 0
    error: BaseException | None = None

    def discard(self) -> None:
        for tmp, _ in self.renames:
            tmp.unlink(missing_ok=True)


def _write_maildir(folder: Path, data: bytes) -> tuple[Path, Path]:
    try:
        tmp, name = write_tmp(folder, data)
    except FileNotFoundError:  # the first message for this mailbox
        ensure_maildir(folder)
        tmp, name = write_tmp(folder, data)
    return tmp, folder / "new" / name


def _stage(local: Local, queued: Sequence[Entry], queue: Queue | None) -> _Staged:
    staged = _Staged()
    try:
        for folder, data in local:
            staged.renames.append(_write_maildir(folder, data))
        staged.n_local = len(staged.renames)
        if queued:
            assert queue is not None
            queue.ensure()
            for entry in queued:
                staged.renames += queue.stage(entry)
    except BaseException as exc:
        staged.discard()
        staged.error = exc
        staged.renames = []
    return staged


def _publish(batch: Sequence[_Staged], pool: ThreadPoolExecutor | None) -> None:
    """Rename every staged file into place, then fsync each directory once."""
    dirs: set[Path] = set()
    for staged in batch:
        if staged.error is None:
            for tmp, final in staged.renames:
                os.rename(tmp, final)
                dirs.add(final.parent)
    if pool is not None and len(dirs) > 1:
        list(pool.map(fsync_dir, dirs))
    else:
        for d in dirs:
            fsync_dir(d)


def store(local: Local, queued: Sequence[Entry], queue: Queue | None) -> list[Path]:
    """Durably store Maildir copies (folder, data) and queue entries, on its own (no batching);
    returns the Maildir paths."""
    staged = _stage(local, queued, queue)
    if staged.error is not None:
        raise staged.error
    _publish([staged], None)
    return [final for _, final in staged.renames[: staged.n_local]]


@dataclass
class _Request:
    local: Local
    queued: Sequence[Entry]
    future: asyncio.Future[list[Path]]


class Committer:
    """Group commit for one event loop: `await commit(local, queued)` returns once durable."""

    def __init__(self, queue: Queue | None, threads: int = 16) -> None:
        self.queue = queue
        self._io = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="commit-io")
        self._batcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit")
        self._pending: list[_Request] = []
        self._busy = False
        self.batches = 0  # statistics, for the benchmark and the tests
        self.committed = 0

    async def commit(self, local: Local, queued: Sequence[Entry] = ()) -> list[Path]:
        loop = asyncio.get_running_loop()
        request = _Request(local, queued, loop.create_future())
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
        if len(batch) == 1:
            staged = [_stage(batch[0].local, batch[0].queued, self.queue)]
        else:
            staged = list(
                self._io.map(lambda r: _stage(r.local, r.queued, self.queue), batch)
            )
        _publish(staged, self._io)
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
                request.future.set_result(
                    [final for _, final in staged.renames[: staged.n_local]]
                )
        if self._pending:
            self._next(loop)

    def close(self) -> None:
        self._batcher.shutdown(wait=True)
        self._io.shutdown(wait=True)
